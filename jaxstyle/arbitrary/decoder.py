"""The decoder shared by AdaIN and SANet (the same 29-module layout), as a Flax module.

From relu4_1-sized features (N, h, w, 512) back to an image (N, 8h, 8w, 3), roughly RGB in
[0, 1] (not clipped here). Nine 3x3 convolutions, each after ReflectionPad2d(1) and each but
the last followed by a ReLU; nearest x2 upsampling after conv1, conv5 and conv7 (the
reference Sequential's modules 3, 16 and 23):

    conv1 512->256 | up | conv2 256->256, conv3 256->256, conv4 256->256, conv5 256->128 | up
    conv6 128->128, conv7 128->64 | up | conv8 64->64, conv9 64->3 (no ReLU)

The convolutions after an upsampling (conv2, conv6, conv8) run as `ops.UpsampleConv`, on
the map before upsampling: the same function with 16 instead of 36 taps per input pixel.

Params (HWIO): {"conv1": {"kernel": (3, 3, 512, 256), "bias": (256,)}, ..., "conv9"}.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from jaxstyle.arbitrary.ops import UpsampleConv, reflect_conv

# (output channels, upsample after it) of conv1 ... conv9; input channels: 512 then the
# previous output.
_CONVS = ((256, True), (256, False), (256, False), (256, False), (128, True), (128, False),
          (64, True), (64, False), (3, False))
IN_CHANNELS = 512


class Decoder(nn.Module):
    """(N, h, w, 512) -> (N, 8h, 8w, 3) (module docstring)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        up = False
        for k, (width, up_after) in enumerate(_CONVS, 1):
            # A convolution after an upsampling runs on the low-resolution map (UpsampleConv).
            x = (UpsampleConv(width, name=f"conv{k}")(x) if up
                 else reflect_conv(x, width, f"conv{k}"))
            if k < len(_CONVS):
                x = nn.relu(x)
            up = up_after
        return x


def param_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """{"conv1": {"kernel": (3, 3, 512, 256), "bias": (256,)}, ..., "conv9": ...}."""
    shapes, cin = {}, IN_CHANNELS
    for k, (width, _) in enumerate(_CONVS, 1):
        shapes[f"conv{k}"] = {"kernel": (3, 3, cin, width), "bias": (width,)}
        cin = width
    return shapes


def decode(params: Any, features: jax.Array) -> jax.Array:
    """Pure decoder function: (N, h, w, 512) -> (N, 8h, 8w, 3), unclipped."""
    return Decoder().apply({"params": params}, features)
