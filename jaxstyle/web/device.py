"""The device a run uses, as its page shows it: what it is, and its memory now.

Accelerators report their allocator (`device.memory_stats()`: in use, peak, limit); a CPU
device has no such report, so the page shows the process's resident memory (and its peak)
against the host's available memory. Read by the server at most once a second, never in
the run's callback.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from jaxstyle.memory import host_available_bytes, process_bytes


def describe(devices: Sequence[Any]) -> dict[str, Any]:
    """{"platform", "kind", "count", "host"} of the devices a run uses (JSON-ready)."""
    first = devices[0]
    return {"platform": first.platform, "kind": first.device_kind, "count": len(devices),
            "host": os.uname().nodename}


def memory(devices: Sequence[Any]) -> dict[str, Any]:
    """{"what", "used", "peak", "limit"} in bytes (None where unknown): the first
    accelerator's allocator, or this process on the host for a CPU."""
    if not devices:
        return {}
    first = devices[0]
    try:
        stats = first.memory_stats()
    except Exception:  # noqa: BLE001 - backends without statistics raise various errors
        stats = None
    if stats and "bytes_in_use" in stats:
        return {"what": f"{first.platform} {first.id}", "used": stats.get("bytes_in_use"),
                "peak": stats.get("peak_bytes_in_use"), "limit": stats.get("bytes_limit")}
    status = process_bytes()
    return {"what": "process (host RAM)", "used": status.get("VmRSS"),
            "peak": status.get("VmHWM"), "limit": host_available_bytes()}
