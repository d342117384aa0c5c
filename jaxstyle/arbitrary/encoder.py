"""The normalised VGG19 encoder of `vgg_normalised.pth` (AdaIN, SANet), as a Flax module.

Not jaxstyle.vgg's network: other weights (Gatys' normalised VGG, each filter rescaled to a
mean activation of 1), a 1x1 convolution first that turns RGB [0, 1] into the Caffe input
(BGR * 255 minus the mean, in the released file), ReflectionPad2d(1) before every 3x3
convolution instead of zero padding, and ceil-mode pooling. Per block b: convolutions
conv{b}_1 ... conv{b}_n, each followed by a ReLU (its output `relu{b}_i`), then a 2x2 max
pooling (ceil mode) between blocks:

    conv0 (1x1, 3 -> 3, no ReLU)
    conv1_1 conv1_2 | pool | conv2_1 conv2_2 | pool | conv3_1 .. conv3_4 | pool
    conv4_1 .. conv4_4 | pool | conv5_1

Outputs are relu1_1 ... relu5_1 (the layers the reference code slices at), with sides
(H, W), ceil(H/2), ceil(H/4), ceil(H/8) and ceil(ceil(H/8)/2); channels 64, 128, 256, 512,
512. The file also stores conv5_2 ... conv5_4, which nothing uses, so the module stops at
conv5_1, and at the deepest requested layer in any case.

Params: {"conv0": {"kernel": (1, 1, 3, 3), "bias": (3,)}, "conv1_1": {"kernel": (3, 3, 3,
64), ...}, ...} (HWIO), as many convolutions as the deepest layer needs (`param_shapes`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import numpy as np

from jaxstyle.arbitrary.ops import max_pool_ceil, reflect_conv
from jaxstyle.pixels import CAFFE_MEAN_BGR  # conv0 subtracts it after scaling by 255

# (output channels, convolutions) of each block, as far as the encoder goes (conv5_1).
_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 1))

# The layers an encoder can return, in forward order; relu{b}_1 is block b's first ReLU.
LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

def conv_names(deepest: str = "relu5_1") -> tuple[str, ...]:
    """The convolutions an encoder up to `deepest` runs: ("conv0", "conv1_1", ...)."""
    last = _check_layer(deepest)
    names = ["conv0"]
    for b, (_, depth) in enumerate(_BLOCKS[:last], 1):
        # Block b's convolutions, or only its first one in the deepest block.
        names += [f"conv{b}_{i}" for i in range(1, (depth if b < last else 1) + 1)]
    return tuple(names)


def param_shapes(deepest: str = "relu5_1") -> dict[str, dict[str, tuple[int, ...]]]:
    """{conv: {"kernel": HWIO shape, "bias": (Cout,)}} of an encoder up to `deepest`."""
    shapes = {"conv0": {"kernel": (1, 1, 3, 3), "bias": (3,)}}
    cin = 3
    for name in conv_names(deepest)[1:]:
        cout = _BLOCKS[int(name[4]) - 1][0]
        shapes[name] = {"kernel": (3, 3, cin, cout), "bias": (cout,)}
        cin = cout
    return shapes


def input_layer() -> tuple[np.ndarray, np.ndarray]:
    """conv0 as docs/arbitrary.md documents it for the released file: RGB [0, 1] -> BGR * 255
    minus the Caffe mean. Returns (kernel (1, 1, 3, 3) HWIO, bias (3,)): kernel[0, 0, i, o]
    = 255 where output o is input channel 2 - o, else 0; bias = -CAFFE_MEAN_BGR."""
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    for o in range(3):
        kernel[0, 0, 2 - o, o] = 255.0
    return kernel, -CAFFE_MEAN_BGR


class Encoder(nn.Module):
    """The normalised VGG19 up to the deepest of `layers`: (N, H, W, 3) RGB in [0, 1] ->
    {layer: (N, h, w, C)} for each requested name in LAYERS (nothing deeper is computed)."""

    layers: tuple[str, ...] = LAYERS

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        if not self.layers:
            raise ValueError("the encoder needs at least one layer to return")
        last = max(_check_layer(name) for name in self.layers)
        x = reflect_conv(x, 3, "conv0", size=1)
        out = {}
        for b, (width, depth) in enumerate(_BLOCKS[:last], 1):
            if b > 1:
                x = max_pool_ceil(x)
            for i in range(1, (depth if b < last else 1) + 1):
                x = nn.relu(reflect_conv(x, width, f"conv{b}_{i}"))
                if i == 1:
                    out[f"relu{b}_1"] = x
        return {name: out[name] for name in self.layers}


def encode(params: Any, images: jax.Array, layers: tuple[str, ...] = LAYERS
           ) -> dict[str, jax.Array]:
    """Pure encoder function: (N, H, W, 3) RGB [0, 1] -> {layer: (N, h, w, C)}.

    `params` as described in the module docstring (extra convolutions are ignored). Not
    jitted itself: params are traced arguments of whatever jitted function calls it.
    """
    return Encoder(tuple(layers)).apply({"params": params}, images)


def _check_layer(name: str) -> int:
    """Block number of relu{b}_1; ValueError for any other name."""
    if name not in LAYERS:
        raise ValueError(f"unknown encoder layer {name!r}; the encoder returns {', '.join(LAYERS)}")
    return int(name[4])
