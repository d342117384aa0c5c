"""Training speed of jaxstyle.arbitrary (SANet, AdaIN) against the PyTorch reference step.

    python benchmarks/train_bench.py --models sanet,adain --size 256 --batch 5 --json out.json
    python benchmarks/train_bench.py --quick           # 32 px, batch 2, 1 step: what tests run

One training step is the loss of the reference recipe (jaxstyle.arbitrary.losses; PyTorch:
tests/references/torch_train.py, the reference Net.forward call by call), its gradient with respect
to the decoder (and Transform), and one Adam update. Every measurement is a fresh subprocess,
the frameworks alternating per round (jax, torch, then torch, jax ...) so that a shared
machine's slow phases hit both. Per worker: one untimed first step (jax: compile + run), then
--steps timed steps on the same batch (jax: `step.compiled_step` over every local device,
uint8 batches converted on the device as in training; the wall time of each step until its
metrics are ready); images/s = batch / median step time. The data pipeline is not measured
(`jaxstyle train-*` reads ahead on threads). The weights are random
(`jaxstyle.arbitrary.random_params`: the real networks' shapes and compute), converted once
to the released layouts for PyTorch; the images are random uint8 (PyTorch: the same / 255).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# The PyTorch reference models and baselines (tests/references/), run as the PyTorch side.
REFERENCES = os.path.join(HERE, "..", "tests", "references")
MARKER = "BENCH_JSON "


def jax_worker(args) -> dict:
    """Time `args.steps` training steps after a first one; the JSON row."""
    from jaxstyle import runtime

    if not runtime.backends_initialized():
        runtime.set_xla_cpu_flags(runtime.CPU_TRAIN_FLAGS)  # as `jaxstyle train-*` does
    import jax

    from jaxstyle.arbitrary import step
    from jaxstyle.arbitrary.train_config import TrainConfig
    from jaxstyle.arbitrary.weights import read_model

    kind, params = read_model(args.weights)
    config = TrainConfig(kind, compute_dtype=args.dtype)
    mesh = step.batch_mesh()
    step.check_batch(args.batch, mesh)
    trainable = {k: v for k, v in params.items() if k != "encoder"}
    state = step.put_replicated(step.init_state(trainable, config), mesh)
    encoder = step.put_replicated(params["encoder"], mesh)
    with np.load(args.images) as f:
        content, style = (step.put_batch(f[k], mesh) for k in ("content_u8", "style_u8"))
    fn = step.compiled_step(mesh, config)
    t0 = time.perf_counter()
    state, metrics = fn(state, encoder, content, style)
    losses = [float(metrics["total"])]
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        state, metrics = fn(state, encoder, content, style)
        losses.append(float(metrics["total"]))  # waits for the step
        times.append(time.perf_counter() - t0)
    device = jax.devices()[0]
    return {"framework": "jax", "kind": kind, "size": args.size, "batch": args.batch,
            "dtype": args.dtype, "devices": len(jax.devices()), "platform": device.platform,
            "device_kind": device.device_kind, "first_s": first_s, "step_s": times,
            "losses": losses, "images_per_s": args.batch / statistics.median(times),
            "jax": jax.__version__}


def _prepare(work: str, kinds, size: int, batch: int) -> dict:
    """Random weights for both frameworks (arbitrary_bench's) and one batch of images."""
    sys.path.insert(0, HERE)
    import arbitrary_bench

    paths = arbitrary_bench._prepare(work, kinds, [])
    rng = np.random.default_rng(0)
    content, style = (rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
                      for _ in "cs")
    paths["images"] = os.path.join(work, "images.npz")
    np.savez(paths["images"], content_u8=content, style_u8=style,
             content=content.astype(np.float32) / 255, style=style.astype(np.float32) / 255)
    return paths


def _run(cmd: list[str], timeout: float) -> dict:
    """One worker subprocess's JSON row (arbitrary_bench's runner: same marker and errors)."""
    sys.path.insert(0, HERE)
    import arbitrary_bench

    return arbitrary_bench._run(cmd, timeout)


def _command(framework: str, kind: str, paths: dict, args) -> list[str]:
    if framework == "jax":
        return [sys.executable, os.path.abspath(__file__), "--worker", "--weights",
                paths[kind], "--images", paths["images"], "--size", str(args.size),
                "--batch", str(args.batch), "--steps", str(args.steps), "--dtype", args.dtype]
    return [sys.executable, os.path.join(REFERENCES, "torch_train.py"), "--kind", kind,
            "--size", str(args.size), "--batch", str(args.batch), "--steps", str(args.steps),
            "--weights", paths[f"{kind}-torch"], "--images", paths["images"],
            "--threads", str(args.threads)]


def summarize(rows: list[dict], kind: str) -> dict:
    """Median images/s per framework over the rounds, and jax / PyTorch."""
    out = {"kind": kind}
    for framework in ("jax", "torch"):
        got = [r["images_per_s"] for r in rows if r.get("framework") == framework
               and r.get("kind") == kind and "images_per_s" in r]
        out[f"{framework}_images_per_s"] = statistics.median(got) if got else None
    jax_rate, torch_rate = out["jax_images_per_s"], out["torch_images_per_s"]
    out["jax_over_torch"] = jax_rate / torch_rate if jax_rate and torch_rate else None
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="sanet,adain")
    p.add_argument("--size", type=int, default=256, help="crop side (default 256)")
    p.add_argument("--batch", type=int, default=5, help="images per step (default 5)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per worker (default 5)")
    p.add_argument("--rounds", type=int, default=2, help="alternating jax/torch worker pairs")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="jax compute dtype (PyTorch runs float32)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch threads")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="32 px, batch 2, 1 timed step, 1 round: a smoke test")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--json", help="write every measurement here")
    p.add_argument("--silent", action="store_true")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--images", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(MARKER + json.dumps(jax_worker(args)), flush=True)
        return 0
    if args.quick:
        args.size, args.batch, args.steps, args.rounds = 32, 2, 1, 1
    sys.path.insert(0, HERE)
    import arbitrary_bench

    kinds = [k for k in args.models.split(",") if k]
    frameworks = ["jax"] + ([] if args.no_torch or not arbitrary_bench._has_torch()
                            else ["torch"])
    rows = []
    with tempfile.TemporaryDirectory() as work:
        paths = _prepare(work, kinds, args.size, args.batch)
        for kind in kinds:
            for r in range(args.rounds):
                for framework in frameworks if r % 2 == 0 else frameworks[::-1]:
                    row = dict(_run(_command(framework, kind, paths, args), args.timeout),
                               framework=framework, kind=kind, round=r)
                    rows.append(row)
                    if not args.silent:
                        rate = row.get("images_per_s")
                        print(f"{kind} {framework:5s} round {r}: " + (
                            f"{rate:.3g} images/s" if rate else row.get("error", "?")),
                            file=sys.stderr, flush=True)
    summary = [summarize(rows, kind) for kind in kinds]
    report = {"settings": {k: getattr(args, k) for k in ("size", "batch", "steps", "rounds",
                                                         "dtype", "threads")},
              "rows": rows, "summary": summary}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if not args.silent:
        for s in summary:
            ratio = s["jax_over_torch"]
            print(f"{s['kind']}: jax {s['jax_images_per_s']} images/s, PyTorch "
                  f"{s['torch_images_per_s']} images/s"
                  + (f", jax/PyTorch {ratio:.2f}x" if ratio else ""))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
