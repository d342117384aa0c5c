"""Which optimizer, over many pictures: benchmarks/convergence.py for every image pair, size
and style weight, then the median and range over the pairs of each method's lead.

    python benchmarks/convergence_pairs.py --sizes 256,512,1024 --style-weights 1e7 \\
        --out benchmarks/results/convergence-pairs
    python benchmarks/convergence_pairs.py --pairs chelsea-hubble,coffee-brick --sizes 256 \\
        --style-weights 1e3 --out DIR            # a subset; rerunning skips what is done
    python benchmarks/convergence_pairs.py --quick --out /tmp/pairs   # 32 px, two pairs

Each (pair, size, beta) is one convergence.py run in OUT/<size>-<beta>/<pair>/ (its JSON,
table and plot; an existing convergence.json is kept, so an interrupted sweep goes on where
it stopped). The summary, per (size, beta) and method, over the pairs:
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
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from convergence import PAIRS  # noqa: E402

METHODS = "torch-lbfgs,lbfgs,adam,auto-lbfgs-25,auto-lbfgs-50,auto-adam-50"


def run_one(out: str, pair: str, size: int, beta: float, args) -> dict | None:
    folder = os.path.join(out, f"{size}-{beta:g}", pair)
    report = os.path.join(folder, "convergence.json")
    if not os.path.exists(report):
        os.makedirs(folder, exist_ok=True)
        argv = [sys.executable, os.path.join(HERE, "convergence.py"), "--size", str(size),
                "--pair", pair, "--style-weight", str(beta), "--methods", args.methods,
                "--seconds-ratio", str(args.seconds_ratio), "--out", folder]
        if args.quick:
            argv += ["--quick"]
        if args.weights:
            argv += ["--weights", args.weights]
        if args.emulate_rounding:
            argv += ["--emulate-rounding", args.emulate_rounding]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode:
            print(f"{pair} {size} {beta:g}: failed: {done.stderr[-500:]}", flush=True)
            return None
    with open(report) as fh:
        return json.load(fh)


def summarize(reports: dict) -> list[dict]:
    """Per (size, beta, method): the time ratios and equal-time scores over the pairs."""
    rows = []
    for (size, beta), by_pair in sorted(reports.items()):
        methods = next(iter(by_pair.values()))["methods"]
        for method in methods:
            ratios, equal, reached = [], [], 0
            for report in by_pair.values():
                row = next((r for r in report["summary"] if r["method"] == method), None)
                torch = next((r for r in report["summary"] if r["method"] == "torch-lbfgs"),
                             None)
                if row is None or "error" in row or torch is None or "error" in torch:
                    continue
                if row["ratio_to_torch"] is not None:
                    ratios.append(row["ratio_to_torch"])
                    reached += 1
                at = row.get("score_at_torch_time")
                if at is not None and torch["final_score"]:
                    equal.append(at / torch["final_score"])
            rows.append({"size": size, "style_weight": beta, "method": method,
                         "pairs": len(by_pair), "reached": reached,
                         "time_ratio": _stats(ratios), "time_ratios": ratios,
                         "score_at_equal_time": _stats(equal), "scores_at_equal_time": equal})
    return rows


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median": float(np.median(values)), "min": float(min(values)),
            "max": float(max(values))}


def markdown(rows: list[dict], note: str) -> str:
    lines = [note, "", "| size | beta | method | time to PyTorch's 100-iteration loss, x its "
             "time: median (range) | reached | score at PyTorch's time, x its final: median "
             "(range) |", "|---|---|---|---|---|---|"]
    for r in rows:
        t, e = r["time_ratio"], r["score_at_equal_time"]
        time_text = "-" if t is None else f"{t['median']:.2f} ({t['min']:.2f}-{t['max']:.2f})"
        equal_text = "-" if e is None else f"{e['median']:.2f} ({e['min']:.2f}-{e['max']:.2f})"
        lines.append(f"| {r['size']} | {r['style_weight']:g} | {r['method']} | {time_text} | "
                     f"{r['reached']}/{r['pairs']} | {equal_text} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    groups = sorted({(r["size"], r["style_weight"]) for r in rows})
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 4), squeeze=False)
    for ax, (size, beta) in zip(axes[0], groups, strict=True):
        methods = [r for r in rows if (r["size"], r["style_weight"]) == (size, beta)
                   and r["method"] != "torch-lbfgs"]
        for i, r in enumerate(methods):
            ax.scatter([i] * len(r["time_ratios"]), r["time_ratios"], s=18)
            if r["time_ratio"]:
                ax.plot([i - 0.3, i + 0.3], [r["time_ratio"]["median"]] * 2, color="black")
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xticks(range(len(methods)), [r["method"] for r in methods], rotation=40,
                      ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"{size} px, beta {beta:g}", fontsize=9)
        ax.set_ylabel("time to PyTorch's loss / its time")
    fig.suptitle("one dot per image pair (bars: medians); random VGG19 weights", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    args = p.parse_args(argv)
    if args.quick:
        args.pairs, args.sizes, args.methods = ("chelsea-hubble,astronaut-stripes", "32",
                                                "torch-lbfgs,lbfgs,auto-adam-2")
    reports: dict = {}
    for size in (int(s) for s in args.sizes.split(",")):
        for beta in (float(b) for b in args.style_weights.split(",")):
            for pair in args.pairs.split(","):
                report = run_one(args.out, pair, size, beta, args)
                if report is not None:
                    reports.setdefault((size, beta), {})[pair] = report
                    print(f"{pair} {size} px beta {beta:g}: done", flush=True)
    rows = summarize(reports)
    note = ("Synthetic VGG19 weights (random_weights(0)): how fast each method lowers this "
            "objective, not how an image looks." if not args.weights else
            f"Weights {args.weights}.")
    if args.emulate_rounding:
        note += f" jaxstyle's arithmetic rounded as {args.emulate_rounding}."
    with open(os.path.join(args.out, "summary.json"), "w") as fh:
        json.dump({"rows": rows, "note": note, "pairs": args.pairs.split(",")}, fh, indent=1)
    table = markdown(rows, note)
    with open(os.path.join(args.out, "summary.md"), "w") as fh:
        fh.write(table + "\n")
    plot(rows, os.path.join(args.out, "summary.png"))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
