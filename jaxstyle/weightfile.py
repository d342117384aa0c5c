"""What every weight format shares: flat `/`-joined keys, the key/shape/dtype check, and .npz.

Both systems keep their params as nested dicts of arrays ({"conv1_1": {"kernel", "bias"}},
{"decoder": {"conv1": {...}}}) and store them as flat `.npz` files whose keys join the path
with `/` ("conv1_1/kernel", "decoder/conv1/bias"), plus 0-d string entries for what the file
is ("convention", "kind"). `.npz` files are read with `allow_pickle=False` (no code runs) and
written atomically. `array_problems` is the one check of a loaded set against the model:
every key present, nothing extra, every shape right, floating point, finite.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle import files
from jaxstyle.files import WeightsError


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": x}} -> {"a/b": x}: every leaf under its `/`-joined path."""
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    out = {}
    for name, node in tree.items():
        out.update(flatten(node, f"{prefix}{name}/"))
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """{"a/b": x} -> {"a": {"b": x}}: the inverse of `flatten`."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *names, leaf = key.split("/")
        node = tree
        for name in names:
            node = node.setdefault(name, {})
        node[leaf] = value
    return tree


def some(names: list[str], limit: int = 8) -> str:
    """A readable list: the first `limit` names and how many more (files can have hundreds)."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def array_problems(flat: dict[str, Any], expected: dict[str, tuple[int, ...]]) -> list[str]:
    """What is wrong with flat {"a/b/kernel": array} against {key: shape}: missing and
    unexpected keys, wrong shapes, non-float dtypes, NaN or inf. Arrays that pass are cast
    to float32 in place. Shared by every weight format (VGG19 and the arbitrary models)."""
    missing = [k for k in expected if k not in flat]
    extra = sorted(k for k in flat if k not in expected)
    problems = []
    if missing:
        problems.append("missing " + some(missing))
    if extra:
        problems.append("unexpected " + some(extra))
    for key, shape in expected.items():
        if key not in flat:
            continue
        value = np.asarray(flat[key])
        if value.shape != tuple(shape):
            problems.append(f"{key} has shape {value.shape}, expected {tuple(shape)}")
        elif value.dtype.kind != "f" and value.dtype.name != "bfloat16":
            problems.append(f"{key} has dtype {value.dtype}, expected floating point")
        else:
            value = value.astype(np.float32, copy=False)
            if not np.isfinite(value).all():
                problems.append(f"{key} contains NaN or inf")
            flat[key] = value
    return problems


def is_npz(path: str | os.PathLike) -> bool:
    """Whether `path` is a zip of .npy members (an npz), not a PyTorch zip checkpoint."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


def read_npz(path: str | os.PathLike, what: str) -> dict[str, np.ndarray]:
    """Every entry of an .npz, read with allow_pickle=False; WeightsError naming `what` (the
    kind of file expected) when it cannot be read."""
    path = Path(path)
    try:
        # Opened here: np.load leaves its own file open when the archive is corrupt.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            return {key: f[key] for key in f.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise WeightsError(f"{path} is not a readable {what}: {e}") from e


def string_entry(flat: dict[str, np.ndarray], key: str, allowed: tuple[str, ...]) -> str | None:
    """Pop the 0-d string entry `key` from `flat`: its value if it is one of `allowed`, else
    None (absent, not a 0-d string, or another value)."""
    value = flat.pop(key, None)
    if value is None or value.shape != () or value.dtype.kind != "U" or str(value) not in allowed:
        return None
    return str(value)


def write_npz(path: str | os.PathLike, arrays: dict[str, Any], strings: dict[str, str]
              ) -> Path:
    """Write float32 `arrays` and 0-d string entries `strings` as one .npz at `path`,
    atomically (the old file or the complete new one, never half). Returns the path."""
    path = Path(path).expanduser()
    entries = {key: np.asarray(value, np.float32) for key, value in arrays.items()}
    # 0-d unicode arrays: readable again with allow_pickle=False.
    entries.update({key: np.array(str(value)) for key, value in strings.items()})
    try:
        # A file object: numpy does not append ".npz" to the name.
        files.atomic_write(path, lambda f: np.savez(f, **entries))
    except OSError as e:
        raise WeightsError(f"cannot write {path}: {e.strerror or e}") from e
    return path
