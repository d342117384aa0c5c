"""`jaxstyle train-adain|train-sanet` end to end on a folder of small images (synthetic
weights): a run lowers the loss and writes its log, samples, checkpoints and model; the model
works with `jaxstyle adain|sanet --model`; SIGTERM checkpoints and exits 130, and --resume
reproduces the uninterrupted run's losses step for step; a non-finite loss and bad inputs
are one line and exit 1 or 2; two loopback processes (gloo) train the same steps as one.

The AdaIN runs use 32 px crops, batch 2, lr 1e-3 (the step test's configuration: one
compiled step for all the in-process AdaIN runs); SANet runs 2 steps from the released
(synthetic) files, its loss checked in tests/test_arbitrary_train_losses.py.
"""

import json
import os
import signal
import socket

import numpy as np
import pytest
from conftest import finish, run_python, smooth_image
from PIL import Image

from jaxstyle import cli
from jaxstyle.arbitrary import adain_loss, data, load_adain, read_model, step, stylize_adain
from jaxstyle.arbitrary.weights import read_encoder
from jaxstyle.cli import console
from jaxstyle.image import list_images, load_image

STEPS = 30


def _images(folder, sizes, seed, ext):
    folder.mkdir()
    for i, (h, w) in enumerate(sizes):
        image = (smooth_image(seed + i, h, w) * 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{i}.{ext}")
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory, arbitrary_files):
    root = tmp_path_factory.mktemp("train")
    content = _images(root / "content", [(64, 48), (48, 64), (56, 56), (64, 40)], 80, "jpg")
    (content / "broken.png").write_bytes(b"not a png")
    style = _images(root / "style", [(48, 64), (64, 64), (40, 56)], 90, "png")
    args = ["--content-dir", str(content), "--style-dir", str(style),
            "--vgg", str(arbitrary_files["vgg_normalised.pth"]), "--batch-size", "2",
            "--load-size", "40", "--crop-size", "32", "--learning-rate", "1e-3",
            "--seed", "1", "--no-compile-cache"]
    return root, args


def _log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def full_run(setup):
    """The uninterrupted 30-step run: log every step, checkpoint every 10, samples every 15."""
    root, args = setup
    run = root / "full"
    status = cli.main(["train-adain", *args, "--out", str(run), "--steps", str(STEPS),
                       "--log-every", "1", "--checkpoint-every", "10", "--sample-every",
                       "15", "--quiet"])
    return status, run


def test_run_lowers_the_loss_and_writes_its_outputs(full_run, setup, arbitrary_files):
    status, run = full_run
    assert status == 0
    log = _log(run)
    assert [line["step"] for line in log] == list(range(1, STEPS + 1))
    assert set(log[0]) == {"step", "total", "content", "style", "lr", "images_per_s",
                           "skipped"}
    # Training lowered the loss of one fixed batch (the folders' first images, centre crops):
    # the weights the run started from (seed 1) against those it exported. The logged losses
    # are each on other crops, and how fast they fall depends on the convolutions' float
    # rounding (their last-five / first-five ratio was 0.50 on one x86 CPU, 0.77 on another).
    root, _ = setup
    content, _ = data.sample_images(list_images(root / "content"), 2, 40, 32)
    style, _ = data.sample_images(list_images(root / "style"), 2, 40, 32)
    encoder = read_encoder("adain", arbitrary_files["vgg_normalised.pth"])
    start = step.init_params("adain", seed=1)["decoder"]
    end = read_model(run / "adain.npz")[1]["decoder"]
    before, after = (float(adain_loss({"encoder": encoder, "decoder": d}, content, style)[0])
                     for d in (start, end))
    assert after < 0.75 * before, (before, after)  # measured 0.51 on an AMD EPYC
    assert log[0]["images_per_s"] is None  # step 1 compiles: not timed
    assert all(line["images_per_s"] > 0 for line in log[1:])
    assert log[-1]["lr"] == pytest.approx(1e-3 / (1 + 5e-5 * (STEPS - 1)))
    assert log[-1]["skipped"] >= 1  # broken.png, counted at each read
    assert sorted(int(p.name) for p in (run / "checkpoints").iterdir()) == [10, 20, 30]
    for name in ("samples_15.png", "samples_30.png"):
        sheet = load_image(run / name)
        assert sheet.shape[0] > 4 * 32 and sheet.shape[1] > 4 * 32  # 1 + 4 rows, 1 + 3 columns
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "adain" and config["content_files"] == 5


def test_exported_model_round_trip(full_run, setup, arbitrary_files, tmp_path):
    """RUN/adain.npz is a jaxstyle model: `jaxstyle adain --model` stylizes with it, as
    stylize_adain does with the same weights."""
    _, run = full_run
    root, _ = setup
    kind, params = read_model(run / "adain.npz")
    assert kind == "adain" and set(params) == {"decoder"}
    content, style = root / "content" / "0.jpg", root / "style" / "1.png"
    out = tmp_path / "out.png"
    vgg = str(arbitrary_files["vgg_normalised.pth"])
    assert cli.main(["adain", str(content), str(style), "-o", str(out), "--model",
                     str(run / "adain.npz"), "--vgg", vgg, "--image-size", "64",
                     "--quiet"]) == 0
    model = load_adain(model=run / "adain.npz", vgg=vgg)
    expected = stylize_adain(model, load_image(content), load_image(style))
    got = load_image(out)
    assert got.shape == expected.shape
    assert np.abs(got - np.asarray(expected)).max() <= 1 / 255 + 1e-6


def test_sigterm_checkpoints_and_resume_continues_exactly(full_run, setup, monkeypatch,
                                                          capfd):
    """SIGTERM at step 10 (from the progress callback): checkpoint, exit 130; --resume runs
    steps 11 .. 30 with the uninterrupted run's losses, step for step."""
    _, full = full_run
    root, args = setup
    run = root / "stopped"
    update = console.Bar.update

    def signal_at_10(self, done, *a, **k):
        update(self, done, *a, **k)
        if done == 10:
            os.kill(os.getpid(), signal.SIGTERM)

    common = [*args, "--out", str(run), "--steps", str(STEPS), "--log-every", "1",
              "--checkpoint-every", "10", "--sample-every", "0"]
    with monkeypatch.context() as m:
        m.setattr(console.Bar, "update", signal_at_10)
        assert cli.main(["train-adain", *common]) == 130
    err = capfd.readouterr().err  # the signal handler writes to fd 2 directly
    assert "SIGTERM" in err and "interrupted at step 10" in err
    assert sorted(int(p.name) for p in (run / "checkpoints").iterdir()) == [10]
    assert not (run / "adain.npz").exists()
    assert cli.main(["train-adain", *common, "--resume", "--quiet"]) == 0
    resumed, uninterrupted = _log(run), _log(full)
    assert [line["step"] for line in resumed] == [line["step"] for line in uninterrupted]
    for a, b in zip(resumed, uninterrupted, strict=True):
        for key in ("total", "content", "style", "lr", "skipped"):
            assert a[key] == b[key], (a["step"], key)
    np.testing.assert_array_equal(read_model(run / "adain.npz")[1]["decoder"]["conv9"]
                                  ["kernel"], read_model(full / "adain.npz")[1]["decoder"]
                                  ["conv9"]["kernel"])


def test_bad_inputs(setup, full_run, tmp_path, capsys):
    root, args = setup
    _, full = full_run
    (tmp_path / "empty").mkdir()
    out = ["--out", str(tmp_path / "run")]

    def fails(argv, status, text):
        assert cli.main(argv) == status
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and text in err, err

    fails(["train-adain", *args, *out, "--style-dir", str(tmp_path / "empty")], 1,
          "no image files")
    fails(["train-adain", *args, *out, "--crop-size", "36"], 2, "multiple of 8")
    fails(["train-adain", *args, *out, "--crop-size", "64"], 2,
          "--load-size 40 must be at least --crop-size 64")
    fails(["train-adain", *args, *out, "--resume"], 1, "no checkpoint")
    fails(["train-adain", *args, "--out", str(full)], 2, "--resume")
    # Resuming a run that has reached --steps (it used to re-export with "loss nan").
    fails(["train-adain", *args, "--out", str(full), "--resume", "--steps", str(STEPS)], 2,
          f"is at step {STEPS}, --steps is {STEPS}: nothing to train")
    fails(["train-sanet", *args, *out, "--init-from", str(full / "adain.npz")], 1,
          "an adain model")
    fails(["train-adain", *args, *out, "--vgg", str(tmp_path / "nope.pth")], 1, "nope.pth")
    fails(["train-adain", *args, *out, "--steps", "0"], 2, "--steps")
    fails(["train-adain", *args, *out, "--num-processes", "2"], 2, "--coordinator")


MULTIHOST = """
import sys
from jaxstyle import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_two_processes_train_the_same_steps_as_one(setup, full_run, tmp_path):
    """Two loopback processes (gloo collectives), one device and one image of each batch
    each, each reading its own shard of the files: the one-process run's losses (full_run's
    first steps), the run directory written once."""
    _, args = setup
    _, full = full_run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [run_python(MULTIHOST, "train-adain", *args, "--steps", "3", "--log-every", "1",
                        "--sample-every", "0", "--quiet", "--out", tmp_path / "two",
                        "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                        "--process-id", i)
             for i in range(2)]
    for p in procs:
        finish(p)
    two, one = _log(tmp_path / "two"), _log(full)[:3]
    assert [line["step"] for line in two] == [1, 2, 3]
    # The subprocesses inherit this process's XLA_FLAGS, so they run the same kernels as
    # full_run did (the CLI's training flags would choose other convolutions, whose rounding
    # alone moved step 2's loss by 3e-3 to 5e-3: Adam's g / sqrt(v) makes whole steps of
    # rounding wherever g is near 0). Then only the order of the batch's gradient sum
    # differs: step 1 is the same weights and batch, and steps 2 and 3 came out equal to the
    # last bit here (1e-4 leaves room for another CPU's order).
    assert two[0]["total"] == pytest.approx(one[0]["total"], rel=1e-6)
    for a, b in zip(two, one, strict=True):
        assert a["total"] == pytest.approx(b["total"], rel=1e-4)
        assert a["skipped"] == b["skipped"]
    assert sorted(int(p.name) for p in (tmp_path / "two" / "checkpoints").iterdir()) == [3]
    assert (tmp_path / "two" / "adain.npz").exists()


def test_nonfinite_loss_stops_with_exit_1(setup, full_run, tmp_path, monkeypatch, capsys):
    """A loss that becomes NaN (made so at step 3 here) stops the run at the logged step:
    exit 1, one line naming the step and the newest checkpoint; no model written."""
    from jaxstyle.arbitrary import step as step_module

    _, args = setup
    real = step_module.compiled_step

    def poisoned(mesh, config):
        fn = real(mesh, config)

        def call(state, *rest):
            state, metrics = fn(state, *rest)
            bad = state.step >= 3
            return state, {**metrics, "total": metrics["total"] / (1 - bad)}  # inf from 3 on

        return call

    monkeypatch.setattr(step_module, "compiled_step", poisoned)
    run = tmp_path / "nan"
    assert cli.main(["train-adain", *args, "--out", str(run), "--steps", "6", "--log-every",
                     "1", "--checkpoint-every", "2", "--sample-every", "0", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "non-finite at step 3" in err and "step 2" in err
    assert not (run / "adain.npz").exists()
    assert [line["step"] for line in _log(run)][-1] == 3


def test_train_sanet_and_its_model_round_trip(setup, arbitrary_files, tmp_path):
    """train-sanet from the released (synthetic) files, 2 steps: the four loss parts logged,
    and RUN/sanet.npz works with `jaxstyle sanet --model` as stylize_sanet does."""
    from jaxstyle.arbitrary import load_sanet, stylize_sanet

    root, args = setup
    run = tmp_path / "sanet"
    init = ",".join(str(arbitrary_files[name]) for name in
                    ("decoder_iter_500000.pth", "transformer_iter_500000.pth"))
    assert cli.main(["train-sanet", *args, "--out", str(run), "--steps", "2", "--log-every",
                     "1", "--sample-every", "0", "--init-from", init, "--quiet"]) == 0
    log = _log(run)
    assert set(log[-1]) >= {"content", "style", "identity1", "identity2"}
    kind, params = read_model(run / "sanet.npz")
    assert kind == "sanet" and set(params) == {"decoder", "transform"}
    content, style, out = root / "content" / "1.jpg", root / "style" / "0.png", tmp_path / "o.png"
    vgg = str(arbitrary_files["vgg_normalised.pth"])
    assert cli.main(["sanet", str(content), str(style), "-o", str(out), "--model",
                     str(run / "sanet.npz"), "--vgg", vgg, "--image-size", "64",
                     "--quiet"]) == 0
    model = load_sanet(model=run / "sanet.npz", vgg=vgg)
    expected = stylize_sanet(model, load_image(content), load_image(style))
    assert np.abs(load_image(out) - np.asarray(expected)).max() <= 1 / 255 + 1e-6
    # Two steps from the released weights moved them.
    released = load_sanet(vgg=vgg, decoder=arbitrary_files["decoder_iter_500000.pth"],
                          transformer=arbitrary_files["transformer_iter_500000.pth"])
    assert not np.array_equal(params["decoder"]["conv9"]["kernel"],
                              np.asarray(released["decoder"]["conv9"]["kernel"]))
