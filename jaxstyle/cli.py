"""The `jaxstyle` command line: argparse, validation, progress and files; the work is the library's.

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
import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxstyle.config import INITS, OPTIMIZERS, POOLINGS, TV_FORMS, StyleConfig
from jaxstyle.image import COLOR_MODES, OUTPUT_FORMATS, ImageError
from jaxstyle.weights import ENV_WEIGHTS, WeightsError

PROG = "jaxstyle"
# Library defaults, read from the dataclass so the CLI never repeats a default value.
CONFIG_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(StyleConfig)}
# Not a StyleConfig field (the library takes arrays, not files): the CLI's own default.
DEFAULT_IMAGE_SIZE = 512
DEFAULT_PRINT_EVERY = 50
# Steps per compiled chunk at most: the CLI hears from the run (progress, saves, Ctrl-C)
# this often; print/save intervals are met exactly by using a divisor of them.
MAX_CALLBACK_EVERY = 10
DEVICES = ("cpu", "gpu", "tpu")
# Library errors that mean a bad input file, an unwritable output or missing weights:
# one line, exit 1.
RUNTIME_ERRORS: tuple[type[Exception], ...] = (OSError, ImageError, WeightsError)

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad command line: exit 2."""


class RunError(Exception):
    """The command line was fine but the run cannot go on: exit 1."""


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


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Everything besides the StyleConfig: files, sizes, intervals, runtime switches."""

    content: Path
    styles: tuple[Path, ...]
    output: Path
    init_path: Path | None
    image_size: int
    preserve_colors: str
    print_every: int
    save_every: int
    json_path: Path | None
    weights: str | None
    device: str | None
    compile_cache: bool
    quiet: bool
    debug: bool
    sweep: Any = None  # a jaxstyle.WeightGrid when weight lists or --ratio make a sweep
    batch_size: int | None = None


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
        debug=args.debug,
        **sweep_options(args),
    )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


# --------------------------------------------------------------------------- checks


def check_input_file(path: Path, what: str) -> None:
    """RunError unless `path` is an existing, readable regular file."""
    if not path.exists():
        raise RunError(f"{what} {path} not found")
    if not path.is_file():
        raise RunError(f"{what} {path} is not a file")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as err:
        raise RunError(f"{what} {path} cannot be read: {err.strerror or err}") from None


def check_file_writable(path: Path, what: str) -> None:
    """RunError unless a file can be created next to `path` (before any long run).

    Tries a real temporary file in the directory: permission bits alone do not say (root,
    read-only mounts, quotas).
    """
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise RunError(f"{what} {path} is a directory")
    if not directory.exists():
        raise RunError(f"{what} {path}: directory {directory} does not exist")
    if not directory.is_dir():
        raise RunError(f"{what} {path}: {directory} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".jaxstyle-check-"):
            pass
    except OSError as err:
        raise RunError(f"{what} {path}: cannot write in {directory}: "
                       f"{err.strerror or err}") from None


def step_path(output: Path, step: int) -> Path:
    """Where the intermediate image of `step` goes: OUT_<step>.png next to OUT."""
    return output.with_name(f"{output.stem}_{step}{output.suffix}")


# --------------------------------------------------------------------------- device


def select_device(name: str | None):
    """The jax.Device to run on; selects the platform before JAX starts its backends.

    cpu/tpu: sets `jax_platforms` while the backends are not yet initialized, so JAX does
    not start (and preallocate) other accelerators. gpu: leaves discovery to JAX (the "gpu"
    alias would demand every GPU plugin) and picks its first GPU. RunError if unavailable.
    """
    import jax

    if name is None:
        return jax.devices()[0]
    previous = jax.config.jax_platforms
    if name in ("cpu", "tpu") and not _backends_initialized():
        jax.config.update("jax_platforms", name)
    try:
        return jax.devices(name)[0]
    except (RuntimeError, AssertionError) as err:
        # Undo, so that a caller that goes on in this process (tests, notebooks) still works.
        if not _backends_initialized():
            jax.config.update("jax_platforms", previous)
        reason = " ".join(str(err).split()).split(" (set JAX_PLATFORMS")[0]
        reason = reason or type(err).__name__
        raise RunError(f"--device {name}: no {name} device available ({reason})") from None


def _backends_initialized() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # private API moved: assume a fresh process
        return False


# --------------------------------------------------------------------------- progress


class Reporter:
    """Progress for the user: a tqdm bar on a terminal, plain lines every N steps otherwise."""

    def __init__(self, total_steps: int, *, print_every: int, quiet: bool,
                 stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.print_every = print_every
        self.quiet = quiet
        self.total = total_steps
        self.bar = None
        self._last_printed = -1
        if not quiet and _isatty(self.stream):
            from tqdm import tqdm

            # "compiling" until the first chunk reports (the first compile takes seconds).
            self.bar = tqdm(total=total_steps, unit="step", file=self.stream,
                            dynamic_ncols=True, leave=True, desc="compiling")

    def update(self, step: int, losses: dict[str, float]) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            if self.bar.desc:
                self.bar.set_description_str("", refresh=False)
            self.bar.set_postfix_str(format_losses(losses, short=True), refresh=False)
            self.bar.update(max(0, step - self.bar.n))
            return
        due = self.print_every and (step % self.print_every == 0 or step == self.total)
        if due and step != self._last_printed:
            self._last_printed = step
            print(f"step {step}/{self.total}  {format_losses(losses)}", file=self.stream,
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_losses(losses: dict[str, float], short: bool = False) -> str:
    order = [k for k in ("total", "content", "style", "tv") if k in losses]
    order += [k for k in losses if k not in order]
    sep = " " if short else "  "
    return sep.join(f"{k} {losses[k]:.4g}" for k in order)


class DownloadProgress:
    """`load_vgg19`'s progress(done_bytes, total_or_None): a byte bar on a terminal, else one
    line when the (one-time) download starts."""

    def __init__(self, *, quiet: bool, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.bar = None
        self.started = False

    def __call__(self, done: int, total: int | None) -> None:
        if self.quiet:
            return
        if not self.started:
            self.started = True
            size = f" ({total / 1e6:.0f} MB)" if total else ""
            if _isatty(self.stream):
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="B", unit_scale=True, file=self.stream,
                                desc="VGG19 weights", leave=False)
            else:
                print(f"downloading the VGG19 weights{size}, once; later runs use the cache",
                      file=self.stream, flush=True)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# --------------------------------------------------------------------------- Ctrl-C


class InterruptFlag:
    """A SIGINT handler that only sets a flag (checked between compiled chunks).

    KeyboardInterrupt raised inside a running JAX call crashed or hung the process in 2 of 6
    trials (FINDINGS.md); a flag checked by the progress callback stopped cleanly in 8 of 8.
    A second Ctrl-C exits at once (130) for a user who does not want to wait for the chunk.
    """

    def __init__(self, message: str | None = None) -> None:
        self.event = threading.Event()
        self.message = message
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum, frame) -> None:
        if self.event.is_set():
            os.write(2, b"jaxstyle: interrupted again, exiting without saving\n")
            os._exit(EXIT_INTERRUPTED)
        self.event.set()
        if self.message:
            # os.write, not print: a handler that prints while the interrupted code is
            # printing to the same stream raises "reentrant call".
            os.write(2, f"\n{PROG}: {self.message}\n".encode())

    def is_set(self) -> bool:
        return self.event.is_set()


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
        return _run(config, options)
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
        raise RunError(_one_line(err)) from err
    print(f"wrote {written}")
    return EXIT_OK


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        name = f" {err.filename}" if err.filename else ""
        return f"{err.strerror}:{name}"
    return " ".join(str(err).split()) or type(err).__name__


def _run(config: StyleConfig, opts: RunOptions) -> int:
    """Check every file, load, stylize with progress and Ctrl-C handling, write the outputs."""
    t_start = time.perf_counter()
    from jaxstyle import image as image_io

    # Cheap checks first: a typo must not cost a weight load and a compile.
    check_input_file(opts.content, "content image")
    for k, style in enumerate(opts.styles):
        check_input_file(style, "style image" if len(opts.styles) == 1 else f"style image {k}")
    if opts.init_path is not None:
        check_input_file(opts.init_path, "init image")
    if opts.weights is not None:
        check_input_file(Path(opts.weights), "weights file")
    try:
        image_io.check_writable(opts.output)
    except ImageError as err:
        raise RunError(f"output {err}") from None
    if opts.json_path is not None:
        check_file_writable(opts.json_path, "--json")

    from jaxstyle import runtime

    if not _backends_initialized():
        runtime.set_xla_cpu_flags()  # CPU memory: must precede the first JAX computation
    device = select_device(opts.device)
    # Off with --no-compile-cache or JAXSTYLE_NO_COMPILE_CACHE=1 (runtime reads the env).
    runtime.enable_compile_cache(enabled=opts.compile_cache)

    import jax

    # Only for an explicit --device: jit caches are keyed on the default-device context, so
    # entering it needlessly would make a library call after main() (tests, notebooks)
    # recompile.
    context = jax.default_device(device) if opts.device else contextlib.nullcontext()
    with context:
        return _run_on_device(config, opts, device, t_start)


def _run_on_device(config: StyleConfig, opts: RunOptions, device, t_start: float) -> int:
    import numpy as np

    import jaxstyle
    from jaxstyle import image as image_io
    from jaxstyle.pyramid import scale_shape, stage_iterations

    timings: dict[str, float] = {}

    # Images first (fast, and the likeliest bad input), then the weights.
    t0 = time.perf_counter()
    try:
        content = image_io.load_image(opts.content, max_side=opts.image_size)
        if config.scales:  # a pyramid ends at its last scale, up or down
            content = image_io.resize_to(content, scale_shape(content.shape, config.scales[-1]))
        styles = []
        for path in opts.styles:
            style = image_io.load_image(path)
            if not config.scales:  # a pyramid resizes the original styles at every stage
                size = image_io.style_size_for(content.shape, style.shape, config.style_scale)
                style = image_io.resize_to(style, size)
            styles.append(style)
        init_image = None
        if opts.init_path is not None:
            init_image = image_io.resize_to(image_io.load_image(opts.init_path),
                                            content.shape[:2])
    except RUNTIME_ERRORS as err:
        raise RunError(_one_line(err)) from err
    timings["image_load_s"] = time.perf_counter() - t0

    # Colour preservation (Gatys et al. 2016, "Preserving Color in Neural Artistic Style
    # Transfer"): histogram recolours the styles before the run; luminance runs on luminance
    # images and puts the content's chroma back on every image written.
    run_content, run_styles = image_io.prepare_color_inputs(content, styles,
                                                            opts.preserve_colors)
    if init_image is not None:
        if opts.preserve_colors == "luminance":
            init_image = image_io.luminance_image(init_image)
        config = config.replace(init=np.asarray(init_image, np.float32))

    def finish(img: np.ndarray) -> np.ndarray:
        """The image the user gets from an iterate (of any pyramid stage's size)."""
        img = np.asarray(img)
        ref = (content if img.shape == content.shape else
               image_io.resize_to(content, img.shape[:2]))
        return image_io.preserve_colors(img, ref, opts.preserve_colors)

    t0 = time.perf_counter()
    download = DownloadProgress(quiet=opts.quiet)
    try:
        weights = jaxstyle.load_vgg19(opts.weights, progress=download)
    except RUNTIME_ERRORS as err:
        raise RunError(_one_line(err)) from err
    finally:
        download.close()
    timings["weight_load_s"] = time.perf_counter() - t0

    settings = run_settings(config, opts, weights, content.shape)
    metadata = {"jaxstyle": json.dumps(settings, sort_keys=True)}

    def save(path: Path, img: np.ndarray) -> None:
        try:
            image_io.save_image(path, img, metadata=metadata)
        except RUNTIME_ERRORS as err:
            raise RunError(_one_line(err)) from err

    if opts.sweep is not None:
        return _run_sweep(config, opts, run_content, run_styles, weights, finish, settings,
                          metadata, timings, device, t_start)

    total_steps = sum(stage_iterations(config))  # config.iterations without --scales
    reporter = Reporter(total_steps, print_every=opts.print_every, quiet=opts.quiet)
    saved_steps: list[int] = []

    def callback(progress) -> bool:
        reporter.update(progress.step, progress.losses)
        if (opts.save_every and progress.step % opts.save_every == 0
                and 0 < progress.step < total_steps):
            path = step_path(opts.output, progress.step)
            save(path, finish(np.asarray(progress.image())))
            saved_steps.append(progress.step)
        return not flag.is_set()

    callback_every = math.gcd(MAX_CALLBACK_EVERY, opts.print_every, opts.save_every)
    flag = InterruptFlag(None if opts.quiet else
                         "Ctrl-C: stopping after the current chunk, then writing the best image "
                         "so far (Ctrl-C again quits without saving)")
    try:
        with flag:
            run = jaxstyle.stylize_pyramid if config.scales else jaxstyle.stylize
            result = run(run_content, run_styles, weights=weights, config=config,
                         callback=callback, callback_every=callback_every)
    finally:
        reporter.close()

    # Non-finite already at the initial image: no iterate is worth writing.
    nothing_to_save = result.stopped == "nonfinite" and result.steps == 0
    final = finish(np.asarray(result.image))
    if not nothing_to_save:
        save(opts.output, final)
    # The library's phases (targets_s, compile_s, steps_s) as they are; its total_s is the
    # stylize call, the CLI's total_s the whole command.
    timings.update({("stylize_s" if k == "total_s" else k): float(v)
                    for k, v in result.timings.items()})
    timings["total_s"] = time.perf_counter() - t_start

    status = result.stopped or "completed"
    if opts.json_path is not None:
        summary = run_summary(settings, result, timings, device, opts, saved_steps, status,
                              wrote_output=not nothing_to_save)
        write_json_atomic(opts.json_path, summary)

    steps_done = result.steps
    if result.stopped == "nonfinite":
        why = (result.message or "the loss became non-finite").rstrip(".")
        if nothing_to_save:
            parts = ", ".join(f"{k}={v:.4g}" for k, v in result.initial_losses.items())
            raise RunError(f"the loss is non-finite at the initial image ({parts}): check the "
                           "loss weights, the weights file and the input images. "
                           "Nothing written.")
        raise RunError(f"{why}. Wrote the best finite image (step {result.best_step}) to "
                       f"{opts.output}")
    if result.stopped == "interrupted":
        print(f"{PROG}: interrupted at step {steps_done}; wrote the best image so far "
              f"(step {result.best_step}) to {opts.output}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    if not opts.quiet:
        print(f"wrote {opts.output} ({final.shape[1]}x{final.shape[0]}, "
              f"{steps_done} steps, loss {result.best_loss:.4g}, "
              f"{timings['total_s']:.1f} s)")
    return EXIT_OK


def run_settings(config: StyleConfig, opts: RunOptions, weights, content_shape) -> dict:
    """The settings that made an image (PNG metadata and --json), JSON-serializable."""
    from jaxstyle import __version__

    cfg = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "init" and not isinstance(value, str):
            value = str(opts.init_path)
        cfg[f.name] = list(value) if isinstance(value, tuple) else value
    return {
        "jaxstyle": __version__,
        "content": str(opts.content),
        "styles": [str(s) for s in opts.styles],
        "output": str(opts.output),
        "image_size": opts.image_size,
        "size_hw": [int(content_shape[0]), int(content_shape[1])],
        "preserve_colors": opts.preserve_colors,
        "weights": getattr(weights, "source", str(opts.weights)),
        "weights_convention": getattr(weights, "convention", None),
        "config": cfg,
    }


def run_summary(settings: dict, result, timings: dict, device, opts: RunOptions,
                saved_steps: list[int], status: str, wrote_output: bool = True) -> dict:
    """The --json document."""
    import jax
    import numpy as np

    history = result.history
    # Non-finite values (a "nonfinite" run's last step) become null: JSON has no NaN.
    final_losses = {k: _finite_or_none(np.asarray(v)[-1]) for k, v in history.items() if len(v)}
    return {
        "status": status,
        "settings": settings,
        "output": str(opts.output) if wrote_output else None,
        "intermediate": [str(step_path(opts.output, s)) for s in saved_steps],
        "steps": int(result.steps),
        "message": result.message,
        "best_step": int(result.best_step),
        "best_loss": _finite_or_none(result.best_loss),
        "initial_losses": {k: _finite_or_none(v) for k, v in result.initial_losses.items()},
        "final_losses": final_losses,
        "timings": timings,
        "device": {"platform": device.platform, "kind": device.device_kind,
                   "count": jax.device_count(device.platform)},
        "jax": jax.__version__,
    }


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to a temporary file next to `path`, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".",
                               prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def _run_sweep(config: StyleConfig, opts: RunOptions, content, styles, weights, finish,
               settings: dict, metadata: dict, timings: dict, device, t_start: float) -> int:
    """Run `jaxstyle.sweep` over opts.sweep; write the images, contact sheet and manifest."""
    import importlib

    import numpy as np

    sweep_module = importlib.import_module("jaxstyle.sweep")
    grid = opts.sweep
    k = len(grid.labels)
    reporter = Reporter(config.iterations, print_every=opts.print_every, quiet=opts.quiet)

    def callback(progress) -> bool:
        total = progress.losses["total"]
        reporter.update(progress.step, {"settings": k, "total min": float(np.nanmin(total)),
                                        "max": float(np.nanmax(total))})
        return not flag.is_set()

    flag = InterruptFlag(None if opts.quiet else
                         "Ctrl-C: stopping after the current chunk, then writing the best "
                         "images so far (Ctrl-C again quits without saving)")
    try:
        with flag:
            result = sweep_module.sweep(
                content, styles, weights=weights, config=config, loss_weights=grid,
                batch_size=opts.batch_size, callback=callback,
                callback_every=math.gcd(MAX_CALLBACK_EVERY, opts.print_every))
    finally:
        reporter.close()
    if result.stopped == "nonfinite" and result.steps == 0:
        raise RunError("the loss is non-finite at the initial image for every setting: check "
                       "the loss weights, the weights file and the input images. Nothing "
                       "written.")
    timings.update({("sweep_s" if key == "total_s" else key): float(v)
                    for key, v in result.timings.items()})
    names = ", ".join(p.name for p in opts.styles)
    title = (f"{opts.content.name} in the style of {names}: {config.optimizer}, "
             f"{result.steps} steps")
    extra = {"status": result.stopped or "completed", "run": settings,
             "device": {"platform": device.platform, "kind": device.device_kind,
                        "count": result.devices}}

    def image_metadata(i: int | None) -> dict:
        """Each image carries its own weights; the sheet the shared settings and the grid."""
        if i is None:
            return {**metadata, "jaxstyle_sweep": json.dumps(result.manifest()["grid"])}
        run = json.loads(json.dumps(settings))
        run["config"].update(content_weight=float(result.loss_weights.content[i]),
                             style_weight=float(result.loss_weights.style[i]),
                             tv_weight=float(result.loss_weights.tv[i]))
        return {"jaxstyle": json.dumps(run, sort_keys=True)}

    manifest = sweep_module.save_sweep(result, opts.output, manifest_path=opts.json_path,
                                       transform=finish, metadata=image_metadata, title=title,
                                       extra=extra)
    timings["total_s"] = time.perf_counter() - t_start
    manifest["timings"] = dict(timings)  # now including the writing: the manifest again
    write_json_atomic(Path(manifest["files"]["manifest"]), manifest)
    failed = [label for label, bad in zip(result.labels, result.nonfinite, strict=True) if bad]
    if failed:
        print(f"{PROG}: warning: loss became non-finite for {', '.join(failed)}; wrote their "
              "best finite images", file=sys.stderr, flush=True)
    if result.stopped == "interrupted":
        print(f"{PROG}: interrupted at step {result.steps}; wrote the best images so far, the "
              f"contact sheet {opts.output} and {manifest['files']['manifest']}",
              file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    if len(failed) == k:
        raise RunError("the loss became non-finite for every setting; wrote the best finite "
                       f"images and {opts.output}")
    if not opts.quiet:
        first = manifest["settings"][0]["file"]
        print(f"wrote {k} images ({first}, ...), the contact sheet {opts.output} and "
              f"{manifest['files']['manifest']} "
              f"({result.steps} steps, {timings['total_s']:.1f} s)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
