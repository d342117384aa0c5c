"""What every `jaxstyle` subcommand's parser shares: the usage error (exit 2), the parser
class that raises it, the argparse `type=` converters, the help formatter, and `usage`, which
turns a library's ValueError about an option's value into a usage error."""

from __future__ import annotations

import argparse
import math

from jaxstyle import files


class UsageError(Exception):
    """A bad command line: exit 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def numbers(kind=float, minimum=None, positive=False, many=True):
    """An argparse type: a comma list (or one value) of finite numbers."""

    def convert(text: str):
        items = text.split(",") if many else [text]
        try:
            values = tuple(kind(item.strip()) for item in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'integers' if kind is int else 'numbers'}"
                                             f", got {text!r}") from None
        for v in values:
            low = (positive and v <= 0) or (minimum is not None and v < minimum)
            if not math.isfinite(v) or low:
                rule = "> 0" if positive else f">= {minimum:g}" if minimum is not None else "finite"
                raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return values if many else values[0]

    return convert


def layers(text: str) -> tuple[str, ...]:
    from jaxstyle.vgg import canonical_layer

    try:
        return tuple(canonical_layer(n.strip()) for n in text.split(",")) if text.strip() else ()
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def formatter(prog: str) -> argparse.HelpFormatter:
    # At most 100 columns, so the help reads the same in the README and a wide terminal.
    import shutil

    return argparse.RawDescriptionHelpFormatter(prog, width=min(
        shutil.get_terminal_size().columns, 100) - 2)


def usage(call, *args, **kwargs):
    """call(...) with a ValueError turned into a usage error (a bad option value)."""
    try:
        return call(*args, **kwargs)
    except files.InputError:
        raise
    except ValueError as err:
        raise UsageError(str(err)) from None
