"""benchmarks/device_check.sh --quick: every part of the accelerator check at toy sizes on
this CPU, so the script a GPU session runs unchanged cannot rot."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_device_check_quick_runs_every_part(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, JAX_PLATFORMS="cpu")
    env.pop("JAXSTYLE_NO_COMPILE_CACHE", None)  # the second-process part needs the cache
    out = subprocess.run(["bash", str(REPO / "benchmarks" / "device_check.sh"), "--quick",
                          str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "device_check.json").read_text())
    assert report["backend"] == "cpu" and report["quick"]
    (f32, bf16) = report["objective"]
    assert f32["dtype"] == "float32" and bf16["dtype"] == "bfloat16"
    assert f32["step_s"] > 0 and f32["xla_memory_bytes"] > 0
    assert abs(bf16["loss_vs_float32"]) < 0.05
    (torch_row,) = report["torch"]
    try:
        import torch  # noqa: F401
    except ImportError:
        assert "torch is not installed" in torch_row["skipped"]
    else:
        assert torch_row["size"] == 32 and torch_row["step_s"] > 0
    (stylize,) = report["stylize"]
    assert stylize["iteration_s"] > 0 and stylize["first_step_s"] > 0
    assert [r["optimizer"] for r in report["sweep"]] == ["adam", "lbfgs"]
    assert all(r["sweep_s"] > 0 and r["one_s"] > 0 for r in report["sweep"])
    # --quick: one model (AdaIN) and float32 for the feed-forward parts, to keep the suite
    # short; SANet goes through the same workers with another kind (the GPU run does both).
    assert [(r["kind"], r["size"]) for r in report["arbitrary"]] == [("adain", 32)]
    assert all(r["with_style_s"] > 0 and r["per_image_batched_s"] > 0
               for r in report["arbitrary"])
    train = {(r["kind"], r["dtype"]): r for r in report["train"]}
    assert set(train) == {("adain", "float32")}
    assert all(r["images_per_s"] > 0 and r["hours_to_160k_steps"] > 0 for r in train.values())
    log = (tmp_path / "device_check.log").read_text()
    assert log.count("| 32 | float32 |") == 1 and log.count("| 32 | bfloat16 |") == 1
