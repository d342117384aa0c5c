"""Spatial control (Gatys et al. 2017): guided Gram matrices under style masks.

The references share no code with jaxstyle.losses: the mask pooled by explicit 2x2 averages,
G_k = sum_p m_p^2 F_p F_p^T, A_k = (M_k / M_style) Gram(style), E = sum (G - A)^2 /
(4 N^2 M_k^2), all in NumPy float64, on features from `jaxstyle.extract_features`.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SHALLOW, assert_rel, smooth_image
from jax.test_util import check_grads
from PIL import Image

import jaxstyle
from jaxstyle import cli
from jaxstyle.guided import guided_style_layer_loss
from jaxstyle.losses import style_layer_loss
from jaxstyle.vgg import features

# Soft masks, odd sizes, two styles, every pooling depth.
CONFIG = jaxstyle.StyleConfig(content_weight=0.0, style_weight=1.0, tv_weight=0.0,
                              content_layers=(), style_layer_weights=(1.0, 2.0, 3.0, 2.0),
                              style_layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1"))
H, W = 37, 45
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def case():
    content = smooth_image(40, H, W)
    styles = [smooth_image(41, 33, 29), smooth_image(42, 40, 52) ** 3]
    xs = np.linspace(0, 1, W)[None, :] * np.ones((H, 1))
    masks = [np.clip(1.5 - 2 * xs, 0, 1), np.clip(2 * xs - 0.5, 0, 1)]  # soft, overlapping
    image = np.clip(content + 0.2 * smooth_image(43, H, W) - 0.1, 0, 1)
    return content, styles, [m.astype(np.float32) for m in masks], image


def np_pool(mask, pools):
    m = np.asarray(mask, np.float64)
    for _ in range(pools):
        h, w = m.shape[0] // 2, m.shape[1] // 2
        m = np.array([[m[2 * i:2 * i + 2, 2 * j:2 * j + 2].mean() for j in range(w)]
                      for i in range(h)])
    return m


def np_guided(weights, image, styles, masks):
    """(L_s, {layer: dL_s/dF}) of `image` in float64."""
    layer_w = np.array(CONFIG.style_layer_weights) / sum(CONFIG.style_layer_weights)
    total, grads = 0.0, {}
    feats = jaxstyle.extract_features(weights, image, CONFIG.style_layers)
    style_feats = [jaxstyle.extract_features(weights, s, CONFIG.style_layers) for s in styles]
    for wl, name in zip(layer_w, CONFIG.style_layers, strict=True):
        f = np.asarray(feats[name], np.float64)
        n = f.shape[-1]
        f2 = f.reshape(-1, n)
        grads[name] = np.zeros_like(f2)
        for sfeats, mask in zip(style_feats, masks, strict=True):
            sf = np.asarray(sfeats[name], np.float64)
            s2 = sf.reshape(-1, n)
            m2 = np_pool(mask, int(name[4]) - 1).reshape(-1) ** 2
            mk = m2.sum()
            g = (f2 * m2[:, None]).T @ f2
            a = mk / s2.shape[0] * (s2.T @ s2)
            d = g - a
            c = 1.0 / (4 * n**2 * mk**2)
            total += wl * c * np.sum(d * d)
            grads[name] += wl * 2 * c * (m2[:, None] * f2) @ (d + d.T)
        grads[name] = grads[name].reshape(f.shape)
    return total, grads




def test_guided_loss_and_gradient_against_numpy(weights, case):
    content, styles, masks, image = case
    f = jaxstyle.objective(weights, content, styles, CONFIG, style_masks=masks)
    value_and_grad = jax.jit(lambda f, x: jax.value_and_grad(lambda x: f(x)[0])(x))
    total, grad = value_and_grad(f, jnp.asarray(image))
    expected, dfeats = np_guided(weights, image, styles, masks)
    assert float(total) == pytest.approx(expected, rel=2e-5)
    # The gradient by the chain rule: dL/dF from NumPy, through the network's VJP.
    _, vjp = jax.vjp(lambda x: features(weights.params, x, layers=CONFIG.style_layers,
                                        convention=weights.convention), jnp.asarray(image))
    (want,) = vjp({k: jnp.asarray(v, jnp.float32) for k, v in dfeats.items()})
    assert_rel(grad, want, 1e-4, "guided style gradient")


def test_guided_layer_loss_derivatives():
    """The custom JVP in all three arguments (features, target, mask weights)."""
    rng = np.random.default_rng(5)
    f = jnp.asarray(rng.standard_normal((5, 7, 6)), jnp.float32)
    a = jnp.asarray(rng.standard_normal((6, 6)), jnp.float32)
    a = a @ a.T
    w = jnp.asarray(rng.random((5, 7)) ** 2, jnp.float32)
    check_grads(guided_style_layer_loss, (f, a, w), order=1, modes=["fwd", "rev"], eps=1e-3,
                rtol=2e-2)


def test_an_all_white_mask_is_the_unmasked_loss(weights, case):
    content, styles, _, image = case
    config = CONFIG.replace(content_weight=1.0, content_layers=("relu4_2",), tv_weight=0.5)
    plain = jaxstyle.objective(weights, content, styles[0], config)
    white = jaxstyle.objective(weights, content, styles[0], config,
                               style_masks=[np.ones((H, W), np.float32)])
    loss = jax.jit(lambda f, x: f(x))
    (_, p1), (_, p2) = loss(plain, image), loss(white, image)
    assert float(p1["style"]) > 0
    for name in p1:
        np.testing.assert_allclose(p2[name], p1[name], rtol=1e-6)
    # And the layer functions themselves: w = 1 everywhere is the unguided E_l.
    f = jnp.asarray(smooth_image(7, 6, 5))
    a = jnp.eye(3, dtype=jnp.float32)
    np.testing.assert_allclose(guided_style_layer_loss(f, a, jnp.ones((6, 5))),
                               style_layer_loss(f, a), rtol=1e-6)


def test_a_mask_that_selects_nothing_at_a_layer_adds_nothing():
    f = jnp.asarray(smooth_image(8, 4, 4))
    a = jnp.eye(3, dtype=jnp.float32)
    zero = jnp.zeros((4, 4), jnp.float32)
    assert float(guided_style_layer_loss(f, a, zero)) == 0.0
    grad = jax.grad(guided_style_layer_loss)(f, a, zero)
    assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) == 0.0


def test_mask_checks(weights, case):
    content, styles, masks, _ = case
    for bad, match in [([masks[0]], "1 style mask"), ([masks[0], masks[1] * 0], "black"),
                       ([masks[0], masks[1] + 1], r"\[0, 1\]"),
                       ([masks[0], masks[1][None]], r"\(h, w\)")]:
        with pytest.raises(ValueError, match=match):
            jaxstyle.stylize(content, styles, weights=weights, style_masks=bad)
    with pytest.raises(ValueError, match="style_masks must have the content's size"):
        jaxstyle.objective(weights, content, styles, CONFIG, style_masks=[m[:5] for m in masks])


# ------------------------------------------------------------------------------ runs

SIZE = 48
RUN = jaxstyle.StyleConfig(optimizer="adam", learning_rate=0.05, iterations=25, image_size=SIZE,
                           content_weight=0.0, style_weight=1e3, **SHALLOW)


@pytest.fixture(scope="module")
def halves():
    """The example photo, two contrasting styles (the Hubble field; bright stripes) and a
    left/right mask pair."""
    content = jaxstyle.load_image(EXAMPLES / "chelsea.jpg", max_side=SIZE)
    hubble = jaxstyle.load_image(EXAMPLES / "hubble_deep_field.jpg", max_side=SIZE)
    stripes = jaxstyle.load_image(EXAMPLES / "stripes.png", max_side=SIZE)
    masks = [jaxstyle.load_image(EXAMPLES / f"chelsea_{side}_mask.png")[..., 0]
             for side in ("left", "right")]
    return content, [hubble, stripes], masks


def test_each_half_is_closer_to_its_own_style(weights, halves):
    """Random weights, but measurable: by the guided style loss, the left half of the
    result is closer to the style it was given there than to the other style, and the right
    half likewise (measured: 0.01 and 0.06 of it). Two stages: the masks follow each."""
    content, styles, masks = halves
    config = RUN.replace(image_size=None, scales=(32, SIZE), scale_iterations=(12, 13))
    result = jaxstyle.stylize(content, styles, weights=weights, style_masks=masks,
                              config=config)
    assert result.stage_steps == (12, 13) and result.image.shape[1] == SIZE
    h, w = result.image.shape[:2]
    side = {name: jaxstyle.image.resize_to(np.repeat(m[..., None], 3, -1), (h, w))[..., 0]
            for name, m in zip(("left", "right"), masks, strict=True)}
    loss = jax.jit(lambda f, x: f(x)[1]["style"])

    def style_loss(region, style):
        f = jaxstyle.objective(weights, result.image, [style], RUN, style_masks=[side[region]])
        return float(loss(f, result.image))

    for region, own, other in (("left", 0, 1), ("right", 1, 0)):
        assert style_loss(region, styles[own]) < 0.25 * style_loss(region, styles[other]), region


def test_a_masked_sweep_equals_its_single_runs(weights, halves):
    content, styles, masks = halves
    config = RUN.replace(iterations=3)
    grid = jaxstyle.loss_weight_grid(content_weight=0.0, style_weight=[1e2, 1e3])
    swept = jaxstyle.sweep(content, styles, weights=weights, style_masks=masks, config=config,
                           loss_weights=grid, batch_size=2)
    for i, beta in enumerate((1e2, 1e3)):
        one = jaxstyle.stylize(content, styles, weights=weights, style_masks=masks,
                               config=config.replace(style_weight=beta))
        np.testing.assert_allclose(swept.images[i], one.image, atol=1e-3 * config.learning_rate)
        np.testing.assert_allclose(swept.histories["total"][i], one.history["total"], rtol=1e-5)


# ------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, weights):
    d = tmp_path_factory.mktemp("masks")
    return {"weights": str(jaxstyle.save_weights(weights, d / "w.npz")), "dir": d}


def test_cli_style_masks(cli_files, tmp_path, capsys):
    base = [str(EXAMPLES / "chelsea.jpg"), str(EXAMPLES / "hubble_deep_field.jpg"),
            str(EXAMPLES / "stripes.png"),
            "--weights", cli_files["weights"], "--optimizer", "adam", "--iterations", "2",
            "--image-size", str(SIZE), "--style-layers", "relu1_1,relu2_1,relu3_1",
            "--content-layers", "relu3_1", "--quiet"]
    left, right = (EXAMPLES / f"chelsea_{side}_mask.png" for side in ("left", "right"))
    out = tmp_path / "o.png"
    masks = f"{left},{right}"
    assert cli.main([*base, "-o", str(out), "--style-masks", masks]) == 0
    with Image.open(out) as im:
        assert json.loads(im.text["jaxstyle"])["style_masks"] == masks.split(",")

    def error(*extra):
        code = cli.main([*base, "-o", str(tmp_path / "x.png"), *extra])
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and not (tmp_path / "x.png").exists()
        return code, lines[0]

    code, line = error("--style-masks", str(left))
    assert code == 2 and "--style-masks: 1 style mask(s) given for 2 style image(s)" in line
    code, line = error("--style-masks", f"{right},{tmp_path / 'none.png'}")
    assert code == 1 and "none.png: no such file" in line
    black = tmp_path / "black.png"
    Image.new("L", (8, 8), 0).save(black)
    code, line = error("--style-masks", f"{right},{black}")
    assert code == 1 and "black.png: the mask is black everywhere" in line
