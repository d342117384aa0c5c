"""Loss-weight grids: K (alpha, beta, gamma) settings laid out as the rows x columns of a
contact sheet (the alpha/beta grid of Gatys et al.'s Fig. 3), and their labels.

    grid = jaxstyle.loss_weight_grid(content_weight=[1, 5], style_weight=[1e2, 1e3, 1e4])
    grid = jaxstyle.ratio_weights([1e-3, 8e-4, 5e-3, 5e-4])                   # alpha/beta

The first is K = 6 settings in 2 rows x 3 columns. Weights are checked once, where the
`LossWeights` is built; a weight not given is the `StyleConfig` default.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np

from jaxstyle import checks
from jaxstyle.config import StyleConfig
from jaxstyle.files import SettingError
from jaxstyle.losses import LossWeights
from jaxstyle.sheet import contact_sheet

# The weights a grid sweeps (a video's temporal_weight is not swept: it stays as given).
FIELDS = ("content_weight", "style_weight", "tv_weight")
# The paper's symbol of each weight, on contact sheets; the defaults are the config's.
_SYMBOL = {"content_weight": "alpha", "style_weight": "beta", "tv_weight": "gamma"}
_DEFAULT = {name: getattr(StyleConfig, name) for name in FIELDS}


def format_weight(x: float) -> str:
    """Short, file-name-safe text for a weight: 1, 5, 0.5, 100, 1e3, 1.5e4, 8e-4, 0."""
    x = float(x)
    if x == 0:
        return "0"
    if 0.01 <= abs(x) < 1000:
        return f"{x:.4g}"
    mantissa, exponent = f"{x:.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def setting_label(content: float, style: float, tv: float) -> str:
    """The name of one setting, used in file names: "c1_s1e3_tv0"."""
    return f"c{format_weight(content)}_s{format_weight(style)}_tv{format_weight(tv)}"


@dataclasses.dataclass(frozen=True)
class WeightGrid:
    """K loss-weight settings laid out as a rows x cols grid (K = rows * cols, row-major).

    loss_weights: `LossWeights` of (K,) float32 numpy arrays.
    row_labels, col_labels: text for the contact sheet's rows and columns.
    row_title, col_title: what varies along the rows / columns ("" when nothing does).
    """

    loss_weights: LossWeights
    row_labels: tuple[str, ...]
    col_labels: tuple[str, ...]
    row_title: str = ""
    col_title: str = ""

    def __post_init__(self) -> None:
        k = _num_settings(self.loss_weights)
        if len(self.row_labels) * len(self.col_labels) != k:
            raise ValueError(f"{len(self.row_labels)} x {len(self.col_labels)} grid labels for "
                             f"{k} settings")

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.row_labels), len(self.col_labels)

    @property
    def labels(self) -> tuple[str, ...]:
        """Per-setting names for files ("c1_s1e3_tv0"), in setting order."""
        return tuple(setting_label(*w[:3]) for w in zip(*self.loss_weights, strict=True))

    def sheet(self, images: Sequence[np.ndarray], *, title: str | None = None,
              max_cell_side: int | None = None) -> np.ndarray:
        """The labelled rows x cols contact sheet of K images in setting order."""
        rows, cols = self.shape
        cells = [[images[r * cols + c] for c in range(cols)] for r in range(rows)]
        return contact_sheet(cells, row_labels=self.row_labels, col_labels=self.col_labels,
                             title=title, max_cell_side=max_cell_side)

    @classmethod
    def row(cls, loss_weights: LossWeights) -> WeightGrid:
        """Any K settings as one row, each column labelled with its three weights."""
        lw = as_settings(loss_weights)
        cols = tuple("\n".join(f"{_SYMBOL[name]}={format_weight(w)}"
                               for name, w in zip(FIELDS, ws[:3], strict=True))
                     for ws in zip(*lw, strict=True))
        return cls(lw, ("",), cols)


def loss_weight_grid(
    *,
    content_weight: float | Sequence[float] = _DEFAULT["content_weight"],
    style_weight: float | Sequence[float] = _DEFAULT["style_weight"],
    tv_weight: float | Sequence[float] = _DEFAULT["tv_weight"],
) -> WeightGrid:
    """The Cartesian product of the given alpha (content), beta (style), gamma (TV) values.

    K = len(content_weight) * len(style_weight) * len(tv_weight) settings, ordered with
    content slowest and tv fastest. Layout: the columns are the last swept weight in the order
    (content, style, tv) with style preferred (the paper's Fig. 3 varies beta along a row);
    the rows are the product of the other swept weights. Nothing swept: one cell.
    """
    values = {name: _value_list(v, name) for name, v in
              (("content_weight", content_weight), ("style_weight", style_weight),
               ("tv_weight", tv_weight))}
    swept = [name for name in FIELDS if len(values[name]) > 1]
    col_axis = "style_weight" if "style_weight" in swept else (swept[-1] if swept else None)
    row_axes = [name for name in swept if name != col_axis]
    combos = list(itertools.product(*(values[name] for name in FIELDS)))
    arrays = [np.array([c[i] for c in combos], np.float32) for i in range(3)]
    lw = LossWeights(*arrays)
    # Settings in row-major order of (row axes..., column axis): reorder the product.
    row_values = list(itertools.product(*(values[name] for name in row_axes)))
    col_values = values[col_axis] if col_axis else (None,)
    order = []
    for rv in row_values:
        for cv in col_values:
            fixed = dict(zip(row_axes, rv, strict=True))
            if col_axis:
                fixed[col_axis] = cv
            order.append(next(i for i, c in enumerate(combos)
                              if all(c[FIELDS.index(n)] == v for n, v in fixed.items())))
    lw = LossWeights(*(a[order] for a in lw))
    row_labels = tuple(" ".join(f"{_SYMBOL[n]}={format_weight(v)}"
                                for n, v in zip(row_axes, rv, strict=True)) for rv in row_values)
    col_labels = tuple(f"{_SYMBOL[col_axis]}={format_weight(v)}" if col_axis else ""
                       for v in col_values)
    return WeightGrid(lw, row_labels, col_labels,
                      row_title=" ".join(_short(a) for a in row_axes),
                      col_title=_short(col_axis) if col_axis else "")


def ratio_weights(
    ratios: Sequence[float],
    *,
    content_weight: float | None = None,
    style_weight: float | None = None,
    tv_weight: float | Sequence[float] = _DEFAULT["tv_weight"],
) -> WeightGrid:
    """Settings with the given alpha/beta ratios (the paper's Fig. 3: 1e-3, 8e-4, 5e-3, 5e-4).

    Fix one of the two: style_weight=beta gives alpha = ratio * beta; otherwise
    content_weight=alpha (default 1) gives beta = alpha / ratio. Columns are the ratios in the
    given order; several tv_weight values make rows.
    """
    if content_weight is not None and style_weight is not None:
        raise SettingError("give content_weight or style_weight, not both: the ratio sets the "
                           "other", "ratio")
    r = _value_list(ratios, "ratio")
    if any(v <= 0 for v in r):
        raise SettingError(f"alpha/beta ratios must be > 0, got {list(r)}", "ratio")
    tvs = _value_list(tv_weight, "tv_weight")
    if style_weight is not None:
        pairs = [(v * float(style_weight), float(style_weight)) for v in r]
    else:
        alpha = _DEFAULT["content_weight"] if content_weight is None else float(content_weight)
        pairs = [(alpha, alpha / v) for v in r]
    settings = [(a, b, t) for t in tvs for a, b in pairs]
    lw = LossWeights(*(list(ws) for ws in zip(*settings, strict=True)))
    row_labels = tuple(f"{_SYMBOL['tv_weight']}={format_weight(t)}" for t in tvs) \
        if len(tvs) > 1 else ("",)
    col_labels = tuple(f"alpha/beta={format_weight(v)}" for v in r)
    return WeightGrid(lw, row_labels, col_labels, row_title="tv" if len(tvs) > 1 else "",
                      col_title="alpha/beta")


def _short(name: str) -> str:
    """The weight's name on a sheet's axis: "content", "style", "tv"."""
    return name.removesuffix("_weight")


def _value_list(v: float | Sequence[float], name: str) -> tuple[float, ...]:
    checks.weights(name, v)
    values = tuple(float(x) for x in np.atleast_1d(np.asarray(v, np.float64)))
    if not values:
        raise SettingError(f"{name}: no values given", name)
    if len(set(values)) != len(values):
        raise SettingError(f"{name} values repeat: {list(values)}", name)
    return values


def as_settings(lw: LossWeights) -> LossWeights:
    """K settings as a `LossWeights` of (K,) float32 NumPy arrays (scalars: K = 1; the values
    were checked when `lw` was built)."""
    try:
        arrays = np.broadcast_arrays(*(np.atleast_1d(np.asarray(w, np.float32)) for w in lw))
    except ValueError:
        raise SettingError(f"loss weights of shapes {[np.shape(w) for w in lw]} do not "
                           "broadcast to one", "loss_weights") from None
    if arrays[0].ndim != 1 or arrays[0].shape[0] == 0:
        raise SettingError("loss weights must be scalars or (K,) arrays with K >= 1, got "
                           f"shape {arrays[0].shape}", "loss_weights")
    return LossWeights(*(np.ascontiguousarray(a) for a in arrays))


def _num_settings(lw: LossWeights) -> int:
    return int(np.shape(lw.content_weight)[0])
