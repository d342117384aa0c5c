"""Process-level JAX setup: the persistent compilation cache and XLA CPU flags.

Both are opt-in calls for programs (the CLI, benchmarks), never made on `import jaxstyle`: a
library must not change its host program's JAX configuration behind its back.

- `enable_compile_cache()`: JAX's persistent compilation cache: compiled programs are written
  to disk and reused by later processes with the same shapes, so a second run starts stepping
  without recompiling. On by default in the CLI; off with `JAXSTYLE_NO_COMPILE_CACHE=1` or
  `--no-compile-cache`. A cache can only make a run faster: JAX treats an entry it cannot
  read as a miss and compiles.
- `count_compiles()`: a context manager recording the XLA compilations inside it and the time
  spent compiling (to prove that new loss weights, step counts or callback intervals reuse
  the compiled programs, and to report compile time).
- `select_device(name)`: the device of a platform, chosen before JAX starts its backends.
- `set_xla_cpu_flags()`: XLA CPU options measured to help this workload (`CPU_FLAGS`; for
  training `CPU_TRAIN_FLAGS`; see its docstring).
  XLA reads `XLA_FLAGS` once, when the first backend initializes, so this must run before the
  first JAX computation (creating an array counts); afterwards it raises.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
import shlex
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding

from jaxstyle import files

# The networks' arithmetic: float32, or bfloat16 for GPU/TPU speed (statistics, losses and
# weights stay float32).
COMPUTE_DTYPES = ("float32", "bfloat16")
# Environment variable (the CLI's --no-compile-cache maps onto the same switch).
NO_CACHE_ENV = "JAXSTYLE_NO_COMPILE_CACHE"

# XLA CPU flags for the style-transfer objective (measurements in set_xla_cpu_flags).
CPU_FLAGS: tuple[str, ...] = (
    "--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
    "--xla_cpu_experimental_ynn_fusion_type="
    "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
)
# XLA CPU flags for training SANet and AdaIN (`jaxstyle train-*`): the same scheduler, and
# YNNPACK for single dots only, so that convolutions run on XLA's Eigen path, which ran the
# training step's deep 512-channel layers faster in A/B runs (docs/benchmarks.md).
CPU_TRAIN_FLAGS: tuple[str, ...] = (
    "--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
    "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
)
# jaxlib versions with which CPU_FLAGS and CPU_TRAIN_FLAGS were measured; on others each flag
# is first looked up in jaxlib's binaries, because XLA aborts the process on an unknown flag.
_VERIFIED_JAXLIB = ("0.10.2",)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def default_cache_dir() -> Path:
    """The XLA compilation cache: `files.home_dir()` / "xla"."""
    return files.home_dir() / "xla"


def enable_compile_cache(path: str | os.PathLike | None = None, *, enabled: bool = True
                         ) -> Path | None:
    """Turn on JAX's persistent compilation cache; returns its directory, or None if off.

    path: the directory (created if missing); default `default_cache_dir()`. A cache directory
    the user already configured through JAX (`JAX_COMPILATION_CACHE_DIR` or
    `jax.config.update("jax_compilation_cache_dir", ...)`) is kept when `path` is None.
    enabled=False (the CLI's --no-compile-cache) or the environment variable
    JAXSTYLE_NO_COMPILE_CACHE=1 leaves the cache off and writes nothing.

    Every program is cached, however quick its compile (min compile time 0): on a CPU the
    objective compiles in about a second and the step loop in several, paid again by every run
    without the cache. Idempotent: calling it again with the same directory changes nothing.
    Call it before the first compilation: JAX opens the cache directory once per process.
    """
    if not enabled or _env_true(NO_CACHE_ENV):
        return None
    configured = jax.config.jax_compilation_cache_dir
    if path is None and configured:
        cache_dir = Path(configured)
    else:
        cache_dir = Path(path).expanduser() if path is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    if configured != str(cache_dir):
        jax.config.update("jax_compilation_cache_dir", str(cache_dir))
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return cache_dir


def set_xla_cpu_flags(flags: tuple[str, ...] = CPU_FLAGS) -> str:
    """Add XLA CPU `flags` to the XLA_FLAGS environment variable; returns the new value.

    CPU_FLAGS cut memory, not speed (figures in docs/benchmarks.md): the memory-optimized
    scheduler, and YNNPACK fusions limited to single convolutions and dots (by default XLA
    CPU fuses whole runs of forward layers into one YNNPACK graph whose buffers XLA does not
    plan). They concern the CPU backend only; GPU/TPU ignore them.

    Must run before the first JAX computation in the process: XLA parses XLA_FLAGS once when
    the backend initializes, so a later call would silently do nothing, and it raises
    RuntimeError instead. Flags already in XLA_FLAGS win: a flag whose name the user set
    (with any value) is not added again, and the user's other flags are kept as they are.
    A flag this jaxlib's XLA does not know is left out (XLA would abort on it). Idempotent.
    """
    if backends_initialized():
        raise RuntimeError(
            "set_xla_cpu_flags() must be called before the first JAX computation: "
            "XLA reads XLA_FLAGS once, when the backend starts"
        )
    current = os.environ.get("XLA_FLAGS", "")
    tokens = shlex.split(current)
    names = {t.split("=", 1)[0] for t in tokens}
    added = [f for f in flags if f.split("=", 1)[0] not in names and xla_knows_flag(f)]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([*tokens, *added])
    return os.environ.get("XLA_FLAGS", "")


@functools.cache
def xla_knows_flag(flag: str) -> bool:
    """Whether this jaxlib's XLA accepts `flag` ("--name=value"): True for CPU_FLAGS and
    CPU_TRAIN_FLAGS on the jaxlib versions they were measured with, else the flag name and
    its enum-like values must all occur in jaxlib's shared libraries (where XLA's flag table
    lives)."""
    import jaxlib

    verified = getattr(jaxlib, "__version__", None) in _VERIFIED_JAXLIB
    if verified and flag in CPU_FLAGS + CPU_TRAIN_FLAGS:
        return True
    name, _, value = flag.lstrip("-").partition("=")
    needles = [name.encode()] + [v.encode() for v in value.split(",") if v.isupper()]
    libs = sorted(Path(jaxlib.__file__).parent.glob("*.so*"), key=lambda p: -p.stat().st_size)
    found = set()
    for lib in libs:
        try:
            with open(lib, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
                found.update(n for n in needles if n not in found and m.find(n) >= 0)
        except (OSError, ValueError):
            continue
        if len(found) == len(needles):
            return True
    return False


def backends_initialized() -> bool:
    """Whether a JAX backend exists already (after which XLA_FLAGS are no longer read)."""
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # private API moved: assume not, do not block
        return False


class Compilations:
    """What `count_compiles` saw: `names` of the XLA backend compilations (cache hits, in
    memory or from the persistent cache, are not compilations) and `seconds` spent lowering,
    compiling or reading compiled programs from the persistent cache."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.seconds = 0.0

    def __len__(self) -> int:
        return len(self.names)


# Lowering, compiling, reading the persistent cache (tracing is left out: nested jits report
# their traces inside their callers' and would be counted twice).
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration",
                   "/jax/compilation_cache/cache_retrieval_time_sec")


@contextlib.contextmanager
def count_compiles():
    """Yield a `Compilations` that records the compilations made inside the block (from
    jax.monitoring's events): an empty `names` means nothing was compiled."""
    seen = Compilations()

    def listener(event: str, duration_secs: float, **kwargs) -> None:
        if event in _COMPILE_EVENTS:
            seen.seconds += duration_secs
        if event == "/jax/core/compile/backend_compile_duration":
            seen.names.append(str(kwargs.get("fun_name", "?")))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def select_device(name: str | None) -> jax.Device:
    """The first device of platform `name` ("cpu", "gpu", "tpu"; None: JAX's default).

    cpu/tpu: sets `jax_platforms` while the backends are not yet initialized, so JAX does not
    start (and preallocate) other accelerators. gpu: leaves discovery to JAX (the "gpu" alias
    would demand every GPU plugin). RuntimeError naming the platform if it has no device.
    """
    if name is None:
        return jax.devices()[0]
    previous = jax.config.jax_platforms
    if name in ("cpu", "tpu") and not backends_initialized():
        jax.config.update("jax_platforms", name)
    try:
        return jax.devices(name)[0]
    except (RuntimeError, AssertionError) as err:
        # Undo, so that a caller that goes on in this process (tests, notebooks) still works.
        if not backends_initialized():
            jax.config.update("jax_platforms", previous)
        reason = " ".join(str(err).split()).split(" (set JAX_PLATFORMS")[0]
        raise RuntimeError(f"no {name} device available ({reason or type(err).__name__})"
                           ) from None


# --------------------------------------------------------------------------- transfers


def put(tree: Any, sharding: NamedSharding) -> Any:
    """Place host or device arrays with `sharding`; several processes: each its own shards."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(a):
        host = np.asarray(a)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(one, tree)


def fetch(tree: Any) -> Any:
    """Device arrays (possibly spread over processes) as host NumPy arrays."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    return jax.tree.map(lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)),
                        tree)
