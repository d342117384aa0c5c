"""The temporal pieces that run on the device: warping, the feed-forward blend, E_warp.

    warp(image, flow)                  image moved by a flow (`jaxstyle.video.flow`)
    consistency(backward, forward)     Ruder et al.'s weights c (defined in `video.flow`)
    uncovered(backward, forward)       the pixels the earlier frame does not show
    closest_first(weights)             their long-term combination
    blend(y, warped, weights, tau)     the feed-forward engines' temporal step
    warping_error(a, b, flow, mask)    E_warp of one pair (Lai et al., ECCV 2018)

All are pure jnp functions of (H, W, C) float32 images and (H, W, 2) flows; jit them at the
call site (shapes static, values traced).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.video.flow import gaussian_taps


def warp(image: jax.Array, flow: jax.Array) -> jax.Array:
    """out(p) = image(p + flow(p)), bilinear, for image (H, W, C) and flow (H, W, 2) (dx, dy):
    with flow = flow(a, b), `warp(b, flow)` is frame b moved onto frame a. Sample points
    outside the frame are clamped to its border (their consistency weight is 0). Exact for
    integer flows: the sample then falls on a pixel."""
    h, w = image.shape[:2]
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                          indexing="ij")
    x = jnp.clip(xs + flow[..., 0], 0, w - 1)
    y = jnp.clip(ys + flow[..., 1], 0, h - 1)
    x0 = jnp.clip(jnp.floor(x), 0, max(w - 2, 0)).astype(jnp.int32)
    y0 = jnp.clip(jnp.floor(y), 0, max(h - 2, 0)).astype(jnp.int32)
    x1, y1 = jnp.minimum(x0 + 1, w - 1), jnp.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _mirrored(image: jax.Array, taps: np.ndarray, axis: int) -> jax.Array:
    """Correlation of an (H, W) image with 1-D `taps` along `axis`, the border mirrored
    (b a | a b), as CFilter's filters."""
    r = len(taps) // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (r, r)
    p = jnp.pad(image, pad, mode="symmetric")
    n = image.shape[axis]
    return sum(float(t) * jax.lax.slice_in_dim(p, i, i + n, axis=axis)
               for i, t in enumerate(taps) if t != 0)


def consistency(backward: jax.Array, forward: jax.Array) -> jax.Array:
    """Ruder et al.'s consistency weights c (H, W) in [0, 1] (the rules: `jaxstyle.video.flow`)
    of a frame with backward flow (H, W, 2) to an earlier frame whose forward flow to it is
    `forward` (H, W, 2)."""
    return _checks(backward, forward)[0]


def uncovered(backward: jax.Array, forward: jax.Array) -> jax.Array:
    """(H, W) bool: the pixels the earlier frame does not show, where b = a + w_b(a) leaves
    the frame or the forward-backward check fails (disocclusion); motion boundaries are
    covered (their weight c is 0 all the same)."""
    return _checks(backward, forward)[1]


def _checks(backward, forward):
    h, w = backward.shape[:2]
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                          indexing="ij")
    bx, by = xs + backward[..., 0], ys + backward[..., 1]
    outside = (bx < 0) | (by < 0) | (bx > w - 1) | (by > h - 1)
    fb = warp(forward, backward)  # w_f sampled at b = a + w_b(a)
    err = (bx + fb[..., 0] - xs) ** 2 + (by + fb[..., 1] - ys) ** 2
    speed = jnp.sum(backward * backward, axis=-1)
    occluded = err >= 0.01 * (speed + jnp.sum(fb * fb, axis=-1)) + 0.5
    derivative = np.array([-0.5, 0.0, 0.5])
    edge = sum(_mirrored(backward[..., k], derivative, axis) ** 2
               for k in (0, 1) for axis in (0, 1))
    boundary = edge > 0.01 * speed + 0.002
    c = jnp.where(outside, 0.0, jnp.where(occluded, -1.0, jnp.where(boundary, 0.0, 1.0)))
    taps = gaussian_taps()
    weights = jnp.clip(_mirrored(_mirrored(c, taps, 1), taps, 0), 0.0, 1.0)
    return weights, outside | occluded


def closest_first(weights: jax.Array) -> jax.Array:
    """Long-term weights (Ruder et al. 2016, "closest first"), (J, H, W) with the nearest
    earlier frame first: c'_1 = c_1, c'_j = max(c_j - sum_{k<j} c'_k, 0). Each pixel's sum
    is the running maximum of the c_j, so it stays <= 1."""
    out, total = [], jnp.zeros(weights.shape[1:], weights.dtype)
    for j in range(weights.shape[0]):
        c = weights[j] if j == 0 else jnp.maximum(weights[j] - total, 0.0)
        out.append(c)
        total = total + c
    return jnp.stack(out)


def blend(stylized: jax.Array, warped: jax.Array, weights: jax.Array,
          temporal_weight: jax.Array) -> jax.Array:
    """The feed-forward engines' temporal step, a convex blend per pixel:

        out = (1 - tau s) y + tau sum_j c_j w_j,   s = sum_j c_j <= 1

    y the network's (H, W, 3) output for this frame, w_j = warped[j] the output of the j-th
    earlier frame moved onto this one ((J, H, W, 3)), c_j = weights[j] their consistency
    weights ((J, H, W), combined "closest first" so s <= 1), tau = temporal_weight in [0, 1].
    tau = 0 gives y; where no earlier output is reliable (c = 0) out = y."""
    c = weights[..., None]
    return (1.0 - temporal_weight * jnp.sum(c, axis=0)) * stylized + temporal_weight * jnp.sum(
        c * warped, axis=0)


def warping_error(earlier: jax.Array, later: jax.Array, flow: jax.Array,
                  mask: jax.Array) -> jax.Array:
    """E_warp of one pair of frames (Lai et al., "Learning Blind Video Temporal Consistency",
    ECCV 2018): sum_k M_k (V_t - W(V_t+1))_k^2 / sum_k M_k over the H W 3 samples, V_t =
    `earlier`, V_t+1 = `later` ((H, W, 3) RGB in [0, 1]), W(V_t+1) = warp(later, flow) with
    flow = flow(t, t+1) of the input video, M = mask (H, W), the consistency weights of
    frame t against t+1 (`flow.consistency(flow(t, t+1), flow(t+1, t))`), the same for the
    three channels. () float32; 0 when the mask is 0 everywhere."""
    diff = earlier - warp(later, flow)
    m = mask[..., None]
    total = jnp.sum(m) * earlier.shape[-1]
    return jnp.where(total > 0, jnp.sum(m * diff * diff) / jnp.where(total > 0, total, 1.0),
                     0.0)

