"""stylize(): descent, determinism, no recompiles, callbacks, NaN, best iterate, init images,
stages (pyramids), sizes, colours; the pure step loop of jaxstyle.optim.

Single runs share one set of shapes (content 32x40, style 40x32) and the stage tests another
(content 48x64 at scales 32 and 64), so each program compiles once for the module.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SHALLOW, assert_adam_runs_close, smooth_image

import jaxstyle
from jaxstyle import color, optim, optimizers, parallel
from jaxstyle.grids import as_settings
from jaxstyle.image import resize_to, scale_shape
from jaxstyle.objective import prepare_targets
from jaxstyle.runtime import count_compiles
from jaxstyle.stylize import min_side

ITERATIONS = 10
# The run's machinery, not the network, is under test here: the first two VGG blocks
# (conftest.SHALLOW), except where a test says which layers it needs.
DEFAULT_LAYERS = dict(content_layers=jaxstyle.CONTENT_LAYERS, style_layers=jaxstyle.STYLE_LAYERS)


@pytest.fixture(scope="module")
def images():
    return smooth_image(20, 32, 40), smooth_image(21, 40, 32)


def make_config(optimizer, **changes):
    fields = dict(optimizer=optimizer, iterations=ITERATIONS, init="noise", tv_weight=1e-3,
                  **SHALLOW)
    return jaxstyle.StyleConfig(**{**fields, **changes})


def run(weights, images, optimizer, *, callback_every=4, **changes):
    calls = []

    def callback(progress):
        calls.append((progress, progress.step, {k: float(v[0]) for k, v in
                                                progress.losses.items()},
                      float(progress.best_losses[0]), progress.image()))

    result = jaxstyle.stylize(*images, weights=weights, config=make_config(optimizer, **changes),
                              callback=callback, callback_every=callback_every)
    return result, calls


@pytest.fixture(scope="module")
def lbfgs_run(weights, images):
    return run(weights, images, "lbfgs")


@pytest.fixture(scope="module")
def adam_run(weights, images):
    return run(weights, images, "adam")


@pytest.mark.parametrize("which", ["lbfgs_run", "adam_run"])
def test_optimizers_lower_the_loss(request, which):
    result, _ = request.getfixturevalue(which)
    total = result.history["total"]
    assert result.stopped is None and result.steps == ITERATIONS and len(result) == 1
    assert all(len(v) == ITERATIONS for v in result.history.values())
    assert np.all(np.isfinite(total))
    assert total[-1] < 0.5 * result.initial_losses["total"][0]
    assert result.best_loss == pytest.approx(min(total.min(), result.initial_losses["total"][0]))
    # The total is the weighted sum of the recorded parts.
    c = result.config
    np.testing.assert_allclose(
        total, c.content_weight * result.history["content"]
        + c.style_weight * result.history["style"] + c.tv_weight * result.history["tv"],
        rtol=1e-5)
    assert result.image.shape == (32, 40, 3) and result.image.dtype == np.float32
    assert result.image.min() >= 0.0 and result.image.max() <= 1.0
    assert set(result.timings) == {"setup_s", "compile_s", "steps_s", "total_s"}
    assert result.timings["compile_s"] > 0 and result.timings["steps_s"] > 0


def test_lbfgs_beats_adam_in_the_same_steps(lbfgs_run, adam_run):
    assert lbfgs_run[0].best_loss < adam_run[0].best_loss


def test_callback_progress(lbfgs_run):
    result, calls = lbfgs_run
    assert [c[1] for c in calls] == [4, 8, 10]
    for progress, step, losses, best_loss, image in calls:
        assert progress.total_steps == ITERATIONS and progress.num_stages == 1
        assert progress.shape == (32, 40)
        assert losses["total"] == pytest.approx(result.history["total"][step - 1])
        assert best_loss <= losses["total"]
        assert image.shape == (32, 40, 3) and 0 <= image.min() and image.max() <= 1
    np.testing.assert_array_equal(calls[-1][4], result.image)
    # A stale Progress says so: its device buffers went to the next chunk (donation).
    with pytest.raises(RuntimeError, match="during the callback"):
        calls[0][0].image()


def test_same_seed_same_image(weights, images, lbfgs_run):
    again, _ = run(weights, images, "lbfgs")
    np.testing.assert_array_equal(again.image, lbfgs_run[0].image)
    np.testing.assert_array_equal(again.history["total"], lbfgs_run[0].history["total"])
    other = jaxstyle.stylize(*images, weights=weights,
                             config=make_config("lbfgs", seed=1, iterations=1))
    assert other.initial_losses["total"][0] != pytest.approx(again.initial_losses["total"][0])


def test_no_recompile_for_weights_interval_or_iterations(weights, images, lbfgs_run):
    with count_compiles() as events:  # the listener works: a new program is counted
        jax.jit(lambda x: x * 3.25 + 1)(np.ones(7, np.float32)).block_until_ready()
    assert len(events) == 1 and events.seconds > 0
    steps = []
    with count_compiles() as events:
        result = jaxstyle.stylize(
            *images, weights=weights, config=make_config("lbfgs", iterations=7),
            loss_weights=jaxstyle.LossWeights.of(3.0, 50.0, 0.1),
            callback=lambda p: steps.append(p.step), callback_every=3)
    assert events.names == []
    assert result.timings["compile_s"] == 0.0
    assert steps == [3, 6, 7] and result.steps == 7
    assert result.initial_losses["total"][0] != pytest.approx(
        lbfgs_run[0].initial_losses["total"][0])
    assert result.setting_config(0).content_weight == 3.0


def test_callback_false_stops_early(weights, images):
    result = jaxstyle.stylize(*images, weights=weights, config=make_config("lbfgs"),
                              callback=lambda p: p.step < 4, callback_every=2)
    assert result.stopped == "interrupted" and "after 4 of 10" in result.message
    assert result.steps == 4 and len(result.history["total"]) == 4
    assert result.best_step <= 4
    assert result.best_loss == pytest.approx(min(result.history["total"].min(),
                                                 result.initial_losses["total"][0]))


def test_best_iterate_is_kept(weights, images):
    """Adam from the content image first moves away from it (a worse loss at every step
    here), so the best iterate is the initial image, not the last one."""
    content = images[0]
    result = jaxstyle.stylize(*images, weights=weights, init=content,
                              config=make_config("adam", iterations=6))
    assert result.history["total"].min() > result.initial_losses["total"][0]  # the premise
    assert result.best_step == 0
    assert result.best_loss == pytest.approx(result.initial_losses["total"][0])
    np.testing.assert_array_equal(result.image, content)


def poisoned(weights):
    params = dict(weights.params)
    bias = np.array(params["conv2_1"]["bias"])
    bias[0] = np.nan
    params["conv2_1"] = {**params["conv2_1"], "bias": jnp.asarray(bias)}
    return jaxstyle.VGGWeights(params, weights.convention, source="poisoned")


def test_nonfinite_at_start_returns_the_initial_image(weights, images, lbfgs_run):
    result = jaxstyle.stylize(*images, weights=poisoned(weights), config=make_config("lbfgs"))
    assert result.stopped == "nonfinite" and result.nonfinite.tolist() == [True]
    assert "non-finite at the initial image" in result.message
    assert result.steps == 0 and result.best_step == 0
    noise = np.random.default_rng(0).random((32, 40, 3), np.float32)
    np.testing.assert_array_equal(result.image, noise)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_nonfinite_mid_run_keeps_the_last_good_best(weights, images, optimizer):
    """The pure step loop: a loss that turns inf after 3 good steps stops it at once, and
    the best iterate and its step are kept."""
    config = make_config(optimizer)
    spec, targets = prepare_targets(weights, images[0], images[1], config)
    opt = config.optimizer_spec()
    init = jax.jit(optim.init, static_argnames=("spec", "optim"))
    chunk = jax.jit(optim.chunk, static_argnames=("spec", "optim", "max_steps"))
    lw = config.loss_weights
    state = init(weights.params, targets, lw, smooth_image(3, 32, 40), spec=spec, optim=opt)
    state, _ = chunk(weights.params, targets, lw, state, np.int32(3), spec=spec, optim=opt)
    best, best_step = np.array(state.best_image), int(state.best_step)
    assert best_step == 3
    bad = jaxstyle.LossWeights(jnp.asarray(np.inf, jnp.float32), lw.style_weight, lw.tv_weight)
    state, history = chunk(weights.params, targets, bad, state, np.int32(5), spec=spec,
                           optim=opt)
    history = np.asarray(history)
    assert not bool(state.ok) and int(state.step) == 4
    assert not np.isfinite(history[0, 0]) and np.all(np.isnan(history[1:]))
    assert int(state.best_step) == best_step
    np.testing.assert_array_equal(np.asarray(state.best_image), best)


def test_bad_arguments(weights, images):
    content, style = images
    for kwargs, match in [
        (dict(callback_every=0), "callback_every"),
        (dict(init=np.zeros((8, 8), np.float32)), r"init image must be an RGB \(H, W, 3\)"),
        (dict(loss_weights=jaxstyle.LossWeights.of([1, 2], 1, 0)), "scalar loss weights"),
        (dict(preserve_colors="lab"), "preserve_colors must be one of"),
    ]:
        with pytest.raises(ValueError, match=match):
            jaxstyle.stylize(content, style, weights=weights, **kwargs)
    with pytest.raises(ValueError, match="content image contains NaN"):
        jaxstyle.stylize(np.full_like(content, np.nan), style, weights=weights)
    with pytest.raises(ValueError, match=r"content image must be an RGB \(H, W, 3\)"):
        jaxstyle.stylize(content[..., :2], style, weights=weights)


def test_vmap_over_loss_weights_equals_single_runs(weights, images):
    """The chunk is a pure function of a pytree state: vmap over (loss weights, state)."""
    config = make_config("adam")
    spec, targets = prepare_targets(weights, images[0], images[1], config)
    opt = config.optimizer_spec()
    x0 = np.random.default_rng(0).random((32, 40, 3), np.float32)
    settings = [jaxstyle.LossWeights.of(1.0, 1e3, 1e-3), jaxstyle.LossWeights.of(5.0, 1e2, 0.0)]

    def one(params, targets, lw, x0):
        state = optim.init(params, targets, lw, x0, spec=spec, optim=opt)
        return optim.chunk(params, targets, lw, state, 4, spec=spec, optim=opt)

    singles = [jax.jit(one)(weights.params, targets, lw, x0) for lw in settings]
    batch = jax.tree.map(lambda *v: jnp.stack(v), *settings)
    states, hists = jax.jit(jax.vmap(one, in_axes=(None, None, 0, None)))(
        weights.params, targets, batch, x0)
    for k, (state, hist) in enumerate(singles):
        # Adam: a gradient near 0 turns the vmapped sums' other rounding into whole steps
        # (0.7% of the pixels moved by up to 5e-3 under the suite's compile flags).
        assert_adam_runs_close(states.image[k], state.image, learning_rate=opt.learning_rate,
                               steps=4)
        np.testing.assert_allclose(np.asarray(hists[k, :4]), hist[:4], rtol=1e-4)


def _tv(x):
    x = np.asarray(x, np.float64)
    return float(np.sum((x[1:] - x[:-1]) ** 2) + np.sum((x[:, 1:] - x[:, :-1]) ** 2))


@pytest.mark.parametrize("init", ["style", "noise", "array"])
def test_init_images(weights, images, lbfgs_run, init):
    """The initial losses are those of the documented initial image (TV: NumPy)."""
    content, style = images
    array = smooth_image(22, 16, 20)  # any size: resized to the run's
    expected = {
        "style": resize_to(style, (32, 40)),
        "noise": np.random.default_rng(3).random((32, 40, 3), np.float32),
        "array": resize_to(array, (32, 40)),
    }[init]
    result = jaxstyle.stylize(content, style, weights=weights,
                              init=array if init == "array" else None,
                              config=make_config("lbfgs", iterations=1, seed=3,
                                                 init="content" if init == "array" else init))
    assert result.initial_losses["tv"][0] == pytest.approx(_tv(expected), rel=1e-5)


def test_the_content_start_shares_the_content_forward_pass(weights, images):
    """Starting at the content image, the content targets come out of the first evaluation's
    own forward pass: the init program has the convolutions of one evaluation."""
    content, style = images
    config = jaxstyle.StyleConfig()
    spec, full = prepare_targets(weights, content, [style], config)
    mesh = parallel.settings_mesh(k=1)
    lw = as_settings(config.loss_weights)

    no_probe = optimizers.Optimizer(probe_first_step=False)

    def convolutions(init_from, image0, opt=no_probe):
        init, _ = parallel.programs(mesh, spec, opt, 1, init_from)
        lowered = init.lower(weights.params, content, full._replace(content={}), lw, image0, None)
        return lowered, len(re.findall(r"convolution\(", lowered.compile().as_text()))

    # 13 convolutions up to conv5_1, forward and input gradient; the content forward pass
    # (10 more, up to conv4_2) is merged with the evaluation's when it starts there. Zoom
    # L-BFGS's first-step probe (the default) is one more evaluation: 26 more.
    assert convolutions("shared", content)[1] == 10 + 26
    assert convolutions("content", None, optimizers.Optimizer())[1] == 26 + 26
    lowered, count = convolutions("content", None)
    assert count == 26
    style_only = full._replace(content={})
    targets, state, initial = lowered.compile()(weights.params, content, style_only, lw, None, None)
    for name, p in full.content.items():
        np.testing.assert_allclose(targets.content[name], p, rtol=1e-5,
                                   atol=1e-5 * float(np.abs(p).max()))
    assert float(initial[0, 1]) == 0.0  # the content loss at the content image, exactly


# ------------------------------------------------------------------------------ sizes


def test_image_size_scales_the_content_up_and_down(weights, images):
    content, style = images
    for side, style_scale in ((20, 1.0), (64, 0.5)):
        stages = jaxstyle.plan_stages(content.shape[:2], [style.shape[:2]], make_config(
            "adam", image_size=side, style_scale=style_scale))
        assert [s.shape for s in stages] == [scale_shape((32, 40), side)]
        assert stages[0].style_shapes == (scale_shape((40, 32), int(side * style_scale)),)
    result = jaxstyle.stylize(content, style, weights=weights,
                              config=make_config("adam", iterations=1, image_size=64))
    assert result.image.shape == (51, 64, 3)  # 32 * 64 / 40 = 51.2: up, not kept at 40


def test_sizes_that_cannot_work_are_refused_before_any_work(weights, images):
    content, style = images
    assert min_side(jaxstyle.StyleConfig()) == 16  # relu5_1: after four poolings
    assert min_side(jaxstyle.StyleConfig(style_layers=("relu2_1",),
                                         content_layers=("pool2",))) == 4
    with count_compiles() as compiles:
        with pytest.raises(ValueError, match=r"at 16 px the image would be 13x16, smaller "
                                             r"than 16 px on a side"):
            jaxstyle.stylize(content, style, weights=weights,
                             config=make_config("adam", image_size=16, **DEFAULT_LAYERS))
        with pytest.raises(ValueError, match=r"the largest that fits is about \d+ px"):
            jaxstyle.stylize(content, style, weights=weights,
                             config=make_config("adam", image_size=1_000_000))
    assert compiles.names == []


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_the_memory_model_grows_as_xla_plans(weights, optimizer):
    """The pre-flight estimate's growth per pixel (`parallel.estimated_bytes`, fitted to the
    peak resident memory of real runs: benchmarks/memory.py) against the growth of what XLA
    plans for the one-setting chunk program (arguments, outputs and temporaries) from 64 to
    128 px: above it (a process holds more than the program's buffers: host images, the
    allocator's slack) and within 1.6x of it (measured 1.38x L-BFGS, 1.46x Adam)."""
    config = make_config(optimizer).replace(content_layers=("relu4_2",),
                                            style_layers=jaxstyle.STYLE_LAYERS)
    planned = {}
    for side in (64, 128):
        content, style = smooth_image(1, side, side), smooth_image(2, side, side)
        spec, targets = prepare_targets(weights, content, [style], config)
        init, chunk = parallel.programs(parallel.settings_mesh(k=1), spec,
                                        config.optimizer_spec(), 1, "content")
        lw = as_settings(config.loss_weights)
        _, state, _ = jax.eval_shape(init, weights.params, content,
                                     targets._replace(content={}), lw, None, None)
        stats = chunk.lower(weights.params, targets, lw, state, np.int32(1)).compile() \
            .memory_analysis()
        planned[side] = (stats.argument_size_in_bytes + stats.output_size_in_bytes
                         - stats.alias_size_in_bytes + stats.temp_size_in_bytes)
    layers = (*config.content_layers, *config.style_layers)
    model = (parallel.estimated_bytes(128, 128, layers, config.optimizer_spec())
             - parallel.estimated_bytes(64, 64, layers, config.optimizer_spec()))
    xla = planned[128] - planned[64]
    assert xla < model < 1.6 * xla, (model, xla)


# ------------------------------------------------------------------------------ stages

SCALES, STAGE_ITERATIONS = (32, 64), (3, 4)
# Hand-computed from the rules (longer side = scale, shorter rounded half up; style longer
# side = ceil(style_scale * scale)): content 48x64 -> 24x32, 48x64; style 56x40 at 0.75 ->
# long 24: 40 * 24 / 56 = 17.14 -> 24x17; long 48: 34.29 -> 48x34.
SHAPES = ((24, 32), (48, 64))
STYLE_SHAPES = (((24, 17),), ((48, 34),))


@pytest.fixture(scope="module")
def stage_images():
    return smooth_image(30, 48, 64), smooth_image(31, 56, 40)


def stage_config(**changes):
    fields = dict(optimizer="adam", learning_rate=0.05, scales=SCALES,
                  scale_iterations=STAGE_ITERATIONS, style_scale=0.75, tv_weight=1e-3,
                  **SHALLOW)
    return jaxstyle.StyleConfig(**{**fields, **changes})


@pytest.fixture(scope="module")
def stages_run(weights, stage_images):
    calls = []

    def callback(progress):
        calls.append((progress.stage, progress.step, progress.shape, progress.total_steps,
                      progress.image().shape))

    result = jaxstyle.stylize(*stage_images, weights=weights, config=stage_config(),
                              callback=callback, callback_every=2)
    return result, calls


def test_stage_sizes_steps_and_history(stages_run):
    result, _ = stages_run
    assert [s.shape for s in result.stages] == list(SHAPES)
    assert [s.style_shapes for s in result.stages] == list(STYLE_SHAPES)
    assert result.image.shape == (*SHAPES[-1], 3)
    assert result.stage_steps == STAGE_ITERATIONS and result.steps == sum(STAGE_ITERATIONS)
    assert result.stopped is None and result.message is None
    assert all(len(v) == sum(STAGE_ITERATIONS) for v in result.history.values())
    assert result.best_step > STAGE_ITERATIONS[0]  # counted from the run's start
    assert result.best_loss == pytest.approx(result.history["total"][result.best_step - 1])


def test_each_stage_starts_from_the_upsampled_previous_result(weights, stage_images,
                                                              stages_run):
    """Stage 1 starts at stage 0's image upsampled, under targets from the ORIGINAL content
    and style resized for stage 1; stage 0 is the same as a one-stage run."""
    content, style = stage_images
    both = stages_run[0]
    first = jaxstyle.stylize(content, style, weights=weights,
                             config=stage_config(scales=(32,), scale_iterations=(3,)))
    np.testing.assert_array_equal(both.history["total"][:3], first.history["total"])
    f = jaxstyle.objective(weights, resize_to(content, SHAPES[1]),
                           [resize_to(style, STYLE_SHAPES[1][0])],
                           stage_config(scales=None, scale_iterations=None))
    loss = jax.jit(lambda f, x: f(x)[0])
    upsampled = float(loss(f, resize_to(first.image, SHAPES[1])))
    assert both.stage_start_losses[1][0] == pytest.approx(upsampled, rel=1e-5)
    # Not what a fresh start at the content image would give.
    assert float(loss(f, resize_to(content, SHAPES[1]))) != pytest.approx(upsampled, rel=0.1)
    assert both.stage_start_losses[0][0] == both.initial_losses["total"][0]


def test_progress_spans_the_stages(stages_run):
    _, calls = stages_run
    # callback_every=2 counts the whole run's steps: stage 0 (3 steps) reports steps 2 and 3
    # (its end); stage 1 (4 steps) steps 4 and 6, then 7 (its end).
    assert [(c[0], c[1]) for c in calls] == [(0, 2), (0, 3), (1, 4), (1, 6), (1, 7)]
    for stage, _, shape, total_steps, image_shape in calls:
        assert total_steps == sum(STAGE_ITERATIONS)
        assert shape == SHAPES[stage] and image_shape == (*SHAPES[stage], 3)


def test_second_identical_run_does_not_recompile(weights, stage_images, stages_run):
    with count_compiles() as compiles:
        again = jaxstyle.stylize(*stage_images, weights=weights, config=stage_config())
    assert compiles.names == [] and again.timings["compile_s"] == 0.0
    np.testing.assert_array_equal(again.history["total"], stages_run[0].history["total"])


def test_callback_false_stops_all_stages(weights, stage_images):
    result = jaxstyle.stylize(*stage_images, weights=weights, config=stage_config(),
                              callback=lambda p: p.stage != 0, callback_every=2)
    assert result.stopped == "interrupted"
    assert result.stage_steps == (2,) and result.image.shape == (*SHAPES[0], 3)
    assert result.message.startswith("stage 1 of 2 (24x32): stopped by the callback")


def test_a_stage_too_small_for_the_layers_is_refused(weights, stage_images):
    with pytest.raises(ValueError, match=r"at 32 px the style image would be 12x9, smaller "
                                         r"than 16 px"):
        jaxstyle.stylize(*stage_images, weights=weights,
                         config=stage_config(style_scale=0.375, **DEFAULT_LAYERS))


def test_luminance_colours_on_every_image(weights, stage_images):
    """preserve_colors="luminance": the result and the progress images carry the content's
    chroma (YIQ I and Q) where nothing was clipped."""
    content, style = stage_images
    seen = []
    result = jaxstyle.stylize(content, style, weights=weights, preserve_colors="luminance",
                              config=stage_config(scale_iterations=(1, 1)),
                              callback=lambda p: seen.append(p.image()), callback_every=1)
    for image in (*seen[-1:], result.image):
        chroma = color.rgb_to_yiq(image)[..., 1:]
        want = color.rgb_to_yiq(resize_to(content, image.shape[:2]))[..., 1:]
        inside = np.all((image > 0.01) & (image < 0.99), axis=-1)
        assert inside.mean() > 0.5
        np.testing.assert_allclose(chroma[inside], want[inside], atol=1e-5)


@pytest.mark.parametrize("fields, message", [
    (dict(scales=(512, 256)), "strictly increasing"),
    (dict(scales=(256, 256)), "strictly increasing"),
    (dict(scales=()), "must not be empty"),
    (dict(scales=(256.0, 512)), "scales must be an integer >= 1"),
    (dict(scales=(0, 512)), "scales must be an integer >= 1"),
    (dict(scale_iterations=(10,)), "needs explicit scales"),  # the default is "auto"
    (dict(scales=(256, 512), scale_iterations=(10,)), "2 positive integers"),
    (dict(scales=(256, 512), scale_iterations=(10, 0)), "scale_iterations must be an integer"),
    (dict(scales=(256, 512), image_size=256), "the last scale is the output size"),
    (dict(image_size=0), "image_size"),
    (dict(init="zeros"), "init"),
])
def test_config_validates_sizes(fields, message):
    with pytest.raises(ValueError, match=message):
        jaxstyle.StyleConfig(**fields)


def test_scale_shape_rounds_the_short_side_and_upscales():
    # 300 * side / 451, rounded (7 -> 4.66, 100 -> 66.5, 256 -> 170.3, 450 -> 299.3).
    for side, short in ((7, 5), (100, 67), (256, 170), (450, 299)):
        assert scale_shape((300, 451), side) == (short, side)
    assert scale_shape((300, 451), 2048) == (1362, 2048)  # 300 * 2048 / 451 = 1362.3
    assert scale_shape((451, 300), 902) == (902, 600)
