"""Arbitrary style in one forward pass: `stylize_sanet`, `stylize_adain`, `encode_styles`.

    params = load_sanet(...)
    out = stylize_sanet(params, content, style)                  # (H, W, 3) in [0, 1]
    out = stylize_sanet(params, contents, [s1, s2], style_blend_weights=[3, 1], alpha=[0.5, 1.0])
    codes = encode_styles(params, style)                         # once ...
    for batch in batches: stylize_sanet(params, batch, codes)    # ... for many contents

Images are float32 RGB in [0, 1]: a content (H, W, 3) or a batch (N, H, W, 3) of same-sized
contents; styles one (Hs, Ws, 3) image or a list, each of its own size, or `encode_styles`'
result. With c the content's features, s_i the styles', w_i the style weights normalised to
sum 1 and alpha in [0, 1]:

    SANet:  t = alpha * sum_i w_i T(c, s_i) + (1 - alpha) * T(c, c);   out = D(t)
    AdaIN:  t = alpha * sum_i w_i adain(c4, s4_i) + (1 - alpha) * c4;  out = D(t)

(T the SANet Transform on relu4_1/relu5_1, adain on relu4_1, D the decoder), clipped to
[0, 1]. T(c, c) is computed only when some alpha is below 1. A sequence of alphas runs as
one compiled program (the decoder vmapped over them) and adds a leading alpha axis.

Sizes: the Transform needs relu4_1 sides even, the decoder gives 8 x relu4_1's sides, so a
content is reflect-padded (evenly on both sides) to a multiple of 16 (SANet) or 8 (AdaIN),
and at least twice that, and the output cropped back to H x W: a 600 px photo comes back at
600 px, not resized. Styles are encoded at their own size, at least 17 px (SANet) or 9 px
(AdaIN) per side, so that every reflection-padded feature map has 2 rows and columns.

Params are jit arguments, never closed over; shapes, the model kind and whether T(c, c) is
needed are static, alphas and style weights traced: new values do not recompile.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import checks, memory
from jaxstyle.arbitrary import sanet
from jaxstyle.arbitrary.decoder import decode
from jaxstyle.arbitrary.encoder import encode
from jaxstyle.arbitrary.models import LEVELS, MIN_STYLE_SIDE, MULTIPLE, model_kind
from jaxstyle.arbitrary.ops import adain, mean_std
from jaxstyle.files import SettingError
from jaxstyle.image import scale_shape
from jaxstyle.pixels import as_rgb


@dataclasses.dataclass(frozen=True)
class EncodedStyles:
    """Styles encoded once for any number of contents (`encode_styles`).

    kind:  "sanet" or "adain", the params they were encoded with.
    codes: per style, SANet {"relu4_1": (key, value), "relu5_1": (key, value)}, each (M,
           Hs Ws, 512) (`sanet.Transform.style_code`); AdaIN (mean, std) of relu4_1, each
           (M, 1, 1, 512). Device arrays.
    sizes: per style, the image's (Hs, Ws).
    batch: M: 1 (shared by every content) or N (one per content, from preserve_colors).
    """

    kind: str
    codes: tuple[Any, ...]
    sizes: tuple[tuple[int, int], ...]
    batch: int = 1


def encode_styles(params: Any, styles: Any) -> EncodedStyles:
    """Encode one style image (Hs, Ws, 3) or a list of them (each its own size) for the
    model of `params` (SANet: the Transform's keys and values; AdaIN: relu4_1 mean, std)."""
    kind = model_kind(params)
    images = _style_images(styles, kind)
    return _encode(params, kind, [image[None] for image in images])


def stylize_sanet(params: Any, content: Any, styles: Any, *,
                  alpha: float | Sequence[float] = 1.0,
                  style_blend_weights: Sequence[float] | None = None,
                  preserve_colors: bool = False,
                  max_attention_bytes: int = sanet.DEFAULT_ATTENTION_BYTES,
                  memory_limit: float | None = None) -> np.ndarray:
    """SANet style transfer (module docstring): (H, W, 3) or (N, H, W, 3) content -> the same
    shape, with a leading alpha axis (A, ...) when `alpha` is a sequence; float32 in [0, 1].

    content: floats in [0, 1], or uint8 (divided by 255). styles: an image, a list of
    images, or `encode_styles(params, ...)`. style_blend_weights: one per style, >= 0
    (normalised to sum 1; default equal). preserve_colors: each style is first
    recoloured to the content's colour statistics (`jaxstyle.color.match_color_histogram`;
    per content in a batch; needs style images, not codes). max_attention_bytes: the
    attention's largest logits block (`sanet.attention`); smaller runs in more chunks.
    memory_limit: GiB the call may use (default: the available memory less a margin); a
    call estimated above it is refused before any work (`check_memory`).
    """
    if model_kind(params) != "sanet":
        raise SettingError("stylize_sanet needs SANet params (with a 'transform'): load_sanet",
                           "params")
    checks.integer("max_attention_bytes", max_attention_bytes, 1)
    return _stylize(params, "sanet", content, styles, alpha, style_blend_weights,
                    preserve_colors, max_attention_bytes, memory_limit)


def stylize_adain(params: Any, content: Any, styles: Any, *,
                  alpha: float | Sequence[float] = 1.0,
                  style_blend_weights: Sequence[float] | None = None,
                  preserve_colors: bool = False,
                  memory_limit: float | None = None) -> np.ndarray:
    """AdaIN style transfer (module docstring); arguments and result as `stylize_sanet`."""
    if model_kind(params) != "adain":
        raise SettingError("stylize_adain needs AdaIN params (no 'transform'); these are "
                           "SANet's (a SANet decoder is not an AdaIN decoder): load_adain",
                           "params")
    return _stylize(params, "adain", content, styles, alpha, style_blend_weights,
                    preserve_colors, sanet.DEFAULT_ATTENTION_BYTES, memory_limit)


# The memory model of one forward pass (`plan_memory`), fitted to the peak resident memory of
# runs on the CPU at 256-1024 px (benchmarks/memory.py; docs/benchmarks.md): bytes per pixel
# through the encoder (each padded content and each style) and per content pixel and alpha
# through the decoder (about one float32 map of the first block's 64 channels alive at once);
# the share of SANet's largest attention block that is alive at once; and what the process
# adds besides the params (the XLA runtime, compiling).
ENCODER_BYTES_PER_PIXEL = 260
DECODER_BYTES_PER_PIXEL = 260
ATTENTION_SHARE = 0.2
FIXED_BYTES = 160 * 2**20


def plan_memory(kind: str, content_hw: Sequence[int], style_hws: Sequence[Sequence[int]], *,
                batch: int = 1, alphas: int = 1, device: jax.Device | None = None,
                memory_limit: float | None = None,
                max_attention_bytes: int = sanet.DEFAULT_ATTENTION_BYTES) -> memory.MemoryPlan:
    """What one call of `stylize_<kind>` on `batch` contents of (h, w), `alphas` alphas and
    styles of the given sizes adds to the process at its peak (the params, FIXED_BYTES, the
    per-pixel model above, SANet's attention block and keys), and what it may use on
    `device` (`memory_limit` GiB, else the available memory less a margin)."""
    return memory.plan(_run_bytes(kind, content_hw, style_hws, batch, alphas,
                                  max_attention_bytes),
                       device or jax.devices()[0], memory_limit)


def _run_bytes(kind, content_hw, style_hws, batch, alphas, max_attention_bytes) -> int:
    from jaxstyle.arbitrary.weights import param_shapes

    params = 4 * sum(int(np.prod(s)) for s in jax.tree.leaves(
        param_shapes(kind), is_leaf=lambda x: isinstance(x, tuple)))
    h, w = (sum(padding(int(side), kind)) + int(side) for side in content_hw)
    style_pixels = sum(int(a) * int(b) for a, b in style_hws)
    total = (params + FIXED_BYTES + style_pixels * ENCODER_BYTES_PER_PIXEL
             + batch * h * w * (ENCODER_BYTES_PER_PIXEL + alphas * DECODER_BYTES_PER_PIXEL))
    if kind == "sanet":  # keys and values of both levels; the logits, in chunks
        s4 = [-(-int(a) // 8) * -(-int(b) // 8) for a, b in style_hws]
        total += sum(s + -(-s // 4) for s in s4) * sanet.CHANNELS * 4 * 2
        total += ATTENTION_SHARE * min(max_attention_bytes,
                                       batch * (h * w // 64) * max(s4, default=0) * 4)
    return int(total)


def check_memory(kind: str, content_hw: Sequence[int], style_hws: Sequence[Sequence[int]],
                 *, batch: int = 1, alphas: int = 1, memory_limit: float | None = None,
                 max_attention_bytes: int = sanet.DEFAULT_ATTENTION_BYTES,
                 styles_follow: bool = False) -> None:
    """SettingError before any work when a call of `stylize_<kind>` on `batch` contents of
    `content_hw` cannot fit (`plan_memory`): naming "image_size" with the largest content side
    that fits, or "style_size" when the style images alone do not fit. styles_follow: the
    styles' sizes grow with the content's (a command line's default style size), so the
    largest size that fits scales both."""
    device = jax.devices()[0]
    h, w = (int(x) for x in content_hw)

    def bytes_at(side: int, hw=(h, w)) -> int:
        scale = side / max(hw) if max(hw) else 0.0
        contents = scale_shape(hw, side) if side else (0, 0)
        styles = ([scale_shape(s, max(1, round(max(s) * scale))) for s in style_hws]
                  if styles_follow else style_hws)
        return _run_bytes(kind, contents, styles, batch, alphas, max_attention_bytes)

    plan = memory.plan(bytes_at(max(h, w)), device, memory_limit)
    if not styles_follow and plan.fits is False and plan.limit_bytes is not None and \
            _run_bytes(kind, (0, 0), style_hws, batch, alphas, max_attention_bytes) > \
            plan.limit_bytes:
        sizes = ", ".join(f"{a}x{b}" for a, b in style_hws)
        raise SettingError(
            f"style_size: the style images ({sizes}) alone need more than the "
            f"{plan.limit_bytes / memory.GIB:.3g} GiB a run may use on {device.platform}: use "
            "smaller style images", "style_size")
    memory.check(plan, f"{batch} content image(s) of {h}x{w}", bytes_at, max(h, w), device)


def padding(size: int, kind: str) -> tuple[int, int]:
    """(before, after) reflection padding of a content side for `kind`: up to a multiple of
    MULTIPLE[kind], at least 2 x MULTIPLE[kind], split evenly (the extra pixel after)."""
    m = MULTIPLE[kind]
    total = max(-(-size // m) * m, 2 * m) - size
    return total // 2, total - total // 2


def _stylize(params, kind, content, styles, alpha, style_blend_weights, preserve_colors,
             max_attention_bytes, memory_limit) -> np.ndarray:
    batch, single = _content_batch(content)
    alphas, scalar_alpha = _alphas(alpha)
    style_hws = (styles.sizes if isinstance(styles, EncodedStyles) else
                 [s.shape[:2] for s in _style_images(styles, kind)])
    check_memory(kind, batch.shape[1:3], style_hws, batch=len(batch), alphas=len(alphas),
                 memory_limit=memory_limit, max_attention_bytes=max_attention_bytes)
    if isinstance(styles, EncodedStyles):
        if preserve_colors:
            raise SettingError("preserve_colors recolours the style images: pass images, not "
                             "EncodedStyles")
        if styles.kind != kind:
            raise SettingError(f"these styles were encoded for {styles.kind}, not {kind}")
        if styles.batch not in (1, len(batch)):
            raise SettingError(f"styles encoded for {styles.batch} contents, got {len(batch)}")
        encoded = styles
    else:
        images = _style_images(styles, kind)
        if preserve_colors:
            from jaxstyle.color import match_color_histogram

            stacks = [np.stack([match_color_histogram(s, c) for c in batch]) for s in images]
        else:
            stacks = [s[None] for s in images]
        encoded = _encode(params, kind, stacks)
    weights = _blend_weights(style_blend_weights, len(encoded.codes))
    (n, h, w, _) = batch.shape
    out = _program(params, batch, encoded.codes, weights, alphas, kind=kind,
                   pads=(padding(h, kind), padding(w, kind)), mix=bool(np.any(alphas != 1)),
                   max_attention_bytes=int(max_attention_bytes))
    out = np.asarray(out)
    if single:
        out = out[:, 0]
    return out[0] if scalar_alpha else out


def _encode(params, kind, stacks: list[np.ndarray]) -> EncodedStyles:
    codes = tuple(_style_code(params, jax.device_put(s), kind=kind) for s in stacks)
    return EncodedStyles(kind, codes, tuple(s.shape[1:3] for s in stacks), stacks[0].shape[0])


@functools.partial(jax.jit, static_argnames="kind")
def _style_code(params, style, *, kind):
    """(M, Hs, Ws, 3) style images -> their code (EncodedStyles.codes' entry)."""
    feats = encode(params["encoder"], style, LEVELS[kind])
    if kind == "sanet":
        return sanet.style_code(params["transform"], feats["relu4_1"], feats["relu5_1"])
    return mean_std(feats["relu4_1"])


@functools.partial(jax.jit, static_argnames=("kind", "pads", "mix", "max_attention_bytes"))
def _program(params, content, codes, weights, alphas, *, kind, pads, mix,
             max_attention_bytes):
    """(N, H, W, 3) contents -> (A, N, H, W, 3) stylized images, one per alpha.

    pads: ((top, bottom), (left, right)) reflection padding; mix: whether any alpha < 1
    (then the content's own transform is computed).
    """
    (top, bottom), (left, right) = pads
    _, h, w, _ = content.shape
    x = jnp.pad(content, ((0, 0), (top, bottom), (left, right), (0, 0)), mode="reflect")
    feats = encode(params["encoder"], x, LEVELS[kind])
    if kind == "sanet":
        c41, c51 = feats["relu4_1"], feats["relu5_1"]

        def t(code):
            return sanet.transform(params["transform"], c41, c51, code,
                                   max_attention_bytes=max_attention_bytes)

        styled = sum(weights[i] * t(code) for i, code in enumerate(codes))
        base = t(sanet.style_code(params["transform"], c41, c51)) if mix else None
    else:
        c41 = feats["relu4_1"]
        styled = sum(weights[i] * adain(c41, code) for i, code in enumerate(codes))
        base = c41 if mix else None

    def one(alpha):
        t = styled if base is None else alpha * styled + (1 - alpha) * base
        image = decode(params["decoder"], t)[:, top:top + h, left:left + w]
        return jnp.clip(image, 0.0, 1.0)

    return jax.vmap(one)(alphas)


def _content_batch(content: Any) -> tuple[np.ndarray, bool]:
    """(N, H, W, 3) float32 of a content image or batch (`image.as_rgb`), and whether it was
    one image."""
    batch = as_rgb(content, "content", batch=True)
    return batch, not isinstance(content, (list, tuple)) and np.asarray(content).ndim == 3


def _style_images(styles: Any, kind: str) -> list[np.ndarray]:
    items = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    if not items:
        raise SettingError("no style image given", "styles")
    images = []
    for k, style in enumerate(items):
        what = "style image" if len(items) == 1 else f"style image {k}"
        arr = as_rgb(style, what)
        if min(arr.shape[:2]) < MIN_STYLE_SIDE[kind]:
            raise SettingError(f"{what} is {arr.shape[0]}x{arr.shape[1]}: {kind} needs style "
                               f"sides of at least {MIN_STYLE_SIDE[kind]} px", "styles")
        images.append(arr)
    return images


def _alphas(alpha: Any) -> tuple[np.ndarray, bool]:
    """(A,) float32 alphas and whether one scalar was given; each finite, in [0, 1]."""
    scalar = np.ndim(alpha) == 0
    arr = np.atleast_1d(np.asarray(alpha, np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise SettingError(f"alpha must be a number or a non-empty sequence, got {alpha!r}",
                           "alpha")
    if not (np.isfinite(arr).all() and (arr >= 0).all() and (arr <= 1).all()):
        raise SettingError(f"alpha must be in [0, 1], got {alpha!r}", "alpha")
    return arr.astype(np.float32), scalar


def _blend_weights(weights: Any, count: int) -> np.ndarray:
    """(count,) float32 weights normalised to sum 1 (None: equal)."""
    if weights is None:
        return np.full(count, 1.0 / count, np.float32)
    if np.shape(weights) != (count,):
        raise SettingError(f"style_blend_weights needs one weight per style ({count}), got "
                           f"{weights!r}", "style_blend_weights")
    arr = checks.weights("style_blend_weights", list(weights), positive_sum=True)
    return (arr / arr.sum()).astype(np.float32)
