"""The two ways a video is stylized, frame after frame, each with its temporal step.

`GatysEngine` (Ruder, Dosovitskiy and Brox, "Artistic style transfer for videos", GCPR 2016,
single pass): frame 1 is stylized as `jaxstyle.stylize` would (the config's ladder and
iterations). Every later frame runs `frame_iterations` steps at the output size only, starts
from the previous result warped into it (the pixels it does not show, out of the frame or
disoccluded: the content frame's, `temporal.uncovered`) and adds tau L_t to its objective
(`jaxstyle.losses.temporal_loss`, tau = `temporal_weight`): w_j the result of the frame d_j
back warped by the backward flow, c_j its consistency weights combined closest first.
Every later frame has J entries (zero weights where the video has no frame that far back),
so all of them run one compiled program. temporal_weight = 0 makes every frame
independent: the same iterations from the config's own init, no temporal loss (the "frame
by frame" baseline).

`FeedForwardEngine` (SANet, AdaIN): frames go through the compiled network in batches, the
style encoded once; each output is then blended with the earlier outputs warped into it
(`temporal.blend`: out = (1 - tau s) y + tau sum_j c_j w_j, tau in [0, 1]; 0 gives the raw
per-frame result).

Both yield, per frame, the output as a device array (h, w, 3) float32 in [0, 1]; the warps,
weights and blends run on the device, the flows come from the host (`video.flow`).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import checks
from jaxstyle.config import StyleConfig
from jaxstyle.files import SettingError
from jaxstyle.losses import Temporal
from jaxstyle.video import temporal
from jaxstyle.video.flow import FlowItem

ENGINES = ("gatys", "sanet", "adain")
# Defaults, chosen by benchmarks/video_bench.py (docs/video.md has the runs; random weights):
# Gatys' tau, the smallest of 1e3..1e6 measured at 128 and 256 px that cut E_warp below 0.3x
# frame by frame with margin (0.11x at 256 px); the blend, the smallest of 0.3..0.8 that cut
# both networks' E_warp below 0.5x with their style loss within 10% (+2%, +4%); later Gatys
# frames' steps: 30 from the warped previous result already kept each frame's style loss
# below the first frame's; 50 leaves room for the real weights, which were not measurable.
DEFAULT_TEMPORAL_WEIGHT = {"gatys": 1e4, "sanet": 0.5, "adain": 0.5}
DEFAULT_FRAME_ITERATIONS = 50
DEFAULT_FLOW = {"gatys": "dis-medium", "sanet": "dis-fast", "adain": "dis-fast"}

Stop = Callable[[], bool]


def check_temporal_frames(frames: Any) -> tuple[int, ...]:
    """--temporal-frames: strictly increasing positive distances starting at 1 (1 = the
    previous frame; Ruder et al.'s long-term setting is 1, 2, 4)."""
    values = tuple(checks.integer("temporal_frames", d, 1)
                   for d in checks.sequence("temporal_frames", frames, "frame distances"))
    pairs = zip(values[:-1], values[1:], strict=True)
    if not values or values[0] != 1 or any(b <= a for a, b in pairs):
        raise SettingError("temporal_frames must be increasing frame distances starting at 1, "
                           f"e.g. 1 or 1,2,4; got {list(values)}", "temporal_frames")
    return values


@jax.jit
def _prepare(previous, backward, forward, valid):
    """(warped (J, h, w, 3), weights (J, h, w), uncovered (h, w)): the earlier outputs moved
    onto this frame, their closest-first consistency weights (0 where no such frame), and
    the pixels the previous frame does not show."""
    c = jax.vmap(temporal.consistency)(backward, forward) * valid[:, None, None]
    warped = jnp.clip(jax.vmap(temporal.warp)(previous, backward), 0.0, 1.0)
    return warped, temporal.closest_first(c), temporal.uncovered(backward[0], forward[0])


@jax.jit
def _blend_step(stylized, previous, backward, forward, valid, temporal_weight):
    warped, c, _ = _prepare(previous, backward, forward, valid)
    return jnp.clip(temporal.blend(stylized, warped, c, temporal_weight), 0.0, 1.0)


class _History:
    """The last max(distances) outputs on the device, as the (J, h, w, 3) stack of the
    frames `distances` back (zeros where the video has none)."""

    def __init__(self, distances: Sequence[int]) -> None:
        self.distances = tuple(distances)
        self.outputs: collections.deque = collections.deque(maxlen=max(self.distances))

    def stack(self, like: jax.Array) -> jax.Array:
        zero = jnp.zeros_like(like)
        return jnp.stack([self.outputs[-d] if d <= len(self.outputs) else zero
                          for d in self.distances])

    def push(self, output: jax.Array) -> None:
        self.outputs.append(output)


@dataclasses.dataclass
class GatysEngine:
    """The Gatys engine (module docstring). weights: VGG weights; config: the first frame's
    `StyleConfig` (later frames: one stage of `frame_iterations` steps, same settings);
    preserve_colors, callback_every, style_masks: `jaxstyle.stylize`'s (masks: the same for
    every frame)."""

    weights: Any
    config: StyleConfig = dataclasses.field(default_factory=StyleConfig)
    frame_iterations: int = DEFAULT_FRAME_ITERATIONS
    preserve_colors: str = "none"
    callback_every: int = 10
    style_masks: Sequence[Any] | None = None
    name = "gatys"

    def __post_init__(self) -> None:
        checks.integer("frame_iterations", self.frame_iterations, 1)

    def configs(self, side: int, temporal_weight: float) -> tuple[StyleConfig, StyleConfig]:
        """(the first frame's config, the later frames') for frames of longer side `side`:
        the output keeps the frames' size (the pipeline sized them)."""
        scales = self.config.scales
        if isinstance(scales, tuple) and scales[-1] != side:
            raise SettingError(f"scales {list(scales)}: the last is the output size, and the "
                               f"video's frames are {side} px on their longer side", "scales")
        first = self.config if isinstance(scales, tuple) else self.config.replace(
            image_size=side)
        later = first.replace(scales=None, scale_iterations=None, image_size=side,
                              iterations=self.frame_iterations,
                              temporal_weight=temporal_weight)
        return first, later

    def run(self, items: Iterable[FlowItem], styles: Any, distances: Sequence[int],
            temporal_weight: float, stop: Stop) -> Iterator[tuple[FlowItem, jax.Array]]:
        from jaxstyle.stylize import stylize

        history = _History(distances)
        first = later = None

        def keep_going(progress) -> bool:
            return not stop()

        for item in items:
            content = item.pixels.astype(np.float32) / 255.0
            if first is None:
                first, later = self.configs(max(content.shape[:2]), temporal_weight)
            options = dict(weights=self.weights, preserve_colors=self.preserve_colors,
                           callback=keep_going, callback_every=self.callback_every,
                           style_masks=self.style_masks)
            if not item.valid.any():
                result = stylize(content, styles, config=first, **options)
            elif temporal_weight > 0:
                warped, c, new = _prepare(history.stack(jnp.asarray(content)), item.backward,
                                          item.forward, item.valid)
                warped, c = np.asarray(warped), np.asarray(c)
                init = np.where(np.asarray(new)[..., None], content, warped[0])
                result = stylize(content, styles, config=later, init=init,
                                 temporal=Temporal(warped, c), **options)
            else:
                result = stylize(content, styles, config=later, **options)
            if result.stopped == "interrupted":
                return
            if result.stopped == "nonfinite" and result.steps == 0:
                raise RuntimeError(f"frame {item.frame.index}: {result.message}")
            output = jnp.asarray(result.image)
            history.push(output)
            yield item, output


@dataclasses.dataclass
class FeedForwardEngine:
    """SANet or AdaIN (module docstring). params: `load_sanet`/`load_adain`'s; alpha,
    style_blend_weights: `stylize_sanet`'s; batch_size: frames per compiled call."""

    params: Any
    alpha: float = 1.0
    style_blend_weights: Sequence[float] | None = None
    batch_size: int = 8

    def __post_init__(self) -> None:
        from jaxstyle.arbitrary.models import model_kind

        checks.integer("batch_size", self.batch_size, 1)
        self.name = model_kind(self.params)

    def run(self, items: Iterable[FlowItem], styles: Any, distances: Sequence[int],
            temporal_weight: float, stop: Stop) -> Iterator[tuple[FlowItem, jax.Array]]:
        from jaxstyle import arbitrary

        tau = checks.number("temporal_weight", temporal_weight)
        if not 0 <= tau <= 1:
            raise SettingError(f"temporal_weight of {self.name} is a blend weight in [0, 1], "
                               f"got {tau:g}", "temporal_weight")
        stylize = arbitrary.stylize_sanet if self.name == "sanet" else arbitrary.stylize_adain
        codes = arbitrary.encode_styles(self.params, styles)  # once for the whole video
        history = _History(distances)
        batch: list[FlowItem] = []
        items = iter(items)
        while True:
            item = next(items, None)
            if item is not None:
                batch.append(item)
            if batch and (item is None or len(batch) == self.batch_size or stop()):
                y = stylize(self.params, np.stack([b.pixels for b in batch]), codes,
                            alpha=self.alpha, style_blend_weights=self.style_blend_weights)
                for b, frame in zip(batch, jnp.asarray(y), strict=True):
                    out = frame if not b.valid.any() or tau == 0 else _blend_step(
                        frame, history.stack(frame), b.backward, b.forward, b.valid,
                        np.float32(tau))
                    history.push(out)
                    yield b, out
                batch = []
            if item is None or stop():
                return
