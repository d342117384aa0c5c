"""Cached, checksummed downloads: a file is fetched once, verified, and reused offline.

`cached_download(url, directory, filename, md5=...)` returns `directory/filename`, fetching it
first when it is missing or damaged. The download streams into a temporary file beside the
target (`files.atomic_write`), is checked against its published checksum (an MD5 and/or the
SHA-256 prefix of a torch.hub style name such as `vgg19-dcbb9e9d.pth`) and only then renamed
into place: an interrupted or corrupted download never leaves a file that a later run would
use. A stamp beside the file (`.NAME.verified`) records the checksum and the file's size,
inode, mtime and ctime when it last passed, so an unchanged cached file is not hashed again on
every run; any change to the file means hashing it again.

Failures raise `WeightsError` with one line naming the URL, the file expected and how to pass
a local copy instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jaxstyle import files
from jaxstyle.files import WeightsError

# progress(done_bytes, total_bytes_or_None), called after every chunk of a download.
Progress = Callable[[int, "int | None"], Any]

# torch.hub names files `name-<first hex digits of the SHA-256>.pth` (vgg19-dcbb9e9d.pth).
_HUB_HASH = re.compile(r"-([0-9a-f]{8,64})\.(?:pth|pt)$")
_CHUNK = 1 << 20
# The network seam: tests replace it (same signature as urllib.request.urlopen).
_urlopen = urllib.request.urlopen


def is_url(source: Any) -> bool:
    """Whether `source` is an http(s) URL (str)."""
    return isinstance(source, str) and source.startswith(("http://", "https://"))


def cached_download(url: str, directory: str | os.PathLike, filename: str, *,
                    md5: str | None = None, progress: Progress | None = None,
                    local_hint: str = "") -> Path:
    """`directory/filename`, downloaded from `url` first unless present and intact.

    md5: the published MD5 (None: only a torch.hub hash in `filename`, if any, is checked).
    A cached file that fails its checksum is removed and fetched again. local_hint ends the
    error message: how a user offline can supply the file.
    """
    dest = Path(directory) / filename
    if dest.is_file():
        if _intact(dest, md5):
            return dest
        dest.unlink()  # a damaged cache entry is never used
        _stamp_path(dest).unlink(missing_ok=True)

    def fail(reason: str) -> WeightsError:
        checksum = f" (MD5 {md5})" if md5 else ""
        hint = f" and {local_hint}" if local_hint else ""
        return WeightsError(f"could not download {url}: {reason}. Download {filename}{checksum} "
                            f"yourself{hint}, or place it at {dest}")

    with contextlib.suppress(OSError):
        dest.parent.mkdir(parents=True, exist_ok=True)
    problem = files.target_problem(dest)
    if problem:
        raise fail(problem)

    def verify(tmp: Path) -> None:
        mismatch = _checksum_error(tmp, filename, md5)
        if mismatch:
            raise fail(f"checksum mismatch ({mismatch}); discarded")

    try:
        files.atomic_write(dest, lambda out: _stream(url, out, progress), check=verify)
    except urllib.error.HTTPError as e:
        e.close()  # it holds the response's socket
        raise fail(f"HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise fail(str(e.reason)) from e
    except http.client.IncompleteRead as e:
        raise fail(f"connection closed with {e.expected} bytes still to come") from e
    except (OSError, http.client.HTTPException) as e:
        raise fail(str(e) or type(e).__name__) from e
    _write_stamp(dest, md5)
    return dest


def _stream(url: str, out, progress: Progress | None) -> None:
    """Copy `url` into the open file `out`, reporting (done, total) after every chunk."""
    with _urlopen(url, timeout=60) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        if progress is not None:
            progress(0, total)
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    # http.client returns a short body without an error when the server hangs up early.
    if total is not None and done != total:
        raise http.client.IncompleteRead(b"", total - done)


def _checksum_error(path: Path, filename: str, expected_md5: str | None) -> str | None:
    """Why `path` fails its published checksum, or None.

    The checksum is `expected_md5` and/or the SHA-256 prefix in a torch.hub style `filename`
    (`vgg19-dcbb9e9d.pth`); a file with neither passes.
    """
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    hub = _HUB_HASH.search(filename)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            if expected_md5:
                md5.update(chunk)
            if hub:
                sha.update(chunk)
    if expected_md5 and md5.hexdigest() != expected_md5:
        return f"MD5 {md5.hexdigest()}, expected {expected_md5}"
    if hub and not sha.hexdigest().startswith(hub[1]):
        return f"SHA-256 {sha.hexdigest()[: len(hub[1])]}..., expected {hub[1]}..."
    return None


def _intact(path: Path, md5: str | None) -> bool:
    """Whether a cached file passes its published checksum; skipped while its stamp says the
    file is unchanged since it last passed (hashing 80 MB would cost every run a fraction
    of a second).
    ctime is in the stamp because it cannot be set by hand: a copy with its times kept
    still changes it."""
    if not md5 and not _HUB_HASH.search(path.name):
        return True  # nothing published to check against
    try:
        if _stamp_path(path).read_text() == _stamp_text(path, md5):
            return True
    except OSError:
        pass
    if _checksum_error(path, path.name, md5) is not None:
        return False
    _write_stamp(path, md5)
    return True


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _stamp_text(path: Path, md5: str | None) -> str:
    st = path.stat()
    return (f"md5={md5 or '-'} size={st.st_size} inode={st.st_ino} "
            f"mtime_ns={st.st_mtime_ns} ctime_ns={st.st_ctime_ns}\n")


def _write_stamp(path: Path, md5: str | None) -> None:
    text = _stamp_text(path, md5)
    with contextlib.suppress(OSError):  # a read-only cache: the file is hashed again next time
        files.atomic_write(_stamp_path(path), lambda f: f.write(text.encode()))
