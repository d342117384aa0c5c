"""benchmarks/train_bench.py --quick end to end (jax, and the PyTorch reference step when
torch is installed), so that the script cannot rot; the two frameworks' losses agree."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from test_arbitrary_train_step import FAST_COMPILE, ROOT

BENCH_DIR = ROOT / "benchmarks"
_spec = importlib.util.spec_from_file_location("_train_bench", BENCH_DIR / "train_bench.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench
_spec.loader.exec_module(bench)


def test_quick_run_end_to_end(tmp_path, monkeypatch):
    # The workers are subprocesses: this checkout first on their path, quick compiles.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("XLA_FLAGS", FAST_COMPILE)
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--models", "adain", "--silent", "--json", str(out)]) == 0
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


def test_summary_without_torch():
    rows = [{"framework": "jax", "kind": "sanet", "images_per_s": 2.0},
            {"framework": "jax", "kind": "sanet", "images_per_s": 4.0}]
    assert bench.summarize(rows, "sanet") == {"kind": "sanet", "jax_images_per_s": 3.0,
                                              "torch_images_per_s": None,
                                              "jax_over_torch": None}
    assert Path(bench.__file__).parent == BENCH_DIR
