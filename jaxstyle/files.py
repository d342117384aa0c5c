"""The file-system edge: one atomic writer, the cache home, and the input errors.

`SettingError` (a ValueError, one line naming the setting) is what a bad setting raises: a
config field, an argument, a size the network or the memory cannot take; the command line
maps it to a usage error naming its option. `InputError` (a ValueError, one line naming the
file) is what a bad input file or an unavailable resource raises: `ImageError` (images) and
`WeightsError` (weights, downloads) are its kinds, and the command line maps all of them to
exit status 1.
`home_dir()` is the one rule for where jaxstyle caches things: $JAXSTYLE_HOME, else the user
cache directory.

Writing files so that nobody ever reads half of one: jaxstyle's one atomic writer.

Images (`image.save_image`), converted weights (`weights.save_weights`), sweep manifests and
the command line's JSON summaries all go through `atomic_write`: a temporary file next to the
target (same directory, so the rename is atomic), fsynced, renamed over the target with
`os.replace`, removed on any failure, Ctrl-C included. It is created with mode 0o666 minus the
umask, like a plain open() (`tempfile.mkstemp`'s 0o600 would leave a summary unreadable where
the images beside it are readable).

`target_problem` is the matching check before a long run: a sentence saying why a path could
not be written, or None.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

HOME_ENV = "JAXSTYLE_HOME"


class SettingError(ValueError):
    """A bad setting (a config field, an argument, a size): str() is one line; `name` is the
    field or argument it concerns (None: several), so that the command line can name its
    option. The library's one kind of validation error; a ValueError."""

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(" ".join(str(message).split()))
        self.name = name


class InputError(ValueError):
    """A bad input file or an unavailable resource; str() is one line naming it. `name`: the
    argument that names the file, when one does (the command line then names its option)."""

    def __init__(self, *args: object, name: str | None = None) -> None:
        super().__init__(*args)
        self.name = name

    def __str__(self) -> str:
        return " ".join(super().__str__().split())


class WeightsError(InputError):
    """A weights file or download that cannot be used; the message names the file or URL."""


class ImageError(InputError):
    """A bad image file or array: `str(err)` is one line, "<file>: <problem>"."""

    def __init__(self, path: object, problem: str) -> None:
        # One line whatever the underlying library said.
        self.path = str(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(self.path, self.problem)

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def home_dir(override: str | os.PathLike | None = None) -> Path:
    """jaxstyle's cache directory: `override` > $JAXSTYLE_HOME > the user cache directory
    (platformdirs). Downloads go here, the XLA compilation cache under its "xla"."""
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("jaxstyle"))


@contextlib.contextmanager
def temporary_file(path: Path) -> Iterator[tuple[Path, IO[bytes]]]:
    """A new file next to `path`, open for binary writing; removed on exit unless renamed."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield tmp, f
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None],
                 check: Callable[[Path], None] | None = None) -> None:
    """Write through `write(file)` to a temporary file, fsync it, rename it over `path`.

    Readers see the old file or the complete new one, never a partial one. `check(tmp)` runs
    on the complete temporary file before the rename and may raise to discard it (a download
    whose checksum does not match).
    """
    with temporary_file(Path(path)) as (tmp, f):
        write(f)
        f.flush()
        os.fsync(f.fileno())
        f.close()
        if check is not None:
            check(tmp)
        os.replace(tmp, path)


def write_json(path: Path, data: Any, *, sort_keys: bool = False) -> None:
    """`data` as indented JSON plus a newline, atomically. NaN/inf raise ValueError (JSON has
    none: map them with `json_number` first)."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys, allow_nan=False) + "\n"
    atomic_write(Path(path), lambda f: f.write(text.encode()))


def json_number(value: Any) -> float | None:
    """float(value), or None (JSON null) for NaN and inf."""
    value = float(value)
    return value if math.isfinite(value) else None


def target_problem(path: Path, *, probe: bool = True) -> str | None:
    """Why `path` could not be written, as a sentence (None if it can).

    Checks that it is not a directory and that its directory exists; with `probe`, also
    creates (and removes) a real temporary file there: permission bits alone do not say, for
    root, read-only mounts or quotas.
    """
    path = Path(path)
    if path.is_dir():
        return "is a directory; give a file name for the output"
    directory = path.parent
    if not directory.exists():
        return f"directory {directory} does not exist"
    if not directory.is_dir():
        return f"{directory} is not a directory"
    if not probe:
        return None
    try:
        with temporary_file(path):
            pass
    except OSError as err:
        return os_error_problem(path, err)
    return None


def os_error_problem(path: Path, err: OSError) -> str:
    """A short sentence for an OSError met while writing `path`."""
    if isinstance(err, PermissionError) or err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write in {Path(path).parent}: {err.strerror or err}"
    if err.errno == errno.ENOSPC:
        return "no space left on the device"
    return f"cannot write: {err.strerror or err}"
