"""benchmarks/: the analytic FLOP count, a tiny end-to-end run, and the PyTorch baseline.

The baseline must compute exactly jaxstyle's objective (value and image gradient) on the same
weights, or its timings compare different work; it is checked here whenever torch is installed.
"""

import importlib.util
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstyle
from jaxstyle.losses import LossSpec, Targets, prepare_targets, total_loss

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))  # the scripts import their helper module procmem


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load("bench")


def test_flops_by_hand_at_one_layer():
    # Only relu1_1 as a style layer: conv1_1 (3 -> 64) and one Gram, on a 10 x 6 image.
    f = bench.objective_flops(10, 6, style_layers=("relu1_1",), content_layers=())
    conv = 2 * 10 * 6 * 9 * 3 * 64
    assert f["conv_forward"] == f["conv_backward_input"] == conv
    assert f["gram_forward"] == f["gram_backward"] == 2 * 60 * 64 * 64
    assert f["total"] == 2 * conv + 2 * 2 * 60 * 64 * 64
    # Taps inside the image: rows 3*10 - 2, columns 3*6 - 2.
    assert f["total_valid_taps"] == 2 * (2 * 28 * 16 * 3 * 64) + 2 * 2 * 60 * 64 * 64


def test_flops_match_xla_cost_analysis(weights):
    """The analytic count (valid taps) equals XLA's count of the compiled objective, up to
    the elementwise work the formula leaves out (< 1%)."""
    size = (64, 48)
    config = jaxstyle.StyleConfig()
    spec = LossSpec.from_config(config, weights.convention)
    x = jnp.zeros((*size, 3), jnp.float32)
    shapes = jax.eval_shape(spec.features, weights.params, x)
    targets = Targets({n: jnp.zeros(shapes[n].shape) for n in spec.content_layers},
                      {n: jnp.zeros((shapes[n].shape[-1],) * 2) for n in spec.style_layers})
    step = jax.jit(jax.value_and_grad(total_loss, argnums=3, has_aux=True),
                   static_argnames="spec")
    xla = step.lower(weights.params, targets, config.loss_weights, x, spec=spec
                     ).cost_analysis()["flops"]
    analytic = bench.objective_flops(*size)["total_valid_taps"]
    assert analytic <= xla <= 1.01 * analytic


def test_quick_run_end_to_end(tmp_path):
    """The real CLI at 32 px: cold compile, a warm second process that hits the cache."""
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--optimizers", "adam", "--sweep-ks", "", "--no-torch",
                       "--silent", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    (row,) = report["objective"]
    cold, warm = row["cold"], row["warm"]
    assert "error" not in cold and "error" not in warm, (cold, warm)
    assert row["size"] == 32 and cold["cache_hits"] == 0 and warm["cache_hits"] >= 1
    assert warm["compile_s"] < cold["compile_s"]
    assert cold["loss"] == warm["loss"] > 0
    assert len(cold["step_times_s"]) == 2 and row["step_s"] > 0
    assert row["flops_per_s"] == pytest.approx(row["flops"]["total"] / row["step_s"])
    assert report["matmul_peak"]["matmul_flops_per_s"] > 0
    assert cold["peak_rss_bytes"] > 50 * 2**20
    assert report["sweeps"] == []  # --sweep-ks ""
    (opt,) = report["optimizers"]
    assert opt["optimizer"] == "adam" and "error" not in opt["cold"], opt
    assert opt["cold"]["iterations"] == 2 and "error" not in opt["warm"], opt
    # The second process reads its programs from JAX's cache and is ready sooner than the
    # cold one, which compiled them.
    cold_opt, warm_opt = opt["cold"], opt["warm"]
    assert warm_opt["timings"]["compile_s"] < cold_opt["timings"]["compile_s"]
    assert warm_opt["ready_s"] < cold_opt["ready_s"]
    assert cold_opt["ready_s"] < cold_opt["first_step_s"] < cold_opt["time_to_result_s"]
    assert cold_opt["final_loss"] == warm_opt["final_loss"]


@pytest.fixture(scope="module")
def torch_baseline():
    pytest.importorskip("torch")
    return _load("torch_baseline")


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
    # bench.py hands it the images its jax rows step on: the loss is that of those images.
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
    assert bench._peak_memory({"peak_rss_bytes": 5, "device_memory": {}}) == 5
    assert bench._peak_memory({"peak_rss_bytes": 5,
                               "device_memory": {"peak_bytes_in_use": 7}}) == 7


def test_linesearch_quick_counts_old_against_new(tmp_path):
    """benchmarks/linesearch.py --quick (32 px photos, shallow layers) in this process: the
    new line search's first iteration costs 2 evaluations with init's probe (old: 4 at
    least, measured 4), then 1 each, and its best loss within the budget is no worse."""
    linesearch = _load("linesearch")
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
    convergence = _load("convergence")
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
