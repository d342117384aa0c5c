"""Writers of synthetic VGG19 weight files in the real layouts, for the loader tests.

These write files the way Keras, torch.save and jaxstyle do, independently of the loader
code in jaxstyle/weights.py, so reading them back tests the readers. Params are the Flax
pytree {"conv1_1": {"kernel": (3, 3, Cin, Cout) HWIO, "bias": (Cout,)}, ...}, e.g. from
`jaxstyle.random_weights(seed).params`.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path

import h5py
import numpy as np

from jaxstyle.vgg import BLOCK_DEPTHS, CONV_NAMES

# torchvision's vgg19.features indices of the 16 convolutions (conv, relu, ..., pool per
# block), written out by hand here rather than imported from the code under test.
TORCH_INDEX = dict(
    zip(CONV_NAMES, (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34), strict=True)
)


def _np(params) -> dict[str, dict[str, np.ndarray]]:
    return {
        n: {k: np.array(v, np.float32) for k, v in layer.items()} for n, layer in params.items()
    }


def keras_layer_names(include_top: bool = False) -> list[str]:
    """Layer order of keras.applications.VGG19 (input, convs, pools[, flatten, fc1, fc2, ...])."""
    names = ["input_1"]
    for b, depth in enumerate(BLOCK_DEPTHS, 1):
        names += [f"block{b}_conv{i}" for i in range(1, depth + 1)] + [f"block{b}_pool"]
    if include_top:
        names += ["flatten", "fc1", "fc2", "predictions"]
    return names


def write_keras_h5(
    path, params, *, style: str = "W_1", include_top: bool = False, skip=(), override=None
) -> Path:
    """A Keras `save_weights` h5 file of VGG19.

    style "W_1": Keras 1 names, weight_names [b"block1_conv1_W_1:0", b"block1_conv1_b_1:0"],
      datasets directly in the layer's group (the layout of the published notop file).
    style "kernel": Keras 2 names [b"block1_conv1/kernel:0", b"block1_conv1/bias:0"], which
      nest: dataset at /block1_conv1/block1_conv1/kernel:0.
    include_top adds flatten (no weights) and fc1/fc2/predictions with small stand-in shapes
    (the real ones are 25088x4096, ...; the loader must ignore them whatever their shape).
    skip: conv layers (Keras names) to leave out; override: {Keras layer: (kernel, bias)}.
    """
    params, override = _np(params), dict(override or {})
    path = Path(path)
    layers = [n for n in keras_layer_names(include_top) if n not in skip]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.0" if style == "kernel" else b"1.1.0"
        rng = np.random.default_rng(0)
        for layer in layers:
            g = f.create_group(layer)
            weights = []
            if layer.startswith("block") and "_conv" in layer:
                b, i = layer[5], layer.split("conv")[1]
                p = params[f"conv{b}_{i}"]
                weights = list(override.get(layer, (p["kernel"], p["bias"])))
            elif layer in ("fc1", "fc2", "predictions"):
                weights = [rng.normal(size=(8, 4)).astype(np.float32), np.zeros(4, np.float32)]
            if style == "W_1":
                names = [f"{layer}_W_1:0", f"{layer}_b_1:0"][: len(weights)]
            elif style == "kernel":
                names = [f"{layer}/kernel:0", f"{layer}/bias:0"][: len(weights)]
            else:
                raise ValueError(style)
            # Keras writes an empty list for layers without weights (input, pool, flatten).
            g.attrs["weight_names"] = (
                np.array([n.encode() for n in names]) if names else np.array([])
            )
            for name, value in zip(names, weights, strict=True):
                g.create_dataset(name, data=value)  # "a/kernel:0" creates the nested group "a"
    return path


def write_npz(path, params, convention: str = "caffe") -> Path:
    """A jaxstyle npz: flat "conv1_1/kernel" keys and a 0-d string array "convention"."""
    flat = {f"{n}/{k}": v for n, layer in _np(params).items() for k, v in layer.items()}
    with open(path, "wb") as f:
        np.savez(f, convention=np.array(convention), **flat)
    return Path(path)


def torch_state_dict_arrays(params, *, classifier: bool = False) -> dict[str, np.ndarray]:
    """torchvision vgg19 state dict contents as NumPy arrays (kernels OIHW)."""
    state = collections.OrderedDict()
    for name, layer in _np(params).items():
        i = TORCH_INDEX[name]
        # HWIO [kH, kW, inC, outC] -> OIHW [outC, inC, kH, kW]
        state[f"features.{i}.weight"] = np.ascontiguousarray(layer["kernel"].transpose(3, 2, 0, 1))
        state[f"features.{i}.bias"] = layer["bias"]
    if classifier:  # small stand-ins: the loader ignores classifier.* whatever the shape
        for i in (0, 3, 6):
            state[f"classifier.{i}.weight"] = np.ones((4, 8), np.float32)
            state[f"classifier.{i}.bias"] = np.zeros(4, np.float32)
    return state


def write_torch_with_torch(path, params, *, classifier=False, legacy=False) -> Path:
    """torch.save of the state dict (zip format, or the legacy format when legacy=True)."""
    import torch

    state = collections.OrderedDict(
        (k, torch.from_numpy(v))
        for k, v in torch_state_dict_arrays(params, classifier=classifier).items()
    )
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return Path(path)


class _Global:
    """A pickled reference to `module.name`, written without importing the module."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle requires reduce functions to be callable
        raise AssertionError("never called: only written")


class _Storage:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _Tensor:
    """Pickles as torch does: _rebuild_tensor_v2(storage, offset, size, stride, grad, hooks)."""

    def __init__(self, storage: _Storage, shape, strides, *, before_0_4: bool = False):
        self.storage, self.shape, self.strides = storage, tuple(shape), tuple(strides)
        self.before_0_4 = before_0_4  # torch < 0.4: _rebuild_tensor(storage, offset, size, stride)

    def __reduce__(self):
        if self.before_0_4:
            return (_Global("torch._utils", "_rebuild_tensor"),
                    (self.storage, 0, self.shape, self.strides))
        return (
            _Global("torch._utils", "_rebuild_tensor_v2"),
            (self.storage, 0, self.shape, self.strides, False, collections.OrderedDict()),
        )


class _Evil:
    """Pickles as a call of an arbitrary global: a loader must refuse it, never run it."""

    def __init__(self, module, name, *args):
        self.target, self.args = _Global(module, name), args

    def __reduce__(self):
        return self.target, self.args


class _TorchPickler(pickle._Pickler):  # the pure-Python pickler lets us emit GLOBAL directly
    dispatch = pickle._Pickler.dispatch.copy()
    legacy = False  # the legacy format's storage records carry a sixth field (a view or None)

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            record = ("storage", _Global("torch", "FloatStorage"), obj.key, "cpu",
                      obj.array.size)
            return (*record, None) if self.legacy else record
        return None

    def _save_marker(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[_Global] = _save_marker


def _torch_state(params, *, classifier=False, extra=None, extra_tensors=None,
                 transposed_view=False, before_0_4=False, key=str):
    """(state dict of _Tensor records, {storage key: _Storage}) for both file layouts.

    extra: more {key: object} entries, e.g. an _Evil; extra_tensors: more {key: array}
    tensors. transposed_view: conv kernels as non-contiguous views (storage in HWIO order,
    OIHW strides) to exercise strided rebuilds. key(k): the k-th storage's key.
    """
    state = collections.OrderedDict()
    storages = {}
    arrays = torch_state_dict_arrays(params, classifier=classifier)
    arrays.update(extra_tensors or {})
    for k, (name, value) in enumerate(arrays.items()):
        if transposed_view and value.ndim == 4:
            storage = _Storage(key(k), np.ascontiguousarray(value.transpose(2, 3, 1, 0), "<f4"))
            # strides (in elements) of the OIHW view of that HWIO buffer
            hwio = [s // 4 for s in storage.array.strides]
            strides = (hwio[3], hwio[2], hwio[0], hwio[1])
        else:
            storage = _Storage(key(k), np.ascontiguousarray(value, "<f4"))
            strides = [s // 4 for s in storage.array.strides]
        storages[storage.key] = storage
        state[name] = _Tensor(storage, value.shape, strides, before_0_4=before_0_4)
    state.update(extra or {})
    return state, storages


def write_torch_zip(path, params, **options) -> Path:
    """The PyTorch >= 1.6 zip layout written without torch (what torch.save produces).

    archive/data.pkl (protocol 2; tensors via torch._utils._rebuild_tensor_v2 and persistent
    ids ("storage", torch.FloatStorage, key, "cpu", numel)), archive/data/<key> (raw
    little-endian float32), archive/byteorder, archive/version. options: `_torch_state`'s.
    """
    state, storages = _torch_state(params, **options)
    buf = io.BytesIO()
    _TorchPickler(buf, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        for key, storage in storages.items():
            z.writestr(f"archive/data/{key}", storage.array.tobytes())
        z.writestr("archive/version", "3\n")
    return Path(path)


class _LegacyPickler(_TorchPickler):
    legacy = True


def write_torch_legacy(path, params, **options) -> Path:
    """PyTorch's legacy (pre-1.6) `torch.save` layout written without torch.

    Pickles (protocol 2) of the magic number 0x1950a86a20f9469cfc6c, the protocol version
    1001 and the system info; the state dict pickle with storage records ("storage",
    torch.FloatStorage, key, "cpu", numel, None); the pickled list of storage keys; then per
    key, in that order, the element count as little-endian int64 and the raw float32 data.
    options: `_torch_state`'s; before_0_4=True writes tensors as torch < 0.4 pickled them
    (torchvision's vgg19-dcbb9e9d.pth dates from 2017).
    """
    state, storages = _torch_state(params, key=lambda k: f"9{k:04d}", **options)
    return _write_legacy(path, state, storages)


def write_legacy_state_dict(path, arrays) -> Path:
    """Any {key: np.ndarray} state dict in PyTorch's legacy (pre-1.6) `torch.save` layout,
    written without torch (as `write_torch_legacy`; float32 tensors, keys in the given
    order): the format of the released AdaIN/SANet files."""
    state = collections.OrderedDict()
    storages = {}
    for k, (name, value) in enumerate(arrays.items()):
        storage = _Storage(f"{k}", np.ascontiguousarray(value, "<f4"))
        storages[storage.key] = storage
        state[name] = _Tensor(storage, value.shape, [s // 4 for s in storage.array.strides])
    return _write_legacy(path, state, storages)


def _write_legacy(path, state, storages) -> Path:
    keys = sorted(storages)
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 8}}, f, protocol=2)
        _LegacyPickler(f, protocol=2).dump(state)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            data = storages[key].array
            f.write(np.int64(data.size).astype("<i8").tobytes())
            f.write(data.tobytes())
    return Path(path)


def evil(module: str, name: str, *args) -> _Evil:
    """An object that unpickles as `module.name(*args)` (for forbidden-global tests)."""
    return _Evil(module, name, *args)
