"""The accelerator check: every GPU row of the README in one process, each part guarded.

    python benchmarks/device_check.py --out DIR [--quick] [--parts objective,torch,...]
    (bash benchmarks/device_check.sh wraps it: installs nothing from the network, sets a
    fresh JAXSTYLE_HOME, tees the log)

Parts (each a function below; a part that fails is recorded as {"error": ...} and the others
still run; --parts and the size options pick a subset so a rerun fits the time left):
- torch:     the PyTorch baseline of the same objective (tests/references/torch_gatys.py, CUDA on
             a GPU), per --torch-sizes, in a subprocess run first (before JAX takes its share
             of the device memory).
- objective: value and gradient of the Gatys objective (jaxstyle.losses.total_loss) per
             --sizes and per compute dtype (float32, bfloat16): median step time, achieved
             FLOP/s (bench.objective_flops), XLA's memory plan of the compiled step, the
             device's peak memory so far, the loss (bf16 against float32), and whether two
             calls at the same point give the same value and gradient (repeat_*: 0 when
             the device's kernels are deterministic).
- stylize:   `jaxstyle.stylize` with the default optimizer, --stylize-iterations steps, per
             --stylize-sizes: per-iteration time, then a second process with the persistent
             compilation cache warm: seconds from its start to its first step.
- sweep:     --sweep-k (8) settings in one `jaxstyle.sweep` against one `stylize` run, per
             --sweep-sizes, Adam and L-BFGS (both second calls: compiled), with the batch
             the sweep chose (the GPU issue's target: at most 3x one run at 256 px).
- evaluations: L-BFGS's objective evaluations per iteration in long runs
             (benchmarks/evaluations.py, a process per run): per --evaluation-sizes,
             --evaluation-roundings ("none" is the device's own float32: TF32 convolutions
             on an NVIDIA GPU; "bf16-compute" the network in bfloat16; "tf32"/"bfloat16"
             emulate that rounding anywhere) and beta 1e7 and 1e3, --evaluation-iterations
             iterations (the target: at most 1.3 per iteration after the first).
- arbitrary: SANet and AdaIN (`jaxstyle.arbitrary`, random weights of the real networks) per
             --arbitrary-sizes: seconds per image with the style encoded in the call and
             encoded once, and per image in batches of --arbitrary-batch
             (benchmarks/arbitrary_bench.py's worker, JAX only, in a subprocess).
- video:     `jaxstyle.video.stylize_file` end to end (decode, DIS flow on host threads, the
             network and the temporal blend on the device, H.264 encode) for --models at
             --video-size with --video-flow, on --video-frames frames of a synthetic 960x540
             clip (examples/chelsea.jpg panning; written with PyAV first): frames per second
             and the split (the issue's GPU target: AdaIN >= 60 frames/s at 512 px with
             dis-fast). Needs PyAV and OpenCV on the machine (pip install 'jaxstyle[video]');
             without them the part records the ImportError.
- train:     SANet and AdaIN training steps (benchmarks/train_bench.py's worker, JAX only)
             at --train-size crops, batch --train-batch, per --dtypes: images/s, and the
             reference schedule's 160,000 steps extrapolated from the median step.
Synthetic VGG19 weights (`jaxstyle.random_weights(0)`): the real network's compute; every
figure is from random weights. The photos are examples/chelsea.jpg and
examples/hubble_deep_field.jpg squashed to size x size. Writes DIR/device_check.json and
prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
# The PyTorch reference models and baselines (tests/references/), run as the PyTorch side.
REFERENCES = os.path.join(HERE, "..", "tests", "references")
sys.path.insert(0, HERE)  # bench.py (FLOP count) beside this file

PARTS = ("torch", "objective", "stylize", "sweep", "evaluations", "arbitrary", "train", "video")
QUICK = dict(sizes=[32], torch_sizes=[32], stylize_sizes=[32], stylize_iterations=2,
             sweep_sizes=[32], sweep_iterations=1, sweep_k=2, steps=1, arbitrary_sizes=[32],
             evaluation_sizes=[32], evaluation_roundings=["bfloat16"],
             evaluation_style_weights=[1e7], evaluation_iterations=3,
             arbitrary_batch=2, arbitrary_repeats=1, train_size=32, train_batch=2,
             train_steps=1, models=["adain"], train_dtypes=["float32"], video_size=64,
             video_frames=12,
             # The Gatys parts on the VGG's first two blocks: the plumbing at half the compile.
             layers={"content_layers": ["relu2_1"], "style_layers": ["relu1_1", "relu2_1"]})
TRAIN_STEPS = 160_000  # the reference schedule (docs/arbitrary.md)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _images(size: int):
    from bench import _images as photos

    return photos(size)


def _weights(path: str):
    import jaxstyle

    return jaxstyle.load_vgg19(path)


def _device_memory() -> dict:
    import jax

    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - CPU devices may not implement it
        stats = {}
    return {k: stats[k] for k in ("peak_bytes_in_use", "bytes_in_use", "bytes_limit")
            if k in stats}


def _layers(args) -> dict:
    """The Gatys parts' layers: the network's defaults, or --quick's two blocks."""
    return {name: tuple(value) for name, value in args.layers.items()}


def part_torch(args, weights_npz: str) -> list[dict]:
    import importlib.util

    import numpy as np

    if importlib.util.find_spec("torch") is None:
        return [{"skipped": "torch is not installed: no PyTorch baseline"}]
    device = "cuda" if args.backend == "gpu" else "cpu"
    rows = []
    for size in args.torch_sizes:
        images = os.path.join(args.work, f"images_{size}.npz")
        content, style = _images(size)
        np.savez(images, content=content, style=style)
        cmd = [sys.executable, os.path.join(REFERENCES, "torch_gatys.py"), "--size", str(size),
               "--steps", str(args.steps), "--device", device, "--weights-npz", weights_npz,
               "--images", images]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        if out.returncode != 0:
            rows.append({"size": size, "error": out.stderr.strip()[-2000:]})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def part_objective(args, weights_npz: str) -> list[dict]:
    import jax
    from bench import objective_flops

    import jaxstyle
    from jaxstyle.objective import prepare_targets, total_loss

    weights = _weights(weights_npz)
    step = jax.jit(jax.value_and_grad(total_loss, argnums=3, has_aux=True),
                   static_argnames="spec")
    rows = []
    for size in args.sizes:
        content, style = _images(size)
        losses = {}
        for dtype in args.dtypes:
            row = {"size": size, "dtype": dtype}
            try:
                config = jaxstyle.StyleConfig(compute_dtype=dtype, **_layers(args))
                spec, targets = prepare_targets(weights, content, style, config)
                x = jax.device_put(content)
                t0 = time.perf_counter()
                compiled = step.lower(weights.params, targets, config.loss_weights, x,
                                      spec=spec).compile()
                row["compile_s"] = time.perf_counter() - t0
                mem = compiled.memory_analysis()
                if mem is not None:
                    row["xla_memory_bytes"] = (mem.argument_size_in_bytes
                                               + mem.output_size_in_bytes
                                               - mem.alias_size_in_bytes
                                               + mem.temp_size_in_bytes)
                (loss, _), grad = jax.block_until_ready(
                    compiled(weights.params, targets, config.loss_weights, x))
                times = []
                for _ in range(args.steps):
                    t0 = time.perf_counter()
                    again = jax.block_until_ready(compiled(weights.params, targets,
                                                           config.loss_weights, x))
                    times.append(time.perf_counter() - t0)
                # The same program at the same point twice: a GPU whose kernels sum in
                # another order per call gives two values, which no line search survives.
                if args.steps:
                    (loss_again, _), grad_again = again
                    row["repeat_loss_rel_diff"] = abs(float(loss_again) / float(loss) - 1)
                    row["repeat_grad_max_abs_diff"] = float(jax.numpy.max(jax.numpy.abs(
                        grad_again - grad)))
                row["step_times_s"] = times
                row["step_s"] = statistics.median(times)
                row["loss"] = losses[dtype] = float(loss)
                flops = objective_flops(size, size, **_layers(args))["total"]
                row["gflop_per_s"] = flops / row["step_s"] / 1e9
                row["device_memory"] = _device_memory()
                if dtype != "float32" and "float32" in losses:
                    row["loss_vs_float32"] = losses[dtype] / losses["float32"] - 1
            except Exception as err:  # noqa: BLE001 - one size failing (OOM) ends nothing
                row["error"] = f"{type(err).__name__}: {err}"[:2000]
            rows.append(row)
            print(f"objective {size} px {dtype}: {row.get('step_s', row.get('error'))}",
                  file=sys.stderr, flush=True)
    return rows


FIRST_STEP = """
import time; t0 = time.perf_counter()
import json, sys
sys.path.insert(0, sys.argv[1])
from jaxstyle import runtime
runtime.enable_compile_cache()
import jaxstyle
from bench import _images
content, style = _images(int(sys.argv[2]))
stamps = []
jaxstyle.stylize(content, style, weights=jaxstyle.load_vgg19(sys.argv[3]),
                 config=jaxstyle.StyleConfig(iterations=1, **json.loads(sys.argv[4])),
                 callback=lambda p: stamps.append(time.perf_counter()), callback_every=1)
print(json.dumps({"first_step_s": stamps[0] - t0}))
"""


def part_stylize(args, weights_npz: str) -> list[dict]:
    import jaxstyle

    weights = _weights(weights_npz)
    rows = []
    for size in args.stylize_sizes:
        row = {"size": size, "optimizer": jaxstyle.StyleConfig().optimizer,
               "iterations": args.stylize_iterations}
        try:
            content, style = _images(size)
            stamps: list[float] = []
            result = jaxstyle.stylize(content, style, weights=weights,
                                      config=jaxstyle.StyleConfig(
                                          iterations=args.stylize_iterations,
                                          **_layers(args)),
                                      callback=lambda p, stamps=stamps: stamps.append(
                                          time.perf_counter()),
                                      callback_every=1)
            row["timings"] = dict(result.timings)
            row["iteration_s"] = statistics.median(
                [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)])
            row["final_loss"] = float(result.history["total"][-1])
            # A second process, the same shapes: its programs come from the persistent cache.
            out = subprocess.run([sys.executable, "-c", FIRST_STEP, HERE, str(size),
                                  weights_npz, json.dumps(args.layers)],
                                 capture_output=True, text=True, timeout=args.timeout)
            if out.returncode == 0:
                row.update(json.loads(out.stdout.strip().splitlines()[-1]))
            else:
                row["first_step_error"] = out.stderr.strip()[-2000:]
        except Exception as err:  # noqa: BLE001
            row["error"] = f"{type(err).__name__}: {err}"[:2000]
        rows.append(row)
        print(f"stylize {size} px: {row.get('iteration_s', row.get('error'))}", file=sys.stderr,
              flush=True)
    return rows


def part_sweep(args, weights_npz: str) -> list[dict]:
    import numpy as np

    import jaxstyle

    weights = _weights(weights_npz)
    rows = []
    for size in args.sweep_sizes:
        content, style = _images(size)
        for optimizer in ("adam", "lbfgs"):
            k = args.sweep_k
            row = {"size": size, "optimizer": optimizer, "k": k,
                   "iterations": args.sweep_iterations}
            try:
                config = jaxstyle.StyleConfig(optimizer=optimizer,
                                              iterations=args.sweep_iterations, **_layers(args))
                lw = jaxstyle.LossWeights.of(np.ones(k), np.geomspace(1e2, 1e4, k),
                                             np.zeros(k))
                runs = {"one_s": dict(), "sweep_s": dict(loss_weights=lw)}
                for name, extra in runs.items():
                    call = jaxstyle.sweep if extra else jaxstyle.stylize
                    call(content, style, weights=weights, config=config, **extra)  # compiles
                    t0 = time.perf_counter()
                    result = call(content, style, weights=weights, config=config, **extra)
                    row[name] = time.perf_counter() - t0
                row["batch_size"] = result.batch_size
                row["sweep_over_one"] = row["sweep_s"] / row["one_s"]
            except Exception as err:  # noqa: BLE001
                row["error"] = f"{type(err).__name__}: {err}"[:2000]
            rows.append(row)
            print(f"sweep {optimizer} {size} px: {row.get('sweep_over_one', row.get('error'))}",
                  file=sys.stderr, flush=True)
    return rows


def part_evaluations(args, weights_npz: str) -> list[dict]:
    out = os.path.join(args.work, "evaluations.json")
    layers = _layers(args)
    cmd = [sys.executable, os.path.join(HERE, "evaluations.py"),
           "--sizes", ",".join(map(str, args.evaluation_sizes)),
           "--roundings", ",".join(args.evaluation_roundings),
           "--style-weights", ",".join(f"{b:g}" for b in args.evaluation_style_weights),
           "--iterations", str(args.evaluation_iterations), "--json", out]
    if layers:
        cmd += ["--style-layers", ",".join(layers["style_layers"]),
                "--content-layers", ",".join(layers["content_layers"])]
    # evaluations.py writes its JSON after every run: a timeout keeps the runs it finished.
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        print(proc.stdout[-3000:], file=sys.stderr, flush=True)
        failure = f"evaluations.py exit {proc.returncode}: {proc.stderr[-1500:]}"
    except subprocess.TimeoutExpired:
        failure = f"evaluations.py timed out after {args.timeout:g} s (--timeout)"
    rows = []
    if os.path.exists(out):
        with open(out) as fh:
            rows = [{**row, "error": str(row["error"])[:2000]} if "error" in row else row
                    for row in json.load(fh)["rows"]]
    expected = (len(args.evaluation_sizes) * len(args.evaluation_roundings)
                * len(args.evaluation_style_weights))
    return rows if len(rows) == expected else [*rows, {"error": failure}]


def part_arbitrary(args, weights_npz: str) -> list[dict]:
    out = os.path.join(args.work, "arbitrary.json")
    cmd = [sys.executable, os.path.join(HERE, "arbitrary_bench.py"), "--no-torch",
           "--models", ",".join(args.models), "--rounds",
           "1", "--sizes", ",".join(map(str, args.arbitrary_sizes)), "--batch",
           str(args.arbitrary_batch), "--repeats", str(args.arbitrary_repeats), "--json", out]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    print(proc.stdout[-3000:], file=sys.stderr, flush=True)
    if not os.path.exists(out):
        return [{"error": f"arbitrary_bench.py exit {proc.returncode}: {proc.stderr[-1500:]}"}]
    with open(out) as fh:
        bench = json.load(fh)
    rows = []
    for row in bench["rows"]:
        if "error" in row:
            rows.append({"kind": row.get("kind"), "size": row.get("size"),
                         "error": str(row["error"])[:2000]})
            continue
        rows.append({"kind": row["kind"], "size": row["size"], "batch": row["batch"],
                     "first_s": row["first_s"],
                     "with_style_s": statistics.median(row["with_style_s"]),
                     "without_style_s": statistics.median(row["without_style_s"]),
                     "per_image_batched_s": (statistics.median(row["batch_s"]) / row["batch"]
                                             if row["batch_s"] else None),
                     "device_peak_bytes": row.get("device_peak_bytes"),
                     "device": row.get("device")})
    return rows


def part_video(args, weights_npz: str) -> list[dict]:
    import jaxstyle
    from jaxstyle import arbitrary
    from jaxstyle.video import FeedForwardEngine, stylize_file

    clip = os.path.join(args.work, "clip.mp4")
    photo = jaxstyle.load_image(os.path.join(HERE, "..", "examples", "chelsea.jpg"))
    photo = jaxstyle.image.resize_to(photo, (800, 1200))
    _write_clip(clip, photo, args.video_frames + 32)
    style = jaxstyle.load_image(os.path.join(HERE, "..", "examples", "hubble_deep_field.jpg"))
    rows = []
    for kind in args.models:
        engine = FeedForwardEngine(arbitrary.random_params(kind, 0), batch_size=8)
        out = os.path.join(args.work, f"video_{kind}.mp4")
        # The first call compiles (batches of 8 and the blend); the second is timed.
        stylize_file(clip, out, style, engine=engine, flow=args.video_flow,
                     image_size=args.video_size, duration=24 / 25 - 1e-3)
        r = stylize_file(clip, out, style, engine=engine, flow=args.video_flow,
                         image_size=args.video_size,
                         duration=args.video_frames / 25 - 1e-3)
        rows.append({"kind": kind, "size": list(r.size), "flow": args.video_flow,
                     "frames": r.count, "frames_per_s": r.fps,
                     "seconds": r.timings, "ms_per_frame": {
                         k: 1000 * v / r.count for k, v in r.timings.items()},
                     "warping_error": r.warping_error, "random_weights": True,
                     "meets_60fps": bool(kind != "adain" or r.fps >= 60),
                     "threads": os.cpu_count()})
    return rows


def _write_clip(path: str, photo, frames: int) -> None:
    """A 960x540, 25 fps H.264 clip: a window panning over `photo` by (2, 1) px a frame."""
    import av
    import numpy as np

    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 960, 540, "yuv420p"
        for t in range(frames):
            window = photo[t:t + 540, 2 * t:2 * t + 960]
            frame = av.VideoFrame.from_ndarray(np.round(window * 255).astype(np.uint8),
                                               format="rgb24")
            frame.pts = t
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def part_train(args, weights_npz: str) -> list[dict]:
    rows = []
    for dtype in args.train_dtypes or args.dtypes:
        out = os.path.join(args.work, f"train-{dtype}.json")
        cmd = [sys.executable, os.path.join(HERE, "train_bench.py"), "--no-torch",
               "--models", ",".join(args.models), "--rounds",
               "1", "--size", str(args.train_size), "--batch", str(args.train_batch),
               "--steps", str(args.train_steps), "--dtype", dtype, "--json", out]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        print(proc.stderr[-1500:], file=sys.stderr, flush=True)
        if not os.path.exists(out):
            rows.append({"dtype": dtype, "error": f"train_bench.py exit {proc.returncode}: "
                                                  f"{proc.stderr[-1500:]}"})
            continue
        with open(out) as fh:
            bench = json.load(fh)
        for row in bench["rows"]:
            if "error" in row:
                rows.append({"kind": row.get("kind"), "dtype": dtype,
                             "error": str(row["error"])[:2000]})
                continue
            step_s = statistics.median(row["step_s"])
            rows.append({"kind": row["kind"], "dtype": dtype, "size": row["size"],
                         "batch": row["batch"], "first_s": row["first_s"], "step_s": step_s,
                         "images_per_s": row["images_per_s"], "devices": row["devices"],
                         "hours_to_160k_steps": TRAIN_STEPS * step_s / 3600,
                         "losses": row["losses"]})
    return rows


def markdown(report: dict) -> str:
    lines = [f"device: {report['device']}, jax {report['jax']}, {report['date']}; random "
             "VGG19 weights", ""]
    torch_by_size = {r["size"]: r for r in report.get("torch", []) if "error" not in r}
    lines += ["| size | dtype | step | GFLOP/s | XLA memory | PyTorch step | loss vs f32 "
              "| same point twice: loss rel. diff |", "|---|---|---|---|---|---|---|---|"]
    for r in report.get("objective", []):
        if "error" in r:
            lines.append(f"| {r['size']} | {r['dtype']} | error: {r['error'][:80]} | | | | | |")
            continue
        pt = torch_by_size.get(r["size"], {}) if r["dtype"] == "float32" else {}
        lines.append(f"| {r['size']} | {r['dtype']} | {r['step_s'] * 1e3:.1f} ms "
                     f"| {r['gflop_per_s']:.0f} | {r.get('xla_memory_bytes', 0) / 2**30:.2f} GiB "
                     f"| {pt['step_s'] * 1e3:.1f} ms |" if pt else
                     f"| {r['size']} | {r['dtype']} | {r['step_s'] * 1e3:.1f} ms "
                     f"| {r['gflop_per_s']:.0f} | {r.get('xla_memory_bytes', 0) / 2**30:.2f} GiB "
                     "| - |")
        lines[-1] += (f" {r['loss_vs_float32']:+.2%} |" if "loss_vs_float32" in r else " - |")
        lines[-1] += f" {r.get('repeat_loss_rel_diff', float('nan')):.1e} |"
    for r in report.get("stylize", []):
        lines.append(f"\nstylize {r['size']} px ({r['optimizer']}, {r['iterations']} steps): "
                     + (f"error {r['error'][:80]}" if "error" in r else
                        f"{r['iteration_s'] * 1e3:.1f} ms per iteration, second process "
                        f"first step at {r.get('first_step_s', float('nan')):.2f} s"))
    for r in report.get("sweep", []):
        lines.append(f"sweep of {r['k']}, {r['optimizer']} at {r['size']} px: "
                     + (f"error {r['error'][:80]}" if "error" in r else
                        f"{r['sweep_s']:.2f} s against one run {r['one_s']:.2f} s "
                        f"({r['sweep_over_one']:.2f}x, batch {r['batch_size']})"))
    for r in report.get("evaluations", []):
        lines.append(f"L-BFGS {r.get('size')} px, {r.get('rounding')}, beta "
                     f"{r.get('style_weight', 0):g}: " + (
                         f"error {r['error'][:80]}" if "error" in r else
                         f"{r['per_iteration_after_first']:.2f} evaluations per iteration "
                         f"after the first ({r['first_iteration_evaluations']}) over "
                         f"{r['iterations']}"))
    for r in report.get("arbitrary", []):
        lines.append(f"{r.get('kind')} {r.get('size')} px: " + (
            f"error {r['error'][:80]}" if "error" in r else
            f"{r['with_style_s'] * 1e3:.1f} ms per image (style encoded in the call), "
            f"{r['without_style_s'] * 1e3:.1f} ms (encoded once)"
            + (f", {r['per_image_batched_s'] * 1e3:.1f} ms per image in batches of "
               f"{r['batch']}" if r["per_image_batched_s"] else "")))
    for r in report.get("train", []):
        lines.append(f"train {r.get('kind')} {r.get('dtype')}: " + (
            f"error {r['error'][:80]}" if "error" in r else
            f"{r['images_per_s']:.1f} images/s at {r['size']} px, batch {r['batch']} "
            f"({r['step_s'] * 1e3:.1f} ms per step; 160k steps in "
            f"{r['hours_to_160k_steps']:.1f} h)"))
    for r in report.get("video", []):
        lines.append(f"video {r.get('kind')}: " + (
            f"error {r['error'][:80]}" if "error" in r else
            f"{r['frames_per_s']:.1f} frames/s end to end at {r['size'][0]}x{r['size'][1]} "
            f"({r['flow']}; ms per frame: " + ", ".join(
                f"{k} {v:.2f}" for k, v in r["ms_per_frame"].items()) + ")"))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="directory for device_check.json")
    p.add_argument("--quick", action="store_true", help="toy sizes: what the tests run")
    p.add_argument("--parts", type=lambda t: t.split(","), default=list(PARTS))
    p.add_argument("--sizes", type=_ints, default=[512, 1024, 2048, 4096])
    p.add_argument("--dtypes", type=lambda t: t.split(","), default=["float32", "bfloat16"])
    p.add_argument("--torch-sizes", type=_ints, default=[512, 1024])
    p.add_argument("--stylize-sizes", type=_ints, default=[512, 1024])
    p.add_argument("--stylize-iterations", type=int, default=50)
    p.add_argument("--sweep-sizes", type=_ints, default=[256, 512])
    p.add_argument("--sweep-iterations", type=int, default=20)
    p.add_argument("--sweep-k", type=int, default=8, help="settings in the sweep")
    p.add_argument("--steps", type=int, default=10, help="timed objective steps per size")
    p.add_argument("--evaluation-sizes", type=_ints, default=[512, 1024])
    p.add_argument("--evaluation-roundings", type=lambda t: t.split(","),
                   default=["none", "bf16-compute"])
    p.add_argument("--evaluation-style-weights", type=lambda t: [float(v) for v in t.split(",")],
                   default=[1e7, 1e3])
    p.add_argument("--evaluation-iterations", type=int, default=500)
    p.add_argument("--arbitrary-sizes", type=_ints, default=[512, 1024])
    p.add_argument("--arbitrary-batch", type=int, default=8, help="contents per batched call")
    p.add_argument("--arbitrary-repeats", type=int, default=5, help="timed calls per row")
    p.add_argument("--models", type=lambda t: t.split(","), default=["sanet", "adain"],
                   help="arbitrary and train parts: which feed-forward models")
    p.add_argument("--train-dtypes", type=lambda t: t.split(","), default=None,
                   help="train part's compute dtypes (default: --dtypes)")
    p.add_argument("--train-size", type=int, default=256, help="training crop side")
    p.add_argument("--train-batch", type=int, default=5, help="training batch")
    p.add_argument("--train-steps", type=int, default=10, help="timed training steps")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per subprocess")
    p.add_argument("--video-size", type=int, default=512, help="video frames' longer side")
    p.add_argument("--video-frames", type=int, default=240, help="timed video frames")
    p.add_argument("--video-flow", default="dis-fast", help="the video part's DIS preset")
    p.set_defaults(layers={})  # the network's default layers; --quick: QUICK["layers"]
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        p.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    os.makedirs(args.out, exist_ok=True)
    args.work = tempfile.mkdtemp(prefix="device_check_")
    weights_npz = os.path.join(args.work, "random_weights.npz")

    from jaxstyle import runtime

    runtime.set_xla_cpu_flags()
    runtime.enable_compile_cache()
    import jax

    import jaxstyle

    jaxstyle.save_weights(jaxstyle.random_weights(0), weights_npz)
    args.backend = jax.default_backend()
    report = {"device": str(jax.devices()[0].device_kind), "backend": args.backend,
              "jax": jax.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
              "argv": sys.argv[1:] if argv is None else list(argv), "quick": args.quick}
    path = os.path.join(args.out, "device_check.json")
    for part in PARTS:  # in this order: torch first, before JAX fills the device
        if part not in args.parts:
            continue
        t0 = time.perf_counter()
        try:
            report[part] = globals()[f"part_{part}"](args, weights_npz)
        except Exception:  # noqa: BLE001 - the report says what broke; the rest still runs
            report[part] = [{"error": traceback.format_exc()[-2000:]}]
        report[f"{part}_s"] = time.perf_counter() - t0
        with open(path, "w") as fh:  # after every part: a timeout keeps what was measured
            json.dump(report, fh, indent=2)
    print(markdown(report))
    errors = [r for part in PARTS for r in report.get(part, []) if "error" in r]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
