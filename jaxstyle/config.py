"""Configuration: the frozen `StyleConfig`, the traced `LossWeights`, and every enumeration.

`StyleConfig` holds everything that shapes a run (layers, optimizer, step counts, sizes) plus
the default loss weights: hashable, so its parts can be static arguments of jitted functions.
Data (images, init images, masks) are never stored in it: they are arguments of the entry
functions. `LossWeights` holds the three loss weights as arrays: they are traced, so changing
them never recompiles, and `jax.vmap` batches them (sweeps).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Gatys et al. (2016), section 3: content at conv4_2, style at conv1_1..conv5_1, all
# post-ReLU activations (our relu{b}_{i} names).
CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

OPTIMIZERS = ("lbfgs", "adam", "lbfgs-nols")
INITS = ("content", "noise", "style")
POOLINGS = ("max", "avg")
TV_FORMS = ("squared", "keras")
COLOR_MODES = ("none", "luminance", "histogram")
COMPUTE_DTYPES = ("float32", "bfloat16")


def check_weights(name: str, values, *, positive_sum: bool = False) -> np.ndarray:
    """`values` as a float32 array if all are finite and >= 0 (and, with positive_sum, not all
    zero); ValueError naming `name` otherwise. The one check of every weight list."""
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {arr.tolist()}")
    if positive_sum and not arr.sum() > 0:
        raise ValueError(f"{name} must not all be zero")
    return arr.astype(np.float32)


class LossWeights(NamedTuple):
    """alpha (content), beta (style), gamma (TV) as float32 arrays: a pytree of traced leaves.

    Scalars for one run; arrays with a leading K axis for a sweep of K settings.
    """

    content: jax.Array
    style: jax.Array
    tv: jax.Array

    @classmethod
    def of(cls, content, style, tv) -> LossWeights:
        """Build from Python numbers or sequences; all three broadcast to one shape."""
        arrays = np.broadcast_arrays(*(check_weights(f"{name} weight", v)
                                       for name, v in zip(cls._fields, (content, style, tv),
                                                          strict=True)))
        return cls(*(jnp.asarray(a) for a in arrays))


@dataclasses.dataclass(frozen=True)
class StyleConfig:
    """Everything one stylization needs besides the images and the network weights."""

    # Layers whose features define content (L_c summed over them).
    content_layers: tuple[str, ...] = CONTENT_LAYERS
    # Layers whose Gram matrices define style.
    style_layers: tuple[str, ...] = STYLE_LAYERS
    # w_l per style layer; None means equal weights 1/L. Normalized to sum to 1.
    style_layer_weights: tuple[float, ...] | None = None
    # alpha: weight of the content loss.
    content_weight: float = 1.0
    # beta: weight of the style loss (alpha/beta = 1e-3, a ratio from the paper's Fig. 3).
    style_weight: float = 1e3
    # gamma: weight of the total-variation loss on the [0, 1] RGB image.
    tv_weight: float = 0.0
    # "squared" (the sum of squared neighbour differences) or "keras" (the Keras example's
    # (dx^2 + dy^2)^1.25 form).
    tv_form: str = "squared"
    # "max" (default, as most tools) or "avg" (the paper's choice).
    pooling: str = "max"
    # The network's computation dtype: "float32", or "bfloat16" for GPU/TPU speed (Grams,
    # losses and targets still accumulate in float32).
    compute_dtype: str = "float32"
    # "lbfgs" (optax, zoom line search; the image is clipped only at the end), "adam"
    # (projected onto [0, 1] after every step), or "lbfgs-nols" (L-BFGS with step size 1 and
    # no line search, like jcjohnson's neural-style; cheap to vmap in sweeps). With the "auto"
    # ladder below, the default reached the loss of 100 PyTorch L-BFGS iterations soonest at
    # 512 and 1024 px in benchmarks/convergence.py (README, "Which optimizer").
    optimizer: str = "lbfgs"
    # Number of optimizer steps (L-BFGS: iterations, each with its own line search).
    iterations: int = 500
    # Adam step size, in [0, 1] pixel units (jcjohnson's 1e1 on 0-255 pixels is ~0.04 here).
    learning_rate: float = 0.02
    # Start image: "content", "noise" (seeded) or "style" (an image array is passed to
    # stylize as `init=` instead: data, not configuration).
    init: str = "content"
    # Seed for the noise init; randomness comes only from here.
    seed: int = 0
    # Longest side of the output in pixels: the content is scaled up or down to it (as
    # jcjohnson/neural-style's -image_size). None: the content's own size.
    image_size: int | None = None
    # Style image side relative to the output's side (jcjohnson's -style_scale).
    style_scale: float = 1.0
    # Blend weights b_k of several style images (None = equal); normalized to sum to 1.
    style_blend_weights: tuple[float, ...] | None = None
    # Coarse to fine: the longer side in pixels at each stage, strictly increasing, e.g.
    # (256, 512, 1024); each stage starts from the previous result, upsampled. The last is the
    # output size (image_size, if also given, must equal it). "auto": from 128 px up to the
    # output size in steps of sqrt(2) (crowsonkb/style-transfer-pytorch's ladder; the
    # default; one stage for outputs of 128 px or less). None: one stage.
    scales: tuple[int, ...] | str | None = "auto"
    # Optimizer steps per stage, one per scale; None: `iterations` at every stage.
    scale_iterations: tuple[int, ...] | None = None
    # Adam across stages: go on with its moments, resized to the next stage (True), or start
    # afresh (False). L-BFGS always starts afresh (its curvature pairs belong to one size).
    carry_state: bool = True
    # None, or d in (0, 1): return the bias-corrected exponential moving average of the
    # iterates with decay d (e.g. 0.99) instead of the best iterate; a later stage starts
    # from it.
    average_decay: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        from jaxstyle.vgg import canonical_layer  # local: vgg imports nothing from here

        if not self.content_layers and not self.style_layers:
            raise ValueError("at least one content or style layer is needed")
        for name in (*self.content_layers, *self.style_layers):
            canonical_layer(name)  # raises ValueError listing the valid names
        if self.style_layer_weights is not None:
            if len(self.style_layer_weights) != len(self.style_layers):
                raise ValueError(
                    f"style_layer_weights has {len(self.style_layer_weights)} entries for "
                    f"{len(self.style_layers)} style layers"
                )
            check_weights("style_layer_weights", self.style_layer_weights, positive_sum=True)
        if self.style_blend_weights is not None:
            check_weights("style_blend_weights", self.style_blend_weights, positive_sum=True)
        for name in ("content_weight", "style_weight", "tv_weight"):
            check_weights(name, getattr(self, name))
        for name, allowed in (("tv_form", TV_FORMS), ("pooling", POOLINGS),
                              ("compute_dtype", COMPUTE_DTYPES), ("optimizer", OPTIMIZERS),
                              ("init", INITS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not _positive_ints((self.iterations,)):
            raise ValueError(f"iterations must be a positive integer, got {self.iterations!r}")
        if not (self.learning_rate > 0 and np.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not (self.style_scale > 0 and np.isfinite(self.style_scale)):
            raise ValueError(f"style_scale must be > 0, got {self.style_scale!r}")
        if self.image_size is not None and not _positive_ints((self.image_size,)):
            raise ValueError(f"image_size must be a positive integer, got {self.image_size!r}")
        if self.average_decay is not None and not 0 < self.average_decay < 1:
            raise ValueError(f"average_decay must be in (0, 1), got {self.average_decay!r}")
        self._validate_scales()

    def _validate_scales(self) -> None:
        scales, iterations = self.scales, self.scale_iterations
        if isinstance(scales, str):
            if scales != "auto":
                raise ValueError(f"scales must be a tuple of sizes or 'auto', got {scales!r}")
            if iterations is not None:
                raise ValueError("scale_iterations needs explicit scales (with 'auto' every "
                                 "stage runs `iterations`)")
            return
        if scales is not None:
            if not isinstance(scales, tuple) or not scales or not _positive_ints(scales):
                raise ValueError(f"scales must be a non-empty tuple of positive integers, "
                                 f"got {scales!r}")
            if any(b <= a for a, b in zip(scales[:-1], scales[1:], strict=False)):
                raise ValueError(f"scales must be strictly increasing, got {list(scales)}")
            if self.image_size is not None and self.image_size != scales[-1]:
                raise ValueError(f"image_size {self.image_size} and scales {list(scales)}: the "
                                 "last scale is the output size")
        if iterations is not None:
            if scales is None:
                raise ValueError("scale_iterations needs scales (one entry per scale)")
            if (not isinstance(iterations, tuple) or len(iterations) != len(scales)
                    or not _positive_ints(iterations)):
                raise ValueError(f"scale_iterations must be {len(scales)} positive integers "
                                 f"(one per scale), got {iterations!r}")

    @property
    def output_side(self) -> int | None:
        """The output's longest side: the last scale, else image_size (None: the content's)."""
        return self.scales[-1] if isinstance(self.scales, tuple) else self.image_size

    def stage_sides(self, output_side: int) -> tuple[int, ...]:
        """The longest side of each stage for an output of `output_side` px."""
        if self.scales == "auto":
            return auto_scales(output_side)
        return self.scales or (output_side,)

    def stage_iterations(self, stages: int) -> tuple[int, ...]:
        """Steps per stage: `scale_iterations`, else `iterations` at every one of `stages`."""
        if self.scale_iterations is not None:
            return tuple(self.scale_iterations)
        return (self.iterations,) * stages

    @property
    def loss_weights(self) -> LossWeights:
        """The configured (alpha, beta, gamma) as a traced `LossWeights`."""
        return LossWeights.of(self.content_weight, self.style_weight, self.tv_weight)

    def normalized_style_layer_weights(self) -> tuple[float, ...]:
        """w_l summing to 1 (equal 1/L when unset)."""
        return _normalized(self.style_layer_weights, len(self.style_layers))

    def normalized_blend_weights(self, num_styles: int) -> tuple[float, ...]:
        """b_k summing to 1 for `num_styles` style images (equal when unset)."""
        if self.style_blend_weights is not None and len(self.style_blend_weights) != num_styles:
            raise ValueError(
                f"{len(self.style_blend_weights)} style blend weights given for "
                f"{num_styles} style image(s)"
            )
        return _normalized(self.style_blend_weights, num_styles)

    def replace(self, **changes) -> StyleConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields as JSON-ready values (tuples as lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}


def auto_scales(end: int, start: int = 128) -> tuple[int, ...]:
    """Sides from `start` (or `end`, if smaller) up to `end` in steps of sqrt(2):
    round(end / 2^(i/2)) for i = 0, 1, ... while >= start, in increasing order."""
    start = min(start, end)
    sides, i = set(), 0
    while (side := round(end / 2 ** (i / 2))) >= start:
        sides.add(side)
        i += 1
    return tuple(sorted(sides))


def _positive_ints(values) -> bool:
    return all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
               for v in values)


def _normalized(weights, count: int) -> tuple[float, ...]:
    if count == 0:
        return ()
    if weights is None:
        return (1.0 / count,) * count
    total = float(sum(weights))
    return tuple(float(w) / total for w in weights)
