"""The speed-motivated code paths compute what the plain ones do.

- vgg.max_pool_2x2 / avg_pool_2x2 (reshape pooling, custom max-pool VJP) against Flax's
  reduce_window pooling: values and gradients, ties and odd sizes included.
- losses.style_layer_loss (custom JVP, one matmul in the gradient) against the plain formula
  differentiated by JAX, against NumPy central differences, and in forward mode.
- LossSpec.compute_dtype="bfloat16" (GPU/TPU option) close to float32.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.kernels import avg_pool_2x2, max_pool_2x2
from jaxstyle.losses import LossSpec, compute_targets, gram_matrix, total_loss
from jaxstyle.losses import style_layer_loss as fast_style_layer_loss
from jaxstyle.objective import prepare_targets


def flax_max(x):
    return nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")


def flax_avg(x):
    return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")


@pytest.mark.parametrize("shape", [(1, 6, 8, 3), (2, 7, 9, 4), (1, 1, 5, 2)])
def test_max_pool_values_and_gradient_equal_reduce_window(shape):
    rng = np.random.default_rng(0)
    # Rounded to one decimal: many ties, where "the first maximum" decides the gradient;
    # ReLU-like zeros too.
    x = np.maximum(np.round(rng.standard_normal(shape), 1), 0).astype(np.float32)
    g = rng.standard_normal((shape[0], shape[1] // 2, shape[2] // 2, shape[3])).astype(
        np.float32)
    np.testing.assert_array_equal(jax.jit(max_pool_2x2)(x), flax_max(x))
    got = jax.jit(lambda x, g: jax.vjp(max_pool_2x2, x)[1](g)[0])(x, g)
    want = jax.vjp(flax_max, jnp.asarray(x))[1](jnp.asarray(g))[0]
    np.testing.assert_array_equal(got, want)


def test_avg_pool_matches_flax():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 7, 10, 3)).astype(np.float32)
    g = rng.standard_normal((1, 3, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(avg_pool_2x2(x), flax_avg(x), rtol=1e-6, atol=1e-7)
    got = jax.vjp(avg_pool_2x2, jnp.asarray(x))[1](jnp.asarray(g))[0]
    want = jax.vjp(flax_avg, jnp.asarray(x))[1](jnp.asarray(g))[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def plain_style_layer_loss(feats, target_gram):
    """The formula, differentiated by JAX's autodiff."""
    n, m = feats.shape[-1], feats.shape[0] * feats.shape[1]
    diff = gram_matrix(feats) - target_gram
    return jnp.sum(diff * diff) / (4.0 * n**2 * float(m) ** 2)


def test_style_layer_loss_gradient_against_autodiff_and_numpy():
    rng = np.random.default_rng(2)
    f = rng.random((5, 6, 4)).astype(np.float32)
    a = rng.standard_normal((4, 4)).astype(np.float32)  # not symmetric: exercises D + D^T
    grads = jax.jit(jax.grad(fast_style_layer_loss, argnums=(0, 1)))(f, a)
    plain = jax.grad(plain_style_layer_loss, argnums=(0, 1))(f, a)
    for got, want in zip(grads, plain, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)

    f64, a64 = f.astype(np.float64), a.astype(np.float64)

    def np_loss(f, a):
        fm = f.reshape(-1, 4)
        return np.sum((fm.T @ fm - a) ** 2) / (4 * 16 * 30.0**2)

    eps, num = 1e-6, np.zeros_like(f64)
    for idx in np.ndindex(f.shape):
        d = np.zeros_like(f64)
        d[idx] = eps
        num[idx] = (np_loss(f64 + d, a64) - np_loss(f64 - d, a64)) / (2 * eps)
    np.testing.assert_allclose(grads[0], num, rtol=1e-4, atol=1e-7)
    assert float(fast_style_layer_loss(f, a)) == pytest.approx(np_loss(f64, a64), rel=1e-5)


def test_style_layer_loss_forward_mode():
    rng = np.random.default_rng(3)
    f = jnp.asarray(rng.random((4, 4, 3)), jnp.float32)
    a = jnp.asarray(rng.random((3, 3)), jnp.float32)
    v = jnp.asarray(rng.standard_normal((4, 4, 3)), jnp.float32)
    _, got = jax.jvp(lambda f: fast_style_layer_loss(f, a), (f,), (v,))
    _, want = jax.jvp(lambda f: plain_style_layer_loss(f, a), (f,), (v,))
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_compute_dtype_is_validated():
    spec = LossSpec(("relu4_2",), (), ())
    assert spec.compute_dtype == "float32" and spec.dtype is None
    with pytest.raises(ValueError, match="compute_dtype"):
        dataclasses.replace(spec, compute_dtype="float16x")


def test_bfloat16_objective_close_to_float32(weights, content_image, style_image):
    import jaxstyle

    config = jaxstyle.StyleConfig(tv_weight=1.0)
    spec, targets = prepare_targets(weights, content_image, style_image, config)
    spec16 = dataclasses.replace(spec, compute_dtype="bfloat16")
    targets16 = compute_targets(weights.params, jnp.asarray(content_image),
                                [jnp.asarray(style_image)], jnp.ones((1,)), spec=spec16)
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(targets16))
    rng = np.random.default_rng(4)
    x = jnp.asarray(np.clip(content_image + 0.1 * rng.standard_normal(content_image.shape),
                            0, 1), jnp.float32)
    step = jax.jit(jax.value_and_grad(total_loss, argnums=3, has_aux=True),
                   static_argnames="spec")
    (l32, p32), g32 = step(weights.params, targets, config.loss_weights, x, spec=spec)
    (l16, p16), g16 = step(weights.params, targets16, config.loss_weights, x, spec=spec16)
    assert g16.dtype == jnp.float32
    assert float(l16) == pytest.approx(float(l32), rel=0.02)
    for name in ("content", "style"):
        assert float(p16[name]) == pytest.approx(float(p32[name]), rel=0.03)
    g32, g16 = np.asarray(g32).ravel(), np.asarray(g16).ravel()
    cosine = g32 @ g16 / (np.linalg.norm(g32) * np.linalg.norm(g16))
    assert cosine > 0.95
    assert np.linalg.norm(g16) == pytest.approx(np.linalg.norm(g32), rel=0.05)
