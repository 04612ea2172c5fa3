"""docs/ONNX.md: its script labels photos with an exported model, without sportsdet, as predict does.

A downstream user reads the model's metadata and prepares the picture by hand; the script in the
document is that user's code. It runs here in a separate interpreter on the built-in model's ONNX
file (which carries the same metadata as any export) and must give predict's answers: the same
label, probability and abstain decision, on photos of every kind the recipe covers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sportsdet import Predictor
from sportsdet.bundle import builtin_bundle_path

DOC = Path(__file__).resolve().parents[1] / "docs" / "ONNX.md"


def _script() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1, "docs/ONNX.md should hold one script"
    return blocks[0]


def _scene(width: int, height: int, seed: int) -> np.ndarray:
    """A photo-like picture: smooth colour gradients plus texture (not flat, so nothing abstains
    by accident of emptiness alone)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([np.sin(x * 6 + seed), np.cos(y * 5 - seed), np.sin((x + y) * 4)], axis=-1)
    noise = rng.normal(0, 0.15, (height // 8 + 1, width // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)
    return (np.clip((base + noise[:height, :width] + 1) / 2, 0, 1) * 255).astype(np.uint8)


def _photos(folder: Path) -> list[Path]:
    folder.mkdir()
    made = []

    def save(name: str, image: Image.Image, **options) -> None:
        image.save(folder / name, **options)
        made.append(folder / name)

    save("wide.jpg", Image.fromarray(_scene(640, 427, 1)), quality=90)
    save("tall.png", Image.fromarray(_scene(300, 520, 2)))
    save("grey.jpg", Image.fromarray(_scene(400, 400, 3)).convert("L"), quality=85)
    alpha = Image.fromarray(_scene(360, 240, 4)).convert("RGBA")
    mask = np.full((240, 360), 255, np.uint8)
    mask[:, :120] = 0
    mask[:, 120:240] = 128
    alpha.putalpha(Image.fromarray(mask))
    save("alpha.png", alpha)
    save("palette.png", Image.fromarray(_scene(320, 320, 5)).quantize(64), transparency=3)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown turned a quarter
    save("rotated.jpg", Image.fromarray(_scene(500, 300, 6)), exif=exif.tobytes(), quality=90)
    big = Image.fromarray(_scene(800, 600, 7)).resize((2400, 1800), Image.Resampling.BICUBIC)
    save("big.jpg", big, quality=88)  # decoded at a reduced size
    return made


def test_the_documented_script_gives_predicts_answers(tmp_path: Path) -> None:
    onnx_file = builtin_bundle_path() / "model.int8.onnx"
    script = tmp_path / "label.py"
    script.write_text(_script(), encoding="utf-8")
    assert "sportsdet" not in "".join(line for line in _script().splitlines() if "import" in line)
    photos = _photos(tmp_path / "photos")
    done = subprocess.run(
        [sys.executable, "-I", str(script), str(onnx_file), *map(str, photos)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    theirs = {row["input"]: row for row in map(json.loads, done.stdout.splitlines())}
    ours = {r.input: r for r in Predictor("builtin", top_k=1).predict_sources([str(p) for p in photos])}
    assert set(theirs) == set(ours) == {str(p) for p in photos}
    for name, row in theirs.items():
        result = ours[name]
        assert result.error is None, (name, result.error)
        assert row["uncertain"] == result.uncertain, name
        assert row["best_guess"] == result.top_k[0][0], name
        assert row["label"] == result.label, name
        assert row["score"] == pytest.approx(result.top_k[0][1], abs=2e-6), name


def test_the_documented_metadata_keys_are_the_ones_export_writes() -> None:
    import onnxruntime as ort

    from sportsdet.runtime import META_ABSTAIN, META_FORMAT, META_LABELS, META_OUTPUT, META_PREPROCESSING

    session = ort.InferenceSession(str(builtin_bundle_path() / "model.int8.onnx"))
    keys = session.get_modelmeta().custom_metadata_map
    text = DOC.read_text(encoding="utf-8")
    for key in (META_FORMAT, META_LABELS, META_PREPROCESSING, META_OUTPUT, META_ABSTAIN):
        assert key in keys and f"`{key}`" in text
    assert session.get_inputs()[0].name == "image" and "`image`, float32" in text
    preprocessing = json.loads(keys[META_PREPROCESSING])
    documented = {"input_size", "resize", "crop_pct", "mean", "std", "interpolation"}
    assert set(preprocessing) - {"extra"} <= documented
