"""jaxstyle.image: every Pillow mode, EXIF, limits, bad files, atomic saves, colour, sheets.

Files are built here with Pillow (or, for 16-bit RGB PNGs that Pillow cannot write, with a small
independent PNG encoder below), and expected values come from NumPy, not from the module.
"""

import errno
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image, JpegImagePlugin

from jaxstyle import image as jimage
from jaxstyle.image import ImageError, load_image, save_image

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

def rgb8(seed=0, h=24, w=32):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def mode_of(path):
    with Image.open(path) as im:
        return im.mode


def save_pil(path, im, **kw):
    im.save(path, **kw)
    return path


# --------------------------------------------------------------------------- a PNG encoder


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def write_png16(path, samples, color_type, filters=(0, 1, 2, 3, 4), orientation=None):
    """A 16-bit PNG (color_type 0 gray, 2 RGB, 4 gray+alpha, 6 RGBA), rows filtered in turn
    with None, Sub, Up, Average and Paeth (PNG spec section 9), so that Pillow's unfiltering
    with the right bytes-per-pixel is exercised."""
    h, w, c = samples.shape
    rows = samples.astype(">u2").reshape(h, w * c).view(np.uint8).astype(np.int64)
    bpp = 2 * c
    out, prior = [], np.zeros_like(rows[0])
    for y in range(h):
        raw = rows[y]
        left = np.concatenate([np.zeros(bpp, np.int64), raw[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), prior[:-bpp]])
        kind = filters[y % len(filters)]
        pred = [0 * raw, left, prior, (left + prior) // 2, _paeth(left, prior, upleft)][kind]
        out.append(bytes([kind]) + ((raw - pred) % 256).astype(np.uint8).tobytes())
        prior = raw

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    exif = b""
    if orientation is not None:
        tags = Image.Exif()
        tags[0x0112] = orientation
        exif = chunk(b"eXIf", tags.tobytes()[len(b"Exif\0\0"):])
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + exif
                           + chunk(b"IDAT", zlib.compress(b"".join(out))) + chunk(b"IEND", b""))
    return path


def png_header_only(path, width, height):
    """A PNG whose header declares width x height but whose data is a few bytes."""
    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                           + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))
    return path


# --------------------------------------------------------------------------- modes


def assert_image(x, shape):
    assert x.dtype == np.float32 and x.shape == shape
    assert x.min() >= 0.0 and x.max() <= 1.0


def test_rgb_png_exact(tmp_path):
    a = rgb8()
    x = load_image(save_pil(tmp_path / "a.png", Image.fromarray(a)))
    assert_image(x, (24, 32, 3))
    np.testing.assert_array_equal(x, (a / 255.0).astype(np.float32))


def test_grayscale_and_one_bit(tmp_path):
    g = rgb8()[..., 0]
    x = load_image(save_pil(tmp_path / "g.png", Image.fromarray(g)))
    assert_image(x, (24, 32, 3))
    np.testing.assert_allclose(x, np.repeat(g[..., None] / 255.0, 3, -1), atol=1e-7)
    bits = g > 127
    x = load_image(save_pil(tmp_path / "b.png", Image.fromarray(bits)))
    assert mode_of(tmp_path / "b.png") == "1"
    np.testing.assert_array_equal(x, np.repeat(bits[..., None], 3, -1).astype(np.float32))


def test_rgba_and_la_composite_over_white(tmp_path):
    a = rgb8(1)
    alpha = np.random.default_rng(2).integers(0, 256, a.shape[:2], dtype=np.uint8)
    x = load_image(save_pil(tmp_path / "a.png", Image.fromarray(np.dstack([a, alpha]))))
    al = alpha[..., None] / 255.0
    np.testing.assert_allclose(x, a / 255.0 * al + (1 - al), atol=1e-6)
    la = Image.merge("LA", [Image.fromarray(a[..., 0]), Image.fromarray(alpha)])
    x = load_image(save_pil(tmp_path / "la.png", la))
    expect = a[..., :1] / 255.0 * al + (1 - al)
    np.testing.assert_allclose(x, np.repeat(expect, 3, -1), atol=1e-6)


def test_palette_with_and_without_transparency(tmp_path):
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], np.uint8)
    idx = np.random.default_rng(3).integers(0, 4, (16, 20)).astype(np.uint8)
    im = Image.frombytes("P", (20, 16), idx.tobytes())
    im.putpalette(palette.ravel().tolist())
    x = load_image(save_pil(tmp_path / "p.png", im))
    np.testing.assert_allclose(x, palette[idx] / 255.0, atol=1e-7)
    # Index 2 (blue) transparent: those pixels become white.
    x = load_image(save_pil(tmp_path / "pt.png", im, transparency=2))
    assert mode_of(tmp_path / "pt.png") == "P"
    expect = np.where((idx == 2)[..., None], 1.0, palette[idx] / 255.0)
    np.testing.assert_allclose(x, expect, atol=1e-7)
    # GIF (palette with a transparent index) as well.
    x = load_image(save_pil(tmp_path / "p.gif", im, transparency=2))
    np.testing.assert_allclose(x, expect, atol=1e-7)


def test_trns_colour_in_gray_and_rgb_png(tmp_path):
    g = np.full((4, 6), 7, np.uint8)
    g[0, 0] = 200
    x = load_image(save_pil(tmp_path / "l.png", Image.fromarray(g), transparency=7))
    assert np.all(x[1:] == 1.0) and np.allclose(x[0, 0], 200 / 255)


def test_cmyk(tmp_path):
    # Pillow's CMYK -> RGB (no ICC): R = (255 - C)(255 - K) / 255, likewise G (M), B (Y).
    cmyk = np.random.default_rng(4).integers(0, 256, (12, 10, 4), dtype=np.uint8)
    im = Image.frombytes("CMYK", (10, 12), cmyk.tobytes())
    x = load_image(save_pil(tmp_path / "c.tif", im))
    assert mode_of(tmp_path / "c.tif") == "CMYK"
    c = cmyk.astype(np.float64)
    expect = (255 - c[..., :3]) * (255 - c[..., 3:]) / 255.0 / 255.0
    np.testing.assert_allclose(x, expect, atol=1.01 / 255)
    # A CMYK JPEG (Adobe inversion handled by Pillow) decodes to the same colours, roughly.
    flat = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red ink-wise
    x = load_image(save_pil(tmp_path / "c.jpg", flat, quality=100))
    np.testing.assert_allclose(x.mean(axis=(0, 1)), [1, 0, 0], atol=0.03)


def test_16_bit_grayscale_keeps_16_bits(tmp_path):
    v = np.random.default_rng(5).integers(0, 65536, (10, 14), dtype=np.uint16)
    x = load_image(save_pil(tmp_path / "g16.png", Image.fromarray(v)))
    assert mode_of(tmp_path / "g16.png") in ("I;16", "I")  # "I" in older Pillow (10.0)
    np.testing.assert_allclose(x[..., 1], v / 65535.0, atol=1e-7)
    # Big-endian I;16B (a Motorola-order TIFF), and a 32-bit I-mode TIFF.
    big = Image.frombytes("I;16B", (14, 10), v.astype(">u2").tobytes())
    x = load_image(save_pil(tmp_path / "b16.tif", big))
    assert mode_of(tmp_path / "b16.tif") == "I;16B"
    np.testing.assert_allclose(x[..., 2], v / 65535.0, atol=1e-7)
    x = load_image(save_pil(tmp_path / "i.tif", Image.fromarray(v.astype(np.int32))))
    assert mode_of(tmp_path / "i.tif") == "I"
    np.testing.assert_allclose(x[..., 0], v / 65535.0, atol=1e-7)
    neg = Image.fromarray(np.full((4, 4), -5, np.int32))
    with pytest.raises(ImageError, match="32-bit integer"):
        load_image(save_pil(tmp_path / "neg.tif", neg))


@pytest.mark.parametrize("color_type,channels", [(0, 1), (2, 3), (4, 2), (6, 4)])
def test_16_bit_png_all_color_types_full_precision(tmp_path, color_type, channels):
    v = np.random.default_rng(6).integers(0, 65536, (9, 11, channels), dtype=np.uint16)
    path = write_png16(tmp_path / "x.png", v, color_type)
    x = load_image(path).astype(np.float64)
    s = v / 65535.0
    if channels in (2, 4):
        color, alpha = s[..., :-1], s[..., -1:]
        s = color * alpha + (1 - alpha)
    expect = np.broadcast_to(s, x.shape)
    np.testing.assert_allclose(x, expect, atol=2e-7)  # 16-bit steps are 1.5e-5


def test_16_bit_png_with_exif_orientation(tmp_path):
    v = np.random.default_rng(7).integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    x = load_image(write_png16(tmp_path / "r.png", v, 2, orientation=6))
    # EXIF 6: rotate 90 degrees clockwise to view: row r of the view is column r of the file,
    # read bottom to top.
    np.testing.assert_allclose(x, np.rot90(v, k=-1) / 65535.0, atol=2e-7)


def test_float_f_mode(tmp_path):
    f = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    x = load_image(save_pil(tmp_path / "f.tif", Image.fromarray(f)))
    np.testing.assert_allclose(x[..., 0], f, atol=1e-7)
    x = load_image(save_pil(tmp_path / "f255.tif", Image.fromarray(f * 255)))
    np.testing.assert_allclose(x[..., 1], f, atol=1e-6)
    with pytest.raises(ImageError, match=r"expected \[0, 1\]"):
        load_image(save_pil(tmp_path / "fbig.tif", Image.fromarray(f * 1000)))


@pytest.mark.parametrize("orientation,corner", [(6, "top-right"), (8, "bottom-left"),
                                                (3, "bottom-right"), (1, "top-left")])
def test_exif_orientation(tmp_path, orientation, corner):
    # Stored 32 high x 48 wide, blue, with a red 8x8 block at the stored top-left. EXIF 6 means
    # "rotate 90 degrees clockwise to view", so that corner shows at the top right; 8 rotates
    # counter-clockwise (bottom left); 3 rotates 180 degrees (bottom right).
    a = np.zeros((32, 48, 3), np.uint8)
    a[..., 2] = 255
    a[:8, :8] = [255, 0, 0]
    exif = Image.Exif()
    exif[0x0112] = orientation
    x = load_image(save_pil(tmp_path / "e.jpg", Image.fromarray(a), exif=exif, quality=95))
    assert x.shape == ((48, 32, 3) if orientation in (6, 8) else (32, 48, 3))
    h, w = x.shape[:2]
    blocks = {"top-left": x[:6, :6], "top-right": x[:6, w - 6:],
              "bottom-left": x[h - 6:, :6], "bottom-right": x[h - 6:, w - 6:]}
    for name, block in blocks.items():
        red = block[..., 0].mean() > 0.8 and block[..., 2].mean() < 0.2
        assert red == (name == corner), (name, block.mean(axis=(0, 1)))


# --------------------------------------------------------------------------- arrays


def test_arrays():
    a = rgb8(7, 5, 6)
    np.testing.assert_array_equal(load_image(a), (a / 255.0).astype(np.float32))
    u16 = a.astype(np.uint16) * 257
    np.testing.assert_allclose(load_image(u16), a / 255.0, atol=1e-7)
    f = a / 255.0
    out = load_image(f)
    assert out.dtype == np.float32 and out is not f
    np.testing.assert_allclose(load_image(f[..., 0]), np.repeat(f[..., :1], 3, -1), atol=1e-7)
    np.testing.assert_allclose(load_image(f[..., :1]), np.repeat(f[..., :1], 3, -1), atol=1e-7)
    rgba = np.dstack([f, np.full(f.shape[:2], 0.25)])
    np.testing.assert_allclose(load_image(rgba), 0.25 * f + 0.75, atol=1e-6)
    assert load_image(np.ones((4, 4), bool)).min() == 1.0
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 4, 5), np.uint8))
    # Integer arrays are 0-255 samples, as `as_rgb` takes them (the library's one rule).
    np.testing.assert_array_equal(load_image(a.astype(np.int64)), load_image(a))
    with pytest.raises(ImageError, match=r"integers in \[300, 300\]: integer images must be 0-255"):
        load_image(np.full((4, 4, 3), 300, np.int64))
    with pytest.raises(ImageError, match=r"in \[0, 1\]; its values span"):
        load_image(f * 255)
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((2, 2, 3), np.nan))
    assert load_image(a, max_side=3).shape == (3, 3, 3)  # 5 * 3 / 6 = 2.5 rounds up


# --------------------------------------------------------------------------- bad files


def test_pixel_limit_checked_before_decoding(tmp_path):
    # The header says 10000 x 5000 but the data is a few bytes: decoding would fail as
    # truncated, so a pixel-limit message proves the check came first.
    path = png_header_only(tmp_path / "bomb.png", 10000, 5000)
    with pytest.raises(ImageError, match=r"50000000 pixels, over the limit of 1000000") as e:
        load_image(path, max_pixels=1_000_000)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    small = save_pil(tmp_path / "s.png", Image.fromarray(rgb8(0, 100, 100)))
    with pytest.raises(ImageError, match="over the limit"):
        load_image(small, max_pixels=5000)
    assert load_image(small, max_pixels=10000).shape == (100, 100, 3)


def test_pillow_decompression_bomb_becomes_image_error(tmp_path):
    limit = Image.MAX_IMAGE_PIXELS
    assert jimage.DEFAULT_MAX_PIXELS <= limit
    # Over twice Pillow's limit: Pillow raises DecompressionBombError inside open().
    huge = png_header_only(tmp_path / "huge.png", 20000, 20000)
    with pytest.raises(ImageError, match="MAX_IMAGE_PIXELS"):
        load_image(huge, max_pixels=None)
    # Between Pillow's limit and twice it: Pillow only warns; the warning must stop the load.
    side = int((1.2 * limit) ** 0.5)
    warn = png_header_only(tmp_path / "warn.png", side, side)
    with pytest.raises(ImageError, match="MAX_IMAGE_PIXELS"):
        load_image(warn, max_pixels=None)
    with pytest.raises(ImageError, match="over the limit"):  # our default limit says it first
        load_image(warn)


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_files(tmp_path, fmt):
    path = save_pil(tmp_path / f"t.{fmt}", Image.fromarray(rgb8(8, 64, 64)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageError, match="truncated|corrupt") as e:
        load_image(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_directory_nonimage_empty(tmp_path):
    with pytest.raises(ImageError, match="no such file") as e:
        load_image(tmp_path / "nope.png")
    assert str(tmp_path / "nope.png") in str(e.value)
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)
    text = tmp_path / "notes.png"
    text.write_text("not an image at all\n")
    with pytest.raises(ImageError, match="not an image file"):
        load_image(text)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="not an image file"):
        load_image(str(empty))


def test_unreadable_file(tmp_path, monkeypatch):
    path = save_pil(tmp_path / "a.png", Image.fromarray(rgb8()))
    if not ROOT:  # root reads through permission bits
        path.chmod(0)
        try:
            with pytest.raises(ImageError, match="permission denied"):
                load_image(path)
        finally:
            path.chmod(0o644)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(ImageError, match="permission denied") as e:
        load_image(path)
    assert str(e.value).startswith(str(path))


# --------------------------------------------------------------------------- saving


def test_save_png_round_trip_and_metadata(tmp_path):
    x = smooth_image(1, 20, 30)
    settings = {"style_weight": 1000.0, "layers": ["relu1_1"], "note": "café ☕"}
    meta = {"jaxstyle": json.dumps(settings), "Software": "jaxstyle"}
    path = save_image(tmp_path / "out.png", x, metadata=meta)
    back = load_image(path)
    assert np.abs(back - x).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_array_equal(back * 255, np.round(np.clip(x, 0, 1) * 255))
    with Image.open(path) as im:
        assert im.text["Software"] == "jaxstyle"
        assert json.loads(im.text["jaxstyle"]) == settings
    assert sorted(os.listdir(tmp_path)) == ["out.png"]  # no temporary file left


def test_save_clips_and_rounds(tmp_path):
    x = np.array([[[-0.5, 0.4 / 255, 1.7]]], np.float32)
    back = load_image(save_image(tmp_path / "c.png", x)) * 255
    np.testing.assert_array_equal(back, [[[0, 0, 255]]])
    x = np.array([[[0.6 / 255, 254.4 / 255, 0.2]]], np.float32)
    np.testing.assert_array_equal(load_image(save_image(tmp_path / "d.png", x)) * 255,
                                  [[[1, 254, 51]]])


def test_save_jpeg_and_other_formats(tmp_path):
    x = smooth_image(2, 32, 48)
    path = save_image(tmp_path / "out.jpg", x, metadata={"jaxstyle": "{}"})
    assert np.abs(load_image(path) - x).mean() < 0.03
    with Image.open(path) as im:
        assert im.format == "JPEG"
        assert json.loads(im.info["comment"]) == {"jaxstyle": "{}"}
    for ext in [".jpeg", ".tif", ".bmp", ".webp", ".PNG"]:
        p = save_image(tmp_path / f"o{ext}", x)
        with Image.open(p) as im:
            assert im.format == jimage.OUTPUT_FORMATS[ext.lower()]
    assert save_image(tmp_path / "u8.png", (x * 255).astype(np.uint8)).exists()


def test_save_errors(tmp_path):
    x = smooth_image(3, 8, 8)
    with pytest.raises(ImageError, match="unknown image extension '.xyz'"):
        save_image(tmp_path / "a.xyz", x)
    with pytest.raises(ImageError, match="no extension"):
        save_image(tmp_path / "a", x)
    with pytest.raises(ImageError, match="does not exist") as e:
        save_image(tmp_path / "missing" / "a.png", x)
    assert "\n" not in str(e.value) and "a.png" in str(e.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(ImageError, match="is not a directory"):
        save_image(tmp_path / "file" / "a.png", x)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match="is a directory"):
        save_image(tmp_path / "dir.png", x)
    with pytest.raises(ImageError, match="shape"):
        save_image(tmp_path / "a.png", x[..., 0])
    with pytest.raises(ImageError, match="NaN"):
        save_image(tmp_path / "a.png", np.full((2, 2, 3), np.nan))
    with pytest.raises(ImageError, match="metadata key"):
        save_image(tmp_path / "a.png", x, metadata={"": "v"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png", "file"]


def test_unwritable_directory(tmp_path, monkeypatch):
    x = smooth_image(3, 8, 8)
    target = tmp_path / "ro" / "a.png"
    target.parent.mkdir()
    if not ROOT:  # root writes through permission bits
        target.parent.chmod(0o500)
        try:
            for call in (lambda: save_image(target, x), lambda: jimage.check_writable(target)):
                with pytest.raises(ImageError, match="cannot write in"):
                    call()
        finally:
            target.parent.chmod(0o700)
    real_open = os.open

    def denied(path, *args, **kwargs):
        if str(path).startswith(str(target.parent)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    for call in (lambda: save_image(target, x), lambda: jimage.check_writable(target)):
        with pytest.raises(ImageError, match="cannot write in .*Permission denied"):
            call()
    monkeypatch.undo()
    assert list(target.parent.iterdir()) == []


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    path = save_image(tmp_path / "keep.png", smooth_image(4, 8, 8))
    before = path.read_bytes()
    real_save = Image.Image.save

    def half_then_fail(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of the write

    monkeypatch.setattr(Image.Image, "save", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        save_image(path, smooth_image(5, 8, 8))
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert path.read_bytes() == before  # the old image is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]  # no temporary file


def test_save_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_image(tmp_path / "m.png", smooth_image(4, 4, 4))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600


def test_check_writable(tmp_path):
    assert jimage.check_writable(tmp_path / "ok.png") == tmp_path / "ok.png"
    assert jimage.check_writable(str(tmp_path / "ok.JPG")) == tmp_path / "ok.JPG"
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
    with pytest.raises(ImageError, match="unknown image extension"):
        jimage.check_writable(tmp_path / "ok.txt")
    with pytest.raises(ImageError, match="does not exist"):
        jimage.check_writable(tmp_path / "no" / "ok.png")


# --------------------------------------------------------------------------- resizing


def test_resize_max_side_keeps_aspect_and_never_upscales():
    x = smooth_image(5, 60, 90)
    y = jimage.resize_max_side(x, 45)
    assert y.shape == (30, 45, 3) and y.dtype == np.float32
    assert jimage.resize_max_side(x, 40).shape == (27, 40, 3)  # 60 * 40 / 90 = 26.7 -> 27
    assert jimage.resize_max_side(x.transpose(1, 0, 2), 40).shape == (40, 27, 3)
    same = jimage.resize_max_side(x, 200)
    assert same.shape == x.shape and same is not x
    np.testing.assert_array_equal(same, x)
    assert load_image(x, max_side=30).shape == (20, 30, 3)
    with pytest.raises(ValueError, match="max_side"):
        jimage.resize_max_side(x, 0)


def _smooth_field(h, w):
    """f(y, x) sampled at pixel centres of an h x w grid covering the unit square."""
    yy = (np.arange(h) + 0.5) / h
    xx = (np.arange(w) + 0.5) / w
    f = 0.5 + 0.3 * np.sin(2 * np.pi * 1.5 * xx)[None, :] * np.cos(2 * np.pi * yy)[:, None]
    return np.stack([f, 1 - f, 0.5 + 0.2 * (f - 0.5)], axis=-1)


def test_resize_is_accurate_and_stays_float():
    big = _smooth_field(192, 256).astype(np.float32)
    small = jimage.resize_to(big, (48, 64))
    assert np.abs(small - _smooth_field(48, 64)).max() < 3e-3
    # Not through uint8: values fall between the 1/255 steps.
    assert np.abs(small * 255 - np.round(small * 255)).max() > 0.1
    up = jimage.resize_to(_smooth_field(48, 64).astype(np.float32), (96, 128))
    # Away from the border (where the field would need extrapolating) upsampling is exact too.
    assert np.abs(up - _smooth_field(96, 128))[4:-4, 4:-4].max() < 3e-3
    const = jimage.resize_to(np.full((30, 40, 3), 0.3, np.float32), (7, 11))
    np.testing.assert_allclose(const, 0.3, atol=1e-6)
    sharp = np.zeros((20, 20, 3), np.float32)
    sharp[:, 10:] = 1.0
    ringing = jimage.resize_to(sharp, (40, 40))
    assert ringing.min() >= 0.0 and ringing.max() <= 1.0  # Lanczos overshoot clipped


def test_style_size_for():
    assert jimage.style_size_for((512, 384), (1000, 800), 0.5) == (256, 205)
    assert jimage.style_size_for((384, 512, 3), (800, 1000, 3), 1.0) == (410, 512)
    assert jimage.style_size_for((100, 60), (50, 50), 1.1) == (110, 110)  # not 111
    assert jimage.style_size_for((100, 60), (50, 25), 2.0) == (200, 100)  # upscales
    assert jimage.style_size_for((64, 48), (10, 1000), 0.5) == (1, 32)
    with pytest.raises(ValueError, match="style_scale"):
        jimage.style_size_for((10, 10), (10, 10), 0.0)


def test_big_jpeg_with_max_side_decodes_reduced_and_matches(tmp_path, monkeypatch):
    # A JPEG far larger than max_side is decoded by libjpeg at a reduced scale (draft) before
    # the Lanczos step: same picture as a full decode + resize, at a fraction of the memory.
    field = (_smooth_field(400, 600) * 255).round().astype(np.uint8)
    path = save_pil(tmp_path / "big.jpg", Image.fromarray(field), quality=95)
    reference = jimage.resize_max_side(load_image(path), 64)
    sizes = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    fast = load_image(path, max_side=64)
    assert sizes == [(150, 100)]  # 1/4 scale: the smallest at least 2x the (64, 43) target
    assert fast.shape == reference.shape == (43, 64, 3)
    assert np.abs(fast - reference).max() < 0.01


def test_as_rgb_is_the_one_array_check():
    x = smooth_image(6, 4, 5)
    out = jimage.as_rgb(x.astype(np.float64), "content image")
    assert out.dtype == np.float32 and out.shape == (4, 5, 3)
    for bad, match in ((x[..., :2], r"content image must be an RGB \(H, W, 3\) image"),
                       (x[None], r"\(H, W, 3\)"), (np.zeros((0, 4, 3)), r"\(H, W, 3\)"),
                       (np.where(x > 0.5, np.nan, x), "NaN or inf")):
        with pytest.raises(ValueError, match=match):
            jimage.as_rgb(bad, "content image")


def test_as_rgb_converts_integer_samples_exactly_and_refuses_0_255_floats():
    """uint8 (every scikit-image and Pillow array) is divided by 255 exactly, uint16 by 65535;
    a float photo in 0-255 is refused with its range, not turned white."""
    photo = (smooth_image(7, 6, 5) * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(jimage.as_rgb(photo), photo.astype(np.float32) / 255)
    np.testing.assert_array_equal(jimage.as_rgb(photo.astype(np.int64)),
                                  photo.astype(np.float32) / 255)
    sixteen = photo.astype(np.uint16) * 257
    np.testing.assert_allclose(jimage.as_rgb(sixteen), photo / 255, atol=1e-7)
    with pytest.raises(ValueError, match=r"values span \[0, 2\d\d\].*divide by 255"):
        jimage.as_rgb(photo.astype(np.float32), "content image")
    with pytest.raises(ValueError, match=r"integers in \[-1, 3\]"):
        jimage.as_rgb(np.full((2, 2, 3), 3, np.int32) - np.eye(2, dtype=np.int32)[..., None] * 4)
    # Rounding just outside [0, 1] is clipped; a batch of one image is a batch.
    assert jimage.as_rgb(np.full((2, 2, 3), 1.0005)).max() == 1.0
    assert jimage.as_rgb(photo, batch=True).shape == (1, 6, 5, 3)
    with pytest.raises(ValueError, match="one size"):
        jimage.as_rgb([photo, photo[:3]], "content", batch=True)
