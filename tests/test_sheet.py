"""Contact sheets (jaxstyle.sheet): placement, labels, sizes."""

import numpy as np
import pytest
from conftest import smooth_image

from jaxstyle.image import save_image
from jaxstyle.sheet import contact_sheet


def test_contact_sheet(tmp_path):
    colors = [[(0.9, 0.1, 0.1), (0.1, 0.9, 0.1), (0.1, 0.1, 0.9)],
              [(0.9, 0.9, 0.1), (0.1, 0.9, 0.9), (0.9, 0.1, 0.9)]]
    images = [[np.full((40, 60, 3), c, np.float32) for c in row] for row in colors]
    kw = dict(row_labels=["content 1", "content 5"],
              col_labels=["style 1e2", "style 1e3", "style 1e4"])
    sheet = contact_sheet(images, title="alpha/beta", **kw)
    assert sheet.dtype == np.float32 and sheet.ndim == 3 and sheet.shape[2] == 3
    assert sheet.shape[0] > 2 * 40 and sheet.shape[1] > 3 * 60
    assert sheet.min() >= 0 and sheet.max() <= 1
    for row in colors:  # each image is placed whole and unchanged
        for c in row:
            assert np.all(sheet == np.float32(c), axis=-1).sum() == 40 * 60
    # Labels draw dark pixels; without labels (and title) there are none.
    assert (sheet.max(axis=-1) < 0.5).sum() > 100
    blank = contact_sheet(images, row_labels=["", ""], col_labels=["", "", ""])
    assert (blank.max(axis=-1) < 0.5).sum() == 0
    assert blank.shape[0] < sheet.shape[0] and blank.shape[1] < sheet.shape[1]
    # Each label lands in its own place: row labels left of the cells, one per row.
    dark_rows = np.nonzero((sheet[:, :40].max(axis=-1) < 0.5).any(axis=1))[0]
    assert dark_rows.size and np.ptp(dark_rows) > 40  # two labels, a row apart
    save_image(tmp_path / "sheet.png", sheet)


def test_contact_sheet_mixed_sizes_and_empty_cells():
    a = smooth_image(1, 30, 60)
    b = smooth_image(2, 50, 20)
    sheet = contact_sheet([[a, b], [None, a]], row_labels=["r1", "r2"],
                                 col_labels=["c1", "c2"], max_cell_side=40)
    assert sheet.shape[0] >= 2 * 34 and sheet.shape[1] >= 2 * 40
    with pytest.raises(ValueError, match="row labels"):
        contact_sheet([[a, b]], row_labels=["r1", "r2"], col_labels=["c1", "c2"])
    with pytest.raises(ValueError, match="at least one"):
        contact_sheet([[None]], row_labels=["r"], col_labels=["c"])


def test_contact_sheet_long_labels_do_not_overlap():
    cell = np.full((32, 32, 3), 0.5, np.float32)
    label = "style weight 1e3, content 5"  # far wider than a 32 px cell

    def dark_columns(sheet):
        return np.nonzero((sheet.max(axis=-1) < 0.5).any(axis=0))[0]

    one = contact_sheet([[cell]], row_labels=[""], col_labels=[label])
    extent = np.ptp(dark_columns(one)) + 1  # how wide one label draws
    assert extent > 2 * 32
    three = contact_sheet([[cell] * 3], row_labels=[""], col_labels=[label] * 3)
    assert three.shape[1] >= 3 * extent
    assert np.all(three == np.float32(0.5), axis=-1).sum() == 3 * 32 * 32
    # Each label is centred over its cell: cell centres at least a label width apart.
    cell_cols = np.nonzero(np.all(three == np.float32(0.5), axis=-1).any(axis=0))[0]
    centres = [run.mean() for run in np.split(cell_cols, np.nonzero(np.diff(cell_cols) > 1)[0] + 1)]
    assert len(centres) == 3 and np.diff(centres).min() >= extent
