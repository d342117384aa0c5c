"""AdaIN and SANet weights: the released files, jaxstyle's model .npz, and where each comes from.

    params = load_sanet(vgg="vgg_normalised.pth", decoder="decoder_iter_500000.pth",
                        transformer="transformer_iter_500000.pth")
    params = load_adain(vgg="vgg_normalised.pth", decoder="decoder.pth")
    convert("sanet", "sanet.npz", vgg=..., decoder=..., transformer=...)  # one file
    params = load_sanet(model="sanet.npz")

Params are a plain dict pytree of float32 arrays (HWIO kernels): {"encoder": ..., "decoder":
..., "transform": ...} for SANet (`encoder.param_shapes("relu5_1")`, `decoder.param_shapes()`,
`sanet.param_shapes()`), no "transform" for AdaIN, whose encoder stops at conv4_1.

Released files (PyTorch state dicts, read without executing pickled code; layouts in
`jaxstyle.arbitrary.released`). No checksums are published for any of them, so jaxstyle
downloads none: get them yourself and pass them in, or put them in one directory under these
names and set JAXSTYLE_ARBITRARY_WEIGHTS=DIR.

- vgg_normalised.pth: the encoder (AdaIN and SANet). naoto0804/pytorch-AdaIN, GitHub release
  v0.0.0 (its README once spelled it vgg_normalized.pth and once swapped the decoder and VGG
  links); also linked from GlebSBrykin/SANET's README, mirrored by AdaAttN and StyTr2.
- decoder.pth: AdaIN decoder converted from the official Lua decoder.t7; same release.
- iter_1000000.pth: AdaIN decoder trained with that PyTorch port; same release.
- decoder_iter_500000.pth, transformer_iter_500000.pth: SANet decoder and Transform;
  GlebSBrykin/SANET's README (Yandex.Disk links, a GitHub release).

Where each part comes from, first match wins: its explicit argument (vgg=, decoder=,
transformer=), the model .npz (model=), then $JAXSTYLE_ARBITRARY_WEIGHTS/<published name>
(AdaIN's decoder: decoder.pth, else iter_1000000.pth). A model .npz written by training holds
the decoder and Transform only, so the encoder then comes from vgg= or the directory.

jaxstyle's model .npz: flat `/`-joined keys (`encoder/conv1_1/kernel`,
`decoder/conv1/bias`, `transform/sanet4_1/f/kernel`, ...), float32, and a 0-d string entry
`kind` ("sanet" or "adain"); read with allow_pickle=False, written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxstyle.arbitrary import decoder as decoder_net
from jaxstyle.arbitrary import encoder as encoder_net
from jaxstyle.arbitrary import sanet as sanet_net
from jaxstyle.arbitrary.models import DEEPEST, KINDS, PARTS, check_kind
from jaxstyle.arbitrary.released import flatten_layers, read_released
from jaxstyle.files import WeightsError
from jaxstyle.weightfile import (
    array_problems,
    flatten,
    is_npz,
    read_npz,
    string_entry,
    unflatten,
    write_npz,
)

ENV_DIR = "JAXSTYLE_ARBITRARY_WEIGHTS"
# Released layout, keyword argument and published file names (in order of preference).
_LAYOUT = {"encoder": "vgg", "decoder": "decoder", "transform": "transformer"}
_ARG = {"encoder": "vgg", "decoder": "decoder", "transform": "transformer"}
_ADAIN = "naoto0804/pytorch-AdaIN, GitHub release v0.0.0"
_SANET = "the GlebSBrykin/SANET README (Yandex.Disk links, a GitHub release)"
PUBLISHED = {
    "vgg_normalised.pth": f"{_ADAIN} (also linked from GlebSBrykin/SANET's README)",
    "decoder.pth": _ADAIN,
    "iter_1000000.pth": _ADAIN,
    "decoder_iter_500000.pth": _SANET,
    "transformer_iter_500000.pth": _SANET,
}
FILE_NAMES = {
    ("sanet", "encoder"): ("vgg_normalised.pth",),
    ("sanet", "decoder"): ("decoder_iter_500000.pth",),
    ("sanet", "transform"): ("transformer_iter_500000.pth",),
    ("adain", "encoder"): ("vgg_normalised.pth",),
    ("adain", "decoder"): ("decoder.pth", "iter_1000000.pth"),
}

Source = str | os.PathLike | None


def load_sanet(*, vgg: Source = None, decoder: Source = None, transformer: Source = None,
               model: Source = None) -> dict[str, Any]:
    """SANet params {"encoder", "decoder", "transform"} on the default device.

    vgg, decoder, transformer: the released files (vgg_normalised.pth,
    decoder_iter_500000.pth, transformer_iter_500000.pth); model: a jaxstyle .npz of kind
    "sanet". Sources per part as in the module docstring. Raises WeightsError (one line) for
    a missing part (naming the file and where it is published), a file of another layout
    (naming it), or a bad key, shape or value.
    """
    return jax.device_put(read_params("sanet", vgg=vgg, decoder=decoder,
                                      transformer=transformer, model=model))


def load_adain(*, vgg: Source = None, decoder: Source = None, model: Source = None
               ) -> dict[str, Any]:
    """AdaIN params {"encoder", "decoder"} on the default device (as `load_sanet`; the
    decoder file is decoder.pth or iter_1000000.pth; model: an .npz of kind "adain")."""
    return jax.device_put(read_params("adain", vgg=vgg, decoder=decoder, model=model))


def read_params(kind: str, *, vgg: Source = None, decoder: Source = None,
                transformer: Source = None, model: Source = None) -> dict[str, Any]:
    """`load_sanet`/`load_adain` as host NumPy arrays (what `convert` writes)."""
    check_kind(kind)
    explicit = {"encoder": vgg, "decoder": decoder, "transform": transformer}
    if kind == "adain" and transformer is not None:
        raise ValueError("AdaIN has no Transform: transformer= is for SANet")
    stored: dict[str, Any] = {}
    if model is not None:
        model_kind, stored = read_model(model)
        if model_kind != kind:
            raise WeightsError(f"{model} is a {model_kind} model, not {kind}: load it with "
                               f"load_{model_kind}")
    params = {}
    for part in PARTS[kind]:
        if explicit[part] is not None:
            params[part] = read_released(explicit[part], _LAYOUT[part], deepest=DEEPEST[kind])
        elif part in stored:
            params[part] = stored[part]
        else:
            params[part] = read_released(_published_file(kind, part), _LAYOUT[part],
                                         deepest=DEEPEST[kind])
    return params


def read_encoder(kind: str, vgg: Source = None) -> dict[str, Any]:
    """The encoder of `kind` alone, as host NumPy arrays (what training needs when the rest
    starts fresh): from vgg=, else $JAXSTYLE_ARBITRARY_WEIGHTS/vgg_normalised.pth; the
    WeightsErrors of `load_sanet`."""
    check_kind(kind)
    path = vgg if vgg is not None else _published_file(kind, "encoder")
    return read_released(path, _LAYOUT["encoder"], deepest=DEEPEST[kind])


def _published_file(kind: str, part: str) -> Path:
    """The file for a part not given: in $JAXSTYLE_ARBITRARY_WEIGHTS, else WeightsError."""
    names = FILE_NAMES[(kind, part)]
    where = "; ".join(f"{name} is published in {PUBLISHED[name]}" for name in names)
    either = " or ".join(names)
    directory = os.environ.get(ENV_DIR)
    if directory:
        for name in names:
            path = Path(directory).expanduser() / name
            if path.is_file():
                return path
        raise WeightsError(
            f"{kind} {part}: {either} not found in {directory} (${ENV_DIR}); pass it as "
            f"{_ARG[part]}=PATH or put it there ({where}; no checksum is published, so "
            "jaxstyle does not download it)", name=_ARG[part])
    raise WeightsError(
        f"{kind} {part}: no file given; pass {either} as {_ARG[part]}=PATH or set "
        f"{ENV_DIR}=DIR to a directory holding it ({where}; no checksum is published, so "
        "jaxstyle does not download it)", name=_ARG[part])


def param_shapes(kind: str, *, encoder: bool = True) -> dict[str, Any]:
    """The params tree of `kind` with shapes as leaves (encoder left out if not `encoder`)."""
    check_kind(kind)
    shapes = {"encoder": encoder_net.param_shapes(DEEPEST[kind]),
              "decoder": decoder_net.param_shapes()}
    if kind == "sanet":
        shapes["transform"] = sanet_net.param_shapes()
    if not encoder:
        del shapes["encoder"]
    return shapes


def save_model(params: dict[str, Any], path: str | os.PathLike, kind: str) -> Path:
    """Write `params` as one jaxstyle model .npz (module docstring), atomically.

    params: {"decoder", "transform" (SANet)} and optionally "encoder", each checked key by
    key and shape by shape against `param_shapes(kind)`. Returns the path.
    """
    check_kind(kind)
    path = Path(path).expanduser()
    flat = {key: np.asarray(value, np.float32) for key, value in flatten(params).items()}
    _check_flat(flat, kind, f"{path}: refusing to write")
    return write_npz(path, flat, {"kind": kind})


def read_model(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """(kind, params as NumPy float32) of a jaxstyle model .npz; WeightsError if unusable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"{path}: no such file (expected a jaxstyle model .npz)", name="model")
    if not is_npz(path):
        if path.suffix.lower() == ".npz":  # damaged (cut short, say): say what np.load says
            read_npz(path, "jaxstyle model .npz")
        raise WeightsError(f"{path} is not a jaxstyle model .npz (released .pth files go to vgg=, "
                           "decoder=, transformer=)", name="model")
    flat = read_npz(path, "jaxstyle model .npz")
    kind = string_entry(flat, "kind", KINDS)
    if kind is None:
        raise WeightsError(f"{path}: not a jaxstyle model .npz (no 0-d string 'kind' entry, "
                           f"one of {KINDS}); released .pth files go to vgg=, decoder=, "
                           "transformer=")
    _check_flat(flat, kind, f"{path}: not a usable {kind} model")
    return kind, unflatten(flat)


def convert(kind: str, dest: str | os.PathLike, *, vgg: Source = None, decoder: Source = None,
            transformer: Source = None, model: Source = None, include_encoder: bool = True
            ) -> Path:
    """Read the released files of `kind` (sources as `load_sanet`/`load_adain`) and write one
    jaxstyle model .npz at `dest` (with the encoder unless include_encoder=False)."""
    params = read_params(kind, vgg=vgg, decoder=decoder, transformer=transformer, model=model)
    if not include_encoder:
        del params["encoder"]
    return save_model(params, dest, kind)


def random_params(kind: str, seed: int = 0) -> dict[str, Any]:
    """Synthetic params of `kind` with the real networks' shapes and compute, on the device.

    For tests and benchmarks: the images they make are not stylized in any meaningful way.
    The encoder's conv0 is the documented input map (`encoder.input_layer`), then He-normal
    kernels (std sqrt(2 / fan_in); conv1_1's divided by 128 for its 0-255 input), so features
    stay O(1); f and g kernels have std (4 / C^3)^(1/4), which makes the attention logits
    about N(0, 2^2); h, out_conv std 1/sqrt(C); merge_conv std 1/(2 sqrt(9 C)); biases
    N(0, 0.01^2); the decoder's last kernel is scaled down 20x and its bias raised by 0.5, so
    that images come out inside [0, 1] around grey rather than clipped.
    """
    rng = np.random.default_rng(seed)
    shapes = param_shapes(kind)
    channels = sanet_net.CHANNELS

    def layer(path: str, shape: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
        kh, kw, cin, cout = shape["kernel"]
        std = np.sqrt(2.0 / (kh * kw * cin))
        if path.endswith(("/f", "/g")):
            std = (4.0 / channels**3) ** 0.25
        elif path.endswith(("/h", "/out_conv")):
            std = channels**-0.5
        elif path.endswith("/merge_conv"):
            std = 0.5 / np.sqrt(kh * kw * cin)  # T(c, s) about as large as relu4_1
        elif path == "encoder/conv1_1":
            std /= 128.0
        elif path == "decoder/conv9":
            std /= 20.0
        bias = rng.normal(0, 0.01, shape["bias"])
        if path == "decoder/conv9":
            bias += 0.5
        return {"kernel": rng.normal(0, std, shape["kernel"]).astype(np.float32),
                "bias": bias.astype(np.float32)}

    flat = {path: layer(path, shape) for path, shape in flatten_layers(shapes).items()}
    kernel, bias = encoder_net.input_layer()
    flat["encoder/conv0"] = {"kernel": kernel, "bias": bias}
    return jax.device_put(unflatten(flat))


def _check_flat(flat: dict[str, Any], kind: str, what: str) -> None:
    """Check flat {"decoder/conv1/kernel": array} against `kind`: every key and shape, finite
    floats; the encoder part is optional but then complete. Casts to float32 in place."""
    has_encoder = any(key.startswith("encoder/") for key in flat)
    expected = flatten(param_shapes(kind, encoder=has_encoder))
    problems = array_problems(flat, expected)
    if problems:
        raise WeightsError(f"{what}: " + "; ".join(problems))
