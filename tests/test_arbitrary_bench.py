"""benchmarks/arbitrary_bench.py: its analytic FLOPs, and a --quick run end to end (jax, and
the PyTorch baseline when torch is installed) so that the script cannot rot."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))  # the scripts import their helper module procmem

_spec = importlib.util.spec_from_file_location("_arbitrary_bench", BENCH_DIR / "arbitrary_bench.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench
_spec.loader.exec_module(bench)


def test_flops_by_hand():
    # 20 x 12 image to relu1_1: conv0 (1x1, 3 -> 3) and conv1_1 (3x3, 3 -> 64).
    assert bench.encoder_flops(20, 12, 1) == 2 * 240 * 3 * 3 + 2 * 240 * 9 * 3 * 64
    # to relu2_1 with an odd side: conv1_2 at 20 x 11, then conv2_1 at ceil: 10 x 6.
    assert bench.encoder_flops(20, 11, 2) == (2 * 220 * 9 + 2 * 220 * 9 * 3 * 64
                                              + 2 * 220 * 9 * 64 * 64 + 2 * 60 * 9 * 64 * 128)
    # ARBITRARY.md's figures at 512 px: VGG to relu4_1 ~127 GFLOP, decoder ~127, Transform ~66.
    assert bench.encoder_flops(512, 512, 4) / 1e9 == pytest.approx(127, rel=0.01)
    assert bench.decoder_flops(64, 64) / 1e9 == pytest.approx(127, rel=0.01)
    t = bench.transform_flops(64, 64, 64, 64)
    assert (t["content"] + t["style"]) / 1e9 == pytest.approx(66, rel=0.02)
    adain = bench.flops("adain", 512)
    assert adain["with_style_gflop"] == pytest.approx(2 * 126.5 + 126.5, rel=0.01)


def test_quick_run_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--models", "adain", "--torch-layouts", "nchw", "--silent",
                       "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]
    torch_rows = {"torch"} if bench._has_torch() else set()
    assert {r["framework"] for r in rows} == {"jax"} | torch_rows
    for row in rows:
        assert "error" not in row, row
        assert row["size"] == 32 and len(row["with_style_s"]) == 1 and row["first_s"] > 0
        assert row["batch_s"] == [] and row["peak_rss_bytes"] > 50 * 2**20
    (summary,) = report["summary"]
    assert summary["jax_with_style_s"] > 0 and summary["with_style_gflop"] > 0
    if bench._has_torch():  # same weights, same images: the same picture
        means = {r["framework"]: r["output_mean"] for r in rows}
        assert means["jax"] == pytest.approx(means["torch"], rel=1e-4)


def test_sanet_start_quick(tmp_path):
    """benchmarks/sanet_start.py --quick: both starts run the same objective; the SANet start's
    clock begins after its forward pass; JSON and plot written."""
    spec = importlib.util.spec_from_file_location("_sanet_start", BENCH_DIR / "sanet_start.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
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
