"""Objective evaluations per L-BFGS iteration in long runs, with a GPU's rounding emulated.

    python benchmarks/evaluations.py --sizes 96,256,512 --roundings none,tf32,bfloat16 \\
        --style-weights 1e3,1e7 --iterations 300 --json OUT.json
    python benchmarks/evaluations.py --quick        # 48 px, 20 iterations: seconds

Each run is `jaxstyle.stylize` at one size (no ladder: `scales=None`), from the content image
(examples/chelsea.jpg at SIZE px on its longer side; the style examples/hubble_deep_field.jpg),
the default optimizer (zoom L-BFGS) for --iterations iterations, with the convolutions' and
products' operands rounded as a GPU rounds them (`StyleConfig.emulate_rounding`: "tf32", the
default float32 precision of NVIDIA tensor cores; "bfloat16") or not ("none"), or with the
network in bfloat16 ("bf16-compute": `compute_dtype="bfloat16"`). Reported per run:
evaluations in the first iteration (its line search starts from a probe), evaluations per
iteration after it, the best loss, seconds. --variants compares line searches:
    current  the default Optimizer.
    plain    optax's decrease tolerance (approx_dec_rtol 1e-6): no rounding estimate.
Random weights of the real VGG19 (`jaxstyle.random_weights(0)`): the compute is the real
one; beta 1e7 because with random filters beta 1e3 leaves the content image near the optimum.
Each run in a fresh subprocess, with the XLA CPU flags the CLI sets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
VARIANTS = ("current", "plain")


def worker(size: int, rounding: str, style_weight: float, iterations: int,
           variant: str, layers: dict | None = None) -> dict:
    import dataclasses

    from jaxstyle import runtime

    runtime.set_xla_cpu_flags()
    import jaxstyle
    from jaxstyle.config import StyleConfig

    if variant == "plain":
        original = StyleConfig.optimizer_spec
        StyleConfig.optimizer_spec = lambda self: dataclasses.replace(
            original(self), rounding_tolerance=0.0)
    content = jaxstyle.load_image(os.path.join(ROOT, "examples", "chelsea.jpg"))
    style = jaxstyle.load_image(os.path.join(ROOT, "examples", "hubble_deep_field.jpg"))
    fields = dict(image_size=size, scales=None, iterations=iterations,
                  style_weight=style_weight, **(layers or {}))
    if rounding == "bf16-compute":
        fields["compute_dtype"] = "bfloat16"
    elif rounding != "none":
        fields["emulate_rounding"] = rounding
    config = jaxstyle.StyleConfig(**fields)
    first = {}

    def callback(progress):
        if progress.step == 1:
            first["evaluations"] = int(progress.evaluations[0])

    t0 = time.perf_counter()
    result = jaxstyle.stylize(content, style, weights=jaxstyle.random_weights(0),
                              config=config, callback=callback, callback_every=1)
    seconds = time.perf_counter() - t0
    total, steps = int(result.evaluations[0]), result.steps
    return {"size": size, "rounding": rounding, "style_weight": style_weight,
            "variant": variant, "iterations": steps, "evaluations": total,
            "first_iteration_evaluations": first["evaluations"],
            "per_iteration_after_first": (total - first["evaluations"]) / max(1, steps - 1),
            "best_loss": result.best_loss, "start_loss": float(result.initial_losses["total"][0]),
            "stopped": result.stopped, "seconds": seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="96,256,512")
    p.add_argument("--roundings", default="none,tf32,bfloat16")
    p.add_argument("--style-weights", default="1e3,1e7")
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--variants", default="current")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--style-layers", help="the objective's style layers (default: the "
                   "network's), comma-separated")
    p.add_argument("--content-layers", help="its content layers (default: the network's)")
    p.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        size, rounding, beta, iterations, variant, layers = args.worker
        print(json.dumps(worker(int(size), rounding, float(beta), int(iterations), variant,
                                json.loads(layers))))
        return 0
    layers = {f"{kind}_layers": tuple(getattr(args, f"{kind}_layers").split(","))
              for kind in ("style", "content") if getattr(args, f"{kind}_layers")}
    if args.quick:
        args.sizes, args.roundings, args.style_weights, args.iterations = \
            "48", "none,bfloat16", "1e7", 20
    rows = []
    env = dict(os.environ, PYTHONPATH=ROOT, JAXSTYLE_NO_COMPILE_CACHE="1")
    for size in [int(s) for s in args.sizes.split(",")]:
        for beta in [float(b) for b in args.style_weights.split(",")]:
            for rounding in args.roundings.split(","):
                for variant in args.variants.split(","):
                    out = subprocess.run([sys.executable, __file__, "--worker", str(size),
                                          rounding, str(beta), str(args.iterations), variant,
                                          json.dumps(layers)],
                                         env=env, capture_output=True, text=True)
                    if out.returncode:
                        rows.append({"size": size, "rounding": rounding, "style_weight": beta,
                                     "variant": variant, "error": out.stderr[-2000:]})
                        print(f"{size} {rounding} {beta:g} {variant}: error", flush=True)
                        continue
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                    rows.append(row)
                    print(f"{size:4} px beta {beta:g} {rounding:12} {variant:8} first "
                          f"{row['first_iteration_evaluations']:2}, then "
                          f"{row['per_iteration_after_first']:.3f} per iteration over "
                          f"{row['iterations']}; loss {row['start_loss']:.4g} -> "
                          f"{row['best_loss']:.4g}; {row['seconds']:.0f} s", flush=True)
                    if args.json:
                        with open(args.json, "w") as fh:
                            json.dump({"rows": rows, "iterations": args.iterations,
                                       "layers": layers or "default"}, fh, indent=2)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
