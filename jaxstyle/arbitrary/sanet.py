"""SANet's style-attentional Transform (Park and Lee, CVPR 2019), as Flax modules.

One SANet block per level (relu4_1 and relu5_1, C = 512 channels), on content features Fc
(N, H, W, C) and style features Fs (M, Hs, Ws, C), M = 1 or N:

    F = f(mvn(Fc)),  G = g(mvn(Fs)),  H = h(Fs)          f, g, h: 1x1 convolutions C -> C
    S[n, t, s] = softmax over style positions s of sum_c F[n, t, c] G[n, s, c]   (no 1/sqrt(C))
    O[n, t] = sum_s S[n, t, s] H[n, s]
    out = out_conv(O) + Fc                                out_conv: 1x1, C -> C

with mvn the per-image, per-channel normalisation of `ops.mvn` (unbiased variance + 1e-5).
The Transform merges both levels:

    T(c, s) = merge_conv(reflect_pad(sanet4_1(c41, s41) + up2(sanet5_1(c51, s51))))

up2 the nearest x2 upsampling, merge_conv a 3x3 convolution C -> C, no ReLU. up2 of relu5_1
(ceil(h4 / 2) rows) has relu4_1's h4 rows only when h4 is even, so relu4_1's sides must be
even (image sides a multiple of 16; `jaxstyle.arbitrary.stylize` pads to that).

The style side (G, H) does not depend on the content: `style_code` computes it once per
style image and `with_code` applies it to any number of contents.

Params (HWIO): {"sanet4_1": {"f": {"kernel": (1, 1, C, C), "bias": (C,)}, "g", "h",
"out_conv"}, "sanet5_1": {...}, "merge_conv": {"kernel": (3, 3, C, C), "bias": (C,)}}.

Attention memory: S holds (H W) x (Hs Ws) floats per image at relu4_1, (512 / 8)^4 * 4
bytes = 64 MiB for a 512 px content and style, 16 GiB at 2048 px. The softmax runs over style
positions only, so `attention` splits the content positions into chunks (the same result,
up to the float rounding of differently blocked products) to keep the block of logits
under `max_attention_bytes`.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxstyle.arbitrary.ops import Conv1x1, mvn, reflect_pad, upsample_nearest2
from jaxstyle.kernels import Conv

CHANNELS = 512
# Largest float32 logits block (N x content positions x style positions) one attention step
# holds; more content positions are processed in chunks. The softmax keeps about two such
# blocks alive (logits and probabilities).
DEFAULT_ATTENTION_BYTES = 256 * 2**20


def attention(query: jax.Array, key: jax.Array, value: jax.Array, *,
              max_bytes: int = DEFAULT_ATTENTION_BYTES) -> jax.Array:
    """out[n, t] = sum_s softmax_s(sum_c q[n, t, c] k[n, s, c]) v[n, s]: unscaled attention.

    query: (N, T, C) content positions; key, value: (N or 1, S, C) style positions (a batch
    of 1 serves every content). Returns (N, T, C) in query's dtype. Content positions go in
    chunks of `attention_chunk(N, T, S, max_bytes)` rows (padded to a whole number of chunks,
    then cropped), one chunk at a time.

    Written as two einsums around `jax.nn.softmax` rather than `jax.nn.dot_product_attention`
    (scale=1), whose XLA path gives bit-identical results here but made the Transform slower
    on XLA CPU (its heads axis turns the products into batched ones); cuDNN's fused kernel,
    the other implementation, needs float16/bfloat16 and a head dimension of at most 256
    (128 before Hopper), and SANet's is C = 512.
    """
    n, t, c = query.shape
    s = key.shape[1]
    if key.shape[0] != n:
        key = jnp.broadcast_to(key, (n, s, c))
        value = jnp.broadcast_to(value, (n, s, c))

    def attend(q):  # (N, rows, C) -> (N, rows, C)
        logits = jnp.einsum("ntc,nsc->nts", q, key, preferred_element_type=jnp.float32)
        weights = jax.nn.softmax(logits, axis=-1).astype(value.dtype)
        return jnp.einsum("nts,nsc->ntc", weights, value)

    chunk = attention_chunk(n, t, s, max_bytes)
    if chunk >= t:
        return attend(query)
    chunks = -(-t // chunk)
    q = jnp.pad(query, ((0, 0), (0, chunks * chunk - t), (0, 0)))
    q = q.reshape(n, chunks, chunk, c).transpose(1, 0, 2, 3)
    out = jax.lax.map(attend, q)  # (chunks, N, chunk, C), one chunk at a time
    return out.transpose(1, 0, 2, 3).reshape(n, chunks * chunk, c)[:, :t]


def attention_chunk(n: int, t: int, s: int, max_bytes: int = DEFAULT_ATTENTION_BYTES) -> int:
    """Content positions per attention step: all T when N T S float32 logits fit in
    max_bytes, else T split evenly into the fewest chunks that fit (at least one row)."""
    chunks = max(1, math.ceil(n * t * s * 4 / max_bytes))
    return max(1, math.ceil(t / chunks))


class SANet(nn.Module):
    """One style-attention block (module docstring). `__call__(content, style)` is the
    reference block; `style_code` + `with_code` split it at the style side."""

    channels: int = CHANNELS
    max_attention_bytes: int = DEFAULT_ATTENTION_BYTES

    def setup(self):
        conv = lambda name: Conv1x1(self.channels, name=name)  # noqa: E731
        self.f, self.g, self.h, self.out_conv = (conv(n) for n in ("f", "g", "h", "out_conv"))

    def style_code(self, style: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(M, Hs, Ws, C) style features -> (key G, value H), each (M, Hs Ws, C)."""
        m, hs, ws, c = style.shape
        return (self.g(mvn(style)).reshape(m, hs * ws, c),
                self.h(style).reshape(m, hs * ws, c))

    def with_code(self, content: jax.Array, key: jax.Array, value: jax.Array) -> jax.Array:
        """(N, H, W, C) content features and a style code -> (N, H, W, C)."""
        n, h, w, c = content.shape
        query = self.f(mvn(content)).reshape(n, h * w, c)
        out = attention(query, key, value, max_bytes=self.max_attention_bytes)
        return self.out_conv(out.reshape(n, h, w, c)) + content

    def __call__(self, content: jax.Array, style: jax.Array) -> jax.Array:
        return self.with_code(content, *self.style_code(style))


class Transform(nn.Module):
    """SANet's Transform: two SANet blocks and the merge convolution (module docstring).

    `__call__(c41, c51, s41, s51)` is the reference Transform; `style_code(s41, s51)` +
    `with_code(c41, c51, code)` split it at the style side, code = {"relu4_1": (key, value),
    "relu5_1": (key, value)} (`SANet.style_code` of each level).
    """

    channels: int = CHANNELS
    max_attention_bytes: int = DEFAULT_ATTENTION_BYTES

    def setup(self):
        self.sanet4_1 = SANet(self.channels, self.max_attention_bytes)
        self.sanet5_1 = SANet(self.channels, self.max_attention_bytes)
        # 'SAME' on the reflection-padded input, then cropped: see `ops.reflect_conv`.
        self.merge_conv = Conv(self.channels)

    def style_code(self, s41: jax.Array, s51: jax.Array) -> dict[str, tuple[jax.Array, ...]]:
        return {"relu4_1": self.sanet4_1.style_code(s41),
                "relu5_1": self.sanet5_1.style_code(s51)}

    def with_code(self, c41: jax.Array, c51: jax.Array, code: dict[str, Any]) -> jax.Array:
        """relu4_1 (N, h, w, C) and relu5_1 (N, h/2, w/2, C) content features -> (N, h, w, C)."""
        if c41.shape[1:3] != (2 * c51.shape[1], 2 * c51.shape[2]):
            raise ValueError(
                f"the Transform needs relu4_1 sides twice relu5_1's (relu4_1 sides even, image "
                f"sides a multiple of 16); got relu4_1 {c41.shape[1:3]}, relu5_1 "
                f"{c51.shape[1:3]}")
        o4 = self.sanet4_1.with_code(c41, *code["relu4_1"])
        o5 = self.sanet5_1.with_code(c51, *code["relu5_1"])
        return self.merge_conv(reflect_pad(o4 + upsample_nearest2(o5)))[:, 1:-1, 1:-1]

    def __call__(self, c41: jax.Array, c51: jax.Array, s41: jax.Array, s51: jax.Array
                 ) -> jax.Array:
        return self.with_code(c41, c51, self.style_code(s41, s51))


def param_shapes(channels: int = CHANNELS) -> dict[str, Any]:
    """{"sanet4_1": {"f": {"kernel": (1, 1, C, C), "bias": (C,)}, ...}, "merge_conv": ...}."""
    one = {"kernel": (1, 1, channels, channels), "bias": (channels,)}
    block = {name: dict(one) for name in ("f", "g", "h", "out_conv")}
    return {"sanet4_1": block, "sanet5_1": {k: dict(v) for k, v in block.items()},
            "merge_conv": {"kernel": (3, 3, channels, channels), "bias": (channels,)}}


def style_code(params: Any, s41: jax.Array, s51: jax.Array, *,
               max_attention_bytes: int = DEFAULT_ATTENTION_BYTES) -> dict[str, Any]:
    """Pure function: a style's relu4_1, relu5_1 features -> its code for `transform`."""
    return Transform(max_attention_bytes=max_attention_bytes).apply(
        {"params": params}, s41, s51, method="style_code")


def transform(params: Any, c41: jax.Array, c51: jax.Array, code: dict[str, Any], *,
              max_attention_bytes: int = DEFAULT_ATTENTION_BYTES) -> jax.Array:
    """Pure function: T(c, s) from content features and a style code (`style_code`)."""
    return Transform(max_attention_bytes=max_attention_bytes).apply(
        {"params": params}, c41, c51, code, method="with_code")
