"""`jaxstyle [stylize] CONTENT STYLE [STYLE ...] -o OUT.png`: the Gatys optimization.

Each option parses into the `StyleConfig` field of the same name (its `dest`); the library
checks the values (a SettingError names the option) and owns every rule of the run (sizes,
colours, stages, sweeps). A comma list on a weight option, or --ratio, makes a sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from pathlib import Path

from jaxstyle import __version__, files, memory
from jaxstyle.cli import live, outputs
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
    names,
    numbers,
    start_jax,
)
from jaxstyle.color import COLOR_MODES
from jaxstyle.config import INITS, StyleConfig
from jaxstyle.grids import loss_weight_grid, ratio_weights
from jaxstyle.image import OUTPUT_FORMATS, load_image
from jaxstyle.kernels import PRECISIONS
from jaxstyle.losses import TV_FORMS
from jaxstyle.optimizers import NAMED, OPTIMIZERS
from jaxstyle.runtime import COMPUTE_DTYPES
from jaxstyle.vgg import POOLINGS
from jaxstyle.weights import ENV_WEIGHTS

MAX_CALLBACK_EVERY = 10  # steps between chances to print, save or stop on Ctrl-C
WEIGHT_FIELDS = ("content_weight", "style_weight", "tv_weight")
DEFAULTS = {f.name: f.default for f in dataclasses.fields(StyleConfig)}

EPILOG = f"""\
other commands:
  {PROG} convert SRC DEST.npz   convert VGG19 weights (.h5, .pth) to a jaxstyle .npz
  {PROG} sanet|adain ...        arbitrary style in one forward pass ({PROG} sanet --help)
  {PROG} train-sanet|train-adain --content-dir DIR --style-dir DIR --out RUN
                                train those networks ({PROG} train-sanet --help)
  {PROG} video IN STYLE -o OUT    a video, temporally consistent ({PROG} video --help)
  {PROG} serve [HOST:]PORT        the browser app: upload, preview, refine, gallery

environment:
  JAXSTYLE_WEIGHTS            weights file used when --weights is not given
  JAXSTYLE_HOME               cache directory (downloaded weights, compiled programs)
  JAXSTYLE_NO_COMPILE_CACHE=1 same as --no-compile-cache

{EXIT_STATUS}"""


def _default(name: str) -> str:
    value = DEFAULTS[name]
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _scales(text: str):
    """--scales: "auto", "none" or a comma list of integers."""
    if text in ("auto", "none"):
        return text
    try:
        return numbers(int)(text)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e}; or auto, or none") from None


def add_parsers(sub) -> dict[str, argparse.ArgumentParser]:
    """The `stylize` command (also the form without a command word)."""
    p = add_command(sub, "stylize", run, epilog=EPILOG, description=(
        "Neural style transfer (Gatys et al., CVPR 2016) in JAX: stylize CONTENT in the style\n"
        "of one or more STYLE images and write OUT. Defaults are the library's (StyleConfig)."))
    p.add_argument("content", metavar="CONTENT", help="content image file")
    p.add_argument("styles", metavar="STYLE", nargs="+", help="style image file(s)")
    p.add_argument("-o", "--output", metavar="OUT", required=True, type=Path,
                   help="output image; .png (recommended) or .jpg carry the settings")
    add_loss_options(p)
    add_optimization_options(p)
    g = p.add_argument_group(
        "sweeps", "A comma list on any weight option, or --ratio, runs every combination in "
                  "one compiled program:\nOUT becomes the labelled contact sheet, setting i "
                  "goes to OUT_c<a>_s<b>_tv<g>.png,\nthe manifest to OUT.json (or --json).")
    g.add_argument("--ratio", metavar="R,...", type=numbers(),
                   help="alpha/beta ratios (the paper's Fig. 3: 1e-3,8e-4,5e-3,5e-4); beta = "
                        "alpha / R, or alpha = R * beta when --style-weight is given")
    g.add_argument("--batch-size", metavar="N", type=numbers(int, many=False, minimum=1),
                   help="settings per device at once (default: what fits)")
    add_image_options(p)
    g = p.add_argument_group("output and progress")
    g.add_argument("--print-every", metavar="N", type=numbers(int, many=False, minimum=0),
                   default=50, help="progress line every N steps when stderr is not a "
                                    "terminal, 0 = never (default 50)")
    g.add_argument("--save-every", metavar="N", type=numbers(int, many=False, minimum=0),
                   default=0, help="also write OUT_<step>.png every N steps (default 0: never)")
    g = p.add_argument_group("weights and runtime")
    add_weights_option(g)
    add_runtime_options(g, json_help="write a JSON summary: settings, timings, losses, device")
    add_serve_options(p.add_argument_group("live page"))
    return {"stylize": p}


# The option groups of the Gatys engine, shared with `jaxstyle video` (same names, meanings).


def add_loss_options(p: argparse.ArgumentParser) -> None:
    """The "loss" group: weights, layers, style blend weights and masks, pooling, dtype."""
    g = p.add_argument_group("loss")
    for flag, meta, what in (("content", "ALPHA", "alpha, content loss weight"),
                             ("style", "BETA", "beta, style loss weight"),
                             ("tv", "GAMMA", "gamma, total-variation weight")):
        g.add_argument(f"--{flag}-weight", metavar=meta, type=numbers(),
                       help=f"{what} (default {_default(flag + '_weight')}); a comma list sweeps")
    g.add_argument("--tv-form", choices=TV_FORMS,
                   help=f"total-variation form (default {_default('tv_form')})")
    g.add_argument("--content-layers", metavar="LAYERS", type=names,
                   help=f"comma list (default {_default('content_layers')})")
    g.add_argument("--style-layers", metavar="LAYERS", type=names,
                   help=f"comma list (default {_default('style_layers')}); Keras names such "
                        "as block4_conv2 work too")
    g.add_argument("--style-layer-weights", metavar="W,...", type=numbers(),
                   help="one per style layer, normalized to sum 1 (default equal)")
    g.add_argument("--style-blend-weights", metavar="B,...", type=numbers(),
                   help="one per style image, normalized to sum 1 (default equal)")
    g.add_argument("--style-masks", metavar="FILE,...", type=lambda t: t.split(","),
                   help="one image per style image, white where that style applies (gray "
                        "blends; any image mode); the blend weights are then not used")
    g.add_argument("--pooling", choices=POOLINGS, help="VGG pooling (default max; avg is the "
                                                       "paper's)")
    g.add_argument("--compute-dtype", choices=COMPUTE_DTYPES,
                   help="network arithmetic (default float32; bfloat16 for GPU/TPU speed)")
    g.add_argument("--matmul-precision", choices=tuple(PRECISIONS),
                   help="convolutions' and products' precision: default (TF32 on NVIDIA GPUs, "
                        "exact on CPUs), high, highest (exact float32)")


def add_optimization_options(p: argparse.ArgumentParser) -> None:
    """The "optimization" group: iterations, optimizer, learning rate, init, seed, average."""
    g = p.add_argument_group("optimization")
    g.add_argument("--iterations", metavar="N", type=numbers(int, many=False),
                   help=f"optimizer steps (default {_default('iterations')})")
    g.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="lbfgs (zoom line search), adam, or lbfgs-nols (no line search, like "
                        f"jcjohnson's neural-style) (default {_default('optimizer')})")
    g.add_argument("--learning-rate", metavar="LR", type=numbers(many=False),
                   help=f"Adam step size on [0,1] pixels (default "
                        f"{NAMED['adam'].learning_rate:g})")
    g.add_argument("--init", metavar="INIT",
                   help=f"start image: {'|'.join(INITS)}|sanet|PATH (default "
                        f"{_default('init')}); sanet: the SANet result (--sanet-model)")
    g.add_argument("--sanet-model", metavar="FILE.npz",
                   help="--init sanet's model: a converted SANet with its encoder "
                        "(jaxstyle convert sanet)")
    g.add_argument("--seed", metavar="N", type=numbers(int, many=False),
                   help=f"seed of the noise init (default {_default('seed')})")
    g.add_argument("--average-decay", metavar="D", type=numbers(many=False),
                   help="write the moving average of the iterates with this decay (e.g. "
                        "0.99) instead of the best iterate (default: the best iterate)")


def add_image_options(p: argparse.ArgumentParser) -> None:
    """The "images" group: --image-size, --style-scale, --scales, --scale-iterations,
    --preserve-colors."""
    g = p.add_argument_group("images")
    g.add_argument("--image-size", metavar="PX", type=numbers(int, many=False),
                   help=f"longest side of the output; the content is scaled up or down to it "
                        f"(default {DEFAULT_IMAGE_SIZE})")
    g.add_argument("--style-scale", metavar="S", type=numbers(many=False),
                   help=f"style size relative to the output's (default {_default('style_scale')})")
    g.add_argument("--scales", metavar="PX,...|auto|none", type=_scales,
                   help="coarse to fine: stylize at these longer sides in turn (e.g. "
                        "256,512,1024), each stage starting from the last; the last is the "
                        "output size; auto: from 128 px to --image-size in steps of sqrt(2); "
                        f"none: at the output size only (default {_default('scales')})")
    g.add_argument("--scale-iterations", metavar="N,...", type=numbers(int),
                   help="steps of each --scales stage (default --iterations each)")
    g.add_argument("--preserve-colors", choices=COLOR_MODES, default="none",
                   help="keep the content's colours: luminance = transfer on luminance only; "
                        "histogram = match the styles' colour statistics first (default none)")


def add_weights_option(g) -> None:
    """--weights, the VGG19 file."""
    g.add_argument("--weights", metavar="FILE",
                   help=f"VGG19 weights (.h5, .pth or .npz); default ${ENV_WEIGHTS}, else the "
                        "cached download")


def style_config(args: argparse.Namespace):
    """(StyleConfig, {weight field: the values given}) of the Gatys options: every option
    whose dest is a `StyleConfig` field, a weight given as one value set in the config; the
    init's command-line forms checked. Shared with `jaxstyle video`."""
    fields = {f: getattr(args, f) for f in DEFAULTS if getattr(args, f, None) is not None}
    lists = {f: fields.pop(f) for f in WEIGHT_FIELDS if f in fields}
    fields.update({f: v[0] for f, v in lists.items() if len(v) == 1})
    if (args.init == "sanet") != (args.sanet_model is not None):
        raise UsageError("--init sanet and --sanet-model go together")
    if args.init is not None:
        if args.init not in (*INITS, "sanet") and not os.path.exists(args.init):
            raise UsageError(f"--init: {args.init!r} is neither one of {', '.join(INITS)} nor "
                             "an existing image file")
        # sanet or a path: the start image is data (made or loaded later), not config.
        fields["init"] = args.init if args.init in INITS else "content"
    if args.scales in (None, "auto", "none") and args.image_size is None:
        fields["image_size"] = DEFAULT_IMAGE_SIZE
    return StyleConfig(**fields), lists


def config_and_grid(args: argparse.Namespace):
    """(StyleConfig, the sweep's WeightGrid or None) of the parsed options. The library checks
    every value; here only what concerns the command line's own options."""
    config, lists = style_config(args)
    if args.ratio is None and all(len(v) == 1 for v in lists.values()):
        if args.batch_size is not None:
            raise UsageError("--batch-size is for sweeps: give a comma list of weights or --ratio")
        return config, None
    if args.ratio is None:
        return config, loss_weight_grid(**{f: lists.get(f, (DEFAULTS[f],))
                                           for f in WEIGHT_FIELDS})
    fixed = [f for f in ("content_weight", "style_weight") if f in lists]
    if len(fixed) == 2 or any(len(lists[f]) > 1 for f in fixed):
        raise UsageError("--ratio sets alpha/beta: give at most one of --content-weight and "
                         "--style-weight, with one value")
    return config, ratio_weights(args.ratio, tv_weight=lists.get("tv_weight", (0.0,)),
                                 **{f: lists[f][0] for f in fixed})


def run(args: argparse.Namespace) -> int:
    """Check the command line and the files, plan the run, load the weights, run, write."""
    t_start = time.perf_counter()
    config, grid = config_and_grid(args)
    init_path = Path(args.init) if args.init not in (None, *INITS, "sanet") else None
    out = args.output
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise UsageError(f"-o/--output: {out} must end in one of {', '.join(OUTPUT_FORMATS)}")
    manifest = args.json or (out.with_suffix(".json") if grid is not None else None)
    check_output(out, [args.content, *args.styles, init_path, *(args.style_masks or []),
                       manifest])
    if manifest is not None:
        check_output(manifest)
    view = live.View(args, kind="stylize" if grid is None else "sweep",
                     title=f"{Path(args.content).name} in the style of "
                           f"{', '.join(Path(s).name for s in args.styles)} -> {out.name}",
                     download_name=out.with_suffix(".png").name)
    with view:
        return _run(args, config, grid, init_path, manifest, view, t_start)


def _run(args, config, grid, init_path, manifest, view, t_start) -> int:
    import jax

    import jaxstyle

    out = args.output
    view.phase("loading", "reading the images")
    device = start_jax(args)
    devices = jax.local_devices(backend=device.platform) if grid is not None else [device]
    t0 = time.perf_counter()
    content = load_image(args.content, max_side=config.output_side)
    styles = [load_image(path) for path in args.styles]
    init = load_image(init_path) if init_path is not None else None
    masks = None if args.style_masks is None else [_mask(p) for p in args.style_masks]
    timings = {"image_load_s": time.perf_counter() - t0}
    k = 1 if grid is None else len(grid.labels)
    # Before the weights (a download, perhaps): a size that cannot run costs nothing.
    stages = jaxstyle.plan_stages(content.shape[:2], [s.shape[:2] for s in styles], config,
                                  settings=k, device=device, memory_limit=args.memory_limit)
    plan = jaxstyle.plan_memory(content.shape[:2], [s.shape[:2] for s in styles], config,
                                settings=k, device=device, memory_limit=args.memory_limit)

    view.phase("loading", "loading the VGG19 weights")
    t0 = time.perf_counter()
    with Bar(args.quiet, unit="B", desc="VGG19 weights (once; cached)") as bar:
        weights = jaxstyle.load_vgg19(args.weights, progress=bar.bytes)
    timings["weight_load_s"] = time.perf_counter() - t0
    if args.sanet_model is not None:
        view.phase("loading", "the SANet start image")
        t0 = time.perf_counter()
        init = _sanet_start(args.sanet_model, content, styles, stages[-1], config)
        timings["sanet_init_s"] = time.perf_counter() - t0

    settings = {"jaxstyle": __version__, "content": args.content, "styles": args.styles,
                "init": (f"sanet:{args.sanet_model}" if args.sanet_model else
                         None if init_path is None else str(init_path)),
                "style_masks": args.style_masks,
                "preserve_colors": args.preserve_colors, "weights": weights.source,
                "weights_convention": weights.convention}
    view.describe(settings={**settings, "config": config.to_dict()}, devices=devices,
                  cells=grid)
    every = view.callback_every(math.gcd(MAX_CALLBACK_EVERY, args.print_every,
                                         args.save_every), device.platform)
    flag = InterruptFlag(args.quiet)
    view.phase("compiling", f"{len(stages)} stage{'s' * (len(stages) > 1)}: "
                            f"{' -> '.join(f'{s.shape[1]}x{s.shape[0]}' for s in stages)} px")
    with Bar(args.quiet, total=sum(s.iterations for s in stages), unit="step", desc="compiling",
             print_every=args.print_every) as bar, flag:

        def callback(progress) -> bool:
            bar.steps(progress)
            view.progress(progress)
            if args.save_every and progress.step % args.save_every == 0 and \
                    progress.step < progress.total_steps:
                images = progress.images()
                outputs.save_with_settings(outputs.step_path(out, progress.step),
                                           images[0] if k == 1 else grid.sheet(images),
                                           settings, config)
            return not (flag.is_set() or view.stopped)

        options = dict(weights=weights, config=config, init=init, style_masks=masks,
                       callback=callback, preserve_colors=args.preserve_colors,
                       callback_every=every, devices=devices,
                       memory_limit=args.memory_limit)
        if grid is None:
            result = jaxstyle.stylize(content, styles, **options)
        else:
            result = jaxstyle.sweep(content, styles, loss_weights=grid,
                                    batch_size=args.batch_size, **options)
    view.phase("writing", f"writing {out}")
    return _finish(args, result, settings, timings, device, manifest, t_start, plan, view)


def _mask(path: str):
    """A --style-masks file as an (h, w) mask in [0, 1] (its luminance), checked; a mask
    the library refuses (black everywhere) is a bad file: InputError naming it."""
    from jaxstyle.objective import as_masks

    try:
        return as_masks([load_image(path)], 1)[0]
    except files.SettingError as err:
        raise files.InputError(f"{path}: {str(err).replace('style mask 0', 'the mask')}"
                               ) from None


def _sanet_start(model: str, content, styles, stage, config: StyleConfig):
    """--init sanet: the SANet result (one forward pass) at the output's size, the styles at
    their sizes there, blended by the style blend weights: the optimization's start."""
    from jaxstyle.arbitrary import load_sanet, stylize_sanet
    from jaxstyle.image import resize_to

    params = load_sanet(model=model)
    styles = [resize_to(s, hw) for s, hw in zip(styles, stage.style_shapes, strict=True)]
    return stylize_sanet(params, resize_to(content, stage.shape), styles,
                         style_blend_weights=config.normalized_blend_weights(len(styles)))


def _finish(args, result, settings, timings, device, manifest, t_start, plan, view) -> int:
    """Write the image(s), the sheet and the JSON; report (and show on the page); the exit
    status."""
    out, k = args.output, len(result)
    nothing = result.stopped == "nonfinite" and result.steps == 0  # no finite image at all
    title = (f"{Path(args.content).name}: {result.config.optimizer_spec().label}, "
             f"{result.steps} steps")
    written = {} if nothing else outputs.write_result(out, result, settings, title)
    timings.update(result.timings, total_s=time.perf_counter() - t_start)
    if manifest is not None:
        summary = {**result.summary(), "timings": timings, "inputs": settings, "outputs": written,
                   "device": {"platform": device.platform, "kind": device.device_kind,
                              "count": result.devices},
                   "memory": {**plan.to_dict(), "peak_rss_bytes": memory.peak_rss_bytes()}}
        files.write_json(manifest, summary, sort_keys=True)
    if nothing:
        raise files.InputError(f"{result.message} No image written.")
    paths = [written["image"]] if "image" in written else [written["sheet"]]
    bad = [label for label, b in zip(result.labels, result.nonfinite, strict=True) if b]
    if result.stopped == "nonfinite":
        view.finish("failed", result.message, exit_code=1, images=result.images, outputs=paths)
        raise files.InputError(f"{result.message} Wrote the best finite image(s) to {out}")
    if bad:
        print(f"{PROG}: warning: the loss became non-finite for {', '.join(bad)}; wrote their "
              "best finite images", file=sys.stderr)
    if result.stopped == "interrupted":
        view.finish("interrupted", f"Stopped at step {result.steps}.",
                    exit_code=EXIT_INTERRUPTED, images=result.images, outputs=paths)
        print(f"{PROG}: interrupted at step {result.steps}; wrote the best image so far to "
              f"{out}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    view.finish("done", f"{result.steps} steps, best loss {min(result.best_losses):.4g}.",
                exit_code=EXIT_OK, images=result.images, outputs=paths)
    if not args.quiet:
        h, w = result.images.shape[1:3]
        print(f"wrote {out} ({w}x{h}, {k} setting{'s' * (k > 1)}, {result.steps} steps, "
              f"{int(sum(result.evaluations))} evaluations, best loss "
              f"{min(result.best_losses):.4g}, {timings['total_s']:.1f} s)")
    return EXIT_OK
