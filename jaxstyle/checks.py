"""The library's checks of the values it is handed: each returns the value in its one form
(float, int, tuple, float32 array) or raises SettingError naming the setting and what it
accepts. Config dataclasses and entry functions of both systems call these, once, where a
value enters the library."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxstyle.files import SettingError


def is_number(value: Any) -> bool:
    """A real number (Python or NumPy), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


def number(name: str, value: Any) -> float:
    """`value` as a float if it is a finite number."""
    if not (is_number(value) and np.isfinite(value)):
        raise SettingError(f"{name} must be a finite number, got {value!r}", name)
    return float(value)


def positive(name: str, value: Any) -> float:
    """`value` as a float if it is a number > 0."""
    if not (is_number(value) and np.isfinite(value) and value > 0):
        raise SettingError(f"{name} must be a number > 0, got {value!r}", name)
    return float(value)


def integer(name: str, value: Any, least: int) -> int:
    """`value` as an int if it is an integer >= least."""
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
            and value >= least):
        raise SettingError(f"{name} must be an integer >= {least}, got {value!r}", name)
    return int(value)


def choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    """`value` if it is one of `allowed`."""
    if value not in allowed:
        raise SettingError(f"{name} must be one of {tuple(allowed)}, got {value!r}", name)
    return value


def sequence(name: str, value: Any, what: str) -> tuple:
    """`value` as a tuple if it is a sequence (a list, tuple or array; not a string)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise SettingError(f"{name} must be a sequence of {what}, got {value!r}", name)
    return tuple(value)


def weights(name: str, values: Any, *, positive_sum: bool = False) -> np.ndarray:
    """`values` (a number or a sequence of numbers) as a float32 array if every one is
    finite and >= 0 (and, with positive_sum, not all zero). The one check of every weight
    and weight list."""
    items = values if isinstance(values, (list, tuple, np.ndarray)) else [values]
    flat = np.ravel(np.asarray(items, dtype=object))
    if not all(is_number(v) for v in flat):
        raise SettingError(f"{name} must be numbers >= 0, got {values!r}", name)
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise SettingError(f"{name} must be finite and >= 0, got {arr.tolist()}", name)
    if positive_sum and not arr.sum() > 0:
        raise SettingError(f"{name} must not all be zero", name)
    return arr.astype(np.float32)
