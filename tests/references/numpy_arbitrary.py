"""Independent references for jaxstyle.arbitrary's tests.

- Synthetic weights in the released files' key layouts ({key: OIHW float32 array}), written
  out here from docs/arbitrary.md's tables (not from jaxstyle's), and the files themselves in
  PyTorch's legacy format (tests/weight_files.py's writer, independent of jaxstyle's reader).
- The networks in float64 NumPy, NCHW, module by module in the reference code's
  nn.Sequential order: ReflectionPad2d as np.pad(mode="reflect"), convolutions as matrix
  products over stacked shifted copies (im2col), ceil-mode max pooling, nearest upsampling,
  softmax attention.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from references import weight_files as wf

# The reference nn.Sequentials, one token per module: C<i> a convolution stored under key i
# (its position), P ReflectionPad2d(1), R ReLU, M MaxPool2d(2, 2, ceil_mode=True), U
# Upsample(2, nearest).
VGG_MODULES = ("C0 P C2 R P C5 R M P C9 R P C12 R M P C16 R P C19 R P C22 R P C25 R M "
               "P C29 R P C32 R P C35 R P C38 R M P C42 R P C45 R P C48 R P C51 R").split()
DECODER_MODULES = ("P C1 R U P C5 R P C8 R P C11 R P C14 R U P C18 R P C21 R U "
                   "P C25 R P C28").split()
# (start, stop) module slices of relu1_1 ... relu5_1, as the reference code cuts the encoder.
VGG_SLICES = {"relu1_1": (0, 4), "relu2_1": (4, 11), "relu3_1": (11, 18), "relu4_1": (18, 31),
              "relu5_1": (31, 44)}
# OIHW weight shapes by key index.
VGG_SHAPES = {0: (3, 3, 1, 1), 2: (64, 3, 3, 3), 5: (64, 64, 3, 3), 9: (128, 64, 3, 3),
              12: (128, 128, 3, 3), 16: (256, 128, 3, 3), 19: (256, 256, 3, 3),
              22: (256, 256, 3, 3), 25: (256, 256, 3, 3), 29: (512, 256, 3, 3),
              32: (512, 512, 3, 3), 35: (512, 512, 3, 3), 38: (512, 512, 3, 3),
              42: (512, 512, 3, 3), 45: (512, 512, 3, 3), 48: (512, 512, 3, 3),
              51: (512, 512, 3, 3)}
DECODER_SHAPES = {1: (256, 512, 3, 3), 5: (256, 256, 3, 3), 8: (256, 256, 3, 3),
                  11: (256, 256, 3, 3), 14: (128, 256, 3, 3), 18: (128, 128, 3, 3),
                  21: (64, 128, 3, 3), 25: (64, 64, 3, 3), 28: (3, 64, 3, 3)}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

for _modules, _shapes in ((VGG_MODULES, VGG_SHAPES), (DECODER_MODULES, DECODER_SHAPES)):
    # Each convolution's key is its position in the Sequential.
    assert {int(t[1:]) for t in _modules if t[0] == "C"} == set(_shapes)
    assert all(_modules[int(t[1:])] == t for t in _modules if t[0] == "C")


def _layer(rng, shape, std):
    return {"weight": rng.normal(0, std, shape), "bias": rng.normal(0, 0.01, shape[0])}


@functools.cache
def vgg_state(seed: int = 0) -> dict[str, np.ndarray]:
    """vgg_normalised.pth's keys: layer 0 the RGB -> BGR * 255 - mean map, then He-normal
    kernels (conv at 2 scaled for its 0-255 input), so that features stay O(1)."""
    rng = np.random.default_rng(seed)
    state = {}
    for i, shape in VGG_SHAPES.items():
        std = np.sqrt(2.0 / np.prod(shape[1:])) / (128.0 if i == 2 else 1.0)
        layer = _layer(rng, shape, std)
        state[f"{i}.weight"], state[f"{i}.bias"] = layer["weight"], layer["bias"]
    w0 = np.zeros((3, 3, 1, 1))
    for o, i in ((0, 2), (1, 1), (2, 0)):
        w0[o, i, 0, 0] = 255.0
    state["0.weight"], state["0.bias"] = w0, -np.array(CAFFE_MEAN_BGR)
    return {k: v.astype(np.float32) for k, v in state.items()}


@functools.cache
def decoder_state(seed: int = 1) -> dict[str, np.ndarray]:
    """A decoder's keys (decoder.pth and decoder_iter_500000.pth), He-normal, the last layer
    scaled down and offset so that outputs stay mostly inside [0, 1]."""
    rng = np.random.default_rng(seed)
    state = {}
    for i, shape in DECODER_SHAPES.items():
        std = np.sqrt(2.0 / np.prod(shape[1:])) / (20.0 if i == 28 else 1.0)
        layer = _layer(rng, shape, std)
        state[f"{i}.weight"], state[f"{i}.bias"] = layer["weight"], layer["bias"]
    state["28.bias"] = state["28.bias"] + 0.5
    return {k: v.astype(np.float32) for k, v in state.items()}


@functools.cache
def transformer_state(seed: int = 2) -> dict[str, np.ndarray]:
    """transformer_iter_500000.pth's keys: f, g with std (4 / C^3)^(1/4) so the attention
    logits are about N(0, 2^2) (a softmax neither flat nor one-hot), h and out_conv
    1/sqrt(C), merge_conv 1/(2 sqrt(9 C))."""
    rng = np.random.default_rng(seed)
    c = 512
    state = {}
    for level in ("sanet4_1", "sanet5_1"):
        for name, std in (("f", (4 / c**3) ** 0.25), ("g", (4 / c**3) ** 0.25),
                          ("h", c**-0.5), ("out_conv", c**-0.5)):
            layer = _layer(rng, (c, c, 1, 1), std)
            state[f"{level}.{name}.weight"] = layer["weight"]
            state[f"{level}.{name}.bias"] = layer["bias"]
    layer = _layer(rng, (c, c, 3, 3), 0.5 / np.sqrt(9 * c))
    state["merge_conv.weight"], state["merge_conv.bias"] = layer["weight"], layer["bias"]
    return {k: v.astype(np.float32) for k, v in state.items()}


def write_released(directory: Path) -> dict[str, Path]:
    """The five released file names, written in the legacy torch.save format (the AdaIN
    decoders with another seed than SANet's)."""
    directory = Path(directory)
    files = {
        "vgg_normalised.pth": vgg_state(),
        "decoder.pth": decoder_state(3),
        "iter_1000000.pth": decoder_state(4),
        "decoder_iter_500000.pth": decoder_state(1),
        "transformer_iter_500000.pth": transformer_state(),
    }
    return {name: wf.write_legacy_state_dict(directory / name, state)
            for name, state in files.items()}


# ------------------------------------------------------------------ float64 NumPy networks


def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """VALID cross-correlation, stride 1: (N, C, H, W) x (O, C, kh, kw) -> (N, O, H-kh+1,
    W-kw+1): out[n, o, i, j] = sum_{c, a, d} w[o, c, a, d] x[n, c, i + a, j + d] + b[o],
    as one (O, C kh kw) x (C kh kw, positions) product over the stacked shifted copies."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, c, _, _ = x.shape
    o, _, kh, kw = w.shape
    h, wd = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    taps = np.stack([x[:, :, a:a + h, d:d + wd] for a in range(kh) for d in range(kw)], axis=2)
    out = w.reshape(o, c * kh * kw) @ taps.reshape(n, c * kh * kw, h * wd)
    return out.reshape(n, o, h, wd) + np.asarray(b, np.float64)[None, :, None, None]


def reflect_pad(x: np.ndarray, p: int = 1) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")


def max_pool_ceil(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    x = np.pad(x, ((0, 0), (0, 0), (0, h % 2), (0, w % 2)), constant_values=-np.inf)
    return x.reshape(n, c, (h + 1) // 2, 2, (w + 1) // 2, 2).max(axis=(3, 5))


def upsample(x: np.ndarray) -> np.ndarray:
    return x.repeat(2, axis=2).repeat(2, axis=3)


def run(modules, state, x: np.ndarray) -> np.ndarray:
    """Apply a token list (VGG_MODULES[a:b], DECODER_MODULES) to NCHW x."""
    for token in modules:
        if token[0] == "C":
            x = conv(x, state[f"{token[1:]}.weight"], state[f"{token[1:]}.bias"])
        elif token == "P":
            x = reflect_pad(x)
        elif token == "R":
            x = np.maximum(x, 0.0)
        elif token == "M":
            x = max_pool_ceil(x)
        else:
            x = upsample(x)
    return x


def encoder(x_nchw: np.ndarray, deepest: str = "relu5_1", state=None) -> dict[str, np.ndarray]:
    """{relu1_1: ..., up to deepest} of NCHW RGB images, through the reference slices."""
    state = vgg_state() if state is None else state
    out, x = {}, np.asarray(x_nchw, np.float64)
    for name, (a, b) in VGG_SLICES.items():
        x = out[name] = run(VGG_MODULES[a:b], state, x)
        if name == deepest:
            break
    return out


def decoder(t: np.ndarray, state=None) -> np.ndarray:
    return run(DECODER_MODULES, decoder_state() if state is None else state, t)


def mean_std(x: np.ndarray, eps: float = 1e-5):
    """Per (image, channel) over positions: mean and sqrt(unbiased var + eps), (N, C, 1, 1)."""
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1)
    return (flat.mean(axis=2)[:, :, None, None],
            np.sqrt(flat.var(axis=2, ddof=1) + eps)[:, :, None, None])


def mvn(x: np.ndarray) -> np.ndarray:
    mean, std = mean_std(x)
    return (x - mean) / std


def adain(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    s_mean, s_std = mean_std(s)
    return mvn(c) * s_std + s_mean


def sanet(state, level: str, content: np.ndarray, style: np.ndarray) -> np.ndarray:
    """One SANet block on NCHW features: out_conv(softmax_s(F^T G) applied to H) + content."""
    def c1(name, x):
        return conv(x, state[f"{level}.{name}.weight"], state[f"{level}.{name}.bias"])

    n, c, h, w = content.shape
    f = c1("f", mvn(content)).reshape(n, c, -1)
    g = c1("g", mvn(style)).reshape(n, c, -1)
    hv = c1("h", style).reshape(n, c, -1)
    logits = np.einsum("nct,ncs->nts", f, g)
    weights = np.exp(logits - logits.max(axis=2, keepdims=True))
    weights /= weights.sum(axis=2, keepdims=True)
    o = np.einsum("nts,ncs->nct", weights, hv).reshape(n, c, h, w)
    return c1("out_conv", o) + content


def transform(c41, s41, c51, s51, state=None) -> np.ndarray:
    state = transformer_state() if state is None else state
    x = sanet(state, "sanet4_1", c41, s41) + upsample(sanet(state, "sanet5_1", c51, s51))
    return conv(reflect_pad(x), state["merge_conv.weight"], state["merge_conv.bias"])


def padding(size: int, multiple: int) -> tuple[int, int]:
    """Reflection padding of a content side (what jaxstyle documents): to a multiple, at
    least two multiples, split evenly with the odd pixel after."""
    total = max(-(-size // multiple) * multiple, 2 * multiple) - size
    return total // 2, total - total // 2


def stylize(kind: str, content_hwc, styles_hwc, *, alpha=1.0, weights=None, dec_state=None):
    """docs/arbitrary.md's one-pass transfer in NumPy, with jaxstyle's padding and crop:
    (H, W, 3) content, list of (Hs, Ws, 3) styles -> (H, W, 3) in [0, 1]."""
    weights = np.full(len(styles_hwc), 1 / len(styles_hwc)) if weights is None else (
        np.asarray(weights, np.float64) / np.sum(weights))
    h, w, _ = content_hwc.shape
    (top, bottom), (left, right) = padding(h, 16 if kind == "sanet" else 8), padding(
        w, 16 if kind == "sanet" else 8)
    x = np.asarray(content_hwc, np.float64).transpose(2, 0, 1)[None]
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode="reflect")
    deepest = "relu5_1" if kind == "sanet" else "relu4_1"
    fc = encoder(x, deepest)
    fs = [encoder(np.asarray(s, np.float64).transpose(2, 0, 1)[None], deepest)
          for s in styles_hwc]
    if kind == "sanet":
        def t(s):
            return transform(fc["relu4_1"], s["relu4_1"], fc["relu5_1"], s["relu5_1"])

        styled = sum(wi * t(s) for wi, s in zip(weights, fs, strict=True))
        mixed = alpha * styled + (1 - alpha) * t(fc) if alpha != 1 else styled
    else:
        styled = sum(wi * adain(fc["relu4_1"], s["relu4_1"])
                     for wi, s in zip(weights, fs, strict=True))
        mixed = alpha * styled + (1 - alpha) * fc["relu4_1"]
    out = decoder(mixed, dec_state)[0, :, top:top + h, left:left + w]
    return np.clip(out.transpose(1, 2, 0), 0.0, 1.0)


def rel_err(actual, expected) -> float:
    """max |actual - expected| / max |expected|."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).transpose(0, 2, 3, 1)


def nchw(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).transpose(0, 3, 1, 2)


def torch_reference():
    """(torch, references.torch_arbitrary), or (None, None) without torch."""
    try:
        import torch
    except ImportError:
        return None, None
    from references import torch_arbitrary

    return torch, torch_arbitrary


# --------------------------------------------------------------------------- training losses


def mse(a, b):
    """mean((a - b)^2), float64."""
    return float(np.mean(np.square(a - b)))


def style_distance(g, fs, layers):
    """The training losses' style term: mean and std distances summed over `layers`."""
    total = 0.0
    for k in layers:
        (ma, sa), (mb, sb) = mean_std(g[k]), mean_std(fs[k])
        total += mse(ma, mb) + mse(sa, sb)
    return total


LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def numpy_sanet_loss(vgg, dec, tr, c_nhwc, s_nhwc):
    """The SANet training loss's terms in float64 NumPy, each network call separately."""
    c, s = nchw(c_nhwc).astype(np.float64), nchw(s_nhwc).astype(np.float64)
    fc, fs = encoder(c, state=vgg), encoder(s, state=vgg)

    def t(a, b):
        return decoder(transform(a["relu4_1"], b["relu4_1"], a["relu5_1"],
                                         b["relu5_1"], state=tr), dec)

    ics, icc, iss = t(fc, fs), t(fc, fc), t(fs, fs)
    g, gcc, gss = (encoder(x, state=vgg) for x in (ics, icc, iss))
    return {
        "content": sum(mse(mvn(g[k]), mvn(fc[k])) for k in ("relu4_1", "relu5_1")),
        "style": style_distance(g, fs, LAYERS),
        "identity1": mse(icc, c) + mse(iss, s),
        "identity2": sum(mse(gcc[k], fc[k]) + mse(gss[k], fs[k]) for k in LAYERS),
    }


def numpy_adain_loss(vgg, dec, c_nhwc, s_nhwc):
    """The AdaIN training loss's terms in float64 NumPy."""
    c, s = nchw(c_nhwc).astype(np.float64), nchw(s_nhwc).astype(np.float64)
    fc, fs = (encoder(x, "relu4_1", state=vgg) for x in (c, s))
    t = adain(fc["relu4_1"], fs["relu4_1"])
    g = encoder(decoder(t, dec), "relu4_1", state=vgg)
    return {"content": mse(g["relu4_1"], t), "style": style_distance(g, fs, LAYERS[:4])}
