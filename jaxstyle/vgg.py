"""The VGG19 feature network as a Flax module, its layer names, and pre/deprocessing.

Layer names: `conv{b}_{i}` is a convolution's output before its ReLU, `relu{b}_{i}` after
it, `pool{b}` after block b's pooling. Keras names `block{b}_conv{i}` include the ReLU, so
they are aliases of `relu{b}_{i}`; `block{b}_pool` aliases `pool{b}`.

Params are the Flax pytree `{"conv1_1": {"kernel": (3, 3, Cin, Cout) HWIO, "bias": (Cout,)},
...}` for the 16 convolutions. Images go in NHWC.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.image import as_rgb

# Output widths and convolution counts of VGG19's five blocks (configuration "E").
BLOCK_WIDTHS = (64, 128, 256, 512, 512)
BLOCK_DEPTHS = (2, 2, 4, 4, 4)

CONV_NAMES: tuple[str, ...] = tuple(
    f"conv{b}_{i}" for b, depth in enumerate(BLOCK_DEPTHS, 1) for i in range(1, depth + 1)
)


def _all_layer_names() -> tuple[str, ...]:
    names = []
    for b, depth in enumerate(BLOCK_DEPTHS, 1):
        for i in range(1, depth + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return tuple(names)


# Every addressable layer, in forward order.
LAYER_NAMES: tuple[str, ...] = _all_layer_names()
_LAYER_INDEX = {name: k for k, name in enumerate(LAYER_NAMES)}

# The input convention of a weight set: the preprocessing its training used.
CONVENTIONS = ("caffe", "torch")
# Caffe VGG (and the Keras files converted from it): BGR, 0-255, minus this BGR mean.
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
# torchvision: RGB in [0, 1], normalized by the ImageNet mean and std.
TORCH_MEAN_RGB = np.array([0.485, 0.456, 0.406], np.float32)
TORCH_STD_RGB = np.array([0.229, 0.224, 0.225], np.float32)


def canonical_layer(name: str) -> str:
    """Map a layer name or Keras alias to its canonical name; ValueError if unknown."""
    if name in _LAYER_INDEX:
        return name
    m = re.fullmatch(r"block(\d)_conv(\d)", name)
    if m and f"relu{m[1]}_{m[2]}" in _LAYER_INDEX:
        return f"relu{m[1]}_{m[2]}"
    m = re.fullmatch(r"block(\d)_pool", name)
    if m and f"pool{m[1]}" in _LAYER_INDEX:
        return f"pool{m[1]}"
    raise ValueError(
        f"unknown VGG19 layer {name!r}; valid names: {', '.join(LAYER_NAMES)} "
        "(and Keras aliases block{b}_conv{i} = relu{b}_{i}, block{b}_pool = pool{b})"
    )


def layer_depth(name: str) -> int:
    """Position of a layer (or alias) in forward order; deeper layers have larger values."""
    return _LAYER_INDEX[canonical_layer(name)]


def pools_before(name: str) -> int:
    """How many 2x2 poolings (each halving the feature map, floor) a layer's output has been
    through: b - 1 for conv{b}_i / relu{b}_i, b for pool{b}."""
    name = canonical_layer(name)
    return int(name[4]) - (0 if name.startswith("pool") else 1)


class VGG19(nn.Module):
    """VGG19's 16 convolutions and 5 poolings (no classifier), returning named activations.

    `layers` are the names to return; nothing past the deepest of them is computed. Input:
    (N, H, W, 3) preprocessed images. Output: {name: (N, h, w, C)} keyed as requested.
    """

    layers: tuple[str, ...] = ("pool5",)
    pooling: str = "max"
    # Computation dtype of the convolutions (inputs and kernels are cast to it, e.g.
    # jnp.bfloat16 on GPU/TPU); None keeps float32.
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        if self.pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {self.pooling!r}")
        if not self.layers:
            raise ValueError("VGG19 needs at least one layer name to return")
        wanted = {name: canonical_layer(name) for name in self.layers}
        last = max(_LAYER_INDEX[c] for c in wanted.values())
        pool = max_pool_2x2 if self.pooling == "max" else avg_pool_2x2
        acts = {}
        for name in LAYER_NAMES[: last + 1]:
            kind, block = name[:4], int(name[4])
            if kind == "conv":
                x = nn.Conv(BLOCK_WIDTHS[block - 1], (3, 3), padding="SAME", dtype=self.dtype,
                            conv_general_dilated=_conv3x3, name=name)(x)
            elif kind == "relu":
                x = nn.relu(x)
            else:
                x = pool(x)
            acts[name] = x
        return {name: acts[c] for name, c in wanted.items()}


def _pool_windows(x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, H//2, 2, W//2, 2, C): the 2x2 windows (an odd last row/column,
    which VALID pooling drops, is cropped first)."""
    n, h, w, c = x.shape
    return x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)


_NHWC_HWIO = ("NHWC", "HWIO", "NHWC")


def _conv3x3(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
             dimension_numbers=None, feature_group_count=1, precision=None):
    """The `conv_general_dilated` nn.Conv calls: VGG's 3x3, stride 1, 'SAME' case only."""
    same = padding == "SAME" or (not isinstance(padding, str)
                                 and tuple(map(tuple, padding)) == ((1, 1), (1, 1)))
    if (not same or tuple(window_strides) != (1, 1) or feature_group_count != 1
            or rhs.shape[:2] != (3, 3)
            or any(d is not None and tuple(d) != (1, 1) for d in (lhs_dilation, rhs_dilation))):
        raise ValueError("VGG19 convolutions are 3x3, stride 1, 'SAME', undilated, ungrouped")
    return conv3x3_same(lhs, rhs)


@jax.custom_vjp
def conv3x3_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """3x3 convolution, stride 1, 'SAME' padding: (N, H, W, Cin) x HWIO -> (N, H, W, Cout).

    Same values and gradients as `lax.conv_general_dilated`, but the input gradient is
    written as an ordinary convolution with the flipped, in/out-swapped kernel. Autodiff's
    transposed convolution (kernel dims "01oi") is canonicalized by XLA CPU at the top level
    but not inside a while loop, such as the optimizer's (`jaxstyle.optim.chunk`), where it
    ran on a slow generic path (3-4x: benchmarks/README.md).
    """
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                        dimension_numbers=_NHWC_HWIO)


def _conv3x3_fwd(x, kernel):
    return conv3x3_same(x, kernel), (x, kernel)


def _conv3x3_bwd(res, g):
    x, kernel = res
    # d/dx of a 3x3 'SAME' correlation: correlate g with the kernel flipped in space,
    # [kH, kW, in, out] -> [kH, kW, out, in] (symmetric padding 1 keeps the size).
    flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
    gx = jax.lax.conv_general_dilated(g, flipped, (1, 1), "SAME",
                                      dimension_numbers=_NHWC_HWIO)
    # The kernel gradient as autodiff gives it (unused when only the image is differentiated,
    # and then removed by XLA).
    _, kernel_vjp = jax.vjp(
        lambda k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                               dimension_numbers=_NHWC_HWIO), kernel)
    return gx.astype(x.dtype), kernel_vjp(g)[0]


conv3x3_same.defvjp(_conv3x3_fwd, _conv3x3_bwd)


@jax.custom_vjp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling, stride 2, VALID: (N, H, W, C) -> (N, H//2, W//2, C).

    Same values and gradient as `flax.linen.max_pool(x, (2, 2), (2, 2), "VALID")` (the
    gradient goes to the first maximum of each window in row-major order, as XLA's
    select_and_scatter does), but the backward pass is one elementwise fusion: XLA CPU
    lowers the reduce_window gradient to argmax index arrays plus a scatter, which cost
    about as much as a convolution at pool1 and kept five full-size int32 arrays alive
    between the passes (benchmarks/README.md).
    """
    return _pool_windows(x).max(axis=(2, 4))


def _max_pool_fwd(x):
    y = max_pool_2x2(x)
    return y, (x, y)


def _max_pool_bwd(res, g):
    x, y = res
    win = _pool_windows(x) == y[:, :, None, :, None, :]
    a, b, c = win[:, :, 0, :, 0], win[:, :, 0, :, 1], win[:, :, 1, :, 0]
    # Exactly one position per window: the first maximum in (0,0), (0,1), (1,0), (1,1) order.
    first = (a, b & ~a, c & ~(a | b), ~(a | b | c))
    zero = jnp.zeros((), g.dtype)
    top = jnp.stack([jnp.where(first[0], g, zero), jnp.where(first[1], g, zero)], axis=3)
    bottom = jnp.stack([jnp.where(first[2], g, zero), jnp.where(first[3], g, zero)], axis=3)
    n, h, w, ch = x.shape
    gx = jnp.stack([top, bottom], axis=2).reshape(n, h // 2 * 2, w // 2 * 2, ch)
    return (jnp.pad(gx, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))),)


max_pool_2x2.defvjp(_max_pool_fwd, _max_pool_bwd)


def avg_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 average pooling, stride 2, VALID: (N, H, W, C) -> (N, H//2, W//2, C).

    The window mean as a reshape, so its gradient is a broadcast instead of a padded
    reduce_window (same values as `flax.linen.avg_pool` up to summation order).
    """
    return _pool_windows(x).mean(axis=(2, 4))


def param_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """{conv name: {"kernel": HWIO shape, "bias": (Cout,)}} of the full network."""
    shapes, cin = {}, 3
    for name in CONV_NAMES:
        cout = BLOCK_WIDTHS[int(name[4]) - 1]
        shapes[name] = {"kernel": (3, 3, cin, cout), "bias": (cout,)}
        cin = cout
    return shapes


def preprocess(image: jax.Array, convention: str) -> jax.Array:
    """(…, H, W, 3) RGB in [0, 1] -> the network's input for `convention`.

    caffe: x*255, RGB -> BGR, minus CAFFE_MEAN_BGR.  torch: (x - mean) / std (ImageNet, RGB).
    """
    if convention == "caffe":
        return image[..., ::-1] * 255.0 - _channels(CAFFE_MEAN_BGR, image)
    if convention == "torch":
        return (image - _channels(TORCH_MEAN_RGB, image)) / _channels(TORCH_STD_RGB, image)
    raise ValueError(f"unknown preprocessing convention {convention!r}; expected {CONVENTIONS}")


def deprocess(x: jax.Array, convention: str) -> jax.Array:
    """Inverse of `preprocess`: network input -> (…, H, W, 3) RGB in [0, 1] (not clipped)."""
    if convention == "caffe":
        return ((x + _channels(CAFFE_MEAN_BGR, x)) / 255.0)[..., ::-1]
    if convention == "torch":
        return x * _channels(TORCH_STD_RGB, x) + _channels(TORCH_MEAN_RGB, x)
    raise ValueError(f"unknown preprocessing convention {convention!r}; expected {CONVENTIONS}")


def _channels(per_channel: np.ndarray, like: jax.Array) -> np.ndarray:
    """Reshape a (3,) constant to broadcast against (..., 3) without rank promotion."""
    return per_channel.reshape((1,) * (jnp.ndim(like) - 1) + (3,))


@dataclasses.dataclass(frozen=True)
class VGGWeights:
    """A loaded VGG19 weight set: Flax params, their input convention, and their origin."""

    params: Any  # {conv name: {"kernel": HWIO, "bias": (C,)}}, float32 arrays
    convention: str  # "caffe" or "torch": how `preprocess` prepares images for these params
    source: str = "unknown"  # file path, URL or description, for messages and --json


def features(
    params: Any,
    image: jax.Array,
    *,
    layers: tuple[str, ...],
    pooling: str = "max",
    convention: str = "caffe",
    dtype: Any = None,
) -> dict[str, jax.Array]:
    """Pure feature function: (H, W, 3) RGB [0, 1] -> {layer: (h, w, C)} post-preprocessing.

    Not jitted itself: it is the building block for jitted objectives (params are traced
    arguments there, never constants). dtype: the network's computation dtype (None:
    float32; "bfloat16" for GPU/TPU speed); preprocessing stays float32 and the features
    come back in `dtype`.
    """
    x = preprocess(image, convention)[None]
    out = VGG19(layers=tuple(layers), pooling=pooling, dtype=dtype).apply({"params": params}, x)
    return {name: act[0] for name, act in out.items()}


@functools.partial(jax.jit, static_argnames=("layers", "pooling", "convention"))
def _features_jit(params, image, layers, pooling, convention):
    return features(params, image, layers=layers, pooling=pooling, convention=convention)


def extract_features(
    weights: VGGWeights,
    image: Any,
    layers: tuple[str, ...] | list[str],
    pooling: str = "max",
) -> dict[str, jax.Array]:
    """Activations of an (H, W, 3) RGB [0, 1] image at `layers` (names or Keras aliases).

    Jit-compiled once per (shape, layers, pooling, convention); params are arguments.
    Returns {name: (h, w, C) float32} keyed as requested.
    """
    image = as_image(image)
    layers = tuple(layers)
    for name in layers:
        canonical_layer(name)
    return _features_jit(weights.params, image, layers, pooling, weights.convention)


def as_image(image: Any, what: str = "image") -> jax.Array:
    """An (H, W, 3) float32 device array of `image`: host arrays through the library's one
    image check (`jaxstyle.image.as_rgb`), then one device_put (jnp.asarray would compile a
    conversion program per new shape); device arrays are shape-checked and stay in place."""
    if not isinstance(image, jax.Array):
        return jax.device_put(as_rgb(image, what))
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{what} must be an (H, W, 3) RGB array, got shape {image.shape}")
    return image.astype(jnp.float32)  # no copy when it is float32 already


def random_weights(seed: int = 0, convention: str = "caffe") -> VGGWeights:
    """Synthetic VGG19 weights (He-normal kernels, small biases): same compute as the real ones.

    For tests, benchmarks and trying the pipeline offline; the images they make are not
    stylized in any meaningful sense. He scaling keeps activations O(1) through 16 ReLU
    layers; the first kernel is scaled for the convention's input range.
    """
    rng = np.random.default_rng(seed)
    params = {}
    input_scale = 128.0 if convention == "caffe" else 1.0
    for name, shapes in param_shapes().items():
        kh, kw, cin, cout = shapes["kernel"]
        std = np.sqrt(2.0 / (kh * kw * cin))
        if name == "conv1_1":
            std /= input_scale
        params[name] = {
            "kernel": rng.normal(0, std, shapes["kernel"]).astype(np.float32),
            "bias": rng.normal(0, 0.01, shapes["bias"]).astype(np.float32),
        }
    return VGGWeights(jax.device_put(params), convention, source=f"random(seed={seed})")
