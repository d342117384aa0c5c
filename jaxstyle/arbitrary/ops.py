"""The building blocks shared by the arbitrary-style networks (NHWC, params HWIO).

- `reflect_pad`, `reflect_conv`: ReflectionPad2d(p) then a VALID convolution, as every 3x3
  convolution of the normalised VGG19, the decoder and the Transform's merge_conv. Every
  convolution here is `jaxstyle.kernels`' (its kernel gradient is fast on CPU).
- `max_pool_ceil`: MaxPool2d(2, 2, ceil_mode=True): an odd side keeps its last row/column
  as a window of its own, so (h, w) -> (ceil(h / 2), ceil(w / 2)); gradients as torch's.
- `upsample_nearest2`: nn.Upsample(scale_factor=2, mode="nearest"); `UpsampleConv`: that
  upsampling followed by a reflection-padded 3x3 convolution, computed at low resolution.
- `mean_std`, `mvn`, `adain`: instance statistics over positions, per image and channel, with
  the unbiased variance plus 1e-5 (the reference code's `calc_mean_std`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.kernels import Conv, bias_add, conv, max_pool_2x2

# Added to the (unbiased) variance before the square root in `mean_std` and `mvn`.
EPS = 1e-5


def reflect_pad(x: jax.Array, pad: int = 1) -> jax.Array:
    """(N, H, W, C) -> (N, H + 2p, W + 2p, C), mirrored without repeating the edge
    (ReflectionPad2d; torch needs H, W > p, and the networks here never pad smaller maps)."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def reflect_conv(x: jax.Array, features: int, name: str, size: int = 3) -> jax.Array:
    """ReflectionPad2d(size // 2) + Conv2d(size x size, stride 1, with bias): (N, H, W, Cin)
    -> (N, H, W, features). Call inside a compact Flax module: the convolution is its
    submodule `name`, with params {"kernel": (size, size, Cin, features) HWIO, "bias"}."""
    p = size // 2
    layer = Conv(features, size, name=name)
    if p == 0:
        return layer(x)
    # The VALID convolution of the padded input, computed as the 'SAME' one cropped: XLA CPU
    # (YNNPACK) ran VALID 3x3 convolutions on a slower path than 'SAME' ones of the same
    # output size (docs/benchmarks.md); the ring of extra outputs adds about 4 / H of work.
    return layer(reflect_pad(x, p))[:, p:-p, p:-p]


class Conv1x1(nn.Module):
    """A 1x1 convolution with bias as one matrix product: (N, H, W, Cin) -> (N, H, W,
    features), params {"kernel": (1, 1, Cin, features) HWIO, "bias"} as nn.Conv's: XLA CPU
    runs the product faster than the equivalent convolution (docs/benchmarks.md)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, cin = x.shape
        k = self.param("kernel", nn.initializers.lecun_normal(), (1, 1, cin, self.features),
                       jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        y = bias_add(jnp.dot(x.reshape(n * h * w, cin), k[0, 0]), bias)
        return y.reshape(n, h, w, self.features)


def max_pool_ceil(x: jax.Array) -> jax.Array:
    """2x2 max pooling, stride 2, ceil mode: (N, H, W, C) -> (N, ceil(H/2), ceil(W/2), C).

    An odd side is padded with -inf (never the maximum: every window keeps at least one real
    element), then pooled by `_max_pool_even`.
    """
    _, h, w, _ = x.shape
    if h % 2 or w % 2:
        x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf)
    return _max_pool_even(x)


@jax.custom_vjp
def _max_pool_even(x: jax.Array) -> jax.Array:
    """2x2 max pooling of even sides: the same values and gradient (to each window's first
    maximum, as torch) as `jaxstyle.vgg.max_pool_2x2`, with a forward pass of elementwise
    maxima (rows, then columns) instead of a windowed reduction, which XLA CPU runs
    slower."""
    n, h, w, c = x.shape
    rows = x.reshape(n, h // 2, 2 * w, c)  # row pairs side by side
    rows = jnp.maximum(rows[:, :, :w], rows[:, :, w:])
    cols = rows.reshape(n, h // 2, w // 2, 2 * c)  # column pairs side by side
    return jnp.maximum(cols[..., :c], cols[..., c:])


def _max_pool_even_fwd(x):
    return _max_pool_even(x), x


def _max_pool_even_bwd(x, g):
    return jax.vjp(max_pool_2x2, x)[1](g)


_max_pool_even.defvjp(_max_pool_even_fwd, _max_pool_even_bwd)


def upsample_nearest2(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2: (N, H, W, C) -> (N, 2H, 2W, C), out[2i + a, 2j + b] = x[i, j]."""
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
    return x.reshape(n, 2 * h, 2 * w, c)


def _phase_matrix() -> np.ndarray:
    """(16, 9): row (a, b, u, v), column (dy, dx): 1 where 3x3 tap (dy, dx) of output phase
    (a, b) reads the 2x2 window's (u, v) (`UpsampleConv`)."""
    rows = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], np.float32)  # a, u, dy
    return np.einsum("aud,bve->abuvde", rows, rows).reshape(16, 9)


_PHASES = _phase_matrix()


class UpsampleConv(nn.Module):
    """`reflect_conv(upsample_nearest2(x), features)` with 16 taps per input pixel, not 36.

    (N, H, W, Cin) -> (N, 2H, 2W, features); params {"kernel": (3, 3, Cin, features) HWIO,
    "bias"} as `reflect_conv`'s (nn.Conv's defaults for init). Reflection padding of a
    nearest-upsampled map repeats its edge pixel, so with E = x edge-padded by 1, output row
    2i + a reads E's rows i + (a + dy + 1) // 2 for taps dy = 0, 1, 2: rows (i, i+1, i+1) for
    a = 0, (i+1, i+1, i+2) for a = 1. Each output phase (a, b) is thus a 2x2 convolution of
    E starting at (i + a, j + b), whose kernel sums the taps that share a row/column:
        rows a = 0: (K[0], K[1] + K[2]);  a = 1: (K[0] + K[1], K[2]);  columns likewise.
    One 2x2 convolution of E with the four phase kernels side by side (4 * features outputs),
    then interleaved. The same sums in another order: equal to the direct form up to float32
    rounding, and about half the direct form's time on XLA CPU (docs/benchmarks.md).
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, cin = x.shape
        k = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, cin, self.features),
                       jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        # The four phase kernels as one small product (a dot compiles in a fraction of the
        # time of the equivalent slices and sums), HIGHEST so no backend rounds the kernel.
        # In float32 whatever the kernel's dtype (bfloat16 training: the sums of taps rounded
        # once, and conv_general_dilated wants one dtype), then in x's.
        phases = jnp.dot(jnp.asarray(_PHASES), k.reshape(9, cin * self.features).astype(
            jnp.promote_types(k.dtype, jnp.float32)), precision=jax.lax.Precision.HIGHEST)
        phases = phases.astype(x.dtype)
        phases = phases.reshape(2, 2, 2, 2, cin, self.features).transpose(2, 3, 4, 0, 1, 5)
        phases = phases.reshape(2, 2, cin, 4 * self.features)  # (u, v, Cin, (a, b, F))
        e = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        # Output (r, s) covers the 2x2 window at E[r, s]: H + 1 rows (padding (0, 1) rather
        # than VALID, which XLA CPU runs on a slower path; its extra last row is dropped).
        y = conv(e, phases, ((0, 1), (0, 1)))
        f = self.features
        out = jnp.stack([jnp.stack([y[:, a:a + h, b:b + w, (2 * a + b) * f:(2 * a + b + 1) * f]
                                    for b in (0, 1)], axis=3) for a in (0, 1)], axis=2)
        return bias_add(out.reshape(n, 2 * h, 2 * w, f), bias)


def mean_std(x: jax.Array, eps: float = EPS) -> tuple[jax.Array, jax.Array]:
    """Per image and channel over positions: mean and sqrt(var + eps), var unbiased.

    x: (N, H, W, C) -> two (N, 1, 1, C) arrays, computed in at least float32 (a bfloat16
    input's statistics in float32). With M = H * W positions: mean = sum(x) / M,
    var = sum((x - mean)^2) / (M - 1). A single position (M = 1) has no unbiased variance:
    torch returns NaN there, and so does this.
    """
    m = x.shape[1] * x.shape[2]
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.sum(jnp.square(x - mean), axis=(1, 2), keepdims=True) / (m - 1)
    return mean, jnp.sqrt(var + eps)


def mvn(x: jax.Array, eps: float = EPS) -> jax.Array:
    """Mean-variance normalisation per image and channel: (x - mean) / std (`mean_std`),
    in x's dtype."""
    mean, std = mean_std(x, eps)
    return ((x - mean) / std).astype(x.dtype)


def adain(content: jax.Array, style: jax.Array) -> jax.Array:
    """Adaptive instance normalisation: (c - mean(c)) / std(c) * std(s) + mean(s).

    content: (N, H, W, C); style: (N or 1, Hs, Ws, C) features, or its `mean_std` pair
    (mean, std) of (N or 1, 1, 1, C) arrays. Returns (N, H, W, C) in content's dtype.
    """
    s_mean, s_std = style if isinstance(style, tuple) else mean_std(style)
    return (mvn(content) * s_std + s_mean).astype(content.dtype)
