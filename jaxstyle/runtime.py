"""Process-level JAX setup: the persistent compilation cache and XLA CPU flags.

Both are opt-in calls for programs (the CLI, benchmarks), never made on `import jaxstyle`: a
library must not change its host program's JAX configuration behind its back.

- `enable_compile_cache()`: compiled programs are written to disk and reused by later processes
  with the same shapes, so a second run starts stepping without recompiling: JAX's persistent
  XLA cache for every program, and `jaxstyle.executables` for the targets, init and step
  programs of `stylize` and pyramids (read back without even tracing them). On by default in
  the CLI; off with `JAXSTYLE_NO_COMPILE_CACHE=1` or `--no-compile-cache`.
- `count_compiles()`: a context manager listing the XLA compilations inside it (to prove
  that new loss weights, step counts or callback intervals reuse the compiled programs).
- `set_xla_cpu_flags()`: XLA CPU options measured to help this workload (see its docstring).
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

import jax

from jaxstyle import executables

# Environment variables (the CLI's flags map onto the same switches).
NO_CACHE_ENV = "JAXSTYLE_NO_COMPILE_CACHE"
HOME_ENV = "JAXSTYLE_HOME"
# Inside the XLA cache directory: jaxstyle's stored step programs (`jaxstyle.executables`).
# JAX's own cache only manages the top-level "*-cache" files there, so a subdirectory is safe.
PROGRAMS_SUBDIR = "jaxstyle-programs"

# XLA CPU flags for the style-transfer objective (measurements in set_xla_cpu_flags).
CPU_FLAGS: tuple[str, ...] = (
    "--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",
    "--xla_cpu_experimental_ynn_fusion_type="
    "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
)
# jaxlib versions with which CPU_FLAGS were measured; on others each flag is first looked up
# in jaxlib's binaries, because XLA aborts the process on an unknown flag in XLA_FLAGS.
_VERIFIED_JAXLIB = ("0.10.2",)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def default_cache_dir() -> Path:
    """$JAXSTYLE_HOME/xla if set, else the user cache dir (platformdirs) + "/xla"."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser() / "xla"
    import platformdirs

    return Path(platformdirs.user_cache_dir("jaxstyle")) / "xla"


def enable_compile_cache(path: str | os.PathLike | None = None, *, enabled: bool = True
                         ) -> Path | None:
    """Turn on JAX's persistent compilation cache and jaxstyle's program store (in its
    PROGRAMS_SUBDIR); returns the cache directory, or None if off.

    path: the directory (created if missing); default `default_cache_dir()`. A cache directory
    the user already configured through JAX (`JAX_COMPILATION_CACHE_DIR` or
    `jax.config.update("jax_compilation_cache_dir", ...)`) is kept when `path` is None.
    enabled=False (the CLI's --no-compile-cache) or the environment variable
    JAXSTYLE_NO_COMPILE_CACHE=1 leaves the cache off and writes nothing.

    Every program is cached, however quick its compile (min compile time 0): on a CPU the
    objective compiles in ~1 s and the step loop in several, all of it paid again by every run
    without the cache. Idempotent: calling it again with the same directory changes nothing.
    Call it before the first compilation: JAX opens the cache directory once per process.
    """
    if not enabled or _env_true(NO_CACHE_ENV):
        executables.disable()
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
    executables.enable(cache_dir / PROGRAMS_SUBDIR)
    return cache_dir


def set_xla_cpu_flags(flags: tuple[str, ...] = CPU_FLAGS) -> str:
    """Add XLA CPU `flags` to the XLA_FLAGS environment variable; returns the new value.

    CPU_FLAGS, measured on a 2-core CPU with jaxlib 0.10.2 (benchmarks/README.md), change
    memory, not speed (the step time moved by less than 2%):
    - the memory-optimized scheduler: XLA temp memory of the objective's value_and_grad at
      512 px 508 -> 349 MB;
    - YNNPACK fusions limited to single convolutions and dots: by default XLA CPU fuses whole
      runs of forward layers into one YNNPACK graph whose buffers XLA does not plan; the
      targets program (two forward passes) then raised peak RSS by 700 MB at 512 px, 310 MB
      with the limit. Together: peak RSS at 512 px 1068 -> 867 MB.
    The flags concern the CPU backend only; GPU/TPU ignore them.

    Must run before the first JAX computation in the process: XLA parses XLA_FLAGS once when
    the backend initializes, so a later call would silently do nothing, and it raises
    RuntimeError instead. Flags already in XLA_FLAGS win: a flag whose name the user set
    (with any value) is not added again, and the user's other flags are kept as they are.
    A flag this jaxlib's XLA does not know is left out (XLA would abort on it). Idempotent.
    """
    if _backend_initialized():
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
    """Whether this jaxlib's XLA accepts `flag` ("--name=value"): True for CPU_FLAGS on the
    jaxlib versions they were measured with, else the flag name and its enum-like values
    must all occur in jaxlib's shared libraries (where XLA's flag table lives)."""
    import jaxlib

    if flag in CPU_FLAGS and getattr(jaxlib, "__version__", None) in _VERIFIED_JAXLIB:
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


def _backend_initialized() -> bool:
    """Whether a JAX backend exists already (after which XLA_FLAGS are no longer read)."""
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # private API moved: assume not, do not block
        return False


@contextlib.contextmanager
def count_compiles():
    """Yield a list that receives the name of every XLA backend compilation in the block.

    Uses jax.monitoring's backend-compile duration event, so cache hits (in-memory or the
    persistent cache) are not counted: an empty list means nothing was compiled.
    """
    names: list[str] = []

    def listener(event: str, duration_secs: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            names.append(str(kwargs.get("fun_name", "?")))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
