"""The networks' convolution layer, with gradients that XLA CPU computes fast (training).

    y = conv(x, kernel, padding)      # (N, H, W, Cin) x (kh, kw, Cin, Cout) HWIO, stride 1
    y = bias_add(y, bias)             # y + bias over the last axis
    Conv(features, size)(x)           # both as a Flax layer: nn.Conv(padding="SAME")'s params

Values and input gradients are `lax.conv_general_dilated`'s. The kernel gradient

    dK[i, j, c, o] = sum over n, h, w of xp[n, h + i, w + j, c] g[n, h, w, o]

(xp: x zero-padded by `padding`, g: the output's cotangent) is on XLA CPU, as autodiff
writes it, a convolution with the whole image as its window, which ran 3.5-13x slower than
the forward convolution (5 images at 256 px, 64 -> 64 channels: 1.9-2.2 s against 0.17 s;
the decoder's backward pass took 5.2 s against its 0.9 s forward). Here, on CPU, it is a sum
over the images (a scan) of one matrix product each: the (H W, kh kw Cin) matrix of shifted
copies of the image, transposed, times g's (H W, Cout): 0.63 s in that case, 1.8-3.4x faster
at every decoder layer shape with Cout >= 32 (`PER_IMAGE_MIN_COUT`; benchmarks/README.md).
Below that (the decoder's last layer, 64 -> 3) autodiff's form was faster and is kept.
Other platforms keep autodiff's form (cuDNN's and the TPU's kernel gradients are fast): the
choice is staged with `lax.platform_dependent`, so the compiled program for a GPU never
contains the CPU form.
The same sums in another order: equal to autodiff's up to float32 rounding.

A scan runs the images one after another: on a mesh that splits the batch over several
CPU devices, XLA gathers the batch for it (the result is the same).

The bias gradient, db[o] = sum over n, h, w of g[n, h, w, o], is as autodiff writes it a
reduction over every position, which XLA CPU rewrites into windowed reductions that ran at
about 1.3 GB/s: 0.61 s of SANet's 256 px training step went into the decoder's and
merge_conv's bias gradients (5 images, 15 decoded). `bias_add` computes it as the matrix
product ones(1, M) x g(M, Cout), float32 sums, on every platform: 0.03 s beside a 0.16 s
reduction at 15 x 256^2 x 64 (benchmarks/README.md).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

NHWC_HWIO = ("NHWC", "HWIO", "NHWC")
# Below this many output channels the kernel gradient keeps autodiff's form on CPU too
# (64 -> 3 at 256 px: 0.17 s autodiff, 0.53 s per image).
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
