"""The `jaxstyle` command line: parse, call one library function, show progress, exit codes.

    jaxstyle [stylize] CONTENT STYLE [STYLE ...] -o OUT.png [options]   (also python cli.py)
    jaxstyle sanet|adain CONTENT STYLE [STYLE ...] -o OUT.png --vgg ... --decoder ...
    jaxstyle convert SRC DEST.npz | jaxstyle convert sanet|adain DEST.npz --vgg ... --decoder ...

Options convert their text with argparse `type=` converters into the `StyleConfig` fields of
the same names (their `dest`); the library owns every rule of the run (sizes, colours,
pyramids, sweeps). Exit status: 0 done; 1 a bad or missing file, an unwritable output,
weights unavailable, a non-finite loss; 2 a usage error (bad option value or combination,
a size the layers or the memory cannot take); 130 interrupted (Ctrl-C writes the best image
so far first). Errors are one line on stderr; --debug adds the traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from jaxstyle import __version__, convert_cli, files, outputs, runtime
from jaxstyle.cli_config import DEFAULT_IMAGE_SIZE, DEFAULTS, config_and_grid
from jaxstyle.cli_options import Parser, UsageError, formatter, layers, numbers, usage
from jaxstyle.config import (
    COLOR_MODES,
    COMPUTE_DTYPES,
    INITS,
    OPTIMIZERS,
    POOLINGS,
    TV_FORMS,
)
from jaxstyle.console import Bar, InterruptFlag
from jaxstyle.image import OUTPUT_FORMATS, check_writable, load_image
from jaxstyle.stylize import as_masks
from jaxstyle.weights import ENV_WEIGHTS

PROG = "jaxstyle"
EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MAX_CALLBACK_EVERY = 10  # steps between chances to print, save or stop on Ctrl-C


def _scales(text: str):
    """--scales: "auto", "none" or a comma list of positive integers."""
    if text in ("auto", "none"):
        return text
    try:
        return numbers(int, positive=True)(text)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e}; or auto, or none") from None


def _default(name: str) -> str:
    value = DEFAULTS[name]
    return ",".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}" if \
        isinstance(value, float) else str(value)


def build_parser() -> argparse.ArgumentParser:
    """The parser: subcommands `stylize` (the default form) and `convert`."""
    root = Parser(prog=PROG, formatter_class=formatter)
    sub = root.add_subparsers(dest="command", parser_class=Parser)
    p = sub.add_parser("stylize", prog=PROG, formatter_class=formatter, epilog=EPILOG,
                       description="Neural style transfer (Gatys et al., CVPR 2016) in JAX: "
                                   "stylize CONTENT in the style\nof one or more STYLE images "
                                   "and write OUT. Defaults are the library's (StyleConfig).")
    p.add_argument("content", metavar="CONTENT", help="content image file")
    p.add_argument("styles", metavar="STYLE", nargs="+", help="style image file(s)")
    p.add_argument("-o", "--output", metavar="OUT", required=True, type=Path,
                   help="output image; .png (recommended) or .jpg carry the settings")
    weights = numbers(minimum=0.0)
    g = p.add_argument_group("loss")
    for flag, meta, what in (("content", "ALPHA", "alpha, content loss weight"),
                             ("style", "BETA", "beta, style loss weight"),
                             ("tv", "GAMMA", "gamma, total-variation weight")):
        g.add_argument(f"--{flag}-weight", metavar=meta, type=weights,
                       help=f"{what} (default {_default(flag + '_weight')}); a comma list sweeps")
    g.add_argument("--tv-form", choices=TV_FORMS,
                   help=f"total-variation form (default {_default('tv_form')})")
    g.add_argument("--content-layers", metavar="LAYERS", type=layers,
                   help=f"comma list (default {_default('content_layers')})")
    g.add_argument("--style-layers", metavar="LAYERS", type=layers,
                   help=f"comma list (default {_default('style_layers')}); Keras names such "
                        "as block4_conv2 work too")
    g.add_argument("--style-layer-weights", metavar="W,...", type=weights,
                   help="one per style layer, normalized to sum 1 (default equal)")
    g.add_argument("--style-blend-weights", metavar="B,...", type=weights,
                   help="one per style image, normalized to sum 1 (default equal)")
    g.add_argument("--style-masks", metavar="FILE,...", type=lambda t: t.split(","),
                   help="one image per style image, white where that style applies (gray "
                        "blends; any image mode); the blend weights are then not used")
    g.add_argument("--pooling", choices=POOLINGS, help="VGG pooling (default max; avg is the "
                                                       "paper's)")
    g.add_argument("--compute-dtype", choices=COMPUTE_DTYPES,
                   help="network arithmetic (default float32; bfloat16 for GPU/TPU speed)")
    g = p.add_argument_group("optimization")
    g.add_argument("--iterations", metavar="N", type=numbers(int, positive=True, many=False),
                   help=f"optimizer steps (default {_default('iterations')})")
    g.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="lbfgs (zoom line search), adam, or lbfgs-nols (no line search, like "
                        f"jcjohnson's neural-style) (default {_default('optimizer')})")
    g.add_argument("--learning-rate", metavar="LR", type=numbers(positive=True, many=False),
                   help=f"Adam step size on [0,1] pixels (default {_default('learning_rate')})")
    g.add_argument("--init", metavar="INIT",
                   help=f"start image: {'|'.join(INITS)}|sanet|PATH (default "
                        f"{_default('init')}); sanet: the SANet result (--sanet-model)")
    g.add_argument("--sanet-model", metavar="FILE.npz",
                   help="--init sanet's model: a converted SANet with its encoder "
                        "(jaxstyle convert sanet)")
    g.add_argument("--seed", metavar="N", type=numbers(int, minimum=0, many=False),
                   help=f"seed of the noise init (default {_default('seed')})")
    g.add_argument("--average-decay", metavar="D", type=numbers(positive=True, many=False),
                   help="write the moving average of the iterates with this decay (e.g. "
                        "0.99) instead of the best iterate (default: the best iterate)")
    g = p.add_argument_group(
        "sweeps", "A comma list on any weight option, or --ratio, runs every combination in "
                  "one compiled program:\nOUT becomes the labelled contact sheet, setting i "
                  "goes to OUT_c<a>_s<b>_tv<g>.png,\nthe manifest to OUT.json (or --json).")
    g.add_argument("--ratio", metavar="R,...", type=numbers(positive=True),
                   help="alpha/beta ratios (the paper's Fig. 3: 1e-3,8e-4,5e-3,5e-4); beta = "
                        "alpha / R, or alpha = R * beta when --style-weight is given")
    g.add_argument("--batch-size", metavar="N", type=numbers(int, positive=True, many=False),
                   help="settings per device at once (default: what fits; 1 for lbfgs)")
    g = p.add_argument_group("images")
    g.add_argument("--image-size", metavar="PX", type=numbers(int, positive=True, many=False),
                   help=f"longest side of the output; the content is scaled up or down to it "
                        f"(default {DEFAULT_IMAGE_SIZE})")
    g.add_argument("--style-scale", metavar="S", type=numbers(positive=True, many=False),
                   help=f"style size relative to the output's (default {_default('style_scale')})")
    g.add_argument("--scales", metavar="PX,...|auto|none",
                   type=_scales,
                   help="coarse to fine: stylize at these longer sides in turn (e.g. "
                        "256,512,1024), each stage starting from the last; the last is the "
                        "output size; auto: from 128 px to --image-size in steps of sqrt(2); "
                        f"none: at the output size only (default {_default('scales')})")
    g.add_argument("--scale-iterations", metavar="N,...", type=numbers(int, positive=True),
                   help="steps of each --scales stage (default --iterations each)")
    g.add_argument("--preserve-colors", choices=COLOR_MODES, default="none",
                   help="keep the content's colours: luminance = transfer on luminance only; "
                        "histogram = match the styles' colour statistics first (default none)")
    g = p.add_argument_group("output and progress")
    g.add_argument("--print-every", metavar="N", type=numbers(int, minimum=0, many=False),
                   default=50, help="progress line every N steps when stderr is not a "
                                    "terminal, 0 = never (default 50)")
    g.add_argument("--save-every", metavar="N", type=numbers(int, minimum=0, many=False),
                   default=0, help="also write OUT_<step>.png every N steps (default 0: never)")
    g.add_argument("--json", metavar="PATH", type=Path,
                   help="write a JSON summary: settings, timings, losses, device")
    g.add_argument("--quiet", action="store_true", help="no progress and no final message")
    g.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    g = p.add_argument_group("weights and runtime")
    g.add_argument("--weights", metavar="FILE", default=os.environ.get(ENV_WEIGHTS),
                   help=f"VGG19 weights (.h5, .pth or .npz); default ${ENV_WEIGHTS}, else the "
                        "cached download")
    g.add_argument("--device", choices=("cpu", "gpu", "tpu"),
                   help="run on this platform (default: JAX's choice)")
    g.add_argument("--no-compile-cache", action="store_true",
                   help="do not use the persistent compilation cache")
    from jaxstyle.arbitrary import cli as arbitrary_cli

    arbitrary_cli.add_parsers(sub, Parser, formatter, numbers, EXIT_STATUS)
    from jaxstyle.arbitrary import train_cli

    train_cli.add_parsers(sub, Parser, formatter, numbers, EXIT_STATUS)
    convert_cli.add_parser(sub)
    return root


EXIT_STATUS = """\
exit status: 0 done; 1 bad or missing file, unwritable output, weights unavailable;
2 usage error; 130 interrupted."""

EPILOG = f"""\
other commands:
  {PROG} convert SRC DEST.npz   convert VGG19 weights (.h5, .pth) to a jaxstyle .npz
  {PROG} sanet|adain ...        arbitrary style in one forward pass ({PROG} sanet --help)
  {PROG} train-sanet|train-adain --content-dir DIR --style-dir DIR --out RUN
                                train those networks ({PROG} train-sanet --help)

environment:
  JAXSTYLE_WEIGHTS            weights file used when --weights is not given
  JAXSTYLE_HOME               cache directory (downloaded weights, compiled programs)
  JAXSTYLE_NO_COMPILE_CACHE=1 same as --no-compile-cache

exit status: 0 done; 1 bad or missing file, unwritable output, weights unavailable,
non-finite loss; 2 usage error; 130 interrupted (Ctrl-C writes the best image so far)."""


COMMANDS = ("stylize", "convert", "sanet", "adain", "train-sanet", "train-adain")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The parsed command line; without a command word, the `stylize` form."""
    argv = list(argv)
    if not argv or argv[0] not in COMMANDS:
        argv = ["stylize", *argv]
    return build_parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        try:
            args = parse(argv)
        except SystemExit as done:  # --help
            return int(done.code or 0)
        if args.command == "convert":
            return convert_cli.run(args)
        return args.run(args) if hasattr(args, "run") else _stylize(args)
    except UsageError as err:
        return _fail(str(err), debug, EXIT_USAGE)
    except (files.InputError, OSError, RuntimeError) as err:
        return _fail(_one_line(err), debug, EXIT_RUNTIME)
    except KeyboardInterrupt:  # outside the run (loading files): nothing to save yet
        return _fail("interrupted", debug, EXIT_INTERRUPTED)
    except Exception as err:  # noqa: BLE001 - the promise is one line, not a traceback
        return _fail(f"{type(err).__name__}: {_one_line(err)} (run with --debug for the "
                     "traceback)", debug, EXIT_RUNTIME)


def _fail(message: str, debug: bool, status: int) -> int:
    if debug:
        traceback.print_exc()
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return status


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    return " ".join(str(err).split()) or type(err).__name__


def _stylize(args: argparse.Namespace) -> int:
    import jax

    import jaxstyle

    t_start = time.perf_counter()
    config, grid = config_and_grid(args)
    init_path = (Path(args.init) if args.init is not None and args.init not in (*INITS, "sanet")
                 else None)
    inputs = [Path(args.content), *map(Path, args.styles), *([init_path] if init_path else []),
              *map(Path, args.style_masks or [])]
    out = args.output
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise UsageError(f"-o/--output: {out} must end in one of {', '.join(OUTPUT_FORMATS)}")
    manifest = args.json or (out.with_suffix(".json") if grid is not None else None)
    for path in (*inputs, manifest):
        if path is not None and path.resolve() == out.resolve():
            raise UsageError(f"-o/--output: {out} would overwrite {path}")
    check_writable(out)
    if manifest is not None:
        problem = files.target_problem(manifest)
        if problem:
            raise files.InputError(f"{manifest}: {problem}")

    if not runtime.backends_initialized():
        runtime.set_xla_cpu_flags()  # CPU memory: must precede the first JAX computation
    device = runtime.select_device(args.device)
    runtime.enable_compile_cache(enabled=not args.no_compile_cache)
    devices = jax.local_devices(backend=device.platform) if grid is not None else [device]

    t0 = time.perf_counter()
    content = load_image(args.content, max_side=config.output_side)
    styles = [load_image(path) for path in args.styles]
    init = load_image(init_path) if init_path is not None else None
    masks = None if args.style_masks is None else [_mask(path) for path in args.style_masks]
    timings = {"image_load_s": time.perf_counter() - t0}
    k = 1 if grid is None else len(grid.labels)
    stages = usage(jaxstyle.plan_stages, content.shape[:2], [s.shape[:2] for s in styles],
                    config, settings=k, device=device)  # before the weights: costs nothing

    t0 = time.perf_counter()
    with Bar(args.quiet, unit="B", desc="VGG19 weights (once; cached)") as bar:
        weights = jaxstyle.load_vgg19(args.weights, progress=bar.bytes)
    timings["weight_load_s"] = time.perf_counter() - t0
    if args.sanet_model is not None:
        t0 = time.perf_counter()
        from jaxstyle.arbitrary import cli as arbitrary_cli

        init = usage(arbitrary_cli.sanet_start, args.sanet_model, content, styles,
                     stages[-1], config)
        timings["sanet_init_s"] = time.perf_counter() - t0

    settings = {"jaxstyle": __version__, "content": args.content, "styles": args.styles,
                "init": (f"sanet:{args.sanet_model}" if args.sanet_model else
                         None if init_path is None else str(init_path)),
                "style_masks": args.style_masks,
                "preserve_colors": args.preserve_colors, "weights": weights.source,
                "weights_convention": weights.convention}
    every = math.gcd(MAX_CALLBACK_EVERY, args.print_every, args.save_every)
    flag = InterruptFlag(args.quiet)
    with Bar(args.quiet, total=sum(s.iterations for s in stages), unit="step", desc="compiling",
              print_every=args.print_every) as bar, flag:

        def callback(progress) -> bool:
            bar.steps(progress)
            if args.save_every and progress.step % args.save_every == 0 and \
                    progress.step < progress.total_steps:
                images = progress.images()
                outputs.save_with_settings(outputs.step_path(out, progress.step),
                                           images[0] if k == 1 else grid.sheet(images),
                                           settings, config)
            return not flag.is_set()

        options = dict(weights=weights, config=config, init=init, style_masks=masks,
                       callback=callback,
                       preserve_colors=args.preserve_colors, callback_every=every,
                       devices=devices)
        if grid is None:
            result = jaxstyle.stylize(content, styles, **options)
        else:
            result = jaxstyle.sweep(content, styles, loss_weights=grid,
                                    batch_size=args.batch_size, **options)
    return _finish(args, result, settings, timings, device, manifest, t_start)


def _finish(args, result, settings, timings, device, manifest, t_start) -> int:
    """Write the image(s), the sheet and the JSON; report; the exit status."""
    out, k = args.output, len(result)
    nothing = result.stopped == "nonfinite" and result.steps == 0  # no finite image at all
    title = f"{Path(args.content).name}: {result.config.optimizer}, {result.steps} steps"
    written = {} if nothing else outputs.write_result(out, result, settings, title)
    timings.update(result.timings, total_s=time.perf_counter() - t_start)
    if manifest is not None:
        summary = {**result.summary(), "timings": timings, "inputs": settings, "outputs": written,
                   "device": {"platform": device.platform, "kind": device.device_kind,
                              "count": result.devices}}
        files.write_json(manifest, summary, sort_keys=True)
    if nothing:
        raise files.InputError(f"{result.message} No image written.")
    bad = [label for label, b in zip(result.labels, result.nonfinite, strict=True) if b]
    if result.stopped == "nonfinite":
        raise files.InputError(f"{result.message} Wrote the best finite image(s) to {out}")
    if bad:
        print(f"{PROG}: warning: the loss became non-finite for {', '.join(bad)}; wrote their "
              "best finite images", file=sys.stderr)
    if result.stopped == "interrupted":
        print(f"{PROG}: interrupted at step {result.steps}; wrote the best image so far to "
              f"{out}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    if not args.quiet:
        h, w = result.images.shape[1:3]
        print(f"wrote {out} ({w}x{h}, {k} setting{'s' * (k > 1)}, {result.steps} steps, "
              f"{int(sum(result.evaluations))} evaluations, best loss "
              f"{min(result.best_losses):.4g}, {timings['total_s']:.1f} s)")
    return EXIT_OK


def _mask(path: str):
    """A --style-masks file as an (h, w) mask in [0, 1] (its luminance), checked."""
    try:
        return as_masks([load_image(path)], 1)[0]
    except files.ImageError:
        raise
    except ValueError as err:  # e.g. black everywhere: a problem of the file's content
        raise files.InputError(f"{path}: {str(err).replace('style mask 0', 'the mask')}"
                               ) from None
