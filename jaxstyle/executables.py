"""Compiled programs: built ahead of time, cached in the process, and kept on disk so that a
second process skips tracing, not only compiling.

`aot_compile(jitted, static, *args)` is how jaxstyle gets every program it runs repeatedly
(targets, init, step chunks, sweeps): lowered and compiled explicitly, so the compile time is
measured exactly, and kept in memory keyed by the function, its static arguments and the
abstract signature of its traced arguments (any loss weights, step count or callback interval
reuse the executable).

On disk: JAX's persistent compilation cache (`runtime.enable_compile_cache`) saves the XLA
compilation, but every process still traces and lowers each program to compute that cache's
key: for the targets, init and step programs of an L-BFGS run 0.6 s uncontended, about 1 s
beside the targets' forward pass on a 2-core CPU. This store saves the compiled executable
itself (serialized by PJRT, with its argument and result pytree structures) under a key
computed without tracing:

    the jitted function's module and name, its static arguments (repr),
    the traced arguments' pytree structure, shapes, dtypes, weak types and shardings,
    the versions of jax, jaxlib, flax and optax, a digest of jaxstyle's own source files,
    the backend (platform, its version, device kinds and count, process count),
    XLA_FLAGS / LIBTPU_INIT_ARGS, and every `jax.config` value.

Anything that could change the traced program changes the key, so a stale executable is
never used: an edit to jaxstyle, an upgrade, another flag all miss and compile afresh (that
entry is then written next to the old one; delete the directory to reclaim the space: 0.9 MB
(Adam) to 1.5 MB (L-BFGS) per image size and optimizer at 512 px). An unreadable or
incompatible entry is treated as a miss and rewritten. Only single-device programs are
stored, each read back for its own device (PJRT would otherwise load it for every device of
the backend); programs of functions without a module-level name (the sweep's shard_map
closures, which capture their mesh) are not stored either: JAX's cache serves them.

Off unless `enable(directory)` is called; `runtime.enable_compile_cache` does that, with
`<XLA cache dir>/jaxstyle-programs`, so the CLI's --no-compile-cache and
JAXSTYLE_NO_COMPILE_CACHE turn both off. Entries are pickles holding executables: like JAX's
own cache, the directory must be the user's (loading an entry can run code).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import pickle
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxstyle import files

SUFFIX = ".jaxexe"
# Bumped when the entry layout changes.
_FORMAT = 2

_directory: Path | None = None

# In-process executables, keyed by function, static arguments and the abstract signature of
# the traced arguments. Bounded, oldest dropped first.
_COMPILED: dict[Any, Any] = {}
_COMPILED_MAX = 32


def aot_compile(jitted: Any, static: dict[str, Any], *args: Any) -> tuple[Any, float]:
    """(compiled executable, seconds spent lowering and compiling it or reading it from the
    store; 0.0 when cached in this process).

    jitted: a `jax.jit`-wrapped function; static: its static keyword arguments; args: its
    traced positional arguments (arrays or `jax.ShapeDtypeStruct`s). Call the result with
    the traced arguments only: `compiled(*args)`.
    """
    key = (jitted, tuple(sorted(static.items())), _signature(args))
    if key in _COMPILED:
        return _COMPILED[key], 0.0
    t = time.perf_counter()
    stored = program_key(jitted, static, args) if _directory is not None else None
    compiled = load(stored) if stored else None
    if compiled is None:
        compiled = jitted.lower(*args, **static).compile()
        if stored:
            save(stored, compiled)
    seconds = time.perf_counter() - t
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[key] = compiled
    return compiled, seconds


def output_shapes(compiled: Any) -> Any:
    """The pytree of `jax.ShapeDtypeStruct`s (shape, dtype, sharding) a compiled executable
    returns.

    Read from the executable, not from `jax.eval_shape`, which would trace the function again
    (0.25-0.3 s for the init program at any size: a third of a warm start's tracing).
    """
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                        compiled.out_info)


def _signature(args: Any) -> Any:
    """(treedef, per leaf (shape, dtype, weak type, sharding)): what a compiled program of
    these arguments depends on, besides the function and its static arguments."""
    leaves, treedef = jax.tree.flatten(args)
    return treedef, tuple(
        (tuple(np.shape(a)), str(a.dtype), bool(getattr(a, "weak_type", False)),
         a.sharding if isinstance(a, jax.Array) else getattr(a, "sharding", None))
        for a in leaves)


def enable(directory: str | os.PathLike) -> Path:
    """Store compiled programs in `directory` (created when the first one is written)."""
    global _directory
    _directory = Path(directory).expanduser()
    return _directory


def disable() -> None:
    global _directory
    _directory = None


def directory() -> Path | None:
    """The store's directory, or None when it is off."""
    return _directory


def program_key(jitted: Any, static: dict[str, Any], args: tuple[Any, ...]) -> str | None:
    """A hex digest naming the executable of `jitted(*args, **static)`, or None when the
    program cannot be named without tracing (a function without a module-level name) or this
    JAX lacks an API the key needs (the store then stays out of the way)."""
    fun = getattr(jitted, "__wrapped__", jitted)
    module, name = getattr(fun, "__module__", None), getattr(fun, "__qualname__", "")
    if not module or not name or "<" in name:  # lambdas and closures: no stable name
        return None
    try:
        parts = [
            f"format={_FORMAT}",
            f"function={module}.{name}",
            f"static={sorted((k, repr(v)) for k, v in static.items())!r}",
            f"signature={_signature(args)!r}",  # the in-process key's, spelled out
            _environment(),
            f"config={sorted((k, repr(v)) for k, v in jax.config.values.items())!r}",
        ]
    except Exception:  # noqa: BLE001 - e.g. jax.config.values gone in a later JAX
        return None
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def load(key: str) -> Any | None:
    """The stored `jax.stages.Compiled` for `key`, or None (off, absent or unusable)."""
    if _directory is None:
        return None
    path = _directory / (key + SUFFIX)
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    try:
        fmt, (platform, device_id), serialized, in_tree, out_tree = pickle.loads(blob)
        if fmt != _FORMAT:
            return None
        device = next(d for d in jax.devices(platform) if d.id == device_id)
        # Its one device, named: by default it would be given all of the backend's devices
        # and fail on a machine with several.
        from jax.experimental import serialize_executable  # an experimental API: see save

        return serialize_executable.deserialize_and_load(
            serialized, in_tree, out_tree, backend=device.client, execution_devices=[device])
    except Exception:  # noqa: BLE001 - a corrupt or foreign entry is a miss, then rewritten
        return None


def save(key: str, compiled: Any) -> bool:
    """Write `compiled` under `key`; False when the store is off, the program spans several
    devices, or the write failed (a read-only cache directory must not stop a run)."""
    if _directory is None:
        return False
    try:
        devices = {d for s in jax.tree.leaves(compiled.input_shardings) for d in s.device_set}
        if len(devices) != 1:
            return False  # only single-device programs (multi-device ones: JAX's cache)
        (device,) = devices
        # Imported here: an experimental module, so a JAX that moves it turns the store off
        # (ImportError below) instead of breaking `import jaxstyle`.
        from jax.experimental import serialize_executable

        serialized, in_tree, out_tree = serialize_executable.serialize(compiled)
        blob = pickle.dumps((_FORMAT, (device.platform, device.id), serialized, in_tree,
                             out_tree))
        _directory.mkdir(parents=True, exist_ok=True)
        files.atomic_write(_directory / (key + SUFFIX), lambda f: f.write(blob))
    except Exception:  # noqa: BLE001 - unserializable programs and full disks alike
        return False
    return True


@functools.cache
def source_digest() -> str:
    """SHA-256 of jaxstyle's Python sources (names and contents), in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.cache
def _environment() -> str:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    import jaxlib

    devices = jax.devices()
    backend = devices[0].client
    return "\n".join([
        f"jax={jax.__version__} jaxlib={jaxlib.__version__} flax={version('flax')} "
        f"optax={version('optax')}",
        f"jaxstyle_source={source_digest()}",
        f"backend={backend.platform} {backend.platform_version}",
        f"devices={[d.device_kind for d in devices]} processes={jax.process_count()}",
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')}",
        f"LIBTPU_INIT_ARGS={os.environ.get('LIBTPU_INIT_ARGS', '')}",
    ])
