"""Hostile and careless input (issue 13): no hang, no memory blow-up, no lost file, one error line.

Anything that could hang on today's code runs in a subprocess with a timeout (and, where memory
is the point, an address-space limit), so a regression fails the test instead of stalling the
suite. Every input is generated here and small.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, image_bytes, make_colour_onnx, make_image, make_image_tree, make_tiny_bundle
from PIL import Image

import sportsdet
from sportsdet.errors import ImageLoadError, SportsdetError

SRC = str(Path(sportsdet.__file__).resolve().parents[1])

# Runs the real entry point under optional limits: address space (MB) and file size (bytes).
_LIMITED_MAIN = """
import resource, signal, sys
memory_mb, file_bytes = int(sys.argv[1]), int(sys.argv[2])
if memory_mb:
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
if file_bytes:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
sys.argv = ["sportsdet", *sys.argv[3:]]
from sportsdet.cli import main
main()
"""


def sportsdet_cli(
    *args: str, timeout: float = 60, memory_mb: int = 0, file_bytes: int = 0, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "COLUMNS": "250",
        "MALLOC_ARENA_MAX": "2",  # glibc reserves 64 MB of address space per thread arena otherwise
    }
    return subprocess.run(
        [sys.executable, "-c", _LIMITED_MAIN, str(memory_mb), str(file_bytes), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single `error:` line of a failed command (and no traceback)."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, (proc.returncode, proc.stderr[-3000:])
    return errors[0]


def jsonl(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    return {r["input"]: r for r in records}


@pytest.fixture
def colour_model(tmp_path: Path) -> Path:
    return make_colour_onnx(tmp_path / "colour.onnx")


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- item 5: workers


def test_a_worker_that_cannot_allocate_its_batch_is_an_error_not_a_hang(monkeypatch) -> None:
    from conftest import COLOUR_SPEC

    from sportsdet import runtime

    class NoMemory:  # numpy, except that the workers' batch arrays cannot be allocated
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def empty(*args, **kwargs):
            raise MemoryError("simulated: cannot allocate the batch")

    class Model:
        labels, preprocessing = ["a", "b"], COLOUR_SPEC

        def predict_proba(self, batch):
            return np.full((len(batch), 2), 0.5, np.float32)

    monkeypatch.setattr(runtime, "np", NoMemory())
    outcome: list[BaseException | list] = []

    def consume() -> None:
        try:
            outcome.append(list(runtime.stream_predictions([image_bytes()] * 3, Model(), workers=2)))
        except BaseException as exc:  # noqa: BLE001  the test inspects it
            outcome.append(exc)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "stream_predictions hung after its workers died"
    assert isinstance(outcome[0], SportsdetError) and "out of memory" in str(outcome[0])


def test_huge_batch_size_is_one_error_line(colour_model: Path, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(image_bytes())
    proc = sportsdet_cli(
        "predict", "-m", str(colour_model), str(tmp_path / "a.jpg"), "--batch-size", "100000"
    )
    assert "--batch-size 100000: must be between 1 and" in one_error_line(proc)  # the option named
    proc = sportsdet_cli("predict", "-m", str(colour_model), str(tmp_path / "a.jpg"), "--workers", "100000")
    assert "--workers 100000: must be between 1 and 64" in one_error_line(proc)


def test_model_files_claiming_a_huge_input_size_are_refused(tmp_path: Path) -> None:
    from conftest import COLOUR_SPEC

    from sportsdet.export import onnx_metadata

    meta = onnx_metadata(labels=["red", "green", "blue"], preprocessing=COLOUR_SPEC, model_name="colour")
    meta["sportsdet.preprocessing"] = json.dumps({**COLOUR_SPEC.to_dict(), "input_size": 40000})
    model = make_colour_onnx(tmp_path / "huge.onnx", metadata=meta)
    (tmp_path / "a.jpg").write_bytes(image_bytes())
    line = one_error_line(sportsdet_cli("predict", "-m", str(model), str(tmp_path / "a.jpg")))
    assert "huge.onnx" in line and "input_size must be an integer from 8 to 2048" in line

    bundle = make_tiny_bundle(tmp_path / "bundle")
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["preprocessing"]["input_size"] = 40000
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    line = one_error_line(sportsdet_cli("predict", "-m", str(bundle), str(tmp_path / "a.jpg")))
    assert "bundle.json" in line and "input_size" in line


# ----------------------------------------------------------------------------- item 6: FIFOs


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX feature")
def test_a_fifo_named_like_an_image_never_blocks(colour_model: Path, tmp_path: Path) -> None:
    tree = make_image_tree(tmp_path / "tree", per_class=3)
    fifo = tree / CLASSES[0] / "x.jpg"
    os.mkfifo(fifo)

    # predict, given directly and through a glob
    records = jsonl(sportsdet_cli("predict", "-m", str(colour_model), str(fifo), "-f", "jsonl", timeout=30))
    assert "named pipe" in records[str(fifo)]["error"]
    pattern = str(tree / "*" / "*.jpg")
    records = jsonl(sportsdet_cli("predict", "-m", str(colour_model), pattern, "-f", "jsonl", timeout=30))
    assert len(records) == 3 * len(CLASSES) + 1 and "named pipe" in records[str(fifo)]["error"]

    # data check: the walker passes it over (and counts it), and it is listed as a bad file by name
    # without being opened; reading it directly is refused
    proc = sportsdet_cli("data", "check", str(tree), "--report", str(tmp_path / "r.json"), timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ignored"] == {"not-a-regular-file": 1} and report["checked"] == 3 * len(CLASSES) + 1
    [problem] = report["problems"]
    assert problem["path"] == f"{CLASSES[0]}/x.jpg" and "unreadable" in problem.values()
    from sportsdet.data.check import check_file

    assert check_file(str(fifo), "x.jpg", None, CLASSES[0]).kind == "unreadable"

    # the training dataset and the feature cache's file hash refuse it at once
    from sportsdet.imageio import load_image
    from sportsdet.training.feature_cache import file_digest

    with pytest.raises(ImageLoadError, match="named pipe"):
        load_image(fifo)
    with pytest.raises(SportsdetError, match="named pipe"):
        file_digest(fifo)


def test_devices_and_oversized_files_are_refused_before_reading(colour_model: Path, tmp_path: Path) -> None:
    from sportsdet import imageio

    zero = tmp_path / "zero.jpg"
    zero.symlink_to("/dev/zero")
    sparse = tmp_path / "big.jpg"  # a sparse file: no disk used, but above the size cap
    with open(sparse, "wb") as handle:
        handle.truncate(imageio.MAX_FILE_BYTES + 1)
    records = jsonl(
        sportsdet_cli(
            "predict", "-m", str(colour_model), str(zero), str(sparse), "-f", "jsonl", memory_mb=2000
        )
    )
    assert "character device" in records[str(zero)]["error"]
    assert "above the 256 MB limit" in records[str(sparse)]["error"]


# ----------------------------------------------------------------------------- item 7: sizes


def test_strips_cost_no_more_than_photos(colour_model: Path, tmp_path: Path) -> None:
    (tmp_path / "strip.png").write_bytes(_png(20000, 1))  # ~100 bytes; resized whole it needed 5.6 GB
    (tmp_path / "line.png").write_bytes(_png(1_000_000, 1))
    (tmp_path / "long.png").write_bytes(_png(1000, 1))  # the longest strip still decoded
    crop = tmp_path / "crop.onnx"
    from conftest import COLOUR_SPEC

    from sportsdet.export import onnx_metadata
    from sportsdet.preprocess import Preprocessing

    spec = Preprocessing.from_dict({**COLOUR_SPEC.to_dict(), "resize": "crop", "input_size": 16})
    big = Preprocessing.from_dict({**spec.to_dict(), "input_size": 224, "crop_pct": 0.875})
    make_colour_onnx(crop, metadata=onnx_metadata(labels=["r", "g", "b"], preprocessing=spec, model_name="c"))
    proc = sportsdet_cli("predict", "-m", str(crop), str(tmp_path / "strip.png"), str(tmp_path / "line.png"),
                         str(tmp_path / "long.png"), "-f", "jsonl", memory_mb=1500, timeout=60)  # fmt: skip
    records = {Path(name).name: r for name, r in jsonl(proc).items()}
    assert "more than 1000 times longer than wide" in records["strip.png"]["error"]
    assert "more than 1000 times longer than wide" in records["line.png"]["error"]
    assert records["long.png"]["label"] is not None and "strip" in records["long.png"]["warning"]

    # The crop of a long strip resamples only the box it keeps: exact size, same picture as
    # resize-then-crop up to the edges (here: a smooth gradient).
    from sportsdet.preprocess import resize_image

    assert resize_image(Image.new("RGB", (1000, 1)), big).size == (224, 224)
    ramp = Image.fromarray(np.tile(np.linspace(0, 255, 600).astype(np.uint8), (60, 1))).convert("RGB")
    scale = big.decode_size / 60
    full = ramp.resize((round(600 * scale), big.decode_size), big.resample)
    left, top = (full.width - 224) // 2, (full.height - 224) // 2
    expected = np.asarray(full.crop((left, top, left + 224, top + 224)), dtype=int)
    assert np.abs(np.asarray(resize_image(ramp, big), dtype=int) - expected).max() <= 2


def _png_declaring(width: int, height: int, mode: str = "RGBA") -> bytes:
    """A few bytes of PNG whose header claims width x height pixels (a decompression bomb's head)."""
    import struct
    import zlib

    data = bytearray(_png(1, 1) if mode == "RGB" else _rgba_png())
    ihdr = 8  # signature, then the IHDR chunk: length, type, width, height, ...
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", width, height)
    data[ihdr + 21 : ihdr + 25] = struct.pack(">I", zlib.crc32(bytes(data[ihdr + 4 : ihdr + 21])))
    return bytes(data)


def _rgba_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (1, 1), (0, 0, 0, 0)).save(buffer, "PNG")
    return buffer.getvalue()


def test_small_files_declaring_huge_pictures_are_refused_before_decoding(
    colour_model: Path, tmp_path: Path
) -> None:
    # 10000x11000 RGBA is under the 120 MP header limit, but decoding and flattening it took 2.2 GB.
    (tmp_path / "bomb.png").write_bytes(_png_declaring(10000, 11000))
    (tmp_path / "fine.png").write_bytes(_png(64, 48))
    proc = sportsdet_cli("predict", "-m", str(colour_model), str(tmp_path), "-f", "jsonl", memory_mb=1200)
    records = {Path(name).name: r for name, r in jsonl(proc).items()}
    assert "10000x11000 pixels, above the 50,000,000-pixel limit" in records["bomb.png"]["error"]
    assert records["fine.png"]["label"] is not None

    from sportsdet.imageio import load_image

    # Transparent pictures are still flattened onto white exactly as before.
    pixels = np.asarray(load_image(_rgba_png()))
    assert pixels.tolist() == [[[255, 255, 255]]]


def _jpeg_segments(data: bytes) -> list[bytes]:
    """A JPEG cut into its segments (each scan with its entropy-coded data), EOI last."""
    position, segments = 2, []
    while data[position + 1] != 0xD9:
        marker = data[position + 1]
        end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xDA:
            while data[end] != 0xFF or data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end += 1
        segments.append(data[position:end])
        position = end
    return [*segments, data[position:]]


def test_a_jpeg_of_thousands_of_scans_is_refused_at_once() -> None:
    # Each progressive scan is one more pass over the picture: this 60 KB file took 4-5 s to
    # decode at 3000x3000, 2,000 scans 25-45 s, on every predict, data check or served request.
    from sportsdet.imageio import jpeg_scan_count, load_image

    buffer = io.BytesIO()
    Image.new("RGB", (1500, 1500), (120, 130, 140)).save(buffer, "JPEG", progressive=True, quality=90)
    good = buffer.getvalue()
    *segments, end = _jpeg_segments(good)
    assert jpeg_scan_count(good, 1000) == sum(s[1] == 0xDA for s in segments) == 10  # libjpeg's script
    bomb = b"\xff\xd8" + b"".join(segments) + segments[-1] * 200 + end
    started = time.monotonic()
    with pytest.raises(ImageLoadError, match="a JPEG of more than 100 scans") as info:
        load_image(bomb, min_size=240)
    assert info.value.kind == "corrupt" and time.monotonic() - started < 0.5
    # Bytes that look like scan markers inside another segment (here a comment) are not scans.
    comment = b"\xff\xfe" + (2 + 400).to_bytes(2, "big") + b"\xff\xda" * 200
    assert load_image(good[:2] + comment + good[2:]).size == (1500, 1500)


def test_a_baseline_jpeg_above_the_pixel_limit_is_decoded_smaller(monkeypatch) -> None:
    # A 200 MP phone JPEG was refused before `draft` could decode it at 1/8 of its size; the
    # limits here are shrunk so that a small picture plays its part.
    from sportsdet import imageio

    monkeypatch.setattr(imageio, "MAX_PIXELS", 1_000_000)
    monkeypatch.setattr(imageio, "MAX_DECODE_PIXELS", 1_000_000)
    picture = Image.new("RGB", (1600, 1200), (200, 30, 30))
    baseline, progressive, png = io.BytesIO(), io.BytesIO(), io.BytesIO()
    picture.save(baseline, "JPEG")
    picture.save(progressive, "JPEG", progressive=True)
    picture.save(png, "PNG")
    assert imageio.load_image(baseline.getvalue(), min_size=240).size == (400, 300)
    for too_big in (progressive, png):  # no smaller decoding: all of it would be in memory
        with pytest.raises(ImageLoadError, match="above the 1,000,000-pixel safety limit"):
            imageio.load_image(too_big.getvalue(), min_size=240)
    with pytest.raises(ImageLoadError, match="above the 1,000,000-pixel limit for decoding at full size"):
        imageio.load_image(baseline.getvalue())


def _zip_of_zeros(path: Path, members: int, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("photos/polo/0.png", _png(40, 40))
        for i in range(members):
            archive.writestr(f"photos/polo/pad{i}.bin", bytes(size))
    return path


def test_zip_and_tar_bombs_are_refused_before_filling_the_disk(tmp_path: Path, monkeypatch) -> None:
    import tarfile

    from sportsdet.data import fetch_dataset

    monkeypatch.setattr(fetch_dataset, "_RATIO_SLACK", 0)  # so that a 4 MB bomb is enough here
    monkeypatch.setattr(fetch_dataset, "MAX_RATIO", 50)
    bomb = _zip_of_zeros(tmp_path / "bomb.zip", members=4, size=1 << 20)
    target = tmp_path / "out"
    with pytest.raises(SportsdetError, match="bomb.zip: refusing to unpack it: its contents exceed"):
        fetch_dataset.unpack(bomb, target)
    assert not any(target.rglob("*.bin"))  # refused from the declared sizes, before writing

    tar_path = tmp_path / "bomb.tar.gz"
    with tarfile.open(tar_path, "w:gz") as archive:
        for i in range(4):
            info = tarfile.TarInfo(f"photos/polo/pad{i}.bin")
            info.size = 1 << 20
            archive.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(SportsdetError, match="bomb.tar.gz: refusing to unpack it"):
        fetch_dataset.unpack(tar_path, tmp_path / "out2")
    written = sum(p.stat().st_size for p in (tmp_path / "out2").rglob("*") if p.is_file())
    assert written <= 2 << 20  # stopped as soon as the running total passed the budget

    # An ordinary archive still unpacks.
    fine = _zip_of_zeros(tmp_path / "fine.zip", members=0, size=0)
    fetch_dataset.unpack(fine, tmp_path / "out3")
    assert (tmp_path / "out3" / "photos" / "polo" / "0.png").is_file()


def test_an_external_unpacker_is_stopped_when_it_passes_the_budget(tmp_path: Path, monkeypatch) -> None:
    from sportsdet.data import fetch_dataset

    # A stand-in for bsdtar that writes zeros for ever (a RAR bomb, as far as we can tell).
    tool = tmp_path / "bin" / "bsdtar"
    tool.parent.mkdir()
    tool.write_text(
        f"#!{sys.executable}\nimport sys, time\nargs = sys.argv[1:]\n"
        "with open(args[args.index('-C') + 1] + '/zeros.bin', 'wb') as out:\n"
        "    while True:\n        out.write(bytes(1 << 20)); out.flush(); time.sleep(0.01)\n"
    )
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(fetch_dataset, "_RATIO_SLACK", 4 << 20)
    archive = tmp_path / "bomb.rar"
    archive.write_bytes(b"Rar!\x1a\x07\x00" + bytes(100))
    with pytest.raises(SportsdetError, match="bomb.rar: refusing to unpack it: its contents exceed"):
        fetch_dataset.unpack(archive, tmp_path / "out")
    assert (tmp_path / "out" / "zeros.bin").stat().st_size < 200 << 20


# ----------------------------------------------------------------------------- item 9: one line


def test_disk_full_during_train_is_one_error_line(tmp_path: Path) -> None:
    data = make_image_tree(tmp_path / "data", per_class=4)
    run = tmp_path / "run"
    # Files up to 1 MB can be written (curves.png, metrics.csv), the 4 MB checkpoint cannot: the
    # failure comes from safetensors' own writer, as when the disk fills up in the middle of a run.
    proc = sportsdet_cli("train", str(data), "--out", str(run), "--model", "seed-cnn", "--epochs", "1",
                         "--set", "input_size=64", "--set", 'model_config={"filters": 32, "hidden": 256}',
                         "--batch-size", "8", file_bytes=1 << 20, timeout=240)  # fmt: skip
    line = one_error_line(proc)
    assert str(run / "checkpoints") in line and ".safetensors" in line and "File too large" in line


def test_safetensors_write_errors_name_the_file(tmp_path: Path) -> None:
    # safetensors says "I/O error: ... (os error 27)" without the path; the CLI finds and names it.
    code = _LIMITED_MAIN.replace(
        "from sportsdet.cli import main",
        "from sportsdet.cli import main, app\n"
        "@app.command('write-weights')\n"
        "def write_weights(path: str) -> None:\n"
        "    import numpy as np\n"
        "    from safetensors.numpy import save_file\n"
        "    save_file({'w': np.zeros(100_000, np.float32)}, path)\n",
    )
    target = tmp_path / "weights.safetensors"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code, "0", "4096", "write-weights", str(target)],
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    line = one_error_line(proc)
    assert str(target) in line and "File too large" in line


def test_a_failed_write_without_a_file_name_is_named(tmp_path: Path) -> None:
    # export writes its .onnx with Path.write_bytes; when the disk fills up that raises an OSError
    # without a file name, which the CLI finds in the traceback (here the write fails by a file
    # size limit, EFBIG, the same path as ENOSPC).
    code = _LIMITED_MAIN.replace(
        "from sportsdet.cli import main",
        "from sportsdet.cli import main, app\n"
        "@app.command('write-model')\n"
        "def write_model(path: str) -> None:\n"
        "    from pathlib import Path\n"
        "    Path(path).write_bytes(bytes(100_000))\n",
    )
    target = tmp_path / "model.onnx"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code, "0", "4096", "write-model", str(target)],
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    line = one_error_line(proc)
    assert f"{target}: File too large" in line


def test_disk_full_during_export_is_one_error_line(tmp_path: Path) -> None:
    # onnxruntime writes the optimised graph itself and reports a failed write only as "Protobuf
    # serialization failed"; the user must hear the real reason and the file, in one line.
    bundle = make_tiny_bundle(tmp_path / "bundle")
    out = tmp_path / "model.onnx"
    proc = sportsdet_cli("export", str(bundle), "--out", str(out), file_bytes=2000, timeout=120)
    line = one_error_line(proc)
    assert ".onnx: File too large" in line
    assert not out.exists() and not list(tmp_path.glob(".model.onnx.*"))


def test_bundle_config_that_does_not_fit_its_weights(tmp_path: Path) -> None:
    from sportsdet.bundle import load_bundle
    from sportsdet.errors import BundleError

    bundle = make_tiny_bundle(tmp_path / "bundle")
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["model"]["config"]["input_size"] = 40000  # would allocate gigabytes before torch complained
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="weights do not fit model 'seed-cnn'.*hidden.weight"):
        load_bundle(bundle).build_torch_model()
    (tmp_path / "a.jpg").write_bytes(image_bytes())
    line = one_error_line(
        sportsdet_cli("predict", "-m", str(bundle), str(tmp_path / "a.jpg"), "--backend", "torch")
    )
    assert "weights do not fit" in line


def test_cuda_device_without_a_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU; the error is about machines without one")
    bundle = make_tiny_bundle(tmp_path / "bundle")
    (tmp_path / "a.jpg").write_bytes(image_bytes())
    proc = sportsdet_cli("predict", "-m", str(bundle), str(tmp_path / "a.jpg"), "--backend", "torch",
                         "--device", "cuda")  # fmt: skip
    assert "no CUDA GPU is usable on this machine" in one_error_line(proc)
    proc = sportsdet_cli("predict", "-m", str(bundle), str(tmp_path / "a.jpg"), "--backend", "torch",
                         "--device", "warp-drive")  # fmt: skip
    assert "unknown torch device 'warp-drive'" in one_error_line(proc)
    # The built-in model runs on onnxruntime: --device cuda was taken and ignored in silence.
    proc = sportsdet_cli("predict", str(tmp_path / "a.jpg"), "--device", "cuda")
    said = one_error_line(proc)
    assert "--device cuda: " in said and "runs on onnxruntime, on the CPU" in said


# ----------------------------------------------------------------------------- item 11: csv


def test_csv_quotes_file_names_with_newlines(colour_model: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sportsdet.cli import app

    odd = tmp_path / "two\nlines.jpg"  # no comma or quote: those made the csv module quote it anyway
    odd.write_bytes(image_bytes())
    result = CliRunner().invoke(app, ["predict", "-m", str(colour_model), str(odd), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert len(rows) == 2 and rows[1][0] == str(odd) and rows[1][1] in ("red", "green", "blue")


# ----------------------------------------------------------------------------- item 13: markup


def test_class_names_that_look_like_markup_are_shown_as_written(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sportsdet.cli import app

    names = ["[bold]polo", "[red]rowing", "croquet"]
    data = make_image_tree(tmp_path / "data", classes=names, per_class=3)
    (data / "[bold]polo" / "extra.jpg").write_bytes(image_bytes())  # imbalance -> no warning needed
    runner = CliRunner()
    result = runner.invoke(app, ["data", "scan", str(data)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "[bold]polo" in result.stdout and "[red]rowing" in result.stdout

    (data / "croquet" / "bad [b]x.jpg").write_bytes(b"<html>not a photo</html>")
    result = runner.invoke(app, ["data", "check", str(data)], env={"COLUMNS": "200"})
    assert "croquet/bad [b]x.jpg" in result.stdout

    bundle = make_tiny_bundle(tmp_path / "bundle", labels=names)
    result = runner.invoke(app, ["predict", "-m", str(bundle), str(data / "croquet"), "--backend", "torch"],
                           env={"COLUMNS": "250"})  # fmt: skip
    assert any(name in result.stdout for name in names[:2]), result.stdout
    assert "polo" not in result.stdout.replace("[bold]polo", "")


# ----------------------------------------------------------------------------- item 15: warnings


def test_degenerate_photos_are_labelled_with_a_warning(colour_model: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sportsdet.cli import app

    (tmp_path / "dot.png").write_bytes(_png(1, 1))
    (tmp_path / "strip.png").write_bytes(_png(5000, 10))
    (tmp_path / "photo.jpg").write_bytes(image_bytes(size=64))
    runner = CliRunner()
    result = runner.invoke(app, ["predict", "-m", str(colour_model), str(tmp_path), "-f", "jsonl"])
    assert result.exit_code == 0, result.output
    records = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert records["dot.png"]["label"] and "only 1x1 pixels" in records["dot.png"]["warning"]
    assert records["strip.png"]["label"] and "5000x10 strip" in records["strip.png"]["warning"]
    assert records["photo.jpg"]["warning"] is None
    table = runner.invoke(app, ["predict", "-m", str(colour_model), str(tmp_path)], env={"COLUMNS": "250"})
    assert (
        "warning: only 1x1 pixels" in table.stdout
        and "2 of 3 input(s) came with a warning" in table.stderr
    )

    from sportsdet.data.check import check_file

    wide = tmp_path / "wide.png"
    wide.write_bytes(_png(600, 60))  # big enough, but a 10:1 strip
    assert check_file(str(wide), "wide.png", None, "x").kind == "strip"
    assert check_file(str(tmp_path / "dot.png"), "dot.png", None, "x").kind == "tiny"


# ----------------------------------------------------------------------------- fuzz


def _seeds() -> dict[str, bytes]:
    picture = make_image((30, 160, 90), size=40, seed=3)
    seeds = {}
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("WEBP", "webp")):
        buffer = io.BytesIO()
        picture.save(buffer, fmt)
        seeds[ext] = buffer.getvalue()
    return seeds


def _mutations(data: bytes, ext: str, rng: np.random.Generator, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        blob = bytearray(data)
        kind = i % 4
        if kind == 0:  # bit flips
            for _ in range(int(rng.integers(1, 9))):
                position = int(rng.integers(0, len(blob)))
                blob[position] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:  # cut short
            blob = blob[: int(rng.integers(0, len(blob)))]
        elif kind == 2:  # header fields overwritten (sizes, modes, lengths live in the first bytes)
            for _ in range(int(rng.integers(1, 4))):
                position = int(rng.integers(0, min(64, len(blob))))
                blob[position] = int(rng.integers(0, 256))
        else:  # a run of bytes duplicated or replaced with 0xff (markers in JPEG)
            start = int(rng.integers(0, len(blob)))
            length = int(rng.integers(1, 32))
            blob[start : start + length] = (
                b"\xff" * length if rng.random() < 0.5 else blob[start : start + length] * 2
            )
        out.append(bytes(blob))
    return out


_DATASET_SCRIPT = r"""
import re, resource, sys
from pathlib import Path
from sportsdet.data.dataset import DataFileError, ImageDataset
from sportsdet.preprocess import Preprocessing
# torch (a CUDA build) maps gigabytes of address space at import: limit what comes after it.
mapped = int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) << 10
resource.setrlimit(resource.RLIMIT_AS, (mapped + (1500 << 20),) * 2)
paths = sorted(Path(sys.argv[1]).rglob("*.*"))
spec = Preprocessing(input_size=16, resize="squash")  # as the colour model: same decode
dataset = ImageDataset([(p, 0) for p in paths], spec)
for index, path in enumerate(paths):
    try:
        image, _ = dataset[index]
        assert tuple(image.shape) == (3, 16, 16)
        print("ok", path.name)
    except DataFileError:
        print("error", path.name)
"""


def test_fuzzed_images_give_one_line_each_never_a_traceback_or_hang(
    colour_model: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(13)
    folder = tmp_path / "fuzz" / "mixed"
    folder.mkdir(parents=True)
    names = []
    for ext, data in _seeds().items():
        for i, blob in enumerate(_mutations(data, ext, rng, 60)):
            name = f"{ext}-{i:03d}.{ext}"
            (folder / name).write_bytes(blob)
            names.append(name)
    (tmp_path / "fuzz" / "other").mkdir()  # data check wants two classes
    (tmp_path / "fuzz" / "other" / "fine.png").write_bytes(_png(40, 40))
    names.append("fine.png")

    proc = sportsdet_cli("predict", "-m", str(colour_model), str(tmp_path / "fuzz"), "-f", "jsonl",
                         memory_mb=2500, timeout=120)  # fmt: skip
    records = {Path(name).name: r for name, r in jsonl(proc).items()}
    assert sorted(records) == sorted(names)
    assert all((r["label"] is None) != (r["error"] is None) for r in records.values())

    report = tmp_path / "check.json"
    proc = sportsdet_cli("data", "check", str(tmp_path / "fuzz"), "--report", str(report), "--workers", "2",
                         memory_mb=2500, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    files = json.loads(report.read_text())["files"]
    assert sorted(Path(f["rel"]).name for f in files) == sorted(names)

    env = {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "MALLOC_ARENA_MAX": "2",
    }
    proc = subprocess.run([sys.executable, "-c", _DATASET_SCRIPT, str(tmp_path / "fuzz")],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert sorted(line.split(" ", 1)[1] for line in lines) == sorted(names)
    # The loaders agree: what predict labelled, training can load, and the other way round.
    trained = {line.split(" ", 1)[1]: line.startswith("ok") for line in lines}
    assert {name: r["error"] is None for name, r in records.items()} == trained


# ----------------------------------------------------------------------------- item 14: misnamed photos


def _scrape_like_tree(root: Path) -> Path:
    """A tree as a web scrape leaves it: photos named .php/.aspx/no extension, beside real non-images."""
    tree = make_image_tree(root, per_class=3)
    (tree / CLASSES[0] / "get.php").write_bytes(image_bytes((10, 200, 10)))
    (tree / CLASSES[1] / "thumb.aspx").write_bytes(image_bytes((10, 10, 200), fmt="PNG"))
    (tree / CLASSES[1] / "image_123").write_bytes(image_bytes((90, 10, 200), fmt="GIF"))
    (tree / CLASSES[0] / "notes.txt").write_text("BM is not a bitmap\n")  # starts like BMP, is text
    (tree / CLASSES[0] / "page.php").write_text("<html>not a photo</html>")
    os.mkfifo(tree / CLASSES[1] / "pipe.php")  # never opened in a way that waits
    return tree


def test_photos_with_misleading_names_are_found_by_content_and_reported(tmp_path: Path) -> None:
    from sportsdet.data.discover import scan_dataset
    from sportsdet.data.splits import make_split

    tree = _scrape_like_tree(tmp_path / "scrape")
    scan = scan_dataset(tree)
    assert scan.misnamed == {
        f"{CLASSES[0]}/get.php": "JPEG",
        f"{CLASSES[1]}/image_123": "GIF",
        f"{CLASSES[1]}/thumb.aspx": "PNG",
    }
    # One decision for everyone: the photos are data (training splits them like any other) ...
    rels = {r.rel for r in scan.records}
    assert set(scan.misnamed) <= rels and f"{CLASSES[0]}/notes.txt" not in rels
    assert scan.ignored["not-an-image-name"] == 3  # notes.txt, page.php, the FIFO
    manifest = make_split(scan, "random:0.3", seed=0)
    assert sum(len(manifest.items(s)) for s in ("train", "valid", "test")) == len(CLASSES) * 3 + 3
    # ... and never silently
    assert any("3 image(s) with a misleading name" in w for w in scan.warnings)

    proc = sportsdet_cli("data", "check", str(tree), "--report", str(tmp_path / "r.json"), timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "image with a misleading name" in proc.stdout and "get.php" in proc.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert [m["path"] for m in report["misnamed"]] == sorted(scan.misnamed)
    assert report["checked"] == len(CLASSES) * 3 + 3 and not report["problems"]


def test_rename_misnamed_gives_image_names_and_never_overwrites(tmp_path: Path) -> None:
    tree = _scrape_like_tree(tmp_path / "scrape")
    taken = tree / CLASSES[0] / "get.jpg"
    taken.write_bytes(b"the user's own file")
    proc = sportsdet_cli("data", "check", str(tree), "--rename-misnamed", timeout=60)
    assert proc.returncode == 0 and "renamed 3 misnamed photo(s)" in proc.stderr, proc.stderr[-2000:]
    assert taken.read_bytes() == b"the user's own file"
    assert (tree / CLASSES[0] / "get~1.jpg").exists() and not (tree / CLASSES[0] / "get.php").exists()
    assert (tree / CLASSES[1] / "thumb.png").exists() and (tree / CLASSES[1] / "image_123.gif").exists()
    assert (tree / CLASSES[0] / "page.php").exists()  # not a photo: left alone
    from sportsdet.data.discover import scan_dataset

    assert scan_dataset(tree).misnamed == {}


def test_check_accepts_a_plain_folder_of_photos(colour_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "holiday"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(image_bytes((200, 10, 10)))
    (folder / "b.jpg").write_bytes(image_bytes((10, 200, 10)))
    (folder / "download.ashx").write_bytes(image_bytes((10, 10, 200)))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    proc = sportsdet_cli("data", "check", str(folder), "--report", str(tmp_path / "r.json"), timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["layout"] == "photos" and report["checked"] == 4 and report["ok"] == 3
    assert [p["path"] for p in report["problems"]] == ["broken.jpg"]
    assert [m["path"] for m in report["misnamed"]] == ["download.ashx"]
    # training still needs class folders, and says so in one line
    line = one_error_line(sportsdet_cli("data", "scan", str(folder), timeout=60))
    assert "no class folders" in line
    # among several sources, it is checked on its own (it was "no class folders found")
    sources = tmp_path / "sources"
    (sources / "polo").mkdir(parents=True)
    (sources / "polo" / "a.jpg").write_bytes(image_bytes((200, 10, 10)))
    line = one_error_line(sportsdet_cli("data", "check", str(folder), str(sources), timeout=60))
    assert "a folder of photos with no class folders; check it on its own" in line

    # predict uses the same walker (folder) and the same content test (glob, and a file named:
    # the shell's expansion of photos/* had no note), with the note
    for source in (str(folder), str(folder / "*"), str(folder / "download.ashx")):
        records = jsonl(sportsdet_cli("predict", "-m", str(colour_model), source, "-f", "jsonl", timeout=60))
        misnamed = records[str(folder / "download.ashx")]
        assert misnamed["label"] and "misleading name: a JPEG" in misnamed["warning"]
        assert records.get(str(folder / "a.jpg"), {"warning": None})["warning"] is None
