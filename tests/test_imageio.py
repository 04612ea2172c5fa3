"""Image loading and preprocessing on the awkward files real folders contain.

Every image is made here, in tmp_path, so each test states exactly what it feeds the loader.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sportsdet import imageio
from sportsdet.errors import ImageLoadError, SportsdetError
from sportsdet.imageio import is_image_name, load_image
from sportsdet.preprocess import Preprocessing, load_and_preprocess, normalize, preprocess, resize_image

RED = (230, 20, 20)
BLUE = (20, 20, 230)


def _noisy(size: tuple[int, int], colour: tuple[int, int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour)[None, None] + rng.integers(-10, 11, (size[1], size[0], 3)), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def _kind(path: Path | bytes) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert not isinstance(path, Path) or path.name in str(info.value)  # the message names the file
    return info.value.kind


def _mean(image: Image.Image, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    return np.asarray(image.crop(box) if box else image, dtype=np.float64).reshape(-1, 3).mean(axis=0)


# ----------------------------------------------------------------------------- formats and modes


@pytest.mark.parametrize(
    "fmt, suffix", [("WEBP", ".webp"), ("BMP", ".bmp"), ("TIFF", ".tiff"), ("PNG", ".png")]
)
def test_common_formats_load_as_rgb(tmp_path: Path, fmt: str, suffix: str) -> None:
    path = tmp_path / f"photo{suffix}"
    Image.new("RGB", (48, 36), RED).save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (48, 36)
    assert np.allclose(_mean(image), RED, atol=2)


def test_cmyk_jpeg_becomes_rgb_with_the_right_colour(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("RGB", (40, 40), RED).convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    image = load_image(path)
    assert image.mode == "RGB"
    assert np.allclose(_mean(image), RED, atol=12)


def test_rgba_png_is_composited_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # fully transparent black
    rgba.paste((200, 0, 0, 255), (0, 0, 20, 40))  # opaque red left half
    rgba.paste((0, 0, 200, 128), (20, 0, 40, 40))  # half-transparent blue right half
    path = tmp_path / "alpha.png"
    rgba.save(path)
    pixels = np.asarray(load_image(path))
    assert pixels.shape == (40, 40, 3)
    assert tuple(pixels[5, 5]) == (200, 0, 0)
    # 50% blue over white: (255*0.5, 255*0.5, 200*0.5 + 255*0.5), not black underneath
    assert np.allclose(pixels[5, 30], (127, 127, 227), atol=2)


def test_transparent_pixels_turn_white_not_black(tmp_path: Path) -> None:
    path = tmp_path / "clear.png"
    Image.new("RGBA", (40, 40), (0, 0, 0, 0)).save(path)
    assert np.asarray(load_image(path)).min() == 255


def test_la_greyscale_with_alpha(tmp_path: Path) -> None:
    la = Image.new("LA", (40, 40), (50, 255))
    la.paste((0, 0), (0, 0, 40, 20))  # transparent top half
    path = tmp_path / "la.png"
    la.save(path)
    pixels = np.asarray(load_image(path))
    assert tuple(pixels[30, 5]) == (50, 50, 50)
    assert tuple(pixels[5, 5]) == (255, 255, 255)


def test_palette_with_transparency(tmp_path: Path) -> None:
    palette_image = Image.new("P", (40, 40), 0)
    palette_image.putpalette([0, 0, 0, 10, 200, 10] + [0] * (256 * 3 - 6))
    palette_image.paste(1, (0, 0, 20, 40))  # green left half, index 0 (transparent) right half
    path = tmp_path / "palette.png"
    palette_image.save(path, transparency=0)
    pixels = np.asarray(load_image(path))
    assert tuple(pixels[5, 5]) == (10, 200, 10)
    assert tuple(pixels[5, 30]) == (255, 255, 255)


@pytest.mark.parametrize(
    ("mode", "ink", "clear", "expected"),
    [("L", 50, 0, 50), ("RGB", (50, 50, 50), (0, 0, 0), 50), ("1", 1, 0, 255), ("I;16", 13107, 0, 51)],
)
def test_a_transparent_colour_in_a_grey_or_rgb_png(tmp_path: Path, mode: str, ink, clear, expected) -> None:
    # PNG's tRNS names one colour transparent; for 1-bit, grey, 16-bit grey and RGB pictures it
    # was dropped: those pixels black, not white.
    values = np.zeros((40, 40), np.uint16 if mode == "I;16" else np.uint8)
    if mode == "RGB":
        image = Image.new(mode, (40, 40), clear)
        image.paste(ink, (0, 0, 20, 40))
    else:
        values[:, :20] = ink
        image = Image.fromarray(values.astype(bool) if mode == "1" else values)
    path = tmp_path / f"{mode.replace(';', '')}.png"
    image.save(path, transparency=clear)
    assert Image.open(path).mode == mode
    pixels = np.asarray(load_image(path))
    assert tuple(pixels[5, 5]) == (expected,) * 3
    assert tuple(pixels[5, 30]) == (255, 255, 255)


@pytest.mark.parametrize(
    ("mode", "value", "stray", "expected"), [("F", 0.5, 1.02, 128), ("I", 200, 256, 200)]
)
def test_one_stray_pixel_does_not_set_a_32_bit_pictures_range(tmp_path, mode, value, stray, expected) -> None:
    # The range of a float or 32-bit TIFF was read from its brightest pixel: one pixel at 1.02
    # turned a 0.5 grey black, one at 256 an 8-bit-range picture nearly black.
    image = Image.new(mode, (40, 40), value)
    image.putpixel((0, 0), stray)
    path = tmp_path / f"{mode}.tif"
    image.save(path)
    assert tuple(np.asarray(load_image(path))[20, 20]) == (expected,) * 3


def test_a_32_bit_picture_of_values_past_255_is_scaled_not_clipped(tmp_path: Path) -> None:
    # A 12-bit camera's values (0-4095) in a 32-bit TIFF: read as 16-bit, not as 8 bits clipped white.
    image = Image.new("I", (40, 40), 2048)
    image.putpixel((0, 0), 4095)
    path = tmp_path / "twelve-bit.tif"
    image.save(path)
    assert tuple(np.asarray(load_image(path))[20, 20]) == (8,) * 3  # 2048 / 65535 * 255


@pytest.mark.parametrize(
    ("orientation", "seen"), [(1, (40, 400)), (5, (400, 40)), (7, (400, 40)), (8, (400, 40))]
)
def test_each_quarter_turn_orientation_swaps_the_size_seen(tmp_path: Path, orientation: int, seen) -> None:
    # 5 and 7 (mirrored and turned) turn a quarter as 6 and 8 do.
    from sportsdet.imageio import upright_size

    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "turned.jpg"
    Image.new("RGB", (40, 400), (90, 120, 30)).save(path, exif=exif.tobytes())
    with Image.open(path) as image:
        assert upright_size(image) == seen
    assert load_image(path).size == seen


def test_reading_the_orientation_decodes_no_pixels(tmp_path: Path) -> None:
    # Pillow's getexif() loads a PNG whole (its EXIF may follow the pixels): the size check of a
    # 10000x11000 picture decoded it first (450 MB), ahead of every size guard.
    from sportsdet.imageio import upright_size

    Image.new("L", (300, 200), 9).save(tmp_path / "p.png")
    image = Image.open(tmp_path / "p.png")
    image.load = lambda: (_ for _ in ()).throw(AssertionError("decoded the pixels"))
    assert upright_size(image) == (300, 200)


def test_a_strip_warning_gives_the_size_as_the_picture_is_seen(tmp_path: Path) -> None:
    # Stored 40x400 with EXIF orientation 6 (a quarter turn): seen 400x40, but predict and data
    # check said "a 40x400 strip".
    from sportsdet.data.check import check_file
    from sportsdet.imageio import load_image_checked

    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "turned.jpg"
    Image.new("RGB", (40, 400), (90, 120, 30)).save(path, exif=exif.tobytes())
    image, warning = load_image_checked(path)
    assert image.size == (400, 40) and warning and warning.startswith("a 400x40 strip")
    checked = check_file(str(path), "polo/turned.jpg", None, "polo")
    assert (checked.width, checked.height) == (400, 40) and checked.detail.startswith("a 400x40 strip")


def test_a_file_that_starts_like_a_known_format_but_does_not_open_may_be_a_variant() -> None:
    # A well-formed TIFF that Pillow cannot read (16-bit grey with alpha) was called damaged.
    with pytest.raises(ImageLoadError, match=r"starts like a PNG file .*or a kind of PNG this reader"):
        load_image(b"\x89PNG\r\n\x1a\n" + bytes(2000))


def test_greyscale_jpeg_becomes_three_equal_channels(tmp_path: Path) -> None:
    path = tmp_path / "grey.jpg"
    Image.new("L", (40, 40), 90).save(path)
    pixels = np.asarray(load_image(path))
    assert pixels.shape == (40, 40, 3)
    assert np.array_equal(pixels[..., 0], pixels[..., 2])


def test_16_bit_greyscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.zeros((40, 40), dtype=np.uint16)
    values[:, :10], values[:, 10:20], values[:, 20:30], values[:, 30:] = 0, 16384, 32768, 65535
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")  # really stored as 16 bit
    pixels = np.asarray(load_image(path))
    assert pixels.dtype == np.uint8 and pixels.shape == (40, 40, 3)
    assert [int(pixels[0, x, 0]) for x in (0, 15, 25, 35)] == [0, 64, 128, 255]


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (40, 40), RED), Image.new("RGB", (40, 40), BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 2
    image = load_image(path)
    assert image.mode == "RGB"
    assert np.allclose(_mean(image), RED, atol=8)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored landscape 60x40, red left half; orientation 6 says "rotate 90 degrees clockwise to view".
    stored = Image.new("RGB", (60, 40), BLUE)
    stored.paste(RED, (0, 0, 30, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    image = load_image(path)
    assert image.size == (40, 60)  # width and height swapped
    # Turned clockwise, the left half of the stored picture is now on top.
    assert np.allclose(_mean(image, (0, 0, 40, 25)), RED, atol=12)
    assert np.allclose(_mean(image, (0, 35, 40, 60)), BLUE, atol=12)


# ----------------------------------------------------------------------------- phone formats


def _phone_photo(fmt: str, orientation: int | None = None) -> bytes:
    """A landscape 60x40 photo, red left half, in HEIF (an iPhone's HEIC) or AVIF."""
    from conftest import allow_heif_writing

    allow_heif_writing()
    stored = Image.new("RGB", (60, 40), BLUE)
    stored.paste(RED, (0, 0, 30, 40))
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, format=fmt, quality=90, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("fmt, suffix", [("HEIF", ".HEIC"), ("AVIF", ".avif")])
def test_phone_formats_load_upright(tmp_path: Path, fmt: str, suffix: str) -> None:
    path = tmp_path / f"IMG_0001{suffix}"
    path.write_bytes(_phone_photo(fmt, orientation=6))  # "turn 90 degrees clockwise to view"
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (40, 60)
    assert np.allclose(_mean(image, (0, 0, 40, 25)), RED, atol=20)  # the left half is now on top
    assert np.allclose(_mean(image, (0, 35, 40, 60)), BLUE, atol=20)
    assert imageio.sniff_image_format(path) == fmt


def test_heic_named_jpg_is_found_by_its_content(tmp_path: Path) -> None:
    path = tmp_path / "converted.jpg"  # some phone apps keep HEIC bytes under a .jpg name
    path.write_bytes(_phone_photo("HEIF"))
    assert load_image(path).size == (60, 40)


def test_damaged_heic_is_reported_as_such(tmp_path: Path) -> None:
    data = _phone_photo("HEIF")
    path = tmp_path / "cut.heic"
    path.write_bytes(data[: len(data) // 2])
    assert _kind(path) in ("truncated", "corrupt")
    with pytest.raises(ImageLoadError) as info:
        load_image(data[:40], name="head.heic")
    assert info.value.kind == "truncated" and "HEIF" in info.value.detail


@pytest.mark.parametrize(
    ("head", "said"),
    [
        (b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2", "an MP4/MOV video"),  # HEIF's container, not its brand
        (b"\0\0\0\x14ftypqt  \0\0\0\0qt  ", "an MP4/MOV video"),  # an iPhone's .MOV
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01", "a WebM/MKV video"),
        (b"RIFF\x00\x10\x00\x00AVI LIST", "an AVI video"),
    ],
)
def test_a_video_is_not_a_photo_and_the_error_says_how_to_get_frames(
    tmp_path: Path, head: bytes, said: str
) -> None:
    path = tmp_path / "clip.heic"  # whatever its name says
    path.write_bytes(head + bytes(3000))
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert info.value.kind == "not-an-image" and info.value.detail.startswith(said)
    assert "ffmpeg" in info.value.detail
    assert imageio.sniff_image_format(path) is None


def test_heic_without_pillow_heif_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _phone_photo("HEIF")
    monkeypatch.setitem(__import__("sys").modules, "pillow_heif", None)  # as if not installed
    with pytest.raises(ImageLoadError) as info:
        load_image(data, name="IMG_0002.HEIC")
    assert info.value.kind == "unsupported-format"
    assert "pip install pillow-heif" in info.value.detail and "IMG_0002.HEIC" in str(info.value)


def test_bytes_input_and_name_in_errors() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), RED).save(buffer, format="PNG")
    assert load_image(buffer.getvalue()).size == (40, 40)
    with pytest.raises(ImageLoadError) as info:
        load_image(b"<html>nope</html>", name="upload.jpg")
    assert info.value.kind == "not-an-image" and "upload.jpg" in str(info.value)


# ----------------------------------------------------------------------------- broken files


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert _kind(path) == "empty"


def test_html_page_saved_as_jpg(tmp_path: Path) -> None:
    path = tmp_path / "download.jpg"
    path.write_text("<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head><body></body></html>")
    assert _kind(path) == "not-an-image"


def test_random_bytes_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    assert _kind(path) == "not-an-image"


def test_truncated_jpeg(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    _noisy((200, 200), RED).save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert _kind(path) == "truncated"


def test_truncated_png(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    _noisy((200, 200), RED).save(buffer, format="PNG")
    data = buffer.getvalue()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    assert _kind(path) in ("truncated", "corrupt")


@pytest.mark.parametrize("fmt, suffix", [("ICO", ".ico"), ("PPM", ".ppm")])
def test_unsupported_format(tmp_path: Path, fmt: str, suffix: str) -> None:
    # Named .jpg on purpose: the format is found from the content, not the name.
    path = tmp_path / f"icon{suffix}.jpg"
    Image.new("RGB", (48, 48), RED).save(path, format=fmt)
    assert _kind(path) == "unsupported-format"


def test_missing_file_and_folder(tmp_path: Path) -> None:
    assert _kind(tmp_path / "nowhere.jpg") == "missing"
    with pytest.raises(ImageLoadError) as info:
        load_image(tmp_path)
    assert info.value.kind == "missing"


def test_decompression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100), RED).save(path)
    monkeypatch.setattr(imageio, "MAX_PIXELS", 5_000)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert info.value.kind == "too-large" and "5,000" in info.value.detail


def test_image_load_error_is_a_sportsdet_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(SportsdetError):
        load_image(path)


# ----------------------------------------------------------------------------- reduced-size decoding


def test_min_size_decodes_big_jpeg_smaller_but_big_enough(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    _noisy((2000, 1500), RED).save(path, quality=90)
    full = load_image(path)
    small = load_image(path, min_size=200)
    assert full.size == (2000, 1500)
    assert small.size[0] < 2000 and min(small.size) >= 200
    assert small.size[0] / small.size[1] == pytest.approx(2000 / 1500, rel=0.01)
    assert np.allclose(_mean(small), _mean(full), atol=3)


def test_min_size_ignored_for_png(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (400, 300), RED).save(path)
    assert load_image(path, min_size=50).size == (400, 300)


def test_is_image_name() -> None:
    assert is_image_name("a/B.JPG") and is_image_name("x.webp") and is_image_name(Path("y.tiff"))
    assert is_image_name("IMG_0001.HEIC") and is_image_name("x.avif")
    assert not is_image_name("notes.txt") and not is_image_name("photo.jxl") and not is_image_name("jpg")


# ----------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("policy", ["squash", "crop", "pad"])
@pytest.mark.parametrize("size", [(90, 30), (30, 90), (50, 50), (7, 300)])
def test_every_resize_policy_gives_a_square(policy: str, size: tuple[int, int]) -> None:
    spec = Preprocessing(input_size=24, resize=policy, crop_pct=0.875 if policy == "crop" else 1.0)
    resized = resize_image(Image.new("RGB", size, RED), spec)
    assert resized.size == (24, 24) and resized.mode == "RGB"
    array = preprocess(Image.new("RGB", size, RED), spec)
    assert array.shape == (3, 24, 24) and array.dtype == np.float32


def test_crop_keeps_the_centre_and_pad_keeps_everything() -> None:
    # A 3:1 strip: red | blue | red. Crop sees only the blue middle; pad shows all three plus fill.
    strip = Image.new("RGB", (90, 30), RED)
    strip.paste(BLUE, (30, 0, 60, 30))
    cropped = np.asarray(resize_image(strip, Preprocessing(input_size=30, resize="crop")))
    assert np.allclose(cropped[:, 5:25].reshape(-1, 3).mean(axis=0), BLUE, atol=3)
    spec = Preprocessing(input_size=30, resize="pad", mean=(0.0, 1.0, 0.0))
    padded = np.asarray(resize_image(strip, spec))
    assert tuple(padded[0, 15]) == (0, 255, 0)  # top band: the mean colour as fill
    assert np.allclose(padded[15, 2], RED, atol=3) and np.allclose(padded[15, 15], BLUE, atol=3)


def test_crop_keeps_the_middle_of_a_portrait_too() -> None:
    # A 1:3 portrait: red / blue / red, top to bottom. Crop sees only the blue middle.
    strip = Image.new("RGB", (30, 90), RED)
    strip.paste(BLUE, (0, 30, 30, 60))
    cropped = np.asarray(resize_image(strip, Preprocessing(input_size=30, resize="crop")))
    assert np.allclose(cropped[5:25, :].reshape(-1, 3).mean(axis=0), BLUE, atol=3)


def test_the_decode_size_rounds_up_so_the_crop_is_never_short() -> None:
    # 32 / 0.875 = 36.57: decoded at 36, the centre crop would hold 31.5 photo pixels of 32.
    assert Preprocessing(input_size=32, crop_pct=0.875).decode_size == 37
    assert Preprocessing(input_size=300, crop_pct=1.0).decode_size == 300
    assert Preprocessing(input_size=32, resize="pad", crop_pct=0.875).decode_size == 32


@pytest.mark.parametrize("std", [(0.0, 1.0, 1.0), (0.5, -0.2, 0.5)])
def test_a_std_of_zero_or_less_is_refused(std) -> None:
    with pytest.raises(SportsdetError, match="std must be positive"):
        Preprocessing(input_size=32, std=std)


def test_normalize_matches_hand_computation() -> None:
    pixels = np.zeros((2, 2, 3), dtype=np.uint8)
    pixels[0, 0] = (10, 128, 255)
    pixels[1, 1] = (0, 51, 204)
    spec = Preprocessing(input_size=8, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    out = normalize(pixels, spec)
    assert out.shape == (3, 2, 2) and out.dtype == np.float32
    expected_00 = [(10 / 255 - 0.5) / 0.2, (128 / 255 - 0.4) / 0.25, (255 / 255 - 0.3) / 0.5]
    expected_11 = [(0 - 0.5) / 0.2, (51 / 255 - 0.4) / 0.25, (204 / 255 - 0.3) / 0.5]
    assert np.allclose(out[:, 0, 0], expected_00, atol=1e-5)
    assert np.allclose(out[:, 1, 1], expected_11, atol=1e-5)


def test_normalize_rejects_non_rgb_arrays() -> None:
    with pytest.raises(SportsdetError):
        normalize(np.zeros((4, 4), dtype=np.uint8), Preprocessing(input_size=8))


def test_load_and_preprocess_uses_reduced_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    _noisy((1600, 1200), RED).save(path, quality=90)
    spec = Preprocessing(input_size=32, resize="crop", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    array = load_and_preprocess(path, spec)
    assert array.shape == (3, 32, 32)
    expected = (np.array(RED) / 255 - 0.5) / 0.5
    assert np.allclose(array.reshape(3, -1).mean(axis=1), expected, atol=0.05)


# ----------------------------------------------------------------------------- damaged headers and metadata


def _jpeg_bytes(exif: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    _noisy((60, 40), RED).save(buffer, format="JPEG", **({"exif": exif} if exif else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("keep", [3, 20, 100])
def test_jpeg_cut_inside_its_header_is_truncated(keep: int) -> None:
    with pytest.raises(ImageLoadError) as info:
        load_image(_jpeg_bytes()[:keep], name="cut.jpg")
    assert info.value.kind == "truncated"


def test_damaged_png_header_is_corrupt_not_a_foreign_file() -> None:
    buffer = io.BytesIO()
    _noisy((40, 40), RED).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[20] ^= 0xFF  # inside IHDR: its checksum no longer matches
    with pytest.raises(ImageLoadError) as info:
        load_image(bytes(data), name="x.png")
    assert info.value.kind == "corrupt" and "PNG" in info.value.detail


def test_text_starting_like_a_bmp_is_still_text() -> None:
    with pytest.raises(ImageLoadError) as info:
        load_image(b"BMX racing notes: heat 1, heat 2, final.\n" * 4, name="notes.bmp")
    assert info.value.kind == "not-an-image"


def test_svg_named_png_is_unsupported() -> None:
    with pytest.raises(ImageLoadError) as info:
        load_image(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', name="logo.png")
    assert info.value.kind == "unsupported-format" and "SVG" in info.value.detail


@pytest.mark.parametrize(
    "exif",
    [
        b"Exif\0\0MM\0*\0\0\xff\xff",  # IFD offset points past the end
        b"Exif\0\0II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x09\0\0\0",  # orientation 9 does not exist
    ],
)
def test_damaged_exif_keeps_the_picture_and_stays_quiet(exif: bytes) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any "Corrupt EXIF data" warning fails the test
        image = load_image(_jpeg_bytes(exif), name="odd.jpg")
    assert image.size == (60, 40) and image.mode == "RGB"


def test_text_is_called_an_html_page_only_when_it_could_be_one(tmp_path: Path) -> None:
    # A notes.md given to predict was asked whether it was "an HTML page saved as an image?".
    from sportsdet.imageio import ImageLoadError

    said = {}
    for name, text in [("SOURCE.md", "# Notes\nphotos from the web\n"), ("photo.jpg", "just some text\n"),
                       ("page.txt", "<!DOCTYPE html><html><body>x</body></html>")]:  # fmt: skip
        (tmp_path / name).write_text(text)
        with pytest.raises(ImageLoadError) as caught:
            load_image(tmp_path / name)
        said[name] = str(caught.value)
    assert said["SOURCE.md"].endswith("not an image: the file holds text")
    assert "(an HTML page saved as an image?)" in said["photo.jpg"] and "(an HTML page" in said["page.txt"]


def test_a_48_megapixel_phone_photo_is_within_the_decoding_limit() -> None:
    # An iPhone's full-resolution HEIC (8064x6048) was refused: "above the 40,000,000-pixel limit
    # for decoding at full size ... shrink it first". The service takes what the decoder takes.
    import io

    from sportsdet.imageio import MAX_DECODE_PIXELS, load_image_checked
    from sportsdet.serve.app import ServeConfig

    buffer = io.BytesIO()  # a flat picture: 0.7 MB as PNG, decoded at full size (not a JPEG)
    Image.new("RGB", (8064, 6048), (200, 30, 30)).save(buffer, "PNG", compress_level=1)
    image, warning = load_image_checked(buffer.getvalue(), name="IMG_0001.png")
    assert image.size == (8064, 6048) and warning is None
    assert MAX_DECODE_PIXELS <= 60_000_000  # and still a bound (~500 MB decoded)
    assert ServeConfig.max_pixels == MAX_DECODE_PIXELS
