"""The training losses of SANet and AdaIN (docs/arbitrary.md, "Training"), as pure functions.

    total, parts = sanet_loss(params, content, style)   # parts: content, style, identity1, 2
    total, parts = adain_loss(params, content, style)   # parts: content, style

content, style: (B, H, W, 3) RGB batches in [0, 1] of the same shape; params as
`load_sanet`/`load_adain` return them. phi_l is the encoder's relu{l}_1, D the decoder, T the
SANet Transform, and with every statistic per image and channel over positions:

    mse(a, b)  = mean over all elements of (a - b)^2          (batch, positions, channels)
    mean, std  = `ops.mean_std` (unbiased variance + 1e-5);   mvn(x) = (x - mean) / std
    style(x, y) = sum_l mse(mean(phi_l(x)), mean(phi_l(y))) + mse(std(phi_l(x)), std(phi_l(y)))

SANet, with Ics = D(T(c, s)), Icc = D(T(c, c)), Iss = D(T(s, s)), l = 1 .. 5:

    content   = mse(mvn(phi_4(Ics)), mvn(phi_4(c))) + mse(mvn(phi_5(Ics)), mvn(phi_5(c)))
    style     = style(Ics, s)
    identity1 = mse(Icc, c) + mse(Iss, s)
    identity2 = sum_l mse(phi_l(Icc), phi_l(c)) + mse(phi_l(Iss), phi_l(s))
    total     = 1 content + 3 style + 50 identity1 + 1 identity2

AdaIN, with t = adain(phi_4(c), phi_4(s)), g = D(t), l = 1 .. 4:

    content = mse(phi_4(g), t);  style = style(g, s);  total = content + 10 style

Optionally, MCCNet's illumination term (Deng et al., "Arbitrary Video Style Transfer via
Multi-Channel Correlation", AAAI 2021; code diyiiyiii/MCCNet), given the noise n (B, H, W, 3)
(`noise_sample`: Gaussian, sigma ~ U[0.01, 0.02] per batch) and its weight w:

    noise = mse(D(T(c + n, s)), D(T(c, s)))   (AdaIN: T(x, s) = adain(phi_4(x), phi_4(s)))
    total = ... + w noise                     (both decodes carry gradients, as in MCCNet)

The encoder is frozen: its params pass through `jax.lax.stop_gradient`, so the gradient of
either loss is zero for "encoder" and flows to "decoder" (and "transform") only; it still
flows through the encoder's activations to the decoded images, as in the reference code.
Sides must be multiples of 16 (SANet: the Transform needs relu4_1 sides even and identity1
compares D's 8 x relu4_1 output with the input) or 8 (AdaIN), at least 32 and 16.

compute_dtype: the dtype of the networks' arithmetic (params and images are cast to it),
e.g. bfloat16 on accelerators; every statistic and loss term is computed in float32 from the
features, and gradients come back in the params' own dtype (float32 master weights).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxstyle.arbitrary import sanet
from jaxstyle.arbitrary.decoder import decode
from jaxstyle.arbitrary.encoder import LAYERS, encode
from jaxstyle.arbitrary.models import MIN_TRAIN_SIDE, MULTIPLE
from jaxstyle.arbitrary.ops import adain, mean_std, mvn

SANET_WEIGHTS = {"content": 1.0, "style": 3.0, "identity1": 50.0, "identity2": 1.0}
ADAIN_WEIGHTS = {"content": 1.0, "style": 10.0}
_ADAIN_LAYERS = LAYERS[:4]


def mse(a: jax.Array, b: jax.Array) -> jax.Array:
    """mean((a - b)^2) over all elements, in at least float32: nn.MSELoss() of the
    reference code."""
    return jnp.mean(jnp.square(_wide(a) - _wide(b)))


def style_distance(out: dict[str, jax.Array], target: dict[str, jax.Array],
                   layers: tuple[str, ...]) -> jax.Array:
    """sum over `layers` of mse(mean(out_l), mean(target_l)) + mse(std(out_l), std(target_l)),
    mean and std per image and channel (`ops.mean_std`, float32); features (B, h, w, C)."""
    total = 0.0
    for name in layers:
        m_out, s_out = mean_std(out[name])  # in at least float32
        m_tgt, s_tgt = mean_std(target[name])
        total = total + mse(m_out, m_tgt) + mse(s_out, s_tgt)
    return total


def noise_sample(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """MCCNet's noise: sigma ~ U[0.01, 0.02] (one per batch), then N(0, sigma^2) per sample;
    float32 of `shape`."""
    k_sigma, k_noise = jax.random.split(key)
    sigma = jax.random.uniform(k_sigma, (), jnp.float32, 0.01, 0.02)
    return sigma * jax.random.normal(k_noise, shape, jnp.float32)


def sanet_loss(params: dict[str, Any], content: jax.Array, style: jax.Array, *,
               compute_dtype: Any = jnp.float32,
               max_attention_bytes: int = sanet.DEFAULT_ATTENTION_BYTES,
               noise: jax.Array | None = None, noise_weight: float = 0.0
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """SANet's training loss (module docstring) -> (total, {"content", "style",
    "identity1", "identity2"}), float32 scalars. params: {"encoder", "decoder", "transform"}.

    The three Transform calls T(c, s), T(c, c), T(s, s) run as one batch of 3B (contents
    [c, c, s] against styles [s, c, s]), and so do the decoder and the second encoding: the
    same values as separate calls, in larger products. With `noise` (module docstring), a
    fourth quarter T(c + n, s) and the part "noise", weighted by noise_weight in the total.
    """
    b = _check_batches(content, style, "sanet")
    enc, dec, tp = _cast(params, ("encoder", "decoder", "transform"), compute_dtype)
    images = [content, style] + ([] if noise is None else [content + noise])
    feats = encode(enc, jnp.concatenate(images).astype(compute_dtype), LAYERS)
    fc = {k: v[:b] for k, v in feats.items()}
    fs = {k: v[b:2 * b] for k, v in feats.items()}
    # contents [c, c, s (, c + n)] against styles [s, c, s (, s)]
    contents = {k: jnp.concatenate([v[:b], v]) for k, v in feats.items()}
    styles = {k: jnp.concatenate([v[b:2 * b], v[:2 * b]] + ([v[b:2 * b]] if noise is not None
                                                             else [])) for k, v in feats.items()}
    code = sanet.style_code(tp, styles["relu4_1"], styles["relu5_1"],
                            max_attention_bytes=max_attention_bytes)
    t = sanet.transform(tp, contents["relu4_1"], contents["relu5_1"], code,
                        max_attention_bytes=max_attention_bytes)
    out = decode(dec, t)  # [Ics, Icc, Iss (, Ics_noise)]
    noisy, out = out[3 * b:], out[:3 * b]
    g = encode(enc, out, LAYERS)
    g_cs = {k: v[:b] for k, v in g.items()}
    norm = lambda x: mvn(_wide(x))  # noqa: E731
    parts = {
        "content": sum(mse(norm(g_cs[k]), norm(fc[k])) for k in ("relu4_1", "relu5_1")),
        "style": style_distance(g_cs, fs, LAYERS),
        "identity1": mse(out[b:2 * b], content) + mse(out[2 * b:], style),
        "identity2": sum(mse(g[k][b:2 * b], fc[k]) + mse(g[k][2 * b:], fs[k])
                         for k in LAYERS),
    }
    return _with_noise(parts, SANET_WEIGHTS, noisy, out[:b], noise, noise_weight)


def adain_loss(params: dict[str, Any], content: jax.Array, style: jax.Array, *,
               compute_dtype: Any = jnp.float32, noise: jax.Array | None = None,
               noise_weight: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """AdaIN's training loss (module docstring) -> (total, {"content", "style"[, "noise"]}),
    float32 scalars. params: {"encoder", "decoder"}; the content and style encodings run as
    one batch of 2B (3B with `noise`: c + n too, decoded beside c)."""
    b = _check_batches(content, style, "adain")
    enc, dec = _cast(params, ("encoder", "decoder"), compute_dtype)
    images = [content, style] + ([] if noise is None else [content + noise])
    feats = encode(enc, jnp.concatenate(images).astype(compute_dtype), _ADAIN_LAYERS)
    fs = {k: v[b:2 * b] for k, v in feats.items()}
    # The target t: AdaIN's statistics in float32, then the decoder's input in compute_dtype.
    c4 = _wide(feats["relu4_1"][:b] if noise is None else
               jnp.concatenate([feats["relu4_1"][:b], feats["relu4_1"][2 * b:]]))
    t = adain(c4, jnp.concatenate([_wide(fs["relu4_1"])] * (1 if noise is None else 2)))
    decoded = decode(dec, t.astype(compute_dtype))
    g = encode(enc, decoded[:b], _ADAIN_LAYERS)
    parts = {"content": mse(g["relu4_1"], t[:b]),
             "style": style_distance(g, fs, _ADAIN_LAYERS)}
    return _with_noise(parts, ADAIN_WEIGHTS, decoded[b:], decoded[:b], noise, noise_weight)


LOSSES = {"sanet": sanet_loss, "adain": adain_loss}
WEIGHTS = {"sanet": SANET_WEIGHTS, "adain": ADAIN_WEIGHTS}


def _wide(x: jax.Array) -> jax.Array:
    """x in at least float32 (bfloat16 features' statistics and losses in float32)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _total(parts: dict[str, jax.Array], weights: dict[str, float]) -> jax.Array:
    return sum(weights[name] * value for name, value in parts.items())


def _with_noise(parts, weights, noisy, clean, noise, noise_weight):
    """(total, parts) with MCCNet's term when `noise` was given: parts["noise"] =
    mse(D(T(c + n, s)), D(T(c, s))), added to the total times noise_weight."""
    total = _total(parts, weights)
    if noise is None:
        return total, parts
    parts = {**parts, "noise": mse(noisy, clean)}
    return total + noise_weight * parts["noise"], parts


def _cast(params: dict[str, Any], parts: tuple[str, ...], dtype: Any) -> list[Any]:
    """The named parts of `params` in `dtype`; the frozen encoder behind stop_gradient."""
    missing = [p for p in parts if p not in params]
    if missing:
        raise ValueError(f"params lack {', '.join(missing)}: expected {', '.join(parts)} (as "
                         "load_sanet / load_adain return them)")
    out = []
    for name in parts:
        tree = jax.lax.stop_gradient(params[name]) if name == "encoder" else params[name]
        out.append(jax.tree.map(lambda a: a.astype(dtype), tree))
    return out


def _check_batches(content: jax.Array, style: jax.Array, kind: str) -> int:
    """B of two (B, H, W, 3) batches of one shape with sides fit for `kind`; else ValueError."""
    if content.shape != style.shape or content.ndim != 4 or content.shape[-1] != 3:
        raise ValueError(f"content and style must be (B, H, W, 3) batches of one shape, got "
                         f"{content.shape} and {style.shape}")
    m, low = MULTIPLE[kind], MIN_TRAIN_SIDE[kind]
    if any(s % m or s < low for s in content.shape[1:3]):
        raise ValueError(f"{kind} trains on sides that are multiples of {m}, at least {low}; "
                         f"got {content.shape[1]}x{content.shape[2]}")
    return content.shape[0]
