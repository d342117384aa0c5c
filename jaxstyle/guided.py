"""Guided Gram matrices: the style loss over the region a mask selects (Gatys et al. 2017,
"Controlling Perceptual Factors in Neural Style Transfer"), and masks brought to a layer's
feature size. `losses.style_loss` uses them when style masks are given.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxstyle.kernels import FLOAT32, Arithmetic
from jaxstyle.vgg import pools_before

# (M, N) x (N, N) -> (M, N): the matrix product of the losses' derivatives (`Arithmetic.matmul`).
PRODUCT = "mi,ij->mj"


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def guided_style_layer_loss(feats: jax.Array, target_gram: jax.Array,
                            mask_weights: jax.Array,
                            arithmetic: Arithmetic = FLOAT32) -> jax.Array:
    """Guided E_l (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style
    Transfer"): the style loss of one layer over the region a mask selects.

    feats (h, w, N); mask_weights (h, w): w_p = m(p)^2, the mask at this layer squared;
    target_gram (N, N): A, already on the guided region's scale. With F the (M, N) features,
        G_w = sum_p w_p F_p F_p^T,  M_w = sum_p w_p,  E = sum_ij (G_w - A)_ij^2 / (4 N^2 M_w^2)
    and E = 0 where M_w = 0. With w = 1 everywhere this is `style_layer_loss` exactly.
    Derivative (custom JVP, D = G_w - A, c = 1 / (4 N^2 M_w^2)):
        dE = 2c ( sum((w F)(D + D^T) * dF) - sum(D * dA) + sum_p dw_p F_p^T D F_p ) - 2 E dM_w / M_w
    Products in `arithmetic`.
    """
    return _guided(feats, target_gram, mask_weights, arithmetic)[0]


def _guided(feats, target_gram, mask_weights, arithmetic):
    n = feats.shape[-1]
    f = feats.reshape(-1, n)
    w = mask_weights.reshape(-1, 1).astype(jnp.float32)
    m = jnp.sum(w)
    gram = arithmetic.matmul((w * f).astype(f.dtype), f)
    diff = gram - target_gram
    scale = jnp.where(m > 0, 1.0 / (4.0 * n**2 * jnp.where(m > 0, m, 1.0) ** 2), 0.0)
    return jnp.sum(diff * diff) * scale, f, w, m, diff, scale


@guided_style_layer_loss.defjvp
def _guided_jvp(arithmetic, primals, tangents):
    feats, target_gram, mask_weights = primals
    d_feats, d_target, d_weights = tangents
    loss, f, w, m, diff, scale = _guided(feats, target_gram, mask_weights, arithmetic)
    sym = (diff + diff.T).astype(f.dtype)
    k = arithmetic.matmul((w * f).astype(f.dtype), sym, PRODUCT)
    dw = d_weights.reshape(-1, 1).astype(jnp.float32)
    fdf = jnp.sum(arithmetic.matmul(f, diff.astype(f.dtype), PRODUCT)
                  * f.astype(jnp.float32), axis=1, keepdims=True)  # F_p^T D F_p, (M, 1)
    d_loss = (2.0 * scale * (jnp.sum(k * d_feats.reshape(k.shape).astype(jnp.float32))
                             - jnp.sum(diff * d_target) + jnp.sum(dw * fdf))
              - 2.0 * loss * jnp.sum(dw) / jnp.where(m > 0, m, 1.0))
    return loss, d_loss


def pixels_at(layer: str, hw: Sequence[int]) -> int:
    """M = h * w of `layer`'s feature map for an (H, W) input: each pooling before it halves
    (VALID 2x2, stride 2: floor)."""
    h, w = hw
    for _ in range(pools_before(layer)):
        h, w = h // 2, w // 2
    return h * w


def mask_at(mask: jax.Array, layer: str) -> jax.Array:
    """An (H, W) mask at `layer`'s feature size: one 2x2, stride-2 average per pooling before
    the layer (VALID: an odd last row or column is dropped, like the features)."""
    for _ in range(pools_before(layer)):
        h, w = mask.shape[0] // 2, mask.shape[1] // 2
        mask = mask[: 2 * h, : 2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3))
    return mask
