"""VGG19 weight files: read, verify, convert (the formats; `download` fetches the default).

Sources (detected by content, not by extension):
- Keras HDF5 (`.h5`): the notop or the full VGG19 file (fully connected layers ignored), in
  both weight naming styles (`block1_conv1_W_1:0` and `block1_conv1/kernel:0`). Datasets are
  found through the root attribute `layer_names` and each layer's `weight_names`, never
  guessed. Kernels are HWIO already. Convention "caffe" (BGR, 0-255, mean-subtracted).
- torchvision state dicts (`.pth`/`.pt`): `features.N.weight` (OIHW) and `features.N.bias`;
  the classifier is ignored. Convention "torch" (RGB [0, 1], ImageNet mean/std). Read by
  `jaxstyle.torchfile`: pickled code is never executed.
- jaxstyle `.npz`: flat keys `conv1_1/kernel`, `conv1_1/bias`, ... and a 0-d string array
  `convention`; loaded with `allow_pickle=False`.

Every loaded set is checked key by key and shape by shape against the model's params
(`vgg.param_shapes`; a test checks that table against `jax.eval_shape` of the model's init).
The default source is the Keras notop file from its canonical URL, MD5-verified and cached
(see `load_vgg19`).
"""

from __future__ import annotations

import functools
import os
import re
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxstyle import download, files, torchfile
from jaxstyle.download import Progress
from jaxstyle.files import WeightsError
from jaxstyle.vgg import CONV_NAMES, CONVENTIONS, VGGWeights, param_shapes
from jaxstyle.weightfile import (
    array_problems,
    flatten,
    read_npz,
    some,
    string_entry,
    write_npz,
)

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
ENV_WEIGHTS = "JAXSTYLE_WEIGHTS"  # a local weights file used when no source is given
# How a user without network passes the file instead (ends the download error message).
LOCAL_HINT = f"pass its path as load_vgg19(PATH) or set {ENV_WEIGHTS}=PATH"

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
        source = DEFAULT_URL
    if isinstance(source, str) and source.startswith("file://"):
        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(source).path))
    elif download.is_url(source):
        # Cached under its file name, checked when its checksum is published.
        if source == DEFAULT_URL:
            filename, md5 = DEFAULT_FILENAME, DEFAULT_MD5
        else:
            filename = Path(urllib.parse.urlparse(source).path).name or "weights"
            md5 = KNOWN_MD5.get(filename)
        try:
            path = download.cached_download(source, files.home_dir(cache_dir), filename,
                                            md5=md5, progress=progress, local_hint=LOCAL_HINT)
        except WeightsError as e:
            raise WeightsError(str(e), name="weights") from e
    else:
        path = Path(source).expanduser()
    try:
        params, convention = read_weights(path)
    except WeightsError as e:
        if from_env:  # say where the file name came from
            raise WeightsError(f"{e} (file named by ${ENV_WEIGHTS})") from e
        raise
    # One device_put of the tree: jnp.asarray would compile a copy program for each of the 12
    # distinct shapes.
    return VGGWeights(jax.device_put(params), convention, source=str(path))


def save_weights(weights: VGGWeights, dest: str | os.PathLike) -> Path:
    """Write `weights` as a jaxstyle npz (flat `conv1_1/kernel` keys, 0-d `convention`).

    Written to a temporary file in dest's directory and renamed into place, so `dest` is
    either the old file or the complete new one, never a partial write. Returns dest.
    """
    dest = Path(dest).expanduser()
    flat = {key: np.asarray(value, np.float32) for key, value in flatten(weights.params).items()}
    _check_params(flat, dest, "refusing to write")
    return write_npz(dest, flat, {"convention": weights.convention})


def convert_weights(
    source: str | os.PathLike | None,
    dest: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> Path:
    """Convert any source `load_vgg19` accepts into a jaxstyle npz at `dest` (atomic write)."""
    return save_weights(load_vgg19(source, cache_dir=cache_dir, progress=progress), dest)


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
        flat, convention = _read_torch(path), "torch"
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
    which is not done here: tracing the init would cost every load time)."""
    # In forward order, kernel before bias, so messages list problems the way people read them.
    return {
        f"{name}/{kind}": shape
        for name, layer in param_shapes().items()
        for kind, shape in layer.items()
    }


def _check_params(flat: dict[str, np.ndarray], path: Path, what: str = "does not hold") -> None:
    """Check flat {"conv1_1/kernel": array} against the model; cast to float32 in place."""
    problems = array_problems(flat, expected_shapes())
    if problems:
        raise WeightsError(f"{path}: {what} VGG19 weights: " + "; ".join(problems))


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
    if torchfile.is_torch_zip(names):
        return _read_torch(path), "torch"
    if names and all(n.endswith(".npy") for n in names):
        return _read_npz(path)
    raise WeightsError(
        f"{path} is a zip archive but neither a jaxstyle .npz nor a PyTorch checkpoint "
        f"(members: {', '.join(names[:5])})"
    )


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], str]:
    flat = read_npz(path, "jaxstyle .npz")
    convention = string_entry(flat, "convention", CONVENTIONS)
    if convention is None:
        raise WeightsError(f"{path}: npz without a 0-d string 'convention' entry, one of "
                           f"{CONVENTIONS}")
    return flat, convention


# ---------------------------------------------------------------------------------------------
# torchvision state dicts


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    """Conv weights of a torchvision VGG19 state dict (`torchfile`), transposed to HWIO."""
    state = torchfile.load_state_dict(path)
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
            f"{path}: keys that torchvision's VGG19 does not have: {some(unexpected)} (expected "
            "features.N.weight/bias for the 16 convolutions, and optionally classifier.*)"
        )
    return flat
