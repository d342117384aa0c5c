"""Process-level JAX setup: the persistent compilation cache and XLA CPU flags.

Both are opt-in calls for programs (the CLI, benchmarks), never made on `import jaxstyle`: a
library must not change its host program's JAX configuration behind its back.

- `enable_compile_cache()`: compiled programs are written to disk and reused by later processes
  with the same shapes, so a second run starts stepping without recompiling. On by default in
  the CLI; off with `JAXSTYLE_NO_COMPILE_CACHE=1` or `--no-compile-cache`.
- `set_xla_cpu_flags()`: XLA CPU options measured to help this workload (see its docstring).
  XLA reads `XLA_FLAGS` once, when the first backend initializes, so this must run before the
  first JAX computation (creating an array counts); afterwards it raises.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import jax

# Environment variables (the CLI's flags map onto the same switches).
NO_CACHE_ENV = "JAXSTYLE_NO_COMPILE_CACHE"
HOME_ENV = "JAXSTYLE_HOME"

# XLA CPU flags for the style-transfer objective (measurements in set_xla_cpu_flags).
CPU_FLAGS: tuple[str, ...] = ("--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED",)


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
    """Turn on JAX's persistent compilation cache; returns the cache directory, or None if off.

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

    Measured on a 2-core CPU (FINDINGS.md, benchmarks/README.md): the memory-optimized
    scheduler cut the objective's peak RSS at 512 px by about a quarter (XLA temp buffers by
    45%) at no speed cost. The flags only concern the CPU backend; GPU/TPU ignore them.

    Must run before the first JAX computation in the process: XLA parses XLA_FLAGS once when
    the backend initializes, so a later call would silently do nothing, and it raises
    RuntimeError instead. Flags already in XLA_FLAGS win: a flag whose name the user set
    (with any value) is not added again, and the user's other flags are kept as they are.
    Idempotent.
    """
    if _backend_initialized():
        raise RuntimeError(
            "set_xla_cpu_flags() must be called before the first JAX computation: "
            "XLA reads XLA_FLAGS once, when the backend starts"
        )
    current = os.environ.get("XLA_FLAGS", "")
    tokens = shlex.split(current)
    names = {t.split("=", 1)[0] for t in tokens}
    added = [f for f in flags if f.split("=", 1)[0] not in names]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([*tokens, *added]) if tokens else " ".join(added)
    return os.environ.get("XLA_FLAGS", "")


def _backend_initialized() -> bool:
    """Whether a JAX backend exists already (after which XLA_FLAGS are no longer read)."""
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # private API moved: assume not, do not block
        return False
