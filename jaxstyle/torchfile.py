"""PyTorch state dicts as NumPy arrays, without executing pickled code.

`load_state_dict(path)` reads a `torch.save`d state dict of tensors: {key: np.ndarray}. With
torch installed it is `torch.load(weights_only=True)`; without torch, a restricted reader of
PyTorch's two formats: the zip format (torch >= 1.6) and the legacy format (four pickles,
then the raw storages: torchvision's vgg19-dcbb9e9d.pth and the released AdaIN/SANet files).
The reader admits only the globals a tensor state dict uses (tensor rebuilds, storage types,
OrderedDict), mapped to NumPy stand-ins; any other global is refused, so a hostile file cannot
run code. Tensors become bounds-checked views of their storages: a record may not repeat or
overrun its storage, and no storage is larger than the file.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle.files import WeightsError


def load_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """{key: value} of a PyTorch state dict file, tensors as NumPy arrays (float16 and
    bfloat16 as float32 when torch reads them, as their own dtype otherwise).

    Raises WeightsError (one line naming the file) for a file that is not a PyTorch
    checkpoint, is corrupt or truncated, holds anything but a mapping, or would need a global
    that a tensor state dict does not use.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise WeightsError(f"cannot read {path}: {e.strerror or e}") from e
    torch = _import_torch()
    if torch is not None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch reports bad files with many exception types
            raise WeightsError(f"cannot load PyTorch weights from {path}: {_torch_reason(e)}"
                               ) from e
        if isinstance(state, Mapping):
            state = {k: _tensor_to_numpy(torch, v) if isinstance(v, torch.Tensor) else v
                     for k, v in state.items()}
    elif head.startswith(b"PK\x03\x04"):
        state = _restricted_torch_load(path)
    elif head.startswith(b"\x80"):  # a pickle: the legacy format
        state = _restricted_legacy_torch_load(path)
    else:
        raise WeightsError(f"{path} is not a PyTorch checkpoint (neither the zip nor the "
                           "legacy torch.save format)")
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: expected a state dict (a mapping), got "
                           f"{type(state).__name__}")
    return dict(state)


def is_torch_zip(names: list[str]) -> bool:
    """Whether the members of a zip archive are those of a torch.save file (a data.pkl)."""
    return any(n == "data.pkl" or n.endswith("/data.pkl") for n in names)


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _torch_reason(e: Exception) -> str:
    """The informative line of a torch.load error.

    weights_only failures open with advice to retry with weights_only=False (arbitrary code
    execution); the line naming the refused global is the one worth showing.
    """
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "global" in line:
            return f"refused by torch.load(weights_only=True): {line}"
    return lines[0] if lines else type(e).__name__


def _tensor_to_numpy(torch, tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        tensor = tensor.to(torch.float32)  # NumPy has no bfloat16; float32 holds f16/bf16 exactly
    return tensor.numpy()


# Storage classes a tensor state dict may name, and the element type of their raw bytes.
_STORAGE_DTYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _StorageType:
    """Stands in for `torch.FloatStorage` & co. in the restricted unpickler; not callable."""

    def __init__(self, name: str):
        self.name = name

    def dtype(self, byteorder: str) -> np.dtype:
        code = _STORAGE_DTYPES[self.name]
        if code == "bfloat16":
            import ml_dtypes  # installed with jax

            return np.dtype(ml_dtypes.bfloat16).newbyteorder(byteorder)
        return np.dtype(code).newbyteorder(byteorder)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       metadata=None):  # fmt: skip
    """NumPy stand-in for `torch._utils._rebuild_tensor_v2`: a read-only strided view of the
    storage, bounds-checked, not a copy (the legacy format fills its storages after the
    pickle; the views see that).

    A record may not describe more elements than its storage holds past the offset, nor a
    zero stride along an axis longer than 1: otherwise a few bytes of pickle could describe a
    huge array, which the first copy of it would allocate.
    """
    ints = (
        isinstance(storage, np.ndarray)
        and isinstance(storage_offset, int)
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(isinstance(n, int) and n >= 0 for n in size + stride)
        and storage_offset >= 0
    )
    if not ints:
        raise pickle.UnpicklingError("malformed tensor record")
    count = math.prod(size)
    if count == 0:
        return np.zeros(size, storage.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if (last >= storage.size or count > storage.size - storage_offset
            or any(s == 0 for n, s in zip(size, stride, strict=True) if n > 1)):
        raise pickle.UnpicklingError("tensor record reaches past or repeats its storage")
    return np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=size, strides=[s * storage.itemsize for s in stride],
        writeable=False)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a PyTorch state dict without torch and without running pickled code.

    find_class admits only the globals a tensor state dict uses, mapped to NumPy stand-ins
    (fresh objects: a pickle's BUILD cannot alter the module's functions); any other global
    is refused. persistent_load turns each storage record into a 1-D array through
    `storage_data(key, dtype, numel)`. byteorder: "little" or "big".
    """

    def __init__(self, file, byteorder: str,
                 storage_data: Callable[[str, np.dtype, int], np.ndarray]):
        super().__init__(file)
        if byteorder not in ("little", "big"):
            raise pickle.UnpicklingError(f"unknown byteorder {byteorder!r:.20}")
        self._byteorder = "<" if byteorder == "little" else ">"
        self._storage_data = storage_data
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda *args: _rebuild_tensor_v2(*args)
        if (module, name) == ("torch._utils", "_rebuild_tensor"):  # torch < 0.4
            return lambda storage, offset, size, stride: _rebuild_tensor_v2(
                storage, offset, size, stride, False, None)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")

    def persistent_load(self, pid):
        # Zip format: ("storage", type, key, location, numel). Legacy format: the same plus
        # view metadata, None or (view key, offset, numel) for a slice of the storage.
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"malformed storage record {pid!r:.80}")
        key = str(key)
        if key not in self._storages:
            self._storages[key] = self._storage_data(key, storage_type.dtype(self._byteorder),
                                                     numel)
        storage = self._storages[key]
        if view is None:
            return storage
        ok = (isinstance(view, tuple) and len(view) == 3
              and all(isinstance(v, int) and v >= 0 for v in view[1:])
              and view[1] + view[2] <= storage.size)
        if not ok:
            raise pickle.UnpicklingError(f"malformed storage view {view!r:.80}")
        return storage[view[1]:view[1] + view[2]]  # a view: legacy data is filled in later


@contextlib.contextmanager
def _torch_file(path: Path):
    """The restricted readers' one error mapping: a refused pickle, or a corrupt file."""
    try:
        yield
    except pickle.UnpicklingError as e:
        raise _refused(path, e) from e
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, TypeError, AttributeError,
            KeyError, RecursionError) as e:
        raise WeightsError(f"{path} is a corrupt PyTorch checkpoint: {e!s:.200}") from e


def _restricted_torch_load(path: Path) -> Any:
    """torch.load for tensor state dicts in the zip format, with NumPy arrays as tensors."""
    with _torch_file(path), zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl"))
        prefix = pkl[: -len("data.pkl")]
        names = set(z.namelist())
        order = "little"  # files written before the byteorder record were little-endian
        if prefix + "byteorder" in names:
            order = z.read(prefix + "byteorder").decode()

        def storage_data(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
            name = f"{prefix}data/{key}"
            if name not in names:
                raise pickle.UnpicklingError(f"storage {key} is missing from the archive")
            size = z.getinfo(name).file_size  # checked before anything is decompressed
            if size != numel * dtype.itemsize:
                raise pickle.UnpicklingError(
                    f"storage {key} holds {size} bytes, expected {numel} x {dtype.itemsize}")
            return np.frombuffer(z.read(name), dtype)

        with z.open(pkl) as f:
            return _RestrictedUnpickler(f, order, storage_data).load()


# PyTorch's legacy (pre-1.6) `torch.save` layout: four pickles, then the raw storages.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _PlainUnpickler(pickle.Unpickler):
    """For the legacy format's header pickles: numbers, strings, dicts, lists; no globals."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")


def _restricted_legacy_torch_load(path: Path) -> Any:
    """torch.load for tensor state dicts in the legacy format, with NumPy arrays as tensors.

    Layout (torch.serialization._legacy_save): pickles of the magic number, the protocol
    version and {"little_endian": bool, ...}; the object pickle, whose storage records
    ("storage", type, key, location, numel, view) carry no data; a pickle of the storage
    keys; then for each key in that order an int64 element count and the raw elements. The
    storages are allocated while the object pickle is read (never more bytes than the file
    has) and filled after it; the tensors are views of them.
    """
    buffers: dict[str, np.ndarray] = {}
    with _torch_file(path), open(path, "rb") as f:
        budget = [os.fstat(f.fileno()).st_size]

        def storage_data(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
            if numel * dtype.itemsize > budget[0]:
                raise EOFError(f"its storages need more bytes than the file holds (storage "
                               f"{key}: {numel} elements): truncated")
            budget[0] -= numel * dtype.itemsize
            buffers[key] = np.zeros(numel, dtype)
            return buffers[key]

        magic = _PlainUnpickler(f).load()
        protocol = _PlainUnpickler(f).load()
        info = _PlainUnpickler(f).load()
        if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL or not isinstance(info, dict):
            raise pickle.UnpicklingError("not a PyTorch checkpoint (no legacy header)")
        order = "little" if info.get("little_endian", True) else "big"
        state = _RestrictedUnpickler(f, order, storage_data).load()
        keys = _PlainUnpickler(f).load()
        if not (isinstance(keys, list) and sorted(map(str, keys)) == sorted(buffers)):
            raise ValueError("its storage list does not match its tensors")
        for key in map(str, keys):
            buf = buffers[key]
            numel = int.from_bytes(f.read(8), order, signed=True)
            if numel != buf.size:
                raise ValueError(f"storage {key} has {numel} elements, expected {buf.size}")
            raw = buf.view(np.uint8)
            if f.readinto(memoryview(raw)) != raw.size:
                raise EOFError(f"storage {key} is cut short")
    return state


def _refused(path: Path, e: Exception) -> WeightsError:
    return WeightsError(
        f"{path}: refused to load this PyTorch file without torch ({e}); a weights state dict "
        "holds only tensors. Install torch to read other files with torch.load(weights_only)"
    )


