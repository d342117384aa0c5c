"""Loss-weight grids and their labels (jaxstyle.grids)."""

import itertools

import numpy as np
import pytest

from jaxstyle import grids
from jaxstyle.losses import LossWeights


@pytest.mark.parametrize("x, text", [
    (0, "0"), (1, "1"), (5, "5"), (0.5, "0.5"), (100, "100"), (1000, "1e3"), (1e4, "1e4"),
    (1.5e4, "1.5e4"), (8e-4, "8e-4"), (1e-3, "1e-3"), (5e-3, "5e-3"), (0.05, "0.05"),
    (2.5, "2.5"), (123456, "1.235e5"),
])
def test_format_weight(x, text):
    assert grids.format_weight(x) == text
    assert float(text) == pytest.approx(x, rel=1e-3)


def test_setting_label():
    assert grids.setting_label(1, 1e3, 0) == "c1_s1e3_tv0"
    assert grids.setting_label(5, 8e-4, 1e-2) == "c5_s8e-4_tv0.01"


def test_grid_content_by_style():
    grid = grids.loss_weight_grid(content_weight=[1, 5], style_weight=[1e2, 1e3, 1e4],
                                  tv_weight=1e-3)
    assert grid.shape == (2, 3)
    assert grid.col_labels == ("beta=100", "beta=1e3", "beta=1e4")
    assert grid.row_labels == ("alpha=1", "alpha=5")
    assert (grid.row_title, grid.col_title) == ("content", "style")
    # Row-major: cell (r, c) is content[r], style[c]; every product member exactly once.
    # The fourth weight, the temporal one of video frames, is not swept: 0.
    expected = [(c, s, 1e-3, 0.0) for c in (1, 5) for s in (1e2, 1e3, 1e4)]
    got = list(zip(*(a.tolist() for a in grid.loss_weights), strict=True))
    np.testing.assert_allclose(got, expected, rtol=1e-7)
    assert all(a.dtype == np.float32 and a.shape == (6,) for a in grid.loss_weights)
    assert grid.labels[4] == "c5_s1e3_tv1e-3"


def test_grid_three_axes_and_single_axis():
    grid = grids.loss_weight_grid(content_weight=[1, 2], style_weight=[10, 20], tv_weight=[0, 1, 2])
    # Columns: style; rows: content x tv (content slowest).
    assert grid.shape == (6, 2)
    assert grid.row_labels[:3] == ("alpha=1 gamma=0", "alpha=1 gamma=1", "alpha=1 gamma=2")
    got = set(zip(*(a.tolist() for a in grid.loss_weights[:3]), strict=True))
    assert got == set(itertools.product((1.0, 2.0), (10.0, 20.0), (0.0, 1.0, 2.0)))
    i = grid.row_labels.index("alpha=2 gamma=1") * 2 + grid.col_labels.index("beta=20")
    assert [float(a[i]) for a in grid.loss_weights] == [2.0, 20.0, 1.0, 0.0]

    single = grids.loss_weight_grid(tv_weight=[0, 1e-2])
    assert single.shape == (1, 2) and single.col_title == "tv"
    assert grids.loss_weight_grid().shape == (1, 1)
    with pytest.raises(ValueError, match="repeat"):
        grids.loss_weight_grid(style_weight=[1, 1])
    with pytest.raises(ValueError, match=">= 0"):
        grids.loss_weight_grid(content_weight=[-1, 1])


def test_ratio_weights():
    ratios = [1e-3, 8e-4, 5e-3, 5e-4]  # Gatys et al. Fig. 3
    grid = grids.ratio_weights(ratios)  # alpha fixed at 1
    np.testing.assert_allclose(grid.loss_weights.content_weight, 1.0)
    np.testing.assert_allclose(grid.loss_weights.style_weight, [1e3, 1250, 200, 2e3], rtol=1e-6)
    assert grid.col_labels[1] == "alpha/beta=8e-4"
    fixed_beta = grids.ratio_weights(ratios, style_weight=1e4, tv_weight=[0, 1])
    assert fixed_beta.shape == (2, 4)
    lw = fixed_beta.loss_weights
    np.testing.assert_allclose(lw.content_weight / lw.style_weight,
                               ratios * 2, rtol=1e-6)
    np.testing.assert_allclose(fixed_beta.loss_weights.tv_weight, [0] * 4 + [1] * 4)
    with pytest.raises(ValueError, match="not both"):
        grids.ratio_weights(ratios, content_weight=1, style_weight=1)
    with pytest.raises(ValueError, match="> 0"):
        grids.ratio_weights([0.0])


def test_as_settings_broadcasts_and_checks():
    lw = grids.as_settings(LossWeights.of(1.0, [1e2, 1e3], 0.0))
    assert [a.tolist() for a in lw] == [[1, 1], [100, 1000], [0, 0], [0, 0]]
    assert all(a.dtype == np.float32 for a in lw)
    assert grids.as_settings(LossWeights.of(1.0, 2.0, 3.0)).content_weight.shape == (1,)
    # The values are checked once, where the LossWeights is built.
    with pytest.raises(ValueError, match="style_weight must be finite and >= 0"):
        LossWeights(np.ones(2), np.array([1.0, -1.0]), np.zeros(2))
    with pytest.raises(ValueError, match="scalars or"):
        grids.as_settings(LossWeights(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2))))
