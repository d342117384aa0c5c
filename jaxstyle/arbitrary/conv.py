"""The networks' convolution, with a kernel gradient that XLA CPU computes fast (training).

    y = conv(x, kernel, padding)      # (N, H, W, Cin) x (kh, kw, Cin, Cout) HWIO, stride 1
    nn.Conv(..., conv_general_dilated=flax_conv)   # the same inside a Flax module

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
"""

from __future__ import annotations

import functools

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


def flax_conv(lhs: jax.Array, rhs: jax.Array, window_strides, padding, lhs_dilation=None,
              rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
              precision=None) -> jax.Array:
    """`conv` in the signature nn.Conv calls (its `conv_general_dilated` argument): stride
    1, undilated, ungrouped NHWC/HWIO convolutions at default precision with 'SAME', 'VALID'
    or explicit padding; anything else is a ValueError."""
    kh, kw = rhs.shape[:2]
    if padding == "SAME":  # as XLA pads: an even kernel's extra row/column at the end
        padding = (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2))
    elif padding == "VALID":
        padding = ((0, 0), (0, 0))
    elif isinstance(padding, str):
        raise ValueError(f"unsupported padding {padding!r}")
    if (tuple(window_strides) != (1, 1) or feature_group_count != 1 or precision is not None
            or any(d is not None and tuple(d) != (1, 1) for d in (lhs_dilation, rhs_dilation))
            or dimension_numbers not in (None, NHWC_HWIO,
                                         jax.lax.ConvDimensionNumbers((0, 3, 1, 2),
                                                                      (3, 2, 0, 1),
                                                                      (0, 3, 1, 2)))):
        raise ValueError("the networks' convolutions are stride 1, undilated, ungrouped and "
                         "at default precision")
    return conv(lhs, rhs, padding)


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
