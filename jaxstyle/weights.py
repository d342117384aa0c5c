"""Load, verify, convert, download and cache VGG19 weights.

Sources (detected by content, not by extension):
- Keras HDF5 (`.h5`): the notop or the full VGG19 file (fully connected layers ignored), in
  both weight naming styles (`block1_conv1_W_1:0` and `block1_conv1/kernel:0`). Datasets are
  found through the root attribute `layer_names` and each layer's `weight_names`, never
  guessed. Kernels are HWIO already. Convention "caffe" (BGR, 0-255, mean-subtracted).
- torchvision state dicts (`.pth`/`.pt`): `features.N.weight` (OIHW) and `features.N.bias`;
  the classifier is ignored. Convention "torch" (RGB [0, 1], ImageNet mean/std). Read with
  `torch.load(weights_only=True)` when torch is installed, otherwise with a restricted reader
  of PyTorch's formats (the zip format, and the legacy pre-1.6 format of torchvision's own
  vgg19-dcbb9e9d.pth) that allows only the globals a tensor state dict needs: pickled code is
  never executed.
- jaxstyle `.npz`: flat keys `conv1_1/kernel`, `conv1_1/bias`, ... and a 0-d string array
  `convention`; loaded with `allow_pickle=False`.

Every loaded set is checked key by key and shape by shape against the model's params
(`vgg.param_shapes`; a test checks that table against `jax.eval_shape` of the model's init).
The default source is the Keras notop file from its canonical URL, MD5-verified and cached
(see `load_vgg19`).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import http.client
import math
import os
import pickle
import re
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxstyle import files
from jaxstyle.vgg import CONV_NAMES, CONVENTIONS, VGGWeights, param_shapes

# The default weights: Keras' VGG19 notop file (the Oxford Caffe weights, converted). The MD5
# is `file_hash` in keras/applications/vgg19.py.
DEFAULT_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
    "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
)
DEFAULT_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
DEFAULT_MD5 = "253f8cb515780f3b799900260a226db6"
# Published MD5s of files that may be fetched by URL, by file name.
KNOWN_MD5 = {
    DEFAULT_FILENAME: DEFAULT_MD5,
    "vgg19_weights_tf_dim_ordering_tf_kernels.h5": "cbe5617147190e668d6c5d5026f83318",
}
# torch.hub names files `name-<first hex digits of the SHA-256>.pth` (vgg19-dcbb9e9d.pth).
_HUB_HASH = re.compile(r"-([0-9a-f]{8,64})\.(?:pth|pt)$")

ENV_WEIGHTS = "JAXSTYLE_WEIGHTS"  # a local weights file used when no source is given
ENV_HOME = "JAXSTYLE_HOME"  # the cache directory for downloads

# torchvision's vgg19 `features` Sequential: conv, relu per convolution and a pool per block,
# so the convolutions sit at these indices.
TORCH_FEATURE_INDEX = {
    "conv1_1": 0, "conv1_2": 2,
    "conv2_1": 5, "conv2_2": 7,
    "conv3_1": 10, "conv3_2": 12, "conv3_3": 14, "conv3_4": 16,
    "conv4_1": 19, "conv4_2": 21, "conv4_3": 23, "conv4_4": 25,
    "conv5_1": 28, "conv5_2": 30, "conv5_3": 32, "conv5_4": 34,
}  # fmt: skip
# Layers of the full Keras file that carry weights and are not part of the feature network.
_KERAS_TOP_LAYERS = ("fc1", "fc2", "predictions")

_CHUNK = 1 << 20
# Tests replace this with a fake opener (same signature as urllib.request.urlopen).
_urlopen = urllib.request.urlopen

Progress = Callable[[int, "int | None"], Any]


class WeightsError(ValueError):
    """A weights file or download that cannot be used; the message names the file or URL."""


# ---------------------------------------------------------------------------------------------
# Public entry points


def load_vgg19(
    source: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> VGGWeights:
    """Load VGG19 weights from a file, a URL, or the cached default download.

    source: a path (`.h5` Keras, `.pth`/`.pt` torchvision, `.npz` jaxstyle; the format is
    detected from the content), an http(s) URL, or None: then `$JAXSTYLE_WEIGHTS` if set,
    else the Keras notop file, downloaded once from `DEFAULT_URL` (MD5 checked) into
    `cache_dir` (> `$JAXSTYLE_HOME` > the user cache directory) and reused offline after.
    progress: `progress(done_bytes, total_bytes_or_None)`, called during a download only.

    Returns VGGWeights with params {conv name: {"kernel": (3, 3, Cin, Cout), "bias": (Cout,)}}
    (float32) and the file's preprocessing convention. Raises WeightsError (a ValueError) when
    the file is missing, unreadable, the wrong format, or has a missing, extra or wrongly
    shaped layer, and when a download fails or its checksum does not match.
    """
    from_env = source is None and bool(os.environ.get(ENV_WEIGHTS))
    if from_env:
        source = os.environ[ENV_WEIGHTS]
    if source is None:
        path = _cached_download(DEFAULT_URL, DEFAULT_FILENAME, DEFAULT_MD5, cache_dir, progress)
    elif isinstance(source, str) and source.startswith("file://"):
        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(source).path))
    elif _is_url(source):
        path = _fetch_url(str(source), cache_dir, progress)
    else:
        path = Path(source).expanduser()
    try:
        params, convention = read_weights(path)
    except WeightsError as e:
        if from_env:  # say where the file name came from
            raise WeightsError(f"{e} (file named by ${ENV_WEIGHTS})") from e
        raise
    # One device_put of the tree: jnp.asarray would compile a copy program for each of the 12
    # distinct shapes (0.18 s of a 0.4 s load on a 2-core CPU).
    return VGGWeights(jax.device_put(params), convention, source=str(path))


def save_weights(weights: VGGWeights, dest: str | os.PathLike) -> Path:
    """Write `weights` as a jaxstyle npz (flat `conv1_1/kernel` keys, 0-d `convention`).

    Written to a temporary file in dest's directory and renamed into place, so `dest` is
    either the old file or the complete new one, never a partial write. Returns dest.
    """
    dest = Path(dest).expanduser()
    arrays = {
        f"{name}/{kind}": np.asarray(value, np.float32)
        for name, layer in weights.params.items()
        for kind, value in layer.items()
    }
    # A 0-d unicode array: np.load reads it back with allow_pickle=False.
    arrays["convention"] = np.array(str(weights.convention))
    _check_params({k: v for k, v in arrays.items() if k != "convention"}, dest, "refusing to write")
    try:
        # A file object: numpy does not append ".npz" to the name.
        files.atomic_write(dest, lambda f: np.savez(f, **arrays))
    except OSError as e:
        raise WeightsError(f"cannot write {dest}: {e.strerror or e}") from e
    return dest


def convert_weights(
    source: str | os.PathLike | None,
    dest: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> Path:
    """Convert any source `load_vgg19` accepts into a jaxstyle npz at `dest` (atomic write)."""
    return save_weights(load_vgg19(source, cache_dir=cache_dir, progress=progress), dest)


def weights_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where downloads are cached: `cache_dir` > `$JAXSTYLE_HOME` > the user cache dir."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("jaxstyle"))


def read_weights(path: str | os.PathLike) -> tuple[dict[str, dict[str, np.ndarray]], str]:
    """Read and verify a weights file: ({conv: {"kernel": HWIO, "bias"}} float32, convention)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise WeightsError(f"cannot read weights file {path}: {e.strerror or e}") from e
    import h5py

    if h5py.is_hdf5(path):  # also finds the signature after a user block
        flat, convention = _read_keras(path), "caffe"
    elif head.startswith(b"PK\x03\x04"):
        flat, convention = _read_zip(path)
    elif head.startswith(b"\x80"):  # a pickle: PyTorch's legacy (pre-1.6) format
        flat, convention = _read_torch(path, zip_format=False), "torch"
    else:
        what = "an HDF5 file" if path.suffix.lower() in (".h5", ".hdf5") else "a weights file"
        raise WeightsError(
            f"{path} is not {what}: expected a Keras .h5 (HDF5), a PyTorch .pth/.pt or a "
            "jaxstyle .npz"
        )
    _check_params(flat, path)
    params: dict[str, dict[str, np.ndarray]] = {}
    for key, value in flat.items():
        name, kind = key.split("/")
        params.setdefault(name, {})[kind] = value
    return {name: params[name] for name in CONV_NAMES}, convention


# ---------------------------------------------------------------------------------------------
# Verification


@functools.cache
def expected_shapes() -> dict[str, tuple[int, ...]]:
    """{"conv1_1/kernel": (3, 3, 3, 64), ...}: the model's params (`vgg.param_shapes`, from
    VGG19's layer table; a test checks them against `jax.eval_shape` of the model's init,
    which is not done here because tracing the init costs 0.1 s of every load)."""
    # In forward order, kernel before bias, so messages list problems the way people read them.
    return {
        f"{name}/{kind}": shape
        for name, layer in param_shapes().items()
        for kind, shape in layer.items()
    }


def _check_params(flat: dict[str, np.ndarray], path: Path, what: str = "does not hold") -> None:
    """Check flat {"conv1_1/kernel": array} against the model; cast to float32 in place."""
    expected = expected_shapes()
    missing = [k for k in expected if k not in flat]
    extra = sorted(k for k in flat if k not in expected)
    problems = []
    if missing:
        problems.append("missing " + _some(missing))
    if extra:
        problems.append("unexpected " + _some(extra))
    for key, shape in expected.items():
        if key not in flat:
            continue
        value = np.asarray(flat[key])
        if value.shape != shape:
            problems.append(f"{key} has shape {value.shape}, expected {shape}")
        elif value.dtype.kind != "f" and value.dtype.name != "bfloat16":
            problems.append(f"{key} has dtype {value.dtype}, expected floating point")
        else:
            value = value.astype(np.float32, copy=False)
            if not np.isfinite(value).all():
                problems.append(f"{key} contains NaN or inf")
            flat[key] = value
    if problems:
        raise WeightsError(f"{path}: {what} VGG19 weights: " + "; ".join(problems))


def _some(names: list[str], limit: int = 8) -> str:
    """A readable list: the first `limit` names and how many more (files can have hundreds)."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


# ---------------------------------------------------------------------------------------------
# Keras HDF5


def _decode_names(values: Any) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values)]


def _read_keras(path: Path) -> dict[str, np.ndarray]:
    """Conv weights of a Keras VGG19 h5, found through `layer_names` and `weight_names`.

    Keras 1 files list `block1_conv1_W_1:0` (a dataset in the layer's group); Keras 2 files
    list `block1_conv1/kernel:0`, a path relative to the layer's group (it nests). Either way
    `group[weight_name]` is the dataset. Kernels are HWIO; the 4-d one is the kernel.
    """
    import h5py

    flat: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            root = f
            if "layer_names" not in root.attrs and "model_weights" in f:
                root = f["model_weights"]  # a whole model saved with model.save()
            if "layer_names" not in root.attrs:
                raise WeightsError(
                    f"{path}: HDF5 file without a 'layer_names' attribute, so not a Keras "
                    "weights file (Keras 3 '.weights.h5' files are not supported)"
                )
            unexpected = []
            for layer in _decode_names(root.attrs["layer_names"]):
                if layer not in root:
                    raise WeightsError(f"{path}: layer_names lists {layer!r} but has no such group")
                group = root[layer]
                names = _decode_names(group.attrs.get("weight_names", []))
                if not names or layer in _KERAS_TOP_LAYERS:
                    continue  # input, pooling, flatten and the classifier
                m = re.fullmatch(r"block(\d+)_conv(\d+)", layer)
                if not m:
                    unexpected.append(layer)
                    continue
                arrays = {}
                for name in names:
                    if name not in group:
                        raise WeightsError(
                            f"{path}: layer {layer} lists weight {name!r} but has no such dataset"
                        )
                    value = np.asarray(group[name])
                    arrays[{4: "kernel", 1: "bias"}.get(value.ndim, name)] = value
                if sorted(arrays) != ["bias", "kernel"]:
                    raise WeightsError(
                        f"{path}: layer {layer} has weights {names}, expected a 4-d kernel and a "
                        "1-d bias"
                    )
                conv = f"conv{m[1]}_{m[2]}"
                flat[f"{conv}/kernel"], flat[f"{conv}/bias"] = arrays["kernel"], arrays["bias"]
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise WeightsError(f"cannot read Keras weights from {path}: {e}") from e
    if unexpected:
        raise WeightsError(
            f"{path}: layers with weights that VGG19 does not have: {', '.join(unexpected)}"
        )
    return flat


# ---------------------------------------------------------------------------------------------
# Zip archives: jaxstyle npz or PyTorch (>= 1.6) checkpoints


def _read_zip(path: Path) -> tuple[dict[str, np.ndarray], str]:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise WeightsError(f"{path} is a corrupt or truncated zip archive (npz/pth): {e}") from e
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return _read_torch(path, zip_format=True), "torch"
    if names and all(n.endswith(".npy") for n in names):
        return _read_npz(path)
    raise WeightsError(
        f"{path} is a zip archive but neither a jaxstyle .npz nor a PyTorch checkpoint "
        f"(members: {', '.join(names[:5])})"
    )


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], str]:
    try:
        with np.load(path, allow_pickle=False) as f:
            flat = {key: f[key] for key in f.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise WeightsError(f"{path} is a corrupt or truncated npz: {e}") from e
    if "convention" not in flat:
        raise WeightsError(f"{path}: npz without a 'convention' entry (one of {CONVENTIONS})")
    convention = flat.pop("convention")
    if convention.shape != () or convention.dtype.kind != "U" or str(convention) not in CONVENTIONS:
        raise WeightsError(
            f"{path}: 'convention' must be a 0-d string, one of {CONVENTIONS}; got {convention!r}"
        )
    return flat, str(convention)


# ---------------------------------------------------------------------------------------------
# torchvision state dicts


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _read_torch(path: Path, *, zip_format: bool) -> dict[str, np.ndarray]:
    """Conv weights of a torchvision VGG19 state dict, transposed to HWIO."""
    torch = _import_torch()
    if torch is not None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch reports bad files with many exception types
            raise WeightsError(
                f"cannot load PyTorch weights from {path}: {_torch_reason(e)}"
            ) from e
        if isinstance(state, Mapping):
            state = {
                k: _tensor_to_numpy(torch, v) if isinstance(v, torch.Tensor) else v
                for k, v in state.items()
            }
    elif zip_format:
        state = _restricted_torch_load(path)
    else:
        state = _restricted_legacy_torch_load(path)
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: expected a state dict (a mapping), got {type(state).__name__}")
    flat: dict[str, np.ndarray] = {}
    by_key = {}
    for name, index in TORCH_FEATURE_INDEX.items():
        by_key[f"features.{index}.weight"] = f"{name}/kernel"
        by_key[f"features.{index}.bias"] = f"{name}/bias"
    unexpected = []
    for key, value in state.items():
        if str(key).startswith("classifier."):
            continue  # the fully connected layers are not part of the feature network
        if key not in by_key:
            unexpected.append(str(key))
            continue
        if not isinstance(value, np.ndarray):
            raise WeightsError(f"{path}: {key} is a {type(value).__name__}, not a tensor")
        target = by_key[key]
        if target.endswith("/kernel") and value.ndim == 4:
            # [outC, inC, kH, kW] (OIHW, torch) -> [kH, kW, inC, outC] (HWIO, flax)
            value = np.ascontiguousarray(value.transpose(2, 3, 1, 0))
        flat[target] = value
    if unexpected:
        raise WeightsError(
            f"{path}: keys that torchvision's VGG19 does not have: {_some(unexpected)} (expected "
            "features.N.weight/bias for the 16 convolutions, and optionally classifier.*)"
        )
    return flat


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
        f"{path}: refused to load this PyTorch file without torch ({e}); a VGG19 state dict "
        "holds only tensors. Install torch to read other files with torch.load(weights_only)"
    )


# ---------------------------------------------------------------------------------------------
# Download and cache


def _is_url(source: Any) -> bool:
    return isinstance(source, str) and source.startswith(("http://", "https://"))


def _fetch_url(url: str, cache_dir, progress) -> Path:
    """A URL source: cached under its file name, checked when its checksum is published."""
    if url == DEFAULT_URL:
        return _cached_download(url, DEFAULT_FILENAME, DEFAULT_MD5, cache_dir, progress)
    filename = Path(urllib.parse.urlparse(url).path).name or "weights"
    return _cached_download(url, filename, KNOWN_MD5.get(filename), cache_dir, progress)


def _checksum_error(path: Path, filename: str, expected_md5: str | None) -> str | None:
    """Why `path` fails its published checksum, or None.

    The checksum is `expected_md5` and/or the SHA-256 prefix in a torch.hub style `filename`
    (`vgg19-dcbb9e9d.pth`); a file with neither passes.
    """
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    hub = _HUB_HASH.search(filename)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            if expected_md5:
                md5.update(chunk)
            if hub:
                sha.update(chunk)
    if expected_md5 and md5.hexdigest() != expected_md5:
        return f"MD5 {md5.hexdigest()}, expected {expected_md5}"
    if hub and not sha.hexdigest().startswith(hub[1]):
        return f"SHA-256 {sha.hexdigest()[: len(hub[1])]}..., expected {hub[1]}..."
    return None


def _intact(path: Path, md5: str | None) -> bool:
    """Whether a cached file passes its published checksum (`_checksum_error`: `md5` and/or
    a torch.hub hash in its name).

    Hashing is skipped when the file is unchanged since it last passed: its stamp (a hidden
    `.NAME.verified` beside it) records the checksum and the file's size, inode, mtime and
    ctime then (ctime cannot be set by hand: copying a file over it with its times kept
    still changes it). The MD5 of the 80 MB default file costs 0.13 s on an idle core, 0.3 s
    on a busy one, on every run's way to its first step.
    """
    if not md5 and not _HUB_HASH.search(path.name):
        return True  # nothing published to check against
    try:
        if _stamp_path(path).read_text() == _stamp_text(path, md5):
            return True
    except OSError:
        pass
    if _checksum_error(path, path.name, md5) is not None:
        return False
    _write_stamp(path, md5)
    return True


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _stamp_text(path: Path, md5: str | None) -> str:
    st = path.stat()
    return (f"md5={md5 or '-'} size={st.st_size} inode={st.st_ino} "
            f"mtime_ns={st.st_mtime_ns} ctime_ns={st.st_ctime_ns}\n")


def _write_stamp(path: Path, md5: str | None) -> None:
    text = _stamp_text(path, md5)
    with contextlib.suppress(OSError):  # a read-only cache: the file is hashed again next time
        files.atomic_write(_stamp_path(path), lambda f: f.write(text.encode()))


def _cached_download(url: str, filename: str, md5: str | None, cache_dir, progress) -> Path:
    """`cache/filename` if present and intact (`_intact`), else downloaded there from `url`.

    A cached file that fails its checksum is removed and fetched again.
    """
    directory = weights_cache_dir(cache_dir)
    dest = directory / filename
    if dest.is_file():
        if _intact(dest, md5):
            return dest
        dest.unlink()  # a damaged cache entry is never used
        _stamp_path(dest).unlink(missing_ok=True)
    # The temporary file is removed on leaving, unless renamed: never a partial download
    # behind, not even on Ctrl-C.
    with contextlib.ExitStack() as cleanup:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp, out = cleanup.enter_context(files.temporary_file(dest))
        except OSError as e:
            raise WeightsError(
                _download_help(url, dest, md5, f"cannot write to {directory}: {e}")
            ) from e
        try:
            _stream(url, out, progress)
            out.flush()
            os.fsync(out.fileno())  # as files.atomic_write: on disk before it is renamed
            out.close()
            mismatch = _checksum_error(tmp, filename, md5)
            if mismatch:
                raise WeightsError(
                    _download_help(url, dest, md5, f"checksum mismatch ({mismatch}); discarded")
                )
            os.replace(tmp, dest)
            _write_stamp(dest, md5)
        except BaseException as e:
            if isinstance(e, urllib.error.HTTPError):
                e.close()  # it holds the response's socket
            if isinstance(e, (OSError, http.client.HTTPException)):
                raise WeightsError(_download_help(url, dest, md5, _reason(e))) from e
            raise
    return dest


def _stream(url: str, out, progress: Progress | None) -> None:
    """Copy `url` into the open file `out`, reporting (done, total) after every chunk."""
    with _urlopen(url, timeout=60) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        if progress is not None:
            progress(0, total)
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    # http.client returns a short body without an error when the server hangs up early.
    if total is not None and done != total:
        raise http.client.IncompleteRead(b"", total - done)


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    if isinstance(e, http.client.IncompleteRead):
        return f"connection closed with {e.expected} bytes still to come"
    return str(e) or type(e).__name__


def _download_help(url: str, dest: Path, md5: str | None, reason: str) -> str:
    checksum = f" (MD5 {md5})" if md5 else ""
    return (
        f"could not download VGG19 weights from {url}: {reason}. Download {dest.name}{checksum} "
        f"yourself and pass it with --weights FILE or {ENV_WEIGHTS}=FILE, or place it at {dest}"
    )
