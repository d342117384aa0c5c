"""The command line: `main([...])` in a temp dir with synthetic weights on tiny images, and
`python cli.py` in subprocesses for what only a real process shows (repeat runs with a warm
compilation cache, Ctrl-C).

Runs share one image size and shallow layers, so their compiled programs are shared between
tests (the first run pays the compile).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from conftest import SHALLOW, one_line_error
from PIL import Image
from references.weight_files import write_keras_h5

import jaxstyle
from jaxstyle import cli, color
from jaxstyle.cli import gatys
from jaxstyle.cli.console import Bar
from jaxstyle.cli.options import DEFAULT_IMAGE_SIZE
from jaxstyle.config import StyleConfig
from jaxstyle.image import resize_to, style_size_for

REPO = Path(__file__).resolve().parents[1]
SIZE = 32  # --image-size of every run: one compiled shape for the whole file
ITERS = "3"
# Shallow layers: the network stops at relu2_1, which halves the compile time.
RUN_CONFIG = StyleConfig(optimizer="adam", iterations=int(ITERS), image_size=SIZE, **SHALLOW)




def write_png(path: Path, h: int, w: int, seed: int, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(seed)
    arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).convert(mode).save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Content 48x64, style 40x56 PNGs in a module temp dir."""
    d = tmp_path_factory.mktemp("cli_inputs")
    return {
        "content": write_png(d / "content.png", 48, 64, 0),
        "style": write_png(d / "style.png", 40, 56, 1),
        "style2": write_png(d / "style2.png", 56, 40, 2),
        "dir": d,
    }


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """jaxstyle.random_weights(0) written as a jaxstyle npz (the library's own writer)."""
    path = tmp_path_factory.mktemp("cli_weights") / "vgg19.npz"
    return jaxstyle.save_weights(jaxstyle.random_weights(0), path)


def config_of(*argv):
    return gatys.config_and_grid(cli.parse(["c.png", "s.png", "-o", "o.png", *argv])[1])


# --------------------------------------------------------------------------- parser


def test_help_lists_every_option(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--content-weight", "--style-weight", "--tv-weight", "--tv-form",
                   "--iterations", "--optimizer", "--learning-rate", "--init", "--seed",
                   "--image-size", "--style-scale", "--style-blend-weights", "--scales",
                   "--scale-iterations", "--ratio", "--batch-size", "--compute-dtype",
                   "--content-layers", "--style-layers", "--style-layer-weights", "--pooling",
                   "--preserve-colors", "--print-every", "--save-every", "--weights",
                   "--device", "--json", "--no-compile-cache", "--debug", "--quiet",
                   "convert SRC DEST.npz"):
        assert option in out, option


def test_defaults_come_from_style_config(capsys):
    # The CLI's one default of its own: the output's size.
    assert config_of() == (StyleConfig(image_size=DEFAULT_IMAGE_SIZE), None)
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert f"default {StyleConfig().style_weight:g}" in text
    assert ",".join(StyleConfig().style_layers) in " ".join(text.split())


def test_options_map_onto_config(files):
    config, grid = config_of(
        "--content-weight", "5", "--style-weight", "2e2", "--tv-weight", "0.5", "--tv-form",
        "keras", "--iterations", "7", "--optimizer", "adam", "--learning-rate", "0.1",
        "--init", "noise", "--seed", "3", "--style-scale", "0.5", "--style-blend-weights",
        "1,3", "--content-layers", "block4_conv2,relu5_1", "--style-layers", "relu1_1,relu2_1",
        "--style-layer-weights", "2,1", "--pooling", "avg", "--compute-dtype", "bfloat16",
        "--scales", "64,128", "--scale-iterations", "3,2")
    assert grid is None
    assert config == StyleConfig(
        content_weight=5.0, style_weight=200.0, tv_weight=0.5, tv_form="keras", iterations=7,
        optimizer="adam", learning_rate=0.1, init="noise", seed=3, style_scale=0.5,
        style_blend_weights=(1.0, 3.0), content_layers=("relu4_2", "relu5_1"),
        style_layers=("relu1_1", "relu2_1"), style_layer_weights=(2.0, 1.0), pooling="avg",
        compute_dtype="bfloat16", scales=(64, 128), scale_iterations=(3, 2))
    assert config_of("--init", str(files["content"]))[0].init == "content"  # a path: data
    # The default ladder, the ladder asked for by name, and one size only.
    assert config_of()[0].scales == "auto" == config_of("--scales", "auto")[0].scales
    one_size = config_of("--scales", "none")[0]
    assert one_size.scales is None and one_size.image_size == DEFAULT_IMAGE_SIZE


def test_weight_lists_and_ratios_make_grids():
    config, grid = config_of("--content-weight", "1,5", "--style-weight", "1e2,1e3,1e4")
    assert grid.shape == (2, 3) and config.content_weight == 1.0
    _, grid = config_of("--ratio", "1e-3,8e-4,5e-3,5e-4", "--style-weight", "1e4")
    np.testing.assert_allclose(grid.loss_weights.content_weight, [10, 8, 50, 5], rtol=1e-6)
    np.testing.assert_allclose(grid.loss_weights.style_weight, 1e4)
    _, grid = config_of("--ratio", "1e-3", "--tv-weight", "0,1")
    assert grid.shape == (2, 1)
    np.testing.assert_allclose(grid.loss_weights.style_weight, 1e3)  # alpha 1 / ratio


@pytest.mark.parametrize("extra, needle", [
    (["--iterations", "abc"], "--iterations: expected integers"),
    (["--iterations", "0"], "--iterations must be an integer >= 1, got 0"),
    (["--style-weight", "-1"], "--style-weight must be finite and >= 0"),
    (["--content-weight", "nan"], "--content-weight: expected finite numbers"),
    (["--tv-weight", "1,,2"], "--tv-weight: expected numbers"),
    (["--style-weight", "1,1"], "--style-weight values repeat"),
    (["--image-size", "-5"], "--image-size must be an integer >= 1"),
    (["--style-scale", "0"], "--style-scale must be a number > 0"),
    (["--style-layers", "relu9_9"], "--style-layers: unknown VGG19 layer 'relu9_9'"),
    (["--content-layers", "conv4_2,nope"], "unknown VGG19 layer 'nope'"),
    (["--style-layer-weights", "1,2"], "--style-layer-weights has 2 entries for 5 style layers"),
    (["--learning-rate", "0.1"], "--learning-rate is Adam's step size; lbfgs takes none"),
    (["--optimizer", "sgd"], "invalid choice: 'sgd'"),
    (["--pooling", "min"], "invalid choice: 'min'"),
    (["--preserve-colors", "yes"], "invalid choice: 'yes'"),
    (["--device", "fpga"], "invalid choice: 'fpga'"),
    (["--init", "nosie"], "--init: 'nosie' is neither one of content, noise, style"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--print-every", "-1"], "--print-every: must be >= 0"),
    (["--scales", "32,64", "--image-size", "48"], "the last scale is the output size"),
    (["--scale-iterations", "3,4"], "--scale-iterations needs explicit scales"),
    (["--scales", "auto", "--scale-iterations", "3"], "--scale-iterations needs explicit scales"),
    (["--scales", "x"], "expected integers, got 'x'; or auto, or none"),
    (["--scales", "64,32"], "strictly increasing"),
    (["--scales", "32,64", "--scale-iterations", "3"], "one per scale"),
    (["--ratio", "1e-3", "--content-weight", "1", "--style-weight", "1"], "at most one of"),
    (["--ratio", "1e-3,0"], "--ratio: alpha/beta ratios must be > 0, got [0.001, 0.0]"),
    (["--batch-size", "2"], "--batch-size is for sweeps"),
    (["--style-weight", "1,2", "--batch-size", "0"], "--batch-size: must be >= 1"),
])
def test_usage_errors_exit_2_with_one_line(files, tmp_path, capsys, extra, needle):
    argv = [str(files["content"]), str(files["style"]), "-o", str(tmp_path / "o.png"), *extra]
    assert cli.main(argv) == 2
    assert needle in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_usage_errors_for_missing_arguments_and_conflicts(files, tmp_path, capsys):
    assert cli.main([str(files["content"])]) == 2  # no style, no -o
    assert "required" in one_line_error(capsys)
    base = [str(files["content"]), str(files["style"]), "-o"]
    assert cli.main([*base, str(tmp_path / "o.gif")]) == 2
    assert "must end in one of .png, .jpg" in one_line_error(capsys)
    assert cli.main([*base, str(files["content"])]) == 2
    assert "would overwrite" in one_line_error(capsys)
    assert cli.main([*base, str(tmp_path / "o.png"), "--json", str(tmp_path / "o.png")]) == 2
    assert "would overwrite" in one_line_error(capsys)
    # A blend weight per style image: the library's rule, found before any work.
    assert cli.main([*base, str(tmp_path / "o.png"), "--style-blend-weights", "1,2"]) == 2
    assert "--style-blend-weights: 2 style blend weights given for 1 style image" in \
        one_line_error(capsys)


@pytest.mark.parametrize("which", ["content", "style", "weights"])
def test_missing_input_files_exit_1(files, tmp_path, capsys, which, weights_file):
    missing = str(tmp_path / "nothere.png")
    content = missing if which == "content" else str(files["content"])
    style = missing if which == "style" else str(files["style"])
    argv = [content, style, "-o", str(tmp_path / "o.png"), "--image-size", str(SIZE),
            "--weights", missing if which == "weights" else str(weights_file)]
    assert cli.main(argv) == 1
    line = one_line_error(capsys)
    assert "nothere.png" in line and ("no such file" in line or "No such file" in line), line


def test_unwritable_output_is_found_before_the_run(files, tmp_path, capsys):
    base = [str(files["content"]), str(files["style"])]
    assert cli.main([*base, "-o", str(tmp_path / "no" / "dir" / "o.png")]) == 1
    assert "does not exist" in one_line_error(capsys)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert cli.main([*base, "-o", str(blocker / "o.png")]) == 1
    assert "is not a directory" in one_line_error(capsys)
    assert cli.main([*base, "-o", str(tmp_path / "o.png"), "--json",
                     str(tmp_path / "no" / "s.json")]) == 1
    assert "s.json" in one_line_error(capsys)


def test_a_size_that_cannot_fit_is_refused_before_any_work(files, tmp_path, capsys):
    # The weights file does not exist: the size is refused before anyone looks for it.
    argv = [str(files["content"]), str(files["style"]), "-o", str(tmp_path / "o.png"),
            "--weights", str(tmp_path / "none.npz")]
    assert cli.main([*argv, "--image-size", "1000000"]) == 2
    line = one_line_error(capsys)
    assert "750000x1000000 image needs about" in line and "the largest that fits" in line
    assert cli.main([*argv, "--image-size", "12"]) == 2
    assert "smaller than 16 px on a side" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_debug_shows_the_traceback(files, tmp_path, capsys):
    argv = [str(files["content"]), str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png")]
    assert cli.main([*argv, "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "missing.png" in err


# --------------------------------------------------------------------------- weights, files


def test_convert_keras_h5_to_npz(tmp_path, capsys):
    params = jaxstyle.random_weights(0).params
    src = write_keras_h5(tmp_path / "vgg19_notop.h5", params)
    dest = tmp_path / "vgg19.npz"
    assert cli.main(["convert", str(src), str(dest)]) == 0
    assert str(dest) in capsys.readouterr().out
    loaded = jaxstyle.load_vgg19(dest)
    assert loaded.convention == "caffe"
    for name, layer in params.items():
        for kind, value in layer.items():
            np.testing.assert_array_equal(np.asarray(loaded.params[name][kind]),
                                          np.asarray(value))


def test_convert_errors(tmp_path, capsys):
    assert cli.main(["convert", "--help"]) == 0
    assert "SRC" in capsys.readouterr().out
    assert cli.main(["convert", str(tmp_path / "a.h5")]) == 2  # DEST missing
    assert "required: DEST.npz" in one_line_error(capsys)
    assert cli.main(["convert", str(tmp_path / "a.h5"), str(tmp_path / "b.h5")]) == 2
    assert "DEST must end in .npz" in one_line_error(capsys)
    assert cli.main(["convert", str(tmp_path / "a.h5"), str(tmp_path / "b.npz")]) == 1
    assert "a.h5" in one_line_error(capsys)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not a weights file")
    assert cli.main(["convert", str(junk), str(tmp_path / "b.npz")]) == 1
    assert "junk.h5" in one_line_error(capsys)
    assert not (tmp_path / "b.npz").exists()


def test_non_image_input_exits_1_naming_the_file(files, tmp_path, weights_file, capsys):
    fake = tmp_path / "notes.png"
    fake.write_text("this is not a PNG")
    argv = [str(files["content"]), str(fake), "-o", str(tmp_path / "o.png"),
            "--weights", str(weights_file)]
    assert cli.main(argv) == 1
    assert "notes.png: not an image file" in one_line_error(capsys)
    assert not (tmp_path / "o.png").exists()


def test_wrong_weights_file_exits_1(files, tmp_path, capsys):
    argv = [str(files["content"]), str(files["style"]), "-o", str(tmp_path / "o.png"),
            "--weights", str(files["style"])]  # a PNG is no weights file
    assert cli.main(argv) == 1
    assert "style.png" in one_line_error(capsys)


def test_weights_missing_while_offline_exits_1(files, tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.delenv("JAXSTYLE_WEIGHTS", raising=False)
    monkeypatch.setenv("JAXSTYLE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(jaxstyle.download, "_urlopen", offline)
    argv = [str(files["content"]), str(files["style"]), "-o", str(tmp_path / "o.png")]
    assert cli.main(argv) == 1
    line = one_line_error(capsys)
    assert "could not download https://" in line and "(on the command line: --weights)" in line
    assert not (tmp_path / "o.png").exists()


def test_docs_show_the_current_help(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")
    page = (REPO / "docs" / "cli.md").read_text()
    block = page.split("## All options", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    assert cli.main(["--help"]) == 0
    assert block == capsys.readouterr().out, (
        "docs/cli.md's option list is stale: regenerate it with COLUMNS=100 python cli.py "
        "--help")


@pytest.mark.parametrize("device", ["gpu", "tpu"])
def test_unavailable_device_exits_1(files, tmp_path, weights_file, capsys, device):
    import jax

    if any(d.platform == device for d in jax.devices()):
        pytest.skip(f"this machine has a {device}")
    argv = [str(files["content"]), str(files["style"]), "-o", str(tmp_path / "o.png"),
            "--weights", str(weights_file), "--device", device]
    assert cli.main(argv) == 1
    assert f"no {device} device available" in one_line_error(capsys)
    assert jax.devices()  # the process still works


# --------------------------------------------------------------------------- runs
# Every run: content 48x64 -> 24x32 (--image-size 32), style -> 32 px long side, Adam, the
# shallow layers: the compiled programs are shared by all the runs below.


def run_argv(files, weights_file, out, *extra):
    return [str(files["content"]), str(files["style"]), "-o", str(out),
            "--weights", str(weights_file), "--image-size", str(SIZE), "--optimizer", "adam",
            "--iterations", ITERS, "--content-layers", ",".join(SHALLOW["content_layers"]),
            "--style-layers", ",".join(SHALLOW["style_layers"]), *extra]


def size_of(path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def png_settings(path: Path) -> dict:
    with Image.open(path) as im:
        return json.loads(im.text["jaxstyle"])


def test_run_writes_image_metadata_json_and_intermediates(files, weights_file, tmp_path,
                                                          capsys):
    out, summary = tmp_path / "out.png", tmp_path / "run.json"
    argv = run_argv(files, weights_file, out, "--save-every", "2", "--print-every", "1",
                    "--json", str(summary), "--style-weight", "500")
    argv[argv.index("--iterations") + 1] = "4"
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    # stderr is no terminal here: plain progress lines, one per --print-every step.
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("step ")]
    assert [ln.split()[1] for ln in lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert "total" in lines[0] and "style" in lines[0]
    # Adam: one evaluation at the start and one per step.
    assert [ln.split()[3] for ln in lines] == ["2", "3", "4", "5"] and "evals" in lines[0]
    assert f"wrote {out}" in captured.out and "4 steps, 5 evaluations" in captured.out

    with Image.open(out) as im:
        assert im.size == (32, 24)  # (w, h): longest side = --image-size, aspect kept
    settings = png_settings(out)
    assert settings["styles"] == [str(files["style"])]
    assert settings["config"]["image_size"] == SIZE
    assert settings["config"]["style_weight"] == 500.0
    assert settings["config"]["iterations"] == 4
    assert settings["config"]["optimizer"] == "adam"
    assert settings["weights"] == str(weights_file)
    # Intermediate images at every --save-every step before the last; same settings chunk.
    assert (tmp_path / "out_2.png").exists() and not (tmp_path / "out_4.png").exists()
    assert {k: v for k, v in png_settings(tmp_path / "out_2.png").items() if k != "output"} \
        == {k: v for k, v in settings.items() if k != "output"}

    doc = json.loads(summary.read_text())
    assert doc["status"] == "completed" and doc["steps"] == 4 and doc["evaluations"] == 5
    assert doc["config"] == settings["config"] and doc["inputs"]["styles"] == settings["styles"]
    assert doc["outputs"] == {"image": str(out)}
    assert set(doc["timings"]) == {"weight_load_s", "image_load_s", "setup_s", "compile_s",
                                   "steps_s", "total_s"}
    assert doc["timings"]["total_s"] > doc["timings"]["steps_s"] > 0
    (setting,) = doc["settings"]
    losses = setting["final_losses"]
    np.testing.assert_allclose(losses["total"], losses["content"] + 500 * losses["style"],
                               rtol=1e-5)
    assert setting["best_loss"] <= setting["initial_losses"]["total"]
    assert setting["evaluations"] == 5
    assert doc["device"]["platform"] == "cpu"
    assert list(out.parent.glob(".*tmp")) == []  # atomic writes leave no temporary files


def test_output_equals_the_library_result(files, weights_file, tmp_path, capsys):
    """The CLI is thin: its image is stylize() on the loaded files, rounded to uint8."""
    out = tmp_path / "out.png"
    assert cli.main(run_argv(files, weights_file, out, "--quiet", "--init", "noise",
                             "--seed", "4", "--style-scale", "0.5")) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # --quiet
    content = jaxstyle.load_image(files["content"])
    style = jaxstyle.load_image(files["style"])
    config = RUN_CONFIG.replace(init="noise", seed=4, style_scale=0.5)
    expected = jaxstyle.stylize(content, style, weights=jaxstyle.load_vgg19(weights_file),
                                config=config).image
    got = np.asarray(Image.open(out), np.float64) / 255
    assert np.abs(got - expected).max() <= 0.5 / 255 + 1e-6


def yiq(rgb):
    """NTSC YIQ, written out here independently of jaxstyle.color."""
    m = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    return np.asarray(rgb, np.float64) @ m.T


def test_preserve_colors_luminance_keeps_the_content_chroma(files, weights_file, tmp_path):
    out = tmp_path / "lum.png"
    assert cli.main(run_argv(files, weights_file, out, "--quiet", "--init", "noise",
                             "--preserve-colors", "luminance")) == 0
    got = np.asarray(Image.open(out), np.float64) / 255
    content = jaxstyle.load_image(files["content"], max_side=SIZE)
    # Where nothing was clipped, the output's chroma (I, Q) is the content's.
    inside = np.all((got > 1.5 / 255) & (got < 1 - 1.5 / 255), axis=-1)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(yiq(got)[inside][:, 1:], yiq(content)[inside][:, 1:],
                               atol=2.5 / 255)
    # ... while its luminance is the stylized one, not the content's.
    assert np.abs(yiq(got)[..., 0] - yiq(content)[..., 0]).mean() > 0.02
    assert png_settings(out)["preserve_colors"] == "luminance"


def test_preserve_colors_histogram_runs_on_recoloured_styles(files, weights_file, tmp_path):
    out = tmp_path / "hist.png"
    assert cli.main(run_argv(files, weights_file, out, "--quiet",
                             "--preserve-colors", "histogram")) == 0
    content = jaxstyle.load_image(files["content"], max_side=SIZE)
    style = jaxstyle.load_image(files["style"])
    # The recoloured style has the content's RGB mean and covariance (computed here).
    matched = color.match_color_histogram(style, content, clip=False)
    flat_m, flat_c = matched.reshape(-1, 3), content.reshape(-1, 3)
    np.testing.assert_allclose(flat_m.mean(0), flat_c.mean(0), atol=1e-4)
    np.testing.assert_allclose(np.cov(flat_m.T), np.cov(flat_c.T), atol=1e-4)
    recoloured = color.match_color_histogram(style, content)
    recoloured = resize_to(recoloured, style_size_for(content.shape, style.shape, 1.0))
    expected = jaxstyle.stylize(content, recoloured, weights=jaxstyle.load_vgg19(weights_file),
                                config=RUN_CONFIG).image
    got = np.asarray(Image.open(out), np.float64) / 255
    assert np.abs(got - expected).max() <= 0.5 / 255 + 1e-6
    assert png_settings(out)["preserve_colors"] == "histogram"


def test_several_styles_init_path_jpeg(files, weights_file, tmp_path):
    out, summary = tmp_path / "multi.jpg", tmp_path / "multi.json"
    argv = run_argv(files, weights_file, out, "--quiet", "--json", str(summary),
                    "--style-blend-weights", "3,1", "--init", str(files["style2"]),
                    "--device", "cpu")
    argv.insert(2, str(files["style2"]))  # CONTENT STYLE STYLE2 ...
    assert cli.main(argv) == 0
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == (32, 24)
        assert json.loads(json.loads(im.info["comment"])["jaxstyle"])["styles"] == [
            str(files["style"]), str(files["style2"])]
    doc = json.loads(summary.read_text())
    assert doc["config"]["style_blend_weights"] == [3.0, 1.0]
    assert doc["inputs"]["init"] == str(files["style2"])


def test_nonfinite_at_the_initial_image_writes_no_image(files, weights_file, tmp_path, capsys):
    out, summary = tmp_path / "nf.png", tmp_path / "nf.json"
    # tv ~ 1e2 at the content image: gamma = 1e37 overflows float32.
    assert cli.main(run_argv(files, weights_file, out, "--quiet", "--tv-weight", "1e37",
                             "--json", str(summary))) == 1
    line = one_line_error(capsys)
    assert "non-finite at the initial image" in line and "No image written" in line
    assert list(tmp_path.iterdir()) == [summary]
    doc = json.loads(summary.read_text())  # the summary says what happened, NaN as null
    assert doc["status"] == "nonfinite" and doc["outputs"] == {} and doc["steps"] == 0


def test_interrupt_flag_stops_the_run_and_saves(files, weights_file, tmp_path, capfd,
                                                monkeypatch):
    """In-process: a SIGINT during the run sets the flag; the callback then stops it."""
    out = tmp_path / "int.png"
    real = jaxstyle.stylize

    def interrupt_during_run(*args, callback, **kwargs):
        def cb(progress):
            if progress.step == 1:
                signal.raise_signal(signal.SIGINT)  # the CLI's handler only sets its flag
            return callback(progress)
        return real(*args, callback=cb, **kwargs)

    monkeypatch.setattr(jaxstyle, "stylize", interrupt_during_run)
    previous = signal.getsignal(signal.SIGINT)
    argv = run_argv(files, weights_file, out, "--print-every", "1", "--json",
                    str(tmp_path / "int.json"))
    argv[argv.index("--iterations") + 1] = "50"
    assert cli.main(argv) == 130
    assert signal.getsignal(signal.SIGINT) is previous  # handler restored
    err = capfd.readouterr().err  # capfd: the handler writes to fd 2 directly
    assert "Ctrl-C: stopping" in err
    assert "interrupted at step 1; wrote the best image so far" in err
    assert "Traceback" not in err
    doc = json.loads((tmp_path / "int.json").read_text())
    assert doc["status"] == "interrupted" and doc["steps"] == 1
    with Image.open(out) as im:
        assert im.size == (32, 24)


def test_cli_sweep_writes_images_sheet_and_manifest(files, weights_file, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert cli.main(run_argv(files, weights_file, out, "--style-weight", "1e3,1e5,1e7",
                             "--tv-weight", "0,10", "--print-every", "0",
                             "--save-every", "2")) == 0
    assert ("wrote " + str(out) + " (32x24, 6 settings, 3 steps, 24 evaluations"
            in capsys.readouterr().out)
    manifest = json.loads((tmp_path / "grid.json").read_text())
    assert manifest["status"] == "completed" and manifest["steps"] == 3
    assert manifest["evaluations"] == 6 * (1 + 3)  # Adam: the start and each step
    assert [s["evaluations"] for s in manifest["settings"]] == [4] * 6
    assert manifest["grid"]["cols"] == ["beta=1e3", "beta=1e5", "beta=1e7"]
    assert manifest["grid"]["rows"] == ["gamma=0", "gamma=10"]
    names = sorted(p.name for p in tmp_path.iterdir())
    expected = sorted(["grid.png", "grid.json", "grid_2.png"] + [
        f"grid_c1_s{s}_tv{t}.png" for s in ("1e3", "1e5", "1e7") for t in ("0", "10")])
    assert names == expected
    for entry, path in zip(manifest["settings"], manifest["outputs"]["images"], strict=True):
        config = png_settings(Path(path))["config"]  # each image carries its own weights
        assert (config["style_weight"], config["tv_weight"]) == (
            pytest.approx(entry["style_weight"]), pytest.approx(entry["tv_weight"]))
        assert size_of(path) == (32, 24)
    for sheet in ("grid.png", "grid_2.png"):  # the final and the intermediate sheet
        assert size_of(tmp_path / sheet)[0] > 3 * 32


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def _progress(step, total=4, k=1, temporal=0.0):
    losses = {"total": np.full(k, 12.5), "content": np.full(k, 2.0),
              "style": np.full(k, 0.01), "tv": np.full(k, 3.0),
              "temporal": np.full(k, temporal)}
    return jaxstyle.Progress(step, total, 0, 1, (8, 8), losses, losses["total"],
                             lambda: np.zeros((k, 8, 8, 3), np.float32),
                             np.full(k, 2 * step + 1))


def test_progress_bar_on_a_terminal_and_lines_otherwise(monkeypatch):
    tty = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", tty)
    with Bar(False, unit="step", desc="compiling", total=4, print_every=1) as bar:
        bar.steps(_progress(2))
        bar.steps(_progress(4))
    text = tty.getvalue()
    assert "4/4" in text and "total 12.5" in text and "\r" in text  # a redrawn tqdm bar
    assert "evals 9" in text
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    with Bar(False, unit="step", desc="", total=6, print_every=3) as bar:
        for step in range(1, 7):
            bar.steps(_progress(step, 6, k=2))
    assert [ln.split()[1] for ln in plain.getvalue().splitlines()] == ["3/6", "6/6"]
    assert "evals 26  2 settings, total 12.5 .. 12.5" in plain.getvalue()  # 2 x 13 at step 6
    assert "temporal" not in text + plain.getvalue()  # 0 throughout: not a video frame
    video = io.StringIO()
    monkeypatch.setattr(sys, "stderr", video)
    with Bar(False, unit="step", desc="", total=4, print_every=1) as bar:
        bar.steps(_progress(1, temporal=0.25))
    assert "tv 3  temporal 0.25" in video.getvalue()
    quiet = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    with Bar(True, unit="step", desc="", total=4, print_every=1) as bar:
        bar.steps(_progress(4))
    assert quiet.getvalue() == ""


# --------------------------------------------------------------------------- real processes


def _cli(argv, home, **popen):
    env = dict(os.environ, JAXSTYLE_HOME=str(home), JAX_PLATFORMS="cpu")
    env.pop("JAXSTYLE_NO_COMPILE_CACHE", None)  # the real, cached runs
    return subprocess.Popen([sys.executable, str(REPO / "cli.py"), *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.fixture(scope="module")
def shapes(files):
    d = files["dir"]
    return {"landscape": files["content"],
            "portrait gray": write_png(d / "gray.png", 48, 40, 4, mode="L")}


@pytest.mark.parametrize("content, optimizer, size", [
    ("landscape", "lbfgs", SIZE),
    ("portrait gray", "adam", 64)])  # 48x40 gray scaled UP to 64 px (64x53)
def test_repeat_runs_never_fail_with_a_warm_cache(files, weights_file, shapes, tmp_path,
                                                  content, optimizer, size):
    """The same command three times: after the first (cold: compiles, fills JAX's cache),
    the old program store's directory removed (what a source change did: a store miss while
    JAX's cache hits), then every cache file damaged: each run exits 0 with the same losses.
    A cache may make a run faster, never make it fail."""
    out, summary = tmp_path / "o.png", tmp_path / "o.json"
    argv = [str(shapes[content]), str(files["style"]), "-o", str(out), "--weights",
            str(weights_file), "--iterations", "2", "--image-size", str(size), "--optimizer",
            optimizer, "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1",
            "--json", str(summary), "--quiet"]
    home = tmp_path / "home"
    losses = []
    for attempt in range(3):
        if attempt == 1:
            import shutil

            shutil.rmtree(home / "xla" / "jaxstyle-programs", ignore_errors=True)
        if attempt == 2:
            cached = list((home / "xla").glob("*-cache"))
            assert cached  # the first run filled JAX's cache
            for path in cached:
                path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        process = _cli(argv, home)
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        doc = json.loads(summary.read_text())
        losses.append(doc["settings"][0]["final_losses"])
    assert losses[0] == losses[1] == losses[2]
    assert size_of(out) == tuple(reversed(doc["stages"][0]["shape"]))
    assert max(doc["stages"][0]["shape"]) == size


def test_ctrl_c_on_python_cli_py_in_a_subprocess(files, weights_file, tmp_path):
    """The real thing, twice with the cache warm: `python cli.py` stepping, SIGINT, exit
    130, the best image written."""
    out, summary = tmp_path / "sub.png", tmp_path / "sub.json"
    argv = run_argv(files, weights_file, out, "--print-every", "1", "--json", str(summary))
    argv[argv.index("--iterations") + 1] = "100000"
    for _ in range(2):
        process = _cli(argv, tmp_path / "home")
        try:
            deadline = time.monotonic() + 120
            while True:  # wait until it is stepping (compiled, past the first chunk)
                line = process.stderr.readline()
                assert line, f"cli.py ended early, rc={process.wait()}"
                if line.startswith("step 2/"):
                    break
                assert time.monotonic() < deadline, "no progress within 120 s"
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 130, err
        assert "Traceback" not in err and "wrote the best image so far" in err
        doc = json.loads(summary.read_text())
        assert doc["status"] == "interrupted" and 2 <= doc["steps"] < 100000
        assert size_of(out) == (32, 24)
        assert png_settings(out)["config"]["iterations"] == 100000
