"""High resolution: peak memory and time per step by size, memory options, pyramids.

    python benchmarks/highres.py sizes --sizes 512,1024,1536,2048 --iterations 2
    python benchmarks/highres.py estimate --sizes 2048,3072,4096   # compile only, no run
    python benchmarks/highres.py options --size 1024 --steps 3     # remat / Gram chunks / flag
    python benchmarks/highres.py pyramid --scales 256,512,1024 --scale-iterations 2,2,2
    (any of them: --json OUT.json; --quick runs tiny sizes in seconds)

Every measurement runs in its own fresh interpreter, so peak RSS (VmHWM from /proc) belongs to
one configuration. Synthetic VGG19 weights (`jaxstyle.random_weights(0)`): the real network's
compute and memory, but the images they make are not stylized in any meaningful sense.
Images: `sizes`, `estimate` and `options` use square S x S smooth random images (the most
pixels a longer side S allows). The workers set the XLA CPU flags of
`jaxstyle.runtime.CPU_FLAGS` (what the CLI sets: the memory-optimized scheduler, YNNPACK
fusions limited to single convolutions and dots) unless told not to.

- sizes: `jaxstyle.stylize` for --iterations steps at each size (default L-BFGS without
  line search: one loss and gradient evaluation per step; zoom L-BFGS steps vary in cost).
  Peak RSS, XLA's own account of the step program (arguments + temporaries,
  `Compiled.memory_analysis()`), compile time and the wall time of every step. Before
  running, each worker compiles first and skips the run when the program's memory does not
  fit in MemAvailable (with a margin).
- estimate: the same programs compiled (not run) at larger sizes: XLA's memory account,
  plus the measured process overhead, predicts the peak RSS, hence the largest size that fits.
- options: one value_and_grad of the objective (what every optimizer step costs) at one size,
  A/B in separate processes: baseline; jax.checkpoint per VGG block with the block's losses
  inside (so no block output has to be kept); Gram matrices accumulated over row chunks in
  float32; the default XLA scheduler instead of the memory-optimized one; no XLA flags.
  Then the step time of baseline, remat and Gram chunks compiled in one process with their
  steps interleaved (machine load hits all alike).
- pyramid: `jaxstyle.stylize` with `scales`, RSS at the end of every stage, then the same
  run again counting XLA compilations (should be 0).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time

import numpy as np
from procmem import mem_available, proc_status  # benchmarks/, beside this file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MARKER = "HIGHRES_JSON "
GIB = 2.0**30
# Memory the OS and other processes keep beyond a run's own need, when deciding to skip.
MARGIN_BYTES = 1.5 * GIB


# ------------------------------------------------------------------------------ helpers



def smooth_image(seed: int, height: int, width: int) -> np.ndarray:
    """A smooth random (H, W, 3) float32 image in [0, 1] (bilinear upsampling of noise)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    coarse = rng.random((max(2, height // 16), max(2, width // 16), 3), dtype=np.float32)
    img = jax.image.resize(jnp.asarray(coarse), (height, width, 3), "linear")
    return np.clip(np.asarray(img) + 0.03 * rng.standard_normal((height, width, 3)), 0, 1
                   ).astype(np.float32)


def memory_account(compiled) -> dict:
    """XLA's buffer account of a compiled program, in bytes (peak = args + out - alias + temp)."""
    m = compiled.memory_analysis()
    out = {k: int(getattr(m, k + "_size_in_bytes")) for k in
           ("argument", "output", "alias", "temp", "generated_code")}
    out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


def _emit(result: dict) -> int:
    print(MARKER + json.dumps(result), flush=True)
    return 0


def _setup(args) -> str:
    """XLA flags before JAX starts: `jaxstyle.runtime.CPU_FLAGS` (what the CLI sets), less
    the memory-optimized scheduler with --default-scheduler, none with --no-flags."""
    from jaxstyle import runtime

    flags = runtime.CPU_FLAGS
    if getattr(args, "default_scheduler", False):
        flags = tuple(f for f in flags if "scheduler_type" not in f)
    if not getattr(args, "no_flags", False):
        runtime.set_xla_cpu_flags(flags)
    return os.environ.get("XLA_FLAGS", "")


def _baseline(out: dict) -> None:
    """RSS once JAX, the weights and the images are loaded: what every size pays."""
    out["baseline_rss_bytes"] = proc_status("VmRSS")


# ------------------------------------------------------------- objective variants (options)


def _conv(p, x):
    """nn.Conv(padding="SAME") of the VGG19 module, as a plain function of its params (with
    the module's own convolution kernel, so only remat differs)."""
    from jaxstyle.kernels import conv3x3_same

    return conv3x3_same(x, p["kernel"]) + p["bias"].reshape(1, 1, 1, -1)


def remat_total_loss(params, targets, loss_weights, image, spec):
    """`total_loss` with jax.checkpoint around each VGG block AND the losses of its layers.

    Block b maps (its params, targets, the previous pooled output) to (its pooled output,
    its content loss, its style loss), so the forward pass keeps only the block inputs and
    the backward pass recomputes one block at a time. (Checkpointing the network alone,
    measured, cannot help: the losses keep every block's outputs alive.) Max pooling,
    float32 only: an experiment, not a library path.
    """
    import jax
    import jax.numpy as jnp

    from jaxstyle import vgg
    from jaxstyle.kernels import max_pool_2x2
    from jaxstyle.losses import content_loss, style_layer_loss, total_variation

    wanted = set(spec.layers)
    deepest = max(spec.layers, key=vgg.layer_depth)
    style_w = dict(zip(spec.style_layers, spec.style_layer_weights, strict=True))
    zero = jnp.zeros((), jnp.float32)

    def block(bparams, content_t, grams, x, *, b):
        acts = {}
        for i in range(1, vgg.BLOCK_DEPTHS[b - 1] + 1):
            x = _conv(bparams[f"conv{b}_{i}"], x)
            acts[f"conv{b}_{i}"] = x
            x = jax.nn.relu(x)
            acts[f"relu{b}_{i}"] = x
            if f"relu{b}_{i}" == deepest or f"conv{b}_{i}" == deepest:
                break
        else:
            x = max_pool_2x2(x)
            acts[f"pool{b}"] = x
        lc = sum((content_loss(acts[n][0], content_t[n]) for n in content_t), zero)
        ls = sum((style_w[n] * style_layer_loss(acts[n][0], grams[n]) for n in grams), zero)
        return x, lc, ls

    x = vgg.preprocess(image, spec.convention)[None]
    l_c = l_s = zero
    last_block = int(deepest[4])
    for b in range(1, last_block + 1):
        names = [n for n in wanted if int(n[4]) == b]
        bparams = {n: params[n] for n in params if int(n[4]) == b}
        content_t = {n: targets.content[n] for n in names if n in spec.content_layers}
        grams = {n: targets.grams[n] for n in names if n in spec.style_layers}
        x, lc, ls = jax.checkpoint(functools.partial(block, b=b))(bparams, content_t, grams, x)
        l_c, l_s = l_c + lc, l_s + ls
    parts = {"content": l_c, "style": l_s, "tv": total_variation(image, spec.tv_form)}
    total = (loss_weights.content_weight * l_c + loss_weights.style_weight * l_s
             + loss_weights.tv_weight * parts["tv"])
    return total, parts


def gram_chunked(feats, rows: int = 64):
    """G = sum over chunks of `rows` image rows of F_c^T F_c, accumulated in float32 (lax.scan)."""
    import jax
    import jax.numpy as jnp

    h, w, c = feats.shape
    n = -(-h // rows)
    f = jnp.pad(feats, ((0, n * rows - h), (0, 0), (0, 0))).reshape(n, rows * w, c)

    def body(g, fc):
        return g + jnp.einsum("mi,mj->ij", fc, fc, preferred_element_type=jnp.float32), None

    g, _ = jax.lax.scan(body, jnp.zeros((c, c), jnp.float32), f)
    return g


def worker_objective(args) -> int:
    """One value_and_grad of the objective at args.size with one variant: memory and time."""
    flags = _setup(args)
    import jax
    import jax.numpy as jnp

    from jaxstyle import losses
    from jaxstyle.losses import compute_targets

    if args.variant == "gram-chunk":
        losses.gram_matrix = functools.partial(gram_chunked, rows=args.gram_rows)
    loss_fn = remat_total_loss if args.variant == "remat" else losses.total_loss
    config, weights, spec, content, style, image = _objective_inputs(args.size)
    out: dict = {"kind": "objective", "variant": args.variant, "size": args.size,
                 "xla_flags": flags}
    _baseline(out)
    targets = jax.block_until_ready(
        compute_targets(weights.params, content, [style], jnp.ones((1,), jnp.float32), spec))
    step = jax.jit(jax.value_and_grad(loss_fn, argnums=3, has_aux=True),
                   static_argnames="spec")
    t0 = time.perf_counter()
    exe = step.lower(weights.params, targets, config.loss_weights, image, spec=spec).compile()
    out["compile_s"] = time.perf_counter() - t0
    out["xla_memory"] = memory_account(exe)
    if args.steps == 0:  # compile only: XLA's account, no run (the step columns stay empty)
        out.update(step_s=None, loss=None, grad_norm=None, peak_rss_bytes=proc_status("VmHWM"))
        return _emit(out)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        (loss, _), grad = jax.block_until_ready(
            exe(weights.params, targets, config.loss_weights, image))
        times.append(time.perf_counter() - t0)
    out.update(step_times_s=times, step_s=float(np.median(times[1:] or times)),
               loss=float(loss), grad_norm=float(jnp.linalg.norm(grad)),
               peak_rss_bytes=proc_status("VmHWM"))
    return _emit(out)


def _objective_inputs(size: int):
    """(config, weights, spec, content, style, image) of the objective workers: default
    config, random weights, smooth synthetic size x size images."""
    import jax.numpy as jnp

    import jaxstyle

    config = jaxstyle.StyleConfig()
    weights = jaxstyle.random_weights(0)
    spec = config.loss_spec(weights.convention)
    content, style, image = (jnp.asarray(smooth_image(k, size, size)) for k in range(3))
    return config, weights, spec, content, style, image


def worker_abtime(args) -> int:
    """Step time of several objective variants compiled in ONE process, steps interleaved
    (A B C A B C ...), so machine load hits every variant alike. Memory is not comparable
    here (one process): that is what the separate `objective` workers measure."""
    flags = _setup(args)
    import jax
    import jax.numpy as jnp

    from jaxstyle import losses
    from jaxstyle.losses import compute_targets

    config, weights, spec, content, style, image = _objective_inputs(args.size)
    targets = jax.block_until_ready(
        compute_targets(weights.params, content, [style], jnp.ones((1,), jnp.float32), spec))
    exes, gram = {}, losses.gram_matrix
    for variant in args.variants:
        # Traced at lower(): the patched Gram is baked into this variant's program only.
        losses.gram_matrix = (functools.partial(gram_chunked, rows=args.gram_rows)
                              if variant == "gram-chunk" else gram)
        fn = remat_total_loss if variant == "remat" else losses.total_loss
        step = jax.jit(jax.value_and_grad(fn, argnums=3, has_aux=True), static_argnames="spec")
        exes[variant] = step.lower(weights.params, targets, config.loss_weights, image,
                                   spec=spec).compile()
    losses.gram_matrix = gram
    times: dict = {v: [] for v in args.variants}
    values: dict = {}
    for _ in range(args.steps + 1):  # the first round warms up and is dropped
        for variant, exe in exes.items():
            t0 = time.perf_counter()
            (loss, _), grad = jax.block_until_ready(
                exe(weights.params, targets, config.loss_weights, image))
            times[variant].append(time.perf_counter() - t0)
            values[variant] = (float(loss), float(jnp.linalg.norm(grad)))
    return _emit({"kind": "abtime", "size": args.size, "xla_flags": flags,
                  "step_times_s": {v: t[1:] for v, t in times.items()},
                  "step_s": {v: float(np.median(t[1:])) for v, t in times.items()},
                  "loss_grad_norm": values})


# ------------------------------------------------------------------- stylize at one size


def _compile_programs(weights, content, styles, config):
    """XLA's memory account of a run's init and chunk programs (`jaxstyle.parallel`), compiled
    ahead of time from shapes alone; seconds spent. The run compiles its own afterwards (from
    the persistent cache when it is on)."""
    import jax
    import jax.numpy as jnp

    from jaxstyle import parallel
    from jaxstyle.grids import as_settings
    from jaxstyle.losses import compute_targets

    spec = config.loss_spec(weights.convention)
    opt = config.optimizer_spec()
    t0 = time.perf_counter()
    image = jax.ShapeDtypeStruct(content.shape, jnp.float32)
    style = jax.eval_shape(functools.partial(compute_targets, spec=spec, with_content=False),
                           weights.params, image,
                           [jax.ShapeDtypeStruct(s.shape, jnp.float32) for s in styles],
                           jax.ShapeDtypeStruct((len(styles),), jnp.float32))
    lw = as_settings(config.loss_weights)
    init, chunk = parallel.programs(parallel.settings_mesh(k=1), spec, opt, 1, "content")
    init_fn = init.lower(weights.params, image, style, lw, None, None).compile()
    targets, state, _ = jax.eval_shape(init, weights.params, image, style, lw, None, None)
    chunk_fn = chunk.lower(weights.params, targets, lw, state,
                           jax.ShapeDtypeStruct((), jnp.int32)).compile()
    return [memory_account(init_fn), memory_account(chunk_fn)], time.perf_counter() - t0


def worker_stylize(args) -> int:
    """stylize (L-BFGS) for args.iterations steps at args.size: peak RSS, step times."""
    flags = _setup(args)
    import jaxstyle

    weights = jaxstyle.random_weights(0)
    content = smooth_image(0, args.size, args.size)
    style = smooth_image(1, args.size, args.size)
    config = jaxstyle.StyleConfig(iterations=args.iterations, optimizer=args.optimizer)
    out: dict = {"kind": "stylize", "size": args.size, "optimizer": args.optimizer,
                 "iterations": args.iterations, "xla_flags": flags}
    _baseline(out)
    accounts, compile_s = _compile_programs(weights, content, [style], config)
    out["compile_s"] = compile_s
    out["xla_memory"] = {"init": accounts[0], "chunk": accounts[1]}
    need = max(a["peak"] for a in accounts)
    out["predicted_rss_bytes"] = out["baseline_rss_bytes"] + need
    available = mem_available()
    out["mem_available_bytes"] = available
    if args.compile_only:
        out["peak_rss_bytes"] = proc_status("VmHWM")
        return _emit(out)
    if need + MARGIN_BYTES > available:
        out["skipped"] = (f"needs {need / GIB:.1f} GiB + {MARGIN_BYTES / GIB:.1f} GiB margin, "
                          f"{available / GIB:.1f} GiB available")
        return _emit(out)

    stamps: list[float] = []

    def callback(progress):
        stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    result = jaxstyle.stylize(content, style, weights=weights, config=config,
                              callback=callback, callback_every=1)
    t_end = time.perf_counter()
    # Steps start once the first chunk is dispatched; the first interval also holds the
    # targets and the initial loss and gradient evaluation.
    start = t0 + result.timings["setup_s"]
    intervals = np.diff([start, *stamps]).tolist()
    out.update(
        peak_rss_bytes=proc_status("VmHWM"),
        timings=result.timings,
        wall_s=t_end - t0,
        first_interval_s=intervals[0] if intervals else None,
        step_times_s=intervals[1:],
        step_s=float(np.median(intervals[1:])) if len(intervals) > 1 else None,
        steps=result.steps,
        stopped=result.stopped,
        losses=[float(v) for v in result.history["total"]],
        initial_loss=float(result.initial_losses["total"][0]),
    )
    return _emit(out)


# ------------------------------------------------------------------------------ pyramid


def worker_pyramid(args) -> int:
    """stylize with scales, RSS at every stage's end, then again counting compilations."""
    flags = _setup(args)
    import jaxstyle

    weights = jaxstyle.random_weights(0)
    side = max(args.scales)
    content = smooth_image(0, side, side)
    style = smooth_image(1, side, side)
    config = jaxstyle.StyleConfig(scales=tuple(args.scales),
                                  scale_iterations=tuple(args.scale_iterations),
                                  optimizer=args.optimizer)
    out: dict = {"kind": "pyramid", "scales": args.scales, "optimizer": args.optimizer,
                 "scale_iterations": args.scale_iterations, "xla_flags": flags}
    _baseline(out)
    stages: list[dict] = []
    ends = np.cumsum(args.scale_iterations).tolist()

    def callback(progress):  # RSS at the end of each stage
        if progress.step in ends:
            stages.append({"shape": list(progress.shape), "rss_bytes": proc_status("VmRSS"),
                           "hwm_bytes": proc_status("VmHWM"),
                           "loss": float(progress.losses["total"][0])})

    t0 = time.perf_counter()
    result = jaxstyle.stylize(content, style, weights=weights, config=config,
                              callback=callback, callback_every=1)
    out.update(stages=stages, wall_s=time.perf_counter() - t0, timings=result.timings,
               rss_after_bytes=proc_status("VmRSS"), peak_rss_bytes=proc_status("VmHWM"))
    if args.repeat:
        from jaxstyle.runtime import count_compiles

        with count_compiles() as compiles:
            t0 = time.perf_counter()
            again = jaxstyle.stylize(content, style, weights=weights, config=config)
        out["repeat"] = {"compilations": len(compiles), "wall_s": time.perf_counter() - t0,
                         "timings": again.timings,
                         "same_losses": bool(np.array_equal(again.history["total"],
                                                            result.history["total"]))}
    return _emit(out)


# ------------------------------------------------------------------------------ orchestrator


def run_worker(kind: str, argv: list[str], timeout: float) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "_worker", kind, *argv]
    env = dict(os.environ)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env["JAXSTYLE_NO_COMPILE_CACHE"] = "1"  # measured compile times are cold
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"kind": kind, "argv": argv, "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            res = json.loads(line[len(MARKER):])
            res["process_wall_s"] = time.perf_counter() - t0
            return res
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"kind": kind, "argv": argv, "error": f"exit {proc.returncode}: " + " | ".join(tail)}


def _gib(v) -> str:
    return "-" if v is None else f"{v / GIB:.2f}"


def _sec(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _num(v) -> str:
    return "-" if v is None else f"{v:.6g}"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _machine() -> dict:
    return {"load_avg": list(os.getloadavg()), "mem_available_gib": mem_available() / GIB,
            "cpus": len(os.sched_getaffinity(0))}


def _code_state() -> dict:
    """The commit measured and the package/benchmark files that differ from it."""
    def git(*a):
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT).stdout
    return {"commit": git("rev-parse", "--short", "HEAD").strip(),
            "modified": git("status", "--porcelain", "--", "jaxstyle", "benchmarks").split("\n")}


def cmd_sizes(args) -> tuple[list[dict], str]:
    rows, lines = [], ["| size | peak RSS GiB | XLA chunk program GiB | baseline RSS GiB | "
                       "compile s | first interval s (init eval + step 1) | step s | loss "
                       "initial -> final |", "|---|---|---|---|---|---|---|---|"]
    for size in args.sizes:
        _log(f"sizes: {size} px, load {os.getloadavg()[0]:.1f}, "
             f"{mem_available() / GIB:.1f} GiB available")
        argv = ["--size", str(size), "--iterations", str(args.iterations), "--optimizer",
                args.optimizer] + (["--compile-only"] if args.compile_only else [])
        r = run_worker("stylize", argv, args.timeout)
        r["machine_before"] = _machine()
        rows.append(r)
        if "error" in r:
            lines.append(f"| {size} | error: {r['error']} |")
            continue
        chunk = r["xla_memory"]["chunk"]["peak"]
        loss = (f"{r['initial_loss']:.4g} -> {r['losses'][-1]:.4g}" if r.get("losses")
                else r.get("skipped", "compile only"))
        lines.append(f"| {size} | {_gib(r.get('peak_rss_bytes'))} | {_gib(chunk)} | "
                     f"{_gib(r['baseline_rss_bytes'])} | {_sec(r['compile_s'])} | "
                     f"{_sec(r.get('first_interval_s'))} | {_sec(r.get('step_s'))} | {loss} |")
    return rows, "\n".join(lines)


def cmd_estimate(args) -> tuple[list[dict], str]:
    args.compile_only = True
    rows, _ = cmd_sizes(args)
    total = _total_memory()
    lines = ["| size | XLA init GiB | XLA chunk GiB | predicted RSS GiB | fits in "
             f"{total / GIB:.0f} GiB total |", "|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r.get('size', '?')} | error: {r['error']} |")
            continue
        pred = r["predicted_rss_bytes"]
        lines.append(f"| {r['size']} | {_gib(r['xla_memory']['init']['peak'])} | "
                     f"{_gib(r['xla_memory']['chunk']['peak'])} | {_gib(pred)} | "
                     f"{'yes' if pred + MARGIN_BYTES <= total else 'no'} |")
    return rows, "\n".join(lines)


def _total_memory() -> int:
    with open("/proc/meminfo") as fh:
        return int(fh.readline().split()[1]) * 1024


def cmd_options(args) -> tuple[list[dict], str]:
    variants = [("baseline", []), ("remat", []), ("gram-chunk", []),
                ("default-scheduler", ["--default-scheduler"]), ("no-flags", ["--no-flags"])]
    variants = [v for v in variants if v[0] in args.variants]
    rows = []
    for rep in range(args.repeats):  # interleaved A/B: baseline, remat, ..., baseline, ...
        for name, extra in variants:
            _log(f"options: {name} at {args.size} px (round {rep + 1}), "
                 f"load {os.getloadavg()[0]:.1f}")
            variant = name if name in ("remat", "gram-chunk") else "baseline"
            r = run_worker("objective", ["--size", str(args.size), "--steps", str(args.steps),
                                         "--variant", variant, *extra], args.timeout)
            r["option"], r["round"] = name, rep
            r["machine_before"] = _machine()
            rows.append(r)
    base = [r for r in rows if r.get("option") == "baseline" and "error" not in r]
    lines = ["| option | round | peak RSS GiB | XLA temp GiB | step s | vs baseline (RSS, "
             "step) | loss | grad norm |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['option']} | {r['round']} | error: {r['error']} |")
            continue
        ref = next((b for b in base if b["round"] == r["round"]), base[0] if base else None)
        rel = "-"
        if ref is not None:
            rel = f"{r['peak_rss_bytes'] / ref['peak_rss_bytes'] - 1:+.0%}"
            if r["step_s"] is not None and ref["step_s"] is not None:
                rel += f", {r['step_s'] / ref['step_s'] - 1:+.0%}"
        lines.append(f"| {r['option']} | {r['round']} | {_gib(r['peak_rss_bytes'])} | "
                     f"{_gib(r['xla_memory']['temp'])} | {_sec(r['step_s'])} | {rel} | "
                     f"{_num(r['loss'])} | {_num(r['grad_norm'])} |")
    timed = [v for v in args.variants if v in ("baseline", "remat", "gram-chunk")]
    if args.ab_steps and len(timed) > 1:
        _log(f"options: interleaved step times of {timed} at {args.size} px, "
             f"load {os.getloadavg()[0]:.1f}")
        r = run_worker("abtime", ["--size", str(args.size), "--steps", str(args.ab_steps),
                                  "--variants", ",".join(timed)], args.timeout)
        r["machine_before"] = _machine()
        rows.append(r)
        if "error" in r:
            lines.append(f"\ninterleaved timing error: {r['error']}")
        else:
            ref = r["step_s"][timed[0]]
            lines.append(f"\nstep time, variants compiled in one process, steps interleaved "
                         f"({args.ab_steps} each after a warm-up round):")
            lines += [f"- {v}: {r['step_s'][v]:.2f} s ({r['step_s'][v] / ref - 1:+.0%}), "
                      f"steps {[round(t, 2) for t in r['step_times_s'][v]]}" for v in timed]
    return rows, "\n".join(lines)


def cmd_pyramid(args) -> tuple[list[dict], str]:
    argv = ["--scales", ",".join(map(str, args.scales)), "--scale-iterations",
            ",".join(map(str, args.scale_iterations)), "--optimizer", args.optimizer
            ] + (["--repeat"] if args.repeat else [])
    _log(f"pyramid {args.scales}, load {os.getloadavg()[0]:.1f}")
    r = run_worker("pyramid", argv, args.timeout)
    r["machine_before"] = _machine()
    if "error" in r:
        return [r], f"pyramid error: {r['error']}"
    lines = ["| stage | shape | RSS at its end GiB | peak so far GiB | loss |",
             "|---|---|---|---|---|"]
    for k, s in enumerate(r["stages"]):
        lines.append(f"| {k + 1} | {s['shape'][0]}x{s['shape'][1]} | {_gib(s['rss_bytes'])} | "
                     f"{_gib(s['hwm_bytes'])} | {s['loss']:.5g} |")
    lines.append(f"\nbaseline RSS {_gib(r['baseline_rss_bytes'])} GiB, peak "
                 f"{_gib(r['peak_rss_bytes'])} GiB, wall {r['wall_s']:.1f} s")
    if "repeat" in r:
        rep = r["repeat"]
        lines.append(f"second identical pyramid: {rep['compilations']} compilations, wall "
                     f"{rep['wall_s']:.1f} s, same losses: {rep['same_losses']}")
    return [r], "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--json", help="write the measurements here")
        sp.add_argument("--timeout", type=float, default=3600.0, help="seconds per process")
        sp.add_argument("--quick", action="store_true", help="tiny sizes, for the tests")
        return sp

    s = common(sub.add_parser("sizes", help="stylize per size: peak RSS, step time"))
    s.add_argument("--sizes", type=_ints, default=[512, 1024, 1536, 2048])
    s.add_argument("--iterations", type=int, default=2)
    s.add_argument("--optimizer", default="lbfgs-nols",
                   help="lbfgs-nols (default): one evaluation per step, so the step time is "
                        "the objective's; zoom L-BFGS steps take a varying number")
    s.add_argument("--compile-only", action="store_true")
    s = common(sub.add_parser("estimate", help="compile only: XLA memory at larger sizes"))
    s.add_argument("--sizes", type=_ints, default=[2048, 2560, 3072, 3584, 4096])
    s.add_argument("--iterations", type=int, default=2)
    s.add_argument("--optimizer", default="lbfgs")
    s = common(sub.add_parser("options", help="memory options A/B at one size"))
    s.add_argument("--size", type=int, default=1024)
    s.add_argument("--steps", type=int, default=3)
    s.add_argument("--repeats", type=int, default=2)
    s.add_argument("--variants", type=lambda t: t.split(","),
                   default=["baseline", "remat", "gram-chunk", "default-scheduler",
                            "no-flags"])
    s.add_argument("--ab-steps", type=int, default=3,
                   help="interleaved timing steps per variant in one process (0: none)")
    s = common(sub.add_parser("pyramid", help="stylize with scales: RSS per stage, recompiles"))
    s.add_argument("--scales", type=_ints, default=[256, 512, 1024])
    s.add_argument("--scale-iterations", type=_ints, default=[2, 2, 2])
    s.add_argument("--no-repeat", dest="repeat", action="store_false")
    s.add_argument("--optimizer", default="lbfgs-nols",
                   help="one evaluation per step, so stage times compare (zoom L-BFGS takes "
                        "a varying number)")
    return p


def build_worker_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["objective", "abtime", "stylize", "pyramid"])
    p.add_argument("--size", type=int)
    p.add_argument("--steps", type=int, default=3, help="objective: 0 = compile only")
    p.add_argument("--variant", default="baseline")
    p.add_argument("--gram-rows", type=int, default=64)
    p.add_argument("--default-scheduler", action="store_true")
    p.add_argument("--no-flags", action="store_true")
    p.add_argument("--variants", type=lambda t: t.split(","), default=["baseline"])
    p.add_argument("--iterations", type=lambda t: _ints(t) if "," in t else int(t))
    p.add_argument("--optimizer", default="lbfgs")
    p.add_argument("--compile-only", action="store_true")
    p.add_argument("--scales", type=_ints)
    p.add_argument("--scale-iterations", type=_ints)
    p.add_argument("--repeat", action="store_true")
    return p


WORKERS = {"objective": worker_objective, "abtime": worker_abtime, "stylize": worker_stylize,
           "pyramid": worker_pyramid}
COMMANDS = {"sizes": cmd_sizes, "estimate": cmd_estimate, "options": cmd_options,
            "pyramid": cmd_pyramid}
QUICK = {"sizes": dict(sizes=[64, 96], iterations=2), "estimate": dict(sizes=[64, 128]),
         "options": dict(size=64, steps=2, repeats=1, ab_steps=1),
         "pyramid": dict(scales=[32, 64], scale_iterations=[2, 2])}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_worker":
        args = build_worker_parser().parse_args(argv[1:])
        return WORKERS[args.kind](args)
    args = build_parser().parse_args(argv)
    if args.quick:
        for key, value in QUICK[args.command].items():
            setattr(args, key, value)
    t0 = time.perf_counter()
    machine = _machine()
    rows, table = COMMANDS[args.command](args)
    report = {"command": args.command, "argv": argv, "code": _code_state(),
              "machine_before": machine,
              "machine_after": _machine(), "wall_s": time.perf_counter() - t0, "rows": rows}
    print(table)
    print(f"\nload average before {machine['load_avg']}, after "
          f"{report['machine_after']['load_avg']} ({machine['cpus']} CPUs)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
