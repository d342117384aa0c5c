"""Process and machine memory from /proc, for the benchmark scripts (imports neither jax nor
torch, so each framework's worker measures only itself)."""

from __future__ import annotations

import resource


def proc_status(key: str) -> int:
    """A /proc/self/status entry in bytes (VmHWM: peak RSS, VmRSS: current RSS)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_rss_bytes() -> int:
    """This process's resident-set high-water mark (VmHWM; ru_maxrss where /proc is absent)."""
    try:
        return proc_status("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mem_available() -> int:
    """The machine's MemAvailable, in bytes."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise KeyError("MemAvailable")
