"""Images at the I/O edge, and colour handling: Pillow and NumPy only, pure functions.

Every image inside jaxstyle is an (H, W, 3) float32 RGB array in [0, 1]; this module is the
only place that sees files, uint8/uint16 samples, Pillow modes, alpha and EXIF orientation.

- `load_image`: a path or an array -> (H, W, 3) float32 RGB in [0, 1], with a pixel limit
  checked on the header before anything is decoded, EXIF orientation applied, every Pillow mode
  converted at its full precision, and one-line `ImageError`s that name the file.
- `resize_to`, `resize_max_side`, `style_size_for`: Lanczos resampling done in float32.
- `save_image`, `check_writable`: atomic writes (`jaxstyle.files`), settings in
  PNG text chunks.
- Colour preservation (Gatys, Bethge, Hertzmann, Shechtman 2016, "Preserving Color in Neural
  Artistic Style Transfer", arXiv 1606.05897): `match_color_histogram` (section 2.1),
  `luminance_image`, `match_luminance`, `luminance_transfer` (section 2.2), and the two-step
  wrappers `prepare_color_inputs` / `preserve_colors` the stylize side can call.
- `contact_sheet`: a labelled grid of images (the alpha/beta grid of Gatys et al.'s Fig. 3).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, PngImagePlugin, UnidentifiedImageError

from jaxstyle import files

__all__ = [
    "COLOR_MODES",
    "DEFAULT_MAX_PIXELS",
    "OUTPUT_FORMATS",
    "ImageError",
    "check_writable",
    "color_transfer_matrix",
    "contact_sheet",
    "load_image",
    "luminance_image",
    "luminance_transfer",
    "match_color_histogram",
    "match_luminance",
    "prepare_color_inputs",
    "preserve_colors",
    "resize_max_side",
    "resize_to",
    "rgb_to_yiq",
    "save_image",
    "style_size_for",
    "to_uint8",
    "yiq_to_rgb",
]

PathLike = str | os.PathLike

# Pillow's own default limit (PIL.Image.MAX_IMAGE_PIXELS, ~89.5 MP, 0.25 GiB of 8-bit RGB):
# enough for any camera photo, which `max_side` then shrinks; far below a decompression bomb.
DEFAULT_MAX_PIXELS = 89_478_485

# Transparent pixels are composited over this background (white, like a page or a browser).
BACKGROUND = 1.0

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

COLOR_MODES = ("none", "luminance", "histogram")


class ImageError(ValueError):
    """A bad image file or array: `str(err)` is one line, "<file>: <problem>"."""

    def __init__(self, path: object, problem: str) -> None:
        # One line whatever the underlying library said.
        self.path = str(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(self.path, self.problem)

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


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
        image = _array_to_rgb(np.asarray(source), "<array>")
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
            low = _png16_low_bytes(path, im, tiles)
            shown = ImageOps.exif_transpose(im)
            if low is not None:
                low = ImageOps.exif_transpose(low)
            return _pil_to_rgb(shown, low, path)


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


# Pillow decodes 16-bit RGB/RGBA PNGs to 8 bits by taking each sample's high byte (rawmodes
# "RGB;16B", "RGBA;16B"). Decoding the same data again with the little-endian rawmode of the
# same width takes the other byte of each big-endian sample: the low byte. The PNG row filters
# are undone byte-wise with the bytes-per-pixel of the rawmode, identical for both, so the two
# decodes together give every 16-bit sample. 16-bit gray+alpha (rawmode "LA;16B", 4 bytes a
# pixel) is decoded as raw "RGBA" bytes: L high, L low, A high, A low.
_PNG16_LOW_RAWMODE = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L", "LA;16B": "RGBA"}


def _png16_low_bytes(path: Path, im: Image.Image, tiles: list) -> Image.Image | None:
    """For a 16-bit RGB/RGBA/LA PNG: a second decode holding the bytes Pillow dropped.

    `tiles` is im.tile as it was before im.load() (which empties it). Returns None for every
    other image; `im.info["jaxstyle_rawmode"]` is set to Pillow's rawmode otherwise.
    """
    if im.format != "PNG" or len(tiles) != 1 or len(tiles[0]) != 4:
        return None
    # Tiles are (codec, extents, offset, args): a plain tuple before Pillow 11, a NamedTuple
    # (ImageFile._Tile) since; rebuild one of the same type.
    codec, extents, offset, rawmode = tiles[0]
    if codec != "zip" or not isinstance(rawmode, str) or rawmode not in _PNG16_LOW_RAWMODE:
        return None
    fields = (codec, extents, offset, _PNG16_LOW_RAWMODE[rawmode])
    low_tile = type(tiles[0])(*fields) if hasattr(tiles[0], "_fields") else fields
    with Image.open(path) as second:
        second.tile = [low_tile]
        second.load()
        low = second.copy()
    im.info["jaxstyle_rawmode"] = rawmode  # kept by exif_transpose, like all of im.info
    return low


def _pil_to_rgb(im: Image.Image, low: Image.Image | None, path: Path) -> np.ndarray:
    """A decoded Pillow image (any mode) -> (H, W, 3) float32 RGB in [0, 1], alpha composited."""
    alpha = None
    if low is not None:
        raw = np.asarray(low).astype(np.uint16)
        if im.info["jaxstyle_rawmode"] == "LA;16B":
            gray = (raw[..., 0] << 8) | raw[..., 1]
            alpha = (raw[..., 2] << 8) | raw[..., 3]
            return _composite(_unit(gray[..., None], 65535), _unit(alpha[..., None], 65535))
        samples = (np.asarray(im).astype(np.uint16) << 8) | raw
        rgb = _unit(samples[..., :3], 65535)
        if samples.shape[-1] == 4:
            alpha = _unit(samples[..., 3:], 65535)
        else:
            alpha = _transparent_color_alpha(samples, im.info.get("transparency"))
        return _composite(rgb, alpha)

    mode = im.mode
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
    elif mode == "1":
        im, mode = im.convert("L"), "L"
    elif mode in ("La", "RGBa"):  # premultiplied alpha
        im = im.convert(mode[:-1] + "A")
        mode = im.mode

    arr = np.asarray(im)
    if mode in ("L", "RGB"):
        values = arr.reshape(*arr.shape[:2], -1)
        return _composite(_unit(values, 255), _transparent_color_alpha(values,
                                                                    im.info.get("transparency")))
    if mode in ("LA", "RGBA"):
        return _composite(_unit(arr[..., :-1], 255), _unit(arr[..., -1:], 255))
    if mode.startswith("I;16"):
        values = arr.astype(np.uint16)[..., None]  # any byte order -> native uint16
        return _composite(_unit(values, 65535), _transparent_color_alpha(values,
                                                                     im.info.get("transparency")))
    if mode == "I":
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:
            raise ImageError(path, f"32-bit integer image with values in [{lo}, {hi}]; "
                                   f"only 0..65535 (16-bit) is understood")
        return _composite(_unit(arr[..., None], 65535), None)
    if mode == "F":
        return _composite(_float_samples(arr, path, allow_255=True)[..., None], None)
    try:
        rgb = im.convert("RGB")  # CMYK, YCbCr, HSV, ...
    except ValueError as err:
        raise ImageError(path, f"unsupported image mode {mode} ({err})") from None
    return _composite(_unit(np.asarray(rgb), 255), None)


def _transparent_color_alpha(values: np.ndarray, transparency) -> np.ndarray | None:
    """Alpha (H, W, 1) from a PNG tRNS colour: 0 where every channel equals it, else 1."""
    if transparency is None or isinstance(transparency, bytes):
        return None
    key = np.atleast_1d(np.asarray(transparency))
    if key.shape[0] != values.shape[-1]:
        return None
    return (~np.all(values == key, axis=-1, keepdims=True)).astype(np.float32)


def _unit(samples: np.ndarray, full_scale: int) -> np.ndarray:
    """Integer samples -> float32 in [0, 1]: samples / full_scale (float32 division: a 24 MP
    photo would take 0.6 GB as float64)."""
    return np.divide(samples, np.float32(full_scale), dtype=np.float32)


def _composite(color: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """color (H, W, 1 or 3), alpha (H, W, 1) or None, in [0, 1] -> (H, W, 3) float32."""
    color = np.asarray(color, dtype=np.float32)
    if alpha is not None:
        alpha = np.asarray(alpha, dtype=np.float32)
        # "Over" a white background: out = a * c + (1 - a) * BACKGROUND.
        color = alpha * color + (1.0 - alpha) * BACKGROUND
    if color.shape[-1] == 1:
        color = np.repeat(color, 3, axis=-1)
    return np.ascontiguousarray(color, dtype=np.float32)


def _float_samples(arr: np.ndarray, name: object, *, allow_255: bool = False) -> np.ndarray:
    """Float samples in [0, 1] (a rounding slack of 1e-3 is clipped away), or ImageError."""
    arr = np.asarray(arr, dtype=np.float64)
    if arr.size == 0:
        raise ImageError(name, "empty image")
    if not np.all(np.isfinite(arr)):
        raise ImageError(name, "image contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    slack = 1e-3
    if lo >= -slack and hi <= 1.0 + slack:
        return np.clip(arr, 0.0, 1.0)
    if allow_255 and lo >= -slack and hi <= 255.0 + slack:
        # Pillow's own float convention: convert("F") of an 8-bit image gives 0..255.
        return np.clip(arr / 255.0, 0.0, 1.0)
    raise ImageError(name, f"float image values lie in [{lo:.4g}, {hi:.4g}], expected [0, 1]")


def _array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    """An in-memory image array (see load_image) -> (H, W, 3) float32 RGB in [0, 1]."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise ImageError(name, f"expected an (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or "
                               f"(H, W, 4) image array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(name, f"empty image array of shape {arr.shape}")
    if arr.dtype == np.uint8:
        values = _unit(arr, 255)
    elif arr.dtype == np.uint16:
        values = _unit(arr, 65535)
    elif arr.dtype == np.bool_:
        values = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.floating):
        values = _float_samples(arr, name)
    else:
        raise ImageError(name, f"image arrays must be uint8, uint16, bool or float in [0, 1], "
                               f"got {arr.dtype}")
    if values.shape[-1] in (2, 4):
        return _composite(values[..., :-1], values[..., -1:])
    return _composite(values, None)


# --------------------------------------------------------------------------- resizing


def _check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{what} must be an (H, W, 3) RGB array, got shape {image.shape}")
    return image


def as_rgb_float32(image: Any, what: str = "image") -> np.ndarray:
    """An (H, W, 3) float32 array of `image` (array-like), finite; ValueError naming `what`.

    The library's entry check for images handed in as arrays (stylize, pyramids)."""
    arr = np.asarray(_check_image(image, what), np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or inf values")
    return arr


def as_content_and_styles(content: Any, styles: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    """(content, [styles]) through `as_rgb_float32`; `styles` is one image or a list/tuple."""
    style_list = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    return (as_rgb_float32(content, "content image"),
            [as_rgb_float32(s, f"style image {k}") for k, s in enumerate(style_list)])


def resize_to(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resample an (H, W, 3) image to size = (h, w) (extra trailing entries are ignored).

    Lanczos (a = 3) on float32 samples, one channel at a time (Pillow's "F" mode), so
    nothing passes through uint8. Pillow widens the kernel by the scale factor when shrinking,
    so a downscale is properly low-pass filtered (no aliasing). Lanczos can over/undershoot
    next to sharp edges; the result is clipped to [0, 1]. Returns float32 (h, w, 3).
    """
    image = _check_image(image)
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
    image = _check_image(image)
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


# --------------------------------------------------------------------------- colour

# YIQ (NTSC 1953, FCC): Y is luma, I and Q chroma. Y's row sums to 1 and I's and Q's to 0, so
# a gray pixel (r = g = b = v) has Y = v and I = Q = 0. The inverse is computed, not a rounded
# published table, so RGB -> YIQ -> RGB is exact up to float rounding.
_RGB_TO_YIQ = np.array([
    [0.299, 0.587, 0.114],
    [0.595716, -0.274453, -0.321263],
    [0.211456, -0.522591, 0.311135],
])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def rgb_to_yiq(image: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> (..., 3) YIQ: [Y, I, Q] = M @ [R, G, B] with the NTSC matrix M (float64)."""
    return np.asarray(image, dtype=np.float64) @ _RGB_TO_YIQ.T


def yiq_to_rgb(yiq: np.ndarray) -> np.ndarray:
    """(..., 3) YIQ -> (..., 3) RGB with the exact inverse of rgb_to_yiq's matrix (float64)."""
    return np.asarray(yiq, dtype=np.float64) @ _YIQ_TO_RGB.T


def luminance_image(image: np.ndarray) -> np.ndarray:
    """The luminance-only image the luminance transfer runs on: (H, W, 3) gray, Y replicated.

    Y = 0.299 R + 0.587 G + 0.114 B (the Y of YIQ, as Gatys et al. 2016, section 2.2). VGG
    wants three channels, so Y is repeated into R, G and B. float32 in [0, 1].
    """
    image = _check_image(image)
    y = rgb_to_yiq(image)[..., :1]
    return np.repeat(np.clip(y, 0.0, 1.0), 3, axis=-1).astype(np.float32)


def match_luminance(style: np.ndarray, content: np.ndarray, *, eps: float = 1e-8) -> np.ndarray:
    """The style's luminance image with its mean and spread matched to the content's.

    Gatys et al. 2016, section 2.2: before a luminance-only transfer, the style luminance is
    L_s' = (sigma_c / sigma_s) (L_s - mu_s) + mu_c, mu and sigma being the mean and standard
    deviation of Y over all pixels, so that the two luminance histograms share their first
    two moments. Returns (H_s, W_s, 3) float32, Y' replicated, clipped to [0, 1].
    eps guards a flat style (sigma_s = 0).
    """
    ys = rgb_to_yiq(_check_image(style, "style"))[..., 0]
    yc = rgb_to_yiq(_check_image(content, "content"))[..., 0]
    matched = (yc.std() / (ys.std() + eps)) * (ys - ys.mean()) + yc.mean()
    return np.repeat(np.clip(matched, 0.0, 1.0)[..., None], 3, axis=-1).astype(np.float32)


def luminance_transfer(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Combine the stylized image's luminance with the content's colour (chroma).

    Gatys et al. 2016, section 2.2, in YIQ: out = YIQ->RGB(Y of `stylized`, I and Q of
    `content`). `stylized` may be the gray (Y-replicated) output of a luminance-only run or
    any RGB image. Both (H, W, 3) with the same H, W. Returns (H, W, 3) float32 RGB clipped
    to [0, 1]; where nothing was clipped, the output's Y equals the stylized image's Y and its
    I, Q equal the content's.
    """
    stylized = _check_image(stylized, "stylized")
    content = _check_image(content, "content")
    if stylized.shape != content.shape:
        raise ValueError(f"stylized {stylized.shape} and content {content.shape} images must "
                         f"have the same shape")
    yiq = rgb_to_yiq(content)
    yiq[..., 0] = rgb_to_yiq(stylized)[..., 0]
    return np.clip(yiq_to_rgb(yiq), 0.0, 1.0).astype(np.float32)


def _sqrt_psd(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Symmetric square root S^(1/2) (or S^(-1/2)) of a symmetric positive definite 3x3."""
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, 0.0)
    power = -0.5 if inverse else 0.5
    return (vecs * vals**power) @ vecs.T


def color_transfer_matrix(
    style: np.ndarray, content: np.ndarray, *, method: str = "pca", eps: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) of the linear colour transfer x' = A x + b (Gatys et al. 2016, section 2.1).

    With mu_s, Sigma_s and mu_c, Sigma_c the per-channel means and 3x3 RGB covariances of the
    style and content pixels (population covariance, over all pixels; eps * I is added to both
    so that a flat or gray image has an invertible covariance), A is chosen so that
    A Sigma_s A^T = Sigma_c, and b = mu_c - A mu_s:
      "pca":      A = Sigma_c^(1/2) Sigma_s^(-1/2), symmetric square roots from the
                  eigendecomposition (the Image Analogies colour matching the paper cites);
      "cholesky": A = L_c L_s^(-1), with Sigma = L L^T the Cholesky factors.
    Returns A (3, 3) and b (3,), float64.
    """
    if method not in ("pca", "cholesky"):
        raise ValueError(f"method must be 'pca' or 'cholesky', got {method!r}")
    xs = np.asarray(_check_image(style, "style"), dtype=np.float64).reshape(-1, 3)
    xc = np.asarray(_check_image(content, "content"), dtype=np.float64).reshape(-1, 3)
    mu_s, mu_c = xs.mean(axis=0), xc.mean(axis=0)
    cov_s = np.cov(xs, rowvar=False, bias=True) + eps * np.eye(3)
    cov_c = np.cov(xc, rowvar=False, bias=True) + eps * np.eye(3)
    if method == "pca":
        a = _sqrt_psd(cov_c) @ _sqrt_psd(cov_s, inverse=True)
    else:
        a = np.linalg.cholesky(cov_c) @ np.linalg.inv(np.linalg.cholesky(cov_s))
    return a, mu_c - a @ mu_s


def match_color_histogram(
    style: np.ndarray, content: np.ndarray, *, method: str = "pca", clip: bool = True
) -> np.ndarray:
    """The style image recoloured so its RGB mean and covariance equal the content's.

    Gatys et al. 2016, section 2.1 ("colour histogram matching"): every style pixel x becomes
    A x + b with (A, b) from `color_transfer_matrix` (default "pca", the symmetric
    eigendecomposition square root; "cholesky" is the paper's other variant). Run the style
    transfer with the returned image as the style: the result keeps the content's colours.
    Returns (H_s, W_s, 3) float32, clipped to [0, 1] (clip=False returns the exact affine
    map, whose mean and covariance match the content's up to eps).
    """
    a, b = color_transfer_matrix(style, content, method=method)
    out = np.asarray(style, dtype=np.float64) @ a.T + b
    if clip:
        out = np.clip(out, 0.0, 1.0)
    return out.astype(np.float32)


def prepare_color_inputs(
    content: np.ndarray, styles: np.ndarray | Sequence[np.ndarray], mode: str
) -> tuple[np.ndarray, np.ndarray | list[np.ndarray]]:
    """The (content, styles) to stylize for a colour mode in COLOR_MODES (before the run).

    "none": unchanged. "histogram": each style recoloured by match_color_histogram(style,
    content). "luminance": the content's luminance_image, and each style's luminance matched
    to the content's (match_luminance); after the run, `preserve_colors` puts the content's
    chroma back. `styles` keeps its form (one array or a list).
    """
    if mode not in COLOR_MODES:
        raise ValueError(f"colour mode must be one of {COLOR_MODES}, got {mode!r}")
    single = isinstance(styles, np.ndarray) and np.ndim(styles) == 3
    style_list = [styles] if single else list(styles)
    if mode == "histogram":
        style_list = [match_color_histogram(s, content) for s in style_list]
    elif mode == "luminance":
        style_list = [match_luminance(s, content) for s in style_list]
        content = luminance_image(content)
    return content, (style_list[0] if single else style_list)


def preserve_colors(stylized: np.ndarray, content: np.ndarray, mode: str) -> np.ndarray:
    """The final image for a colour mode (after the run): "luminance" recombines the
    stylized luminance with the content's chroma (luminance_transfer); "none" and
    "histogram" (already applied to the style before the run) return `stylized` as float32.
    `content` is the original RGB content, not its luminance image.
    """
    if mode not in COLOR_MODES:
        raise ValueError(f"colour mode must be one of {COLOR_MODES}, got {mode!r}")
    if mode == "luminance":
        return luminance_transfer(stylized, content)
    return np.asarray(stylized, dtype=np.float32)


# --------------------------------------------------------------------------- contact sheet


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable (FreeType), Pillow >= 10.1
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()  # fixed bitmap font


def contact_sheet(
    images: Sequence[Sequence[np.ndarray | None]],
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str | None = None,
    max_cell_side: int | None = None,
) -> np.ndarray:
    """A labelled grid of images, like the alpha/beta grid of Gatys et al.'s Fig. 3.

    images: rows x cols nested sequence of (H, W, 3) images in [0, 1] (sizes may differ;
    None leaves a cell empty). Every cell is as large as the largest image (max height x max
    width, shrunk so that its longer side is at most `max_cell_side` if given); each image is
    scaled to fit its cell with its aspect ratio kept (resize_to) and centred. Row labels go
    left of each row, column labels above each column, the optional title above all; labels
    may contain newlines. Text is Pillow's built-in font (ImageFont.load_default, works
    offline) sized from the cell, drawn dark on a white sheet; the images themselves are
    placed unquantized. Returns (H, W, 3) float32 in [0, 1]; save it with save_image.
    """
    rows = [list(r) for r in images]
    n_rows = len(rows)
    n_cols = max((len(r) for r in rows), default=0)
    if n_rows == 0 or n_cols == 0:
        raise ValueError("contact_sheet needs at least one image")
    if len(row_labels) != n_rows or len(col_labels) != n_cols:
        raise ValueError(f"{n_rows}x{n_cols} images need {n_rows} row labels and {n_cols} "
                         f"column labels, got {len(row_labels)} and {len(col_labels)}")
    present = [_check_image(im, "contact sheet image") for r in rows for im in r if im is not None]
    if not present:
        raise ValueError("contact_sheet needs at least one image that is not None")
    cell_h = max(im.shape[0] for im in present)
    cell_w = max(im.shape[1] for im in present)
    if max_cell_side is not None and max(cell_h, cell_w) > max_cell_side:
        cell_h, cell_w = scale_shape((cell_h, cell_w), int(max_cell_side))

    # Text scales with the cells (readable next to 64 px thumbnails and 512 px images alike).
    font_size = int(np.clip(round(0.075 * min(cell_h, cell_w)), 13, 40))
    font = _font(font_size)
    title_font = _font(round(font_size * 1.3))
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))

    def text_size(text: str, f) -> tuple[int, int]:
        if not text:
            return 0, 0
        left, top, right, bottom = measure.multiline_textbbox((0, 0), text, font=f,
                                                              align="center")
        return math.ceil(right - left), math.ceil(bottom - top)

    pad = max(6, round(0.6 * font_size))  # around text, and the sheet's outer margin
    gap = max(3, font_size // 4)  # between cells
    label_w = max(text_size(t, font)[0] for t in row_labels)
    label_h = max(text_size(t, font)[1] for t in col_labels)
    left = pad + label_w + pad if label_w else pad
    top = pad + label_h + pad if label_h else pad
    title_h = text_size(title, title_font)[1] if title else 0
    if title:
        top += title_h + pad
    # A slot holds a cell; it widens for a column label wider than the cell (and heightens
    # for a taller row label), so neighbouring labels never overlap.
    slot_w = max(cell_w, max(text_size(t, font)[0] for t in col_labels) + 2 * gap)
    slot_h = max(cell_h, max(text_size(t, font)[1] for t in row_labels) + 2 * gap)
    width = left + n_cols * slot_w + (n_cols - 1) * gap + pad
    height = top + n_rows * slot_h + (n_rows - 1) * gap + pad
    if title:
        width = max(width, text_size(title, title_font)[0] + 2 * pad)

    sheet = np.full((height, width, 3), BACKGROUND, dtype=np.float32)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            if im is None:
                continue
            y0 = top + i * (slot_h + gap) + (slot_h - cell_h) // 2
            x0 = left + j * (slot_w + gap) + (slot_w - cell_w) // 2
            h, w = im.shape[:2]
            scale = min(cell_h / h, cell_w / w)
            fit = (max(1, min(cell_h, round(h * scale))), max(1, min(cell_w, round(w * scale))))
            im = resize_to(im, fit)
            dy, dx = (cell_h - fit[0]) // 2, (cell_w - fit[1]) // 2
            sheet[y0 + dy:y0 + dy + fit[0], x0 + dx:x0 + dx + fit[1]] = im

    # Text goes into a coverage mask, composited in float, so image cells stay exact.
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)

    def centred(text: str, cx: float, cy: float, f) -> None:
        if not text:
            return
        l_, t_, r_, b_ = draw.multiline_textbbox((0, 0), text, font=f, align="center")
        draw.multiline_text((round(cx - (l_ + r_) / 2), round(cy - (t_ + b_) / 2)), text,
                            font=f, fill=255, align="center")

    if title:
        centred(title, width / 2, pad + title_h / 2, title_font)
    label_top = top - pad - label_h
    for j, text in enumerate(col_labels):
        centred(text, left + j * (slot_w + gap) + slot_w / 2, label_top + label_h / 2, font)
    for i, text in enumerate(row_labels):
        centred(text, pad + label_w / 2, top + i * (slot_h + gap) + slot_h / 2, font)
    coverage = (np.asarray(mask, dtype=np.float32) / 255.0)[..., None]
    ink = 0.1
    return (sheet * (1.0 - coverage) + ink * coverage).astype(np.float32)
