"""jaxstyle.kernels: the arbitrary networks' convolution and its per-image kernel gradient on CPU.

Values and both gradients against autodiff of lax.conv_general_dilated, the kernel gradient
also against NumPy float64 of its formula; the compiled CPU program runs the per-image form
(a loop) only where the kernel is differentiated and has >= PER_IMAGE_MIN_COUT outputs.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.kernels import (
    PER_IMAGE_MIN_COUT,
    Conv,
    bias_add,
    conv,
    kernel_grad_per_image,
)

SAME3 = ((1, 1), (1, 1))
PHASE2 = ((0, 1), (0, 1))  # UpsampleConv's 2x2 window convolution


def _plain(x, k, padding):
    return jax.lax.conv_general_dilated(x, k, (1, 1), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _arrays(n, h, w, cin, cout, ks, padding, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
    k = (rng.standard_normal((ks, ks, cin, cout)) / np.sqrt(ks * ks * cin)).astype(np.float32)
    out_shape = _plain(x, k, padding).shape
    g = rng.standard_normal(out_shape).astype(np.float32)
    return x, k, g


def _numpy_kernel_grad(x, g, ks, padding):
    """dK[i, j, c, o] = sum_{n, h, w} xp[n, h + i, w + j, c] g[n, h, w, o], float64."""
    xp = np.pad(x.astype(np.float64), ((0, 0), *padding, (0, 0)))
    h, w = g.shape[1:3]
    return np.stack([np.stack([np.einsum("nhwc,nhwo->co", xp[:, i:i + h, j:j + w],
                                         g.astype(np.float64)) for j in range(ks)])
                     for i in range(ks)])


@pytest.mark.parametrize("cout,ks,padding", [(PER_IMAGE_MIN_COUT, 3, SAME3),
                                             (PER_IMAGE_MIN_COUT + 8, 2, PHASE2),
                                             (3, 3, SAME3)])
def test_values_and_gradients_match_autodiff(cout, ks, padding):
    x, k, g = _arrays(3, 9, 7, 5, cout, ks, padding)
    y, vjp = jax.vjp(lambda x, k: conv(x, k, padding), x, k)
    y_ref, vjp_ref = jax.vjp(lambda x, k: _plain(x, k, padding), x, k)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y_ref))
    (gx, gk), (gx_ref, gk_ref) = vjp(g), vjp_ref(g)
    np.testing.assert_array_equal(np.asarray(gx), np.asarray(gx_ref))
    np.testing.assert_allclose(np.asarray(gk), np.asarray(gk_ref), rtol=0,
                               atol=2e-6 * np.abs(np.asarray(gk_ref)).max())
    want = _numpy_kernel_grad(x, g, ks, padding)
    np.testing.assert_allclose(np.asarray(gk), want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_per_image_kernel_grad_in_bfloat16_sums_in_float32():
    x, k, g = _arrays(2, 8, 8, 4, 32, 3, SAME3, seed=1)
    xb, kb, gb = (jnp.asarray(a, jnp.bfloat16) for a in (x, k, g))
    out = kernel_grad_per_image(xb, gb, kb, SAME3)
    assert out.dtype == jnp.bfloat16
    want = _numpy_kernel_grad(np.asarray(xb, np.float32), np.asarray(gb, np.float32), 3, SAME3)
    # Products of bfloat16 values are exact in float32; only the float32 sums and the final
    # rounding to bfloat16 (8 bits) differ.
    np.testing.assert_allclose(np.asarray(out, np.float32), want, rtol=2 ** -7,
                               atol=1e-3 * np.abs(want).max())


def _compiled_loops(f, *args) -> int:
    text = jax.jit(f).lower(*args).compile().as_text()
    return text.count(" while(")


def test_cpu_program_uses_the_per_image_form_only_where_it_pays():
    """The loop (scan over images) is in the CPU program for a differentiated kernel with
    enough outputs, and absent for a narrow kernel and for a frozen one (the encoder's)."""
    assert jax.default_backend() == "cpu"
    wide, narrow = (_arrays(2, 8, 8, 4, c, 3, SAME3) for c in (PER_IMAGE_MIN_COUT, 3))

    def kernel_grad(x, k, g):
        return jax.vjp(lambda k: conv(x, k, SAME3), k)[1](g)[0]

    def input_grad(x, k, g):
        return jax.vjp(lambda x: conv(x, jax.lax.stop_gradient(k), SAME3), x)[1](g)[0]

    assert _compiled_loops(kernel_grad, *wide) == 1
    assert _compiled_loops(kernel_grad, *narrow) == 0
    assert _compiled_loops(input_grad, *wide) == 0


def test_conv_layer_is_nn_conv_with_the_same_params():
    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 6, 5, 3)), jnp.float32)
    for size in (1, 2, 3):
        theirs = nn.Conv(4, (size, size), padding="SAME")
        params = theirs.init(jax.random.PRNGKey(0), x)
        ours = Conv(4, size)
        assert jax.tree.map(jnp.shape, ours.init(jax.random.PRNGKey(0), x)) == jax.tree.map(
            jnp.shape, params)
        np.testing.assert_allclose(np.asarray(ours.apply(params, x)),
                                   np.asarray(theirs.apply(params, x)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_bias_add_gradient_is_the_sum_over_positions(dtype):
    rng = np.random.default_rng(3)
    y = jnp.asarray(rng.standard_normal((3, 7, 5, 6)), dtype)
    b = jnp.asarray(rng.standard_normal(6), dtype)
    g = jnp.asarray(rng.standard_normal((3, 7, 5, 6)), dtype)
    out, vjp = jax.vjp(bias_add, y, b)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(y + b[None, None, None]))
    gy, gb = vjp(g)
    assert gy.dtype == dtype and gb.dtype == dtype
    np.testing.assert_array_equal(np.asarray(gy), np.asarray(g))
    want = np.asarray(g, np.float64).sum(axis=(0, 1, 2))
    # float32 sums of the given values; bfloat16 then rounds the result once (8 bits).
    rtol = 2e-6 if dtype == jnp.float32 else 2 ** -8
    np.testing.assert_allclose(np.asarray(gb, np.float64), want, rtol=rtol,
                               atol=rtol * np.abs(want).max())


def test_bias_add_promotes_like_plus():
    y = jnp.ones((2, 3), jnp.bfloat16)
    b = jnp.ones((3,), jnp.float32)
    assert bias_add(y, b).dtype == (y + b[None]).dtype == jnp.float32
    gy, gb = jax.grad(lambda y, b: jnp.sum(bias_add(y, b)), (0, 1))(y, b)
    assert gy.dtype == jnp.bfloat16 and gb.dtype == jnp.float32
