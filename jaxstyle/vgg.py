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
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.files import SettingError
from jaxstyle.kernels import FLOAT32, Arithmetic, avg_pool_2x2, conv3x3_same, max_pool_2x2
from jaxstyle.pixels import CAFFE_MEAN_BGR, TORCH_MEAN_RGB, TORCH_STD_RGB, as_rgb

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

# VGG19's pooling: max (as most tools), or average (the paper's choice).
POOLINGS = ("max", "avg")
# The input convention of a weight set: the preprocessing its training used.
CONVENTIONS = ("caffe", "torch")


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
    # How the convolutions compute: XLA's precision, and optional operand rounding
    # (`kernels.Arithmetic`).
    arithmetic: Arithmetic = FLOAT32

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
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
                            conv_general_dilated=functools.partial(
                                _conv3x3, arithmetic=self.arithmetic), name=name)(x)
            elif kind == "relu":
                x = nn.relu(x)
            else:
                x = pool(x)
            acts[name] = x
        return {name: acts[c] for name, c in wanted.items()}


def _conv3x3(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
             dimension_numbers=None, feature_group_count=1, precision=None, *,
             arithmetic: Arithmetic = FLOAT32):
    """The `conv_general_dilated` nn.Conv calls: VGG's 3x3, stride 1, 'SAME' case only."""
    same = padding == "SAME" or (not isinstance(padding, str)
                                 and tuple(map(tuple, padding)) == ((1, 1), (1, 1)))
    if (not same or tuple(window_strides) != (1, 1) or feature_group_count != 1
            or rhs.shape[:2] != (3, 3)
            or any(d is not None and tuple(d) != (1, 1) for d in (lhs_dilation, rhs_dilation))):
        raise ValueError("VGG19 convolutions are 3x3, stride 1, 'SAME', undilated, ungrouped")
    return conv3x3_same(lhs, rhs, arithmetic)


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


@functools.partial(jax.tree_util.register_dataclass, data_fields=["params"],
                   meta_fields=["convention", "source"])
@dataclasses.dataclass(frozen=True)
class VGGWeights:
    """A loaded VGG19 weight set: Flax params, their input convention, and their origin.

    A pytree whose leaves are the params (convention and source are static), so it can be
    an argument of `jax.jit`.
    """

    params: Any  # {conv name: {"kernel": HWIO, "bias": (C,)}}, float32 arrays
    convention: str  # "caffe" or "torch": how `preprocess` prepares images for these params
    source: str = "unknown"  # file path, URL or description, for messages and --json


def features(
    params: Any,
    images: jax.Array,
    *,
    layers: Sequence[str],
    pooling: str = "max",
    convention: str = "caffe",
    dtype: Any = None,
    arithmetic: Arithmetic = FLOAT32,
) -> dict[str, jax.Array]:
    """The pure feature function: RGB [0, 1] images -> {layer: features}, in the order asked.

    images: (H, W, 3) -> {layer: (h, w, C)}, or a batch (N, H, W, 3) -> {layer: (N, h, w, C)}.
    params: the Flax params (`VGGWeights.params`), or a `VGGWeights` (its convention is then
    used). layers: names or Keras aliases (block4_conv2 = relu4_2); the network stops at the
    deepest. Not jitted itself: it is the building block of jitted objectives (params are
    traced arguments there, never constants). dtype: the network's computation dtype (None:
    float32; "bfloat16" for GPU/TPU speed); preprocessing stays float32 and the features
    come back in `dtype`. arithmetic: the convolutions' precision and rounding
    (`kernels.Arithmetic`; default exact float32 on CPUs, TF32 on NVIDIA GPUs).
    """
    if isinstance(params, VGGWeights):
        params, convention = params.params, params.convention
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    single = jnp.ndim(images) == 3
    x = preprocess(images, convention)
    out = VGG19(layers=layers, pooling=pooling, dtype=dtype, arithmetic=arithmetic).apply(
        {"params": params}, x[None] if single else x)
    return {name: out[name][0] if single else out[name] for name in layers}


@functools.partial(jax.jit, static_argnames=("layers", "pooling", "convention"))
def _features_jit(params, images, layers, pooling, convention):
    return features(params, images, layers=layers, pooling=pooling, convention=convention)


def extract_features(
    weights: VGGWeights,
    images: Any,
    layers: Sequence[str],
    pooling: str = "max",
) -> dict[str, jax.Array]:
    """Activations of RGB [0, 1] images at `layers` (names or Keras aliases; one name alone
    is a list of one), keyed and ordered as requested: (H, W, 3) -> {name: (h, w, C)},
    (N, H, W, 3) -> {name: (N, h, w, C)}, float32. Images are checked (`image.as_rgb`:
    uint8 is divided by 255). Jit-compiled once per (shape, layers, pooling, convention);
    the params are arguments.
    """
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    if not layers:
        raise SettingError("layers: give at least one layer name", "layers")
    for name in layers:
        try:
            canonical_layer(name)
        except ValueError as err:
            raise SettingError(str(err), "layers") from None
    batch = jnp.ndim(images) == 4
    x = jax.device_put(as_rgb(images, "images" if batch else "image", batch=batch))
    out = _features_jit(weights.params, x, layers, pooling, weights.convention)
    return {name: out[name] for name in layers}  # jit returns dicts in sorted key order


def as_weights(weights: Any) -> VGGWeights:
    """`weights` if it is a VGGWeights; SettingError saying what to pass otherwise (the params
    dict alone lacks the convention that preprocessing needs)."""
    if not isinstance(weights, VGGWeights):
        raise SettingError("weights must be a VGGWeights (jaxstyle.load_vgg19() or "
                           f"jaxstyle.random_weights()), got {type(weights).__name__}",
                           "weights")
    return weights


def as_image(image: Any, what: str = "image") -> jax.Array:
    """An (H, W, 3) float32 device array of `image`, checked (`jaxstyle.image.as_rgb`), then
    one device_put (jnp.asarray would compile a conversion program per new shape)."""
    return jax.device_put(as_rgb(image, what))


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
