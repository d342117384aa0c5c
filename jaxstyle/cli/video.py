"""`jaxstyle video IN STYLE [STYLE ...] -o OUT`: a video stylized with temporal consistency.

    jaxstyle video in.mp4 style.jpg -o out.mp4 --image-size 512            (gatys)
    jaxstyle video in.mp4 style.jpg -o out.mp4 --engine adain --vgg vgg_normalised.pth \\
        --decoder decoder.pth --temporal-weight 0.6
    jaxstyle video 'frames/%05d.png' style.jpg -o frames_out/

Every option of `jaxstyle` (Gatys) and of `jaxstyle sanet|adain` works here with the same
name and meaning: the option groups are theirs (`cli.gatys`, `cli.arbitrary`). The library
(`jaxstyle.video.stylize_file`) streams the frames: read and flow on the host, the engine on
the device, encoding in a thread. Ctrl-C finishes the frame being made (Gatys: the current
chunk), writes a playable video of the frames done and exits 130.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from jaxstyle import __version__, files
from jaxstyle.cli import arbitrary, gatys, live
from jaxstyle.cli.console import Bar, InterruptFlag
from jaxstyle.cli.options import (
    DEFAULT_IMAGE_SIZE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STATUS,
    PROG,
    UsageError,
    add_command,
    add_runtime_options,
    add_serve_options,
    check_output,
    numbers,
    start_jax,
)
from jaxstyle.config import INITS
from jaxstyle.image import load_image, resize_to, scale_shape

STOP = ("finishing the current frame, then writing the frames done so far (Ctrl-C again "
        "quits without saving)")


def add_parsers(sub) -> dict[str, argparse.ArgumentParser]:
    """The `video` command."""
    from jaxstyle.video import DEFAULT_FRAME_ITERATIONS, DEFAULT_TEMPORAL_WEIGHT, PRESETS

    p = add_command(sub, "video", run, epilog=EXIT_STATUS, description=(
        "Stylize a video, frames consistent in time: Gatys with Ruder et al.'s temporal loss\n"
        "(GCPR 2016), or SANet/AdaIN with a flow-weighted blend. The output keeps the input's\n"
        "frame rate and timestamps, size (odd sides padded by one for the codec, and said),\n"
        "rotation and audio (copied unchanged). docs/video.md has the measurements."))
    p.add_argument("input", metavar="IN",
                   help="video file (mp4, mov, mkv, webm, gif), folder of frames, or a "
                        "pattern such as frames/%%05d.png")
    p.add_argument("styles", metavar="STYLE", nargs="+", help="style image file(s)")
    p.add_argument("-o", "--output", metavar="OUT", required=True, type=Path,
                   help="video file (.mp4 .mov .mkv: H.264; .webm: VP9; .gif) or a folder "
                        "(no suffix) of PNG frames")
    p.add_argument("--engine", choices=("gatys", "sanet", "adain"), default="gatys",
                   help="gatys: optimization per frame (slow, the best consistency); sanet, "
                        "adain: one forward pass per frame (default gatys)")
    g = p.add_argument_group("temporal consistency")
    g.add_argument("--temporal-weight", metavar="W", type=numbers(many=False),
                   help="gatys: the temporal loss's weight (default "
                        f"{DEFAULT_TEMPORAL_WEIGHT['gatys']:g}); sanet, adain: the blend with "
                        "the previous output warped, in [0, 1] (default "
                        f"{DEFAULT_TEMPORAL_WEIGHT['adain']:g}); 0: frame by frame")
    g.add_argument("--temporal-frames", metavar="D,...", type=numbers(int), default=(1,),
                   help="earlier frames compared, by distance: 1 the previous (default); "
                        "1,2,4 Ruder et al.'s long-term loss, nearest first")
    g.add_argument("--frame-iterations", metavar="N", type=numbers(int, many=False),
                   default=DEFAULT_FRAME_ITERATIONS,
                   help="gatys: steps of every frame after the first, at the output size "
                        f"(default {DEFAULT_FRAME_ITERATIONS}; the first runs --iterations "
                        "and --scales)")
    g.add_argument("--flow", choices=PRESETS,
                   help="optical flow, OpenCV's DIS (default dis-medium for gatys, dis-fast "
                        "for sanet and adain)")
    g = p.add_argument_group("frames")
    g.add_argument("--start", metavar="SECONDS", type=numbers(many=False), default=0.0,
                   help="first frame's time (default 0)")
    g.add_argument("--duration", metavar="SECONDS", type=numbers(many=False),
                   help="seconds of video from --start (default: to the end)")
    g.add_argument("--every", metavar="N", type=numbers(int, many=False), default=1,
                   help="keep every N-th frame (the frame rate divides by N; default 1)")
    gatys.add_loss_options(p)
    gatys.add_optimization_options(p)
    gatys.add_image_options(p)
    arbitrary.add_model_options(p, None)
    g = p.add_argument_group("sanet and adain")
    g.add_argument("--alpha", metavar="A", type=numbers(many=False),
                   help="content-style trade-off in [0, 1] (default 1: all style)")
    arbitrary.add_size_options(g, "frames")
    g = p.add_argument_group("weights and runtime")
    gatys.add_weights_option(g)
    add_runtime_options(g, json_help="write a JSON summary: E_warp of the output and of the "
                                     "input, frames per second, seconds in flow, "
                                     "stylization and encoding")
    add_serve_options(p.add_argument_group("live page"))
    return {"video": p}


def _check(args: argparse.Namespace):
    """Everything that needs no work: the options, the output, the input (opened, not
    decoded), the sizes. Returns (source, working shape, config or None)."""
    from jaxstyle.stylize import plan_stages
    from jaxstyle.video import pipeline, sink, source

    try:
        import av  # noqa: F401
        import cv2  # noqa: F401
    except ImportError as err:
        raise UsageError(f"video needs PyAV and OpenCV ({err.name} is missing): pip install "
                         "'jaxstyle[video]'") from None
    if args.engine != "gatys":
        wrong = [flag for flag, dest in (("--weights", "weights"), ("--init", "init"),
                                         ("--sanet-model", "sanet_model"),
                                         ("--style-masks", "style_masks"))
                 if getattr(args, dest) is not None]
        if args.preserve_colors == "luminance":
            wrong.append("--preserve-colors luminance")
        if wrong:
            raise UsageError(f"{', '.join(wrong)}: for --engine gatys only")
    if args.init is not None and args.init not in INITS:
        raise UsageError(f"--init: a video starts from {', '.join(INITS)}, got {args.init!r}")
    from jaxstyle import checks
    from jaxstyle.video.engines import check_temporal_frames

    check_temporal_frames(args.temporal_frames)
    checks.integer("frame_iterations", args.frame_iterations, 1)
    if args.temporal_weight is not None:
        tau = checks.weights("temporal_weight", args.temporal_weight)
        if args.engine != "gatys" and tau > 1:
            raise UsageError(f"--temporal-weight of {args.engine} is a blend weight in [0, 1], "
                             f"got {args.temporal_weight:g}")
    sink.output_kind(args.output)
    for source_path in (args.input, *args.styles, args.json):
        if source_path is not None and Path(source_path).resolve() == args.output.resolve():
            raise UsageError(f"-o/--output: {args.output} would overwrite the input "
                             f"{source_path}")
    problem = sink.output_problem(args.output)  # a file's folder, or a frame folder
    if problem:
        raise files.InputError(f"{args.output}: {problem}")
    if args.json is not None:
        check_output(args.json, [args.input, *args.styles])
    src = source.open_source(args.input, start=args.start, duration=args.duration,
                             every=args.every)
    side = args.image_size or DEFAULT_IMAGE_SIZE
    shape = pipeline.working_shape(src.info.size, side)
    config = None
    if args.engine == "gatys":
        config, lists = gatys.style_config(args)
        if any(len(v) > 1 for v in lists.values()):
            raise UsageError("video takes one value per weight (no sweeps)")
        config = config.replace(image_size=max(shape))
        plan_stages(shape, [(max(shape), max(shape))] * len(args.styles), config,
                    memory_limit=args.memory_limit)
    return src, shape, config


def run(args: argparse.Namespace) -> int:
    """Check, open the live page (--serve), load, stream the video through the engine,
    report."""
    t_start = time.perf_counter()
    src, shape, config = _check(args)
    view = live.View(args, kind="video", title=f"{args.input} -> {args.output}",
                     download_name=f"{args.output.stem}_frame.png",
                     stop_message="finishing the current frame, then writing the frames "
                                  "done so far")
    with view:
        return _run(args, src, shape, config, view, t_start)


def _run(args, src, shape, config, view: live.View, t_start: float) -> int:
    import jax

    from jaxstyle.video import FeedForwardEngine, GatysEngine, stylize_file

    view.phase("loading", "reading the styles and the model")
    device = start_jax(args)
    styles = [load_image(path) for path in args.styles]
    if args.engine != "gatys":  # sized before the model is read: a size that cannot run
        from jaxstyle.arbitrary.stylize import check_memory

        side = args.style_size or max(shape)
        check_memory(args.engine, shape, [scale_shape(s.shape[:2], side) for s in styles],
                     batch=args.batch_size, memory_limit=args.memory_limit,
                     styles_follow=args.style_size is None)
    if args.engine == "gatys":
        import jaxstyle

        with Bar(args.quiet, unit="B", desc="VGG19 weights (once; cached)") as bar:
            weights = jaxstyle.load_vgg19(args.weights, progress=bar.bytes)
        masks = None if args.style_masks is None else [gatys._mask(m) for m in args.style_masks]
        engine = GatysEngine(weights, config, args.frame_iterations, args.preserve_colors,
                             style_masks=masks)
    else:
        side = args.style_size or max(shape)
        styles = [resize_to(s, scale_shape(s.shape[:2], side)) for s in styles]
        params = arbitrary.load_model(args.engine, args)
        if args.preserve_colors == "histogram":
            styles = _recoloured(styles, src)
        engine = FeedForwardEngine(params, 1.0 if args.alpha is None else args.alpha,
                                   args.style_blend_weights, args.batch_size)
    view.describe(settings=_settings(args, shape, config), devices=[device])
    view.phase("running", f"{args.engine}: the first frame compiles")
    flag = InterruptFlag(args.quiet, message=STOP)
    latest = {}  # the newest output frame: the page's final image
    with Bar(args.quiet, total=src.info.frames, unit="frame", desc=args.engine,
             print_every=10) as bar, flag:

        def progress(p) -> bool:
            text = "" if p.warping_error is None else f"E_warp {p.warping_error:.3g}"
            bar.update(p.index + 1, text)
            latest["frame"] = p.output
            view.update(p.index + 1, p.total, {} if p.warping_error is None else
                        {"E_warp": p.warping_error}, images=lambda: p.output)
            return not (flag.is_set() or view.stopped)

        result = stylize_file(args.input, args.output, styles, engine=engine,
                              temporal_weight=args.temporal_weight,
                              temporal_frames=args.temporal_frames, flow=args.flow,
                              start=args.start, duration=args.duration, every=args.every,
                              image_size=max(shape), callback=progress, stop=flag.is_set)
    for note in result.notes:
        print(f"{PROG}: note: {note}", file=sys.stderr)
    if args.json is not None:
        files.write_json(args.json, _summary(args, result, device, t_start, jax),
                         sort_keys=True)
    w, h = result.size
    ew = "" if result.warping_error is None else (
        f", E_warp {result.warping_error:.3g} (input {result.input_warping_error:.3g})")
    if result.stopped == "interrupted":
        print(f"{PROG}: interrupted; wrote the {result.count} frames done to {args.output}",
              file=sys.stderr, flush=True)
        view.finish("interrupted", f"Stopped after {result.count} frames.",
                    exit_code=EXIT_INTERRUPTED, images=latest.get("frame"),
                    outputs=[str(args.output)])
        return EXIT_INTERRUPTED
    if not args.quiet:
        print(f"wrote {args.output} ({result.count} frames, {w}x{h}, {result.info.rate} fps"
              f"{ew}, {result.fps:.2f} frames/s)")
    view.finish("done", f"{result.count} frames, {w}x{h}{ew}.", exit_code=EXIT_OK,
                images=latest.get("frame"), outputs=[str(args.output)])
    return EXIT_OK


def _temporal_weight(args) -> float:
    """The temporal weight the run uses: --temporal-weight, else the engine's default."""
    from jaxstyle.video import DEFAULT_TEMPORAL_WEIGHT

    if args.temporal_weight is None:
        return DEFAULT_TEMPORAL_WEIGHT[args.engine]
    return args.temporal_weight


def _flow(args) -> str:
    """The optical flow the run uses: --flow, else the engine's default."""
    from jaxstyle.video import DEFAULT_FLOW

    return args.flow or DEFAULT_FLOW[args.engine]


def _settings(args, shape, config) -> dict:
    """What the live page lists: the video's own options and the engine's configuration."""
    video = {"engine": args.engine, "input": args.input, "styles": args.styles,
             "output": str(args.output), "size": f"{shape[1]}x{shape[0]}",
             "temporal_weight": _temporal_weight(args),
             "temporal_frames": list(args.temporal_frames), "flow": _flow(args),
             "every": args.every, "start": args.start, "duration": args.duration}
    if config is not None:
        video["config"] = config.to_dict()
        video["frame_iterations"] = args.frame_iterations
    else:
        video["alpha"] = args.alpha
    return video


def _recoloured(styles, src):
    """--preserve-colors histogram for sanet/adain: the styles recoloured once, to the
    first frame's colour statistics (the style is encoded once for the whole video)."""
    from jaxstyle.color import match_color_histogram

    first = next(iter(src.frames())).pixels.astype("float32") / 255.0
    return [match_color_histogram(s, first) for s in styles]


def _summary(args, result, device, t_start, jax) -> dict:
    num = files.json_number
    return {
        "status": result.stopped or "completed",
        "jaxstyle": __version__,
        "engine": args.engine,
        "input": args.input, "styles": args.styles, "output": str(args.output),
        "frames": result.count, "size": list(result.size),
        "frame_rate": str(result.info.rate),
        "temporal_weight": _temporal_weight(args),
        "temporal_frames": list(args.temporal_frames),
        "flow": _flow(args),
        "frame_iterations": args.frame_iterations if args.engine == "gatys" else None,
        "warping_error": None if result.warping_error is None else num(result.warping_error),
        "input_warping_error": (None if result.input_warping_error is None
                                else num(result.input_warping_error)),
        "per_frame": result.per_frame,
        "frames_per_second": result.fps,
        "timings": {**{f"{k}_s": v for k, v in result.timings.items()},
                    "command_s": time.perf_counter() - t_start},
        "notes": list(result.notes),
        "device": {"platform": device.platform, "kind": device.device_kind,
                   "jax": jax.__version__},
    }
