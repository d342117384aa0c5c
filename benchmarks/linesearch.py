"""Zoom L-BFGS: objective evaluations per iteration, the old line search against the new one.

    python benchmarks/linesearch.py --sizes 256,512,1024 --evaluations 40 --json ls.json
    python benchmarks/linesearch.py --sizes 2048 --scenarios photo --evaluations 12
    python benchmarks/linesearch.py --quick            # 32 px, shallow layers, seconds
    python benchmarks/linesearch.py --trace 3 --sizes 128 --scenarios noise --content-weight 64

Variants (`jaxstyle.optimizers.Optimizer`):
    old  probe_first_step=False, noise_floor=0: optax.lbfgs with its zoom line search starting
         every search at step 1, optax's approx_dec_rtol 1e-6 (the line search before the fix).
    new  the defaults (probe_first_step=True, noise_floor=4e-12; `jaxstyle.linesearch`).
Scenarios:
    photo  examples/chelsea.jpg scaled to SIZE px on its longer side (aspect kept, as the CLI
           does), examples/hubble_deep_field.jpg as the style at style_scale 1 (`image.
           style_size_for`), StyleConfig defaults (alpha 1, beta 1e3, no TV).
    noise  uniform noise content and noise style, SIZE x SIZE, numpy seed 0: the old benchmark
           behind "25 evaluations per iteration at 1024 px".
Both start at the content image, as stylize does, with the weights of --weights (a jaxstyle
.npz) or else synthetic ones (`jaxstyle.random_weights(0)`); --content-weight overrides alpha.

Each (size, scenario, variant) runs in a fresh subprocess (the CLI's XLA CPU flags unless
--no-xla-flags; --in-process runs them here, as the test does), one compiled step at a time
(`optim.chunk` with n = 1), until it has spent --evaluations objective evaluations
(`StepState.evaluations`, counted inside the compiled loop: the initial evaluation, the probe,
every zoom line-search step). Per run: the evaluations of init and of each iteration, the total
after each, evaluations per iteration after the first, seconds per evaluation, peak RSS, the
load average. Per (size, scenario): the best loss (what stylize returns) reached within E
evaluations, old against new, for E = the budget and a few smaller counts.

--f64: the start and each run's last iterate within the budget are also evaluated in float64
(in another process; targets in float64): the float32 objective carries the content loss's
rounding floor at every point but the content image, which hides progress there.

--trace K: in this process, the first K line searches step by step (jaxstyle.zoom's functions
driven from Python with the inputs `optim.step` gives them): each trial step, f(x + a d) - f(x)
in absolute terms, in float32 spacings of f(x) and relative, the slope ratio, the decrease and
curvature errors and the search's interval and flags.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, "examples")
sys.path.insert(0, ROOT)  # this checkout's jaxstyle, not another installed one
MARKER = "LINESEARCH_JSON "
VARIANTS = ("old", "new")
SCENARIOS = ("photo", "noise")
# --shallow (and --quick): a network cut at relu2_1, which compiles in a fraction of the time.
SHALLOW = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}


def _load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def optim_spec(variant: str):
    from jaxstyle import optimizers

    if variant == "old":
        return optimizers.Optimizer(probe_first_step=False, noise_floor=0.0)
    if variant == "new":
        return optimizers.Optimizer()
    raise ValueError(f"unknown variant {variant!r}")


def photo_images(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The example photos as a run at `size` px sees them: the content scaled to `size` on
    its longer side, the style at style_scale 1 relative to it. float32 RGB in [0, 1]."""
    from jaxstyle.image import load_image, resize_to, scale_shape, style_size_for

    content = load_image(os.path.join(EXAMPLES, "chelsea.jpg"))
    content = resize_to(content, scale_shape(content.shape[:2], size))
    style = load_image(os.path.join(EXAMPLES, "hubble_deep_field.jpg"))
    style = resize_to(style, style_size_for(content.shape[:2], style.shape[:2], 1.0))
    return content, style


def scenario_images(scenario: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(content, style) float32 RGB in [0, 1] for a scenario at `size` px."""
    if scenario == "noise":
        rng = np.random.default_rng(0)
        return (rng.random((size, size, 3), dtype=np.float32),
                rng.random((size, size, 3), dtype=np.float32))
    if scenario != "photo":
        raise ValueError(f"unknown scenario {scenario!r}")
    return photo_images(size)


def load_weights(path: str | None):
    """The weights of a jaxstyle .npz (`jaxstyle.load_vgg19`), else random_weights(0)."""
    import jaxstyle

    return jaxstyle.load_vgg19(path) if path else jaxstyle.random_weights(0)


def _setup(xla_flags: bool) -> str:
    from jaxstyle import runtime

    return runtime.set_xla_cpu_flags() if xla_flags else os.environ.get("XLA_FLAGS", "")


def _problem(scenario: str, size: int, content_weight: float, variant: str, shallow: bool,
             weights_path: str | None):
    """Everything a run needs, and its initial state at the content image."""
    import jax
    import jax.numpy as jnp

    import jaxstyle
    from jaxstyle import optim
    from jaxstyle.objective import prepare_targets

    content, style = scenario_images(scenario, size)
    config = jaxstyle.StyleConfig(content_weight=content_weight, **(SHALLOW if shallow else {}))
    weights = load_weights(weights_path)
    spec, targets = prepare_targets(weights, content, [style], config)
    opt = optim_spec(variant)
    lw = config.loss_weights
    init = jax.jit(functools.partial(optim.init, spec=spec, optim=opt))
    state = init(weights.params, targets, lw, jnp.asarray(content))
    return weights, spec, targets, lw, opt, state, content


# ----------------------------------------------------------------------------- workers


def run_counts(scenario: str, size: int, variant: str, budget: int, *,
               content_weight: float = 1.0, shallow: bool = False,
               weights_path: str | None = None, max_iterations: int = 10_000,
               save_path: str | None = None) -> dict:
    """Step one compiled step at a time until `budget` evaluations are spent."""
    import jax

    from jaxstyle import optim

    load_start = _load_avg()
    t0 = time.perf_counter()
    weights, spec, targets, lw, opt, state, content = _problem(
        scenario, size, content_weight, variant, shallow, weights_path)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    chunk = jax.jit(functools.partial(optim.chunk, spec=spec, optim=opt, max_steps=1)).lower(
        weights.params, targets, lw, state, np.int32(1)).compile()
    compile_s = time.perf_counter() - t0
    init_evaluations = int(state.evaluations)
    counts, losses, cumulative, step_s = [], [], [], []
    start_loss = float(state.losses[0])
    last_image = None
    while int(state.evaluations) < budget and len(counts) < max_iterations:
        before = int(state.evaluations)
        if save_path is not None:
            last_image = np.asarray(state.image)
        t = time.perf_counter()
        state, _ = chunk(weights.params, targets, lw, state, np.int32(1))
        evaluations = int(state.evaluations)  # waits for the step
        step_s.append(time.perf_counter() - t)
        counts.append(evaluations - before)
        cumulative.append(evaluations)
        losses.append(float(state.losses[0]))
        if not bool(state.ok):
            break
    if save_path is not None:  # the last iterate within the budget
        final = np.asarray(state.image) if int(state.evaluations) <= budget else last_image
        np.save(save_path, final if final is not None else np.asarray(content))
    after_first = counts[1:]
    return {
        "scenario": scenario, "size": size, "variant": variant, "budget": budget,
        "content_weight": content_weight, "shallow": shallow, "shape": list(content.shape),
        "weights": weights_path or "random_weights(0)",
        "optim_spec": {k: getattr(opt, k) for k in ("probe_first_step", "noise_floor",
                                                    "linesearch_steps", "memory_size")},
        "initial_evaluations": init_evaluations, "start_loss": start_loss,
        "evaluations_per_iteration": counts, "cumulative_evaluations": cumulative,
        "losses": losses, "iterations": len(counts),
        # The first iteration's cost includes init's probe, for a fair old/new comparison.
        "first_iteration_evaluations": (counts[0] + init_evaluations - 1) if counts else None,
        "mean_after_first": (sum(after_first) / len(after_first)) if after_first else None,
        "seconds_per_evaluation": (sum(step_s) / max(1, sum(counts))) if counts else None,
        "init_s": init_s, "compile_s": compile_s, "steps_s": sum(step_s),
        "ok": bool(state.ok), "load_avg_start": load_start,
    }


def f64_losses(scenario: str, size: int, content_weight: float, paths: list[str],
               shallow: bool = False, weights_path: str | None = None) -> list:
    """float64 totals of the start and the saved iterates (params, targets, images float64)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import jaxstyle
    from jaxstyle.losses import compute_targets, total_loss

    content, style = scenario_images(scenario, size)
    config = jaxstyle.StyleConfig(content_weight=content_weight, **(SHALLOW if shallow else {}))
    weights = load_weights(weights_path)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), weights.params)
    spec = config.loss_spec(weights.convention)
    targets = compute_targets(params, jnp.asarray(content, jnp.float64),
                              [jnp.asarray(style, jnp.float64)], jnp.ones((1,), jnp.float64),
                              spec)
    lw = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), config.loss_weights)
    f = jax.jit(lambda x: total_loss(params, targets, lw, x, spec)[0])
    out = [float(f(jnp.asarray(content, jnp.float64)))]
    out += [float(f(jnp.asarray(np.load(p), jnp.float64))) for p in paths]
    return out


# ------------------------------------------------------------------------------ trace


def trace(scenario: str, size: int, variant: str, iterations: int, *,
          content_weight: float = 1.0, shallow: bool = False, weights_path: str | None = None,
          log=print) -> list[int]:
    """The first `iterations` line searches of `optim.step`, step by step; returns each
    iteration's evaluations (the first with init's probe)."""
    import jax
    import jax.numpy as jnp
    import optax

    from jaxstyle import linesearch, optim, zoom

    weights, spec, targets, lw, opt, state, _ = _problem(
        scenario, size, content_weight, variant, shallow, weights_path)
    params = weights.params
    tx_dir = optax.chain(optax.scale_by_lbfgs(memory_size=opt.memory_size), optax.scale(-1.0))

    @jax.jit
    def direction(g, dir_state, p):
        return tx_dir.update(g, dir_state, p)

    start = jax.jit(zoom.start)

    @jax.jit
    def ls_step(ls_state, rtol, params, targets, lw, p, d):
        f = optim._objective(params, targets, lw, spec)
        return zoom.trial(ls_state, jax.value_and_grad(f), p, d, rtol, opt.linesearch_steps)

    rtol_of = jax.jit(lambda t, lw, v: linesearch.approx_dec_rtol(t, lw, v, opt.noise_floor))
    p = optim._zero_aux(state.image)
    dir_state = tx_dir.init(p)
    counts = []
    for it in range(iterations):
        g_full = {"image": state.grad, "aux": state.losses}
        d, dir_state = direction(optim._zero_aux(state.grad), dir_state, p)
        # The state holds where the first search starts (init's probe); later ones start at 1.
        guess = optax.tree.get(state.opt_state, "learning_rate") if it == 0 else 1.0
        extra = int(state.evaluations) - 1 if it == 0 else 0
        rtol = rtol_of(targets, lw, state.value)
        ls = start(d, state.value, g_full, jnp.float32(guess))
        f0 = np.float32(ls.value_init)
        s0 = float(ls.slope_init)
        ulp = float(np.spacing(f0))
        log(f"iteration {it + 1}: f={float(f0):.9g} spacing(f)={ulp:.3g} slope={s0:.4g} "
            f"|d|={float(optax.tree.norm(d)):.4g} initial step={float(guess):.5g}"
            f"{' (probe)' if extra else ''} approx_dec_rtol={float(rtol):.3g}")
        k = 0
        while bool(zoom.searching(ls)):
            ls = ls_step(ls, rtol, params, targets, lw, p, d)
            k += 1
            a, df = float(ls.stepsize), float(np.float32(ls.value)) - float(f0)
            log(f"  {k:2d} a={a:.5g} f(x+ad)-f(x)={df:.4g} ({df / ulp:.1f} spacings, "
                f"rel {df / abs(float(f0)):.3g}) armijo_rhs={1e-4 * a * s0:.3g} "
                f"slope/slope0={float(ls.slope) / s0:.4g} decrease_error="
                f"{float(ls.decrease_error):.3g} curvature_error={float(ls.curvature_error):.3g}"
                f" interval=[{float(ls.low):.4g},{float(ls.high):.4g}] done={bool(ls.done)} "
                f"failed={bool(ls.failed)} safe_step={float(ls.safe_stepsize):.4g}")
        counts.append(k + extra)
        p = optax.tree.add_scale(p, ls.stepsize, d)
        state = state._replace(value=ls.value, grad=ls.grad["image"], losses=ls.grad["aux"])
        log(f"  -> {k + extra} evaluations, step {float(ls.stepsize):.5g}, "
            f"f={float(ls.value):.9g}")
    return counts


# -------------------------------------------------------------------------- reporting


def _checkpoints(budget: int) -> list[int]:
    return sorted({budget} | {e for e in (5, 10, 20, 40, 80, 160) if e < budget})


def best_within(run: dict, evaluations: int) -> float | None:
    """The lowest total among the start and the iterates reached within `evaluations`."""
    best = run["start_loss"] if evaluations >= run["initial_evaluations"] else None
    for cum, loss in zip(run["cumulative_evaluations"], run["losses"], strict=True):
        if cum <= evaluations and np.isfinite(loss):
            best = loss if best is None else min(best, loss)
    return best


def compare(runs: list[dict]) -> list[dict]:
    rows = []
    keys = sorted({(r["scenario"], r["size"]) for r in runs if "error" not in r})
    for scenario, size in keys:
        by = {r["variant"]: r for r in runs
              if r.get("scenario") == scenario and r.get("size") == size and "error" not in r}
        if set(by) != set(VARIANTS):
            continue
        budget = by["new"]["budget"]
        rows.append({
            "scenario": scenario, "size": size, "budget": budget,
            "mean_after_first": {v: by[v]["mean_after_first"] for v in VARIANTS},
            "first_iteration": {v: by[v]["first_iteration_evaluations"] for v in VARIANTS},
            "iterations_within_budget": {
                v: sum(c <= budget for c in by[v]["cumulative_evaluations"]) for v in VARIANTS},
            "best_loss_within": {str(e): {v: best_within(by[v], e) for v in VARIANTS}
                                 for e in _checkpoints(budget)},
            "f64_within_budget": {v: by[v].get("f64_last") for v in VARIANTS},
            "f64_start": by["new"].get("f64_start"),
        })
    return rows


def _g(v) -> str:
    return "-" if v is None else f"{v:.9g}"


def markdown(report: dict) -> str:
    lines = ["| size | scenario | variant | evaluations: init, then each iteration | "
             "mean after first | best loss within budget | s/eval | load start |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        if "error" in r:
            lines.append(f"| {r.get('size')} | {r.get('scenario')} | {r.get('variant')} | "
                         f"error: {r['error']} | | | | |")
            continue
        c = r["evaluations_per_iteration"]
        shown = f"{r['initial_evaluations']}; " + ", ".join(map(str, c[:12])) + (
            ", ..." if len(c) > 12 else "")
        mean = r["mean_after_first"]
        lines.append(
            f"| {r['size']} | {r['scenario']} | {r['variant']} | {shown} | "
            f"{'-' if mean is None else f'{mean:.2f}'} | {_g(best_within(r, r['budget']))} | "
            f"{r['seconds_per_evaluation'] or float('nan'):.3g} | {r['load_avg_start']} |")
    for row in report["comparison"]:
        within = row["best_loss_within"][str(row["budget"])]
        f64 = row["f64_within_budget"]
        lines.append(f"\n{row['size']} px {row['scenario']}: best loss within {row['budget']} "
                     f"evaluations old {_g(within['old'])}, new {_g(within['new'])}"
                     + (f"; float64 objective at the last iterate old {_g(f64['old'])}, new "
                        f"{_g(f64['new'])} (start {_g(row['f64_start'])})"
                        if row["f64_start"] is not None else ""))
    return "\n".join(lines)


# ------------------------------------------------------------------------------- main


def _budgets(text: str, sizes: list[int]) -> dict[int, int]:
    """"40" (every size) or "256:60,2048:12" (per size; sizes not named get the last)."""
    if ":" not in text:
        return {s: int(text) for s in sizes}
    pairs = dict(tuple(map(int, item.split(":"))) for item in text.split(","))
    last = list(pairs.values())[-1]
    return {s: pairs.get(s, last) for s in sizes}


def _run_worker(kind: str, payload: dict, args) -> dict:
    """A worker's JSON: here (--in-process) or in a fresh subprocess."""
    if args.in_process:
        try:
            return run_counts(**payload) if kind == "counts" else {"f64": f64_losses(**payload)}
        except Exception as e:  # noqa: BLE001 - reported in the table, like a failed worker
            return {"error": f"{type(e).__name__}: {e}"}
    t0 = time.perf_counter()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, json.dumps(payload),
           *(["--no-xla-flags"] if args.no_xla_flags else [])]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            out = json.loads(line[len(MARKER):])
            out["process_wall_s"] = time.perf_counter() - t0
            return out
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def worker_main(kind: str, payload: dict, xla_flags: bool) -> int:
    _setup(xla_flags)
    sys.path.insert(0, HERE)
    from procmem import peak_rss_bytes

    out = run_counts(**payload) if kind == "counts" else {"f64": f64_losses(**payload)}
    out["peak_rss_bytes"] = peak_rss_bytes()
    out["load_avg_end"] = _load_avg()
    print(MARKER + json.dumps(out), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="256,512,1024")
    p.add_argument("--scenarios", default="photo,noise")
    p.add_argument("--variants", default="old,new")
    p.add_argument("--evaluations", default="40",
                   help="evaluation budget per run: N, or SIZE:N,SIZE:N")
    p.add_argument("--max-iterations", type=int, default=10_000)
    p.add_argument("--content-weight", type=float, default=1.0, help="alpha (default 1)")
    p.add_argument("--weights", default=None, help="jaxstyle .npz (default random_weights(0))")
    p.add_argument("--shallow", action="store_true", help="layers up to relu2_1 only")
    p.add_argument("--no-xla-flags", action="store_true",
                   help="leave XLA_FLAGS alone (default: the CLI's CPU flags)")
    p.add_argument("--in-process", action="store_true", help="no subprocess per run")
    p.add_argument("--f64", action="store_true",
                   help="also evaluate the start and the last iterates in float64")
    p.add_argument("--trace", type=int, default=0, metavar="K",
                   help="only trace the first K line searches (in this process)")
    p.add_argument("--quick", action="store_true",
                   help="32 px, shallow layers, budget 8: seconds")
    p.add_argument("--timeout", type=float, default=7200.0, help="seconds per subprocess")
    p.add_argument("--json", dest="json_path", default=None)
    p.add_argument("--worker", choices=("counts", "f64"), help=argparse.SUPPRESS)
    p.add_argument("payload", nargs="?", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker_main(args.worker, json.loads(args.payload), not args.no_xla_flags)
    if args.quick:
        args.sizes, args.evaluations, args.shallow = "32", "8", True
    sizes = [int(s) for s in args.sizes.split(",")]
    scenarios, variants = args.scenarios.split(","), args.variants.split(",")
    common = {"content_weight": args.content_weight, "shallow": args.shallow,
              "weights_path": args.weights}
    if args.trace:
        flags = _setup(not args.no_xla_flags)
        traced = {}
        for size in sizes:
            for scenario in scenarios:
                for variant in variants:
                    print(f"== {size} px {scenario} {variant} (XLA_FLAGS={flags!r}, load "
                          f"{_load_avg()})", flush=True)
                    traced[f"{size}/{scenario}/{variant}"] = trace(
                        scenario, size, variant, args.trace, **common,
                        log=lambda s: print(s, flush=True))
        print(json.dumps(traced))
        return 0
    if args.in_process:
        if args.f64:  # it would turn on float64 for the whole process
            raise SystemExit("--f64 needs a subprocess per run: drop --in-process")
        _setup(not args.no_xla_flags)
    budgets = _budgets(args.evaluations, sizes)
    report = {"argv": sys.argv[1:] if argv is None else list(argv), "machine": {
        "platform": platform.platform(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "load_avg_start": _load_avg()}, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for scenario in scenarios:
                paths = []
                for variant in variants:
                    save = (os.path.join(tmp, f"{size}-{scenario}-{variant}.npy") if args.f64
                            else None)
                    payload = {"scenario": scenario, "size": size, "variant": variant,
                               "budget": budgets[size], "max_iterations": args.max_iterations,
                               "save_path": save, **common}
                    run = _run_worker("counts", payload, args)
                    run.setdefault("scenario", scenario)
                    run.setdefault("size", size)
                    run.setdefault("variant", variant)
                    report["runs"].append(run)
                    paths.append(save)
                    print(f"{size} px {scenario} {variant}: "
                          f"{run.get('evaluations_per_iteration', run.get('error'))}",
                          file=sys.stderr, flush=True)
                if args.f64 and all(os.path.exists(q) for q in paths):
                    payload = {"scenario": scenario, "size": size, "paths": paths, **common}
                    res = _run_worker("f64", payload, args)
                    values = res.get("f64", [None])
                    for variant, value in zip(variants, values[1:], strict=False):
                        for run in report["runs"]:
                            if (run.get("size"), run.get("scenario"),
                                    run.get("variant")) == (size, scenario, variant):
                                run["f64_start"], run["f64_last"] = values[0], value
    report["machine"]["load_avg_end"] = _load_avg()
    report["comparison"] = compare(report["runs"])
    print(markdown(report))
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
