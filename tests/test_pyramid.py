"""stylize_pyramid: stage sizes, style sizes per stage, the upsampled init, iterations per
stage, progress across stages, early stop, no recompiles; StyleConfig.scales validation.

Every run has the same stage shapes (content 48x64 at scales 32 and 64, style 56x40 at
style_scale 0.75), so the Adam programs compile once for the module.
"""


import jax
import numpy as np
import pytest
from conftest import smooth_image

import jaxstyle
from jaxstyle.image import resize_to, scale_shape
from jaxstyle.pyramid import min_side
from jaxstyle.runtime import count_compiles

SCALES = (32, 64)
STAGE_ITERATIONS = (3, 4)
# Hand-computed from the rules (longer side = scale, shorter rounded half up; style longer
# side = ceil(style_scale * scale)): content 48x64 -> 24x32, 48x64; style 56x40 at 0.75 ->
# long 24: 40 * 24 / 56 = 17.14 -> 24x17; long 48: 34.29 -> 48x34.
SHAPES = ((24, 32), (48, 64))
STYLE_SHAPES = (((24, 17),), ((48, 34),))


@pytest.fixture(scope="module")
def images():
    return smooth_image(30, 48, 64), smooth_image(31, 56, 40)


def make_config(**changes):
    fields = dict(optimizer="adam", learning_rate=0.05, scales=SCALES,
                  scale_iterations=STAGE_ITERATIONS, style_scale=0.75, tv_weight=1e-3)
    return jaxstyle.StyleConfig(**{**fields, **changes})


@pytest.fixture(scope="module")
def pyramid_run(weights, images):
    calls = []

    def callback(progress):
        calls.append((progress.stage, progress.num_stages, progress.shape, progress.step,
                      progress.total_steps, progress.stage_step, progress.stage_total_steps,
                      progress.image().shape))

    result = jaxstyle.stylize_pyramid(*images, weights=weights, config=make_config(),
                                      callback=callback, callback_every=2)
    return result, calls


def test_stage_and_style_sizes(pyramid_run):
    result, _ = pyramid_run
    assert result.shapes == SHAPES
    assert result.style_shapes == STYLE_SHAPES
    assert [r.image.shape[:2] for r in result.stages] == list(SHAPES)
    assert result.image.shape == (*SHAPES[-1], 3)
    assert result.image.dtype == np.float32
    assert 0.0 <= result.image.min() and result.image.max() <= 1.0


def test_iterations_per_stage_and_combined_history(pyramid_run):
    result, _ = pyramid_run
    assert [r.steps for r in result.stages] == list(STAGE_ITERATIONS)
    assert result.steps == sum(STAGE_ITERATIONS)
    assert result.stopped is None and result.message is None
    for name, values in result.history.items():
        expected = np.concatenate([r.history[name] for r in result.stages])
        np.testing.assert_array_equal(values, expected)
        assert len(values) == sum(STAGE_ITERATIONS)
    last = result.stages[-1]
    assert result.best_loss == last.best_loss
    assert result.best_step == STAGE_ITERATIONS[0] + last.best_step
    assert result.initial_losses == result.stages[0].initial_losses
    np.testing.assert_array_equal(result.image, last.image)


def test_each_stage_starts_from_the_upsampled_previous_result(weights, images, pyramid_run):
    """Stage 1's init is stage 0's image resized, and its first loss is the loss of that
    image under targets from the ORIGINAL content and style resized for stage 1."""
    result, _ = pyramid_run
    content, style = images
    first, second = result.stages
    upsampled = resize_to(first.image, SHAPES[1])
    np.testing.assert_array_equal(second.config.init, upsampled)
    assert isinstance(first.config.init, str) and first.config.init == "content"

    stage_config = make_config(scales=None, scale_iterations=None)
    f = jaxstyle.objective(weights, resize_to(content, SHAPES[1]),
                           [resize_to(style, STYLE_SHAPES[1][0])], stage_config)
    loss = jax.jit(lambda f, x: f(x))
    total, _ = loss(f, upsampled)
    np.testing.assert_allclose(second.initial_losses["total"], float(total), rtol=1e-5)
    # Not the content init a fresh run would use: the loss really is the upsampled result's.
    total_content, _ = loss(f, resize_to(content, SHAPES[1]))
    assert abs(float(total_content) - float(total)) > 1e-3 * abs(float(total))

    # Stage 0 starts from the content resized to its scale, with the style at its scale.
    f0 = jaxstyle.objective(weights, resize_to(content, SHAPES[0]),
                            [resize_to(style, STYLE_SHAPES[0][0])], stage_config)
    total0, _ = loss(f0, resize_to(content, SHAPES[0]))
    np.testing.assert_allclose(first.initial_losses["total"], float(total0), rtol=1e-5)


def test_progress_spans_the_pyramid(pyramid_run):
    _, calls = pyramid_run
    total = sum(STAGE_ITERATIONS)
    # callback_every=2 counts the pyramid's steps: stage 0 (3 steps) reports steps 2 and 3
    # (its end); stage 1 (4 steps) steps 4 and 6, then 7 (its end): its own steps 1, 3, 4.
    assert [(c[0], c[3], c[5]) for c in calls] == [(0, 2, 2), (0, 3, 3), (1, 4, 1),
                                                   (1, 6, 3), (1, 7, 4)]
    for stage, num, shape, _, total_steps, _, stage_total, image_shape in calls:
        assert num == 2 and total_steps == total
        assert shape == SHAPES[stage] and image_shape == (*SHAPES[stage], 3)
        assert stage_total == STAGE_ITERATIONS[stage]


def test_second_identical_pyramid_does_not_recompile(weights, images, pyramid_run):
    with count_compiles() as compiles:
        again = jaxstyle.stylize_pyramid(*images, weights=weights, config=make_config())
    assert compiles == []
    assert [r.timings["compile_s"] for r in again.stages] == [0.0, 0.0]
    # Same inputs, same programs: the same numbers.
    np.testing.assert_array_equal(again.history["total"], pyramid_run[0].history["total"])


def test_callback_false_stops_the_pyramid(weights, images):
    def stop_in_first_stage(progress):
        return progress.stage != 0

    result = jaxstyle.stylize_pyramid(*images, weights=weights, config=make_config(),
                                      callback=stop_in_first_stage, callback_every=2)
    assert result.stopped == "interrupted"
    assert len(result.stages) == 1 and result.steps == 2
    assert result.image.shape == (*SHAPES[0], 3)
    assert result.message.startswith("stage 1 of 2 (24x32): stopped by the callback")


def test_array_init_is_resized_to_the_first_stage(weights, images):
    content, _ = images
    init = smooth_image(32, 48, 64)
    result = jaxstyle.stylize_pyramid(*images, weights=weights,
                                      config=make_config(init=init, scale_iterations=(1, 1)))
    np.testing.assert_array_equal(result.stages[0].config.init, resize_to(init, SHAPES[0]))
    assert result.steps == 2 and content.shape == init.shape


def test_iterations_default_to_config_iterations(weights, images):
    config = make_config(scale_iterations=None, iterations=2)
    assert jaxstyle.pyramid.stage_iterations(config) == (2, 2)
    result = jaxstyle.stylize_pyramid(*images, weights=weights, config=config)
    assert [r.steps for r in result.stages] == [2, 2]


def test_scale_shape_rounds_the_short_side_and_upscales():
    # resize_max_side uses scale_shape itself, so the sizes are checked by hand:
    # 300 * side / 451, rounded (7 -> 4.66, 100 -> 66.5, 256 -> 170.3, 450 -> 299.3).
    for side, short in ((7, 5), (100, 67), (256, 170), (450, 299)):
        assert scale_shape((300, 451), side) == (short, side)
    assert scale_shape((300, 451), 2048) == (1362, 2048)  # 300 * 2048 / 451 = 1362.3
    assert scale_shape((451, 300), 902) == (902, 600)


def test_too_small_stage_is_a_clear_error(weights, images):
    assert min_side(jaxstyle.StyleConfig()) == 16  # relu5_1: after four poolings
    assert min_side(jaxstyle.StyleConfig(style_layers=("relu2_1",),
                                         content_layers=("pool2",))) == 4
    with pytest.raises(ValueError, match=r"stage 1 \(scale 32\): the style image would be "
                                         r"12x9, smaller than 16 px"):
        jaxstyle.stylize_pyramid(*images, weights=weights,
                                 config=make_config(style_scale=0.375))


@pytest.mark.parametrize("fields, message", [
    (dict(scales=(512, 256)), "strictly increasing"),
    (dict(scales=(256, 256)), "strictly increasing"),
    (dict(scales=()), "non-empty tuple"),
    (dict(scales=[256, 512]), "non-empty tuple"),
    (dict(scales=(256.0, 512)), "positive integers"),
    (dict(scales=(0, 512)), "positive integers"),
    (dict(scale_iterations=(10,)), "needs scales"),
    (dict(scales=(256, 512), scale_iterations=(10,)), "2 positive integers"),
    (dict(scales=(256, 512), scale_iterations=(10, 0)), "2 positive integers"),
])
def test_config_validates_scales(fields, message):
    with pytest.raises(ValueError, match=message):
        jaxstyle.StyleConfig(**fields)


# ------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, weights, images):
    d = tmp_path_factory.mktemp("pyramid_cli")
    content, style = images
    jaxstyle.save_image(d / "content.png", content)
    jaxstyle.save_image(d / "style.png", style)
    return {"content": str(d / "content.png"), "style": str(d / "style.png"),
            "weights": str(jaxstyle.save_weights(weights, d / "vgg19.npz")), "dir": d}


def test_cli_scales_run_the_pyramid(cli_files):
    import json

    from jaxstyle import cli
    from jaxstyle.image import load_image

    out, summary = cli_files["dir"] / "out.png", cli_files["dir"] / "out.json"
    argv = [cli_files["content"], cli_files["style"], "-o", str(out), "--scales", "32,64",
            "--scale-iterations", "3,4", "--optimizer", "adam", "--learning-rate", "0.05",
            "--style-scale", "0.75", "--weights", cli_files["weights"], "--json",
            str(summary), "--quiet"]
    assert cli.main(argv) == 0
    assert load_image(out).shape == (*SHAPES[-1], 3)
    report = json.loads(summary.read_text())
    assert report["steps"] == sum(STAGE_ITERATIONS) and report["status"] == "completed"
    assert report["settings"]["config"]["scales"] == list(SCALES)
    assert report["settings"]["image_size"] == SCALES[-1]


@pytest.mark.parametrize("extra, message", [
    (["--scales", "32,64", "--image-size", "64"], "--image-size and --scales"),
    (["--scale-iterations", "3,4"], "--scale-iterations: give the stages with --scales"),
    (["--scales", "64,32"], "strictly increasing"),
    (["--scales", "32,x"], "--scales: expected an integer"),
    (["--scales", "32,64", "--scale-iterations", "3"], "one per scale"),
    (["--scales", "32,64", "--style-weight", "1,10"], "--scales is for single runs"),
])
def test_cli_scales_usage_errors(cli_files, capsys, extra, message):
    from jaxstyle import cli

    argv = [cli_files["content"], cli_files["style"], "-o",
            str(cli_files["dir"] / "bad.png"), *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
