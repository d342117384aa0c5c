"""The `jaxstyle` command line: one module per command, each a parser and a call into the
library, and this one, which parses, runs and maps every error to its exit status.

    jaxstyle [stylize] CONTENT STYLE [STYLE ...] -o OUT.png [options]   (gatys; python cli.py)
    jaxstyle sanet|adain CONTENT STYLE [STYLE ...] -o OUT.png ...        (arbitrary)
    jaxstyle train-sanet|train-adain --content-dir DIR --style-dir DIR --out RUN
    jaxstyle convert SRC DEST.npz | jaxstyle convert sanet|adain DEST.npz --vgg ...
    jaxstyle video IN STYLE [STYLE ...] -o OUT [--engine gatys|sanet|adain] ...
    jaxstyle serve [HOST:]PORT [--model M.npz] [--images DIR]            (serve: the browser app)
    --serve [HOST:]PORT on stylize and train-*: watch and stop the run in a browser (live)

Exit status: 0 done; 1 a bad or missing file, an unwritable output, weights unavailable, a
non-finite loss; 2 a usage error (a bad option value or combination: the library's
SettingError, named by its option; a size the layers or the memory cannot take); 130
interrupted (Ctrl-C writes what is done so far first). Errors are one line on stderr;
--debug adds the traceback. This package is the top floor: nothing else imports it.
"""

from __future__ import annotations

import argparse
import re
import sys
import traceback
from collections.abc import Sequence

from jaxstyle import files
from jaxstyle.cli import arbitrary, convert, gatys, serve, train, video
from jaxstyle.cli.options import (
    EXIT_INTERRUPTED,
    EXIT_RUNTIME,
    EXIT_USAGE,
    PROG,
    Parser,
    UsageError,
    formatter,
)

# The commands: modules whose add_parsers(subparsers) returns {name: parser}, each parser's
# `run` default running it. `stylize` is the default form.
MODULES = (gatys, arbitrary, train, convert, video, serve)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser of every command, and each command's own parser by name."""
    root = Parser(prog=PROG, formatter_class=formatter)
    sub = root.add_subparsers(dest="command", parser_class=Parser)
    commands: dict[str, argparse.ArgumentParser] = {}
    for module in MODULES:
        commands.update(module.add_parsers(sub))
    return root, commands


def parse(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """(the command's parser, the parsed command line); without a command word, `stylize`."""
    argv = list(argv)
    root, commands = build_parser()
    if not argv or argv[0] not in commands:
        argv = ["stylize", *argv]
    return commands[argv[0]], root.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = None
    try:
        try:
            parser, args = parse(argv)
        except SystemExit as done:  # --help
            return int(done.code or 0)
        return args.run(args)
    except UsageError as err:
        return _fail(str(err), debug, EXIT_USAGE)
    except files.SettingError as err:
        return _fail(_with_option(err, parser), debug, EXIT_USAGE)
    except files.InputError as err:
        option = _options(parser).get(err.name or "")
        hint = f" (on the command line: {option})" if option else ""
        return _fail(_one_line(err) + hint, debug, EXIT_RUNTIME)
    except (OSError, RuntimeError) as err:
        return _fail(_one_line(err), debug, EXIT_RUNTIME)
    except KeyboardInterrupt:  # outside the run (loading files): nothing to save yet
        return _fail("interrupted", debug, EXIT_INTERRUPTED)
    except Exception as err:  # noqa: BLE001 - the promise is one line, not a traceback
        return _fail(f"{type(err).__name__}: {_one_line(err)} (run with --debug for the "
                     "traceback)", debug, EXIT_RUNTIME)


def _with_option(err: files.SettingError, parser: argparse.ArgumentParser | None) -> str:
    """The library's message with its settings named as the command's options: "style_weight
    must be ..." -> "--style-weight must be ...", else "--option: message"; other settings
    the message names (snake_case names, unambiguous) become their options too."""
    message = str(err)
    options = _options(parser)
    option = options.get(err.name or "")
    if option is not None:
        if message.startswith(f"{err.name} "):
            message = option + message[len(err.name):]
        else:
            message = f"{option}: {message.removeprefix(f'{err.name}: ')}"
    return re.sub(r"(?<![-\w])([a-z]+(?:_[a-z]+)+)\b",
                  lambda m: options.get(m.group(1), m.group(1)), message)


def _options(parser: argparse.ArgumentParser | None) -> dict[str, str]:
    """{dest: its long option} of a command's parser."""
    if parser is None:
        return {}
    return {action.dest: action.option_strings[-1]
            for action in parser._actions if action.option_strings}  # noqa: SLF001


def _fail(message: str, debug: bool, status: int) -> int:
    if debug:
        traceback.print_exc()
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return status


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    return " ".join(str(err).split()) or type(err).__name__
