"""Regenerates the two images made here rather than photographed (deterministic; Pillow and
NumPy only): `python examples/make_examples.py`.

- stripes.png: bright diagonal stripes, a style that contrasts with the dark Hubble field.
- chelsea_left_mask.png: white on the left half of chelsea.jpg, black on the right: with
  `--style-masks chelsea_left_mask.png,<its negative>` one style paints each half.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent


def stripes(size: int = 256, period: int = 24) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    t = ((x + y) % period) / period  # 0..1 across each stripe
    warm = np.array([250, 170, 40], np.float64)
    cool = np.array([40, 200, 220], np.float64)
    band = (t < 0.5)[..., None]
    return np.where(band, warm, cool).astype(np.uint8)


def left_mask(width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[:, : width // 2] = 255
    return mask


if __name__ == "__main__":
    Image.fromarray(stripes()).save(HERE / "stripes.png")
    with Image.open(HERE / "chelsea.jpg") as photo:
        width, height = ImageOps.exif_transpose(photo).size
    Image.fromarray(left_mask(width, height), "L").save(HERE / "chelsea_left_mask.png")
    Image.fromarray(255 - left_mask(width, height), "L").save(HERE / "chelsea_right_mask.png")
