"""Synthetic video files for the tests, written with PyAV: a photo panning by integer steps,
an exact frame rate, any size (odd sides in 4:4:4, which H.264 allows), optional AAC audio."""

from fractions import Fraction

import numpy as np


def panning_frames(photo: np.ndarray, count: int, h: int, w: int, step=(2, 1)) -> np.ndarray:
    """(count, h, w, 3) uint8: windows of `photo` moving by `step` (dx, dy) per frame."""
    dx, dy = step
    frames = [photo[10 + dy * t:10 + dy * t + h, 10 + dx * t:10 + dx * t + w]
              for t in range(count)]
    return np.round(np.stack(frames) * 255).astype(np.uint8)


def write_video(path, frames: np.ndarray, rate=Fraction(30000, 1001), audio: bool = True,
                video: bool = True, rotation: int = 0) -> None:
    """An .mp4/.mkv with H.264 (yuv444p: odd sizes allowed) at `rate`, and a 48 kHz AAC
    tone as long as the video when `audio`; `video=False` writes the audio alone."""
    import av

    with av.open(str(path), "w") as out:
        if video:
            vs = out.add_stream("libx264", rate=rate)
            vs.height, vs.width = frames.shape[1:3]
            vs.pix_fmt = "yuv444p"
            vs.options = {"crf": "10"}
            if rotation:
                vs.set_display_rotation(rotation)
        if audio:
            aus = out.add_stream("aac", rate=48000)
            aus.layout = "mono"
        seconds = len(frames) / float(rate)
        if video:
            for i, pixels in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
                frame.pts = i
                out.mux(vs.encode(frame))
            out.mux(vs.encode(None))
        if audio:
            n = int(48000 * seconds)
            t = np.arange(n) / 48000
            samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for start in range(0, n, 1024):
                chunk = samples[:, start:start + 1024]
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 48000, start
                out.mux(aus.encode(frame))
            out.mux(aus.encode(None))


def audio_packets(path) -> list[bytes]:
    """The payloads of the first audio stream's packets, in order."""
    import av

    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]
