"""The released AdaIN/SANet PyTorch files: their key layouts, identification, conversion.

Three layouts (plain state dicts of OIHW tensors, read by `jaxstyle.torchfile` without
executing pickled code):
- "vgg": the normalised VGG19 encoder, `vgg_normalised.pth`: one flat nn.Sequential, keys
  `{i}.weight`/`{i}.bias` for its convolutions at i = 0 (1x1, 3 -> 3), 2, 5, 9, 12, 16, 19,
  22, 25, 29, 32, 35, 38, 42, 45, 48, 51 (`VGG_INDEX`). 45, 48 and 51 (conv5_2 .. conv5_4)
  are stored but never used; they are checked when present and may be absent.
- "decoder": `decoder.pth`, `iter_1000000.pth` (AdaIN) and `decoder_iter_500000.pth` (SANet):
  keys `{i}.weight`/`{i}.bias` at i = 1, 5, 8, 11, 14, 18, 21, 25, 28 (`DECODER_INDEX`).
  The AdaIN and SANet decoders share this layout: which network a decoder was trained for
  cannot be read from the file.
- "transformer": `transformer_iter_500000.pth`, keys `sanet4_1.{f,g,h,out_conv}.{weight,bias}`,
  `sanet5_1....` and `merge_conv.{weight,bias}`.

A file is identified by its keys, so a file given in another's place (the decoder passed as
the encoder: the AdaIN README once swapped the two links) is named for what it is. Every
key and shape is checked; kernels are transposed OIHW -> HWIO and cast to float32.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle import torchfile
from jaxstyle.arbitrary import decoder as decoder_net
from jaxstyle.arbitrary import encoder as encoder_net
from jaxstyle.arbitrary import sanet as sanet_net
from jaxstyle.files import WeightsError
from jaxstyle.weightfile import is_npz, some

# Index of each encoder convolution in the released nn.Sequential (pad/conv/ReLU triples,
# poolings at 7, 14, 27, 40). conv5_2 .. conv5_4 are in the file, not in the encoder.
VGG_INDEX = {
    "conv0": 0, "conv1_1": 2, "conv1_2": 5, "conv2_1": 9, "conv2_2": 12,
    "conv3_1": 16, "conv3_2": 19, "conv3_3": 22, "conv3_4": 25,
    "conv4_1": 29, "conv4_2": 32, "conv4_3": 35, "conv4_4": 38,
    "conv5_1": 42, "conv5_2": 45, "conv5_3": 48, "conv5_4": 51,
}  # fmt: skip
_UNUSED_VGG = ("conv5_2", "conv5_3", "conv5_4")
# Index of conv1 .. conv9 in the decoder's nn.Sequential (upsampling at 3, 16, 23).
DECODER_INDEX = {f"conv{k}": i for k, i in enumerate((1, 5, 8, 11, 14, 18, 21, 25, 28), 1)}

# What each layout is, for messages.
DESCRIPTION = {
    "vgg": "the normalised VGG19 encoder (vgg_normalised.pth)",
    "decoder": "an AdaIN/SANet decoder (decoder.pth, iter_1000000.pth or "
               "decoder_iter_500000.pth)",
    "transformer": "the SANet Transform (transformer_iter_500000.pth)",
}


class EncoderInputWarning(UserWarning):
    """The encoder file's first layer is not the documented RGB [0, 1] -> Caffe input map."""


def layout(part: str) -> dict[str, tuple[tuple[str, ...] | None, tuple[int, ...]]]:
    """{torch key: (path in the params tree, e.g. ("conv1_1", "kernel"), or None for a stored
    but unused tensor; shape as stored, OIHW)} of a released layout, in the file's order."""
    if part == "vgg":
        shapes = encoder_net.param_shapes("relu5_1")
        for name in _UNUSED_VGG:
            shapes[name] = {"kernel": (3, 3, 512, 512), "bias": (512,)}
        keys = {name: f"{VGG_INDEX[name]}" for name in shapes}
    elif part == "decoder":
        shapes = decoder_net.param_shapes()
        keys = {name: f"{DECODER_INDEX[name]}" for name in shapes}
    elif part == "transformer":
        shapes = flatten_layers(sanet_net.param_shapes())
        keys = {name: name.replace("/", ".") for name in shapes}
    else:
        raise ValueError(f"unknown layout {part!r}; expected one of {tuple(DESCRIPTION)}")
    out = {}
    for name, layer in shapes.items():
        unused = part == "vgg" and name in _UNUSED_VGG
        path = tuple(name.split("/"))
        kh, kw, cin, cout = layer["kernel"]
        out[f"{keys[name]}.weight"] = (None if unused else (*path, "kernel"), (cout, cin, kh, kw))
        out[f"{keys[name]}.bias"] = (None if unused else (*path, "bias"), layer["bias"])
    return out


def identify(keys) -> str | None:
    """The layout ("vgg", "decoder", "transformer") a state dict's keys belong to, or None.

    The one whose key set overlaps the file's most, if at least half of the file's keys are
    in it. The vgg and decoder layouts share only "5.*" and "25.*" (4 of 34 and 18 keys).
    """
    keys = set(map(str, keys))
    best, overlap = None, 0
    for part in DESCRIPTION:
        n = len(keys & set(layout(part)))
        if n > overlap:
            best, overlap = part, n
    return best if keys and overlap * 2 >= len(keys) else None


def read_released(path: str | os.PathLike, part: str, *, deepest: str = "relu5_1"
                  ) -> dict[str, Any]:
    """A released file's params for `part` ("vgg", "decoder" or "transformer"): HWIO float32
    NumPy arrays in the network's tree (the encoder only up to `deepest`).

    Raises WeightsError (one line naming the file) when it is missing, unreadable, corrupt,
    another layout (saying which), or has a missing, unknown, wrongly shaped or non-finite
    entry. Warns (EncoderInputWarning) when the encoder's 1x1 input layer is not the
    documented RGB -> BGR * 255 - mean map; its values are used as stored either way.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"{path}: no such file (expected {DESCRIPTION[part]})")
    if is_npz(path):
        raise WeightsError(f"{path} is a jaxstyle model .npz, not {DESCRIPTION[part]}: pass it "
                           "as model=", name="model")
    state = torchfile.load_state_dict(path)
    found = identify(state)
    if found is None:
        raise WeightsError(f"{path} is not {DESCRIPTION[part]}: its keys "
                           f"({some(sorted(map(str, state)))}) match no released layout"
                           f"{_torchvision_hint(state)}")
    if found != part:
        raise WeightsError(f"{path} is {DESCRIPTION[found]}, not {DESCRIPTION[part]}: check "
                           "which file goes with which option")
    expected = layout(part)
    problems = []
    missing = [k for k, (p, _) in expected.items() if k not in state and p is not None]
    unknown = sorted(str(k) for k in state if k not in expected)
    if missing:
        problems.append("missing " + some(missing))
    if unknown:
        problems.append("unexpected " + some(unknown))
    params: dict[str, Any] = {}
    for key, (target, shape) in expected.items():
        if key not in state:
            continue
        value = state[key]
        if not isinstance(value, np.ndarray):
            problems.append(f"{key} is a {type(value).__name__}, not a tensor")
        elif value.shape != shape:
            problems.append(f"{key} has shape {value.shape}, expected {shape}")
        elif value.dtype.kind != "f" and value.dtype.name != "bfloat16":
            problems.append(f"{key} has dtype {value.dtype}, expected floating point")
        elif not np.isfinite(value.astype(np.float32)).all():
            problems.append(f"{key} contains NaN or inf")
        elif target is not None:
            value = value.astype(np.float32)
            if value.ndim == 4:  # OIHW -> HWIO
                value = value.transpose(2, 3, 1, 0)
            node = params
            for name in target[:-1]:
                node = node.setdefault(name, {})
            node[target[-1]] = np.ascontiguousarray(value)
    if problems:
        raise WeightsError(f"{path}: not a usable {DESCRIPTION[part]}: " + "; ".join(problems))
    if part == "vgg":
        params = {name: params[name] for name in encoder_net.conv_names(deepest)}
        _check_input_layer(params["conv0"], path)
    return params


def _check_input_layer(conv0: dict[str, np.ndarray], path: Path) -> None:
    """Warn when conv0 is not `encoder.input_layer()` (to 0.1%): the encoder then sees
    other inputs than the layers after it were trained on, unless the file is another
    encoder variant on purpose. Whatever it holds is applied, as the reference code does."""
    kernel, bias = encoder_net.input_layer()
    if (np.allclose(conv0["kernel"], kernel, rtol=1e-3, atol=1e-3 * 255)
            and np.allclose(conv0["bias"], bias, rtol=1e-3, atol=0.0)):
        return
    w = conv0["kernel"][0, 0].T  # (out, in)
    warnings.warn(
        f"{path}: the encoder's first layer (1x1 conv) is not the documented RGB [0, 1] -> BGR "
        f"* 255 - Caffe mean map (weight[out, in] {np.round(w, 3).tolist()}, bias "
        f"{np.round(conv0['bias'], 3).tolist()}); it is used as stored",
        EncoderInputWarning, stacklevel=3)


def flatten_layers(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": {"kernel": x}}} -> {"a/b": {"kernel": x}} (down to kernel/bias dicts)."""
    out = {}
    for name, node in tree.items():
        if "kernel" in node:
            out[prefix + name] = node
        else:
            out.update(flatten_layers(node, f"{prefix}{name}/"))
    return out


def _torchvision_hint(state: dict[str, Any]) -> str:
    if any(str(k).startswith("features.") for k in state):
        return " (it looks like a torchvision VGG19, which is another network)"
    return ""
