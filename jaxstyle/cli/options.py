"""What every `jaxstyle` command shares: the exit codes, the usage error, the parser class,
the `type=` converters (text to values; the library checks the values), the help formatter,
and the options every long command has."""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

PROG = "jaxstyle"
EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# The output's longer side when --image-size is not given (the library's default is the
# content's own size; a command line wants a size that runs in seconds).
DEFAULT_IMAGE_SIZE = 512

EXIT_STATUS = """\
exit status: 0 done; 1 bad or missing file, unwritable output, weights unavailable,
non-finite loss; 2 usage error; 130 interrupted (Ctrl-C writes what is done so far)."""


class UsageError(Exception):
    """A bad command line: exit 2."""


class Parser(argparse.ArgumentParser):
    """argparse with its errors raised as UsageError (one line, exit 2) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def numbers(kind=float, many: bool = True, minimum: float | None = None):
    """An argparse type: a comma list (or, with many=False, one value) of numbers. Options of
    the library's settings are only parsed here (the library checks their values and the
    error names the option); `minimum` is for the command line's own options."""

    def convert(text: str):
        items = text.split(",") if many else [text]
        try:
            values = tuple(kind(item.strip()) for item in items)
        except ValueError:
            what = "integers" if kind is int else "numbers"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
        if minimum is not None and any(v < minimum for v in values):
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got {text!r}")
        return values if many else values[0]

    return convert


def names(text: str) -> tuple[str, ...]:
    """An argparse type: a comma list of names (empty text: none)."""
    return tuple(n.strip() for n in text.split(",") if n.strip())


def formatter(prog: str) -> argparse.HelpFormatter:
    """Help at most 100 columns wide, so it reads the same in the README and a terminal."""
    return argparse.RawDescriptionHelpFormatter(
        prog, width=min(shutil.get_terminal_size().columns, 100) - 2)


def add_command(sub, name: str, run, **kwargs) -> Parser:
    """A subcommand `name` on the subparsers `sub`, whose `run(args)` runs it."""
    p = sub.add_parser(name, prog=f"{PROG} {name}" if name != "stylize" else PROG,
                       formatter_class=formatter, **kwargs)
    p.set_defaults(run=run)
    return p


def add_runtime_options(group, *, json_help: str) -> None:
    """--json, --device, --quiet, --debug, --no-compile-cache: every long command's."""
    group.add_argument("--json", metavar="PATH", type=Path, help=json_help)
    group.add_argument("--device", choices=("cpu", "gpu", "tpu"),
                       help="run on this platform (default: JAX's choice)")
    group.add_argument("--no-compile-cache", action="store_true",
                       help="do not use the persistent compilation cache")
    group.add_argument("--memory-limit", metavar="GiB", type=numbers(many=False),
                       help="memory the run may use (default: the available memory less a "
                            "margin); a run estimated above it is refused before any work")
    group.add_argument("--quiet", action="store_true", help="no progress and no final message")
    group.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def address(text: str):
    """An argparse type: `[HOST:]PORT` (`jaxstyle.web.address.parse_address`)."""
    from jaxstyle.web.address import parse_address

    try:
        return parse_address(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_serve_options(group) -> None:
    """--serve and --open-browser: a long command's live page (`jaxstyle.cli.live.View`)."""
    group.add_argument("--serve", metavar="[HOST:]PORT", type=address,
                       help="watch the run in a browser at this port (on 127.0.0.1 unless a "
                            "host is given; 0: any free port): image, losses, Stop, Download")
    group.add_argument("--open-browser", action="store_true",
                       help="open the --serve page in this machine's browser (without "
                            "--serve: on any free port)")


def start_jax(args: argparse.Namespace, cpu_flags: tuple[str, ...] | None = None):
    """Set up JAX for a command: XLA CPU flags (before the first computation), the device
    (--device), the compilation cache (unless --no-compile-cache). Returns the device."""
    from jaxstyle import runtime

    if not runtime.backends_initialized():
        runtime.set_xla_cpu_flags(*(() if cpu_flags is None else (cpu_flags,)))
    device = runtime.select_device(args.device)
    runtime.enable_compile_cache(enabled=not args.no_compile_cache)
    return device


def check_output(path: Path, inputs=()) -> None:
    """UsageError if writing `path` would overwrite one of `inputs`; InputError if it cannot
    be written (a missing directory, no permission)."""
    from jaxstyle import files

    for source in inputs:
        if source is not None and Path(source).resolve() == Path(path).resolve():
            raise UsageError(f"-o/--output: {path} would overwrite the input {source}")
    problem = files.target_problem(path)
    if problem:
        raise files.InputError(f"{path}: {problem}")
