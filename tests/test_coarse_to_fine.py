"""Coarse to fine: the automatic ladder of sizes, Adam's state carried across stages, and the
average of the iterates (crowsonkb/style-transfer-pytorch's recipe), library and CLI."""

import json

import jax
import numpy as np
import pytest
from conftest import SHALLOW, smooth_image

import jaxstyle
from jaxstyle import cli, optim, optimizers
from jaxstyle.config import auto_scales
from jaxstyle.objective import prepare_targets

TWO = jaxstyle.StyleConfig(optimizer="adam", learning_rate=0.05, scales=(32, 64),
                           scale_iterations=(6, 3), **SHALLOW)


@pytest.fixture(scope="module")
def images():
    return smooth_image(50, 48, 64), smooth_image(51, 56, 40)


def test_the_auto_ladder():
    # round(512 / 2^(i/2)) for i = 0..4: 512, 362.04, 256, 181.02, 128.
    assert auto_scales(512) == (128, 181, 256, 362, 512)
    assert auto_scales(1024) == (128, 181, 256, 362, 512, 724, 1024)
    assert auto_scales(100) == (100,)  # below 128: one stage at the output size
    config = jaxstyle.StyleConfig(scales="auto", image_size=256, iterations=7)
    stages = jaxstyle.plan_stages((300, 451), [(446, 512)], config)
    assert [max(s.shape) for s in stages] == [128, 181, 256]
    assert [s.iterations for s in stages] == [7, 7, 7]
    for fields, message in [(dict(scales="some"), "'auto', None"),
                            (dict(scales="auto", scale_iterations=(1,)), "explicit scales"),
                            (dict(average_decay=1.0), "average_decay")]:
        with pytest.raises(ValueError, match=message):
            jaxstyle.StyleConfig(**fields)


def test_resized_adam_state_has_the_next_stages_shapes():
    tx = optimizers.Optimizer(name="adam").transformation()
    p = {"image": np.ones((6, 8, 3), np.float32), "aux": np.zeros(4, np.float32)}
    state = tx.init(p)
    _, state = tx.update({"image": np.full((6, 8, 3), -2.0, np.float32),
                                  "aux": np.zeros(4, np.float32)}, state, p)
    batched = jax.tree.map(lambda a: np.stack([a, a]), state)  # K = 2 settings
    resized = optim.resize_opt_state(batched, (12, 16))
    mu, nu = resized[0].mu, resized[0].nu
    assert mu["image"].shape == nu["image"].shape == (2, 12, 16, 3)
    assert mu["aux"].shape == (2, 4) and resized[0].count.tolist() == [1, 1]
    # A constant moment stays that constant; the second moment stays >= 0.
    np.testing.assert_allclose(mu["image"], batched[0].mu["image"][0, 0, 0, 0], rtol=1e-6)
    assert float(nu["image"].min()) >= 0


def test_carried_adam_state_starts_the_next_stage_better(weights, images):
    carried = jaxstyle.stylize(*images, weights=weights, config=TWO)
    cold = jaxstyle.stylize(*images, weights=weights, config=TWO.replace(carry_state=False))
    # The same start (stage 0 is the same run) ...
    np.testing.assert_array_equal(carried.history["total"][:6], cold.history["total"][:6])
    assert carried.stage_start_losses[1][0] == cold.stage_start_losses[1][0]
    # ... but the first step of stage 1 goes on with Adam's moments instead of a fresh,
    # sign-like first step (measured 122.8 against 340.8).
    assert carried.history["total"][6] < 0.75 * cold.history["total"][6]


def test_the_average_is_the_bias_corrected_ema_of_the_iterates(weights, images):
    """optim's average against NumPy's, from the iterates saved one step at a time."""
    decay = 0.8
    config = TWO.replace(scales=None, scale_iterations=None, average_decay=decay)
    spec, targets = prepare_targets(weights, images[0], images[1], config)
    opt = config.optimizer_spec()
    init = jax.jit(optim.init, static_argnames=("spec", "optim"))
    chunk = jax.jit(optim.chunk, static_argnames=("spec", "optim", "max_steps"))
    lw = config.loss_weights
    state = init(weights.params, targets, lw, images[0], spec=spec, optim=opt)
    iterates = [np.asarray(state.image, np.float64)]
    for _ in range(5):
        state, _ = chunk(weights.params, targets, lw, state, np.int32(1), spec=spec, optim=opt)
        iterates.append(np.asarray(state.image, np.float64))
    value = 0.0
    for x in iterates:
        value = decay * value + (1 - decay) * x
    expected = value / (1 - decay ** len(iterates))
    np.testing.assert_allclose(optim.output(state), expected, atol=1e-6)
    assert np.abs(expected - iterates[-1]).max() > 1e-3  # not just the last iterate


def test_runs_return_the_average(weights, images):
    config = TWO.replace(average_decay=0.9)
    seen = []
    result = jaxstyle.stylize(*images, weights=weights, config=config,
                              callback=lambda p: seen.append(p.image()), callback_every=9)
    np.testing.assert_array_equal(seen[-1], result.image)  # progress shows it too
    plain = jaxstyle.stylize(*images, weights=weights, config=TWO)
    assert np.abs(result.image - plain.image).max() > 1e-3


def test_cli_scales_auto_and_average_decay(weights, tmp_path):
    content = tmp_path / "c.png"
    style = tmp_path / "s.png"
    jaxstyle.save_image(content, smooth_image(52, 90, 120))
    jaxstyle.save_image(style, smooth_image(53, 64, 64))
    npz = jaxstyle.save_weights(weights, tmp_path / "w.npz")
    out, summary = tmp_path / "o.png", tmp_path / "o.json"
    argv = [str(content), str(style), "-o", str(out), "--weights", str(npz), "--scales",
            "auto", "--image-size", "181", "--iterations", "1", "--optimizer", "adam",
            "--average-decay", "0.9", "--content-layers", "relu2_1", "--style-layers",
            "relu1_1,relu2_1", "--json", str(summary), "--quiet"]
    assert cli.main(argv) == 0
    doc = json.loads(summary.read_text())
    assert [max(s["shape"]) for s in doc["stages"]] == [128, 181]
    assert doc["config"]["scales"] == "auto" and doc["config"]["average_decay"] == 0.9
