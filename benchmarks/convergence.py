"""Loss against wall time and against objective evaluations: which way to optimize reaches a
given loss soonest, jaxstyle's options against PyTorch's L-BFGS on the same objective.

    python benchmarks/convergence.py --size 512 --out benchmarks/results/convergence-512
    python benchmarks/convergence.py --size 512 --weights vgg19.npz --out DIR   # real weights
    python benchmarks/convergence.py --quick --out /tmp/conv    # 32 px, shallow layers, seconds

Methods (all from the content image, StyleConfig's defaults: alpha 1, no TV; beta 1e3, or
--style-weight, 1e7 by default with synthetic weights: see "Loss weights" below):
    lbfgs-old    zoom L-BFGS as it was (`Optimizer(probe_first_step=False, noise_floor=0)`)
    lbfgs        zoom L-BFGS, the fixed line search (`jaxstyle.linesearch`)
    adam         Adam, learning rate 0.02, projected onto [0, 1]
    auto-adam    Adam on the ladder 128 px -> SIZE in steps of sqrt(2) (`config.auto_scales`),
                 moments carried (resized) between stages; 2 S steps at the first size, S after
                 (--stage-iterations S)
    auto-lbfgs   zoom L-BFGS (fixed) on the same ladder, restarted at each stage; StyleConfig's
                 default since 2026-11-30 (which runs `iterations` steps at every size);
                 auto-lbfgs-S / auto-adam-S: S steps a stage (2 S at the first)
    ...-fromN    a ladder that starts at N px instead of --auto-start (128), e.g.
                 auto-lbfgs-25-from256
    ...-plain    an L-BFGS method without the decrease test's rounding tolerance
                 (`Optimizer(rounding_tolerance=0)`: as before the GPU-rounding fix; the
                 before of --emulate-rounding's before/after), e.g. auto-lbfgs-25-plain
    torch-lbfgs  torch.optim.LBFGS(lr=1, line_search_fn="strong_wolfe", history_size=100,
                 PyTorch's default) on tests/references/torch_gatys.py's objective (the same
                 formulas, weights and images), one `step()` per iteration; an evaluation the
                 optimizer repeats at the point its line search accepted is served from a
                 cache, not computed (as one long `step()` would not compute it)

Images (--pair, PAIRS): by default examples/chelsea.jpg at SIZE px on its longer side,
examples/hubble_deep_field.jpg as the style at style_scale 1 (as the CLI sizes them); other
pairs take scikit-image's photographs and textures. benchmarks/convergence_pairs.py runs every
pair, size and beta and gives the median and range of each method's lead. Weights: --weights
(a jaxstyle .npz, caffe convention, as the PyTorch objective preprocesses) or synthetic ones
(`random_weights(0)`, written to a scratch folder): say which next to every figure.

Loss weights: with synthetic weights at StyleConfig's beta 1e3 there is nothing to optimize.
Random filters see two photos as nearly alike, so the content image is already within 0.07%
of the optimum: at 512 px it scored 122.46, and every method ended at 122.38-122.39
(2026-11-30). With beta 1e7 the loss falls from about 1e6 to 1.2e4 in 150 L-BFGS
iterations at 128 px, and the style loss dominates at the start as it does with real
weights at the default. So with synthetic weights beta defaults to 1e7, and with --weights
to StyleConfig's 1e3. --style-weight sets it either way, for every method and the score.

Clock and budget: PyTorch runs first, --torch-iterations N iterations (default 100). Every
jaxstyle method then runs for --seconds (default: --seconds-ratio, 1.25, x PyTorch's time) or
--max-steps, through `jaxstyle.stylize` with a callback at every step; its programs are
compiled first by a one-step warm-up run (the compile time is reported apart, not on the
clock; PyTorch's one-time oneDNN setup likewise). The clock starts when the run is called
(PyTorch: before its targets) and stops while the callback copies an image out. Each method
runs in its own subprocess (--in-process: here, as the test does) with the CLI's XLA CPU flags.

Score: every run is judged by one objective, jaxstyle's at SIZE (float32, value only), on the
image the run would return at that moment (the best iterate so far, clipped to [0, 1];
upsampled with Lanczos when the run is at a coarser stage), taken at steps 1-10 and then
every 10% more steps, and at the end. The target is the score PyTorch's L-BFGS reaches after
N iterations; the table gives each method's first scored snapshot at or below it (time to the
target within that 10% resolution).

Writes OUT/convergence.json (every record and score), OUT/convergence.png (log loss against
seconds and against evaluations, one line per method) and OUT/convergence.md (the table). The
weights, inputs and kept images (hundreds of MB at 512 px) go to a scratch folder removed at
the end, or to OUT/work with --keep-work. --add adds methods to a report already in OUT (of
the same pair, size and beta): PyTorch is not rerun, the new methods get the report's time
budget and are scored against its target, and the report lists what was added when.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# The PyTorch reference models and baselines (tests/references/), run as the PyTorch side.
REFERENCES = os.path.join(HERE, "..", "tests", "references")
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # this checkout's jaxstyle, not another installed one
sys.path.insert(0, HERE)  # linesearch (the photos), procmem
sys.path.insert(0, REFERENCES)  # torch_gatys
MARKER = "CONVERGENCE_JSON "
METHODS = ("lbfgs-old", "lbfgs", "adam", "auto-adam", "auto-lbfgs", "torch-lbfgs")
# Content and style image pairs (--pair): the example photos, and scikit-image's photographs
# and textures (read at run time, not shipped: `skimage.data`).
PAIRS = {
    "chelsea-hubble": ("examples/chelsea.jpg", "examples/hubble_deep_field.jpg"),
    "astronaut-immunohistochemistry": ("skimage:astronaut", "skimage:immunohistochemistry"),
    "coffee-brick": ("skimage:coffee", "skimage:brick"),
    "rocket-grass": ("skimage:rocket", "skimage:grass"),
    "chelsea-gravel": ("examples/chelsea.jpg", "skimage:gravel"),
    "astronaut-stripes": ("skimage:astronaut", "examples/stripes.png"),
}
# beta with synthetic weights (docstring, "Loss weights").
SYNTHETIC_STYLE_WEIGHT = 1e7
SHALLOW = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}


def snapshot_steps(limit: int = 1_000_000, ratio: float = 1.1) -> list[int]:
    """Steps at which a run's image is kept for scoring: 1-10, then every `ratio` more."""
    steps, s = list(range(1, 11)), 10.0
    while s < limit:
        s *= ratio
        if round(s) > steps[-1]:
            steps.append(round(s))
    return steps


def pair_images(pair: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The images of `pair` (PAIRS) as a run at `size` px sees them: the content scaled to
    `size` on its longer side, the style at style_scale 1 relative to it."""
    from jaxstyle.image import load_image, resize_to, scale_shape, style_size_for

    def read(source: str) -> np.ndarray:
        if source.startswith("skimage:"):
            from skimage import data

            return load_image(getattr(data, source.split(":", 1)[1])())
        return load_image(os.path.join(HERE, "..", source))

    content, style = (read(source) for source in PAIRS[pair])
    content = resize_to(content, scale_shape(content.shape[:2], size))
    style = resize_to(style, style_size_for(content.shape[:2], style.shape[:2], 1.0))
    return content, style


def _config(method: str, size: int, shallow: bool, stage_iterations: int, auto_start: int,
            max_steps: int, style_weight: float, emulate_rounding: str | None = None):
    """The StyleConfig of a method (`parse_method`): "auto-lbfgs-25" is the ladder with 25
    steps a stage (2 x 25 at the first), "auto-lbfgs" with --stage-iterations, both from
    --auto-start; "auto-lbfgs-25-from256" starts the ladder at 256 px; a "-plain" suffix
    changes the optimizer only (`_optim_variant`)."""
    import jaxstyle
    from jaxstyle.config import auto_scales

    parts = parse_method(method)
    layers = dict(SHALLOW if shallow else {}, style_weight=style_weight,
                  emulate_rounding=emulate_rounding)
    name = "adam" if "adam" in parts.base else "lbfgs"
    if not parts.base.startswith("auto-"):
        return jaxstyle.StyleConfig(optimizer=name, iterations=max_steps, scales=None, **layers)
    stage_iterations = parts.stage_iterations or stage_iterations
    scales = auto_scales(size, parts.start or auto_start)
    iters = tuple([2 * stage_iterations] + [stage_iterations] * (len(scales) - 1))
    return jaxstyle.StyleConfig(optimizer=name, scales=scales, scale_iterations=iters, **layers)


class MethodName(NamedTuple):
    """A method's name taken apart: `base` (a name in METHODS), the ladder's steps a stage
    and first size when the name gives them, and whether it ends in "-plain"."""

    base: str
    stage_iterations: int | None
    start: int | None
    plain: bool


_LADDER = re.compile(r"(auto-(?:lbfgs|adam))-(\d+)(?:-from(\d+))?")


def parse_method(method: str) -> MethodName | None:
    """`method` taken apart, or None when it names no method. The names: one in METHODS;
    auto-lbfgs-S or auto-adam-S (S steps a stage), optionally -fromN (the ladder starts at N
    px instead of --auto-start); any jaxstyle L-BFGS one of those with a trailing -plain."""
    plain = method.endswith("-plain")
    name = method.removesuffix("-plain")
    if name in METHODS:
        parts = MethodName(name, None, None, plain)
    elif match := _LADDER.fullmatch(name):
        steps, start = int(match.group(2)), match.group(3)
        if steps < 1 or (start is not None and int(start) < 1):
            return None
        parts = MethodName(match.group(1), steps, None if start is None else int(start), plain)
    else:
        return None
    if plain and ("lbfgs" not in parts.base or parts.base in ("lbfgs-old", "torch-lbfgs")):
        return None
    return parts


@contextlib.contextmanager
def _optim_variant(method: str):
    """lbfgs-old and the -plain methods: `stylize` builds its Optimizer from the config, which
    has no line-search options; here the old line search (lbfgs-old: no probe, no noise
    floor; -plain: no rounding tolerance) is swapped in for the run (and put back after)."""
    import dataclasses

    from jaxstyle.config import StyleConfig

    if method == "lbfgs-old":
        changes = dict(probe_first_step=False, noise_floor=0.0)
    elif parse_method(method).plain:
        changes = dict(rounding_tolerance=0.0)
    else:
        yield
        return
    original = StyleConfig.optimizer_spec

    def old(config):
        return dataclasses.replace(original(config), **changes)

    StyleConfig.optimizer_spec = old
    try:
        yield
    finally:
        StyleConfig.optimizer_spec = original


# ----------------------------------------------------------------------------- workers


def run_jax(method: str, inputs: str, weights: str, size: int, seconds: float, max_steps: int,
            stage_iterations: int, auto_start: int, shallow: bool, snapshots: str,
            style_weight: float, emulate_rounding: str | None = None) -> dict:
    """One jaxstyle method: a warm-up run (compiles), then the timed run. Writes the kept
    images to `snapshots` (.npz) and returns the records."""
    import jaxstyle

    with np.load(inputs) as data:
        content, style = data["content"], data["style"]
    vgg = jaxstyle.load_vgg19(weights)
    config = _config(method, size, shallow, stage_iterations, auto_start, max_steps,
                     style_weight, emulate_rounding)
    keep = set(snapshot_steps())
    with _optim_variant(method):
        t0 = time.perf_counter()
        warm = config.replace(iterations=1, scale_iterations=(
            None if config.scale_iterations is None else (1,) * len(config.scale_iterations)))
        jaxstyle.stylize(content, style, weights=vgg, config=warm)
        warmup_s = time.perf_counter() - t0
        records, images, paused = [], {}, 0.0

        def callback(progress) -> bool:
            nonlocal paused
            t = time.perf_counter()
            elapsed = t - t_start - paused
            records.append({"step": progress.step, "stage": progress.stage,
                            "seconds": elapsed, "evaluations": int(progress.evaluations[0]),
                            "loss": float(progress.losses["total"][0]),
                            "shape": list(progress.shape)})
            if progress.step in keep:
                images[progress.step] = progress.image().copy()
            paused += time.perf_counter() - t
            return elapsed < seconds

        t_start = time.perf_counter()
        result = jaxstyle.stylize(content, style, weights=vgg, config=config,
                                  callback=callback, callback_every=1)
        total_s = time.perf_counter() - t_start - paused
    images[result.steps] = result.image  # the run's output (at its last stage's size)
    np.savez(snapshots, **{str(k): v for k, v in images.items()})
    return {"method": method, "records": records, "warmup_s": warmup_s, "total_s": total_s,
            "steps": result.steps, "evaluations": int(result.evaluations[0]),
            "stages": [list(s.shape) for s in result.stages[:len(result.stage_steps)]],
            "stage_steps": list(result.stage_steps), "timings": result.timings,
            "stopped": result.stopped, "snapshot_steps": sorted(images)}


def run_torch(inputs: str, weights: str, iterations: int, history: int, shallow: bool,
              snapshots: str, alpha: float, beta: float, gamma: float) -> dict:
    """torch.optim.LBFGS with strong-Wolfe line search, one `step()` per iteration."""
    import torch
    from torch_gatys import TorchObjective, load_npz_params

    torch.set_num_threads(os.cpu_count() or 1)
    with np.load(inputs) as data:
        content, style = data["content"], data["style"]
    layers = SHALLOW if shallow else {}
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where jaxstyle's runs are too
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    obj = TorchObjective(load_npz_params(weights), device=device, **layers)
    # oneDNN's one-time setup for these shapes, off the clock (as jaxstyle's compile is).
    t_setup = time.perf_counter()
    warm = obj.tensor(content.copy()).requires_grad_(True)
    sum(f.sum() for f in obj.features(warm).values()).backward()
    sync()
    setup_s = time.perf_counter() - t_setup
    # On the clock from here, as a jaxstyle run's clock includes its targets.
    t_start = time.perf_counter()
    obj.set_targets(content, [style])
    x = obj.tensor(content.copy()).requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=1, max_eval=100, tolerance_grad=-1,
                            tolerance_change=-1, history_size=history,
                            line_search_fn="strong_wolfe")
    evaluations, previous, current = 0, [], []

    def closure():
        nonlocal evaluations
        for point, loss, grad in previous + current:  # a point this or the last step had
            if torch.equal(point, x.detach()):
                x.grad = grad.clone()
                return loss
        opt.zero_grad()
        loss = obj.loss(x, alpha, beta, gamma)[0]
        loss.backward()
        evaluations += 1
        current.append((x.detach().clone(), loss.detach(), x.grad.clone()))
        return loss

    keep = set(snapshot_steps())
    records, images, paused = [], {}, 0.0
    for step in range(1, iterations + 1):
        previous, current = current, []
        opt.step(closure)
        sync()
        t = time.perf_counter()
        here = [loss for point, loss, _ in previous + current if torch.equal(point, x.detach())]
        records.append({"step": step, "stage": 0, "seconds": t - t_start - paused,
                        "evaluations": evaluations,
                        "loss": float(here[-1]) if here else float("nan"),
                        "shape": list(content.shape[:2])})
        if step in keep or step == iterations:
            images[step] = x.detach().clamp(0, 1).cpu().numpy().copy()
        paused += time.perf_counter() - t
    np.savez(snapshots, **{str(k): v for k, v in images.items()})
    return {"method": "torch-lbfgs", "records": records, "setup_s": setup_s,
            "total_s": time.perf_counter() - t_start - paused, "steps": iterations,
            "evaluations": evaluations, "history_size": history, "device": device,
            "torch_version": torch.__version__, "threads": torch.get_num_threads(),
            "snapshot_steps": sorted(images)}


def score(inputs: str, weights: str, shallow: bool, snapshot_files: dict[str, str],
          style_weight: float) -> dict:
    """{method: {step: jaxstyle's total at full size}} of every kept image."""
    import jax
    import jax.numpy as jnp

    import jaxstyle
    from jaxstyle.image import resize_to
    from jaxstyle.objective import prepare_targets, total_loss

    with np.load(inputs) as data:
        content, style = data["content"], data["style"]
    vgg = jaxstyle.load_vgg19(weights)
    config = jaxstyle.StyleConfig(style_weight=style_weight, **(SHALLOW if shallow else {}))
    spec, targets = prepare_targets(vgg, content, [style], config)
    f = jax.jit(lambda x: total_loss(vgg.params, targets, config.loss_weights, x, spec)[0])
    out = {"start": {0: float(f(jnp.asarray(content)))}}
    for method, path in snapshot_files.items():
        with np.load(path) as data:
            out[method] = {int(k): float(f(jnp.asarray(
                data[k] if data[k].shape == content.shape else resize_to(data[k],
                                                                         content.shape[:2]))))
                           for k in data.files}
    return out


# ---------------------------------------------------------------------- orchestration


def _run_worker(kind: str, payload: dict, args) -> dict:
    if args.in_process:
        try:
            return {"jax": run_jax, "torch": run_torch, "score": score}[kind](**payload)
        except Exception as e:  # noqa: BLE001 - reported, like a failed subprocess
            return {"error": f"{type(e).__name__}: {e}"}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, json.dumps(payload)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                              env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def worker_main(kind: str, payload: dict) -> int:
    if kind != "torch":
        from jaxstyle import runtime

        runtime.set_xla_cpu_flags()
    out = {"jax": run_jax, "torch": run_torch, "score": score}[kind](**payload)
    from procmem import peak_rss_bytes

    out["peak_rss_bytes"] = peak_rss_bytes()
    print(MARKER + json.dumps(out), flush=True)
    return 0


def time_to_target(run: dict, scores: dict[int, float], target: float) -> dict | None:
    """The first scored snapshot at or below `target`: its step, seconds, evaluations."""
    by_step = {r["step"]: r for r in run["records"]}
    for step in sorted(scores):
        if scores[step] <= target and step in by_step:
            r = by_step[step]
            return {"step": step, "seconds": r["seconds"], "evaluations": r["evaluations"],
                    "score": scores[step]}
    return None


def score_at(run: dict, scores: dict[int, float], seconds: float) -> float | None:
    """The score of the last snapshot taken by `seconds` into the run (None: none was)."""
    by_step = {r["step"]: r["seconds"] for r in run["records"]}
    taken = [step for step in scores if by_step.get(step, np.inf) <= seconds]
    return scores[max(taken)] if taken else None


def summarize(report: dict) -> list[dict]:
    runs = {r["method"]: r for r in report["runs"] if "error" not in r}
    target = report.get("target")
    torch_hit = None
    if target is not None and "torch-lbfgs" in runs:
        torch_hit = time_to_target(runs["torch-lbfgs"], report["scores"]["torch-lbfgs"], target)
    rows = []
    for method in report["methods"]:
        run = runs.get(method)
        if run is None:
            rows.append({"method": method, "error": next(
                (r["error"] for r in report["runs"] if r.get("method") == method), "missing")})
            continue
        scores = report["scores"].get(method, {})
        hit = None if target is None else time_to_target(run, scores, target)
        torch_run = runs.get("torch-lbfgs")
        rows.append({
            "method": method, "steps": run["steps"], "evaluations": run["evaluations"],
            "seconds": run["total_s"], "final_score": scores.get(max(scores)) if scores else None,
            "score_at_torch_time": (None if torch_run is None else
                                    score_at(run, scores, torch_run["total_s"])),
            "to_target": hit,
            "ratio_to_torch": (hit["seconds"] / torch_hit["seconds"]
                               if hit and torch_hit and torch_hit["seconds"] > 0 else None),
            "warmup_s": run.get("warmup_s"),
        })
    return rows


def markdown(report: dict) -> str:
    n, target = report["torch_iterations"], report.get("target")
    lines = [f"{report['size']} px, {report['weights_note']}, {report['machine']['cpus']} CPUs, "
             f"load {report['machine']['load_avg_start']}. Target: the score PyTorch's L-BFGS "
             f"reaches in {n} iterations = {target if target is None else f'{target:.6g}'}.",
             "", "| method | steps | evaluations | seconds | final score | time to target | "
             "x PyTorch | evaluations to target | compile (warm-up) s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in report["summary"]:
        if "error" in row:
            lines.append(f"| {row['method']} | error: {row['error']} | | | | | | | |")
            continue
        hit, ratio, warm = row["to_target"], row["ratio_to_torch"], row["warmup_s"]
        reached = "not reached" if hit is None else f"{hit['seconds']:.1f} s"
        lines.append(
            f"| {row['method']} | {row['steps']} | {row['evaluations']} | "
            f"{row['seconds']:.1f} | {row['final_score']:.6g} | {reached} | "
            f"{'-' if ratio is None else f'{ratio:.2f}'} | "
            f"{'-' if hit is None else hit['evaluations']} | "
            f"{'-' if warm is None else f'{warm:.1f}'} |")
    return "\n".join(lines)


def _series(report: dict) -> dict[str, list[tuple[float, int, float]]]:
    """Per method, (seconds, evaluations, score) at each scored step, the start first."""
    series = {}
    for run in report["runs"]:
        if "error" in run:
            continue
        by_step = {r["step"]: r for r in run["records"]}
        # JSON turns the steps (keys) into strings: plotting a saved report reads them back.
        scores = {int(k): v for k, v in report["scores"].get(run["method"], {}).items()}
        pts = [(by_step[s]["seconds"], by_step[s]["evaluations"], v)
               for s, v in sorted(scores.items()) if s in by_step]
        if report.get("start_score") is not None:  # the content image, before any step
            pts.insert(0, (0.0, 0, report["start_score"]))
        if pts:
            series[run["method"]] = pts
    return series


def plot(report: dict, path: str) -> str:
    """Log score against seconds and against evaluations, one line per method; matplotlib
    if installed, else a plainer Pillow drawing of the first panel. `report` as built or as
    read back from convergence.json."""
    series = _series(report)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_pillow(series, report, path)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for method, pts in series.items():
        t, e, v = zip(*pts, strict=True)
        axes[0].plot(t, v, marker=".", label=method)
        axes[1].plot(e, v, marker=".", label=method)
    for ax, xlabel in zip(axes, ("seconds (compile excluded)", "objective evaluations"),
                          strict=True):
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"loss at {report['size']} px")
        if report.get("target") is not None:
            ax.axhline(report["target"], color="grey", linestyle="--", linewidth=0.8)
        ax.grid(True, which="both", alpha=0.3)
    if series:
        axes[0].legend()
    rounding = (f", jaxstyle in emulated {report['emulate_rounding']}"
                if report.get("emulate_rounding") else "")
    fig.suptitle(f"{report['size']} px, {report['weights_note']}{rounding}; dashed: PyTorch "
                 f"L-BFGS after {report['torch_iterations']} iterations", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return "matplotlib"


def _plot_pillow(series: dict, report: dict, path: str) -> str:
    from PIL import Image, ImageDraw

    w, h, m = 900, 500, 60
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    pts = [p for s in series.values() for p in s if p[2] > 0]
    if pts:
        t_max = max(p[0] for p in pts) or 1.0
        lo, hi = np.log10(min(p[2] for p in pts)), np.log10(max(p[2] for p in pts))
        hi = hi if hi > lo else lo + 1
        colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
        for i, (method, s) in enumerate(series.items()):
            xy = [(m + (w - 2 * m) * p[0] / t_max,
                   h - m - (h - 2 * m) * (np.log10(p[2]) - lo) / (hi - lo)) for p in s if p[2] > 0]
            colour = colours[i % len(colours)]
            if len(xy) > 1:
                d.line(xy, fill=colour, width=2)
            d.text((w - m - 150, m + 14 * i), method, fill=colour)
        d.text((m, h - m + 20), f"seconds (0 .. {t_max:.3g})", fill="black")
        d.text((5, m - 20), f"log10 loss ({lo:.3g} .. {hi:.3g})", fill="black")
    d.rectangle([m, m, w - m, h - m], outline="black")
    im.save(path)
    return "pillow"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--out", help="output folder (created; required)")
    p.add_argument("--weights", default=None, help="jaxstyle .npz (default random_weights(0))")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--style-weight", type=float, default=None,
                   help="beta for every method and the score (default: 1e7 with synthetic "
                        "weights, StyleConfig's 1e3 with --weights; docstring)")
    p.add_argument("--torch-iterations", type=int, default=100)
    p.add_argument("--torch-history", type=int, default=100)
    p.add_argument("--seconds", type=float, default=0.0,
                   help="each jaxstyle method's budget (default 0: --seconds-ratio x PyTorch's "
                        "time)")
    p.add_argument("--seconds-ratio", type=float, default=1.25,
                   help="without --seconds, each jaxstyle method runs this times PyTorch's time")
    p.add_argument("--max-steps", type=int, default=100_000, help="single-size methods' cap")
    p.add_argument("--stage-iterations", type=int, default=100,
                   help="auto-* steps per stage (the first stage twice as many)")
    p.add_argument("--auto-start", type=int, default=128, help="auto-* ladder's first size")
    p.add_argument("--shallow", action="store_true", help="layers up to relu2_1 only")
    p.add_argument("--pair", default="chelsea-hubble", choices=tuple(PAIRS),
                   help="content and style images (PAIRS)")
    p.add_argument("--emulate-rounding", choices=("tf32", "bfloat16"),
                   help="jaxstyle's methods round their operands as a GPU would "
                        "(StyleConfig.emulate_rounding); scores stay float32")
    p.add_argument("--quick", action="store_true",
                   help="32 px, shallow, 4 PyTorch iterations, 6 steps, ladder 23, 32 px")
    p.add_argument("--in-process", action="store_true", help="no subprocess per method")
    p.add_argument("--add", action="store_true",
                   help="add to OUT/convergence.json the methods it lacks: its PyTorch run, "
                        "target and time budget kept, only the new methods run and scored")
    p.add_argument("--keep-work", action="store_true",
                   help="keep weights, inputs and kept images in OUT/work")
    p.add_argument("--timeout", type=float, default=7200.0, help="seconds per subprocess")
    p.add_argument("--worker", choices=("jax", "torch", "score"), help=argparse.SUPPRESS)
    p.add_argument("payload", nargs="?", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker_main(args.worker, json.loads(args.payload))
    if not args.out:
        raise SystemExit("--out DIR is required")
    if args.quick:
        args.size, args.shallow, args.torch_iterations = 32, True, 4
        args.max_steps, args.stage_iterations, args.auto_start = 6, 2, 23
        args.seconds = args.seconds or 60.0
    methods = [m for m in args.methods.split(",") if m]
    unknown = {m for m in methods if parse_method(m) is None}
    if unknown:
        raise SystemExit(f"unknown methods {sorted(unknown)}; choose from {METHODS}, "
                         "auto-lbfgs-S or auto-adam-S (-fromN, -plain: docstring)")
    os.makedirs(args.out, exist_ok=True)
    if args.keep_work:
        work = os.path.join(args.out, "work")
        os.makedirs(work, exist_ok=True)
    else:
        work = tempfile.mkdtemp(prefix="convergence-")
    try:
        return _benchmark(args, methods, work, argv)
    finally:
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)


def _benchmark(args, methods: list[str], work: str, argv) -> int:
    import jaxstyle

    weights = args.weights
    if weights is None:
        weights = os.path.join(work, "weights.npz")
        jaxstyle.save_weights(jaxstyle.random_weights(0), weights)
    elif jaxstyle.load_vgg19(weights).convention != "caffe" and "torch-lbfgs" in methods:
        raise SystemExit("the PyTorch objective preprocesses as caffe: give caffe weights")
    content, style = pair_images(args.pair, args.size)
    inputs = os.path.join(work, "inputs.npz")
    np.savez(inputs, content=content, style=style)
    snap_dir = os.path.join(work, "snapshots")
    os.makedirs(snap_dir, exist_ok=True)
    style_weight = args.style_weight
    if style_weight is None:
        style_weight = SYNTHETIC_STYLE_WEIGHT if args.weights is None else None
    config = jaxstyle.StyleConfig(**({} if style_weight is None else
                                     {"style_weight": style_weight}))
    style_weight = config.style_weight
    argv = sys.argv[1:] if argv is None else list(argv)
    load_start = [round(x, 2) for x in os.getloadavg()]
    report_path = os.path.join(args.out, "convergence.json")
    adding = args.add and os.path.exists(report_path)
    if adding:
        report = _earlier_report(report_path, args, style_weight)
        methods = [m for m in methods if m not in report["methods"]]
        if not methods:  # nothing to run: the report (and its history) stays as it is
            print(f"--add: {report_path} has every method asked for", file=sys.stderr)
            return 0
        seconds = report["jax_seconds"]
    else:
        report = {"argv": argv, "size": args.size,
                  "pair": args.pair, "emulate_rounding": args.emulate_rounding,
                  "shape": list(content.shape[:2]), "methods": [],
                  "weights": weights, "weights_note": ("synthetic weights (random_weights(0))"
                                                       if args.weights is None else
                                                       f"weights {args.weights}")
                  + f", beta {style_weight:g}",
                  "torch_iterations": args.torch_iterations, "shallow": args.shallow,
                  "loss_weights": {"content": config.content_weight, "style": style_weight,
                                   "tv": config.tv_weight},
                  "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                              "load_avg_start": load_start},
                  "runs": [], "scores": {}}
        seconds = args.seconds
    files = {}
    order = (["torch-lbfgs"] if "torch-lbfgs" in methods else []) + [
        m for m in methods if m != "torch-lbfgs"]
    for method in order:
        path = os.path.join(snap_dir, f"{method}.npz")
        if method == "torch-lbfgs":
            payload = {"inputs": inputs, "weights": weights, "iterations": args.torch_iterations,
                       "history": args.torch_history, "shallow": args.shallow,
                       "snapshots": path, "alpha": config.content_weight,
                       "beta": config.style_weight, "gamma": config.tv_weight}
            run = _run_worker("torch", payload, args)
            if not seconds:
                seconds = (args.seconds_ratio * run.get("total_s", 600.0)
                           if "error" not in run else 600.0)
        else:
            payload = {"method": method, "inputs": inputs, "weights": weights,
                       "size": args.size, "seconds": seconds or 600.0,
                       "max_steps": args.max_steps, "stage_iterations": args.stage_iterations,
                       "auto_start": args.auto_start, "shallow": args.shallow,
                       "snapshots": path, "style_weight": style_weight,
                       "emulate_rounding": args.emulate_rounding}
            run = _run_worker("jax", payload, args)
        run["method"] = method
        report["runs"].append(run)
        if "error" not in run:
            files[method] = path
        said = run.get("error") or (f"{run['steps']} steps, {run['evaluations']} evaluations, "
                                    f"{run['total_s']:.1f} s")
        print(f"{method}: {said}", file=sys.stderr, flush=True)
    report["methods"] += methods
    report["jax_seconds"] = seconds
    scored = _run_worker("score", {"inputs": inputs, "weights": weights,
                                   "shallow": args.shallow, "snapshot_files": files,
                                   "style_weight": style_weight}, args)
    report["scores"].update({m: {int(k): v for k, v in s.items()}
                             for m, s in scored.items() if m in files})
    if report.get("start_score") is None:
        report["start_score"] = scored.get("start", {}).get(0, scored.get("start", {}).get("0"))
    if "error" in scored:
        report["score_error"] = scored["error"]
    if adding:  # who ran what, and on how quiet a machine
        report.setdefault("added", []).append({"argv": argv, "methods": methods,
                                               "load_avg": [load_start, [
                                                   round(x, 2) for x in os.getloadavg()]]})
    torch_scores = report["scores"].get("torch-lbfgs", {})
    report["target"] = torch_scores.get(args.torch_iterations)
    report["summary"] = summarize(report)
    report["machine"].setdefault("load_avg_end", [round(x, 2) for x in os.getloadavg()])
    report["plot"] = plot(report, os.path.join(args.out, "convergence.png"))
    table = markdown(report)
    with open(os.path.join(args.out, "convergence.md"), "w") as fh:
        fh.write(table + "\n")
    with open(report_path, "w") as fh:
        json.dump(report, fh, indent=1)
    print(table)
    return 0


def _earlier_report(path: str, args, style_weight: float) -> dict:
    """OUT's report for --add, its scores' steps as ints; refused (SystemExit) when it is of
    another pair, size, beta, weights, rounding or layers than this command's."""
    with open(path) as fh:
        report = json.load(fh)
    report["scores"] = {m: {int(k): v for k, v in s.items()}
                        for m, s in report["scores"].items()}
    ours = {"pair": args.pair, "size": args.size, "style": style_weight,
            "emulate_rounding": args.emulate_rounding, "shallow": args.shallow,
            "torch_iterations": args.torch_iterations,
            "weights": args.weights or "synthetic weights (random_weights(0))"}
    theirs = {"pair": report["pair"], "size": report["size"],
              "style": report["loss_weights"]["style"],
              "emulate_rounding": report.get("emulate_rounding"), "shallow": report["shallow"],
              "torch_iterations": report["torch_iterations"],
              "weights": report["weights_note"].split(", beta")[0].removeprefix("weights ")}
    differ = [k for k in ours if ours[k] != theirs[k]]
    if differ:
        raise SystemExit(f"--add: {path} is a run with other "
                         + ", ".join(f"{k} ({theirs[k]} here, {ours[k]} asked)" for k in differ))
    if "jax_seconds" not in report:
        raise SystemExit(f"--add: {path} has no jax_seconds (the time budget) to keep")
    return report


if __name__ == "__main__":
    sys.exit(main())
