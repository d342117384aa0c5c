"""The `jaxstyle` command line: argparse and validation; the run itself is `cli_run`.

    jaxstyle CONTENT STYLE [STYLE ...] -o OUT.png [options]   (also: python cli.py ...)
    jaxstyle convert SRC DEST.npz

The main form takes positional image paths, so a subparser cannot tell `convert` from a
content image named "convert": `main` dispatches on argv[0] == "convert" to a separate parser.
(A content image really named "convert" can be passed as ./convert.)

Exit codes: 0 success; 1 runtime error (missing/unreadable file, unwritable output, weights
unavailable, non-finite loss); 2 usage error (bad option value, unknown layer, conflicting
options); 130 interrupted by Ctrl-C (the best image so far is written first). Errors are one
line on stderr; --debug adds the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxstyle.cli_run import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUNTIME,
    EXIT_USAGE,
    PROG,
    RUNTIME_ERRORS,
    RunError,
    RunOptions,
    check_file_writable,
    check_input_file,
    one_line,
    run,
)
from jaxstyle.config import INITS, OPTIMIZERS, POOLINGS, TV_FORMS, StyleConfig
from jaxstyle.image import COLOR_MODES, OUTPUT_FORMATS
from jaxstyle.weights import ENV_WEIGHTS

# Library defaults, read from the dataclass so the CLI never repeats a default value.
CONFIG_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(StyleConfig)}
# Not a StyleConfig field (the library takes arrays, not files): the CLI's own default.
DEFAULT_IMAGE_SIZE = 512
DEFAULT_PRINT_EVERY = 50
DEVICES = ("cpu", "gpu", "tpu")


class UsageError(Exception):
    """Bad command line: exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors raise UsageError (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


# --------------------------------------------------------------------------- parsers


def _default(name: str) -> str:
    value = CONFIG_DEFAULTS[name]
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if value is None:
        return "equal"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


DESCRIPTION = """\
Neural style transfer (Gatys et al., CVPR 2016) in JAX: stylize CONTENT in the style
of one or more STYLE images and write OUT. Defaults are the library's (StyleConfig)."""

EPILOG = f"""\
other form:
  {PROG} convert SRC DEST.npz   convert VGG19 weights (.h5, .pth) to a jaxstyle .npz

environment:
  JAXSTYLE_WEIGHTS            weights file used when --weights is not given
  JAXSTYLE_HOME               cache directory (downloaded weights, compiled programs)
  JAXSTYLE_NO_COMPILE_CACHE=1 same as --no-compile-cache

exit status: 0 done; 1 runtime error (bad or missing file, unwritable output, weights
unavailable, non-finite loss); 2 usage error; 130 interrupted (Ctrl-C writes the best
image so far to OUT first)."""


def _formatter(prog: str) -> argparse.HelpFormatter:
    # At most 100 columns, so the help reads the same in the README and a wide terminal.
    import shutil

    width = min(shutil.get_terminal_size().columns, 100) - 2
    return argparse.RawDescriptionHelpFormatter(prog, width=width)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the main form (`jaxstyle CONTENT STYLE... -o OUT`).

    Options that hold numbers or lists are parsed as strings (default None = the library's
    default) and converted by `config_from_args`, so one place turns text into a StyleConfig
    and weight options can grow to comma lists (sweeps) without touching argparse.
    """
    p = _Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                formatter_class=_formatter)
    p.add_argument("content", metavar="CONTENT", help="content image file")
    p.add_argument("styles", metavar="STYLE", nargs="+", help="style image file(s)")
    p.add_argument("-o", "--output", metavar="OUT", required=True,
                   help="output image; .png (recommended) or .jpg carry the settings in "
                        "their metadata")

    g = p.add_argument_group("loss")
    g.add_argument("--content-weight", metavar="ALPHA",
                   help=f"alpha, content loss weight (default {_default('content_weight')}); "
                        "a comma list sweeps")
    g.add_argument("--style-weight", metavar="BETA",
                   help=f"beta, style loss weight (default {_default('style_weight')}); "
                        "a comma list sweeps")
    g.add_argument("--tv-weight", metavar="GAMMA",
                   help=f"gamma, total-variation weight (default {_default('tv_weight')}); "
                        "a comma list sweeps")
    g.add_argument("--tv-form", choices=TV_FORMS,
                   help=f"total-variation form (default {_default('tv_form')})")
    g.add_argument("--content-layers", metavar="LAYERS",
                   help=f"comma list of content layers (default {_default('content_layers')})")
    g.add_argument("--style-layers", metavar="LAYERS",
                   help=f"comma list of style layers (default {_default('style_layers')}); "
                        "Keras names such as block4_conv2 are accepted")
    g.add_argument("--style-layer-weights", metavar="W,...",
                   help="comma list, one weight per style layer, normalized to sum 1 "
                        "(default equal)")
    g.add_argument("--style-blend-weights", metavar="B,...",
                   help="comma list, one weight per style image, normalized to sum 1 "
                        "(default equal)")
    g.add_argument("--pooling", choices=POOLINGS,
                   help=f"VGG pooling (default {_default('pooling')}; avg is the paper's)")

    g = p.add_argument_group("optimization")
    g.add_argument("--iterations", metavar="N",
                   help=f"optimizer steps (default {_default('iterations')})")
    g.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="lbfgs (zoom line search), adam, or lbfgs-nols (no line search, like "
                        f"jcjohnson's neural-style) (default {_default('optimizer')})")
    g.add_argument("--learning-rate", metavar="LR",
                   help=f"Adam step size on [0,1] pixels (default {_default('learning_rate')})")
    g.add_argument("--init", metavar="INIT",
                   help=f"start image: {'|'.join(INITS)}|PATH (default {_default('init')})")
    g.add_argument("--seed", metavar="N",
                   help=f"seed of the noise init (default {_default('seed')})")

    g = p.add_argument_group(
        "sweeps", "A comma list on any weight option makes a grid of settings (e.g.\n"
        "--content-weight 1,5 --style-weight 1e2,1e3,1e4), run by one compiled program.\n"
        "OUT becomes the labelled contact sheet, each setting goes to OUT_c<a>_s<b>_tv<g>.png\n"
        "and the manifest to OUT.json (or --json PATH).")
    g.add_argument("--ratio", metavar="R,...",
                   help="comma list of alpha/beta ratios (the paper's Fig. 3: "
                        "1e-3,8e-4,5e-3,5e-4); beta = alpha / R with alpha from "
                        "--content-weight, or alpha = R * beta when --style-weight is given")
    g.add_argument("--batch-size", metavar="N",
                   help="settings computed at once per device (default: as many as fit in "
                        "memory; 1 for lbfgs, whose vmapped line search is slower)")

    g = p.add_argument_group("images")
    g.add_argument("--image-size", metavar="PX",
                   help="longest side of the output in pixels; larger content images are "
                        f"shrunk to it, smaller ones kept (default {DEFAULT_IMAGE_SIZE})")
    g.add_argument("--style-scale", metavar="S",
                   help="style image size relative to the content's "
                        f"(default {_default('style_scale')})")
    g.add_argument("--scales", metavar="PX,...",
                   help="coarse to fine: stylize at these longer sides in turn (increasing, "
                        "e.g. 256,512,1024,2048), each stage starting from the previous "
                        "result upsampled; the last is the output size (instead of "
                        "--image-size)")
    g.add_argument("--scale-iterations", metavar="N,...",
                   help="optimizer steps of each --scales stage (default --iterations each)")
    g.add_argument("--preserve-colors", choices=COLOR_MODES, default="none",
                   help="keep the content's colours: luminance = transfer on luminance only, "
                        "recombined with the content's chroma; histogram = match each style "
                        "image's colour statistics to the content's first (default none)")

    g = p.add_argument_group("output and progress")
    g.add_argument("--print-every", metavar="N",
                   help=f"progress line every N steps when stderr is not a terminal, 0 = never "
                        f"(default {DEFAULT_PRINT_EVERY})")
    g.add_argument("--save-every", metavar="N",
                   help="also write OUT_<step>.png every N steps, 0 = never (default 0)")
    g.add_argument("--json", metavar="PATH",
                   help="write a JSON summary: settings, timings per phase, final losses, device")
    g.add_argument("--quiet", action="store_true", help="no progress and no final message")
    g.add_argument("--debug", action="store_true", help="show tracebacks on errors")

    g = p.add_argument_group("weights and runtime")
    g.add_argument("--weights", metavar="FILE", default=os.environ.get(ENV_WEIGHTS),
                   help=f"VGG19 weights (.h5, .pth or jaxstyle .npz); default ${ENV_WEIGHTS}, "
                        "else the cached download")
    g.add_argument("--device", choices=DEVICES,
                   help="run on this platform (default: JAX's choice)")
    g.add_argument("--no-compile-cache", action="store_true",
                   help="do not use the persistent compilation cache")
    return p


def build_convert_parser() -> argparse.ArgumentParser:
    """The parser of `jaxstyle convert SRC DEST.npz`."""
    p = _Parser(
        prog=f"{PROG} convert",
        description="Convert VGG19 weights (Keras .h5, torchvision .pth/.pt state dict, or a\n"
                    "jaxstyle .npz) into a jaxstyle .npz, checking every key and shape.",
        formatter_class=_formatter,
    )
    p.add_argument("source", metavar="SRC", help="weight file to read")
    p.add_argument("dest", metavar="DEST.npz", help="jaxstyle .npz to write (atomically)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


# --------------------------------------------------------------------------- parsing values


def parse_number(text: str, option: str, *, kind: type = float, minimum: float | None = None,
                 positive: bool = False) -> Any:
    """One finite number from an option's text; UsageError naming the option otherwise."""
    try:
        value = kind(text.strip())
    except ValueError:
        raise UsageError(f"{option}: expected {'an integer' if kind is int else 'a number'}, "
                         f"got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{option}: expected a finite number, got {text!r}")
    if positive and not value > 0:
        raise UsageError(f"{option}: must be > 0, got {text!r}")
    if minimum is not None and value < minimum:
        raise UsageError(f"{option}: must be >= {minimum:g}, got {text!r}")
    return value


def parse_number_list(text: str, option: str, **kw) -> tuple:
    """A comma list of numbers ("1e2,1e3"); empty items are errors."""
    items = text.split(",")
    if any(not item.strip() for item in items):
        raise UsageError(f"{option}: expected a comma list of numbers, got {text!r}")
    return tuple(parse_number(item, option, **kw) for item in items)


def parse_layers(text: str, option: str) -> tuple[str, ...]:
    """A comma list of layer names, canonicalized (block4_conv2 -> relu4_2); "" = none."""
    from jaxstyle.vgg import canonical_layer

    if not text.strip():
        return ()
    try:
        return tuple(canonical_layer(name.strip()) for name in text.split(","))
    except ValueError as err:
        raise UsageError(f"{option}: {err}") from None


# Loss weight options: value lists so a sweep can later accept several values per option.
WEIGHT_OPTIONS = {"content_weight": "--content-weight", "style_weight": "--style-weight",
                  "tv_weight": "--tv-weight"}


def weight_values(args: argparse.Namespace) -> dict[str, tuple[float, ...]]:
    """{field: values} for the loss weight options given on the command line."""
    return {field: parse_number_list(getattr(args, field), option, minimum=0.0)
            for field, option in WEIGHT_OPTIONS.items() if getattr(args, field) is not None}


def config_from_args(args: argparse.Namespace) -> StyleConfig:
    """The StyleConfig the options describe (unset options keep the library defaults).

    `init` stays a string here (content/noise/style or a path); the caller loads a path.
    Raises UsageError for bad values and conflicting options.
    """
    fields: dict[str, Any] = {}
    for field, values in weight_values(args).items():
        if len(values) == 1:  # several values: a sweep (`sweep_grid`)
            fields[field] = values[0]
    if args.tv_form is not None:
        fields["tv_form"] = args.tv_form
    if args.content_layers is not None:
        fields["content_layers"] = parse_layers(args.content_layers, "--content-layers")
    if args.style_layers is not None:
        fields["style_layers"] = parse_layers(args.style_layers, "--style-layers")
    if args.style_layer_weights is not None:
        fields["style_layer_weights"] = parse_number_list(
            args.style_layer_weights, "--style-layer-weights", minimum=0.0)
    if args.style_blend_weights is not None:
        blend = parse_number_list(args.style_blend_weights, "--style-blend-weights",
                                  minimum=0.0)
        if len(blend) != len(args.styles):
            raise UsageError(f"--style-blend-weights: {len(blend)} weight(s) given for "
                             f"{len(args.styles)} style image(s)")
        fields["style_blend_weights"] = blend
    if args.pooling is not None:
        fields["pooling"] = args.pooling
    if args.iterations is not None:
        fields["iterations"] = parse_number(args.iterations, "--iterations", kind=int,
                                            positive=True)
    if args.optimizer is not None:
        fields["optimizer"] = args.optimizer
    if args.learning_rate is not None:
        fields["learning_rate"] = parse_number(args.learning_rate, "--learning-rate",
                                               positive=True)
        if fields.get("optimizer", CONFIG_DEFAULTS["optimizer"]) != "adam":
            raise UsageError("--learning-rate is the Adam step size: use it with "
                             "--optimizer adam (L-BFGS does not use it)")
    if args.seed is not None:
        fields["seed"] = parse_number(args.seed, "--seed", kind=int, minimum=0)
    if args.style_scale is not None:
        fields["style_scale"] = parse_number(args.style_scale, "--style-scale", positive=True)
    if args.scales is not None:
        fields["scales"] = parse_number_list(args.scales, "--scales", kind=int, positive=True)
    if args.scale_iterations is not None:
        if args.scales is None:
            raise UsageError("--scale-iterations: give the stages with --scales")
        fields["scale_iterations"] = parse_number_list(args.scale_iterations,
                                                       "--scale-iterations", kind=int,
                                                       positive=True)
    if args.init is not None:
        if args.init not in INITS and not os.path.exists(args.init):
            raise UsageError(f"--init: {args.init!r} is not one of {', '.join(INITS)} nor an "
                             "existing image file")
        fields["init"] = args.init if args.init in INITS else "content"  # path: loaded later
    try:
        return StyleConfig(**fields)
    except ValueError as err:
        raise UsageError(str(err)) from None


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """The non-config options, validated (UsageError) but not touching the file system."""
    output = Path(args.output)
    if output.suffix.lower() not in OUTPUT_FORMATS:
        raise UsageError(f"-o/--output: {output} must end in one of {', '.join(OUTPUT_FORMATS)}")
    inputs = [Path(args.content), *map(Path, args.styles)]
    if args.init is not None and args.init not in INITS:
        inputs.append(Path(args.init))
    for path in inputs:
        if _same_file(path, output):
            raise UsageError(f"-o/--output: {output} would overwrite the input {path}")
    json_path = Path(args.json) if args.json is not None else None
    if json_path is not None and _same_file(json_path, output):
        raise UsageError("--json and -o/--output name the same file")
    image_size = (DEFAULT_IMAGE_SIZE if args.image_size is None else
                  parse_number(args.image_size, "--image-size", kind=int, positive=True))
    if args.scales is not None:  # a pyramid: its last scale is the output size
        if args.image_size is not None:
            raise UsageError("--image-size and --scales: the last scale is the output size")
        image_size = parse_number_list(args.scales, "--scales", kind=int, positive=True)[-1]
    print_every = (DEFAULT_PRINT_EVERY if args.print_every is None else
                   parse_number(args.print_every, "--print-every", kind=int, minimum=0))
    save_every = (0 if args.save_every is None else
                  parse_number(args.save_every, "--save-every", kind=int, minimum=0))
    return RunOptions(
        content=Path(args.content),
        styles=tuple(Path(s) for s in args.styles),
        output=output,
        init_path=Path(args.init) if args.init is not None and args.init not in INITS else None,
        image_size=image_size,
        preserve_colors=args.preserve_colors,
        print_every=print_every,
        save_every=save_every,
        json_path=json_path,
        weights=args.weights or None,
        device=args.device,
        compile_cache=not args.no_compile_cache,
        quiet=args.quiet,
        **sweep_options(args),
    )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        if argv and argv[0] == "convert":
            return _convert_main(argv[1:])
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:  # --help
            return int(exit_.code or 0)
        config = config_from_args(args)
        options = options_from_args(args)
        return run(config, options)
    except UsageError as err:
        _error(str(err), debug)
        return EXIT_USAGE
    except RunError as err:
        _error(str(err), debug)
        return EXIT_RUNTIME
    except KeyboardInterrupt:  # outside the run (loading files): nothing to save yet
        _error("interrupted", debug)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - the promise is one line, not a traceback
        _error(_describe(err), debug, hint=not debug)
        return EXIT_RUNTIME


def _error(message: str, debug: bool, hint: bool = False) -> None:
    if debug:
        traceback.print_exc()
    suffix = " (run with --debug for the traceback)" if hint else ""
    print(f"{PROG}: error: {message}{suffix}", file=sys.stderr, flush=True)


def _describe(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _convert_main(argv: list[str]) -> int:
    try:
        args = build_convert_parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    source, dest = Path(args.source), Path(args.dest)
    if dest.suffix.lower() != ".npz":
        raise UsageError(f"convert: DEST must end in .npz, got {dest}")
    if _same_file(source, dest):
        raise UsageError("convert: SRC and DEST are the same file")
    check_input_file(source, "weights file")
    check_file_writable(dest, "DEST")
    from jaxstyle.weights import convert_weights

    try:
        written = convert_weights(source, dest)
    except RUNTIME_ERRORS as err:
        raise RunError(one_line(err)) from err
    print(f"wrote {written}")
    return EXIT_OK


# --------------------------------------------------------------------------- sweeps


def sweep_grid(args: argparse.Namespace) -> Any:
    """The `jaxstyle.WeightGrid` of a sweep (weight lists or --ratio), None for one run."""
    import importlib

    values = weight_values(args)
    ratios = (None if args.ratio is None else
              parse_number_list(args.ratio, "--ratio", positive=True))
    if ratios is None and all(len(v) == 1 for v in values.values()):
        return None
    sweep_module = importlib.import_module("jaxstyle.sweep")  # jaxstyle.sweep: the function

    def get(field: str) -> tuple[float, ...]:
        return values.get(field, (CONFIG_DEFAULTS[field],))

    try:
        if ratios is None:
            return sweep_module.loss_weight_grid(content=get("content_weight"),
                                                 style=get("style_weight"),
                                                 tv=get("tv_weight"))
        given = [f for f in ("content_weight", "style_weight") if f in values]
        if len(given) == 2 or any(len(values[f]) > 1 for f in given):
            raise UsageError("--ratio sets alpha/beta: give at most one of --content-weight "
                             "and --style-weight, with one value")
        one = {f: values[f][0] for f in given}
        return sweep_module.ratio_weights(ratios, content_weight=one.get("content_weight"),
                                          style_weight=one.get("style_weight"),
                                          tv=get("tv_weight"))
    except ValueError as err:
        raise UsageError(str(err)) from None


def sweep_options(args: argparse.Namespace) -> dict[str, Any]:
    """RunOptions fields of a sweep: {"sweep": WeightGrid | None, "batch_size": N | None}."""
    grid = sweep_grid(args)
    batch = (None if args.batch_size is None else
             parse_number(args.batch_size, "--batch-size", kind=int, positive=True))
    if grid is not None and args.scales is not None:
        raise UsageError("--scales is for single runs, not sweeps")
    if grid is None:
        if batch is not None:
            raise UsageError("--batch-size is for sweeps: give a comma list of weights or "
                             "--ratio")
        return {"sweep": None, "batch_size": None}
    if args.save_every not in (None, "0"):
        raise UsageError("--save-every is not available for sweeps")
    return {"sweep": grid, "batch_size": batch}


if __name__ == "__main__":
    sys.exit(main())
