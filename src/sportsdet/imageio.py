"""Reading images the way real folders and real users deliver them.

Every part of sportsdet that opens a picture goes through `load_image`, so a photo is decoded
the same way in `data check`, in training, in evaluation and in prediction. Pillow and NumPy
only: this module must work where torch is not installed.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import PIL
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError, features

from sportsdet.errors import ImageLoadError

# File name endings we treat as images when walking folders. Anything else is "not an image".
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
    | {".heic", ".heif", ".hif", ".avif"}
)
# Picture formats people have but load_image cannot decode: reported instead of silently skipped.
UNSUPPORTED_IMAGE_EXTENSIONS = frozenset(
    {".jxl", ".svg", ".ico", ".ppm", ".pgm", ".pbm", ".psd", ".eps", ".xcf", ".jp2"}
    | {".raw", ".cr2", ".nef", ".arw", ".dng"}  # cameras' raw files
)
# Container formats we decode (MPO is the multi-picture JPEG many phone cameras write; HEIF is
# the HEIC every iPhone saves by default, decoded by pillow-heif; AVIF is Pillow's own).
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF"})
# What the error for any other format suggests.
SUPPORTED_NAMES = "JPEG, PNG, HEIC, WebP, AVIF, GIF, BMP or TIFF"
# Refuse images above this many pixels before decoding them (decompression-bomb guard).
MAX_PIXELS = 120_000_000
# ... and above this many pixels as decoded (baseline JPEGs decode at reduced size when the caller
# needs less, so a 200 MP camera JPEG passes): a 400 KB PNG can declare 10000x11000 RGBA pixels, which
# took 2.2 GB to decode and flatten; at this bound decoding stays under ~500 MB. It admits a phone's
# full-resolution photo: an iPhone's 48 MP HEIC is 8064x6048 (48.8 million), refused at 40 million.
MAX_DECODE_PIXELS = 50_000_000
# Refuse images whose longer side is more than this many times the shorter one, before decoding:
# a 1,000,000x1 "photo" is a hostile or broken file, and no model input can be made from it.
MAX_ASPECT = 1000
# Refuse local files above this size before reading them (a 200 MP camera JPEG is ~60 MB).
MAX_FILE_BYTES = 256 * 2**20
# Refuse JPEGs of more scans than this: each scan of a progressive JPEG is one more pass over the
# whole picture, so a 100 KB file of 2,000 tiny scans took 25-45 s to decode. Encoders write 10 or
# so (libjpeg's progressive script: 10); libjpeg-turbo's djpeg has -maxscans for the same reason.
MAX_JPEG_SCANS = 100
# Smaller than this on either side and an image carries too little to classify.
MIN_SIDE = 32
# A picture the model's own resizing must enlarge more than this many times (Preprocessing.enlargement)
# is labelled with a warning: the built-in model (300 px) got 97 of 100 sports100 photos right at
# 224 px, 88 at 128 px, 74 at 96 px and 41 at 64 px, with nothing said above 32 px.
SMALL_FOR_MODEL = 2
# Longer side more than this many times the shorter: a strip; the model sees a thin slice of it
# (crop) or a squashed/letterboxed view. Still labelled, with a warning.
WARN_ASPECT = 8

# We enforce MAX_PIXELS ourselves with a clear message; keep Pillow's own guard above ours.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS * 2
ImageFile.LOAD_TRUNCATED_IMAGES = False

ImageSource = str | Path | bytes


def is_image_name(path: str | Path) -> bool:
    """True when the file name ends like an image (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


# Leading bytes of the formats we read: a file that starts like one but does not open is damaged,
# not "something else".
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


# HEIF and AVIF files are ISO media files ("....ftyp" then a brand), like MP4 videos, which are not
# photos: the brand tells them apart. `mif1`/`msf1` are generic still-image brands (HEIC or AVIF).
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_LOCK = threading.Lock()
_heif_registered = False  # True once pillow-heif's opener is registered in this process


def _video_kind(head: bytes) -> str | None:
    """'an MP4/MOV video', ... when the first bytes are a video container's, else None."""
    if head[4:8] == b"ftyp":
        return "an MP4/MOV video"  # an ISO media file that is not HEIF/AVIF (checked first)
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "a WebM/MKV video"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "an AVI video"
    return None


def _signature(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "AVIF" if brand in _AVIF_BRANDS else "HEIF" if brand in _HEIF_BRANDS else None
    return next((fmt for magic, fmt in _SIGNATURES if head.startswith(magic)), None)


def sniff_bytes(data: bytes) -> str | None:
    """The image format an image file's first bytes announce ("JPEG", "HEIF", ...), else None."""
    return _signature(data[:16])


def open_header(data: bytes, name: str = "image") -> Image.Image:
    """Pillow's lazy open of `data` (size, mode, format; no pixels decoded), HEIC included.

    For a quick look before `load_image`; Pillow's exceptions pass through (load_image says
    what is wrong with the file). Use it as a context manager.
    """
    enable_decoder(sniff_bytes(data), name)
    return Image.open(io.BytesIO(data))


def enable_decoder(image_format: str | None, name: str) -> None:
    """Make Pillow able to open HEIF/AVIF before it tries; a clear error when it cannot.

    pillow-heif is imported only when a HEIC photo turns up, so that every other run starts
    without its 80 ms import.
    """
    global _heif_registered
    if image_format == "HEIF":
        try:
            import pillow_heif
        except ImportError:
            raise ImageLoadError(
                name,
                "unsupported-format",
                "a HEIC/HEIF photo, and pillow-heif (which decodes them) is not installed: "
                "`pip install pillow-heif`, or convert the photo to JPEG",
            ) from None
        with _HEIF_LOCK:  # once per process; predict decodes in several threads
            if not _heif_registered:
                # Only the main picture is wanted: skip the thumbnails, depth maps and other extras.
                pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
                _heif_registered = True
    elif image_format == "AVIF" and not features.check("avif"):
        raise ImageLoadError(
            name,
            "unsupported-format",
            f"an AVIF photo, and this Pillow ({PIL.__version__}) was built without AVIF; "
            "install Pillow 11.3 or later, or convert the photo to JPEG",
        )


def _looks_like_text(head: bytes) -> bool:
    """An HTML error page or other text saved under an image name."""
    sample = head.lstrip()[:256].lower()
    if sample.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{", b"[")):
        return True
    if not sample:
        return False
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample)
    return printable / len(sample) > 0.95


_KIND_OF_FILE = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _open_regular_file(path: str | Path, label: str, max_bytes: int | None) -> tuple[int, int]:
    """(fd, size) of a regular file opened for reading; ImageLoadError for anything else.

    Opened non-blocking, so that opening a FIFO never waits for a writer, and checked with fstat
    before one byte is read. O_NONBLOCK has no effect on reads of regular files, so the
    descriptor is used as it is (one stat-like syscall is the whole cost of the checks).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ImageLoadError(label, "missing", "file not found") from None
    except IsADirectoryError:
        raise ImageLoadError(label, "missing", "is a folder, not an image file") from None
    except OSError as exc:
        raise ImageLoadError(label, "unreadable", f"cannot read file ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ImageLoadError(label, "missing", "is a folder, not an image file")
        if not stat.S_ISREG(info.st_mode):
            what = next((text for test, text in _KIND_OF_FILE if test(info.st_mode)), "not a regular file")
            raise ImageLoadError(label, "unreadable", f"is {what}, not a regular file; refusing to read it")
        if max_bytes is not None and info.st_size > max_bytes:
            raise ImageLoadError(
                label,
                "too-large",
                f"file is {info.st_size / 2**20:.0f} MB, above the {max_bytes / 2**20:.0f} MB limit "
                "for one image",
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


@contextmanager
def open_local_file(
    path: str | Path, *, name: str | None = None, max_bytes: int | None = MAX_FILE_BYTES
) -> Iterator[BinaryIO]:
    """Open a local image file for reading: THE way sportsdet opens a user's picture.

    Only regular files: a FIFO, a device (or a symlink to /dev/zero) or a socket is refused at
    once instead of hanging or filling memory, and so is a file above `max_bytes` (None: no
    cap, for model weights; `files.sha256_file` opens through here too). Raises
    `ImageLoadError` (kinds missing, unreadable, too-large). `read_local_file` reads it whole.
    """
    fd, _ = _open_regular_file(path, name or str(path), max_bytes)
    with os.fdopen(fd, "rb") as handle:
        yield handle


def read_local_file(path: str | Path, *, name: str | None = None, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """All bytes of a regular local file, at most `max_bytes` (see `open_local_file`)."""
    label = name or str(path)
    fd, size = _open_regular_file(path, label, max_bytes)
    chunks, total = [], 0
    try:
        while True:  # normally one read: the size is known
            chunk = os.read(fd, max(size - total, 0) + 1)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # it grew after the size check
                raise ImageLoadError(
                    label, "too-large", f"file is above the {max_bytes / 2**20:.0f} MB limit for one image"
                )
    except OSError as exc:
        raise ImageLoadError(label, "unreadable", f"cannot read file ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# The name ending a misnamed image of each format is given when `data check --rename-misnamed` fixes it.
FORMAT_EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "GIF": ".gif",
    "WebP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "HEIF": ".heic",
    "AVIF": ".avif",
}


def sniff_image_format(path: str | Path) -> str | None:
    """The image format a file's first bytes announce ("JPEG", "PNG", ...), else None.

    How a file whose name does not end like an image (a web scrape's `photo.php`, `img.ashx`,
    or no extension at all) is still recognised as a photo. Regular files only, opened like every
    other local image (a FIFO is never waited on); reads 32 bytes. Text that happens to start
    with "BM" is not a bitmap.
    """
    try:
        fd, _ = _open_regular_file(path, str(path), None)
    except ImageLoadError:
        return None
    try:
        head = os.read(fd, 32)
    except OSError:
        return None
    finally:
        os.close(fd)
    return sniff_head(head)


def sniff_head(head: bytes) -> str | None:
    """`sniff_image_format` of a file's first bytes (32 are enough), e.g. an upload's."""
    found = _signature(head[:32])
    return None if found is None or _looks_like_text(head[:32]) else found


def misleading_name_note(path: str | Path, image_format: str) -> str:
    """The one wording for a photo whose name hides that it is one (scan, check and predict)."""
    suffix = Path(path).suffix
    named = f"named '{suffix}'" if suffix else "with no image extension"
    return f"image with a misleading name: a {image_format} file {named}"


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as the picture is seen: swapped when its EXIF orientation turns it a
    quarter (5-8), as `load_image` will. Only the header is read."""
    width, height = image.size
    # Not image.getexif(): for a PNG it decodes every pixel (its EXIF may follow the pixels), which
    # ran ahead of the size guards. EXIF already read with the header is in info; TIFF tags are
    # the header.
    try:
        if image.info.get("exif"):
            exif = Image.Exif()
            exif.load(image.info["exif"])
            orientation = exif.get(0x0112)  # 0x0112: Orientation
        elif image.format == "TIFF":
            orientation = image.tag_v2.get(0x0112)  # type: ignore[attr-defined]
        else:
            orientation = None
    except Exception:  # noqa: BLE001  damaged EXIF: load_image keeps such a picture as stored
        orientation = None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def shape_problem(width: int, height: int, model: Any = None) -> tuple[str, str] | None:
    """("tiny" | "strip" | "small", why) for a picture too small or too elongated to classify well;
    else None. "small" only with `model` (its Preprocessing): a picture it must enlarge more than
    SMALL_FOR_MODEL times.

    predict still labels such pictures, with this as a warning; data check lists tiny ones and
    strips among its problem files (so --strict fails and --quarantine moves them).
    """
    short, long = min(width, height), max(width, height)
    if long > WARN_ASPECT * short:
        return "strip", (
            f"a {width}x{height} strip ({long / short:.0f}:1): the model sees only part of it or a "
            "distorted view, so its label is unreliable"
        )
    if short < MIN_SIDE:
        return "tiny", (
            f"only {width}x{height} pixels (less than {MIN_SIDE} on a side): too little detail for a "
            "reliable label"
        )
    enlarged = model.enlargement(width, height) if model is not None else 0.0
    if enlarged > SMALL_FOR_MODEL:
        return "small", (
            f"only {width}x{height} pixels, enlarged {enlarged:.1f}x to the model's "
            f"{model.input_size} px: labels of pictures this small are less reliable"
        )
    return None


def _open(source: ImageSource, name: str) -> Image.Image:
    data = source if isinstance(source, bytes) else read_local_file(source, name=name)
    if not data:
        raise ImageLoadError(name, "empty", "file is empty (0 bytes)")
    enable_decoder(sniff_bytes(data), name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data": not worth a line per file
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        known = _signature(data[:16])
        if known and not _looks_like_text(data[:1024]):
            raise ImageLoadError(
                name,
                "truncated" if len(data) < 1024 else "corrupt",
                f"starts like a {known} file but cannot be decoded (damaged, cut short, or a kind of {known} "
                "this reader does not support)",
            ) from None
        video = _video_kind(data[:16])
        if video:
            raise ImageLoadError(
                name,
                "not-an-image",
                f"{video}, not a photo: sportsdet labels photos; take frames from it first "
                "(e.g. `ffmpeg -i VIDEO -vf fps=1 frame%04d.jpg`, one a second)",
            ) from None
        if b"<svg" in data[:1024].lower():
            raise ImageLoadError(
                name, "unsupported-format", "an SVG drawing, not a photo; convert it to PNG or JPEG"
            ) from None
        if _looks_like_text(data[:1024]):
            # The HTML guess only fits a file named like a photo (a page saved as photo.jpg): a
            # notes.md or a README is just text.
            html = b"<html" in data[:1024].lower() or b"<!doctype" in data[:1024].lower()
            guess = " (an HTML page saved as an image?)" if html or is_image_name(str(name)) else ""
            raise ImageLoadError(name, "not-an-image", f"not an image: the file holds text{guess}") from None
        raise ImageLoadError(name, "not-an-image", "not an image: no known image format recognised") from None
    except Image.DecompressionBombError:
        raise ImageLoadError(name, "too-large", "image is too large to decode safely") from None
    except OSError as exc:
        if _looks_like_text(data[:1024]):  # text that happens to start like a header ("BM...")
            raise ImageLoadError(name, "not-an-image", "not an image: the file holds text") from None
        if "truncated" in str(exc).lower():
            raise ImageLoadError(name, "truncated", f"image data is truncated ({exc})") from None
        raise ImageLoadError(name, "corrupt", f"cannot decode image header ({exc})") from None
    except (ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise ImageLoadError(name, "corrupt", f"cannot decode image header ({exc})") from None
    except MemoryError:
        raise ImageLoadError(name, "too-large", "not enough memory to read this image's header") from None
    except Exception as exc:  # noqa: BLE001  Pillow's plugins raise odd types on crafted headers
        detail = f"cannot decode image header ({type(exc).__name__}: {exc})"
        raise ImageLoadError(name, "corrupt", detail) from None
    if image.format not in SUPPORTED_FORMATS:
        raise ImageLoadError(
            name,
            "unsupported-format",
            f"unsupported image format {image.format}; use {SUPPORTED_NAMES}",
        )
    if image.format in ("JPEG", "MPO") and data.count(b"\xff\xda") > MAX_JPEG_SCANS:  # cheap first
        scans = jpeg_scan_count(data, MAX_JPEG_SCANS + 1)
        if scans > MAX_JPEG_SCANS:
            raise ImageLoadError(
                name,
                "corrupt",
                f"a JPEG of more than {MAX_JPEG_SCANS} scans (cameras write about 10): decoding it would "
                "take minutes; a damaged or hostile file",
            )
    width, height = image.size
    # A baseline JPEG decodes at 1/2, 1/4 or 1/8 of its size when the caller needs less: the
    # MAX_DECODE_PIXELS check after `draft` is its bound (a progressive one needs all of its
    # coefficients in memory whatever the scale, so it is held to this one).
    scaled_later = image.format in ("JPEG", "MPO") and not image.info.get("progressive")
    if width * height > MAX_PIXELS and not scaled_later:
        raise ImageLoadError(
            name,
            "too-large",
            f"image is {width}x{height} pixels, above the {MAX_PIXELS:,}-pixel safety limit",
        )
    if width < 1 or height < 1 or max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageLoadError(
            name,
            "degenerate",
            f"image is {width}x{height} pixels, more than {MAX_ASPECT} times longer than wide; "
            "not a photo that can be classified",
        )
    return image


def jpeg_scan_count(data: bytes, stop_at: int) -> int:
    """How many scans (SOS segments) the first picture of a JPEG holds, counting up to `stop_at`.

    Walks the markers, skipping each segment by its length and each scan's entropy-coded data
    up to the next marker (0xFF 0x00 is a stuffed byte, 0xFF 0xD0-0xD7 a restart), so bytes
    that only look like a marker (inside an ICC profile, an EXIF thumbnail) are not counted.
    """
    size, position, scans = len(data), 2, 0
    while position + 4 <= size and scans < stop_at:
        if data[position] != 0xFF:
            return scans  # not where a marker must be: a damaged file, left to the decoder
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == 0xD9:  # end of image
            return scans
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker != 0xDA:
            continue
        scans += 1
        while True:  # the scan's entropy-coded data
            position = data.find(b"\xff", position)
            if position < 0 or position + 1 >= size:
                return scans
            following = data[position + 1]
            if following != 0x00 and not 0xD0 <= following <= 0xD7:
                break
            position += 2
    return scans


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited onto white."""
    mode = image.mode
    clear = image.info.get("transparency")
    if clear is not None and mode == "P":
        image = image.convert("RGBA")
        mode = image.mode
    elif clear is not None and (mode in ("1", "L", "RGB", "I", "F") or mode.startswith("I;16")):
        # A transparent colour (PNG tRNS) of a grey or RGB picture: dropped, its pixels came out
        # black. Where the picture has that colour, white.
        values = np.asarray(image)
        shown = np.array(_to_rgb_opaque(image))
        where = np.all(values == np.asarray(clear), axis=-1) if values.ndim == 3 else values == clear
        shown[where] = 255
        return Image.fromarray(shown, "RGB")
    return _to_rgb_opaque(image)


def _to_rgb_opaque(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        return image.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Pasting through the alpha mask onto white equals alpha_composite(white, rgba) bit for
        # bit, without its two extra full-size RGBA copies.
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16-bit and 32-bit greyscale: scale the value range to 8 bits instead of clipping.
        values = np.asarray(image, dtype=np.float64)
        # The range is guessed from the values (32-bit files do not say it): from nearly the
        # brightest, not the brightest, so that one stray pixel does not darken the picture.
        peak = float(np.percentile(values, 99.9)) if values.size else 0.0
        top = 65535.0 if mode.startswith("I;16") or peak > 255 else 255.0
        if mode == "F" and peak <= 1.0:
            top = 1.0
        grey = np.clip(values * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    return image.convert("RGB")


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation. Damaged EXIF must not cost us a good picture: keep it as stored."""
    try:
        # In place: without an orientation tag the copying form would copy every pixel for nothing.
        ImageOps.exif_transpose(image, in_place=True)
        return image
    except Exception:  # noqa: BLE001  Pillow raises many kinds on malformed EXIF blocks
        return image


def upright_rgb(image: Image.Image) -> Image.Image:
    """A Pillow image made as `load_image` makes a file's: its EXIF orientation applied (on a
    copy: the caller's image is left as it is) and any mode turned into 8-bit RGB (transparency
    onto white, 16-bit grey scaled, not clipped)."""
    try:
        image = ImageOps.exif_transpose(image) or image
    except Exception:  # noqa: BLE001  damaged EXIF: the picture as stored, as for a file
        pass
    return _to_rgb(image)


def load_image(
    source: ImageSource,
    *,
    name: str | None = None,
    min_size: int | None = None,
) -> Image.Image:
    """Decode an image file (or its bytes) into an upright 8-bit RGB Pillow image.

    - EXIF orientation is applied; GIF and other animations give their first frame.
    - Greyscale, palette, RGBA/LA, CMYK and 16-bit images come back as RGB.
    - `min_size`: when the caller will shrink the image so that its shorter side is
      `min_size`, big JPEGs are decoded at a reduced scale (Pillow's `draft`), which is much
      faster and still leaves at least `min_size` pixels on the shorter side.

    - Local files are read with `read_local_file` (regular files only, at most MAX_FILE_BYTES);
      images above MAX_DECODE_PIXELS at the size they would be decoded (only JPEGs decode
      smaller, with `min_size`; none above MAX_PIXELS) or more elongated than MAX_ASPECT are
      refused before decoding.

    Raises `ImageLoadError` (with `.kind` one of missing, unreadable, empty, not-an-image,
    unsupported-format, too-large, degenerate, corrupt, truncated) and never anything else for
    bad data.
    """
    return load_image_checked(source, name=name, min_size=min_size)[0]


def load_image_checked(
    source: ImageSource,
    *,
    name: str | None = None,
    min_size: int | None = None,
    model: Any = None,
) -> tuple[Image.Image, str | None]:
    """`load_image`, plus a warning when the picture is tiny or a strip, or small for `model` (its
    Preprocessing; see `shape_problem`)."""
    label = name or (f"<{len(source)} bytes>" if isinstance(source, bytes) else str(source))
    image = _open(source, label)
    stored_w, stored_h = image.size  # before draft mode shrinks it
    problem = shape_problem(*upright_size(image), model)
    warning = problem[1] if problem else None
    try:
        if min_size and image.format in ("JPEG", "MPO"):
            image.draft(image.mode, (min_size, min_size))
        if image.width * image.height > MAX_DECODE_PIXELS:  # the size as it will be decoded
            raise ImageLoadError(
                label,
                "too-large",
                f"image is {stored_w}x{stored_h} pixels, above the {MAX_DECODE_PIXELS:,}-pixel limit for "
                "decoding at full size (only JPEGs can be decoded smaller); shrink it first",
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "palette images with transparency" notes
            image.load()
            image = _upright(image)
            return _to_rgb(image), warning
    except ImageLoadError:
        raise
    except OSError as exc:
        message = str(exc)
        if "truncated" in message or "broken data stream" in message or "premature end" in message.lower():
            raise ImageLoadError(label, "truncated", f"image data is truncated ({message})") from None
        raise ImageLoadError(label, "corrupt", f"image data is corrupt ({message})") from None
    except (ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError) as exc:
        raise ImageLoadError(label, "corrupt", f"image data is corrupt ({exc})") from None
    except MemoryError:
        raise ImageLoadError(label, "too-large", "not enough memory to decode this image") from None
    except Exception as exc:  # noqa: BLE001  Pillow's decoders raise odd types on crafted files
        detail = f"image data is corrupt ({type(exc).__name__}: {exc})"
        raise ImageLoadError(label, "corrupt", detail) from None
