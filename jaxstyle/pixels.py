"""Decoded samples to jaxstyle's one image form: (H, W, 3) float32 RGB in [0, 1].

`as_rgb` is the library's one check of an image array handed in (`unit_samples` its sample
rule); `load_image` (jaxstyle.image) decodes files through `pil_to_rgb`.

Every Pillow mode at its full precision (1-bit, L, P with transparency, RGB, CMYK, YCbCr,
16-bit gray, 16-bit RGB/RGBA/LA PNGs with all 16 bits, I, F) and in-memory arrays (uint8,
uint16, bool, float; gray, gray + alpha, RGB, RGBA). Alpha is composited over white:
out = a * rgb + (1 - a) * 1. `jaxstyle.image.load_image` is the entry point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from jaxstyle.files import ImageError, SettingError

# The ImageNet preprocessing conventions the networks' weights were trained with. Caffe VGG
# (and the files converted from it, the normalised VGG19 among them): BGR, 0-255, minus this
# BGR mean. torchvision: RGB in [0, 1], normalized by this mean and std.
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
TORCH_MEAN_RGB = np.array([0.485, 0.456, 0.406], np.float32)
TORCH_STD_RGB = np.array([0.229, 0.224, 0.225], np.float32)

# Transparent pixels are composited over this background (white, like a page or a browser).
BACKGROUND = 1.0


# Pillow decodes 16-bit RGB/RGBA PNGs to 8 bits by taking each sample's high byte (rawmodes
# "RGB;16B", "RGBA;16B"). Decoding the same data again with the little-endian rawmode of the
# same width takes the other byte of each big-endian sample: the low byte. The PNG row filters
# are undone byte-wise with the bytes-per-pixel of the rawmode, identical for both, so the two
# decodes together give every 16-bit sample. 16-bit gray+alpha (rawmode "LA;16B", 4 bytes a
# pixel) is decoded as raw "RGBA" bytes: L high, L low, A high, A low.
_PNG16_LOW_RAWMODE = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L", "LA;16B": "RGBA"}


def png16_low_bytes(path: Path, im: Image.Image, tiles: list) -> Image.Image | None:
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


def pil_to_rgb(im: Image.Image, low: Image.Image | None, path: Path) -> np.ndarray:
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


def array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    """An in-memory image array (see load_image) -> (H, W, 3) float32 RGB in [0, 1]."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise ImageError(name, f"expected an (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or "
                               f"(H, W, 4) image array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(name, f"empty image array of shape {arr.shape}")
    try:
        values = unit_samples(arr, name)  # the rule of `as_rgb`
    except SettingError as err:
        raise ImageError(name, str(err).removeprefix(f"{name} ")) from None
    if values.shape[-1] in (2, 4):
        return _composite(values[..., :-1], values[..., -1:])
    return _composite(values, None)


# --------------------------------------------------------------------------- arrays handed in


# Float images may stray this far outside [0, 1] (rounding) before they are refused; the
# stray part is clipped.
RANGE_SLACK = 1e-3


def as_rgb(image: Any, what: str = "image", *, batch: bool = False) -> np.ndarray:
    """The library's one check of an image handed in as an array: `image` as a float32 NumPy
    array of shape (H, W, 3), or with batch=True (N, H, W, 3) (one (H, W, 3) image becomes a
    batch of one), RGB in [0, 1].

    Samples: uint8 and other integer arrays are 0-255 values, divided by 255 exactly (uint16:
    0-65535, divided by 65535); bool arrays are 0 or 1; floats must lie in [0, 1] (up to
    RANGE_SLACK of rounding, clipped). Device arrays are fetched. SettingError naming `what`
    for another shape, an empty side, NaN or inf, or values outside the range (with the
    range found): a photo in 0-255 floats is refused, not turned white.
    """
    try:
        arr = np.asarray(image)
    except ValueError:  # a list of arrays of different shapes
        raise SettingError(f"{what}: the images of a batch must all have one size, got shapes "
                           f"{[np.shape(x) for x in image]}", what) from None
    want = "(N, H, W, 3) batch or an (H, W, 3) image" if batch else "(H, W, 3) image"
    if batch and arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != (4 if batch else 3) or arr.shape[-1] != 3 or 0 in arr.shape:
        raise SettingError(f"{what} must be an RGB {want}, got shape {arr.shape}", what)
    return unit_samples(arr, what)


def unit_samples(arr: np.ndarray, what: str) -> np.ndarray:
    """Array samples as float32 in [0, 1] (the rules of `as_rgb`, any shape); SettingError
    naming `what` otherwise."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        full = 65535 if arr.dtype == np.uint16 else 255
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > full:
            raise SettingError(f"{what} holds integers in [{lo}, {hi}]: integer images must be "
                               f"0-{full} ({arr.dtype})", what)
        return np.divide(arr, np.float32(full), dtype=np.float32)
    if not np.issubdtype(arr.dtype, np.floating):
        raise SettingError(f"{what} must hold numbers, got dtype {arr.dtype}", what)
    arr = np.asarray(arr, np.float32)
    if not np.all(np.isfinite(arr)):
        raise SettingError(f"{what} contains NaN or inf values", what)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -RANGE_SLACK or hi > 1 + RANGE_SLACK:
        hint = (" (0-255 values? divide by 255, or pass the uint8 array)" if hi <= 255 + RANGE_SLACK
                and lo >= -RANGE_SLACK else "")
        raise SettingError(f"{what} must be RGB in [0, 1]; its values span [{lo:.4g}, {hi:.4g}]"
                           f"{hint}", what)
    return np.clip(arr, 0.0, 1.0) if lo < 0 or hi > 1 else arr


def rgb_array(image: Any, what: str = "image") -> np.ndarray:
    """An (H, W, 3) float32 array with finite values (a copy only if needed): the shape check
    of the functions that take images from inside the library (resizing, colours, sheets),
    whose values may stray outside [0, 1] (unclipped iterates, colour transforms)."""
    arr = np.asarray(image, np.float32)
    if arr.ndim != 3 or arr.shape[-1] != 3 or 0 in arr.shape:
        raise SettingError(f"{what} must be an (H, W, 3) RGB array, got shape {arr.shape}", what)
    if not np.all(np.isfinite(arr)):
        raise SettingError(f"{what} contains NaN or inf values", what)
    return arr
