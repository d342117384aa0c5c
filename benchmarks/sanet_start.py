"""Gatys loss against time from the SANet result (`--init sanet`) and from the content image.

    python benchmarks/sanet_start.py --size 512 --iterations 40 --out benchmarks/results/sanet-start
    python benchmarks/sanet_start.py --quick --out /tmp/q   # 32 px, 2 steps, 2 blocks (tests)

Both runs minimize the same objective (same photos, weights, config; only the start image
differs), so their losses compare directly. The SANet start's clock begins with the SANet
forward pass (timed after its compilation, as a second process with a warm compilation cache
would see it; the compile time is reported separately). Writes OUT/sanet_start.json (every
step's loss and time) and OUT/sanet_start.png (log loss against seconds).

Weights: --weights (a VGG19 file) and --sanet-model (a converted SANet .npz with its encoder,
`jaxstyle convert sanet`); each defaults to random weights of the real architecture, which is
all this project's development machines have: figures from random weights say nothing about
image quality, only about the method and its cost. With the released weights, the same
command with both options repeats the measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXAMPLES = ROOT / "examples"


def _random_sanet(work: Path) -> Path:
    from jaxstyle.arbitrary import random_params, save_model

    path = work / "sanet-random.npz"
    save_model(random_params("sanet"), path, "sanet")
    return path


def _random_vgg19(work: Path) -> Path:
    import jaxstyle

    path = work / "vgg19-random.npz"
    jaxstyle.save_weights(jaxstyle.random_weights(0), path)
    return path


def _run(label: str, content, style, weights, config, init, offset_s: float) -> dict:
    """One stylize run; every step's (seconds since the start, total loss)."""
    import jaxstyle

    stamps: list[tuple[int, float, float]] = []
    t0 = time.perf_counter()

    def callback(progress) -> bool:
        stamps.append((progress.step, time.perf_counter() - t0,
                       float(progress.losses["total"][0])))
        return True

    result = jaxstyle.stylize(content, style, weights=weights, config=config, init=init,
                              callback=callback, callback_every=1)
    return {"label": label, "offset_s": offset_s,
            "steps": [s for s, _, _ in stamps],
            "seconds": [offset_s + t for _, t, _ in stamps],
            "loss": [loss for _, _, loss in stamps],
            "start_loss": float(result.stage_start_losses[0][0]),
            "best_loss": float(result.best_loss),
            "timings": result.timings}


def plot(report: dict, path: Path) -> None:
    """log loss against seconds, one line per start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for run in report["runs"]:
        ax.plot([0.0, *run["seconds"]] if run["offset_s"] == 0 else
                [run["offset_s"], *run["seconds"]],
                [run["start_loss"], *run["loss"]], marker=".", label=run["label"])
    ax.set_yscale("log")
    ax.set_xlabel("seconds (the SANet start includes its forward pass)")
    ax.set_ylabel("Gatys objective (total loss)")
    ax.set_title(f"{report['size']} px, {report['optimizer']}, {report['device']}; "
                 f"{report['weights_note']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="output's longest side")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--optimizer", default="lbfgs", choices=("lbfgs", "adam", "lbfgs-nols"))
    parser.add_argument("--weights", help="VGG19 weights (default: random)")
    parser.add_argument("--sanet-model", help="converted SANet .npz (default: random)")
    parser.add_argument("--content", default=str(EXAMPLES / "chelsea.jpg"))
    parser.add_argument("--style", default=str(EXAMPLES / "hubble_deep_field.jpg"))
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--quick", action="store_true",
                        help="32 px, 2 steps, the VGG's first two blocks as layers (tests)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.iterations = 32, 2

    import jax

    import jaxstyle
    from jaxstyle.arbitrary import load_sanet, stylize_sanet
    from jaxstyle.image import load_image, resize_to, scale_shape

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="jaxstyle-sanet-start-"))
    random = args.weights is None or args.sanet_model is None
    weights = jaxstyle.load_vgg19(args.weights or _random_vgg19(work))
    sanet = load_sanet(model=args.sanet_model or _random_sanet(work))
    content = load_image(args.content)
    content = resize_to(content, scale_shape(content.shape[:2], args.size))
    style = load_image(args.style)
    style = resize_to(style, scale_shape(style.shape[:2], args.size))
    layers = (dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))
              if args.quick else {})  # --quick: the plumbing, at half the compile time
    config = jaxstyle.StyleConfig(optimizer=args.optimizer, iterations=args.iterations, **layers)

    t0 = time.perf_counter()
    start = jax.block_until_ready(stylize_sanet(sanet, content, style))
    sanet_first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    start = jax.block_until_ready(stylize_sanet(sanet, content, style))
    sanet_s = time.perf_counter() - t0

    # Compile first (one step, same programs: the iteration count is a traced argument), so
    # neither timed run pays for compilation.
    for init in (None, start):
        _run("warm-up", content, style, weights, config.replace(iterations=1), init, 0.0)
    runs = [_run("from the content image", content, style, weights, config, None, 0.0),
            _run("from the SANet result (--init sanet)", content, style, weights, config,
                 start, sanet_s)]
    device = jax.devices()[0]
    report = {
        "size": args.size, "shape": list(content.shape[:2]), "optimizer": args.optimizer,
        "iterations": args.iterations, "sanet_s": sanet_s, "sanet_first_call_s": sanet_first_s,
        "device": f"{device.platform}:{device.device_kind}", "cpus": os.cpu_count(),
        "platform": platform.platform(), "jax": jax.__version__,
        "load_avg": list(os.getloadavg()), "random_weights": random,
        "weights_note": "random weights" if random else "released weights",
        "runs": runs,
    }
    (args.out / "sanet_start.json").write_text(json.dumps(report, indent=1))
    plot(report, args.out / "sanet_start.png")
    for run in runs:
        print(f"{run['label']}: start {run['start_loss']:.4g}, after {run['steps'][-1]} steps "
              f"{run['loss'][-1]:.4g} at {run['seconds'][-1]:.1f} s")
    print(f"SANet forward pass {sanet_s:.2f} s (first call, compiling: {sanet_first_s:.2f} s); "
          f"wrote {args.out / 'sanet_start.json'} and {args.out / 'sanet_start.png'}")
    return 0


if __name__ == "__main__":
    from jaxstyle import runtime

    runtime.enable_compile_cache()
    sys.exit(main())
