"""The light install: `pip install sportsdet` (no [train] extra) predicts without torch.

Builds a wheel of this checkout, installs it into a fresh venv (no --system-site-packages, so
the torch of the dev venv is invisible) with only the base dependencies, and runs the real
`sportsdet predict` / `sportsdet info` console scripts there on a bundle that carries an
ONNX model. pip takes the base dependencies from the configured index / wheel cache; about
20-40 s on 2 cores, so it runs where CI=true (CI sets it) or SPORTSDET_LIGHT_INSTALL=1.
Also checks that importing the predict path pulls in no heavy library.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOUR_LABELS, COLOUR_SPEC, allow_heif_writing, make_colour_onnx
from PIL import Image

from sportsdet.bundle import save_bundle

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "timm", "sklearn", "matplotlib", "onnx", "scipy")
LABELS, SPEC = COLOUR_LABELS, COLOUR_SPEC


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for leak in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PIP_USER"):
        env.pop(leak, None)  # nothing from the dev environment may leak into the light one
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, **kwargs)


def test_predict_path_imports_no_heavy_library() -> None:
    code = (
        "import sys, sportsdet.cli, sportsdet.predict, sportsdet.runtime;"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = run([sys.executable, "-c", code])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"heavy modules imported at CLI/predict import time: {out.stdout}"


@pytest.fixture(scope="module")
def light_work() -> Path:
    if not (os.environ.get("CI") or os.environ.get("SPORTSDET_LIGHT_INSTALL")):
        # ~40 s of pip and venv work: CI (which runs with CI=true) always does it; locally on request.
        pytest.skip("builds a torch-free venv (~40 s); runs in CI, or set SPORTSDET_LIGHT_INSTALL=1")
    # Our own temp folder, not pytest's: pytest prunes old basetemp folders when other pytest
    # runs start, which would delete this venv under a long test on a shared machine.
    work = Path(tempfile.mkdtemp(prefix="sportsdet-light-"))
    yield work
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def light_venv(light_work: Path) -> Path:
    """A venv holding the sportsdet wheel and its base dependencies only."""
    work = light_work
    source = work / "source"
    source.mkdir()
    # Build from a copy: building in place would leave build/ and egg-info in the checkout.
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    )
    wheel = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                 "-w", str(work / "dist"), str(source)])
    assert wheel.returncode == 0, wheel.stderr[-3000:]
    venv = work / "venv"
    made = run([sys.executable, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    wheels = sorted((work / "dist").glob("sportsdet-*.whl"))
    installed = run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheels[0])])
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


def test_light_install_has_no_torch_and_predicts(light_venv: Path, light_work: Path) -> None:
    tmp_path = light_work / "case"
    tmp_path.mkdir()
    python, sportsdet = light_venv / "bin" / "python", light_venv / "bin" / "sportsdet"
    probe = run([str(python), "-c", "import importlib.util as u; print([m for m in ('torch', 'timm', "
                 "'sklearn', 'matplotlib') if u.find_spec(m)])"])
    assert probe.stdout.strip() == "[]", "the light install must not bring torch or other [train] libraries"

    bundle = save_bundle(
        tmp_path / "bundle", state_dict={"fc.weight": np.eye(3, dtype=np.float32)}, model_name="colour",
        model_config={}, labels=LABELS, preprocessing=SPEC, output_key="fc.weight",
    )
    make_colour_onnx(bundle / "model.onnx")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 48), (220, 30, 20)).save(photos / "a_red.jpg")
    Image.new("RGB", (30, 90), (20, 210, 40)).save(photos / "b_green.png")
    (photos / "c_broken.jpg").write_text("<html>not an image</html>")
    allow_heif_writing()
    Image.new("RGB", (64, 48), (220, 30, 20)).save(photos / "d_iphone.HEIC")  # decoded by a base dependency

    for model in (bundle, bundle / "model.onnx"):  # a bundle carrying model.onnx, or the .onnx alone
        out = run([str(sportsdet), "predict", "--model", str(model), "--format", "jsonl", str(photos)])
        assert out.returncode == 1, out.stderr  # one input failed -> exit code 1
        assert "Traceback" not in out.stderr
        records = {Path(r["input"]).name: r for r in map(json.loads, out.stdout.splitlines())}
        assert records["a_red.jpg"]["label"] == "red" and records["b_green.png"]["label"] == "green"
        assert records["d_iphone.HEIC"]["label"] == "red"
        assert records["c_broken.jpg"]["label"] is None and "HTML" in records["c_broken.jpg"]["error"]

    # No model trains without torch: `models` may not say "yes" for any of them (seed-cnn needs no
    # weights package, and says so).
    listed = run([str(sportsdet), "models", "--json"])
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert listed.returncode == 0 and not any(row["trainable"] for row in rows.values())
    assert rows["seed-cnn"]["weights_installed"]
    listed = run([str(sportsdet), "models"])
    assert "pip install 'sportsdet[train]'" in listed.stdout, listed.stdout

    info = run([str(sportsdet), "info", str(bundle), "--json"])
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["labels"] == LABELS

    torch_asked = run([str(sportsdet), "predict", "--model", str(bundle), "--backend", "torch",
                       str(photos / "a_red.jpg")])
    assert torch_asked.returncode == 2 and "Traceback" not in torch_asked.stderr
    assert "sportsdet[train]" in torch_asked.stderr
    # train, evaluate and export need the train extra: one line saying so, not a traceback.
    tree = tmp_path / "tree"
    for label, colour in (("red", (220, 30, 20)), ("green", (20, 210, 40))):
        (tree / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (48, 48), colour).save(tree / label / f"{i}.jpg")
    commands = [["train", str(tree), "--out", str(tmp_path / "run")], ["evaluate", str(bundle), str(tree)],
                ["export", str(bundle), "--out", str(tmp_path / "x.onnx")]]  # fmt: skip
    for command in commands:
        needs = run([str(sportsdet), *command])
        assert needs.returncode == 2 and "pip install 'sportsdet[train]'" in needs.stderr, needs.stderr
        assert "Traceback" not in needs.stderr


def test_serve_extra_on_the_light_install(light_venv: Path, light_work: Path) -> None:
    """`sportsdet serve` says which extra it needs; with `[serve]` it answers, still without torch."""
    import socket

    python, sportsdet = light_venv / "bin" / "python", light_venv / "bin" / "sportsdet"
    missing = run([str(sportsdet), "serve"])
    assert missing.returncode == 2 and "sportsdet[serve]" in missing.stderr
    assert "Traceback" not in missing.stderr

    wheel = sorted((light_work / "dist").glob("sportsdet-*.whl"))[0]
    installed = run([str(python), "-m", "pip", "install", "-q", f"{wheel}[serve]"])
    assert installed.returncode == 0, installed.stderr[-3000:]
    probe = run([str(python), "-c", "import importlib.util as u; print([m for m in ('torch', 'timm', "
                 "'sklearn', 'matplotlib') if u.find_spec(m)])"])
    assert probe.stdout.strip() == "[]", "the serve extra must not bring torch"

    model = make_colour_onnx(light_work / "serve-colour.onnx")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SPORTSDET_API_KEY")}
    server = subprocess.Popen([str(sportsdet), "serve", "--model", str(model), "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = (
        "import io, json, sys, time, urllib.request\n"
        "from PIL import Image\n"
        f"base = 'http://127.0.0.1:{port}'\n"
        "for _ in range(300):\n"
        "    try:\n"
        "        urllib.request.urlopen(base + '/readyz', timeout=1); break\n"
        "    except OSError: time.sleep(0.1)\n"
        "buf = io.BytesIO(); Image.new('RGB', (40, 40), (220, 30, 20)).save(buf, 'JPEG')\n"
        "req = urllib.request.Request(base + '/v1/predict', buf.getvalue(), {'Content-Type': 'image/jpeg'})\n"
        "print(json.load(urllib.request.urlopen(req, timeout=10))['results'][0]['label'])\n"
        "print(urllib.request.urlopen(base + '/', timeout=5).status)\n"
    )
    try:
        answer = run([str(python), "-c", client])
    finally:
        server.terminate()
        server.wait(20)
    assert answer.returncode == 0, answer.stderr[-2000:] + server.stderr.read()[-2000:]
    assert answer.stdout.split() == ["red", "200"]  # the page's assets are in the wheel
