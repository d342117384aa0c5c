"""The library as a JAX user meets it: images checked at the boundary (uint8 converted, 0-255
floats refused), settings checked with their names, pytrees where JAX expects them, sweep
results indexable, loss weights that never recompile, optax optimizers accepted, and the
README's offline quick start (examples/quickstart.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import EXAMPLES, SHALLOW, load_script, smooth_image

import jaxstyle
from jaxstyle.arbitrary import stylize_adain

SIZE = 32
# One compiled program for the runs of this file: shallow layers, Adam, a few steps.
CONFIG = jaxstyle.StyleConfig(optimizer="adam", iterations=3, scales=None, **SHALLOW)


@pytest.fixture(scope="module")
def photo():
    """A scikit-image-like uint8 photo (as every Pillow and skimage array is) and a style."""
    content = (smooth_image(3, SIZE, SIZE + 8) * 255).round().astype(np.uint8)
    return content, smooth_image(4, SIZE, SIZE)


def test_a_uint8_photo_gives_the_result_of_the_photo_over_255(weights, photo):
    content, style = photo
    as_uint8 = jaxstyle.stylize(content, style, weights=weights, config=CONFIG)
    as_float = jaxstyle.stylize(content / 255.0, style, weights=weights, config=CONFIG)
    np.testing.assert_array_equal(as_uint8.image, as_float.image)
    assert 0.2 < as_uint8.image.mean() < 0.8  # not the white image of a 0-255 float start
    with pytest.raises(jaxstyle.SettingError, match=r"values span \[.*divide by 255"):
        jaxstyle.stylize(content.astype(np.float32), style, weights=weights, config=CONFIG)


def test_a_sweep_result_indexes_as_its_settings(weights, photo):
    content, style = photo
    grid = jaxstyle.loss_weight_grid(style_weight=[1e2, 1e4])
    swept = jaxstyle.sweep(content, style, weights=weights, config=CONFIG, loss_weights=grid)
    assert len(swept) == 2 and [r.config.style_weight for r in swept] == [1e2, 1e4]
    second = swept[1]
    assert len(second) == 1 and second.image.shape == swept.images[1].shape
    np.testing.assert_array_equal(second.image, swept.images[1])
    assert second.best_loss == swept.best_losses[1] and swept[-1].labels == second.labels
    np.testing.assert_array_equal(second.history["total"], swept.histories["total"][1])
    with pytest.raises(IndexError):
        swept[2]


def test_loss_weights_from_any_python_numbers_never_recompile(weights, photo):
    content, style = photo
    f = jaxstyle.objective(weights, content / 255.0, style, CONFIG)
    value = jax.jit(lambda f, lw, x: f.func(*f.args[:2], lw, x)[0])
    x = jnp.asarray(content / 255.0, jnp.float32)
    for lw in (jaxstyle.LossWeights(1.0, 1e4, 0.0), jaxstyle.LossWeights(1, 100, 0),
               jaxstyle.LossWeights(np.float64(2), np.int32(3), 0.5),
               jaxstyle.LossWeights.of(1, 2, 3)):
        value(f, lw, x)
    assert value._cache_size() == 1
    with pytest.raises(jaxstyle.SettingError, match="tv_weight must be finite and >= 0"):
        jaxstyle.LossWeights(1.0, 1.0, -1)


@pytest.mark.parametrize("changes, message", [
    (dict(style_weight="1e3"), "style_weight must be a finite number, got '1e3'"),
    (dict(iterations=2.5), "iterations must be an integer >= 1"),
    (dict(style_layers=["relu1_1", 3]), "style_layers must be layer names"),
    (dict(scales="none", scale_iterations=(1,)), "scale_iterations needs explicit scales"),
    (dict(optimizer="sgd"), "optimizer must be one of"),
    (dict(learning_rate=0.1), "learning_rate is Adam's step size; lbfgs takes none"),
    (dict(optimizer=optax.adam(0.1), learning_rate=0.1), "set the step size in the optax"),
    (dict(carry_state="yes"), "carry_state must be True or False"),
])
def test_config_fields_are_checked_by_type_with_their_names(changes, message):
    with pytest.raises(jaxstyle.SettingError, match=message) as info:
        jaxstyle.StyleConfig(**changes)
    assert info.value.name in changes


def test_config_normalizes_what_users_write():
    config = jaxstyle.StyleConfig(style_layers="block3_conv1", content_layers=["relu4_2"],
                                  scales=[64, 128], style_weight=10, learning_rate=None)
    assert config.style_layers == ("relu3_1",) and config.content_layers == ("relu4_2",)
    assert config.scales == (64, 128) and config.style_weight == 10.0
    assert isinstance(config.style_weight, float) and hash(config)
    assert jaxstyle.StyleConfig(scales="none").scales is None
    assert jaxstyle.StyleConfig(optimizer="adam").optimizer_spec().learning_rate == 0.02


def test_help_answers_what_each_field_and_argument_is():
    doc = jaxstyle.StyleConfig.__doc__
    for field in jaxstyle.StyleConfig.__dataclass_fields__:
        assert f"\n    {field} " in doc, field
    for word in ("alpha", "beta", "gamma", "[0, 1] pixel units", '"auto"', "optax"):
        assert word in doc
    for fn, names in ((jaxstyle.stylize, ("content", "styles", "weights", "config",
                                          "loss_weights", "init", "style_masks",
                                          "preserve_colors", "callback", "devices")),
                      (jaxstyle.sweep, ("loss_weights", "batch_size", "devices"))):
        for name in names:
            assert f"\n    {name} " in fn.__doc__, (fn.__name__, name)


def test_wrong_argument_types_are_named(weights, photo, adain_params):
    content, style = photo
    for kwargs, name in ((dict(weights=weights.params), "weights"),
                         (dict(weights=weights, config={"iterations": 3}), "config"),
                         (dict(weights=weights, loss_weights=(1.0, 1e3, 0.0)), "loss_weights")):
        with pytest.raises(jaxstyle.SettingError) as info:
            jaxstyle.stylize(content, style, **kwargs)
        assert info.value.name == name
    with pytest.raises(jaxstyle.SettingError, match="must all have one size"):
        stylize_adain(adain_params, [smooth_image(1, 16, 16), smooth_image(2, 24, 16)], style)
    f = jaxstyle.objective(weights, content, style, CONFIG)
    with pytest.raises(jaxstyle.SettingError, match=r"content's shape \(32, 40, 3\)"):
        f(jnp.zeros((SIZE, SIZE, 3)))


def test_weights_features_and_objective_as_jax_users_expect(weights, photo):
    content, style = photo
    image = content / 255.0
    # VGGWeights is a pytree: a jit argument.
    relu = jax.jit(lambda w, x: jaxstyle.features(w, x, layers=["relu2_1", "relu1_1"]))
    out = relu(weights, jnp.asarray(image, jnp.float32))  # a jitted dict: keys sorted
    assert out["relu2_1"].shape == (16, 20, 128) and out["relu1_1"].shape == (32, 40, 64)
    # Batched, in the order asked for (a jit returns dicts sorted by key).
    batch = np.stack([image, image[::-1]])
    feats = jaxstyle.extract_features(weights, batch, ["relu2_1", "conv1_1"])
    assert list(feats) == ["relu2_1", "conv1_1"] and feats["relu2_1"].shape == (2, 16, 20, 128)
    np.testing.assert_allclose(feats["relu2_1"][0], out["relu2_1"], rtol=1e-5, atol=1e-5)
    assert list(jaxstyle.extract_features(weights, image, "relu3_1")) == ["relu3_1"]
    # The value-only objective drives optax's L-BFGS with its line search.
    f = jaxstyle.objective(weights, image, style, CONFIG, with_parts=False)
    opt = optax.lbfgs()

    @jax.jit
    def run(f, x):
        value_and_grad = optax.value_and_grad_from_state(f)

        def step(carry, _):
            x, state = carry
            value, grad = value_and_grad(x, state=state)
            updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=f)
            return (optax.apply_updates(x, updates), state), value

        (x, _), values = jax.lax.scan(step, (x, opt.init(x)), length=4)
        return f(x), values

    final, values = run(f, jnp.asarray(np.clip(image + 0.1, 0, 1), jnp.float32))
    assert float(final) < float(values[0])


@pytest.mark.parametrize("transform, line_search", [(optax.adamw(0.02), False),
                                                    (optax.lbfgs(), True)],
                         ids=["adamw", "lbfgs"])
def test_stylize_takes_an_optax_transformation(weights, photo, transform, line_search):
    content, style = photo
    # beta 1e7: with random weights and beta 1e3 the content image is near the optimum.
    config = CONFIG.replace(optimizer=transform, iterations=4, style_weight=1e7)
    result = jaxstyle.stylize(content, style, weights=weights, config=config)
    assert result.best_loss < result.initial_losses["total"][0]
    assert result.summary()["config"]["optimizer"] == "custom"
    # optax's L-BFGS is driven like "lbfgs" (its line search's value and gradient reused, its
    # evaluations counted); adamw like "adam" (one evaluation a step).
    assert config.optimizer_spec().uses_linesearch == line_search
    evaluations = int(result.evaluations[0])
    assert evaluations >= 5 if line_search else evaluations == 1 + 4


def test_a_run_stopped_in_its_first_stage_says_which_stage_its_image_is(weights, photo):
    content, style = photo
    config = CONFIG.replace(scales=(16, 32), iterations=3)
    result = jaxstyle.stylize(content, style, weights=weights, config=config,
                              callback=lambda p: False, callback_every=1)
    assert result.stopped == "interrupted" and result.image_stage == 0
    assert result.image.shape[:2] == result.stages[0].shape != result.stages[-1].shape
    full = jaxstyle.stylize(content, style, weights=weights, config=config)
    assert full.image_stage == 1 and full.image.shape[:2] == full.stages[1].shape
    seen = []
    jaxstyle.stylize(content, style, weights=weights, config=config, callback=seen.append)
    assert seen[0].stage == 0 and "stage=0," in repr(seen[0])


def test_the_quick_start_runs_offline(tmp_path):
    quickstart = load_script("examples/quickstart.py")
    out = tmp_path / "out.png"
    assert quickstart.main(["--image-size", "32", "--iterations", "2", "-o", str(out)]) == 0
    image = jaxstyle.load_image(out)
    assert image.shape == (21, 32, 3)
    assert (EXAMPLES / "chelsea.jpg").exists()
