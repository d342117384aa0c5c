"""The networks' kernels: convolution and pooling with gradients that XLA computes fast.

Shared by both systems: `jaxstyle.vgg` (VGG19 for the Gatys objective) and
`jaxstyle.arbitrary` (the normalised VGG19, the SANet Transform, the decoder). NHWC images,
HWIO kernels. Each kernel has the values and gradients of the plain `jax.lax` operation; only
the way a gradient is written differs, where XLA CPU ran the plain form slowly (figures in
docs/benchmarks.md):

- `Arithmetic`: how the Gatys objective's convolutions and matrix products compute: the
  `precision` XLA is asked for ("default": TF32 on NVIDIA GPUs, exact float32 on CPUs;
  "high"; "highest": exact float32 everywhere), and an optional `rounding` of every operand
  to TF32 or bfloat16 (`jax.lax.reduce_precision`) that reproduces a GPU's rounding on a CPU.
- `conv3x3_same`: VGG19's 3x3 'SAME' convolution. Its input gradient is an ordinary
  convolution with the flipped, in/out-swapped kernel: autodiff's transposed convolution is
  canonicalized by XLA CPU at the top level but not inside a while loop (the optimizer's), where
  it ran on a slow generic path.
- `max_pool_2x2`, `avg_pool_2x2`: 2x2 pooling, stride 2, VALID; the max pool's gradient is one
  elementwise fusion instead of the argmax index arrays and scatter XLA CPU makes of
  reduce_window's.
- `conv`, `bias_add`, `Conv`: the arbitrary networks' stride-1 convolution with bias. Values
  and input gradients are `lax.conv_general_dilated`'s. The kernel gradient

      dK[i, j, c, o] = sum over n, h, w of xp[n, h + i, w + j, c] g[n, h, w, o]

  (xp: x zero-padded, g: the output's cotangent) is, as autodiff writes it, a convolution
  with the whole image as its window, which XLA CPU ran several times slower than the
  forward convolution. On CPU it is here a sum over the images (a scan) of one matrix product each,
  (patches of x)^T g, for kernels with at least `PER_IMAGE_MIN_COUT` outputs; other
  platforms keep autodiff's form (staged with `lax.platform_dependent`, so a GPU program
  never contains the CPU form). The bias gradient, db[o] = sum over n, h, w of g[n, h, w, o],
  is the product ones(1, M) x g(M, Cout) in float32: XLA CPU rewrote the plain reduction into
  slow windowed reductions. The same sums in another order: equal to autodiff's up to
  float32 rounding.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

NHWC_HWIO = ("NHWC", "HWIO", "NHWC")
# `Arithmetic.precision` names and the jax.lax precision each asks for.
PRECISIONS = {"default": jax.lax.Precision.DEFAULT, "high": jax.lax.Precision.HIGH,
              "highest": jax.lax.Precision.HIGHEST}
# `Arithmetic.rounding` names: (exponent, mantissa) bits an operand keeps. TF32 is what NVIDIA
# tensor cores read of a float32 operand at the default precision.
ROUNDINGS = {"tf32": (8, 10), "bfloat16": (8, 7)}


@dataclasses.dataclass(frozen=True)
class Arithmetic:
    """How convolutions and matrix products compute (hashable: a static argument).

    precision: "default", "high" or "highest" (`PRECISIONS`), as XLA is asked.
    rounding: None, or "tf32" / "bfloat16" (`ROUNDINGS`): every operand is first rounded to
        that format, accumulation stays float32: a GPU's arithmetic, emulated on any device.
    """

    precision: str = "default"
    rounding: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got "
                             f"{self.precision!r}")
        if self.rounding is not None and self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be None or one of {tuple(ROUNDINGS)}, got "
                             f"{self.rounding!r}")

    @property
    def lax_precision(self) -> jax.lax.Precision:
        return PRECISIONS[self.precision]

    def operand(self, x: jax.Array) -> jax.Array:
        """x rounded as this arithmetic reads an operand (unchanged without `rounding`)."""
        if self.rounding is None:
            return x
        exponent, mantissa = ROUNDINGS[self.rounding]
        return jax.lax.reduce_precision(x, exponent_bits=exponent, mantissa_bits=mantissa)

    def matmul(self, a: jax.Array, b: jax.Array, subscripts: str = "mi,mj->ij") -> jax.Array:
        """einsum(subscripts, a, b) of the rounded operands, accumulated in float32."""
        return jnp.einsum(subscripts, self.operand(a), self.operand(b),
                          precision=self.lax_precision, preferred_element_type=jnp.float32)


FLOAT32 = Arithmetic()
# Below this many output channels the kernel gradient keeps autodiff's form on CPU too (the
# decoder's last layer, 64 -> 3, ran faster that way).
PER_IMAGE_MIN_COUT = 32

Padding = tuple[tuple[int, int], tuple[int, int]]


def conv(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    """Stride-1 convolution (cross-correlation) of NHWC `x` with HWIO `kernel`, zero
    padding ((top, bottom), (left, right)): (N, H, W, Cin) -> (N, H + top + bottom - kh + 1,
    W + left + right - kw + 1, Cout). The kernel gradient as the module docstring says."""
    padding = tuple((int(a), int(b)) for a, b in padding)
    return _conv(x, kernel, padding)


class Conv(nn.Module):
    """A `size` x `size` convolution with bias, 'SAME' zero padding (XLA's: an even size's
    extra row/column at the end), stride 1: (N, H, W, Cin) -> (N, H, W, features). Params
    {"kernel": (size, size, Cin, features) HWIO, "bias": (features,)}, initialized and
    named as nn.Conv(features, (size, size), padding="SAME")'s; `conv` + `bias_add`, in the
    dtype nn.Conv computes in (input and params promoted together)."""

    features: int
    size: int = 3

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.param("kernel", nn.initializers.lecun_normal(),
                       (self.size, self.size, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        dtype = jnp.result_type(x, k, bias)
        pad = ((self.size - 1) // 2, self.size // 2)
        return bias_add(conv(x.astype(dtype), k.astype(dtype), (pad, pad)), bias)


def bias_add(y: jax.Array, bias: jax.Array) -> jax.Array:
    """y + bias, bias (C,) over y's last axis, in their promoted dtype; the bias gradient a
    product with ones (module docstring)."""
    dtype = jnp.result_type(y, bias)
    return _bias_add(y.astype(dtype), bias.astype(dtype))


@jax.custom_vjp
def _bias_add(y: jax.Array, bias: jax.Array) -> jax.Array:
    return y + bias.reshape((1,) * (y.ndim - 1) + (-1,))


def _bias_add_fwd(y, bias):
    return _bias_add(y, bias), bias


def _bias_add_bwd(bias, g):
    g2 = g.reshape(-1, g.shape[-1])
    db = jnp.dot(jnp.ones((g2.shape[0],), g.dtype), g2, preferred_element_type=jnp.float32)
    return g, db.astype(bias.dtype)


_bias_add.defvjp(_bias_add_fwd, _bias_add_bwd)


def _plain(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                        dimension_numbers=NHWC_HWIO)


def kernel_grad_autodiff(x: jax.Array, g: jax.Array, kernel: jax.Array,
                         padding: Padding) -> jax.Array:
    """dK as autodiff computes it (the transposed convolution)."""
    return jax.vjp(lambda k: _plain(x, k, padding), kernel)[1](g)[0]


def kernel_grad_per_image(x: jax.Array, g: jax.Array, kernel: jax.Array,
                          padding: Padding) -> jax.Array:
    """dK (module docstring) as a scan over the images of (patches of x)^T g, float32
    sums, in the kernel's dtype. x: (N, H, W, Cin); g: (N, h, w, Cout)."""
    kh, kw, cin, cout = kernel.shape
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    h, w = g.shape[1:3]

    def add_image(total, image_and_cotangent):
        xi, gi = image_and_cotangent
        # Column (i, j, c) of the patch matrix is x shifted by tap (i, j), channel c.
        patches = jnp.concatenate([xi[i:i + h, j:j + w] for i in range(kh) for j in range(kw)],
                                  axis=-1)
        return total + jnp.dot(patches.reshape(h * w, kh * kw * cin).T,
                               gi.reshape(h * w, cout),
                               preferred_element_type=jnp.float32), None

    total, _ = jax.lax.scan(add_image, jnp.zeros((kh * kw * cin, cout), jnp.float32), (xp, g))
    return total.reshape(kh, kw, cin, cout).astype(kernel.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    return _plain(x, kernel, padding)


def _conv_fwd(x, kernel, padding):
    return _plain(x, kernel, padding), (x, kernel)


def _conv_bwd(padding, residuals, g):
    x, kernel = residuals
    gx = jax.vjp(lambda x: _plain(x, kernel, padding), x)[1](g)[0]
    if kernel.shape[3] >= PER_IMAGE_MIN_COUT:
        gk = jax.lax.platform_dependent(
            x, g, kernel, cpu=lambda *a: kernel_grad_per_image(*a, padding),
            default=lambda *a: kernel_grad_autodiff(*a, padding))
    else:
        gk = kernel_grad_autodiff(x, g, kernel, padding)
    return gx, gk


_conv.defvjp(_conv_fwd, _conv_bwd)


# ----------------------------------------- VGG19's convolution; pooling (both systems)


def _pool_windows(x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, H//2, 2, W//2, 2, C): the 2x2 windows (an odd last row/column,
    which VALID pooling drops, is cropped first)."""
    n, h, w, c = x.shape
    return x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)


def _same_conv(x, kernel, arithmetic: Arithmetic):
    return jax.lax.conv_general_dilated(arithmetic.operand(x), arithmetic.operand(kernel),
                                        (1, 1), "SAME", dimension_numbers=NHWC_HWIO,
                                        precision=arithmetic.lax_precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv3x3_same(x: jax.Array, kernel: jax.Array, arithmetic: Arithmetic = FLOAT32
                 ) -> jax.Array:
    """3x3 convolution, stride 1, 'SAME' padding: (N, H, W, Cin) x HWIO -> (N, H, W, Cout),
    in `arithmetic` (its operands rounded and its precision asked, forward and backward).

    Same values and gradients as `lax.conv_general_dilated`, but the input gradient is
    written as an ordinary convolution with the flipped, in/out-swapped kernel. Autodiff's
    transposed convolution (kernel dims "01oi") is canonicalized by XLA CPU at the top level
    but not inside a while loop, such as the optimizer's (`jaxstyle.optim.chunk`), where it
    ran on a slow generic path.
    """
    return _same_conv(x, kernel, arithmetic)


def _conv3x3_fwd(x, kernel, arithmetic):
    return _same_conv(x, kernel, arithmetic), (x, kernel)


def _conv3x3_bwd(arithmetic, res, g):
    x, kernel = res
    # d/dx of a 3x3 'SAME' correlation: correlate g with the kernel flipped in space,
    # [kH, kW, in, out] -> [kH, kW, out, in] (symmetric padding 1 keeps the size).
    flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
    gx = _same_conv(g, flipped, arithmetic)
    # The kernel gradient as autodiff gives it (unused when only the image is differentiated,
    # and then removed by XLA).
    _, kernel_vjp = jax.vjp(lambda k: _same_conv(x, k, arithmetic), kernel)
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
    between the passes.
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
