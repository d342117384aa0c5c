"""Images at the I/O edge: Pillow and NumPy only, pure functions.

Every image inside jaxstyle is an (H, W, 3) float32 RGB array in [0, 1]; this module is the
only place that sees files, uint8/uint16 samples, Pillow modes, alpha and EXIF orientation.

- `load_image`: a path or an array -> (H, W, 3) float32 RGB in [0, 1], with a pixel limit
  checked on the header before anything is decoded, EXIF orientation applied, every Pillow mode
  converted at its full precision, and one-line `ImageError`s that name the file.
- `as_rgb`: the library's one check of an image array handed in (uint8 -> /255, floats in
  [0, 1], shapes named).
- `resize_to`, `resize_max_side`, `scale_shape`, `style_size_for`: Lanczos resampling done in
  float32, and the sizing rules.
- `save_image`, `check_writable`: atomic writes (`jaxstyle.files`), settings in PNG text chunks.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from jaxstyle import files
from jaxstyle.files import ImageError
from jaxstyle.pixels import array_to_rgb, as_rgb, pil_to_rgb, png16_low_bytes, rgb_array

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "OUTPUT_FORMATS",
    "ImageError",
    "as_rgb",
    "rgb_array",
    "check_writable",
    "list_images",
    "load_image",
    "resize_max_side",
    "resize_to",
    "save_image",
    "scale_shape",
    "style_size_for",
    "to_uint8",
]

PathLike = str | os.PathLike

# Pillow's own default limit (PIL.Image.MAX_IMAGE_PIXELS, ~89.5 MP, 0.25 GiB of 8-bit RGB):
# enough for any camera photo, which `max_side` then shrinks; far below a decompression bomb.
DEFAULT_MAX_PIXELS = 89_478_485

# File names taken as images when a folder is listed (lower case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
# Extensions save_image writes, and the Pillow format of each.
OUTPUT_FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
_SAVE_OPTIONS: dict[str, dict] = {
    # 4:4:4 chroma: style transfer output is full of fine colour texture that 4:2:0 smears.
    "JPEG": {"quality": 95, "subsampling": 0},
    "WEBP": {"quality": 95},
}

# --------------------------------------------------------------------------- loading


def load_image(
    source: PathLike | np.ndarray,
    *,
    max_side: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read an image file (or take an array) as an (H, W, 3) float32 RGB array in [0, 1].

    Files: EXIF orientation is applied (the array is the image as a viewer shows it). Every
    Pillow mode becomes RGB at its full precision: 1-bit, L, P (palette, with transparency),
    RGB, CMYK (Pillow's conversion; embedded ICC profiles are not applied, samples are read as
    sRGB), YCbCr, 16-bit grayscale (I;16, I;16B, I: divided by 65535), 16-bit RGB and RGBA
    PNGs (all 16 bits, though Pillow itself only decodes their top 8), float F images (taken
    as [0, 1], or as Pillow's own 0-255 scale when they lie in [0, 255]). Alpha (LA, RGBA, PA,
    a tRNS colour) is composited over white: out = a * rgb + (1 - a) * 1. Multi-frame files
    (GIF, TIFF) give their first frame. The file is decoded completely, so a truncated file
    is an error here, not a grey band later.

    Arrays: uint8 (/255), uint16 (/65535), bool, or float already in [0, 1]; shapes (H, W),
    (H, W, 1), (H, W, 2) (gray + alpha), (H, W, 3), (H, W, 4) (RGBA). A copy is returned.

    max_side: if given and the longer side is larger, the image is resized (Lanczos, in
    float) so that its longer side is `max_side`; smaller images are left as they are. A JPEG
    over 4x that size is first decoded by libjpeg at 1/2, 1/4 or 1/8 scale, never below twice
    the final size (as Image.thumbnail does): a 24 MP photo loads in a fraction of the time
    and memory, within 1.5/255 of a full decode + resize.
    max_pixels: files whose header declares more pixels than this are refused before
    decoding (decompression bombs). None disables this check; Pillow's own limit
    (PIL.Image.MAX_IMAGE_PIXELS) then applies, and its warning becomes an ImageError too.
    Pillow always refuses over twice its limit: a max_pixels above that needs
    PIL.Image.MAX_IMAGE_PIXELS raised as well. Arrays are in memory already: not checked.

    Raises ImageError ("<file>: <problem>", one line) for a missing file, a directory, an
    unreadable file, a non-image, a truncated or corrupt image, an image over the pixel
    limit, or an array of the wrong shape, dtype or range.
    """
    if max_side is not None and int(max_side) < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    if isinstance(source, (str, os.PathLike)):
        image = _read_file(Path(source), max_pixels, max_side)
    else:
        image = array_to_rgb(np.asarray(source), "<array>")
    if max_side is not None:
        image = resize_max_side(image, max_side)
    return image


def _read_file(path: Path, max_pixels: int | None, max_side: int | None) -> np.ndarray:
    with _file_errors(path):
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that, inside open().
            # With our own limit, ours decides (checked just below, still before decoding);
            # without one, Pillow's warning must stop the load too, not scroll past.
            action = "error" if max_pixels is None else "ignore"
            warnings.simplefilter(action, Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as im:
            width, height = im.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageError(
                    path, f"image is {width}x{height} = {width * height} pixels, over the limit "
                          f"of {max_pixels} pixels (a decompression bomb?); pass a larger "
                          f"max_pixels to load it")
            if max_side is not None and im.format == "JPEG" and max(width, height) > 4 * max_side:
                # libjpeg can decode at 1/2, 1/4 or 1/8 scale (in the DCT domain): far faster
                # and smaller for a big photo. Like Image.thumbnail (reducing_gap=2), ask for
                # at least twice the final size, so a real Lanczos reduction still follows.
                th, tw = scale_shape((height, width), int(max_side))
                im.draft(None, (2 * tw, 2 * th))
            tiles = list(im.tile)
            im.load()  # decode everything now: truncation and corruption surface here
            low = png16_low_bytes(path, im, tiles)
            shown = ImageOps.exif_transpose(im)
            if low is not None:
                low = ImageOps.exif_transpose(low)
            return pil_to_rgb(shown, low, path)


@contextlib.contextmanager
def _file_errors(path: Path) -> Iterator[None]:
    """Turn whatever Pillow and the OS raise while reading `path` into one-line ImageErrors."""
    try:
        yield
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageError(path, "is a directory, not an image file") from None
    except PermissionError:
        raise ImageError(path, "permission denied (cannot read the file)") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image file (or a format Pillow cannot read)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(path, f"over Pillow's decompression-bomb limit "
                               f"(PIL.Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS}): {err}"
                         ) from None
    except MemoryError:
        raise ImageError(path, "not enough memory to decode the image") from None
    except OSError as err:
        text = str(err)
        if "truncated" in text:
            raise ImageError(path, f"truncated or incomplete image file ({text})") from None
        if err.errno is not None and err.strerror:
            raise ImageError(path, f"cannot read: {err.strerror}") from None
        raise ImageError(path, f"corrupt or unreadable image ({text})") from None
    except (SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as err:
        # Pillow's decoders report broken data with any of these.
        raise ImageError(path, f"corrupt or unreadable image ({type(err).__name__}: {err})"
                         ) from None


def list_images(directory: str | os.PathLike, what: str = "folder", *, recursive: bool = True
                ) -> tuple[str, ...]:
    """Sorted paths of the image files (IMAGE_SUFFIXES) in `directory` (and below it when
    `recursive`).

    InputError (one line naming `what`) when it is missing, not a directory, or holds none.
    """
    root = Path(directory).expanduser()
    if not root.exists():
        raise files.InputError(f"{what} {directory}: no such directory")
    if not root.is_dir():
        raise files.InputError(f"{what} {directory}: not a directory")
    found = sorted(str(p) for p in (root.rglob("*") if recursive else root.iterdir())
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not found:
        raise files.InputError(f"{what} {directory}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return tuple(found)



# --------------------------------------------------------------------------- resizing


def resize_to(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resample an (H, W, 3) image to size = (h, w) (extra trailing entries are ignored).

    Lanczos (a = 3) on float32 samples, one channel at a time (Pillow's "F" mode), so
    nothing passes through uint8. Pillow widens the kernel by the scale factor when shrinking,
    so a downscale is properly low-pass filtered (no aliasing). Lanczos can over/undershoot
    next to sharp edges; the result is clipped to [0, 1]. Returns float32 (h, w, 3).
    """
    image = rgb_array(image)
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"resize target must be at least 1x1, got {h}x{w}")
    if (h, w) == image.shape[:2]:
        return np.array(image, dtype=np.float32)
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32))
                   .resize((w, h), Image.Resampling.LANCZOS))
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def resize_max_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink an (H, W, 3) image so its longer side is `max_side`, keeping the aspect ratio.

    The shorter side becomes short * max_side / long rounded half up (at least 1). Images whose
    longer side is already <= max_side are returned unchanged (a float32 copy): this never
    upscales. Use `resize_to` for an exact size.
    """
    image = rgb_array(image)
    if int(max_side) < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return np.array(image, dtype=np.float32)
    return resize_to(image, scale_shape((h, w), int(max_side)))


def scale_shape(hw: Sequence[int], long_side: int) -> tuple[int, int]:
    """(h, w) scaled so that max(h, w) == long_side (up or down), aspect ratio kept: the
    other side rounded half up, at least 1. The one sizing rule of resizes and pyramids."""
    h, w, long_side = int(hw[0]), int(hw[1]), int(long_side)
    if h >= w:
        return long_side, max(1, math.floor(w * long_side / h + 0.5))
    return max(1, math.floor(h * long_side / w + 0.5)), long_side


def style_size_for(
    content_shape: Sequence[int], style_shape: Sequence[int], style_scale: float
) -> tuple[int, int]:
    """The (h, w) to resize a style image to: longer side = style_scale * content's longer side.

    This is jcjohnson/neural-style's -style_scale convention: its style images are scaled so
    that their longer side is ceil(style_scale * image_size), and image_size is the content's
    longer side. The style's aspect ratio is kept (shorter side rounded, at least 1); the
    style is scaled up or down as needed. Shapes may be (H, W) or (H, W, C).
    E.g. content 512x384, style 1000x800, style_scale 0.5 -> (256, 205).
    """
    if not (math.isfinite(style_scale) and style_scale > 0):
        raise ValueError(f"style_scale must be a finite number > 0, got {style_scale}")
    content_long = max(int(content_shape[0]), int(content_shape[1]))
    # The 1e-9 keeps a product like 1.1 * 100 = 110.00000000000001 from ceiling to 111.
    long_side = max(1, math.ceil(style_scale * content_long - 1e-9))
    return scale_shape((int(style_shape[0]), int(style_shape[1])), long_side)


# --------------------------------------------------------------------------- saving


def _output_format(path: Path) -> str:
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(OUTPUT_FORMATS)
        what = f"unknown image extension '{path.suffix}'" if path.suffix else "no extension"
        raise ImageError(path, f"{what}; use one of {known}")
    return fmt


def check_writable(path: PathLike) -> Path:
    """Fail fast, before a long run, if `save_image(path, ...)` could not write `path`.

    Checks the extension, then `files.target_problem` (not a directory, the directory exists,
    a temporary file can really be created there). Returns `path` as a Path; raises
    ImageError otherwise.
    """
    path = Path(path)
    _output_format(path)
    problem = files.target_problem(path)
    if problem:
        raise ImageError(path, problem)
    return path


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> uint8: round(clip(x, 0, 1) * 255)."""
    image = np.asarray(image, dtype=np.float64)
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_image(
    path: PathLike, image: np.ndarray, *, metadata: dict[str, str] | None = None
) -> Path:
    """Write an (H, W, 3) float RGB image in [0, 1] to `path`, atomically. Returns the Path.

    Samples become uint8 as round(clip(x, 0, 1) * 255) (uint8 arrays are written as they
    are). The format follows the extension (OUTPUT_FORMATS: .png, .jpg/.jpeg (quality 95,
    4:4:4), .webp, .tif/.tiff, .bmp). `metadata` ({key: text}, e.g. {"jaxstyle": json of the
    settings}) goes into PNG text chunks (tEXt, or iTXt for non-Latin-1 text; read back with
    `PIL.Image.open(path).text`) and, for JPEG, into one comment (COM) segment holding
    json.dumps(metadata) (`Image.open(path).info["comment"]`); other formats do not store it.
    The file is written to a temporary file in the same directory and renamed over `path`,
    so a crash or Ctrl-C never leaves a half-written image. ImageError (one line) for an
    unknown extension, a missing or unwritable directory, a bad image array.
    """
    path = Path(path)
    fmt = _output_format(path)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(path, f"expected an (H, W, 3) RGB image to save, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating) and arr.dtype != np.bool_:
            raise ImageError(path, f"cannot save an image of dtype {arr.dtype}; "
                                   f"give float in [0, 1] or uint8")
        if not np.all(np.isfinite(arr)):
            raise ImageError(path, "image to save contains NaN or infinite values")
        arr = to_uint8(arr)
    options = dict(_SAVE_OPTIONS.get(fmt, {}))
    if metadata:
        options.update(_metadata_options(path, fmt, metadata))
    problem = files.target_problem(path, probe=False)
    if problem:
        raise ImageError(path, problem)
    pil = Image.fromarray(np.ascontiguousarray(arr))
    try:
        files.atomic_write(path, lambda f: pil.save(f, format=fmt, **options))
    except OSError as err:
        if err.errno is None:  # Pillow's encoder, not the file system
            raise ImageError(path, f"cannot encode as {fmt}: {err}") from None
        raise ImageError(path, files.os_error_problem(path, err)) from None
    except ValueError as err:
        raise ImageError(path, f"cannot encode as {fmt}: {err}") from None
    return path


def _metadata_options(path: Path, fmt: str, metadata: dict[str, str]) -> dict:
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ImageError(path, f"metadata must map str to str, got {key!r}: "
                                   f"{type(value).__name__}")
        # PNG keywords: 1-79 Latin-1 characters, no NUL (PNG spec, section 11.3.4).
        if not 1 <= len(key) <= 79 or "\0" in key or not key.isprintable():
            raise ImageError(path, f"metadata key {key!r} must be 1-79 printable characters")
        try:
            key.encode("latin-1")
        except UnicodeEncodeError:
            raise ImageError(path, f"metadata key {key!r} must be Latin-1") from None
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        for key, value in metadata.items():
            info.add_text(key, value)  # tEXt when Latin-1, else iTXt (UTF-8)
        return {"pnginfo": info}
    if fmt == "JPEG":
        return {"comment": json.dumps(metadata, sort_keys=True).encode("utf-8")}
    return {}
