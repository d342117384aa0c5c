"""The losses, their targets and the objective against independent NumPy float64 code.

References here share no code with jaxstyle.losses: Grams as explicit matrix products, the
normalizations written out from the loss docstrings, features from
`jaxstyle.extract_features` (which test_vgg checks against its own NumPy network).

Gradients: the whole objective's gradient is checked as a composition, exactly:
grad = J_features^T (dL/dF, from NumPy) + dTV/dx (NumPy), with J^T from `jax.vjp` of the
feature network; that network's VJP (including the custom max-pool gradient) is checked by
`jax.test_util.check_grads` in float64, and each loss function by check_grads on small
arrays. A finite-difference check of the full float32 objective is not used: the losses are
accumulated in float32 even under x64, and differences of a ~1e2 loss along a direction
whose derivative is ~1 measured errors from 3e-3 to 1.0 (relative) for eps 1e-2 to 1e-5.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_rel, smooth_image
from jax.test_util import check_grads

import jaxstyle
from jaxstyle.losses import (
    content_loss,
    gram_matrix,
    style_layer_loss,
    style_loss,
    total_loss,
    total_variation,
)
from jaxstyle.objective import prepare_targets
from jaxstyle.vgg import features

# ---- NumPy float64 references -----------------------------------------------------------


def np_gram(f: np.ndarray) -> np.ndarray:
    """G = F^T F with F the (M, N) = (h*w, channels) matrix."""
    f = np.asarray(f, np.float64).reshape(-1, f.shape[-1])
    return f.T @ f


def np_content(f, p) -> float:
    return 0.5 * float(np.sum((np.asarray(f, np.float64) - np.asarray(p, np.float64)) ** 2))


def np_style_layer(f, a) -> float:
    n, m = f.shape[-1], f.shape[0] * f.shape[1]
    return float(np.sum((np_gram(f) - np.asarray(a, np.float64)) ** 2)) / (4.0 * n**2 * m**2)


def np_tv(x, form="squared") -> float:
    x = np.asarray(x, np.float64)
    if form == "squared":
        return float(np.sum((x[1:] - x[:-1]) ** 2) + np.sum((x[:, 1:] - x[:, :-1]) ** 2))
    a = (x[1:, :-1] - x[:-1, :-1]) ** 2
    b = (x[:-1, 1:] - x[:-1, :-1]) ** 2
    return float(np.sum((a + b) ** 1.25))


def np_tv_grad(x) -> np.ndarray:
    """d/dx of the squared TV: each difference d = x[k+1] - x[k] adds 2d at k+1, -2d at k."""
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    dy, dx = x[1:] - x[:-1], x[:, 1:] - x[:, :-1]
    g[1:] += 2 * dy
    g[:-1] -= 2 * dy
    g[:, 1:] += 2 * dx
    g[:, :-1] -= 2 * dx
    return g


def np_style_layer_grad(f, a) -> np.ndarray:
    """dE/dF = F (G - A) / (N^2 M^2) for symmetric A (F as (M, N))."""
    n, m = f.shape[-1], f.shape[0] * f.shape[1]
    f2 = np.asarray(f, np.float64).reshape(-1, n)
    return (f2 @ (np_gram(f) - a) / (n**2 * m**2)).reshape(f.shape)




# ---- each loss against NumPy ------------------------------------------------------------


@pytest.fixture(scope="module")
def small_feats():
    rng = np.random.default_rng(0)
    f = np.maximum(rng.standard_normal((5, 7, 6)), 0).astype(np.float32)
    p = np.maximum(rng.standard_normal((5, 7, 6)), 0).astype(np.float32)
    s = np.maximum(rng.standard_normal((4, 3, 6)), 0).astype(np.float32)
    return f, p, np_gram(s).astype(np.float32)


def test_gram_matrix(small_feats):
    f, _, _ = small_feats
    g = jax.jit(gram_matrix)(f)
    assert g.shape == (6, 6) and g.dtype == jnp.float32
    assert_rel(g, np_gram(f), 1e-6, "gram")


def test_content_loss(small_feats):
    f, p, _ = small_feats
    assert_rel(jax.jit(content_loss)(f, p), np_content(f, p), 1e-6, "content")


def test_style_layer_loss_normalization(small_feats):
    f, _, a = small_feats
    got = float(jax.jit(style_layer_loss)(f, a))
    assert_rel(got, np_style_layer(f, a), 1e-5, "E_l")
    # The 1/(4 N^2 M^2) factor written out for this shape: N = 6, M = 35.
    raw = float(np.sum((np_gram(f) - a) ** 2))
    assert got == pytest.approx(raw / (4 * 36 * 35**2), rel=1e-5)


def test_style_loss_per_layer_weights(small_feats):
    f, _, a = small_feats
    rng = np.random.default_rng(1)
    f2 = np.abs(rng.standard_normal((3, 3, 4))).astype(np.float32)
    a2 = np_gram(np.abs(rng.standard_normal((3, 3, 4)))).astype(np.float32)
    feats, grams = {"x": f, "y": f2}, {"x": a, "y": a2}
    got = jax.jit(functools.partial(style_loss, layer_weights={"x": 0.25, "y": 0.75}))(
        feats, grams)
    assert_rel(got, 0.25 * np_style_layer(f, a) + 0.75 * np_style_layer(f2, a2), 1e-5, "L_s")


@pytest.mark.parametrize("form", ["squared", "keras"])
def test_total_variation(form):
    x = smooth_image(3, 9, 13)
    got = jax.jit(total_variation, static_argnums=1)(x, form)
    assert_rel(got, np_tv(x, form), 1e-5, form)


def test_total_variation_forms_differ_and_constant_is_zero():
    x = smooth_image(4, 9, 13)
    assert np_tv(x, "squared") != pytest.approx(np_tv(x, "keras"), rel=1e-2)
    flat = np.full((6, 5, 3), 0.3, np.float32)
    assert float(total_variation(flat)) == 0.0 and float(total_variation(flat, "keras")) == 0.0


def test_unknown_tv_form():
    with pytest.raises(ValueError, match="tv_form must be one of"):
        total_variation(jnp.zeros((4, 4, 3)), "cubic")


# ---- gradients of each loss -------------------------------------------------------------


def test_loss_gradients_match_numpy(small_feats):
    f, p, a = small_feats
    assert_rel(jax.jit(jax.grad(content_loss))(f, p), f.astype(np.float64) - p, 1e-6,
               "dL_c/dF = F - P")
    assert_rel(jax.jit(jax.grad(style_layer_loss))(f, a), np_style_layer_grad(f, a), 1e-5,
               "dE_l/dF")
    x = smooth_image(5, 9, 13)
    assert_rel(jax.jit(jax.grad(total_variation))(x), np_tv_grad(x), 1e-5, "dTV/dx")


def test_check_grads_loss_functions(small_feats):
    f, p, a = small_feats
    check_grads(content_loss, (f, p), order=1, modes=["rev"], eps=1e-2, rtol=1e-2)
    # style_layer_loss has a custom JVP: check it in both arguments.
    check_grads(style_layer_loss, (f, a), order=1, modes=["rev"], eps=1e-3, rtol=1e-2)
    check_grads(gram_matrix, (f,), order=1, modes=["rev"], eps=1e-2, rtol=1e-2)
    x = jnp.asarray(smooth_image(6, 9, 13))
    check_grads(total_variation, (x,), order=1, modes=["rev"], eps=1e-3, rtol=1e-2)
    check_grads(lambda x: total_variation(x, "keras"), (x,), order=1, modes=["rev"],
                eps=1e-3, rtol=1e-2)


def test_conv3x3_vjp_matches_autodiff():
    """vgg.conv3x3_same's hand-written VJP against autodiff of lax.conv_general_dilated."""
    from jaxstyle.kernels import conv3x3_same

    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((1, 7, 9, 5)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 5, 4)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((1, 7, 9, 4)), jnp.float32)

    def plain(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    y, vjp = jax.vjp(jax.jit(conv3x3_same), x, k)
    y_ref, vjp_ref = jax.vjp(plain, x, k)
    assert_rel(y, y_ref, 1e-6, "conv")
    for got, ref, name in zip(vjp(g), vjp_ref(g), ("d/dx", "d/dkernel"), strict=True):
        assert_rel(got, ref, 1e-5, name)


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_check_grads_feature_network_float64(weights, pooling):
    """The VJP of the VGG feature map (custom max-pool gradient included), in float64."""
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_2", "relu5_1")
    with jax.enable_x64(True):
        params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), weights.params)
        x = jnp.asarray(smooth_image(7, 20, 20), jnp.float64)
        shapes = jax.eval_shape(
            lambda x: features(params, x, layers=layers, pooling=pooling), x)
        rng = np.random.default_rng(2)
        probes = {k: jnp.asarray(rng.standard_normal(s.shape)) for k, s in shapes.items()}

        @jax.jit
        def scalar(params, x):
            feats = features(params, x, layers=layers, pooling=pooling)
            assert all(v.dtype == jnp.float64 for v in feats.values())
            return sum(jnp.vdot(probes[k], feats[k]) for k in layers)

        check_grads(lambda x: scalar(params, x), (x,), order=1, modes=["rev"], eps=1e-6,
                    atol=0, rtol=1e-4)


# ---- targets and the objective ----------------------------------------------------------

CONFIG = jaxstyle.StyleConfig(
    content_layers=("relu2_1", "relu4_2"),
    style_layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1"),
    style_layer_weights=(1.0, 2.0, 3.0, 2.0),
    style_blend_weights=(3.0, 1.0),
    content_weight=2.0,
    style_weight=1e3,
    tv_weight=0.5,
)


@pytest.fixture(scope="module")
def images(content_image, style_image):
    """Content 48x64, two style images of other sizes (56x40 and 32x48), the image x."""
    return content_image, [style_image, smooth_image(12, 32, 48)], smooth_image(13, 48, 64)


@pytest.fixture(scope="module")
def np_targets(weights, images):
    content, styles, _ = images
    layers = CONFIG.content_layers + CONFIG.style_layers
    cf = {k: np.asarray(v, np.float64) for k, v in
          jaxstyle.extract_features(weights, content, layers).items()}
    b = np.array([3.0, 1.0]) / 4.0
    grams = {}
    for name in CONFIG.style_layers:
        m_image = cf[name].shape[0] * cf[name].shape[1]
        grams[name] = 0.0
        for bk, style in zip(b, styles, strict=True):
            sf = np.asarray(jaxstyle.extract_features(weights, style, (name,))[name], np.float64)
            # Rescaled by M_image / M_style: a Gram sums over positions.
            grams[name] = grams[name] + bk * m_image / (sf.shape[0] * sf.shape[1]) * np_gram(sf)
    return {k: cf[k] for k in CONFIG.content_layers}, grams


def test_targets_blend_and_size_rescaling(weights, images, np_targets):
    content, styles, _ = images
    spec, targets = prepare_targets(weights, content, styles, CONFIG)
    for name, p in np_targets[0].items():
        assert_rel(targets.content[name], p, 1e-5, f"content target {name}")
    for name, a in np_targets[1].items():
        assert_rel(targets.grams[name], a, 1e-5, f"gram target {name}")
    assert spec.style_layer_weights == pytest.approx((0.125, 0.25, 0.375, 0.25))


def np_objective(weights, x, np_targets):
    """(total, parts) from features of x and the NumPy targets, all in float64."""
    contents, grams = np_targets
    layers = CONFIG.content_layers + CONFIG.style_layers
    f = {k: np.asarray(v, np.float64) for k, v in
         jaxstyle.extract_features(weights, x, layers).items()}
    lc = sum(np_content(f[k], p) for k, p in contents.items())
    w = np.array(CONFIG.style_layer_weights) / sum(CONFIG.style_layer_weights)
    ls = sum(wl * np_style_layer(f[k], grams[k])
             for wl, k in zip(w, CONFIG.style_layers, strict=True))
    tv = np_tv(x)
    return 2.0 * lc + 1e3 * ls + 0.5 * tv, {"content": lc, "style": ls, "tv": tv}, f


def test_objective_matches_independent_computation(weights, images, np_targets):
    content, styles, x = images
    fn = jaxstyle.objective(weights, content, styles, CONFIG)
    total, parts = jax.jit(lambda fn, x: fn(x))(fn, x)
    exp_total, exp_parts, _ = np_objective(weights, x, np_targets)
    for name in ("content", "style", "tv"):
        assert exp_parts[name] > 0
        assert float(parts[name]) == pytest.approx(exp_parts[name], rel=2e-5), name
    assert float(total) == pytest.approx(exp_total, rel=2e-5)
    # Loss weights are traced arguments: other weights, same function.
    spec, targets = prepare_targets(weights, content, styles, CONFIG)
    t2, _ = jax.jit(total_loss, static_argnums=4)(
        weights.params, targets, jaxstyle.LossWeights.of(1.0, 0.0, 2.0), x, spec)
    assert float(t2) == pytest.approx(exp_parts["content"] + 2 * exp_parts["tv"], rel=2e-5)


@pytest.fixture(scope="module")
def objective_grad(weights, images):
    content, styles, _ = images
    spec, targets = prepare_targets(weights, content, styles, CONFIG)
    grad = jax.jit(jax.grad(lambda p, t, w, x: total_loss(p, t, w, x, spec)[0], argnums=3))
    return spec, functools.partial(grad, weights.params, targets)


# One term at a time: with synthetic weights the style gradient is ~5e-4 of the content
# gradient, so a check of the sum alone would not see a wrong style gradient.
@pytest.mark.parametrize("term", ["content", "style", "tv"])
def test_objective_gradient_by_chain_rule(weights, images, np_targets, objective_grad, term):
    """grad f = J^T (alpha dL_c/dF + beta sum_l w_l dE_l/dF) + gamma dTV/dx, dL/dF in NumPy."""
    x = images[2]
    alpha, beta, gamma = [v if name == term else 0.0 for name, v in
                          (("content", 2.0), ("style", 1e3), ("tv", 0.5))]
    spec, grad = objective_grad
    got = grad(jaxstyle.LossWeights.of(alpha, beta, gamma), x)
    _, _, f = np_objective(weights, x, np_targets)
    contents, grams = np_targets
    w = np.array(CONFIG.style_layer_weights) / sum(CONFIG.style_layer_weights)
    cot = {k: np.zeros_like(v) for k, v in f.items()}
    for k, p in contents.items():
        cot[k] += alpha * (f[k] - p)
    for wl, k in zip(w, CONFIG.style_layers, strict=True):
        cot[k] += beta * wl * np_style_layer_grad(f[k], grams[k])
    _, vjp = jax.vjp(lambda x: spec.features(weights.params, x), jnp.asarray(x))
    (expected,) = vjp({k: jnp.asarray(v, jnp.float32) for k, v in cot.items()})
    expected = np.asarray(expected, np.float64) + gamma * np_tv_grad(x)
    assert_rel(got, expected, 1e-4, f"objective gradient, {term} term")


# ---- bad arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(content_layers=("relu9_9",)), "unknown VGG19 layer"),
        (dict(style_layers=("conv1_1", "nope")), "unknown VGG19 layer"),
        (dict(style_weight=-1.0), "style_weight"),
        (dict(content_weight=float("nan")), "content_weight"),
        (dict(iterations=0), "iterations"),
        (dict(style_layer_weights=(1.0, 2.0)), "style_layer_weights"),
        (dict(style_layer_weights=(1.0, -1.0, 1.0, 1.0, 1.0)), "style_layer_weights"),
        (dict(optimizer="sgd"), "optimizer"),
        (dict(tv_form="cubic"), "tv_form"),
        (dict(init="zeros"), "init"),
    ],
)
def test_bad_config(changes, match):
    with pytest.raises(ValueError, match=match):
        jaxstyle.StyleConfig(**changes)


def test_bad_loss_weights():
    with pytest.raises(ValueError, match="style_weight must be"):
        jaxstyle.LossWeights.of(1.0, -2.0, 0.0)


def test_blend_weights_must_match_styles(weights, content_image, style_image):
    config = jaxstyle.StyleConfig(style_blend_weights=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="3 style blend weights given for 2"):
        prepare_targets(weights, content_image, [style_image, style_image], config)


def test_bad_image_shape(weights, content_image):
    with pytest.raises(ValueError, match="RGB"):
        jaxstyle.objective(weights, content_image[..., :2], content_image)


def test_feature_sizes_by_arithmetic_match_the_network(weights):
    """compute_targets takes M of each style layer from the image size (no forward pass)."""
    from jaxstyle.guided import pixels_at as _pixels_at
    from jaxstyle.vgg import LAYER_NAMES

    image = smooth_image(14, 37, 45)  # odd sizes: VALID pooling floors
    feats = jaxstyle.extract_features(weights, image, LAYER_NAMES)
    for name, f in feats.items():
        assert _pixels_at(name, image.shape[:2]) == f.shape[0] * f.shape[1], name
    assert _pixels_at("block3_conv1", (37, 45)) == 9 * 11  # Keras alias of relu3_1
