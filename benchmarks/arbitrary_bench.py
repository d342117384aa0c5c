"""Speed and memory of jaxstyle.arbitrary (SANet, AdaIN) against the PyTorch reference.

    python benchmarks/arbitrary_bench.py --sizes 256,512,1024 --rounds 3 --json out.json
    python benchmarks/arbitrary_bench.py --quick          # 32 px, seconds: what the tests run

Every measurement is a fresh subprocess (peak memory per framework, model and size), and the
frameworks alternate (jax, torch, then torch, jax in the next round ...), so slow phases of a
shared machine hit both; each worker records the load average before and after. Per worker,
after one untimed first call (jax: compile + run):
- with_style_s: one content and one style image (both size x size) to the output, style
  encoding included (jax: `stylize_sanet(params, content, style)`; PyTorch: the reference
  encoder on both images, Transform/AdaIN, decoder), --repeats times;
- without_style_s: the same with the style encoded once beforehand (jax: `encode_styles`;
  PyTorch: the style's encoder features, so its Transform still runs g and h on them);
- batch_s: --batch contents in one call against the encoded style; images per second;
- with_style_cpu_s: the process CPU time (all threads) of each with-style call;
- peak memory: VmHWM of the worker (device peak bytes on a GPU).
The table reports, per model and size, the median over rounds of each worker's median, the
ratio jax / PyTorch per round and of those medians, and the load seen. GFLOP are analytic
(`flops`). The weights are random (`jaxstyle.arbitrary.random_params`, the real networks'
shapes and compute), converted once to the released layouts for PyTorch; the images are the
README's example photos squashed to size x size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The PyTorch reference models and baselines (tests/references/), run as the PyTorch side.
REFERENCES = os.path.join(HERE, "..", "tests", "references")
# This checkout's jaxstyle, whatever is installed (workers run from benchmarks/).
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402
from procmem import peak_rss_bytes  # noqa: E402  (benchmarks/, beside this file)

MARKER = "BENCH_JSON "
_EXAMPLES = os.path.join(HERE, os.pardir, "examples")
_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 1))  # encoder up to conv5_1
_DECODER = ((512, 256, 1), (256, 256, 2), (256, 256, 2), (256, 256, 2), (256, 128, 2),
            (128, 128, 4), (128, 64, 4), (64, 64, 8), (64, 3, 8))  # cin, cout, x relu4_1


# --------------------------------------------------------------------------- analytic FLOPs


def encoder_flops(h: int, w: int, deepest_block: int) -> int:
    """2 * h * w * k^2 * Cin * Cout per convolution (multiply-add = 2 FLOPs), conv0 to
    conv{deepest}_1, ceil-mode pooling between blocks; padding, ReLU, pooling not counted."""
    total, cin = 2 * h * w * 3 * 3, 3
    for b, (cout, depth) in enumerate(_BLOCKS[:deepest_block], 1):
        if b > 1:
            h, w = -(-h // 2), -(-w // 2)
        for _ in range(depth if b < deepest_block else 1):
            total += 2 * h * w * 9 * cin * cout
            cin = cout
    return total


def decoder_flops(h4: int, w4: int) -> int:
    return sum(2 * h4 * s * w4 * s * 9 * cin * cout for cin, cout, s in _DECODER)


def transform_flops(h4: int, w4: int, hs4: int, ws4: int, c: int = 512) -> dict[str, int]:
    """Per level (t content, s style positions): f and out_conv 2 t C^2 each, g and h
    2 s C^2 each (the style side), logits and weighted sum 2 t s C each; merge_conv 3x3."""
    style_side = content_side = 0
    for t, s in ((h4 * w4, hs4 * ws4),
                 (math.ceil(h4 / 2) * math.ceil(w4 / 2), math.ceil(hs4 / 2) * math.ceil(ws4 / 2))):
        content_side += 4 * t * c * c + 4 * t * s * c
        style_side += 4 * s * c * c
    return {"content": content_side + 2 * h4 * w4 * 9 * c * c, "style": style_side}


def flops(kind: str, size: int) -> dict[str, float]:
    """GFLOP of one size x size content with a size x size style: with and without the style's
    encoding (SANet: encoder to relu5_1 and the Transform's g, h; AdaIN: encoder to relu4_1)."""
    m = 16 if kind == "sanet" else 8
    padded = max(-(-size // m) * m, 2 * m)
    h4 = padded // 8
    deepest = 5 if kind == "sanet" else 4
    content = encoder_flops(padded, padded, deepest) + decoder_flops(h4, h4)
    style = encoder_flops(size, size, deepest)
    if kind == "sanet":
        t = transform_flops(h4, h4, -(-size // 8), -(-size // 8))
        content += t["content"]
        style += t["style"]
    return {"without_style_gflop": content / 1e9, "with_style_gflop": (content + style) / 1e9}


# ----------------------------------------------------------------------------------- workers


def _images(size: int) -> tuple[np.ndarray, np.ndarray]:
    from jaxstyle.image import load_image, resize_to

    return tuple(resize_to(load_image(os.path.join(_EXAMPLES, name)), (size, size))
                 for name in ("chelsea.jpg", "hubble_deep_field.jpg"))


def _timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def jax_worker(args) -> dict:
    """One jax measurement (module docstring); returns its JSON row."""
    from jaxstyle import runtime

    flags = runtime.set_xla_cpu_flags() if args.xla_flags else os.environ.get("XLA_FLAGS", "")
    import jax

    from jaxstyle.arbitrary import encode_styles, stylize_adain, stylize_sanet
    from jaxstyle.arbitrary.weights import read_model

    _, params = read_model(args.weights)
    params = jax.device_put(params)
    with np.load(args.images) as f:
        content, style = f["content"], f["style"]
    stylize = stylize_sanet if args.kind == "sanet" else stylize_adain
    t0 = time.perf_counter()
    out = stylize(params, content, style)
    first = time.perf_counter() - t0
    codes = encode_styles(params, style)
    stylize(params, content, codes)  # compile the program taking codes (the same program)
    batch = np.stack([content[:, ::-1] if k % 2 else content for k in range(args.batch)])
    rows = {"with_style_s": [], "without_style_s": [], "batch_s": []}
    if args.batch > 1:
        stylize(params, batch, codes)  # compile the batched program
    cpu = []
    for _ in range(args.repeats):
        c0 = time.process_time()
        rows["with_style_s"] += _timed(lambda: stylize(params, content, style), 1)
        cpu.append(time.process_time() - c0)
        rows["without_style_s"] += _timed(lambda: stylize(params, content, codes), 1)
        if args.batch > 1:
            rows["batch_s"] += _timed(lambda: stylize(params, batch, codes), 1)
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    return {"framework": "jax", "kind": args.kind, "size": args.size, "batch": args.batch,
            "first_s": first, **rows, "with_style_cpu_s": cpu, "peak_rss_bytes": peak_rss_bytes(),
            "device_peak_bytes": stats.get("peak_bytes_in_use") if stats else None,
            "output_mean": float(out.mean()), "device": str(device), "xla_flags": flags,
            "jax": jax.__version__}


# ------------------------------------------------------------------------------------ driver


def _prepare(work: str, kinds, sizes) -> dict:
    """Random weights as a jaxstyle model .npz (jax) and released-layout arrays (PyTorch), and
    the images per size, written once into `work`."""
    from jaxstyle.arbitrary import random_params, released, save_model

    paths = {}
    for kind in kinds:
        params = random_params(kind)
        paths[kind] = save_model(params, os.path.join(work, f"{kind}.npz"), kind)
        arrays = {}
        for layout, part in (("vgg", "encoder"), ("decoder", "decoder"),
                             ("transformer", "transform")):
            if part not in params:
                continue
            for key, (path, _) in released.layout(layout).items():
                if path is None or path[0] not in params[part]:
                    continue  # unused conv5_2 .. conv5_4, and AdaIN's encoder past conv4_1
                value = np.asarray(_leaf(params[part], path))
                arrays[f"{layout}/{key}"] = value.transpose(3, 2, 0, 1) if value.ndim == 4 \
                    else value
        paths[f"{kind}-torch"] = os.path.join(work, f"{kind}-torch.npz")
        np.savez(paths[f"{kind}-torch"], **arrays)
    for size in sizes:
        content, style = _images(size)
        paths[size] = os.path.join(work, f"images-{size}.npz")
        np.savez(paths[size], content=content, style=style)
    return paths


def _leaf(tree, path):
    for name in path:
        tree = tree[name]
    return tree


def _run(cmd: list[str], timeout: float) -> dict:
    load_before = os.getloadavg()[0]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    rows = [line[len(MARKER):] for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if proc.returncode or not rows:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return dict(json.loads(rows[-1]), load_before=load_before, load_after=os.getloadavg()[0])


def _summary(rows: list[dict], key: str) -> float | None:
    """Median over workers of each worker's median of `key`."""
    medians = [statistics.median(r[key]) for r in rows if r.get(key)]
    return statistics.median(medians) if medians else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="256,512,1024")
    p.add_argument("--models", default="sanet,adain")
    p.add_argument("--rounds", type=int, default=3, help="alternating jax/torch worker pairs")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per worker and row")
    p.add_argument("--batch", type=int, default=4, help="contents per batched call")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--torch-layouts", default="nchw,channels_last",
                   help="PyTorch memory formats to run: nchw (the reference code's) and/or "
                        "channels_last; the ratios are against the faster one")
    p.add_argument("--no-xla-flags", dest="xla_flags", action="store_false",
                   help="leave out jaxstyle.runtime.CPU_FLAGS")
    p.add_argument("--quick", action="store_true",
                   help="32 px, one round, one repeat, no batch")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--json", help="write every measurement here")
    p.add_argument("--silent", action="store_true")
    # worker mode (internal)
    p.add_argument("--worker", choices=("jax",), help=argparse.SUPPRESS)
    p.add_argument("--kind", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--images", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(MARKER + json.dumps(jax_worker(args)))
        return 0
    if args.quick:
        args.sizes, args.rounds, args.repeats, args.batch = "32", 1, 1, 1
    sizes = [int(s) for s in args.sizes.split(",") if s]
    kinds = [k for k in args.models.split(",") if k]
    torch_ok = not args.no_torch and _has_torch()
    frameworks = ["jax"] + [_TORCH[layout] for layout in args.torch_layouts.split(",") if layout]
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "python": platform.python_version()},
              "args": {k: v for k, v in vars(args).items() if k not in ("worker", "kind",
                                                                         "size", "weights",
                                                                         "images")},
              "commit": _commit(), "load_start": os.getloadavg(), "rows": [], "summary": []}
    with tempfile.TemporaryDirectory() as work:
        paths = _prepare(work, kinds, sizes)
        for r in range(args.rounds):
            for size in sizes:
                for kind in kinds:
                    order = ["jax"] + (frameworks[1:] if torch_ok else [])
                    order = order[r % len(order):] + order[:r % len(order)]  # rotate
                    for framework in order:
                        row = _run(_command(framework, kind, size, paths, args), args.timeout)
                        row.update(framework=framework, kind=kind, size=size, round=r)
                        report["rows"].append(row)
                        if not args.silent:
                            print(_one_line(row), flush=True)
    report["load_end"] = os.getloadavg()
    for size in sizes:
        for kind in kinds:
            report["summary"].append(_summarize(report["rows"], kind, size))
    if not args.silent:
        print(_table(report["summary"]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0 if all("error" not in r for r in report["rows"]) else 1


# Framework names of the PyTorch workers by memory format.
_TORCH = {"nchw": "torch", "channels_last": "torch-cl"}


def _command(framework: str, kind: str, size: int, paths: dict, args) -> list[str]:
    if framework == "jax":
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "jax", "--kind", kind,
               "--size", str(size), "--weights", str(paths[kind]), "--images", paths[size],
               "--repeats", str(args.repeats), "--batch", str(args.batch)]
        return cmd + ([] if args.xla_flags else ["--no-xla-flags"])
    cmd = [sys.executable, os.path.join(REFERENCES, "torch_arbitrary.py"), "--kind", kind,
           "--size", str(size), "--weights", paths[f"{kind}-torch"], "--images", paths[size],
           "--repeats", str(args.repeats), "--batch", str(args.batch)]
    return cmd + (["--channels-last"] if framework == "torch-cl" else [])


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=HERE, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _summarize(rows, kind, size) -> dict:
    """Per framework: medians over its workers; ratios of jax over the faster PyTorch layout
    (by its median with-style time), overall and per round."""
    mine = [r for r in rows if r["kind"] == kind and r["size"] == size and "error" not in r]
    out = {"kind": kind, "size": size, **flops(kind, size)}
    out["batch"] = max((r.get("batch", 1) for r in mine), default=1)
    for fw in ("jax", *_TORCH.values()):
        fr = [r for r in mine if r["framework"] == fw]
        if not fr:
            continue
        for key in ("with_style_s", "without_style_s", "batch_s", "with_style_cpu_s"):
            out[f"{fw}_{key}"] = _summary(fr, key)
        out[f"{fw}_peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in fr)
        out[f"{fw}_first_s"] = statistics.median(r["first_s"] for r in fr)
    torches = [fw for fw in _TORCH.values() if out.get(f"{fw}_with_style_s")]
    if "jax_with_style_s" in out and torches:
        best = min(torches, key=lambda fw: out[f"{fw}_with_style_s"])
        out["torch_baseline"] = best
        for key in ("with_style_s", "without_style_s", "batch_s", "with_style_cpu_s"):
            if out.get(f"jax_{key}") and out.get(f"{best}_{key}"):
                out[f"ratio_{key}"] = out[f"jax_{key}"] / out[f"{best}_{key}"]
        out["ratio_with_style_per_round"] = [
            statistics.median(j["with_style_s"]) / statistics.median(t["with_style_s"])
            for j in mine if j["framework"] == "jax"
            for t in mine if t["framework"] == best and t["round"] == j["round"]]
    loads = [r[k] for r in mine for k in ("load_before", "load_after")]
    out["load"] = [min(loads), max(loads)] if loads else None
    return out


def _one_line(row: dict) -> str:
    if "error" in row:
        return f"{row['framework']} {row['kind']} {row['size']}: ERROR {row['error']}"
    return (f"round {row['round']} {row['framework']:5} {row['kind']} {row['size']}: "
            f"with style {statistics.median(row['with_style_s']):.3f} s, without "
            f"{statistics.median(row['without_style_s']):.3f} s, load "
            f"{row['load_before']:.1f}-{row['load_after']:.1f}")


def _table(summary: list[dict]) -> str:
    def fmt(v, spec=".3f"):
        return "-" if v is None else format(v, spec)

    lines = ["| model | size | GFLOP | jax s/img: with style, without | PyTorch s/img "
             "(layout) | jax/PyTorch | batch img/s jax, PyTorch | peak RSS jax / PyTorch | "
             "load |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        best = s.get("torch_baseline", "torch")
        rate = [None if not s.get(f"{fw}_batch_s") else s["batch"] / s[f"{fw}_batch_s"]
                for fw in ("jax", best)]
        peak = [s.get(f"{fw}_peak_rss_bytes") for fw in ("jax", best)]
        load = s["load"] or [None, None]
        lines.append(
            f"| {s['kind']} | {s['size']} | {s['with_style_gflop']:.0f}, "
            f"{s['without_style_gflop']:.0f} | {fmt(s.get('jax_with_style_s'))}, "
            f"{fmt(s.get('jax_without_style_s'))} | {fmt(s.get(f'{best}_with_style_s'))}, "
            f"{fmt(s.get(f'{best}_without_style_s'))} ({best}) | "
            f"{fmt(s.get('ratio_with_style_s'), '.2f')}, "
            f"{fmt(s.get('ratio_without_style_s'), '.2f')} | {fmt(rate[0], '.2f')}, "
            f"{fmt(rate[1], '.2f')} | "
            + " / ".join("-" if b is None else f"{b / 2**30:.2f}" for b in peak)
            + f" GiB | {fmt(load[0], '.1f')}-{fmt(load[1], '.1f')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
