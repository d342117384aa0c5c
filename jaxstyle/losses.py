"""The Gatys et al. losses, their weights and their targets, as pure functions.

Normalizations, with F the (h, w, C) post-ReLU features of the image, N = C channels and
M = h*w positions (each function's docstring states its own):
    Gram          G = F^T F over positions                       (N, N), unnormalized
    content       L_c = 1/2 sum (F - P)^2, summed over content layers
    style layer   E_l = sum (G - A)^2 / (4 N^2 M^2)
    style         L_s = sum_l w_l E_l, w_l normalized to sum 1 (default 1/L)
    TV (squared)  sum (x[i+1,j] - x[i,j])^2 + (x[i,j+1] - x[i,j])^2 on the [0, 1] RGB image
    temporal      L_t = (1/D) sum_j sum_k c_jk (x_k - w_jk)^2, D = H W 3 (video, Ruder et al.)
    total         alpha L_c + beta L_s + gamma TV + tau L_t
                  (`LossWeights`: alpha, beta, gamma, tau; tau = 0 and no `Temporal`: images)
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import checks
from jaxstyle.files import SettingError
from jaxstyle.guided import PRODUCT, guided_style_layer_loss, mask_at, pixels_at
from jaxstyle.kernels import FLOAT32, Arithmetic
from jaxstyle.runtime import COMPUTE_DTYPES
from jaxstyle.vgg import features

# The order of a loss vector's entries (the optimizer's state, histories): the weighted
# total, then the unweighted parts.
LOSS_NAMES = ("total", "content", "style", "tv", "temporal")
# The total variation's forms (`total_variation`).
TV_FORMS = ("squared", "keras")


def gram_matrix(feats: jax.Array, arithmetic: Arithmetic = FLOAT32) -> jax.Array:
    """G = F F^T with F reshaped to (N channels, M = h*w): (h, w, N) -> (N, N), unnormalized.

    Accumulated in float32 whatever the feature dtype, in `arithmetic` (its precision and
    operand rounding; `kernels.Arithmetic`).
    """
    f = feats.reshape(-1, feats.shape[-1])
    return arithmetic.matmul(f, f)


def content_loss(feats: jax.Array, target: jax.Array) -> jax.Array:
    """L_c = 1/2 * sum_ij (F_ij - P_ij)^2 for one layer (no mean, no size normalization)."""
    diff = feats.astype(jnp.float32) - target
    return 0.5 * jnp.sum(diff * diff)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def style_layer_loss(feats: jax.Array, target_gram: jax.Array,
                     arithmetic: Arithmetic = FLOAT32) -> jax.Array:
    """E_l = sum_ij (G_ij - A_ij)^2 / (4 N^2 M^2), G the Gram of `feats` (h, w, N), M = h*w.

    Derivative (custom JVP, F the (M, N) features, D = G - A, c = 1 / (4 N^2 M^2)):
        dE = 2c * ( sum(F (D + D^T) * dF) - sum(D * dA) )
    so the gradient with respect to F costs one (M, N) x (N, N) product; differentiating
    the Gram einsum instead forms F D and F D^T separately (two products). Both products in
    `arithmetic`.
    """
    return _style_layer_loss(feats, target_gram, arithmetic)[0]


def _style_layer_loss(feats, target_gram, arithmetic):
    n = feats.shape[-1]
    m = feats.shape[0] * feats.shape[1]
    diff = gram_matrix(feats, arithmetic) - target_gram
    scale = 1.0 / (4.0 * n**2 * float(m) ** 2)
    return jnp.sum(diff * diff) * scale, diff, scale


@style_layer_loss.defjvp
def _style_layer_loss_jvp(arithmetic, primals, tangents):
    feats, target_gram = primals
    d_feats, d_target = tangents
    loss, diff, scale = _style_layer_loss(feats, target_gram, arithmetic)
    f = feats.reshape(-1, feats.shape[-1])
    # F (D + D^T), (M, N), accumulated in float32; D is symmetric for Gram targets.
    k = arithmetic.matmul(f, (diff + diff.T).astype(f.dtype), PRODUCT)
    d_loss = 2.0 * scale * (jnp.sum(k * d_feats.reshape(k.shape).astype(jnp.float32))
                            - jnp.sum(diff * d_target))
    return loss, d_loss


def style_loss(
    feats: dict[str, jax.Array],
    target_grams: dict[str, jax.Array],
    layer_weights: dict[str, float],
    masks: dict[str, jax.Array] | None = None,
    arithmetic: Arithmetic = FLOAT32,
) -> jax.Array:
    """L_s = sum_l w_l E_l over the layers in `layer_weights` (weights used as given).

    With `masks` ({layer: (S, h, w)} squared masks, one per style image) and target_grams
    {layer: (S, N, N)}: L_s = sum_l w_l sum_k E_l^k, the guided loss of each style k over its
    mask (`guided_style_layer_loss`).
    """
    if masks:
        return sum(w * sum(guided_style_layer_loss(feats[name], target_grams[name][k],
                                                   masks[name][k], arithmetic)
                           for k in range(masks[name].shape[0]))
                   for name, w in layer_weights.items())
    return sum(w * style_layer_loss(feats[name], target_grams[name], arithmetic)
               for name, w in layer_weights.items())


def total_variation(image: jax.Array, form: str = "squared") -> jax.Array:
    """Total variation of an (H, W, 3) image in [0, 1], summed over pixels and channels.

    "squared" (default): sum (x[i+1,j]-x[i,j])^2 + sum (x[i,j+1]-x[i,j])^2, each difference
    over all pixels where it is defined.
    "keras" (the Keras example): sum ((x[i+1,j]-x[i,j])^2 + (x[i,j+1]-x[i,j])^2)^1.25 over
    the (H-1, W-1) pixels that have both neighbours.
    """
    if form == "squared":
        dy = image[1:, :, :] - image[:-1, :, :]
        dx = image[:, 1:, :] - image[:, :-1, :]
        return jnp.sum(dy * dy) + jnp.sum(dx * dx)
    if form == "keras":
        a = (image[1:, :-1, :] - image[:-1, :-1, :]) ** 2
        b = (image[:-1, 1:, :] - image[:-1, :-1, :]) ** 2
        return jnp.sum(jnp.power(a + b, 1.25))
    raise SettingError(f"tv_form must be one of {TV_FORMS}, got {form!r}", "tv_form")


class Temporal(NamedTuple):
    """What the temporal loss compares the image with (a video's earlier frames).

    images:  (J, H, W, 3) w_j, earlier stylized frames warped into this one, RGB in [0, 1].
    weights: (J, H, W) c_j in [0, 1], per-pixel weights of each (0 where w_j is unknown).
    A frame with fewer earlier frames pads with weight-0 entries, so J (and the compiled
    program) stays the same from frame to frame.
    """

    images: Any
    weights: Any


def temporal_loss(image: jax.Array, temporal: Temporal) -> jax.Array:
    """L_t = (1/D) sum_j sum_k c_jk (x_k - w_jk)^2 over the J earlier frames, with x the
    (H, W, 3) image in [0, 1], w_j = temporal.images[j], c_j = temporal.weights[j] broadcast
    over the channels and D = H W 3 (Ruder, Dosovitskiy and Brox, "Artistic style transfer
    for videos", GCPR 2016, eq. 7-8, on [0, 1] pixels)."""
    diff = image[None].astype(jnp.float32) - temporal.images
    weighted = temporal.weights[..., None] * diff * diff
    return jnp.sum(weighted) / float(image.shape[0] * image.shape[1] * image.shape[2])


def _host_weight(name: str, value: Any) -> Any:
    """A loss weight built from host values (Python or NumPy numbers, lists of them) as a
    checked float32 NumPy array; anything else (a traced or device array, or what JAX puts
    in a pytree's place while it transforms one) as it is."""
    if isinstance(value, (bool, np.bool_)):
        return value
    if isinstance(value, (int, float, np.number, list, tuple)) or (
            isinstance(value, np.ndarray) and value.dtype != object):
        if isinstance(value, (list, tuple)) and not all(
                isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                for v in value):
            return value
        return checks.weights(name, value)
    return value


class _Weights(NamedTuple):
    content_weight: Any
    style_weight: Any
    tv_weight: Any
    temporal_weight: Any


class LossWeights(_Weights):
    """alpha (content_weight), beta (style_weight), gamma (tv_weight), tau (temporal_weight,
    default 0): the weights of total = alpha L_c + beta L_s + gamma TV + tau L_t, as a pytree
    of float32 arrays. tau weighs the temporal loss of a video frame (`temporal_loss`); it
    is 0 for images, and `LossWeights(alpha, beta, gamma)` keeps meaning what it always did.

    Scalars for one run; (K,) arrays for a sweep of K settings (`jax.vmap` maps over them);
    tau not given is 0 in alpha's host shape.
    Built from Python or NumPy numbers (or lists of them) each becomes a checked float32
    NumPy array (finite, >= 0; SettingError naming the field otherwise), so every
    LossWeights built on the host has the same types: a new value never recompiles a
    jitted function that takes it. Traced and device arrays are kept as they are.
    """

    __slots__ = ()

    def __new__(cls, content_weight: Any, style_weight: Any, tv_weight: Any,
                temporal_weight: Any = None) -> LossWeights:
        alpha = _host_weight("content_weight", content_weight)
        if temporal_weight is None:  # 0, shaped like alpha on the host: K settings give (K,)
            temporal_weight = (np.zeros(np.shape(alpha), np.float32)
                               if isinstance(alpha, np.ndarray) else 0.0)
        return super().__new__(cls, alpha, _host_weight("style_weight", style_weight),
                               _host_weight("tv_weight", tv_weight),
                               _host_weight("temporal_weight", temporal_weight))

    @classmethod
    def of(cls, content_weight: Any, style_weight: Any, tv_weight: Any,
           temporal_weight: Any = 0.0) -> LossWeights:
        """Built from numbers or sequences, all four broadcast to one shape."""
        lw = cls(content_weight, style_weight, tv_weight, temporal_weight)
        return cls(*np.broadcast_arrays(*(np.asarray(w, np.float32) for w in lw)))


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """The static part of the objective (hashable: a jit static argument)."""

    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    style_layer_weights: tuple[float, ...]  # normalized, one per style layer
    tv_form: str = "squared"
    pooling: str = "max"
    convention: str = "caffe"
    # The network's computation dtype: "float32", or "bfloat16" for GPU/TPU (convolutions
    # in bfloat16; Grams, losses and targets accumulate and stay in float32).
    compute_dtype: str = "float32"
    # How the convolutions and products compute: XLA's precision and an optional operand
    # rounding that emulates a GPU's (`kernels.Arithmetic`).
    arithmetic: Arithmetic = FLOAT32

    def __post_init__(self) -> None:
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, "
                             f"got {self.compute_dtype!r}")

    @property
    def layers(self) -> tuple[str, ...]:
        """Every layer the losses read, each once (the network stops at the deepest)."""
        return tuple(dict.fromkeys(self.content_layers + self.style_layers))

    def features(self, params: Any, image: jax.Array) -> dict[str, jax.Array]:
        return features(params, image, layers=self.layers, pooling=self.pooling,
                        convention=self.convention, dtype=self.dtype,
                        arithmetic=self.arithmetic)

    @property
    def dtype(self) -> Any:
        """The compute dtype as a jnp dtype (None for float32, Flax's default)."""
        return None if self.compute_dtype == "float32" else jnp.dtype(self.compute_dtype)


class Targets(NamedTuple):
    """What the image is compared with, computed once per (content, styles) and shared.

    content: {layer: (h, w, C)} content features P.
    grams:   {layer: (C, C)} blended style Grams A = sum_k b_k A_k, each A_k rescaled by
             M_image / M_style_k so style images of another size are on the image's scale.
             With masks: {layer: (S, C, C)}, A_k = (M_k / M_style_k) Gram(style k), M_k the
             sum of style k's squared mask at the layer (no blending: the masks mix).
    masks:   {} without masks; else {layer: (S, h, w)}: each style's mask at the layer
             (2x2 averages per pooling before it), squared.
    temporal: None (an image: no leaves, the objective compiles as without video), or a
             video frame's `Temporal` (warped earlier results and their weights).
    """

    content: dict[str, jax.Array]
    grams: dict[str, jax.Array]
    masks: dict[str, jax.Array] = {}
    temporal: Temporal | None = None


def content_features(params: Any, image: jax.Array, spec: LossSpec) -> dict[str, jax.Array]:
    """{layer: (h, w, C) float32} features of an (H, W, 3) image at the content layers: the
    content targets P when `image` is the content image. The network stops at the deepest
    content layer."""
    if not spec.content_layers:
        return {}
    feats = features(params, image, layers=spec.content_layers, pooling=spec.pooling,
                     convention=spec.convention, dtype=spec.dtype, arithmetic=spec.arithmetic)
    return {name: feats[name].astype(jnp.float32) for name in spec.content_layers}


@functools.partial(jax.jit, static_argnames=("spec", "with_content"))
def compute_targets(
    params: Any,
    content: jax.Array,
    styles: Sequence[jax.Array],
    blend_weights: jax.Array,
    spec: LossSpec,
    with_content: bool = True,
    masks: jax.Array | None = None,
) -> Targets:
    """Targets for a content image (H, W, 3) and style images [(Hk, Wk, 3)], all RGB [0, 1].

    blend_weights: (K,) b_k summing to 1. The content image's feature sizes set M.
    with_content=False leaves Targets.content empty ({}): for a run that starts at the content
    image, whose first evaluation computes those features anyway.
    masks: None, or (K, H, W) in [0, 1], one per style image over the content image: guided
    Grams (see `Targets`); blend_weights are then not used.
    """
    content_targets = content_features(params, content, spec) if with_content else {}
    grams, guides = {}, {}
    # M of the generated image at each style layer (it has the content image's size).
    m_image = {name: pixels_at(name, content.shape[:2]) for name in spec.style_layers}
    for k, style in enumerate(styles if spec.style_layers else []):
        style_feats = features(params, style, layers=spec.style_layers, pooling=spec.pooling,
                               convention=spec.convention, dtype=spec.dtype,
                               arithmetic=spec.arithmetic)
        for name in spec.style_layers:
            f = style_feats[name]
            m_style = f.shape[0] * f.shape[1]
            if masks is None:
                g = blend_weights[k] * (m_image[name] / m_style) * gram_matrix(f, spec.arithmetic)
                grams[name] = g if k == 0 else grams[name] + g
            else:
                weights = jnp.square(mask_at(masks[k].astype(jnp.float32), name))
                gram = gram_matrix(f, spec.arithmetic)
                grams.setdefault(name, []).append(jnp.sum(weights) / m_style * gram)
                guides.setdefault(name, []).append(weights)
    if masks is not None:
        grams = {name: jnp.stack(g) for name, g in grams.items()}
        guides = {name: jnp.stack(g) for name, g in guides.items()}
    return Targets(content_targets, grams, guides)


def loss_parts(params: Any, targets: Targets, image: jax.Array, spec: LossSpec
               ) -> dict[str, jax.Array]:
    """Unweighted {"content": L_c, "style": L_s, "tv": TV, "temporal": L_t} of an (H, W, 3)
    RGB [0, 1] image; L_t = 0 without `targets.temporal`."""
    feats = spec.features(params, image)
    zero = jnp.zeros((), jnp.float32)
    l_c = sum((content_loss(feats[n], targets.content[n]) for n in spec.content_layers), zero)
    layer_weights = dict(zip(spec.style_layers, spec.style_layer_weights, strict=True))
    l_s = style_loss(feats, targets.grams, layer_weights, targets.masks, spec.arithmetic)
    l_t = zero if targets.temporal is None else temporal_loss(image, targets.temporal)
    return {"content": l_c, "style": zero + l_s, "tv": total_variation(image, spec.tv_form),
            "temporal": l_t}


def total_loss(
    params: Any, targets: Targets, loss_weights: LossWeights, image: jax.Array, spec: LossSpec
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(alpha L_c + beta L_s + gamma TV + tau L_t, unweighted parts). Pure; jit with spec
    static."""
    parts = loss_parts(params, targets, image, spec)
    total = (loss_weights.content_weight * parts["content"]
             + loss_weights.style_weight * parts["style"] + loss_weights.tv_weight * parts["tv"])
    if targets.temporal is not None:  # without it the program is the image objective's
        total = total + loss_weights.temporal_weight * parts["temporal"]
    return total, parts
