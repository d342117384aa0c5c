"""Frames in: a video file (PyAV) or a folder / printf pattern of images, read as they go.

    source = open_source("clip.mp4", start=2.0, duration=5.0, every=1)
    source.info.rate, source.info.size        # Fraction(30000, 1001), (width, height)
    for frame in source.frames():              # Frame(index, pixels uint8 (H, W, 3), pts)
        ...

Memory does not grow with the video's length: `frames()` decodes one frame at a time.
Timestamps are the input's (`pts` in `info.time_base` units, counted from the first frame
read), so a variable frame rate survives. --start, --duration and --every select frames by
their presentation time t = pts * time_base: start <= t < start + duration, then every N-th.
Rotation: the decoded pixels are as stored; `info.rotation` (degrees counter-clockwise, the
container's display matrix) is what a player applies, and the writer copies it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle import files
from jaxstyle.image import IMAGE_SUFFIXES, list_images, load_image

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".gif", ".avi", ".m4v")
# Frame rate of a folder of images, which has none of its own.
DEFAULT_IMAGES_RATE = Fraction(25)


@dataclasses.dataclass(frozen=True)
class Frame:
    """One frame: its index among the frames read (0, 1, ...), RGB uint8 (H, W, 3) pixels,
    and its presentation time in `VideoInfo.time_base` units from the first frame read."""

    index: int
    pixels: np.ndarray
    pts: int


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the output keeps of the input.

    path: the input; kind: "video" (a file) or "images" (a folder or pattern).
    size: (width, height) of the stored frames. rate: the frame rate, exact (e.g.
    Fraction(30000, 1001)), divided by `every`; time_base: the unit of the frames' pts.
    rotation: degrees counter-clockwise a player turns the frames (0: none).
    frames: how many frames will be read, estimated from the container (None: unknown).
    audio: the audio streams' indices in the input (copied unchanged by the writer), and
    start_time: the first frame read's time in seconds in the input (audio is cut there).
    """

    path: str
    kind: str
    size: tuple[int, int]
    rate: Fraction
    time_base: Fraction
    rotation: int = 0
    frames: int | None = None
    audio: tuple[int, ...] = ()
    audio_codecs: tuple[str, ...] = ()
    start_time: float = 0.0
    end_time: float | None = None


class Source:
    """An opened input: `info`, and `frames()`, the selected frames one at a time."""

    def __init__(self, info: VideoInfo, frames: Any) -> None:
        self.info, self._frames = info, frames

    def frames(self) -> Iterator[Frame]:
        return self._frames()


def open_source(path: str | Path, *, start: float = 0.0, duration: float | None = None,
                every: int = 1, images_rate: Fraction = DEFAULT_IMAGES_RATE) -> Source:
    """Open a video file, a folder of images or a printf pattern ("frames/%05d.png").

    start, duration: seconds selecting start <= t < start + duration (None: to the end);
    every: keep every N-th of those frames (the rate divides by N). images_rate: the frame
    rate of an image folder or pattern. InputError (exit 1 on the command line) for a file
    that is not a video, a video without a video stream, a pattern or folder without frames;
    SettingError naming `start` for a start at or past the end.
    """
    from jaxstyle import checks

    start = float(checks.number("start", start))
    if start < 0:
        raise files.SettingError(f"start must be >= 0 seconds, got {start:g}", "start")
    if duration is not None:
        duration = checks.positive("duration", duration)
    every = checks.integer("every", every, 1)
    path = Path(path)
    if "%" in path.name or path.is_dir():
        return _image_source(path, start, duration, every, Fraction(images_rate))
    if not path.exists():
        raise files.InputError(f"{path}: no such file or directory")
    return _video_source(path, start, duration, every)


# --------------------------------------------------------------------------- video files


def _open_container(path: Path):
    import av

    try:
        return av.open(str(path))
    except av.FFmpegError as err:
        raise files.InputError(f"{path}: not a video FFmpeg can read "
                               f"({err.strerror or type(err).__name__})") from None
    except OSError as err:
        raise files.InputError(f"{path}: {err.strerror or err}") from None


def _video_source(path: Path, start: float, duration: float | None, every: int) -> Source:
    with _open_container(path) as container:
        if not container.streams.video:
            raise files.InputError(f"{path}: no video stream (streams: "
                                   f"{', '.join(s.type for s in container.streams) or 'none'})")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise files.InputError(f"{path}: the video stream has no frame rate")
        time_base = stream.time_base or Fraction(1, 1)
        length = _seconds(container, stream)
        if length is not None and start >= length:
            raise files.SettingError(f"start {start:g} s is at or past the end of {path} "
                                     f"({length:.3g} s long)", "start")
        end = None if duration is None else start + duration
        span = (length if end is None or length is None else min(end, length)) - start \
            if length is not None else None
        count = None if span is None else max(1, math.ceil(span * float(rate) / every - 1e-6))
        audio = tuple(s.index for s in container.streams.audio)
        codecs = tuple(s.codec_context.name for s in container.streams.audio)
        rotation = _rotation(container, stream)
        info = VideoInfo(str(path), "video", (ctx.width, ctx.height), Fraction(rate) / every,
                         Fraction(time_base), rotation, count, audio, codecs, start, end)

    def frames() -> Iterator[Frame]:
        with _open_container(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threads: decoding overlaps the rest
            if start > 0:
                container.seek(int(start / time_base), stream=stream, backward=True)
            first, kept, seen = None, 0, 0
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * time_base)
                if t < start - 1e-9:
                    continue
                if end is not None and t >= end - 1e-9:
                    break
                seen += 1
                if (seen - 1) % every:
                    continue
                first = frame.pts if first is None else first
                yield Frame(kept, frame.to_ndarray(format="rgb24"), frame.pts - first)
                kept += 1
            if kept == 0:
                raise files.SettingError(f"no frame at or after start {start:g} s in {path}",
                                         "start")

    return Source(info, frames)


def _seconds(container, stream) -> float | None:
    """The video's length in seconds (the stream's duration, else the container's)."""
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base) + float(
            (stream.start_time or 0) * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _rotation(container, stream) -> int:
    """Degrees counter-clockwise of the stream's display matrix (from its first frame)."""
    try:
        for frame in container.decode(stream):
            return int(round(frame.rotation or 0))
    except Exception:  # noqa: BLE001 - an undecodable first frame shows up when reading
        return 0
    return 0


# --------------------------------------------------------------------------- image folders


def _image_source(path: Path, start: float, duration: float | None, every: int,
                  rate: Fraction) -> Source:
    paths = _pattern_paths(path) if "%" in path.name else [
        Path(p) for p in list_images(path, "input folder", recursive=False)]
    if not paths:
        raise files.InputError(f"{path}: the pattern matches no file")
    first_index = math.ceil(start * rate - 1e-9)
    if first_index >= len(paths):
        raise files.SettingError(f"start {start:g} s is at or past the end of {path} "
                                 f"({len(paths)} frames at {rate} fps)", "start")
    last = len(paths) if duration is None else min(
        len(paths), math.ceil((start + duration) * rate - 1e-9))
    chosen = paths[first_index:last:every]
    first = load_image(chosen[0])
    info = VideoInfo(str(path), "images", (first.shape[1], first.shape[0]), rate / every,
                     1 / (rate / every), 0, len(chosen), (), (), float(first_index / rate),
                     None)

    def frames() -> Iterator[Frame]:
        for i, p in enumerate(chosen):
            image = load_image(p)
            if image.shape[:2] != first.shape[:2]:
                raise files.InputError(f"{p}: {image.shape[1]}x{image.shape[0]}, but the first "
                                       f"frame is {first.shape[1]}x{first.shape[0]}")
            yield Frame(i, np.round(image * 255).astype(np.uint8), i)

    return Source(info, frames)


def _pattern_paths(pattern: Path) -> list[Path]:
    """The files a printf pattern names ("%05d", "%d"), in frame-number order."""
    match = re.fullmatch(r"(.*)%(0?\d*)d(.*)", pattern.name)
    if not match or "%" in match.group(1) + match.group(3):
        raise files.SettingError(f"{pattern}: a frame pattern needs exactly one %d or %0Nd",
                                 "input")
    head, width, tail = match.groups()
    digits = rf"\d{{{int(width)}}}" if width.startswith("0") and len(width) > 1 else r"\d+"
    regex = re.compile(re.escape(head) + f"({digits})" + re.escape(tail))
    folder = pattern.parent
    if not folder.is_dir():
        raise files.InputError(f"{folder}: no such folder")
    found = sorted((int(m.group(1)), folder / name) for name in (p.name for p in folder.iterdir())
                   if (m := regex.fullmatch(name)))
    return [p for _, p in found if p.suffix.lower() in IMAGE_SUFFIXES]
