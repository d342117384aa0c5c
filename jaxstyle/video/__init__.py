"""Video style transfer with temporal consistency: `jaxstyle video` and its library.

    from jaxstyle.video import GatysEngine, FeedForwardEngine, stylize_file, stylize_video
    engine = FeedForwardEngine(jaxstyle.arbitrary.load_adain(...))
    result = stylize_file("in.mp4", "out.mp4", style, engine=engine, image_size=512)

Modules: `source` (frames in: PyAV files, image folders, printf patterns), `sink` (frames
out, atomic, rate, timestamps, rotation and audio kept), `flow` (DIS optical flow on the
host; the consistency weights' definition), `temporal` (warp, consistency, closest-first
weights, the feed-forward blend and E_warp, on the device), `engines` (Gatys with Ruder et
al.'s temporal loss; SANet/AdaIN with the blend) and `pipeline` (the threads around them).
PyAV and OpenCV come with the `video` extra: pip install 'jaxstyle[video]'.
"""

from jaxstyle.video.engines import (
    DEFAULT_FLOW,
    DEFAULT_FRAME_ITERATIONS,
    DEFAULT_TEMPORAL_WEIGHT,
    ENGINES,
    FeedForwardEngine,
    GatysEngine,
)
from jaxstyle.video.flow import PRESETS, Flow
from jaxstyle.video.pipeline import VideoProgress, VideoResult, stylize_file, stylize_video
from jaxstyle.video.sink import open_sink
from jaxstyle.video.source import Frame, VideoInfo, open_source
from jaxstyle.video.temporal import blend, closest_first, consistency, warp, warping_error

__all__ = [
    "DEFAULT_FLOW",
    "DEFAULT_FRAME_ITERATIONS",
    "DEFAULT_TEMPORAL_WEIGHT",
    "ENGINES",
    "PRESETS",
    "FeedForwardEngine",
    "Flow",
    "Frame",
    "GatysEngine",
    "VideoInfo",
    "VideoProgress",
    "VideoResult",
    "blend",
    "closest_first",
    "consistency",
    "open_sink",
    "open_source",
    "stylize_file",
    "stylize_video",
    "warp",
    "warping_error",
]
