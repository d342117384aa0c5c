"""jaxstyle speed and memory benchmark, with a PyTorch baseline of the same objective.

    python benchmarks/bench.py --sizes 256,512,1024 --optimizers lbfgs,adam --json out.json
    python benchmarks/bench.py --quick            # tiny sizes, seconds: what the tests run

Every measurement runs in a fresh subprocess, so peak memory is per size and per framework:
- objective (per size): jit(value_and_grad) of `jaxstyle.losses.total_loss` with respect to
  the image, params/targets/loss weights as arguments. Cold compile time (AOT lower + compile,
  empty persistent cache), per-step time (median), peak RSS (VmHWM; device peak bytes on
  GPU/TPU), achieved FLOP/s against `objective_flops` (analytic) and as a fraction of the
  measured float32 matmul peak.
- warm start (per size): a SECOND process with the persistent cache the first one filled:
  time from process start to the first step done, broken into import, weights, targets,
  compile (cache hit) and step.
- pytorch (per size, when torch is importable): tests/references/torch_gatys.py, the same
  objective, same weights (written once to an .npz), same thread count, on the same kind of
  device (CUDA when jax runs on a GPU; none on a TPU); ratio jax / torch.
- optimizer rows (per size and optimizer): a full
  stylize run of --opt-steps iterations (L-BFGS steps include their line-search evaluations),
  cold and then warm (second process); the warm one's "ready": process start to the first
  step (imports, weights, targets, programs from the cache).
- sweep rows (per optimizer): K = 1, 4, 8 settings in one
  sweep call against K sequential `stylize` runs, at --sweep-size.

Prints a Markdown table; --json writes everything measured. Synthetic VGG19 weights
(`jaxstyle.random_weights`) have the real network's compute; the images are the README's
example photos, squashed to size x size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

_T0 = time.perf_counter()  # process start, for the warm-start measurement

import numpy as np  # noqa: E402
from procmem import peak_rss_bytes  # noqa: E402  (benchmarks/, beside this file)

HERE = os.path.dirname(os.path.abspath(__file__))
# The PyTorch reference models and baselines (tests/references/), run as the PyTorch side.
REFERENCES = os.path.join(HERE, "..", "tests", "references")
MARKER = "BENCH_JSON "

# VGG19 up to relu5_1: (conv name, output channels) per block; pools between blocks.
_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))
DEFAULT_STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_CONTENT = ("relu4_2",)


# ------------------------------------------------------------------------ analytic FLOPs


def _conv_plan(height: int, width: int, layers) -> list[dict]:
    """The convolutions the objective runs, up to the deepest loss layer, with their sizes."""
    deepest = max(layers, key=_layer_key)
    plan, cin, h, w = [], 3, height, width
    for b, (cout, depth) in enumerate(_BLOCKS, 1):
        for i in range(1, depth + 1):
            plan.append({"name": f"conv{b}_{i}", "h": h, "w": w, "cin": cin, "cout": cout})
            cin = cout
            if f"relu{b}_{i}" == deepest:
                return plan
        h, w = h // 2, w // 2  # 2x2 VALID pooling
    return plan


def _layer_key(name: str) -> tuple[int, int]:
    """relu{b}_{i} -> (b, i): forward order of the loss layers."""
    b, i = name[4:].split("_")
    return int(b), int(i)


def objective_flops(height: int, width: int, *, style_layers=DEFAULT_STYLE,
                    content_layers=DEFAULT_CONTENT, gram_backward_matmuls: int = 1) -> dict:
    """Analytic FLOPs of one value_and_grad of the objective with respect to the image.

    Counted (multiply-adds as 2 FLOPs), for each 3x3 'SAME' conv on an (h, w) map:
      forward:             2 * h * w * 9 * Cin * Cout
      backward, input:     2 * h * w * 9 * Cin * Cout  (transposed conv: d loss / d input)
      backward, weights:   0  (the weights are constants; only the image is differentiated)
    Every conv up to the deepest loss layer needs its input gradient, conv1_1 included (its
    input is the image). For each style layer, F (M = h*w, N channels):
      Gram forward:        2 * M * N^2            (G = F^T F, the full N x N product)
      Gram backward:       gram_backward_matmuls * 2 * M * N^2   (d E / d F = 2c F (D + D^T),
                           D = G - A: one (M, N) x (N, N) product with jaxstyle's custom
                           JVP; plain autodiff of the einsum forms F D and F D^T: 2)
    Not counted (together well under 1% at these sizes): bias adds, ReLUs and their masks,
    pooling, the content and TV losses, preprocessing.

    "total" counts every tap of every window, zero padding included (the usual convention,
    and what direct convolution kernels execute); "total_valid_taps" counts only taps inside
    the feature map, (3h - 2)(3w - 2) per channel pair instead of 9hw, which is what XLA's
    cost analysis reports.
    """
    plan = _conv_plan(height, width, tuple(style_layers) + tuple(content_layers))
    conv_fwd = sum(2 * c["h"] * c["w"] * 9 * c["cin"] * c["cout"] for c in plan)
    conv_bwd = conv_fwd
    conv_valid = sum(2 * (3 * c["h"] - 2) * (3 * c["w"] - 2) * c["cin"] * c["cout"]
                     for c in plan)
    gram_fwd = 0
    shapes = {f"relu{c['name'][4:]}": (c["h"] * c["w"], c["cout"]) for c in plan}
    for name in style_layers:
        m, n = shapes[name]
        gram_fwd += 2 * m * n * n
    gram_bwd = gram_backward_matmuls * gram_fwd
    return {
        "conv_forward": conv_fwd,
        "conv_backward_input": conv_bwd,
        "gram_forward": gram_fwd,
        "gram_backward": gram_bwd,
        "total": conv_fwd + conv_bwd + gram_fwd + gram_bwd,
        "total_valid_taps": 2 * conv_valid + gram_fwd + gram_bwd,
    }


# ------------------------------------------------------------------------------ helpers



def _emit(result: dict) -> int:
    result["load_avg_end"] = _load_avg()
    print(MARKER + json.dumps(result), flush=True)
    return 0


def _load_weights(npz_path: str):
    """The synthetic weights as every jaxstyle run loads a weight file (`load_vgg19`)."""
    import jaxstyle

    return jaxstyle.load_vgg19(npz_path)


_EXAMPLES = os.path.join(HERE, os.pardir, "examples")


def _images(size: int):
    """The README's example pair (cat photo, Hubble field), squashed to size x size.

    Photos, not noise: the per-step cost is the same, but an optimizer run from noise content
    against a noise style starts next to an extremely ill-conditioned minimum, where the zoom
    line search needs many evaluations per iteration (measured at 1024 px: 20, the maximum,
    in the first iteration), which says nothing about real use.
    """
    from jaxstyle.image import load_image, resize_to

    return tuple(resize_to(load_image(os.path.join(_EXAMPLES, name)), (size, size))
                 for name in ("chelsea.jpg", "hubble_deep_field.jpg"))


def _setup_jax(args) -> dict:
    """XLA flags (before the backend starts), then the persistent cache. Returns what was set."""
    from jaxstyle import runtime

    flags = runtime.set_xla_cpu_flags() if args.xla_flags else os.environ.get("XLA_FLAGS", "")
    cache = runtime.enable_compile_cache(args.cache_dir) if args.cache_dir else None
    return {"xla_flags": flags, "cache_dir": None if cache is None else str(cache)}


def _cache_hit_counter() -> list:
    from jax import monitoring

    hits: list = []
    monitoring.register_event_listener(
        lambda event, **kw: hits.append(event)
        if event == "/jax/compilation_cache/cache_hits" else None)
    return hits


def _device_memory(device) -> dict:
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - CPU devices may not implement it
        stats = {}
    return {k: stats[k] for k in ("peak_bytes_in_use", "bytes_in_use") if k in stats}


# ------------------------------------------------------------------------------ workers


def _layers(args) -> dict:
    """StyleConfig's layer fields from --style-layers and --content-layers."""
    return {"style_layers": tuple(args.style_layers.split(",")),
            "content_layers": tuple(args.content_layers.split(","))}


def worker_objective(args) -> int:
    """One size: (cold or warm) compile, steps, peak memory; timings from process start."""
    t = {"start_to_main_s": time.perf_counter() - _T0}
    t0 = time.perf_counter()
    setup = _setup_jax(args)
    import jax
    import jax.numpy as jnp

    import jaxstyle
    from jaxstyle.losses import compute_targets, total_loss

    hits = _cache_hit_counter()
    t["import_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    params = _load_weights(args.weights_npz).params
    jax.block_until_ready(params)
    t["weights_s"] = time.perf_counter() - t0

    config = jaxstyle.StyleConfig(**_layers(args))
    spec = config.loss_spec("caffe")
    if args.dtype != "float32":
        spec = _with_dtype(spec, args.dtype)
    content, style = _images(args.size)
    content, style = jnp.asarray(content), jnp.asarray(style)
    blend = jnp.ones((1,), jnp.float32)

    t0 = time.perf_counter()
    targets_exe = compute_targets.lower(params, content, [style], blend, spec=spec).compile()
    t["targets_compile_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    targets = jax.block_until_ready(targets_exe(params, content, [style], blend))
    t["targets_s"] = time.perf_counter() - t0
    loss_weights = config.loss_weights

    step = jax.jit(jax.value_and_grad(total_loss, argnums=3, has_aux=True),
                   static_argnames="spec")
    image = content
    t0 = time.perf_counter()
    lowered = step.lower(params, targets, loss_weights, image, spec=spec)
    t["lower_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    exe = lowered.compile()
    t["compile_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    (loss, _), grad = jax.block_until_ready(exe(params, targets, loss_weights, image))
    t["first_step_s"] = time.perf_counter() - t0
    t["time_to_first_step_s"] = time.perf_counter() - _T0
    # Ready to step: everything before the first step. Overhead: that minus the targets'
    # computation (two forward passes: work any implementation does), i.e. interpreter and
    # imports, weight loading, tracing, lowering and compiling (or loading from the cache).
    t["ready_s"] = t["time_to_first_step_s"] - t["first_step_s"]
    t["startup_overhead_s"] = t["ready_s"] - t["targets_s"]

    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        jax.block_until_ready(exe(params, targets, loss_weights, image))
        times.append(time.perf_counter() - t0)

    try:
        xla_flops = float(exe.cost_analysis().get("flops", float("nan")))
    except Exception:  # noqa: BLE001 - cost analysis is best effort per backend
        xla_flops = float("nan")
    device = jax.devices()[0]
    return _emit({
        "size": args.size,
        "backend": jax.default_backend(),
        "device": str(device.device_kind),
        "dtype": args.dtype,
        **setup,
        **t,
        "cache_hits": len(hits),
        "step_times_s": times,
        "step_s": statistics.median(times) if times else t["first_step_s"],
        "loss": float(loss),
        "grad_norm": float(jnp.linalg.norm(grad)),
        "xla_cost_analysis_flops": xla_flops,
        "peak_rss_bytes": peak_rss_bytes(),
        "device_memory": _device_memory(device),
    })


def _with_dtype(spec, dtype: str):
    """The spec with its compute dtype set (LossSpec.compute_dtype, when the field exists)."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(spec)}
    if "compute_dtype" not in fields:
        raise SystemExit(f"--dtype {dtype}: this jaxstyle's LossSpec has no compute_dtype")
    return dataclasses.replace(spec, compute_dtype=dtype)


def worker_peak(args) -> int:
    """Float32 matmul throughput: the best of several n x n jnp.dot calls (FLOPs 2 n^3)."""
    _setup_jax(args)
    import jax
    import jax.numpy as jnp

    best = {}
    for n in [int(v) for v in args.ks.split(",")]:
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        dot = jax.jit(jnp.dot)
        jax.block_until_ready(dot(a, a))
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            jax.block_until_ready(dot(a, a))
            times.append(time.perf_counter() - t0)
        best[n] = 2.0 * n**3 / min(times)
    return _emit({"matmul_flops_per_s": max(best.values()),
                  "by_size": {str(k): v for k, v in best.items()},
                  "backend": jax.default_backend()})


def worker_optim(args) -> int:
    """A full stylize run (compile + --steps iterations), cold or warm from the cache."""
    t = {"start_to_main_s": time.perf_counter() - _T0}
    setup = _setup_jax(args)
    import jax

    import jaxstyle

    hits = _cache_hit_counter()
    weights = _load_weights(args.weights_npz)
    content, style = _images(args.size)
    config = jaxstyle.StyleConfig(optimizer=args.optimizer, iterations=args.steps,
                                  **_layers(args))
    stamps = []
    t0 = time.perf_counter()
    result = jaxstyle.stylize(content, style, weights=weights, config=config,
                              callback=lambda p: stamps.append(time.perf_counter()),
                              callback_every=1)
    wall = time.perf_counter() - t0
    timings = {k: float(v) for k, v in dict(result.timings).items()}
    # Ready: process start until stylize dispatched its first step (imports, weight file,
    # compile or cache load; the targets are computed meanwhile). First step: until the
    # first step is done (targets, the initial evaluation and one step included).
    t["ready_s"] = t0 - _T0 + timings["setup_s"]
    t["first_step_s"] = stamps[0] - _T0
    return _emit({
        "size": args.size,
        "optimizer": args.optimizer,
        "iterations": args.steps,
        "backend": jax.default_backend(),
        **setup,
        **t,
        "stylize_wall_s": wall,
        "timings": timings,
        "step_s": float(np.median(np.diff(stamps))) if len(stamps) > 1 else float("nan"),
        "time_to_result_s": time.perf_counter() - _T0,
        "cache_hits": len(hits),
        "final_loss": float(result.history["total"][-1]),
        "peak_rss_bytes": peak_rss_bytes(),
        "device_memory": _device_memory(jax.devices()[0]),
    })


def worker_sweep(args) -> int:
    """K settings in one jaxstyle.sweep call against K sequential stylize runs, K in --ks."""
    setup = _setup_jax(args)
    import jax

    import jaxstyle

    weights = _load_weights(args.weights_npz)
    content, style = _images(args.size)
    config = jaxstyle.StyleConfig(optimizer=args.optimizer, iterations=args.steps,
                                  **_layers(args))
    ks = [int(k) for k in args.ks.split(",")]
    style_weights = np.geomspace(1e2, 1e4, max(ks)).astype(np.float32)

    # Sequential: one stylize per setting. The first run compiles; report it apart and time
    # the rest (same program: loss weights are traced).
    seq = []
    for k in range(max(ks) + 1):
        lw = jaxstyle.LossWeights.of(1.0, float(style_weights[max(k - 1, 0)]), 0.0)
        t0 = time.perf_counter()
        jaxstyle.stylize(content, style, weights=weights, config=config, loss_weights=lw,
                         callback_every=args.steps)
        seq.append(time.perf_counter() - t0)
    seq_first, seq_runs = seq[0], seq[1:]

    rows = []
    for k in ks:
        lw = jaxstyle.LossWeights.of(np.ones(k), style_weights[:k], np.zeros(k))
        walls = []
        for _ in range(2):  # the first call compiles for this K; the second is steady state
            t0 = time.perf_counter()
            res = jaxstyle.sweep(content, style, weights=weights, config=config,
                                 loss_weights=lw)
            walls.append(time.perf_counter() - t0)
        sequential = float(sum(seq_runs[:k]))
        rows.append({"k": k, "sweep_first_s": walls[0], "sweep_s": walls[1],
                     "sequential_s": sequential, "speedup": sequential / walls[1],
                     "settings_per_s": k / walls[1],
                     "batch_size": getattr(res, "batch_size", None),
                     "timings": {a: float(b) for a, b in dict(getattr(res, "timings", {})
                                                              ).items()}})
    return _emit({
        "size": args.size, "optimizer": args.optimizer, "iterations": args.steps,
        "backend": jax.default_backend(), **setup, "sequential_first_run_s": seq_first,
        "sequential_run_s": seq_runs, "rows": rows, "peak_rss_bytes": peak_rss_bytes(),
    })


def worker_profile(args) -> int:
    """Where the time goes: the compiled objective step, traced op by op.

    XLA CPU records each executed op when --xla_cpu_enable_xprof_traceme is on; the ops of
    `--steps` traced steps are summed over threads and grouped by what they compute (read
    from the optimized HLO): each layer's forward convolution, the backward (input-gradient)
    convolutions by shape, Gram products, kernel flips for the backward, elementwise fusions.
    Thread time, so it adds up to about (threads x step time) on an idle machine.
    """
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_enable_xprof_traceme=true").strip()
    setup = _setup_jax(args)
    import collections
    import glob
    import re

    import jax
    import jax.numpy as jnp

    import jaxstyle
    from jaxstyle.objective import prepare_targets, total_loss

    try:
        from jax._src.lib import _profile_data
    except ImportError:
        return _emit({"error": "this jax has no jax._src.lib._profile_data to read traces"})
    weights = _load_weights(args.weights_npz)
    content, style = _images(args.size)
    config = jaxstyle.StyleConfig()
    spec, targets = prepare_targets(weights, content, style, config)
    step = jax.jit(jax.value_and_grad(total_loss, argnums=3, has_aux=True),
                   static_argnames="spec")
    x = jnp.asarray(content)
    exe = step.lower(weights.params, targets, config.loss_weights, x, spec=spec).compile()
    for _ in range(2):
        jax.block_until_ready(exe(weights.params, targets, config.loss_weights, x))
    trace_dir = tempfile.mkdtemp(prefix="jaxstyle-trace-")
    try:
        t0 = time.perf_counter()
        with jax.profiler.trace(trace_dir):
            for _ in range(args.steps):
                jax.block_until_ready(exe(weights.params, targets, config.loss_weights, x))
        wall = (time.perf_counter() - t0) / args.steps
        (path,) = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
        data = _profile_data.ProfileData.from_file(path)
        per_op: collections.Counter = collections.Counter()
        for plane in data.planes:
            for line in plane.lines:
                for ev in line.events:
                    per_op[ev.name] += ev.duration_ns
    finally:
        shutil.rmtree(trace_dir, ignore_errors=True)

    shapes_to_layers: dict = collections.defaultdict(list)
    for c in _conv_plan(args.size, args.size, DEFAULT_STYLE + DEFAULT_CONTENT):
        shapes_to_layers[(c["h"], c["w"], c["cin"])].append(c["name"])
    groups: collections.Counter = collections.Counter()
    hlo = exe.as_text()
    for line in hlo[hlo.index("ENTRY"):].splitlines():
        m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (\S+) ([\w\-]+)\((.*)", line)
        if not m or m.group(1) not in per_op:
            continue
        name, shape, op, rest = m.groups()
        kernel = re.search(r"params__(conv\d_\d)____kernel", rest)
        dims = tuple(int(d) for d in re.findall(r"\d+", shape.split("{")[0].partition("[")[2]))
        if op == "convolution" or "ynn_fusion" in name or "xnn_fusion" in name:
            if kernel:
                group = f"conv forward {kernel.group(1)}"
            elif len(dims) == 4 and dims[1:] in shapes_to_layers:
                group = "conv backward " + "/".join(shapes_to_layers[dims[1:]])
            elif len(dims) == 2:
                group = "Gram backward products"
            else:
                group = "loss reductions"
        elif op == "dot" or name.startswith("dot"):
            group = "Gram forward products"
        elif "transpose" in name or "reverse" in name:
            group = "kernel flips for the backward"
        else:
            group = "elementwise fusions (bias, ReLU, pooling, losses)"
        groups[group] += per_op[name]
    total = sum(groups.values())
    rows = [{"op": k, "ms_per_step": v / 1e6 / args.steps, "share": v / total}
            for k, v in groups.most_common()]
    return _emit({"size": args.size, "backend": jax.default_backend(), **setup,
                  "step_wall_s": wall, "thread_ms_per_step": total / 1e6 / args.steps,
                  "rows": rows})


WORKERS = {"objective": worker_objective, "peak": worker_peak, "optim": worker_optim,
           "sweep": worker_sweep, "profile": worker_profile}


# --------------------------------------------------------------------------- orchestrator


def _run_worker(kind: str, argv: list[str], timeout: float) -> dict:
    """Run one worker in a fresh interpreter; its last MARKER line is the result.

    The workers get the cache directory as an argument, so JAXSTYLE_NO_COMPILE_CACHE (which
    would turn the measured cache off) is removed from their environment.
    """
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, *argv]
    env = {k: v for k, v in os.environ.items() if k != "JAXSTYLE_NO_COMPILE_CACHE"}
    return _run_json(cmd, timeout, env)


def _run_json(cmd: list[str], timeout: float, env=None, marker: str = MARKER) -> dict:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(marker or "{"):
            out = json.loads(line[len(marker):])
            out["process_wall_s"] = wall
            return out
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


# jax backend -> the PyTorch device of its baseline.
_TORCH_DEVICE = {"cpu": "cpu", "gpu": "cuda"}


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _write_weights(path: str) -> None:
    """The synthetic weights as a jaxstyle-format .npz, read by every worker."""
    import jaxstyle

    jaxstyle.save_weights(jaxstyle.random_weights(0), path)


def _load_avg() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def run_benchmark(args) -> dict:
    sizes = [int(s) for s in args.sizes.split(",") if s]
    optimizers = [o for o in args.optimizers.split(",") if o]
    work = tempfile.mkdtemp(prefix="jaxstyle-bench-")
    weights_npz = os.path.join(work, "weights.npz")
    _write_weights(weights_npz)
    common = ["--weights-npz", weights_npz, "--dtype", args.dtype, "--style-layers",
              args.style_layers, "--content-layers", args.content_layers]
    if not args.xla_flags:
        common.append("--no-xla-flags")
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not args.silent else (
        lambda msg: None)
    report: dict = {
        "argv": sys.argv[1:],
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "python": platform.python_version(), "threads": _threads(),
                    "load_avg_start": _load_avg()},
        "objective": [], "optimizers": [], "sweeps": [], "notes": [],
    }
    try:
        import jax

        report["machine"]["jax"] = jax.__version__
        log("measuring matmul peak")
        peak = _run_worker("peak", ["--steps", "3", "--ks", args.matmul_sizes, *common],
                           args.timeout)
        report["matmul_peak"] = peak
        peak_flops = peak.get("matmul_flops_per_s")
        use_torch = args.torch and _torch_available()
        if args.torch and not use_torch:
            report["notes"].append("torch not importable: no PyTorch baseline")
        for size in sizes:
            cache = os.path.join(work, f"cache-{size}")
            flags = ["--size", str(size), "--steps", str(args.steps), *common]
            log(f"{size} px: objective, cold")
            cold = _run_worker("objective", [*flags, "--cache-dir", cache], args.timeout)
            log(f"{size} px: objective, warm (second process)")
            warm = _run_worker("objective", [*flags, "--cache-dir", cache], args.timeout)
            row = {"size": size, "cold": cold, "warm": warm,
                   "flops": objective_flops(size, size, **_layers(args))}
            if "step_s" in cold:
                steps = [*cold["step_times_s"], *warm.get("step_times_s", [])]
                row["step_s"] = statistics.median(steps)
                row["flops_per_s"] = row["flops"]["total"] / row["step_s"]
                if peak_flops:
                    row["fraction_of_matmul_peak"] = row["flops_per_s"] / peak_flops
            # The baseline runs where jax runs (a jax GPU against a CPU PyTorch would be no
            # comparison): CPU for cpu, CUDA for gpu, none for other backends.
            torch_device = _TORCH_DEVICE.get(cold.get("backend", "cpu"))
            if use_torch and torch_device is None:
                report["notes"].append(f"no PyTorch baseline on the {cold['backend']} backend")
            elif use_torch:
                log(f"{size} px: pytorch ({torch_device})")
                images = os.path.join(work, f"images-{size}.npz")  # the photos jax steps on
                np.savez(images, **dict(zip(("content", "style"), _images(size), strict=True)))
                tcmd = [sys.executable, os.path.join(REFERENCES, "torch_gatys.py"), "--size",
                        str(size), "--steps", str(args.steps), "--threads", str(_threads()),
                        "--weights-npz", weights_npz, "--device", torch_device,
                        "--images", images]
                row["pytorch"] = _run_json(tcmd, args.timeout, marker="")
                if "step_s" in row and "step_s" in row["pytorch"]:
                    row["ratio_jax_over_torch"] = row["step_s"] / row["pytorch"]["step_s"]
            report["objective"].append(row)
            for opt in optimizers:
                ocache = os.path.join(work, f"cache-{size}-{opt}")
                oflags = ["--size", str(size), "--steps", str(args.opt_steps), "--optimizer",
                          opt, "--cache-dir", ocache, *common]
                log(f"{size} px: stylize {opt}, cold and warm")
                report["optimizers"].append({
                    "size": size, "optimizer": opt,
                    "cold": _run_worker("optim", oflags, args.timeout),
                    "warm": _run_worker("optim", oflags, args.timeout)})
        if args.sweep_ks:
            for opt in optimizers:
                log(f"sweep {opt} at {args.sweep_size} px, K = {args.sweep_ks}")
                report["sweeps"].append(_run_worker(
                    "sweep", ["--size", str(args.sweep_size), "--steps", str(args.sweep_steps),
                              "--optimizer", opt, "--ks", args.sweep_ks,
                              "--cache-dir", os.path.join(work, "cache-sweep"), *common],
                    args.timeout * 2))
    finally:
        report["machine"]["load_avg_end"] = _load_avg()
        shutil.rmtree(work, ignore_errors=True)
    return report


def _fmt(v, spec=".2f", scale=1.0, suffix=""):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v * scale:{spec}}{suffix}"


def _peak_memory(worker: dict) -> float | None:
    """A worker's peak memory: the device's peak bytes on GPU/TPU, else the process's RSS."""
    return (worker.get("device_memory", {}).get("peak_bytes_in_use")
            or worker.get("peak_rss_bytes"))


def markdown(report: dict) -> str:
    """The short tables: per-size objective, optimizer runs, sweeps."""
    gb = 1.0 / 2**30
    lines = [
        "| size | compile cold | 2nd process: ready (overhead, compile) | PyTorch ready "
        "| step | PyTorch step "
        "| jax/torch | peak RSS jax cold/warm | peak RSS torch | GFLOP/step | GFLOP/s "
        "| % matmul peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["objective"]:
        cold, warm, pt = row["cold"], row["warm"], row.get("pytorch", {})
        if "error" in cold:
            lines.append(f"| {row['size']} | error: {cold['error']} |" + " |" * 10)
            continue
        mem_c, mem_w = _peak_memory(cold), _peak_memory(warm)
        lines.append(
            f"| {row['size']} | {_fmt(cold['compile_s'])} s "
            f"| {_fmt(warm.get('ready_s'))} s ({_fmt(warm.get('startup_overhead_s'))} s, "
            f"{_fmt(warm.get('compile_s'))} s) | {_fmt(pt.get('ready_s'))} s "
            f"| {_fmt(row.get('step_s'), '.3f')} s | {_fmt(pt.get('step_s'), '.3f')} s "
            f"| {_fmt(row.get('ratio_jax_over_torch'))} "
            f"| {_fmt(mem_c, '.2f', gb)}/{_fmt(mem_w, '.2f', gb)} GiB "
            f"| {_fmt(_peak_memory(pt), '.2f', gb)} GiB "
            f"| {_fmt(row['flops']['total'], '.1f', 1e-9)} "
            f"| {_fmt(row.get('flops_per_s'), '.0f', 1e-9)} "
            f"| {_fmt(row.get('fraction_of_matmul_peak'), '.0f', 100)} |")
    peak = report.get("matmul_peak", {}).get("matmul_flops_per_s")
    lines.append("")
    backends = {row["cold"].get("backend") for row in report["objective"]} - {None, "cpu"}
    if backends:
        lines.append(f"(peak RSS columns: device memory on {', '.join(sorted(backends))}"
                     + ("; PyTorch's from its CUDA allocator)" if "gpu" in backends else ")"))
    lines.append(f"float32 matmul peak (best jnp.dot): {_fmt(peak, '.0f', 1e-9)} GFLOP/s; "
                 f"load average {report['machine'].get('load_avg_start')} -> "
                 f"{report['machine'].get('load_avg_end')}")
    if report["optimizers"]:
        lines += ["", "| size | optimizer | iterations | compile cold | compile warm "
                  "| per iteration | 2nd process: ready, first step, result at | peak RSS |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in report["optimizers"]:
            c, w = r["cold"], r["warm"]
            if "error" in c:
                lines.append(f"| {r['size']} | {r['optimizer']} | error: {c['error']} |"
                             + " |" * 5)
                continue
            lines.append(
                f"| {r['size']} | {r['optimizer']} | {c['iterations']} "
                f"| {_fmt(c['timings'].get('compile_s'))} s "
                f"| {_fmt(w.get('timings', {}).get('compile_s'))} s "
                f"| {_fmt(c['step_s'], '.3f')} s | {_fmt(w.get('ready_s'))} s, "
                f"{_fmt(w.get('first_step_s'))} s, {_fmt(w.get('time_to_result_s'))} s "
                f"| {_fmt(_peak_memory(c), '.2f', gb)} GiB |")
    for s in report["sweeps"]:
        if "error" in s:
            lines += ["", f"sweep: error: {s['error']}"]
            continue
        lines += ["", f"sweep, {s['optimizer']}, {s['size']} px, {s['iterations']} iterations:",
                  "| K | sweep | K sequential runs | speedup | settings/s | batch |",
                  "|---|---|---|---|---|---|"]
        for r in s["rows"]:
            lines.append(f"| {r['k']} | {_fmt(r['sweep_s'])} s | {_fmt(r['sequential_s'])} s "
                         f"| {_fmt(r['speedup'])}x | {_fmt(r['settings_per_s'], '.2f')} "
                         f"| {r.get('batch_size')} |")
    for note in report["notes"]:
        lines.append(f"\nnote: {note}")
    return "\n".join(lines)


def profile_markdown(prof: dict) -> str:
    """Where the step's thread time goes, grouped (see worker_profile)."""
    if "error" in prof:
        return f"profile: error: {prof['error']}"
    lines = [f"profile of one objective step at {prof['size']} px ({prof['backend']}): "
             f"{prof['step_wall_s']:.3f} s wall, {prof['thread_ms_per_step']:.0f} ms thread "
             f"time; load average {prof.get('load_avg')}",
             "| op group | thread ms/step | share |", "|---|---|---|"]
    for r in prof["rows"]:
        lines.append(f"| {r['op']} | {r['ms_per_step']:.1f} | {100 * r['share']:.1f}% |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="256,512,1024", help="comma-separated square sizes")
    p.add_argument("--optimizers", default="lbfgs,adam")
    p.add_argument("--steps", type=int, default=5, help="timed objective steps per process")
    p.add_argument("--opt-steps", type=int, default=10, help="stylize iterations per run")
    p.add_argument("--sweep-ks", default="1,4,8", help="sweep sizes K ('' for none)")
    p.add_argument("--sweep-size", type=int, default=128)
    p.add_argument("--sweep-steps", type=int, default=10)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                   help="compute dtype of the network (LossSpec.compute_dtype)")
    p.add_argument("--no-xla-flags", dest="xla_flags", action="store_false",
                   help="do not add jaxstyle.runtime.CPU_FLAGS to XLA_FLAGS")
    p.add_argument("--no-torch", dest="torch", action="store_false")
    p.add_argument("--matmul-sizes", default="1024,2048,4096",
                   help="n of the n x n float32 matmuls timed for the peak")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per subprocess")
    p.add_argument("--json", dest="json_path", default=None)
    p.add_argument("--style-layers", default=",".join(DEFAULT_STYLE),
                   help="the objective's style layers (default: the network's)")
    p.add_argument("--content-layers", default=",".join(DEFAULT_CONTENT),
                   help="the objective's content layers (default: the network's)")
    p.add_argument("--quick", action="store_true",
                   help="tiny and fast: size 32, 2 steps, sweep K=1,2 at 32 px, the VGG's "
                        "first two blocks as layers")
    p.add_argument("--silent", action="store_true", help="no progress lines on stderr")
    p.add_argument("--profile", type=int, default=None, metavar="SIZE",
                   help="only profile one objective step at SIZE px: where the time goes")
    # Worker-only options.
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=256, help=argparse.SUPPRESS)
    p.add_argument("--optimizer", default="lbfgs", help=argparse.SUPPRESS)
    p.add_argument("--ks", default="1,4,8", help=argparse.SUPPRESS)
    p.add_argument("--weights-npz", default=None, help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        if args.weights_npz is None:
            raise SystemExit("--worker needs --weights-npz")
        return WORKERS[args.worker](args)
    if args.profile:
        work = tempfile.mkdtemp(prefix="jaxstyle-bench-")
        try:
            npz = os.path.join(work, "weights.npz")
            _write_weights(npz)
            flags = [] if args.xla_flags else ["--no-xla-flags"]
            prof = _run_worker("profile", ["--size", str(args.profile), "--steps",
                                          str(args.steps), "--weights-npz", npz, *flags],
                               args.timeout)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        prof["load_avg"] = _load_avg()
        if args.json_path:
            with open(args.json_path, "w") as fh:
                json.dump(prof, fh, indent=1)
        print(profile_markdown(prof))
        return 0
    if args.quick:
        args.sizes, args.steps, args.opt_steps = "32", 2, 2
        args.matmul_sizes = "512"
        if args.sweep_ks == "1,4,8":  # the default: shrink it; an explicit value stays
            args.sweep_ks = "1,2"
        args.sweep_size, args.sweep_steps = 32, 2
        args.style_layers, args.content_layers = "relu1_1,relu2_1", "relu2_1"
    report = run_benchmark(args)
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(report, fh, indent=1)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
