"""The building blocks shared by the arbitrary-style networks (NHWC, params HWIO).

- `reflect_pad`, `reflect_conv`: ReflectionPad2d(p) then a VALID convolution, as every 3x3
  convolution of the normalised VGG19, the decoder and the Transform's merge_conv.
- `max_pool_ceil`: MaxPool2d(2, 2, ceil_mode=True): an odd side keeps its last row/column
  as a window of its own, so (h, w) -> (ceil(h / 2), ceil(w / 2)).
- `upsample_nearest2`: nn.Upsample(scale_factor=2, mode="nearest").
- `mean_std`, `mvn`, `adain`: instance statistics over positions, per image and channel, with
  the unbiased variance plus 1e-5 (the reference code's `calc_mean_std`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxstyle.vgg import max_pool_2x2

# Added to the (unbiased) variance before the square root in `mean_std` and `mvn`.
EPS = 1e-5


def reflect_pad(x: jax.Array, pad: int = 1) -> jax.Array:
    """(N, H, W, C) -> (N, H + 2p, W + 2p, C), mirrored without repeating the edge
    (ReflectionPad2d; needs H, W > p, as torch does)."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def reflect_conv(x: jax.Array, features: int, name: str, size: int = 3) -> jax.Array:
    """ReflectionPad2d(size // 2) + Conv2d(size x size, stride 1, with bias): (N, H, W, Cin)
    -> (N, H, W, features). Call inside a compact Flax module: the convolution is its
    submodule `name`, with params {"kernel": (size, size, Cin, features) HWIO, "bias"}."""
    p = size // 2
    conv = nn.Conv(features, (size, size), padding="SAME", name=name)
    if p == 0:
        return conv(x)
    # The VALID convolution of the padded input, computed as the 'SAME' one cropped: on XLA
    # CPU (YNNPACK) a VALID 3x3 convolution ran 2.5x slower than a 'SAME' one of the same
    # output size (measured at 32-256 px, 64-512 channels); the ring of extra outputs costs
    # (2 / H) of the work.
    return conv(reflect_pad(x, p))[:, p:-p, p:-p]


def max_pool_ceil(x: jax.Array) -> jax.Array:
    """2x2 max pooling, stride 2, ceil mode: (N, H, W, C) -> (N, ceil(H/2), ceil(W/2), C).

    An odd side is padded with -inf (never the maximum: every window keeps at least one real
    element), then pooled by `jaxstyle.vgg.max_pool_2x2` (reshape + max, whose custom VJP
    sends the gradient to the window's first maximum, as torch does).
    """
    _, h, w, _ = x.shape
    if h % 2 or w % 2:
        x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf)
    return max_pool_2x2(x)


def upsample_nearest2(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2: (N, H, W, C) -> (N, 2H, 2W, C), out[2i + a, 2j + b] = x[i, j]."""
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
    return x.reshape(n, 2 * h, 2 * w, c)


def mean_std(x: jax.Array, eps: float = EPS) -> tuple[jax.Array, jax.Array]:
    """Per image and channel over positions: mean and sqrt(var + eps), var unbiased.

    x: (N, H, W, C) -> two (N, 1, 1, C) arrays. With M = H * W positions:
    mean = sum(x) / M, var = sum((x - mean)^2) / (M - 1). A single position (M = 1) has no
    unbiased variance: torch returns NaN there, and so does this.
    """
    m = x.shape[1] * x.shape[2]
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.sum(jnp.square(x - mean), axis=(1, 2), keepdims=True) / (m - 1)
    return mean, jnp.sqrt(var + eps)


def mvn(x: jax.Array, eps: float = EPS) -> jax.Array:
    """Mean-variance normalisation per image and channel: (x - mean) / std (`mean_std`)."""
    mean, std = mean_std(x, eps)
    return (x - mean) / std


def adain(content: jax.Array, style: jax.Array) -> jax.Array:
    """Adaptive instance normalisation: (c - mean(c)) / std(c) * std(s) + mean(s).

    content: (N, H, W, C); style: (N or 1, Hs, Ws, C) features, or its `mean_std` pair
    (mean, std) of (N or 1, 1, 1, C) arrays. Returns (N, H, W, C).
    """
    s_mean, s_std = style if isinstance(style, tuple) else mean_std(style)
    return mvn(content) * s_std + s_mean
