"""Independent NumPy references for jaxstyle.video: Ruder et al.'s consistencyChecker.cpp as
loops (with jaxstyle's one documented change: b outside [0, W-1] x [0, H-1] is outside), a
bilinear warp, the closest-first weights and the temporal loss with its gradient."""

import numpy as np


def bilinear(field, x, y):
    """field (H, W, C) at one point, coordinates clamped, bilinear."""
    h, w = field.shape[:2]
    x, y = min(max(x, 0.0), w - 1.0), min(max(y, 0.0), h - 1.0)
    x0, y0 = min(int(np.floor(x)), max(w - 2, 0)), min(int(np.floor(y)), max(h - 2, 0))
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    ax, ay = x - x0, y - y0
    top = (1 - ax) * field[y0, x0] + ax * field[y0, x1]
    bottom = (1 - ax) * field[y1, x0] + ax * field[y1, x1]
    return (1 - ay) * top + ay * bottom


def warp(image, flow):
    h, w = image.shape[:2]
    out = np.zeros(image.shape, np.float64)
    for y in range(h):
        for x in range(w):
            out[y, x] = bilinear(image.astype(np.float64), x + flow[y, x, 0], y + flow[y, x, 1])
    return out


def _mirror(i, n):
    """CFilter's border: index -1 reads 0, n reads n - 1 (b a | a b)."""
    if i < 0:
        return -1 - i
    if i >= n:
        return 2 * n - 1 - i
    return i


def _correlate(image, taps, axis):
    r = len(taps) // 2
    out = np.zeros(image.shape, np.float64)
    h, w = image.shape
    for y in range(h):
        for x in range(w):
            total = 0.0
            for k, t in enumerate(taps):
                i = k - r
                if axis == 1:
                    total += t * image[y, _mirror(x + i, w)]
                else:
                    total += t * image[_mirror(y + i, h), x]
            out[y, x] = total
    return out


def consistency(backward, forward, sigma=0.8):
    h, w = backward.shape[:2]
    dx = [_correlate(backward[..., k], [-0.5, 0.0, 0.5], 1) for k in (0, 1)]
    dy = [_correlate(backward[..., k], [-0.5, 0.0, 0.5], 0) for k in (0, 1)]
    edge = sum(d * d for d in dx + dy)
    reliable = np.ones((h, w))
    for ay in range(h):
        for ax in range(w):
            u2, v2 = backward[ay, ax]
            bx, by = ax + u2, ay + v2
            if bx < 0 or by < 0 or bx > w - 1 or by > h - 1:
                reliable[ay, ax] = 0.0
                continue
            u, v = bilinear(forward.astype(np.float64), bx, by)
            cx, cy = bx + u, by + v
            if (cx - ax) ** 2 + (cy - ay) ** 2 >= 0.01 * (u2 * u2 + v2 * v2 + u * u + v * v) + 0.5:
                reliable[ay, ax] = -1.0
                continue
            if edge[ay, ax] > 0.01 * (u2 * u2 + v2 * v2) + 0.002:
                reliable[ay, ax] = 0.0
    radius = int(np.ceil(2 * sigma))
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma * sigma))
    taps /= taps.sum()
    return np.clip(_correlate(_correlate(reliable, taps, 1), taps, 0), 0, 1)


def closest_first(weights):
    out = [np.asarray(weights[0], np.float64)]
    for c in weights[1:]:
        out.append(np.maximum(c - sum(out), 0))
    return np.stack(out)


def temporal_loss_and_grad(x, warped, weights):
    """L = (1/D) sum_j sum c_j (x - w_j)^2 and dL/dx = (2/D) sum_j c_j (x - w_j)."""
    x = x.astype(np.float64)
    d = x.size
    c = weights.astype(np.float64)[..., None]
    diff = x[None] - warped
    return float(np.sum(c * diff * diff) / d), np.sum(2 * c * diff, axis=0) / d
