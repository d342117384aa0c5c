"""The command line: `main([...])` in a temp dir with synthetic weights on tiny images.

Every run uses the same image sizes and layers, so the compiled programs are shared between
tests (the first run pays the compile).
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from weight_files import write_keras_h5

import jaxstyle
import jaxstyle.weights
from jaxstyle import cli
from jaxstyle.config import StyleConfig

REPO = Path(__file__).resolve().parents[1]
SIZE = 32  # --image-size of every run: one compiled shape for the whole file
ITERS = "3"


def one_line_error(capsys) -> str:
    """stderr of the last main() call: exactly one line, no traceback; returned."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("jaxstyle: error: ")
    return lines[0]


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


# --------------------------------------------------------------------------- parser


def test_help_lists_every_option(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--content-weight", "--style-weight", "--tv-weight", "--tv-form",
                   "--iterations", "--optimizer", "--learning-rate", "--init", "--seed",
                   "--image-size", "--style-scale", "--style-blend-weights",
                   "--content-layers", "--style-layers", "--style-layer-weights", "--pooling",
                   "--preserve-colors", "--print-every", "--save-every", "--weights",
                   "--device", "--json", "--no-compile-cache", "--debug", "--quiet",
                   "convert SRC DEST.npz"):
        assert option in out, option


def test_defaults_come_from_style_config(files, tmp_path):
    args = cli.build_parser().parse_args([str(files["content"]), str(files["style"]),
                                          "-o", str(tmp_path / "o.png")])
    assert cli.config_from_args(args) == StyleConfig()
    # The help text shows the library's defaults, not copies.
    text = cli.build_parser().format_help()
    assert f"default {StyleConfig().style_weight:g}" in text
    assert ",".join(StyleConfig().style_layers) in " ".join(text.split())


def test_options_map_onto_config(files, tmp_path):
    args = cli.build_parser().parse_args([
        str(files["content"]), str(files["style"]), str(files["style2"]),
        "-o", str(tmp_path / "o.png"), "--content-weight", "5", "--style-weight", "2e2",
        "--tv-weight", "0.5", "--tv-form", "keras", "--iterations", "7", "--optimizer", "adam",
        "--learning-rate", "0.1", "--init", "noise", "--seed", "3", "--style-scale", "0.5",
        "--style-blend-weights", "1,3", "--content-layers", "block4_conv2,relu5_1",
        "--style-layers", "relu1_1,relu2_1", "--style-layer-weights", "2,1", "--pooling", "avg",
    ])
    cfg = cli.config_from_args(args)
    assert cfg == StyleConfig(
        content_weight=5.0, style_weight=200.0, tv_weight=0.5, tv_form="keras", iterations=7,
        optimizer="adam", learning_rate=0.1, init="noise", seed=3, style_scale=0.5,
        style_blend_weights=(1.0, 3.0), content_layers=("relu4_2", "relu5_1"),
        style_layers=("relu1_1", "relu2_1"), style_layer_weights=(2.0, 1.0), pooling="avg")


@pytest.mark.parametrize("extra, needle", [
    (["--iterations", "abc"], "--iterations: expected an integer"),
    (["--iterations", "0"], "--iterations: must be > 0"),
    (["--style-weight", "-1"], "--style-weight: must be >= 0"),
    (["--content-weight", "nan"], "--content-weight: expected a finite number"),
    (["--tv-weight", "1,,2"], "--tv-weight: expected a comma list"),
    (["--style-weight", "1,2"], "--style-weight: one value expected"),
    (["--image-size", "-5"], "--image-size: must be > 0"),
    (["--style-scale", "0"], "--style-scale: must be > 0"),
    (["--style-layers", "relu9_9"], "--style-layers: unknown VGG19 layer 'relu9_9'"),
    (["--content-layers", "conv4_2,nope"], "unknown VGG19 layer 'nope'"),
    (["--style-layer-weights", "1,2"], "style_layer_weights has 2 entries for 5 style layers"),
    (["--style-blend-weights", "1,2"], "2 weight(s) given for 1 style image(s)"),
    (["--learning-rate", "0.1"], "use it with --optimizer adam"),
    (["--optimizer", "sgd"], "invalid choice: 'sgd'"),
    (["--pooling", "min"], "invalid choice: 'min'"),
    (["--preserve-colors", "yes"], "invalid choice: 'yes'"),
    (["--device", "fpga"], "invalid choice: 'fpga'"),
    (["--init", "nosie"], "--init: 'nosie' is not one of content, noise, style"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--print-every", "-1"], "--print-every: must be >= 0"),
])
def test_usage_errors_exit_2_with_one_line(files, tmp_path, capsys, extra, needle):
    argv = [str(files["content"]), str(files["style"]), "-o", str(tmp_path / "o.png"), *extra]
    assert cli.main(argv) == 2
    assert needle in one_line_error(capsys)
    assert not (tmp_path / "o.png").exists()


def test_usage_errors_for_missing_arguments_and_conflicts(files, tmp_path, capsys):
    assert cli.main([str(files["content"])]) == 2  # no style, no -o
    assert "required" in one_line_error(capsys)
    assert cli.main([str(files["content"]), str(files["style"]), "-o",
                     str(tmp_path / "o.gif")]) == 2
    assert "must end in one of .png, .jpg" in one_line_error(capsys)
    assert cli.main([str(files["content"]), str(files["style"]), "-o",
                     str(files["content"])]) == 2
    assert "would overwrite the input" in one_line_error(capsys)
    assert cli.main([str(files["content"]), str(files["style"]), "-o", str(tmp_path / "o.png"),
                     "--json", str(tmp_path / "o.png")]) == 2
    assert "--json and -o/--output name the same file" in one_line_error(capsys)


@pytest.mark.parametrize("which", ["content", "style", "init", "weights"])
def test_missing_input_files_exit_1(files, tmp_path, capsys, which):
    missing = str(tmp_path / "nothere.png")
    content = missing if which == "content" else str(files["content"])
    style = missing if which == "style" else str(files["style"])
    argv = [content, style, "-o", str(tmp_path / "o.png")]
    if which == "init":
        # An init path that exists at parse time but vanishes: still a runtime error.
        argv += ["--init", str(tmp_path)]
    if which == "weights":
        argv += ["--weights", missing]
    assert cli.main(argv) == 1
    line = one_line_error(capsys)
    assert ("not found" in line) or ("is not a file" in line), line


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
    assert "--json" in one_line_error(capsys)


def test_debug_shows_the_traceback(files, tmp_path, capsys):
    argv = [str(files["content"]), str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png")]
    assert cli.main([*argv, "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "style image" in err


def test_step_path():
    assert cli.step_path(Path("a/out.png"), 20) == Path("a/out_20.png")


# --------------------------------------------------------------------------- weights, files


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """jaxstyle.random_weights(0) written as a jaxstyle npz (the library's own writer)."""
    path = tmp_path_factory.mktemp("cli_weights") / "vgg19.npz"
    return jaxstyle.save_weights(jaxstyle.random_weights(0), path)


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
    assert "not found" in one_line_error(capsys)
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
    assert "notes.png" in one_line_error(capsys)
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
    monkeypatch.setattr(jaxstyle.weights, "_urlopen", offline)
    argv = [str(files["content"]), str(files["style"]), "-o", str(tmp_path / "o.png")]
    assert cli.main(argv) == 1
    line = one_line_error(capsys)
    assert "could not download VGG19 weights" in line and "--weights FILE" in line
    assert not (tmp_path / "o.png").exists()


def test_readme_shows_the_current_help(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    readme = (REPO / "README.md").read_text()
    block = readme.split("### All options", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    assert block == cli.build_parser().format_help(), (
        "README's option list is stale: regenerate it with COLUMNS=100 python cli.py --help")


@pytest.mark.parametrize("device", ["gpu", "tpu"])
def test_unavailable_device_exits_1(files, tmp_path, weights_file, capsys, device):
    import jax

    if any(d.platform == device for d in jax.devices()):
        pytest.skip(f"this machine has a {device}")
    argv = [str(files["content"]), str(files["style"]), "-o", str(tmp_path / "o.png"),
            "--weights", str(weights_file), "--device", device]
    assert cli.main(argv) == 1
    assert f"--device {device}: no {device} device available" in one_line_error(capsys)
    assert jax.devices()  # the process still works
