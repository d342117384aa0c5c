"""`StyleConfig`: everything that shapes a Gatys run, frozen and hashable, checked once.

Data (images, init images, masks) are never stored in it: they are arguments of the entry
functions. The loss weights it holds become a traced `LossWeights` (`loss_weights`), so a
new value never recompiles; the rest turns into the static `LossSpec` (`loss_spec`) and
`Optimizer` (`optimizer_spec`) that the compiled programs take.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import optax

from jaxstyle import checks
from jaxstyle.files import SettingError
from jaxstyle.kernels import PRECISIONS, ROUNDINGS, Arithmetic
from jaxstyle.losses import TV_FORMS, LossSpec, LossWeights
from jaxstyle.optimizers import OPTIMIZERS, Optimizer
from jaxstyle.runtime import COMPUTE_DTYPES
from jaxstyle.vgg import POOLINGS, canonical_layer

# Gatys et al. (2016), section 3: content at conv4_2, style at conv1_1..conv5_1, all
# post-ReLU activations (our relu{b}_{i} names).
CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
INITS = ("content", "noise", "style")
# The first stage of the "auto" ladder, in pixels on the longer side.
AUTO_SCALES_START = 128


@dataclasses.dataclass(frozen=True)
class StyleConfig:
    """Everything one stylization needs besides the images and the network weights.

    Objective: total = alpha L_c + beta L_s + gamma TV (Gatys et al., CVPR 2016; the paper's
    symbols in brackets).
    content_layers   layers whose features define content, L_c summed over them
                     (default ("relu4_2",)); names or Keras aliases (block4_conv2).
    style_layers     layers whose Gram matrices define style (default relu1_1..relu5_1).
    style_layer_weights  w_l, one per style layer, normalized to sum 1 (None: 1/L each).
    content_weight   alpha, the content loss's weight (default 1).
    style_weight     beta, the style loss's weight (default 1e3: alpha/beta = 1e-3, a ratio
                     of the paper's Fig. 3).
    tv_weight        gamma, the total variation's weight on the [0, 1] image (default 0).
    temporal_weight  tau, the weight of a video frame's temporal loss (`losses.temporal_loss`,
                     Ruder et al. 2016); used only when `stylize` is given `temporal=`
                     (default 0).
    tv_form          "squared" (sum of squared neighbour differences) or "keras" (the Keras
                     example's (dx^2 + dy^2)^1.25).
    pooling          "max" (default) or "avg" (the paper's choice).
    compute_dtype    "float32", or "bfloat16" for GPU/TPU speed (Grams, losses and targets
                     still accumulate in float32).
    matmul_precision the precision XLA is asked for in the convolutions and products:
                     "default" (NVIDIA GPUs: TF32, 10-bit mantissas; CPUs: exact float32),
                     "high" (three bfloat16 passes on GPUs), "highest" (exact float32).
    emulate_rounding None, or "tf32" / "bfloat16": round every operand of those
                     convolutions and products to that format (float32 sums), as a GPU
                     does: for studying a GPU's rounding on a CPU.

    Optimization:
    optimizer        "lbfgs" (default: zoom line search; the image is clipped only at the
                     end), "adam" (projected onto [0, 1] after every step), "lbfgs-nols"
                     (step 1, no line search, like jcjohnson's neural-style), or any optax
                     GradientTransformation (e.g. optax.adamw(0.01)).
    iterations       optimizer steps per stage (L-BFGS: iterations, each with its own line
                     search; default 500).
    learning_rate    Adam's step size in [0, 1] pixel units (None: 0.02; jcjohnson's 10 on
                     0-255 pixels is about 0.04). Only "adam" takes one.
    average_decay    None, or d in (0, 1): return the bias-corrected exponential moving
                     average of the iterates with decay d instead of the best iterate.
    init             the start image: "content" (default), "noise" (uniform, seeded) or
                     "style" (an image array goes to `stylize(init=...)` instead).
    seed             seed of the noise init; randomness comes only from here.

    Sizes and stages:
    image_size       the output's longer side in pixels: the content is scaled up or down
                     to it (jcjohnson's -image_size). None: the content's own size.
    style_scale      each style image's longer side relative to the output's (default 1).
    style_blend_weights  b_k of several style images, normalized to sum 1 (None: equal).
    scales           coarse to fine: the longer side at each stage, strictly increasing,
                     e.g. (256, 512, 1024); each stage starts from the previous result,
                     upsampled; the last is the output size. "auto" (default): from 128 px to
                     the output size in steps of sqrt(2) (one stage up to 128 px). None or
                     "none": one stage. Lists are accepted.
    scale_iterations steps of each stage, one per scale (needs explicit scales). None:
                     `iterations` at every stage.
    carry_state      Adam across stages: go on with its moments resized (True, default), or
                     start afresh. L-BFGS always starts afresh (its curvature pairs belong to
                     one size).

    Every field is checked when the config is made (SettingError naming the field and what
    it accepts); lists become tuples and layer aliases their canonical names.
    """

    content_layers: tuple[str, ...] = CONTENT_LAYERS
    style_layers: tuple[str, ...] = STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None
    content_weight: float = 1.0
    style_weight: float = 1e3
    tv_weight: float = 0.0
    temporal_weight: float = 0.0
    tv_form: str = "squared"
    pooling: str = "max"
    compute_dtype: str = "float32"
    matmul_precision: str = "default"
    emulate_rounding: str | None = None
    optimizer: Any = "lbfgs"
    iterations: int = 500
    learning_rate: float | None = None
    average_decay: float | None = None
    init: str = "content"
    seed: int = 0
    image_size: int | None = None
    style_scale: float = 1.0
    style_blend_weights: tuple[float, ...] | None = None
    scales: tuple[int, ...] | str | None = "auto"
    scale_iterations: tuple[int, ...] | None = None
    carry_state: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def validate(self) -> None:
        """Check and normalize every field (lists -> tuples, aliases -> canonical layer
        names, "none" -> None, numbers -> float or int); SettingError naming the first bad
        field."""
        for name in ("content_layers", "style_layers"):
            self._set(name, _layers(name, getattr(self, name)))
        if not self.content_layers and not self.style_layers:
            raise SettingError("at least one content or style layer is needed",
                               "style_layers")
        for name in ("content_weight", "style_weight", "tv_weight", "temporal_weight"):
            self._set(name, float(checks.weights(name, checks.number(name, getattr(self, name)))))
        for name in ("style_layer_weights", "style_blend_weights"):
            value = getattr(self, name)
            if value is not None:
                weights = checks.weights(name, checks.sequence(name, value, "numbers >= 0"),
                                        positive_sum=True)
                self._set(name, tuple(float(w) for w in weights))
        if self.style_layer_weights is not None and \
                len(self.style_layer_weights) != len(self.style_layers):
            raise SettingError(f"style_layer_weights has {len(self.style_layer_weights)} "
                               f"entries for {len(self.style_layers)} style layers",
                               "style_layer_weights")
        for name, allowed in (("tv_form", TV_FORMS), ("pooling", POOLINGS),
                              ("compute_dtype", COMPUTE_DTYPES), ("init", INITS),
                              ("matmul_precision", tuple(PRECISIONS)),
                              ("emulate_rounding", (None, *ROUNDINGS))):
            checks.choice(name, getattr(self, name), allowed)
        if not isinstance(self.optimizer, optax.GradientTransformation) and \
                self.optimizer not in OPTIMIZERS:
            raise SettingError(f"optimizer must be one of {OPTIMIZERS} or an optax "
                               f"GradientTransformation, got {self.optimizer!r}", "optimizer")
        self._set("iterations", checks.integer("iterations", self.iterations, 1))
        self._set("seed", checks.integer("seed", self.seed, 0))
        if self.image_size is not None:
            self._set("image_size", checks.integer("image_size", self.image_size, 1))
        self._set("style_scale", checks.positive("style_scale", self.style_scale))
        if self.learning_rate is not None:
            self._set("learning_rate", checks.positive("learning_rate", self.learning_rate))
        if self.average_decay is not None:
            decay = checks.number("average_decay", self.average_decay)
            if not 0 < decay < 1:
                raise SettingError(f"average_decay must be in (0, 1), got {decay!r}",
                                   "average_decay")
            self._set("average_decay", float(decay))
        if not isinstance(self.carry_state, (bool, np.bool_)):
            raise SettingError(f"carry_state must be True or False, got {self.carry_state!r}",
                               "carry_state")
        self._validate_scales()
        self.optimizer_spec()  # the optimizer's own rules (learning_rate only for Adam)

    def _validate_scales(self) -> None:
        scales = self.scales
        if isinstance(scales, str):
            if scales not in ("auto", "none"):
                raise SettingError("scales must be 'auto', None (or 'none'), or increasing "
                                   f"sizes such as (256, 512), got {scales!r}", "scales")
            scales = None if scales == "none" else scales
        elif scales is not None:
            scales = tuple(checks.integer("scales", s, 1) for s in checks.sequence("scales", scales,
                                                                        "sizes in pixels"))
            if not scales:
                raise SettingError("scales must not be empty (None: one stage)", "scales")
            if any(b <= a for a, b in zip(scales[:-1], scales[1:], strict=False)):
                raise SettingError(f"scales must be strictly increasing, got {list(scales)}",
                                   "scales")
            if self.image_size is not None and self.image_size != scales[-1]:
                raise SettingError(f"image_size {self.image_size} and scales {list(scales)}: "
                                   "the last scale is the output size", "image_size")
        self._set("scales", scales)
        iterations = self.scale_iterations
        if iterations is None:
            return
        if not isinstance(scales, tuple):
            raise SettingError("scale_iterations needs explicit scales, one count per scale "
                               "(with 'auto' every stage runs `iterations`)", "scale_iterations")
        iterations = tuple(checks.integer("scale_iterations", n, 1) for n in
                           checks.sequence("scale_iterations", iterations, "step counts"))
        if len(iterations) != len(scales):
            raise SettingError(f"scale_iterations must be {len(scales)} positive integers (one "
                               f"per scale), got {list(iterations)}", "scale_iterations")
        self._set("scale_iterations", iterations)

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
        """The configured (alpha, beta, gamma, tau) as a traced `LossWeights`."""
        return LossWeights(self.content_weight, self.style_weight, self.tv_weight,
                           self.temporal_weight)

    def loss_spec(self, convention: str) -> LossSpec:
        """The objective's static part for weights of `convention` ("caffe" or "torch")."""
        return LossSpec(content_layers=self.content_layers, style_layers=self.style_layers,
                        style_layer_weights=self.normalized_style_layer_weights(),
                        tv_form=self.tv_form, pooling=self.pooling, convention=convention,
                        compute_dtype=self.compute_dtype,
                        arithmetic=Arithmetic(self.matmul_precision, self.emulate_rounding))

    def optimizer_spec(self) -> Optimizer:
        """The optimizer these settings name (`optimizers.Optimizer`)."""
        return Optimizer.of(self.optimizer, learning_rate=self.learning_rate,
                            average_decay=self.average_decay)

    def normalized_style_layer_weights(self) -> tuple[float, ...]:
        """w_l summing to 1 (equal 1/L when unset)."""
        return _normalized(self.style_layer_weights, len(self.style_layers))

    def normalized_blend_weights(self, num_styles: int) -> tuple[float, ...]:
        """b_k summing to 1 for `num_styles` style images (equal when unset)."""
        if self.style_blend_weights is not None and len(self.style_blend_weights) != num_styles:
            raise SettingError(f"{len(self.style_blend_weights)} style blend weights given for "
                               f"{num_styles} style image(s)", "style_blend_weights")
        return _normalized(self.style_blend_weights, num_styles)

    def replace(self, **changes: Any) -> StyleConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (tuples as lists; an optax optimizer as
        "custom")."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "optimizer":
                value = self.optimizer_spec().label
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def auto_scales(end: int, start: int = AUTO_SCALES_START) -> tuple[int, ...]:
    """Sides from `start` (or `end`, if smaller) up to `end` in steps of sqrt(2):
    round(end / 2^(i/2)) for i = 0, 1, ... while >= start, in increasing order."""
    start = min(start, end)
    sides, i = set(), 0
    while (side := round(end / 2 ** (i / 2))) >= start:
        sides.add(side)
        i += 1
    return tuple(sorted(sides))


def _layers(name: str, value: Any) -> tuple[str, ...]:
    """Layer names as a tuple of canonical names; one name alone is a list of one."""
    names = (value,) if isinstance(value, str) else checks.sequence(name, value, "layer names")
    if not all(isinstance(n, str) for n in names):
        raise SettingError(f"{name} must be layer names such as 'relu3_1', got {value!r}", name)
    try:
        return tuple(canonical_layer(n) for n in names)
    except ValueError as err:
        raise SettingError(f"{name}: {err}", name) from None


def _normalized(weights: Sequence[float] | None, count: int) -> tuple[float, ...]:
    if count == 0:
        return ()
    if weights is None:
        return (1.0 / count,) * count
    total = float(sum(weights))
    return tuple(float(w) / total for w in weights)
