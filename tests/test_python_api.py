"""sportsdet used from Python: the names `import sportsdet` offers, and the Predictor's inputs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, make_image, make_tiny_bundle
from PIL import Image

import sportsdet
from sportsdet.errors import SportsdetError
from sportsdet.imageio import load_image
from sportsdet.predict import Predictor


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    return Predictor(make_tiny_bundle(tmp_path_factory.mktemp("api") / "bundle"), top_k=2)


def test_the_public_names_are_offered_at_the_top_without_loading_them_up_front() -> None:
    # `sportsdet.Predictor` was an AttributeError: nothing but __version__ was offered.
    assert set(sportsdet.__all__) == {"__version__", *sportsdet._EXPORTS}
    for name in sportsdet.__all__:
        assert getattr(sportsdet, name) is not None, name
    assert sportsdet.Predictor is Predictor
    assert {"Predictor", "load_bundle"} <= set(dir(sportsdet))  # tab completion sees them
    light = "import sys, sportsdet; print(sorted({'numpy', 'PIL', 'onnxruntime'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", light], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    with pytest.raises(AttributeError, match="no attribute 'Predicter'"):
        sportsdet.Predicter  # noqa: B018


def test_type_checkers_see_every_public_name_with_its_type() -> None:
    # The names came from __getattr__ only, typed Any: `Predictor("builtin", top_k="five")` and a
    # misspelt method passed mypy --strict. The TYPE_CHECKING imports must name each one from its
    # module (checked here without a type checker, which the test install lacks).
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(sportsdet))
    guarded = next(
        node for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    )  # fmt: skip
    seen = {alias.asname or alias.name: node.module + (f":{alias.name}" if alias.asname else "")
            for node in guarded.body if isinstance(node, ast.ImportFrom) for alias in node.names}  # fmt: skip
    assert seen == sportsdet._EXPORTS


def test_the_builtin_model_loads_by_name() -> None:
    assert sportsdet.load_bundle("builtin").num_classes >= 105  # was "builtin: no such model bundle"


def test_load_bundle_opens_a_run_folder_as_predictor_does(tmp_path: Path) -> None:
    # Predictor, evaluate and export take a run folder; load_bundle said "bundle.json is missing;
    # this is not a sportsdet model bundle".
    make_tiny_bundle(tmp_path / "run" / "model")
    assert sportsdet.load_bundle(tmp_path / "run").path == tmp_path / "run" / "model"


def test_load_bundle_of_a_run_that_has_no_model_yet_says_so(tmp_path: Path) -> None:
    # It said "bundle.json is missing; this is not a sportsdet model bundle", as of any folder.
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"options": {}, "model": "lite0", "data": "photos"}))
    with pytest.raises(SportsdetError, match="this run has no model yet"):
        sportsdet.load_bundle(run)


def test_one_input_given_bare_is_one_input(predictor: Predictor, tmp_path: Path) -> None:
    # predict_sources("photo.jpg") read the string as its characters: 'p', 'h', ... and a "/"
    # labelled every photo on the machine.
    photo = tmp_path / "photo.jpg"
    make_image((200, 30, 30)).save(photo)
    for given in (str(photo), photo, photo.read_bytes()):
        results = list(predictor.predict_sources(given))
        assert len(results) == 1 and results[0].ok, (given, results)


def test_a_name_too_long_for_the_file_system_is_one_failed_input(predictor: Predictor, tmp_path: Path):
    # ENAMETOOLONG from Path.is_dir ended the whole stream (the CLI: exit 2, nothing labelled).
    photo = tmp_path / "photo.jpg"
    make_image((200, 30, 30)).save(photo)
    results = list(predictor.predict_sources(["x" * 300 + ".jpg", str(photo)]))
    assert [r.ok for r in results] == [False, True]
    assert "cannot be looked up: File name too long" in results[0].error
    assert results[0].uncertain is None  # read False ("certain") though it was never read
    assert results[0].to_dict()["uncertain"] is None


def _odd_photos(folder: Path) -> list[Path]:
    """Photos whose pixels are not what Image.convert("RGB") makes of them."""
    photo = make_image((40, 160, 60), size=48).resize((48, 32))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: a phone photo
    photo.transpose(Image.Transpose.ROTATE_90).save(folder / "phone.jpg", exif=exif.tobytes(), quality=95)
    grey16 = (np.asarray(photo.convert("L")).astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(folder / "grey16.png")
    clear = np.dstack([np.asarray(photo), np.zeros((32, 48), np.uint8)])  # fully transparent
    Image.fromarray(clear, "RGBA").save(folder / "clear.png")
    return [folder / "phone.jpg", folder / "grey16.png", folder / "clear.png"]


def test_a_pillow_image_is_read_as_its_file_is(predictor: Predictor, tmp_path: Path) -> None:
    # predict_image used image.convert("RGB"): a phone photo on its side, a 16-bit PNG clipped to
    # white, a transparent one's hidden pixels: other answers than the same file's.
    for path in _odd_photos(tmp_path):
        with Image.open(path) as opened:
            from_pillow = predictor.predict_image(opened)
        as_file = predictor.predict_image(load_image(path))
        np.testing.assert_allclose(from_pillow, as_file, atol=1e-6, err_msg=path.name)
        [result] = predictor.predict_sources([path])
        best = int(as_file.argmax())
        assert result.top_k[0] == (CLASSES[best], pytest.approx(float(as_file[best]), abs=1e-5))


def test_predict_image_misused_is_one_clear_error(predictor: Predictor, tmp_path: Path) -> None:
    # A path gave "AttributeError: 'str' object has no attribute 'mode'", an empty picture a
    # ZeroDivisionError, a cut-off JPEG Pillow's bare OSError.
    with pytest.raises(TypeError, match="predict_image takes a Pillow image, got str; for files"):
        predictor.predict_image("photo.jpg")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got ndarray"):
        predictor.predict_image(np.zeros((8, 8, 3), np.uint8))  # type: ignore[arg-type]
    with pytest.raises(SportsdetError, match=r"an empty picture \(0x0 pixels\)"):
        predictor.predict_image(Image.new("RGB", (0, 0)))
    whole = io.BytesIO()
    make_image((10, 200, 30)).resize((200, 200)).save(whole, format="JPEG")
    with pytest.raises(SportsdetError, match="the image cannot be decoded"):
        predictor.predict_image(Image.open(io.BytesIO(whole.getvalue()[: len(whole.getvalue()) // 2])))


def test_predictor_arguments_are_checked_when_it_is_made(tmp_path: Path) -> None:
    # Each was an error deep inside the first prediction (top_k=1.5 a slicing TypeError,
    # batch_size=2.5 "a worker failed", a backend without predict_proba an AttributeError), or
    # none at all (url_timeout=-1).
    bundle = make_tiny_bundle(tmp_path / "bundle")
    for arguments, said in (
        ({"top_k": 1.5}, r"top_k must be a whole number of at least 1, got 1.5"),
        ({"batch_size": 2.5}, r"batch_size must be a whole number of at least 1, got 2.5"),
        ({"threads": -1}, r"threads must be a whole number of at least 1, got -1"),
        ({"workers": 0}, r"workers must be a whole number of at least 1, got 0"),
        ({"url_max_bytes": 0}, r"url_max_bytes must be a whole number of at least 1, got 0"),
        ({"url_timeout": -1}, r"url_timeout must be a positive number of seconds, got -1"),
        ({"backend": object()}, r"backend object: not a backend; give 'auto', 'onnx', 'torch' or an object"),
    ):
        with pytest.raises(SportsdetError, match=said):
            Predictor(bundle, **arguments)
    assert Predictor(bundle, top_k=3, threads=1, workers=2, url_timeout=0.5).top_k == 3
    # numpy's numbers are numbers (they were refused by the first form of these checks)
    numpy_made = Predictor(bundle, top_k=np.int64(2), batch_size=np.int32(4), url_timeout=np.float32(5))
    assert numpy_made.top_k == 2 and numpy_made.batch_size == 4
    with pytest.raises(SportsdetError, match="url_timeout must be a positive number of seconds, got True"):
        Predictor(bundle, url_timeout=True)
    # An image used after its `with Image.open(...)` block: Pillow's bare AssertionError.
    photo = tmp_path / "p.png"
    make_image((10, 200, 30)).save(photo)
    with Image.open(photo) as opened:
        pass
    with pytest.raises(SportsdetError, match="the image was closed before it was read"):
        numpy_made.predict_image(opened)


def test_a_photo_opened_as_text_is_its_own_error(predictor: Predictor, tmp_path: Path) -> None:
    # open(path) (text mode) raised UnicodeDecodeError out of predict_sources: no photo got a result.
    photo = tmp_path / "b.jpg"
    make_image((10, 200, 30)).save(photo)
    with open(photo) as text:  # noqa: PTH123
        results = list(predictor.predict_sources([photo, text, photo.read_bytes()]))
    assert [r.error is None for r in results] == [True, False, True]
    assert results[1].error == "a text stream: open the photo in binary mode ('rb')"


def test_a_batch_of_the_wrong_shape_or_type_is_a_clear_error(predictor: Predictor) -> None:
    size = predictor.preprocessing.input_size
    # onnxruntime's own InvalidArgument (or torch's RuntimeError) reached the caller; uint8 passed.
    for batch, said in (
        (np.zeros((1, size, size, 3), np.float32), rf"float32 \[N, 3, {size}, {size}\], got \(1, {size}, "),
        (np.zeros((3, size, size), np.float32), r"got \(3, "),
        (np.zeros((1, 3, size, size), np.uint8), "got uint8"),
    ):
        with pytest.raises(SportsdetError, match=said):
            predictor.predict_batch(batch)
    assert predictor.predict_batch(np.zeros((2, 3, size, size), np.float32)).shape == (2, len(CLASSES))


def test_something_that_is_no_input_says_what_to_give(predictor: Predictor) -> None:
    # A Pillow image was "file not found" under its repr, an array "no image files match this pattern".
    image = make_image((200, 30, 30))
    results = list(predictor.predict_sources([image, np.zeros((4, 4, 3), np.uint8), None]))
    assert [r.input for r in results] == ["<Image #0>", "<ndarray #1>", "<NoneType #2>"]
    assert "not an input (Image)" in results[0].error
    assert "predictor.predict_image(image)" in results[0].error
    assert all("give file names, folders, patterns, URLs or bytes" in r.error for r in results)
    # Given bare, each is one input too: an image was "not iterable", an array one error per row,
    # a memoryview one per byte.
    for bare in (image, np.zeros((4, 4, 3), np.uint8), None):
        [result] = predictor.predict_sources(bare)
        assert "not an input" in result.error
    photo = io.BytesIO()
    image.save(photo, format="PNG")
    [result] = predictor.predict_sources(memoryview(photo.getvalue()))
    assert result.ok
    # An open file or a BytesIO, bare or in a list, is one photo (it was read line by line).
    photo.seek(0)
    [result] = predictor.predict_sources(photo)
    assert result.ok and result.input == "<stream #0>"
    photo.seek(0)
    [result] = predictor.predict_sources([photo])
    assert result.ok
