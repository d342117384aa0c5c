"""The memory estimate every command checks before it runs, against the peak RSS it reaches.

    python benchmarks/memory.py --sizes 512,1024,2048 --models gatys --json OUT.json
    python benchmarks/memory.py --sizes 512,1024 --models sanet,adain
    python benchmarks/memory.py --quick                     # 64 px, every model: seconds

Each (model, size) runs in a fresh process, as the command line would: the XLA CPU flags the
CLI sets, the images loaded, the run planned (the estimate made then: the process's resident
memory at that moment plus the run's estimated bytes), the weights loaded from a file, the
run itself (Gatys: the default ladder with one step a stage, so the last stage is at the
size; SANet and AdaIN: one image). The worker then reports its peak resident set (VmHWM).
Random weights of the real networks (the compute and memory are the real ones).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

MODELS = ("gatys", "sanet", "adain")


def _rss(key: str) -> int:
    from procmem import proc_status

    return proc_status(key)


def worker(model: str, size: int, weights: str) -> dict:
    """One run in this process: the estimate at planning time and the peak reached."""
    from jaxstyle import runtime

    runtime.set_xla_cpu_flags()  # what `jaxstyle` sets before its first computation
    import numpy as np

    import jaxstyle
    from jaxstyle.image import load_image, resize_to, scale_shape

    content = load_image(os.path.join(ROOT, "examples", "chelsea.jpg"))
    style = load_image(os.path.join(ROOT, "examples", "hubble_deep_field.jpg"))
    t0 = time.perf_counter()
    if model == "gatys":
        config = jaxstyle.StyleConfig(image_size=size, iterations=1)
        plan = jaxstyle.plan_memory(content.shape[:2], [style.shape[:2]], config)
        rss_planned = _rss("VmRSS")
        weights = jaxstyle.load_vgg19(weights)
        jaxstyle.stylize(content, style, weights=weights, config=config)
    else:
        from jaxstyle import arbitrary

        content = resize_to(content, scale_shape(content.shape[:2], size))
        style = resize_to(style, scale_shape(style.shape[:2], size))
        plan = arbitrary.plan_memory(model, content.shape[:2], [style.shape[:2]])
        rss_planned = _rss("VmRSS")
        params = (arbitrary.load_sanet if model == "sanet" else arbitrary.load_adain)(
            model=weights)
        stylize = arbitrary.stylize_sanet if model == "sanet" else arbitrary.stylize_adain
        np.asarray(stylize(params, content, style))
    shape = (scale_shape(content.shape[:2], size) if model == "gatys" else content.shape[:2])
    return {"model": model, "size": size, "shape": list(shape),
            "estimated_run_bytes": plan.run_bytes, "rss_at_plan_bytes": rss_planned,
            "estimated_peak_bytes": rss_planned + plan.run_bytes,
            "peak_rss_bytes": _rss("VmHWM"), "seconds": time.perf_counter() - t0}


def _weights(model: str, folder: str) -> str:
    path = os.path.join(folder, f"{model}.npz")
    if not os.path.exists(path):
        if model == "gatys":
            import jaxstyle

            jaxstyle.save_weights(jaxstyle.random_weights(0), path)
        else:
            from jaxstyle import arbitrary

            arbitrary.save_model(arbitrary.random_params(model), path, model)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="512,1024,2048")
    p.add_argument("--models", default="gatys")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--worker", nargs=3, metavar=("MODEL", "SIZE", "WEIGHTS"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.worker[2])))
        return 0
    sizes = [64] if args.quick else [int(s) for s in args.sizes.split(",")]
    models = list(MODELS) if args.quick else args.models.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, PYTHONPATH=ROOT, JAXSTYLE_NO_COMPILE_CACHE="1")
        for model in models:
            weights = _weights(model, folder)
            for size in sizes:
                out = subprocess.run([sys.executable, __file__, "--worker", model, str(size),
                                      weights], env=env, capture_output=True, text=True)
                if out.returncode:
                    rows.append({"model": model, "size": size,
                                 "error": out.stderr.strip().splitlines()[-1:]})
                    continue
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row["ratio"] = row["estimated_peak_bytes"] / row["peak_rss_bytes"]
                rows.append(row)
                estimate, peak = row["estimated_peak_bytes"] / 2**30, row["peak_rss_bytes"] / 2**30
                print(f"{model:6} {size:5} px: estimated peak {estimate:6.2f} GiB, measured "
                      f"{peak:6.2f} GiB (x{row['ratio']:.3f}), {row['seconds']:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "machine": os.uname().nodename}, fh, indent=2)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
