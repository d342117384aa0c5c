"""How much memory a run may use, and the one check every command makes before it works.

A command estimates what its run will add to the process at its peak (`run_bytes`, each
system's own model: `stylize.plan_memory`, `arbitrary.stylize.plan_memory`, the training
step's) and refuses, before any work, a run whose estimate exceeds the limit: the memory
actually available (an accelerator's free memory; on a CPU the host's MemAvailable, shared by
the local CPU devices) less a margin for what no estimate sees (the OS, other processes,
allocator slack), or `memory_limit` GiB when the user gives it. The refusal names the
largest size that fits.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable

import jax

from jaxstyle.files import SettingError

# Left free of the available memory: 5% of it, at least 256 MiB (what the estimate misses:
# allocator slack and fragmentation, the OS's caches, other processes starting).
MARGIN_FRACTION = 0.05
MARGIN_MIN_BYTES = 256 * 2**20
GIB = 2**30


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """A run's estimated peak addition to the process (`run_bytes`) and the bytes it may use
    (`limit_bytes`; None when the device says nothing)."""

    run_bytes: int
    limit_bytes: int | None

    @property
    def fits(self) -> bool:
        return self.limit_bytes is None or self.run_bytes <= self.limit_bytes

    def to_dict(self) -> dict:
        return {"estimated_bytes": self.run_bytes, "limit_bytes": self.limit_bytes}


def available_bytes(device: jax.Device) -> int | None:
    """Free memory of `device` in bytes: the allocator's limit minus what is in use on an
    accelerator (`device.memory_stats()`); on CPU, MemAvailable of /proc/meminfo (or sysconf)
    divided among the local CPU devices (they share the RAM). None if unknown."""
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without stats raise various errors
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    available = host_available_bytes()
    if available is None:
        return None
    if device.platform == "cpu":
        available //= max(1, len(jax.local_devices(backend="cpu")))
    return available


def limit_bytes(device: jax.Device, memory_limit: float | None = None) -> int | None:
    """What a run may use on `device`: `memory_limit` GiB when given, else the available
    memory less the margin (max(MARGIN_FRACTION of it, MARGIN_MIN_BYTES)); None: unknown."""
    if memory_limit is not None:
        if not (isinstance(memory_limit, (int, float)) and not isinstance(memory_limit, bool)
                and math.isfinite(memory_limit) and memory_limit > 0):
            raise SettingError(f"memory_limit must be a number of GiB > 0, got {memory_limit!r}",
                               "memory_limit")
        return int(memory_limit * GIB)
    free = available_bytes(device)
    if free is None:
        return None
    return max(0, free - max(int(MARGIN_FRACTION * free), MARGIN_MIN_BYTES))


def plan(run_bytes: int, device: jax.Device, memory_limit: float | None = None) -> MemoryPlan:
    """The plan of a run estimated at `run_bytes` on `device`."""
    return MemoryPlan(int(run_bytes), limit_bytes(device, memory_limit))


def check(plan: MemoryPlan, what: str, bytes_at: Callable[[int], int], side: int,
          device: jax.Device, name: str = "image_size") -> None:
    """SettingError (naming `name`) unless `plan` fits: "<what> needs about X GiB, more
    than the Y GiB a run may use on <platform> ...; the largest that fits is about N px on
    its longer side", N the largest side s <= `side` with bytes_at(s) within the limit."""
    if plan.fits:
        return
    low, high = 0, side  # bytes_at grows with the side: bisect for the largest that fits
    while low < high:
        mid = (low + high + 1) // 2
        if bytes_at(mid) <= plan.limit_bytes:
            low = mid
        else:
            high = mid - 1
    fits = (f"the largest that fits is about {low} px on its longer side" if low
            else "it does not fit at any size")
    raise SettingError(
        f"{what} needs about {plan.run_bytes / GIB:.3g} GiB, more than the "
        f"{plan.limit_bytes / GIB:.3g} GiB a run may use on {device.platform} (the available "
        f"memory less a margin; memory_limit overrides it); {fits}", name)


def process_bytes() -> dict[str, int]:
    """{"VmRSS": resident now, "VmHWM": its peak} of this process in bytes, from
    /proc/self/status; {} where /proc is absent."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory (VmHWM), for reports; None where /proc is
    absent."""
    return process_bytes().get("VmHWM")


def host_available_bytes() -> int | None:
    """MemAvailable of the host in bytes (/proc/meminfo, else sysconf); None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
