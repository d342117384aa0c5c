"""Optical flow (OpenCV's DIS) on the host, and the definition of the consistency weights of
Ruder et al. that `jaxstyle.video.temporal.consistency` computes on the device.

Flow convention: flow(a, b) is the (H, W, 2) float32 field (dx, dy) with a(p) ~ b(p + flow(p))
for every pixel p = (x, y) of frame a: `warp(b, flow(a, b))` (`jaxstyle.video.temporal`) is b
moved onto a. For frame j and an earlier frame i, the backward flow is w_b = flow(j, i) and
the forward flow w_f = flow(i, j).

Consistency weights (Ruder, Dosovitskiy and Brox, "Artistic style transfer for videos",
GCPR 2016; their consistencyChecker.cpp, also used by Lai et al., ECCV 2018), for pixel a of
frame j with b = a + w_b(a) and w_f(b) the forward flow sampled bilinearly at b:

    c(a) = 0    where b leaves the frame (outside [0, W-1] x [0, H-1])
    c(a) = -1   (disocclusion) where |a - (b + w_f(b))|^2 >= 0.01 (|w_b(a)|^2 + |w_f(b)|^2) + 0.5
    c(a) = 0    (motion boundary) where |grad u|^2 + |grad v|^2 > 0.01 |w_b(a)|^2 + 0.002,
                (u, v) = w_b, gradients by central differences (-1/2, 0, 1/2)
    c(a) = 1    otherwise;

then a Gaussian blur (sigma 0.8, 5 taps, normalized) and a clip to [0, 1]. The -1 makes the
blur reach outwards from a disocclusion before the clip, as Ruder's -255 does on their 0-255
scale. Filters mirror the border (b a | a b), as their CFilter does. One deviation: their code
counts b on the last row or column as outside (its bilinear lookup reads b + 1), which marks
the last row and column unreliable even for a still frame; here only a b outside the frame
is, and the lookup clamps at the border.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from jaxstyle.video.source import Frame

# --flow's choices: OpenCV's DIS presets (medium is the most accurate, ultrafast the fastest).
PRESETS = ("dis-medium", "dis-fast", "dis-ultrafast")
SMOOTH_SIGMA = 0.8  # consistencyChecker.cpp's SMOOTH_STRENGH


def gaussian_taps(sigma: float = SMOOTH_SIGMA, precision: float = 2.0) -> np.ndarray:
    """The normalized Gaussian of CFilter's CSmooth: 2 ceil(precision sigma) + 1 taps."""
    radius = int(np.ceil(precision * sigma))
    i = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-i * i / (2 * sigma * sigma))
    return (taps / taps.sum()).astype(np.float32)


class Flow:
    """DIS optical flow with one of `PRESETS`: flow(a, b) for uint8 gray (H, W) frames.

    An OpenCV DIS object keeps state between calls and is not thread-safe: make one `Flow`
    per thread.
    """

    def __init__(self, preset: str = "dis-medium") -> None:
        import cv2

        from jaxstyle import checks

        checks.choice("flow", preset, PRESETS)
        self.preset = preset
        self.dis = cv2.DISOpticalFlow.create({
            "dis-medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
            "dis-fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "dis-ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST}[preset])

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(H, W, 2) float32 (dx, dy) with a(p) ~ b(p + flow(p))."""
        return self.dis.calc(a, b, None)


def gray(pixels: np.ndarray) -> np.ndarray:
    """An RGB uint8 (H, W, 3) frame as the uint8 (H, W) luma DIS works on (ITU-R 601)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)


def resize_frame(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An RGB uint8 frame resampled to (h, w): area averaging down, bicubic up (OpenCV on
    uint8: a few milliseconds a frame where Lanczos in float took tens)."""
    import cv2

    h, w = shape
    if pixels.shape[:2] == (h, w):
        return pixels
    method = cv2.INTER_AREA if h * w < pixels.shape[0] * pixels.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(pixels, (w, h), interpolation=method)


@dataclasses.dataclass
class FlowItem:
    """A frame ready for the device: the source `Frame`, its RGB uint8 (h, w, 3) pixels at
    the working size, and the flows between it and the earlier frames it is compared with.

    distances: the J frame distances d of the temporal step (1 = the previous frame).
    backward, forward: (J, h, w, 2) float32 flow(i, i-d) and flow(i-d, i); zeros where
        i - d < 0 (valid[j] False). The distance-1 pair also gives E_warp's flow and mask.
    valid: (J,) bool.
    seconds: the host time spent on this frame's flows (by one worker thread).
    """

    frame: Frame
    pixels: np.ndarray
    backward: np.ndarray
    forward: np.ndarray
    valid: np.ndarray
    seconds: float


def flow_items(frames: Iterable[Frame], shape: tuple[int, int], distances: Sequence[int],
               preset: str, workers: int | None = None) -> Iterator[FlowItem]:
    """The frames resized to `shape` (h, w) with their flows to the frames `distances` back
    (module docstring's convention), in order.

    The caller's thread reads, resizes and converts each frame to gray; `workers` threads
    (default: the cores, at most 8) compute the flows of several frames at once (OpenCV
    releases the GIL; each thread has its own DIS object), at most 2 x workers frames
    ahead. Only the last max(distances) gray frames are kept.
    """
    distances = tuple(distances)
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    local = threading.local()

    def flows(frame, pixels, g, earlier):
        t0 = time.perf_counter()
        if not hasattr(local, "flow"):
            local.flow = Flow(preset)
        j = len(distances)
        backward = np.zeros((j, *shape, 2), np.float32)
        forward = np.zeros((j, *shape, 2), np.float32)
        valid = np.array([e is not None for e in earlier])
        for k, e in enumerate(earlier):
            if e is not None:
                backward[k], forward[k] = local.flow(g, e), local.flow(e, g)
        return FlowItem(frame, pixels, backward, forward, valid, time.perf_counter() - t0)

    past: collections.deque = collections.deque(maxlen=max(distances))
    pending: collections.deque = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(workers, "jaxstyle-flow") as pool:
        for frame in frames:
            pixels = resize_frame(frame.pixels, shape)
            g = gray(pixels)
            earlier = [past[-d] if d <= len(past) else None for d in distances]
            pending.append(pool.submit(flows, frame, pixels, g, earlier))
            past.append(g)
            while len(pending) > 2 * workers or (pending and pending[0].done()):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
