"""benchmarks/: every script's --quick run end to end on this CPU, so that none can rot, and
their analytic FLOP counts; the PyTorch baselines (tests/references/torch_gatys.py) compute
exactly jaxstyle's objective, or their timings would compare different work."""

import argparse
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, load_script, subprocess_xla_flags

import jaxstyle
from jaxstyle.losses import Targets, total_loss
from jaxstyle.objective import prepare_targets

sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import their helper procmem
gatys_bench = load_script("benchmarks/bench.py")
arbitrary_bench = load_script("benchmarks/arbitrary_bench.py")
train_bench = load_script("benchmarks/train_bench.py")
train_pieces = load_script("benchmarks/train_pieces.py")


# --------------------------------------------------------------------------- bench.py


def test_gatys_flops_by_hand_at_one_layer():
    # Only relu1_1 as a style layer: conv1_1 (3 -> 64) and one Gram, on a 10 x 6 image.
    f = gatys_bench.objective_flops(10, 6, style_layers=("relu1_1",), content_layers=())
    conv = 2 * 10 * 6 * 9 * 3 * 64
    assert f["conv_forward"] == f["conv_backward_input"] == conv
    assert f["gram_forward"] == f["gram_backward"] == 2 * 60 * 64 * 64
    assert f["total"] == 2 * conv + 2 * 2 * 60 * 64 * 64
    # Taps inside the image: rows 3*10 - 2, columns 3*6 - 2.
    assert f["total_valid_taps"] == 2 * (2 * 28 * 16 * 3 * 64) + 2 * 2 * 60 * 64 * 64


def test_gatys_flops_match_xla_cost_analysis(weights):
    """The analytic count (valid taps) equals XLA's count of the compiled objective, up to
    the elementwise work the formula leaves out (< 1%)."""
    size = (64, 48)
    config = jaxstyle.StyleConfig()
    spec = config.loss_spec(weights.convention)
    x = jnp.zeros((*size, 3), jnp.float32)
    shapes = jax.eval_shape(spec.features, weights.params, x)
    targets = Targets({n: jnp.zeros(shapes[n].shape) for n in spec.content_layers},
                      {n: jnp.zeros((shapes[n].shape[-1],) * 2) for n in spec.style_layers})
    step = jax.jit(jax.value_and_grad(total_loss, argnums=3, has_aux=True),
                   static_argnames="spec")
    xla = step.lower(weights.params, targets, config.loss_weights, x, spec=spec
                     ).cost_analysis()["flops"]
    analytic = gatys_bench.objective_flops(*size)["total_valid_taps"]
    assert analytic <= xla <= 1.01 * analytic


def test_gatys_bench_quick(tmp_path):
    """The real CLI at 32 px: cold compile, a warm second process that hits the cache."""
    out = tmp_path / "gatys_bench.json"
    assert gatys_bench.main(["--quick", "--optimizers", "adam", "--sweep-ks", "", "--no-torch",
                       "--silent", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    (row,) = report["objective"]
    cold, warm = row["cold"], row["warm"]
    assert "error" not in cold and "error" not in warm, (cold, warm)
    assert row["size"] == 32 and cold["cache_hits"] == 0 and warm["cache_hits"] >= 1
    assert cold["loss"] == warm["loss"] > 0
    assert len(cold["step_times_s"]) == 2 and row["step_s"] > 0
    assert row["flops_per_s"] == pytest.approx(row["flops"]["total"] / row["step_s"])
    assert report["matmul_peak"]["matmul_flops_per_s"] > 0
    assert cold["peak_rss_bytes"] > 50 * 2**20
    assert report["sweeps"] == []  # --sweep-ks ""
    (opt,) = report["optimizers"]
    assert opt["optimizer"] == "adam" and "error" not in opt["cold"], opt
    assert opt["cold"]["iterations"] == 2 and "error" not in opt["warm"], opt
    # The second process reads its programs from JAX's cache; the cold one compiled them.
    # (Which is ready sooner is the benchmark's figure, not a check: at 32 px with the
    # suite's compile flags the compile takes a tenth of a second and the two processes'
    # start-up, about 2 s each, decides.)
    cold_opt, warm_opt = opt["cold"], opt["warm"]
    assert cold_opt["cache_hits"] == 0 and warm_opt["cache_hits"] >= 1, (cold_opt, warm_opt)
    assert cold_opt["ready_s"] < cold_opt["first_step_s"] < cold_opt["time_to_result_s"]
    assert cold_opt["final_loss"] == warm_opt["final_loss"]


@pytest.fixture(scope="module")
def torch_baseline():
    pytest.importorskip("torch")
    from references import torch_gatys

    return torch_gatys


def test_pytorch_baseline_is_the_same_objective(torch_baseline, weights, content_image,
                                                style_image):
    tv_weight = 3.0  # every term on: content, style (other-size style image), TV
    config = jaxstyle.StyleConfig(content_weight=2.0, style_weight=1e3, tv_weight=tv_weight)
    spec, targets = prepare_targets(weights, content_image, style_image, config)
    rng = np.random.default_rng(3)
    image = np.clip(content_image + 0.1 * rng.standard_normal(content_image.shape), 0, 1
                    ).astype(np.float32)
    (total, parts), grad = jax.jit(
        jax.value_and_grad(total_loss, argnums=3, has_aux=True), static_argnames="spec"
    )(weights.params, targets, config.loss_weights, jnp.asarray(image), spec=spec)

    obj = torch_baseline.TorchObjective(weights.params)
    obj.set_targets(content_image, [style_image])
    t_total, t_grad = obj.value_and_grad(image, 2.0, 1e3, tv_weight)

    assert parts["content"] > 0 and parts["style"] > 0
    assert t_total == pytest.approx(float(total), rel=1e-4)
    grad = np.asarray(grad)
    assert t_grad.shape == grad.shape == content_image.shape
    np.testing.assert_allclose(t_grad, grad, rtol=0, atol=2e-4 * np.abs(grad).max())


def test_pytorch_weights_are_oihw(torch_baseline, weights):
    converted = torch_baseline.torch_params(weights.params)
    kernel = np.asarray(weights.params["conv2_1"]["kernel"])  # (3, 3, 64, 128) HWIO
    oihw = converted["conv2_1"][0].numpy()
    assert oihw.shape == (128, 64, 3, 3)
    assert oihw[5, 7, 0, 2] == kernel[0, 2, 7, 5]


def test_pytorch_baseline_runs_on_cpu_and_refuses_a_missing_gpu(torch_baseline, weights,
                                                                 tmp_path):
    import torch

    out = torch_baseline.run(32, 1, 1)
    assert out["device"] == "cpu" and out["step_s"] > 0 and out["device_memory"] == {}
    # gatys_bench.py hands it the images its jax rows step on: the loss is that of those images.
    rng = np.random.default_rng(7)
    content, style = (rng.random((32, 32, 3), np.float32) for _ in range(2))
    np.savez(tmp_path / "images.npz", content=content, style=style)
    out = torch_baseline.run(32, 1, 1, images_npz=str(tmp_path / "images.npz"))
    obj = torch_baseline.TorchObjective(weights.params)
    obj.set_targets(content, [style])
    assert out["loss"] == pytest.approx(obj.value_and_grad(content, 1.0, 1e3, 0.0)[0],
                                        rel=1e-6)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal cannot be checked")
    with pytest.raises(SystemExit, match="no CUDA device"):
        torch_baseline.run(32, 1, 1, device="cuda")


def test_peak_memory_prefers_the_device_figure():
    assert gatys_bench._peak_memory({"peak_rss_bytes": 5, "device_memory": {}}) == 5
    assert gatys_bench._peak_memory({"peak_rss_bytes": 5,
                               "device_memory": {"peak_bytes_in_use": 7}}) == 7


def test_linesearch_quick_counts_old_against_new(tmp_path):
    """benchmarks/linesearch.py --quick (32 px photos, shallow layers) in this process: the
    new line search's first iteration costs 2 evaluations with init's probe (old: 4 at
    least, measured 4), then 1 each, and its best loss within the budget is no worse."""
    linesearch = load_script("benchmarks/linesearch.py")
    out = tmp_path / "ls.json"
    assert linesearch.main(["--quick", "--in-process", "--no-xla-flags", "--scenarios", "photo",
                            "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    runs = {r["variant"]: r for r in report["runs"]}
    assert all("error" not in r for r in runs.values()), runs
    assert runs["new"]["initial_evaluations"] == 2 and runs["old"]["initial_evaluations"] == 1
    assert runs["new"]["first_iteration_evaluations"] == 2
    assert runs["old"]["first_iteration_evaluations"] >= 4
    assert runs["new"]["mean_after_first"] <= 1.3
    assert runs["new"]["cumulative_evaluations"][-1] <= 8 == runs["new"]["budget"]
    (row,) = report["comparison"]
    within = row["best_loss_within"]["8"]
    assert within["new"] <= within["old"] * 1.001


def test_convergence_quick_scores_every_method_at_full_size(tmp_path):
    """benchmarks/convergence.py --quick (32 px, shallow layers) in this process, three of its
    methods: every run scored by the one full-size objective (the ladder's coarse images
    upsampled), the target set by PyTorch's L-BFGS, the JSON, table and plot written."""
    pytest.importorskip("torch")
    convergence = load_script("benchmarks/convergence.py")
    out = tmp_path / "conv"
    # beta 1e3 (not the synthetic default 1e7): the content loss then dominates, so an
    # upsampled coarse image scores worse than the start (checked below).
    assert convergence.main(["--quick", "--in-process", "--out", str(out), "--methods",
                             "lbfgs,auto-adam,torch-lbfgs", "--style-weight", "1e3"]) == 0
    report = json.loads((out / "convergence.json").read_text())
    assert report["loss_weights"] == {"content": 1.0, "style": 1e3, "tv": 0.0}
    runs = {r["method"]: r for r in report["runs"]}
    assert all("error" not in r for r in runs.values()), runs
    assert report["shape"] == [21, 32] and report["start_score"] > 0
    scores = {m: {int(k): v for k, v in s.items()} for m, s in report["scores"].items()}
    assert report["target"] == scores["torch-lbfgs"][4]  # its --quick iterations
    assert runs["auto-adam"]["stages"] == [[15, 23], [21, 32]]
    for method, run in runs.items():
        steps = [r["step"] for r in run["records"]]
        evaluations = [r["evaluations"] for r in run["records"]]
        assert steps == list(range(1, run["steps"] + 1)), method
        assert evaluations == sorted(evaluations) and evaluations[-1] == run["evaluations"]
        assert set(scores[method]) == set(run["snapshot_steps"]) and all(
            np.isfinite(v) and v > 0 for v in scores[method].values())
    # A stage-0 image of the ladder is scored at full size: worse than the start.
    assert scores["auto-adam"][1] > report["start_score"]
    rows = {row["method"]: row for row in report["summary"]}
    assert rows["torch-lbfgs"]["ratio_to_torch"] == 1.0
    assert rows["lbfgs"]["to_target"] is not None  # 6 steps reach 4 of PyTorch's
    assert "| lbfgs |" in (out / "convergence.md").read_text()
    assert (out / "convergence.png").stat().st_size > 1000
    # The saved report (its steps come back as strings) plots every scored step.
    series = convergence._series(report)
    assert {m: len(points) for m, points in series.items()} == {
        m: 1 + len(scores[m]) for m in runs}
    # --add: one more method, PyTorch not rerun, its target and time budget kept.
    assert convergence.main(["--quick", "--in-process", "--out", str(out), "--methods",
                             "lbfgs,adam", "--style-weight", "1e3", "--add"]) == 0
    added = json.loads((out / "convergence.json").read_text())
    assert added["methods"] == report["methods"] + ["adam"]
    assert [r["method"] for r in added["runs"]] == [r["method"] for r in report["runs"]] + [
        "adam"]
    assert added["runs"][:3] == report["runs"] and added["scores"]["lbfgs"] == report[
        "scores"]["lbfgs"]
    assert (added["target"], added["jax_seconds"]) == (report["target"], report["jax_seconds"])
    assert added["added"][0]["methods"] == ["adam"] and added["scores"]["adam"]
    assert "| adam |" in (out / "convergence.md").read_text()
    # Nothing left to add: the report is not rewritten (no empty entry in its history).
    assert convergence.main(["--quick", "--in-process", "--out", str(out), "--methods",
                             "adam", "--style-weight", "1e3", "--add"]) == 0
    assert json.loads((out / "convergence.json").read_text()) == added
    with pytest.raises(SystemExit, match=r"style \(1000.0 here, 10000000.0 asked\)"):
        convergence.main(["--quick", "--in-process", "--out", str(out), "--methods", "adam",
                          "--style-weight", "1e7", "--add"])


def test_convergence_method_names(tmp_path):
    """A ladder's steps a stage and first size come from its name (auto-lbfgs-25-from256);
    names that say something else are refused before anything runs."""
    convergence = load_script("benchmarks/convergence.py")
    config = convergence._config("auto-lbfgs-25-from256", 1024, True, 100, 128, 10, 1e7)
    assert config.scales == (256, 362, 512, 724, 1024)
    assert config.scale_iterations == (50, 25, 25, 25, 25)
    default = convergence._config("auto-lbfgs-25", 1024, True, 100, 128, 10, 1e7)
    assert default.scales == (128, 181, 256, 362, 512, 724, 1024)
    assert convergence.parse_method("auto-adam-50-from512-plain") is None
    assert convergence.parse_method("auto-lbfgs-50-from512-plain") == (
        "auto-lbfgs", 50, 512, True)
    for bad in ("auto-lbfgs-25-from", "auto-lbfgs-0", "adam-from256", "auto-lbfgs-from256",
                "lbfgs-25"):
        assert convergence.parse_method(bad) is None, bad
        with pytest.raises(SystemExit, match="unknown methods"):
            convergence.main(["--out", str(tmp_path), "--methods", bad])


def test_convergence_plain_methods_drop_only_the_rounding_tolerance(tmp_path):
    """"-plain": the same method with `rounding_tolerance=0` for its run only (the before of
    the GPU-rounding fix); not a name for Adam or PyTorch."""
    convergence = load_script("benchmarks/convergence.py")
    plain = convergence._config("auto-lbfgs-25-plain", 256, True, 100, 128, 10, 1e7)
    assert plain == convergence._config("auto-lbfgs-25", 256, True, 100, 128, 10, 1e7)
    assert plain.scale_iterations[:2] == (50, 25)
    with convergence._optim_variant("auto-lbfgs-25-plain"):
        assert plain.optimizer_spec().rounding_tolerance == 0.0
    assert plain.optimizer_spec().rounding_tolerance == 1.0  # put back
    for bad in ("adam-plain", "torch-lbfgs-plain"):
        with pytest.raises(SystemExit, match="unknown methods"):
            convergence.main(["--out", str(tmp_path), "--methods", bad])


def test_convergence_pairs_counts_a_pair_that_never_reached_the_target(tmp_path):
    """benchmarks/convergence_pairs.py's summary over pairs: a run that never reached
    PyTorch's loss counts (as infinitely slow) in the median and the range, never dropped,
    and JSON gets None for it."""
    pairs = load_script("benchmarks/convergence_pairs.py")

    def report(ratio, at):
        return {"methods": ["torch-lbfgs", "adam"], "summary": [
            {"method": "torch-lbfgs", "ratio_to_torch": 1.0, "final_score": 10.0,
             "score_at_torch_time": 10.0},
            {"method": "adam", "ratio_to_torch": ratio, "final_score": at,
             "score_at_torch_time": at}]}

    reports = {(256, 1e7): {"a": report(0.2, 5.0), "b": report(None, 11.0),
                            "c": report(None, 12.0)}}
    (_, adam) = pairs.summarize(reports)
    assert adam["pairs"] == ["a", "b", "c"] and adam["reached"] == 1
    assert adam["time_ratio"] == {"median": float("inf"), "min": 0.2, "max": float("inf")}
    assert adam["score_at_equal_time"] == {"median": 1.1, "min": 0.5, "max": 1.2}
    table = pairs.markdown(pairs.summarize(reports), "note")
    assert "| adam | not reached (0.20 to not reached) | 1/3 | 1.10 (0.50-1.20) |" in table
    assert json.loads(json.dumps(pairs._finite_or_none(adam)))["time_ratios"] == [0.2, None,
                                                                                 None]
    assert pairs.plot(pairs.summarize(reports), str(tmp_path / "s.png"))
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_convergence_pairs_adds_only_the_methods_a_report_lacks(tmp_path, monkeypatch):
    """A pair already run gets only a method it lacks (convergence.py --add, PyTorch not
    rerun); the summary counts an added method over the pairs that have it."""
    import argparse
    import subprocess

    pairs = load_script("benchmarks/convergence_pairs.py")
    calls = []
    monkeypatch.setattr(pairs.subprocess, "run", lambda argv, **kw: calls.append(argv) or
                        subprocess.CompletedProcess(argv, 0, "", ""))
    folder = tmp_path / "1024-1e+07" / "coffee-brick"
    folder.mkdir(parents=True)
    (folder / "convergence.json").write_text(json.dumps(
        {"methods": ["torch-lbfgs", "auto-lbfgs-25"]}))
    args = argparse.Namespace(methods="torch-lbfgs,auto-lbfgs-25", seconds_ratio=1.0,
                              quick=False, weights=None, emulate_rounding=None)
    assert pairs.run_one(str(tmp_path), "coffee-brick", 1024, 1e7, args) and calls == []
    args.methods = "auto-lbfgs-25-from256"
    assert pairs.run_one(str(tmp_path), "coffee-brick", 1024, 1e7, args)
    (argv,) = calls
    assert "--add" in argv and argv[argv.index("--methods") + 1] == "auto-lbfgs-25-from256"

    def report(methods):
        return {"methods": methods, "summary": [
            {"method": m, "ratio_to_torch": 1.0, "final_score": 10.0,
             "score_at_torch_time": 10.0} for m in methods]}

    rows = pairs.summarize({(1024, 1e7): {
        "a": report(["torch-lbfgs", "auto-lbfgs-25"]),
        "b": report(["torch-lbfgs", "auto-lbfgs-25", "auto-lbfgs-25-from256"])}})
    assert [(r["method"], r["pairs"]) for r in rows] == [
        ("torch-lbfgs", ["a", "b"]), ("auto-lbfgs-25", ["a", "b"]),
        ("auto-lbfgs-25-from256", ["b"])]


def test_convergence_pairs_summary_covers_every_run_in_out(tmp_path):
    """The summary is of every run in OUT, whatever --sizes and --style-weights say: a
    summary-only call with the defaults (256/512/1024 px, beta 1e7) keeps a 512 px beta 1e3
    run made by another command."""
    pairs = load_script("benchmarks/convergence_pairs.py")
    report = {"methods": ["torch-lbfgs"], "summary": [
        {"method": "torch-lbfgs", "ratio_to_torch": 1.0, "final_score": 10.0,
         "score_at_torch_time": 10.0}]}
    for folder in ("512-1000/chelsea-hubble", "256-1e+07/coffee-brick"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "convergence.json").write_text(json.dumps(report))
    assert pairs.main(["--out", str(tmp_path), "--summary-only"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["size"], r["style_weight"]) for r in summary["rows"]] == [(256, 1e7), (512, 1e3)]
    assert summary["pairs"] == ["chelsea-hubble", "coffee-brick"]


# ----------------------------------------------------- arbitrary_bench.py, sanet_start.py


def test_arbitrary_flops_by_hand():
    # 20 x 12 image to relu1_1: conv0 (1x1, 3 -> 3) and conv1_1 (3x3, 3 -> 64).
    assert arbitrary_bench.encoder_flops(20, 12, 1) == 2 * 240 * 3 * 3 + 2 * 240 * 9 * 3 * 64
    # to relu2_1 with an odd side: conv1_2 at 20 x 11, then conv2_1 at ceil: 10 x 6.
    assert arbitrary_bench.encoder_flops(20, 11, 2) == (2 * 220 * 9 + 2 * 220 * 9 * 3 * 64
                                              + 2 * 220 * 9 * 64 * 64 + 2 * 60 * 9 * 64 * 128)
    # docs/arbitrary.md's figures at 512 px: VGG to relu4_1 ~127 GFLOP, decoder ~127, Transform ~66.
    assert arbitrary_bench.encoder_flops(512, 512, 4) / 1e9 == pytest.approx(127, rel=0.01)
    assert arbitrary_bench.decoder_flops(64, 64) / 1e9 == pytest.approx(127, rel=0.01)
    t = arbitrary_bench.transform_flops(64, 64, 64, 64)
    assert (t["content"] + t["style"]) / 1e9 == pytest.approx(66, rel=0.02)
    adain = arbitrary_bench.flops("adain", 512)
    assert adain["with_style_gflop"] == pytest.approx(2 * 126.5 + 126.5, rel=0.01)


def test_arbitrary_bench_quick(tmp_path):
    out = tmp_path / "arbitrary_bench.json"
    assert arbitrary_bench.main(["--quick", "--models", "adain", "--torch-layouts", "nchw",
                                 "--silent", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]
    torch_rows = {"torch"} if arbitrary_bench._has_torch() else set()
    assert {r["framework"] for r in rows} == {"jax"} | torch_rows
    for row in rows:
        assert "error" not in row, row
        assert row["size"] == 32 and len(row["with_style_s"]) == 1 and row["first_s"] > 0
        assert row["batch_s"] == [] and row["peak_rss_bytes"] > 50 * 2**20
    (summary,) = report["summary"]
    assert summary["jax_with_style_s"] > 0 and summary["with_style_gflop"] > 0
    if arbitrary_bench._has_torch():  # same weights, same images: the same picture
        means = {r["framework"]: r["output_mean"] for r in rows}
        assert means["jax"] == pytest.approx(means["torch"], rel=1e-4)


def test_sanet_start_quick(tmp_path):
    """benchmarks/sanet_start.py --quick: both starts run the same objective; the SANet start's
    clock begins after its forward pass; JSON and plot written."""
    script = load_script("benchmarks/sanet_start.py")
    assert script.main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "sanet_start.json").read_text())
    content_run, sanet_run = report["runs"]
    assert report["random_weights"] and report["size"] == 32 and report["sanet_s"] > 0
    assert content_run["offset_s"] == 0 and sanet_run["offset_s"] == report["sanet_s"]
    for run in report["runs"]:
        assert run["steps"] == [1, 2]
        assert run["seconds"][0] > run["offset_s"] and run["seconds"] == sorted(run["seconds"])
        assert min(run["loss"]) <= run["start_loss"]
    assert content_run["start_loss"] != sanet_run["start_loss"]  # different start images
    assert (tmp_path / "sanet_start.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------- train_bench.py, train_pieces.py


def test_train_bench_quick(tmp_path, monkeypatch):
    # The workers are subprocesses: this checkout first on their path, quick compiles, and
    # training's own library flags (runtime.CPU_TRAIN_FLAGS, which the worker sets).
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("XLA_FLAGS", subprocess_xla_flags(library_flags=False))
    out = tmp_path / "train_bench.json"
    assert train_bench.main(["--quick", "--models", "adain", "--silent", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {r["framework"]: r for r in report["rows"]}
    assert rows["jax"]["images_per_s"] > 0 and rows["jax"]["batch"] == 2
    assert len(rows["jax"]["losses"]) == 2  # the first step and one timed
    summary = report["summary"][0]
    assert summary["kind"] == "adain" and summary["jax_images_per_s"] > 0
    if "torch" in rows:  # the same step: the same losses, before and after one Adam update
        assert summary["jax_over_torch"] > 0
        for a, b in zip(rows["jax"]["losses"], rows["torch"]["losses"], strict=True):
            assert a == pytest.approx(b, rel=1e-4)


def test_train_bench_summary_without_torch():
    rows = [{"framework": "jax", "kind": "sanet", "images_per_s": 2.0},
            {"framework": "jax", "kind": "sanet", "images_per_s": 4.0}]
    assert train_bench.summarize(rows, "sanet") == {"kind": "sanet", "jax_images_per_s": 3.0,
                                              "torch_images_per_s": None,
                                              "jax_over_torch": None}


def test_train_pieces_quick(tmp_path):
    # SANet only: its pieces are AdaIN's and the Transform (AdaIN's inputs are checked below).
    out = tmp_path / "train_pieces.json"
    assert train_pieces.main(["--quick", "--models", "sanet", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["size"] == 32 and report["settings"]["batch"] == 2
    timed = {(s["kind"], s["piece"]) for s in report["summary"]}
    assert timed == {("sanet", p) for p in train_pieces.PIECES}
    torch_ran = any(r["framework"] == "torch" for r in report["rows"])
    for s in report["summary"]:
        assert s["jax_s"] > 0
        assert (s["torch_s"] > 0) if torch_ran else s["torch_s"] is None


def test_train_pieces_inputs_follow_the_recipe_shapes():
    x = train_pieces._inputs("sanet", 64, 2)
    assert x["pair"].shape == (4, 64, 64, 3) and x["decoded"].shape == (6, 64, 64, 3)
    assert x["relu4_1"].shape == (6, 8, 8, 512) and x["relu5_1"].shape == (6, 4, 4, 512)
    assert train_pieces._inputs("adain", 64, 2)["decoded"].shape == (2, 64, 64, 3)


# --------------------------------------------------------------------------- device_check.sh


def test_device_check_evaluations_part_reports_a_timeout(tmp_path):
    """A subprocess past --timeout: the part ends with an error row naming the option (it
    used to raise, losing the rows evaluations.py had written)."""
    device_check = load_script("benchmarks/device_check.py")
    args = argparse.Namespace(work=str(tmp_path), layers={}, timeout=0.5,
                              evaluation_sizes=[32], evaluation_roundings=["bfloat16"],
                              evaluation_style_weights=[1e7], evaluation_iterations=3)
    (row,) = device_check.part_evaluations(args, "unused.npz")
    assert "timed out after 0.5 s (--timeout)" in row["error"]


def test_device_check_quick_runs_every_part(tmp_path):
    # Every process of the check inherits the tests' compile flags (LLVM's optimizations off):
    # at 32 px its parts are compile time, 79 -> 54 CPU seconds on this CPU.
    env = dict(os.environ, PYTHON=sys.executable, JAX_PLATFORMS="cpu")
    env.pop("JAXSTYLE_NO_COMPILE_CACHE", None)  # the second-process part needs the cache
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh"), "--quick",
                          str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "device_check.json").read_text())
    assert report["backend"] == "cpu" and report["quick"]
    (f32, bf16) = report["objective"]
    assert f32["dtype"] == "float32" and bf16["dtype"] == "bfloat16"
    assert f32["step_s"] > 0 and f32["xla_memory_bytes"] > 0
    assert abs(bf16["loss_vs_float32"]) < 0.05
    # The same point twice: XLA's CPU kernels are deterministic.
    assert f32["repeat_loss_rel_diff"] == 0.0 and f32["repeat_grad_max_abs_diff"] == 0.0
    (torch_row,) = report["torch"]
    try:
        import torch  # noqa: F401
    except ImportError:
        assert "torch is not installed" in torch_row["skipped"]
    else:
        assert torch_row["size"] == 32 and torch_row["step_s"] > 0
    (stylize,) = report["stylize"]
    assert stylize["iteration_s"] > 0 and stylize["first_step_s"] > 0
    assert [(r["optimizer"], r["size"]) for r in report["sweep"]] == [("adam", 32),
                                                                       ("lbfgs", 32)]
    assert all(r["sweep_s"] > 0 and r["one_s"] > 0 and r["batch_size"] == 2
               for r in report["sweep"])
    # L-BFGS's evaluations per iteration under emulated bfloat16 (evaluations.py, a process).
    (evaluations,) = report["evaluations"]
    assert evaluations["rounding"] == "bfloat16" and evaluations["iterations"] == 3
    assert evaluations["first_iteration_evaluations"] >= 1
    assert evaluations["per_iteration_after_first"] >= 1
    # --quick: one model (AdaIN) and float32 for the feed-forward parts, to keep the suite
    # short; SANet goes through the same workers with another kind (the GPU run does both).
    assert [(r["kind"], r["size"]) for r in report["arbitrary"]] == [("adain", 32)]
    assert all(r["with_style_s"] > 0 and r["per_image_batched_s"] > 0
               for r in report["arbitrary"])
    train = {(r["kind"], r["dtype"]): r for r in report["train"]}
    assert set(train) == {("adain", "float32")}
    assert all(r["images_per_s"] > 0 and r["hours_to_160k_steps"] > 0 for r in train.values())
    (video,) = report["video"]  # AdaIN end to end through jaxstyle.video (PyAV, OpenCV)
    assert video["kind"] == "adain" and video["frames"] == 12 and video["frames_per_s"] > 0
    log = (tmp_path / "device_check.log").read_text()
    assert log.count("| 32 | float32 |") == 1 and log.count("| 32 | bfloat16 |") == 1
    assert "| 0.0e+00 |" in log  # the repeat column
