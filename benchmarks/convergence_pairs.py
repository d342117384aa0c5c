"""Which optimizer, over many pictures: benchmarks/convergence.py for every image pair, size
and style weight, then the median and range over the pairs of each method's lead.

    python benchmarks/convergence_pairs.py --sizes 256,512,1024 --style-weights 1e7 \\
        --out benchmarks/results/convergence-pairs
    python benchmarks/convergence_pairs.py --pairs chelsea-hubble,coffee-brick --sizes 256 \\
        --style-weights 1e3 --out DIR            # a subset; rerunning skips what is done
    python benchmarks/convergence_pairs.py --quick --out /tmp/pairs   # 32 px, two pairs
    python benchmarks/convergence_pairs.py --out DIR --summary-only
                            # the summary of the runs already in DIR; runs nothing

Each (pair, size, beta) is one convergence.py run in OUT/<size>-<beta>/<pair>/ (its JSON,
table and plot; an existing convergence.json is kept, so an interrupted sweep goes on where
it stopped, and a method it lacks is added to it with convergence.py --add: PyTorch is not
rerun, e.g. --methods auto-lbfgs-25-from256 over pairs already run). The summary covers
every run in OUT, whichever command made it; per (size, beta) and method, over the pairs
that ran it:
- time to target: seconds until the method's image first scores at or below what PyTorch's
  L-BFGS reaches in its 100 iterations, as a multiple of PyTorch's time (median, range, and
  how many pairs reached it within the time given);
- score at equal time: the method's score at PyTorch's total time, over PyTorch's final
  score (below 1: ahead).
Writes OUT/summary.json, OUT/summary.md (the table) and OUT/summary.png (the time ratios,
one dot per pair). Synthetic VGG19 weights unless --weights: say so next to every figure.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from convergence import PAIRS  # noqa: E402

METHODS = "torch-lbfgs,lbfgs,adam,auto-lbfgs-25,auto-lbfgs-50,auto-adam-50"


def run_one(out: str, pair: str, size: int, beta: float, args) -> bool:
    """Run convergence.py for one (pair, size, beta) into OUT, only the methods its report
    there lacks (--add: PyTorch's run and the time budget kept); whether the report is there
    now with every method."""
    folder = os.path.join(out, f"{size}-{beta:g}", pair)
    report_path = os.path.join(folder, "convergence.json")
    if os.path.exists(report_path):
        with open(report_path) as fh:
            done = json.load(fh)["methods"]
        if not [m for m in args.methods.split(",") if m and m not in done]:
            return True
    os.makedirs(folder, exist_ok=True)
    argv = [sys.executable, os.path.join(HERE, "convergence.py"), "--size", str(size),
            "--pair", pair, "--style-weight", str(beta), "--methods", args.methods,
            "--seconds-ratio", str(args.seconds_ratio), "--out", folder, "--add"]
    if args.quick:
        argv += ["--quick"]
    if args.weights:
        argv += ["--weights", args.weights]
    if args.emulate_rounding:
        argv += ["--emulate-rounding", args.emulate_rounding]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        print(f"{pair} {size} {beta:g}: failed: {done.stderr[-500:]}", flush=True)
        return False
    return True


def reports_in(out: str) -> dict:
    """Every convergence.json in OUT/<size>-<beta>/<pair>/: {(size, beta): {pair: report}}."""
    reports: dict = {}
    for path in sorted(glob.glob(os.path.join(out, "*-*", "*", "convergence.json"))):
        folder, pair = os.path.split(os.path.dirname(path))
        size, beta = os.path.basename(folder).split("-", 1)
        with open(path) as fh:
            reports.setdefault((int(size), float(beta)), {})[pair] = json.load(fh)
    return reports


def summarize(reports: dict) -> list[dict]:
    """Per (size, beta, method): the time ratios and equal-time scores over the pairs. A pair
    whose run never reached PyTorch's loss counts as a time ratio of infinity, so the median
    says "not reached" when half the pairs or more did not reach it (a median over the pairs
    that did would hide them)."""
    rows = []
    for (size, beta), by_pair in sorted(reports.items()):
        # Every method any pair ran, in the order first run (one may be added to some pairs).
        methods = list(dict.fromkeys(m for report in by_pair.values()
                                     for m in report["methods"]))
        for method in methods:
            ratios, equal, pairs = [], [], []
            for pair, report in sorted(by_pair.items()):
                row = next((r for r in report["summary"] if r["method"] == method), None)
                torch = next((r for r in report["summary"] if r["method"] == "torch-lbfgs"),
                             None)
                if row is None or "error" in row or torch is None or "error" in torch:
                    continue
                pairs.append(pair)
                ratio = row["ratio_to_torch"]
                ratios.append(float("inf") if ratio is None else ratio)
                at = row.get("score_at_torch_time")
                equal.append(None if at is None or not torch["final_score"]
                             else at / torch["final_score"])
            rows.append({"size": size, "style_weight": beta, "method": method,
                         "pairs": pairs, "reached": int(np.isfinite(ratios).sum()),
                         "time_ratio": _stats(ratios), "time_ratios": ratios,
                         "score_at_equal_time": _stats([e for e in equal if e is not None]),
                         "scores_at_equal_time": equal})
    return rows


def _stats(values: list[float]) -> dict | None:
    """Median, min and max; infinities (not reached) included."""
    if not values:
        return None
    return {"median": float(np.median(values)), "min": float(min(values)),
            "max": float(max(values))}


def _ratio(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "not reached"


def markdown(rows: list[dict], note: str) -> str:
    lines = [note, "", "| size | beta | method | time to PyTorch's 100-iteration loss, x its "
             "time: median (range) | reached | score at PyTorch's time, x its final: median "
             "(range) |", "|---|---|---|---|---|---|"]
    for r in rows:
        t, e = r["time_ratio"], r["score_at_equal_time"]
        time_text = "-" if t is None else (
            f"{_ratio(t['median'])} ({_ratio(t['min'])} to {_ratio(t['max'])})")
        equal_text = "-" if e is None else f"{e['median']:.2f} ({e['min']:.2f}-{e['max']:.2f})"
        lines.append(f"| {r['size']} | {r['style_weight']:g} | {r['method']} | {time_text} | "
                     f"{r['reached']}/{len(r['pairs'])} | {equal_text} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: str) -> str | None:
    """Per (size, beta): the time ratios (a pair that never reached PyTorch's loss drawn as
    an open circle in the "not reached" band above 1) and the scores at PyTorch's time, one
    dot per pair, medians as bars."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    groups = sorted({(r["size"], r["style_weight"]) for r in rows})
    if not groups:
        return None
    fig, axes = plt.subplots(2, len(groups), figsize=(4.8 * len(groups), 7.2), squeeze=False)
    ceiling = 1.6  # where "not reached" is drawn
    # One colour per method in every panel (a size may run fewer methods).
    colour = {m: f"C{k}" for k, m in enumerate(dict.fromkeys(
        r["method"] for r in rows if r["method"] != "torch-lbfgs"))}
    for col, (size, beta) in enumerate(groups):
        methods = [r for r in rows if (r["size"], r["style_weight"]) == (size, beta)
                   and r["method"] != "torch-lbfgs"]
        top, bottom = axes[0][col], axes[1][col]
        for i, r in enumerate(methods):
            reached = [v for v in r["time_ratios"] if np.isfinite(v)]
            missed = len(r["time_ratios"]) - len(reached)
            top.scatter([i] * len(reached), reached, s=18, color=colour[r["method"]])
            top.scatter([i + 0.1 * (k - (missed - 1) / 2) for k in range(missed)],
                        [ceiling] * missed, s=40, facecolors="none",
                        edgecolors=colour[r["method"]],
                        linewidths=1.5, zorder=3)
            median = r["time_ratio"]["median"] if r["time_ratio"] else None
            if median is not None:
                top.plot([i - 0.3, i + 0.3], [min(median, ceiling)] * 2, color="black",
                         ls="-" if np.isfinite(median) else ":", zorder=2)
            scores = [v for v in r["scores_at_equal_time"] if v is not None]
            bottom.scatter([i] * len(scores), scores, s=18, color=colour[r["method"]])
            if r["score_at_equal_time"]:
                bottom.plot([i - 0.3, i + 0.3], [r["score_at_equal_time"]["median"]] * 2,
                            color="black")
        for ax in (top, bottom):
            ax.axhline(1.0, color="gray", lw=0.8, ls="--")
            ax.set_xticks(range(len(methods)), [r["method"] for r in methods], rotation=40,
                          ha="right", fontsize=8)
            ax.set_yscale("log")
        top.axhspan(1.3, 2.0, color="0.92", zorder=0)
        top.text(-0.45, 1.9, "not reached", ha="left", va="top", fontsize=8)
        top.set_title(f"{size} px, beta {beta:g}", fontsize=9)
        top.set_ylabel("time to PyTorch's loss / its time")
        bottom.set_ylabel("score at PyTorch's time / its final")
    fig.suptitle("one dot per image pair, bars: medians; below 1: ahead of PyTorch's "
                 "L-BFGS\nrandom VGG19 weights", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _finite_or_none(tree):
    """`tree` with every infinity (a pair that did not reach the target) as None: JSON has
    no infinity."""
    if isinstance(tree, dict):
        return {k: _finite_or_none(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_finite_or_none(v) for v in tree]
    return None if isinstance(tree, float) and not np.isfinite(tree) else tree


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", default=",".join(PAIRS))
    p.add_argument("--sizes", default="256,512,1024")
    p.add_argument("--style-weights", default="1e7")
    p.add_argument("--methods", default=METHODS)
    p.add_argument("--seconds-ratio", type=float, default=1.0)
    p.add_argument("--weights")
    p.add_argument("--emulate-rounding", choices=("tf32", "bfloat16"))
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--summary-only", action="store_true",
                   help="summarize the runs already in --out (all of them); run nothing")
    args = p.parse_args(argv)
    if args.quick:
        args.pairs, args.sizes, args.methods = ("chelsea-hubble,astronaut-stripes", "32",
                                                "torch-lbfgs,lbfgs,auto-adam-2")
    if not args.summary_only:
        for size in (int(s) for s in args.sizes.split(",")):
            for beta in (float(b) for b in args.style_weights.split(",")):
                for pair in args.pairs.split(","):
                    if run_one(args.out, pair, size, beta, args):
                        print(f"{pair} {size} px beta {beta:g}: done", flush=True)
    reports = reports_in(args.out)
    rows = summarize(reports)
    note = ("Synthetic VGG19 weights (random_weights(0)): how fast each method lowers this "
            "objective, not how an image looks." if not args.weights else
            f"Weights {args.weights}.")
    if args.emulate_rounding:
        note += f" jaxstyle's arithmetic rounded as {args.emulate_rounding}."
    pairs = sorted({pair for by_pair in reports.values() for pair in by_pair})
    with open(os.path.join(args.out, "summary.json"), "w") as fh:
        json.dump({"rows": _finite_or_none(rows), "note": note, "pairs": pairs}, fh, indent=1)
    table = markdown(rows, note)
    with open(os.path.join(args.out, "summary.md"), "w") as fh:
        fh.write(table + "\n")
    plot(rows, os.path.join(args.out, "summary.png"))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
