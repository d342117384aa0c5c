"""`stylize_file` (a video file or frame folder in, one out, streamed) and `stylize_video`
(frames in memory): the pipeline around an engine.

    engine = GatysEngine(jaxstyle.load_vgg19(), StyleConfig(image_size=256))
    result = stylize_file("in.mp4", "out.mp4", style, engine=engine, temporal_weight=2e4)
    result.warping_error, result.input_warping_error, result.timings

Three threads overlap: the host reads, resizes and computes the optical flows (`video.flow`)
of the frames ahead; the main thread runs the engine on the device (warps, weights and
blends included); a writer thread encodes the finished frames (`video.sink`). Queues between
them hold a few frames, so memory does not grow with the video's length.

E_warp (`temporal.warping_error`) of every pair of consecutive outputs, with the input
video's flow and mask, and of the input frames themselves (the floor a stylization can
reach) are measured as the frames go; `VideoResult` has their means over the pairs.

Progress: `callback(VideoProgress)` after every frame, with the frame just written and its
input (the seam a live viewer hooks into); returning False stops the run after that frame:
the output holds the frames done (a finished, playable file) and `VideoResult.stopped` is
"interrupted".
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import checks
from jaxstyle.files import SettingError
from jaxstyle.image import scale_shape
from jaxstyle.pixels import as_rgb
from jaxstyle.video import temporal
from jaxstyle.video.engines import (
    DEFAULT_FLOW,
    DEFAULT_TEMPORAL_WEIGHT,
    check_temporal_frames,
)
from jaxstyle.video.flow import PRESETS, FlowItem, flow_items
from jaxstyle.video.sink import open_sink
from jaxstyle.video.source import Frame, VideoInfo, open_source

# The largest working side accepted before any work (a 4K frame's long side is 3840).
MAX_SIDE = 8192
_AHEAD = 8  # frames the flow thread may run ahead of the device (and the device of the writer)


@dataclasses.dataclass(frozen=True)
class VideoProgress:
    """After each frame: index (0-based) and total (estimated; None: unknown), the output
    and input frames (h, w, 3) float32 in [0, 1], E_warp of the latest output pair (None
    for the first frame), the seconds so far per part (`VideoResult.timings`)."""

    index: int
    total: int | None
    output: np.ndarray
    input: np.ndarray
    warping_error: float | None
    timings: dict[str, float]


@dataclasses.dataclass(frozen=True)
class VideoResult:
    """frames: (N, h, w, 3) float32 (`stylize_video`; None when streamed to a file).
    count: frames written; size: (width, height). warping_error / input_warping_error: mean
    E_warp over consecutive pairs of the output / the input (None with one frame);
    per_frame: {"warping_error", "input_warping_error"} lists, one per pair. timings:
    seconds in "decode" (reading and resizing), "flow", "stylize" (the device's engine,
    waits for input excluded), "encode" and "total"; fps: frames per second of the whole.
    stopped: None or "interrupted"; notes: what the output could not keep as it was."""

    count: int
    size: tuple[int, int]
    warping_error: float | None
    input_warping_error: float | None
    per_frame: dict[str, list[float]]
    timings: dict[str, float]
    fps: float
    stopped: str | None
    notes: tuple[str, ...]
    frames: np.ndarray | None = None
    info: VideoInfo | None = None


@jax.jit
def _pair_errors(previous_out, out, previous_in, inp, forward, backward):
    """E_warp of (output, input) for the pair (t, t+1); forward = flow(t, t+1)."""
    mask = temporal.consistency(forward, backward)
    return jnp.stack([temporal.warping_error(previous_out, out, forward, mask),
                      temporal.warping_error(previous_in, inp, forward, mask)])


def working_shape(size: tuple[int, int], image_size: int | None) -> tuple[int, int]:
    """(h, w) of the stylized frames: the input's (width, height) scaled so its longer side
    is image_size (None: as it is). SettingError naming image_size when too large."""
    width, height = size
    if image_size is None:
        return height, width
    image_size = checks.integer("image_size", image_size, 1)
    if image_size > MAX_SIDE:
        raise SettingError(f"image_size {image_size} px is more than the {MAX_SIDE} px a video "
                           "frame may have on its longer side", "image_size")
    return scale_shape((height, width), image_size)


def stylize_file(input: str | Path, output: str | Path, styles: Any, *, engine: Any,
                 temporal_weight: float | None = None, temporal_frames: Sequence[int] = (1,),
                 flow: str | None = None, start: float = 0.0, duration: float | None = None,
                 every: int = 1, image_size: int | None = None,
                 callback: Callable[[VideoProgress], bool | None] | None = None,
                 stop: Callable[[], bool] | None = None) -> VideoResult:
    """Stylize the video `input` (a file, a frame folder or a "%05d.png" pattern) into
    `output` (a video file by its suffix, or a folder of PNG frames), streamed.

    engine: `GatysEngine` or `FeedForwardEngine`. styles: one (h, w, 3) image or a list.
    temporal_weight: the Gatys temporal loss weight tau, or the feed-forward blend weight in
    [0, 1] (None: the engine's default, `engines.DEFAULT_TEMPORAL_WEIGHT`). temporal_frames:
    the frame distances compared (1: the previous frame; 1, 2, 4: Ruder et al.'s long-term
    loss). flow: one of `flow.PRESETS` (None: the engine's default). start, duration, every:
    which frames (`source.open_source`). image_size: the frames' longer side (None: the
    input's). stop: a function the engine polls (between frames, and for Gatys between
    compiled chunks); True stops the run as a callback returning False does (Ctrl-C).
    Returns a `VideoResult`; bad settings raise SettingError before any work.
    """
    source = open_source(input, start=start, duration=duration, every=every)
    shape = working_shape(source.info.size, image_size)
    settings = _settings(engine, temporal_weight, temporal_frames, flow)
    sink = open_sink(output, source.info, (shape[1], shape[0]))
    try:
        result = _run(source.frames(), source.info, shape, styles, engine, *settings, callback,
                      stop, sink.write, keep=False)
    except KeyboardInterrupt:
        if sink.frames:  # what is done is a playable video
            sink.close(complete=False)
        else:
            sink.abort()
        raise
    except BaseException:
        sink.abort()  # nothing left behind
        raise
    sink.close(complete=result.stopped is None)
    return dataclasses.replace(result, notes=tuple(sink.notes), info=source.info)


def stylize_video(frames: Any, styles: Any, *, engine: Any, temporal_weight: float | None = None,
                  temporal_frames: Sequence[int] = (1,), flow: str | None = None,
                  callback: Callable[[VideoProgress], bool | None] | None = None,
                  stop: Callable[[], bool] | None = None) -> VideoResult:
    """Stylize frames in memory: (N, H, W, 3) RGB, floats in [0, 1] or uint8; the result's
    `frames` are (N, H, W, 3) float32 in [0, 1]. Arguments as `stylize_file`."""
    video = as_rgb(frames, "frames", batch=True)
    pixels = np.round(video * 255).astype(np.uint8)
    info = VideoInfo("<memory>", "images", (video.shape[2], video.shape[1]), 1, 1,
                     frames=len(video))
    settings = _settings(engine, temporal_weight, temporal_frames, flow)
    gen = (Frame(i, p, i) for i, p in enumerate(pixels))
    return _run(gen, info, video.shape[1:3], styles, engine, *settings, callback, stop, None,
                keep=True)


def _settings(engine, temporal_weight, temporal_frames, flow):
    distances = check_temporal_frames(temporal_frames)
    tau = DEFAULT_TEMPORAL_WEIGHT[engine.name] if temporal_weight is None else temporal_weight
    tau = float(checks.weights("temporal_weight", checks.number("temporal_weight", tau)))
    flow = DEFAULT_FLOW[engine.name] if flow is None else flow
    checks.choice("flow", flow, PRESETS)
    return distances, tau, flow


class _Thread:
    """An iterator's items produced by a thread, `ahead` at most; its exception re-raised."""

    def __init__(self, items: Iterator, ahead: int, stop: threading.Event) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=ahead)
        self.stop, self.wait = stop, 0.0
        self.thread = threading.Thread(target=self._work, args=(items,), daemon=True)
        self.thread.start()

    def _work(self, items: Iterator) -> None:
        try:
            for item in items:
                self._put(("item", item))
                if self.stop.is_set():
                    return
            self._put(("end", None))
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            self._put(("error", err))

    def _put(self, message) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(message, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self):
        while True:
            t0 = time.perf_counter()
            kind, value = self.queue.get()
            self.wait += time.perf_counter() - t0
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value


class _Writer:
    """`write(pixels, pts)` calls made by a thread, in order; `finish()` waits for them and
    re-raises the first error."""

    def __init__(self, write: Callable[[np.ndarray, int], None]) -> None:
        self.write, self.seconds, self.error = write, 0.0, None
        self.queue: queue.Queue = queue.Queue(maxsize=_AHEAD)
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while (job := self.queue.get()) is not None:
            if self.error is None:
                try:
                    t0 = time.perf_counter()
                    self.write(*job)
                    self.seconds += time.perf_counter() - t0
                except BaseException as err:  # noqa: BLE001 - re-raised by finish()
                    self.error = err

    def put(self, pixels: np.ndarray, pts: int) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((pixels, pts))

    def finish(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _run(frames: Iterator[Frame], info: VideoInfo, shape, styles, engine, distances, tau, flow,
         callback, asked, write, *, keep: bool) -> VideoResult:
    t_start = time.perf_counter()
    stop = threading.Event()

    def stopping() -> bool:
        if asked is not None and not stop.is_set() and asked():
            stop.set()
        return stop.is_set()

    seconds = {"decode": 0.0, "flow": 0.0}

    def produced() -> Iterator[FlowItem]:
        t0 = time.perf_counter()
        for item in flow_items(frames, shape, distances, flow):
            seconds["flow"] += item.seconds
            seconds["decode"] += time.perf_counter() - t0 - item.seconds
            yield item
            t0 = time.perf_counter()

    reader = _Thread(produced(), _AHEAD, stop)
    writer = _Writer(write) if write is not None else None
    kept, errors, inputs = [], {"warping_error": [], "input_warping_error": []}, None
    count, stopped, pending = 0, None, []
    previous = None
    t_engine = time.perf_counter()
    try:
        for item, out in engine.run(reader, styles, distances, tau, stopping):
            inp = jnp.asarray(item.pixels, jnp.float32) / 255.0
            if previous is not None and item.valid[0]:
                pending.append(_pair_errors(previous[0], out, previous[1], inp,
                                            item.forward[0], item.backward[0]))
            previous = (out, inp)
            host = np.asarray(out)
            pixels = np.round(np.clip(host, 0, 1) * 255).astype(np.uint8)
            if writer is not None:
                writer.put(pixels, item.frame.pts)
            if keep:
                kept.append(host)
            count += 1
            if callback is not None:
                inputs = item.pixels.astype(np.float32) / 255.0
                latest = float(pending[-1][0]) if pending and item.valid[0] else None
                timings = _timings(seconds, t_engine, reader, writer, t_start)
                if callback(VideoProgress(item.frame.index, info.frames, host, inputs, latest,
                                          timings)) is False:
                    stop.set()
        if stopping():
            stopped = "interrupted"
    finally:
        stop.set()
        if writer is not None:
            writer.finish()
    if count == 0 and stopped is None:
        raise SettingError("no frames were read", "input")
    for pair in np.asarray(jnp.stack(pending)) if pending else []:
        errors["warping_error"].append(float(pair[0]))
        errors["input_warping_error"].append(float(pair[1]))
    timings = _timings(seconds, t_engine, reader, writer, t_start)
    mean = {k: (float(np.mean(v)) if v else None) for k, v in errors.items()}
    return VideoResult(count, (shape[1], shape[0]), mean["warping_error"],
                       mean["input_warping_error"], errors, timings,
                       count / timings["total"], stopped, (),
                       np.stack(kept) if keep and kept else None, info)


def _timings(seconds, t_engine, reader, writer, t_start) -> dict[str, float]:
    now = time.perf_counter()
    return {"decode": seconds["decode"], "flow": seconds["flow"],
            "stylize": now - t_engine - reader.wait,
            "encode": 0.0 if writer is None else writer.seconds, "total": now - t_start}
