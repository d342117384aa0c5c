"""`jaxstyle sanet|adain`, `jaxstyle convert sanet|adain` and `--init sanet` on synthetic
released files (tests/references/numpy_arbitrary.py writes them in the legacy layout)."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error
from PIL import Image
from references.numpy_arbitrary import write_released

import jaxstyle
from jaxstyle import arbitrary, cli
from jaxstyle.image import resize_to, scale_shape

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SIZE = 48


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return write_released(tmp_path_factory.mktemp("released"))


def sanet_argv(released, *extra):
    return ["--vgg", str(released["vgg_normalised.pth"]),
            "--decoder", str(released["decoder_iter_500000.pth"]),
            "--transformer", str(released["transformer_iter_500000.pth"]), *extra]




def test_sanet_one_image_equals_the_library(released, tmp_path):
    out, summary = tmp_path / "out.png", tmp_path / "out.json"
    argv = ["sanet", str(EXAMPLES / "chelsea.jpg"), str(EXAMPLES / "hubble_deep_field.jpg"),
            "-o", str(out), "--image-size", str(SIZE), "--json", str(summary), "--quiet",
            *sanet_argv(released)]
    assert cli.main(argv) == 0
    params = arbitrary.load_sanet(vgg=released["vgg_normalised.pth"],
                                  decoder=released["decoder_iter_500000.pth"],
                                  transformer=released["transformer_iter_500000.pth"])
    content, style = (resize_to(image, scale_shape(image.shape[:2], SIZE)) for image in (
        jaxstyle.load_image(EXAMPLES / name) for name in ("chelsea.jpg",
                                                          "hubble_deep_field.jpg")))
    expected = arbitrary.stylize_sanet(params, content, style)
    got = np.asarray(Image.open(out), np.float64) / 255
    assert got.shape == content.shape == (32, 48, 3)
    assert np.abs(got - expected).max() <= 0.5 / 255 + 1e-6
    doc = json.loads(summary.read_text())
    assert doc["status"] == "completed" and doc["outputs"] == [str(out)]
    with Image.open(out) as im:
        assert json.loads(im.text["jaxstyle"])["model"] == "sanet"


def test_adain_a_folder_with_alphas_and_two_styles(released, tmp_path):
    folder = tmp_path / "contents"
    folder.mkdir()
    for name, seed in (("a.png", 0), ("b.jpg", 1)):
        rng = np.random.default_rng(seed)
        Image.fromarray((rng.random((40, 52, 3)) * 255).astype(np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image: skipped by extension")
    out = tmp_path / "out"
    argv = ["adain", str(folder), str(EXAMPLES / "hubble_deep_field.jpg"),
            str(EXAMPLES / "stripes.png"), "-o", str(out), "--alpha", "0.5,1",
            "--style-blend-weights", "3,1", "--image-size", "40", "--quiet",
            "--vgg", str(released["vgg_normalised.pth"]), "--decoder",
            str(released["decoder.pth"])]
    assert cli.main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a.png", "a_a0.5.png", "a_a1.png", "b.png", "b_a0.5.png", "b_a1.png"]
    with Image.open(out / "a_a1.png") as im:
        assert im.size == (40, 31)
    with Image.open(out / "a.png") as sheet:  # the labelled sheet of both alphas
        assert sheet.size[0] > 2 * 40


def test_convert_then_model(released, tmp_path, capsys):
    npz = tmp_path / "sanet.npz"
    assert cli.main(["convert", "sanet", str(npz), *sanet_argv(released)]) == 0
    assert str(npz) in capsys.readouterr().out
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    base = ["sanet", str(EXAMPLES / "chelsea.jpg"), str(EXAMPLES / "stripes.png"),
            "--image-size", str(SIZE), "--quiet"]
    assert cli.main([*base, "-o", str(a), "--model", str(npz)]) == 0
    assert cli.main([*base, "-o", str(b), *sanet_argv(released)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_errors(released, tmp_path, capsys):
    content, style = str(EXAMPLES / "chelsea.jpg"), str(EXAMPLES / "hubble_deep_field.jpg")
    out = str(tmp_path / "o.png")
    # Files swapped: named for what they are.
    swapped = ["--vgg", str(released["decoder.pth"]), "--decoder",
               str(released["decoder_iter_500000.pth"]), "--transformer",
               str(released["transformer_iter_500000.pth"])]
    assert cli.main(["sanet", content, style, "-o", out, *swapped]) == 1
    assert "not the normalised VGG19 encoder" in one_line_error(capsys)
    assert cli.main(["adain", content, style, "-o", out, "--vgg",
                     str(released["vgg_normalised.pth"])]) == 1  # no decoder anywhere
    line = one_line_error(capsys)
    assert "decoder.pth" in line and "published" in line
    assert cli.main(["sanet", str(tmp_path / "none.jpg"), style, "-o", out,
                     *sanet_argv(released)]) == 1
    assert "none.jpg: no such file" in one_line_error(capsys)
    assert cli.main(["sanet", f"{content},{content}", style, "-o", out,
                     *sanet_argv(released)]) == 2
    assert "need a directory" in one_line_error(capsys)
    assert cli.main(["sanet", content, style, "-o", out, "--alpha", "2",
                     *sanet_argv(released)]) == 2
    assert "--alpha must be in [0, 1]" in one_line_error(capsys)
    assert cli.main(["convert", "adain", str(tmp_path / "m.npz"), "--transformer", "x"]) == 2
    assert "AdaIN has no Transform" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_init_sanet_starts_the_optimization_at_the_sanet_result(released, weights, tmp_path):
    npz = tmp_path / "sanet.npz"
    arbitrary.convert("sanet", npz, vgg=released["vgg_normalised.pth"],
                      decoder=released["decoder_iter_500000.pth"],
                      transformer=released["transformer_iter_500000.pth"])
    vgg = jaxstyle.save_weights(weights, tmp_path / "vgg19.npz")
    summary = tmp_path / "g.json"
    argv = [str(EXAMPLES / "chelsea.jpg"), str(EXAMPLES / "hubble_deep_field.jpg"), "-o",
            str(tmp_path / "g.png"), "--weights", str(vgg), "--init", "sanet",
            "--sanet-model", str(npz), "--image-size", str(SIZE), "--iterations", "1",
            "--optimizer", "adam", "--content-layers", "relu2_1", "--style-layers",
            "relu1_1,relu2_1", "--json", str(summary), "--quiet"]
    assert cli.main(argv) == 0
    doc = json.loads(summary.read_text())
    assert doc["inputs"]["init"] == f"sanet:{npz}" and doc["timings"]["sanet_init_s"] > 0
    # Not the content image's start: the content loss there would be exactly 0.
    assert doc["settings"][0]["initial_losses"]["content"] > 0
    assert cli.main(argv[:-4] + ["--init", "sanet"]) == 2  # no --sanet-model
