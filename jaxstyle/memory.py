"""How much memory a run may use: the device's free memory, and the share a run plans for.

Accelerators report their own pool (`device.memory_stats()`); on a CPU the free memory is
the host's MemAvailable, shared by the local CPU devices.
"""

from __future__ import annotations

import os

import jax

# Share of the free memory a run plans to use: CPU RAM is shared with the OS and other
# processes; accelerators report their own pool.
CPU_MEMORY_FRACTION = 0.5
ACCELERATOR_MEMORY_FRACTION = 0.8


def free_bytes(device: jax.Device) -> int | None:
    """Free memory of `device` in bytes: the allocator's limit minus what is in use on an
    accelerator (`device.memory_stats()`); on CPU, MemAvailable of /proc/meminfo (or sysconf)
    divided among the local CPU devices (they share the RAM). None if unknown."""
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without stats raise various errors
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    available = _host_available_bytes()
    if available is None:
        return None
    if device.platform == "cpu":
        available //= max(1, len(jax.local_devices(backend="cpu")))
    return available


def budget(device: jax.Device) -> int | None:
    """The bytes a run plans to use on `device`: a fraction of its free memory (None: unknown)."""
    free = free_bytes(device)
    if free is None:
        return None
    fraction = CPU_MEMORY_FRACTION if device.platform == "cpu" else ACCELERATOR_MEMORY_FRACTION
    return int(fraction * free)


def _host_available_bytes() -> int | None:
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
