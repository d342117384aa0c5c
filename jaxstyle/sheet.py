"""Contact sheets: a labelled grid of images (the alpha/beta grid of Gatys et al.'s Fig. 3)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxstyle.image import resize_to, scale_shape
from jaxstyle.pixels import rgb_array

# The sheet's background (white, like a page).
BACKGROUND = 1.0


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
    present = [rgb_array(im, "contact sheet image") for r in rows for im in r if im is not None]
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
