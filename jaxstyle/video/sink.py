"""Frames out: a video file (PyAV, the container from the suffix) or a folder of PNG frames,
written atomically, with the input's frame rate, timestamps, rotation and audio.

    with open_sink("out.mp4", source.info) as sink:   # a temporary file beside out.mp4
        for frame, pixels in ...:
            sink.write(pixels, frame.pts)              # RGB uint8 (H, W, 3)
    # closed: the container is finished and renamed to out.mp4; on an exception the
    # temporary file is removed and out.mp4 is left as it was

- Frame rate and timestamps: the video stream gets the input's time base and each frame the
  input frame's pts, so 30000/1001 stays 30000/1001 and a variable frame rate stays variable.
- Size: H.264 and VP9 in 4:2:0 need even sides; an odd side is padded by one row or column
  (a copy of the last), and `notes` says so. Nothing is ever resized here.
- Audio: each input audio stream's packets are copied (remuxed) unchanged, bit for bit, cut to
  the frames' time window and shifted with them; they are read alongside the video as it is
  written, so memory stays flat. A container that cannot hold the codec (GIF: no audio;
  WebM: Opus or Vorbis only) drops it and `notes` says so.
- A folder (OUT without a suffix): OUT/00000.png, 00001.png, ...; built in a temporary
  folder beside OUT and renamed to OUT when complete.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle import files
from jaxstyle.video.source import VideoInfo

# Output containers by suffix: (FFmpeg format, video codec, pixel format, audio codecs it
# takes unchanged (None: any), needs even sides).
CONTAINERS = {
    ".mp4": ("mp4", "libx264", "yuv420p", None, True),
    ".m4v": ("mp4", "libx264", "yuv420p", None, True),
    ".mov": ("mov", "libx264", "yuv420p", None, True),
    ".mkv": ("matroska", "libx264", "yuv420p", None, True),
    ".webm": ("webm", "libvpx-vp9", "yuv420p", ("opus", "vorbis"), True),
    ".gif": ("gif", "gif", "rgb8", (), False),
}
# libx264's quality: constant rate factor (18: visually lossless) and its speed preset.
X264_OPTIONS = {"crf": "18", "preset": "medium"}
FRAME_NAME = "{:05d}.png"


def output_kind(path: str | Path) -> str:
    """"video" for a known video suffix, "folder" for a path without a suffix; else
    SettingError naming `output`."""
    suffix = Path(path).suffix.lower()
    if suffix in CONTAINERS:
        return "video"
    if not suffix:
        return "folder"
    raise files.SettingError(f"output {path}: the suffix must be one of "
                             f"{', '.join(CONTAINERS)} (a video) or none (a folder of PNG "
                             "frames)", "output")


def output_problem(path: str | Path) -> str | None:
    """Why `path` cannot be written (None if it can): its folder is missing or not
    writable, or, for a frame folder, it exists and holds other files than frames."""
    path = Path(path)
    if output_kind(path) == "video":
        return files.target_problem(path)
    if path.exists() and not path.is_dir():
        return "exists and is not a folder"
    if path.is_dir() and any(not _is_frame(p) for p in path.iterdir()):
        return "is a folder with other files than frames: give a new or empty folder"
    return files.target_problem(path.parent / f".{path.name}.probe")


def _is_frame(p: Path) -> bool:
    return p.suffix == ".png" and p.stem.isdigit()


def open_sink(path: str | Path, info: VideoInfo, size: tuple[int, int] | None = None, *,
              encoder_options: dict | None = None) -> Sink:
    """A writer of `info`'s video to `path` (module docstring), frames of `size` (width,
    height; default the input's). encoder_options: libx264's, over `X264_OPTIONS`."""
    size = tuple(info.size if size is None else size)
    return (VideoSink if output_kind(path) == "video" else FolderSink)(
        Path(path), info, size, encoder_options)


class Sink:
    """The writer's interface: write(pixels, pts), then close() (commit) or abort()."""

    notes: list[str]
    frames: int

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
        elif issubclass(kind, KeyboardInterrupt) and self.frames:
            self.close(complete=False)  # what is done is a playable video
        else:
            self.abort()


class FolderSink(Sink):
    def __init__(self, path: Path, info: VideoInfo, size: tuple[int, int], _options: Any
                 ) -> None:
        self.path, self.info, self.notes, self.frames = path, info, [], 0
        self.tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        self.tmp.mkdir()

    def write(self, pixels: np.ndarray, pts: int) -> None:
        from PIL import Image

        Image.fromarray(np.asarray(pixels, np.uint8)).save(
            self.tmp / FRAME_NAME.format(self.frames))
        self.frames += 1

    def close(self, complete: bool = True) -> None:
        if self.path.exists():  # frames of an earlier run (output_problem checked)
            old = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.old")
            os.replace(self.path, old)
            os.replace(self.tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.path)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class VideoSink(Sink):
    def __init__(self, path: Path, info: VideoInfo, size: tuple[int, int],
                 options: dict | None) -> None:
        import av

        self.path, self.info, self.notes, self.frames = path, info, [], 0
        self.last_time = 0.0
        fmt, codec, self.pix_fmt, audio_ok, even = CONTAINERS[path.suffix.lower()]
        self.tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        self.out = av.open(str(self.tmp), "w", format=fmt)
        try:
            width, height = self.size = size
            self.pad = (height % 2, width % 2) if even else (0, 0)
            if any(self.pad):
                self.notes.append(f"{codec} needs even sides: padded {width}x{height} to "
                                  f"{width + self.pad[1]}x{height + self.pad[0]} (the last "
                                  "row/column repeated)")
            rate = _codec_rate(info.rate)
            self.stream = self.out.add_stream(codec, rate=rate)
            self.stream.width, self.stream.height = width + self.pad[1], height + self.pad[0]
            self.stream.pix_fmt = self.pix_fmt
            self.stream.time_base = info.time_base
            self.stream.codec_context.time_base = info.time_base
            if codec == "libx264":
                self.stream.options = {**X264_OPTIONS, **(options or {})}
            if info.rotation:
                self.stream.set_display_rotation(info.rotation)
            self.audio = _AudioCopy(info, self.out, audio_ok, self.notes, path.suffix.lower())
        except BaseException:
            self.out.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
            raise

    def write(self, pixels: np.ndarray, pts: int) -> None:
        import av

        pixels = np.asarray(pixels, np.uint8)
        if pixels.shape != (self.size[1], self.size[0], 3):
            raise ValueError(f"frames of this video are {self.size[0]}x{self.size[1]}, got "
                             f"shape {pixels.shape}")
        if any(self.pad):
            pixels = np.pad(pixels, ((0, self.pad[0]), (0, self.pad[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
        if self.pix_fmt != "rgb24":
            frame = frame.reformat(format=self.pix_fmt)
        frame.pts, frame.time_base = int(pts), self.info.time_base
        self.last_time = float(pts * self.info.time_base)
        self.audio.until(self.last_time)
        self.out.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self, complete: bool = True) -> None:
        """Flush the encoder, copy the rest of the audio (complete: to the end of the input or
        of --duration; else, a run stopped early, to the end of the last frame written),
        finish the container and rename it over the output."""
        try:
            self.out.mux(self.stream.encode(None))
            if not complete:
                end = self.last_time + 1 / float(self.info.rate)
            elif self.info.end_time is not None:
                end = self.info.end_time - self.info.start_time
            else:
                end = float("inf")
            self.audio.until(end, last=True)
            self.audio.close()
            self.out.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self.audio.close()
        with contextlib.suppress(Exception):
            self.out.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def _codec_rate(rate: Fraction) -> Fraction:
    """The encoder's nominal rate: the exact Fraction, kept within FFmpeg's int range."""
    return rate.limit_denominator(1_000_000) if rate.denominator > 1_000_000 else rate


class _AudioCopy:
    """The input's audio packets remuxed into `out` as the video is written: `until(t)`
    copies every packet that starts before t seconds (relative to the first frame)."""

    def __init__(self, info: VideoInfo, out, allowed: tuple[str, ...] | None,
                 notes: list[str], suffix: str) -> None:
        import av

        self.info, self.out, self.input, self.streams = info, out, None, {}
        if not info.audio:
            return
        keep = [i for i, c in zip(info.audio, info.audio_codecs, strict=True)
                if allowed is None or c in allowed]
        for i, codec in zip(info.audio, info.audio_codecs, strict=True):
            if i not in keep:
                notes.append(f"audio stream {i} ({codec}) not copied: a {suffix} file "
                             "cannot hold it unchanged (use .mp4, .mov or .mkv)")
        if not keep:
            return
        self.input = av.open(info.path)
        for i in keep:
            self.streams[i] = out.add_stream_from_template(self.input.streams[i])
        if info.start_time > 0:
            self.input.seek(int(info.start_time * 1_000_000), backward=True)
        self.packets = self.input.demux([self.input.streams[i] for i in keep])
        self.pending = None

    def until(self, t: float, last: bool = False) -> None:
        if self.input is None:
            return
        while True:
            packet = self.pending or next(self.packets, None)
            self.pending = None
            if packet is None:
                return
            if packet.pts is None or packet.size == 0:  # demuxer's flush packets
                continue
            start = float(packet.pts * packet.time_base)
            rel = start - self.info.start_time
            if self.info.start_time > 0 and rel < -1e-9:  # before --start: the seek lands early
                continue  # (from the start, a negative pts is the codec's priming: kept)
            if rel >= t - 1e-9:
                self.pending = None if last else packet
                return
            stream = self.streams[packet.stream.index]
            shift = int(round(self.info.start_time / packet.time_base))
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = stream
            self.out.mux(packet)

    def close(self) -> None:
        if self.input is not None:
            self.input.close()
            self.input = None
