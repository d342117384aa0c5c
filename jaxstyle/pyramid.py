"""Coarse-to-fine stylization: `stylize` at increasing sizes, each stage starting from the last.

    config = jaxstyle.StyleConfig(scales=(256, 512, 1024, 2048),
                                  scale_iterations=(300, 200, 100, 50))
    result = jaxstyle.stylize_pyramid(content, style, weights=weights, config=config)
    result.image          # (h, w, 3) at the last scale; result.stages[k] per stage

What the classic tools do with shell scripts (one process per size, the output of one run
fed as the init of the next), in one process:
- stage k resizes the ORIGINAL content so that its longer side is scales[k] (up or down,
  aspect ratio kept), and recomputes the targets (content features, style Grams) there;
- each style image is resized from the ORIGINAL style image so that its longer side is
  style_scale * scales[k] (`jaxstyle.image.style_size_for`): the style keeps its size
  relative to the image at every stage, and no stage resamples an already resampled style;
- stage 0 starts from `config.init`; stage k > 0 from stage k-1's result (its best iterate,
  clipped to [0, 1]), resized to stage k's shape (Lanczos, `jaxstyle.image.resize_to`);
- each stage runs `scale_iterations[k]` steps (`config.iterations` at every stage when
  unset) of `config.optimizer`, with a fresh optimizer state.

Memory: a stage's device buffers (targets, optimizer state, images) live only inside its
`stylize` call; between stages only host (NumPy) images are kept, so the peak is that of the
largest stage alone (benchmarks/highres.py measures it). Compilation: `stylize` caches its
compiled programs by shape, so a second pyramid with the same stage shapes compiles nothing.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxstyle.config import LossWeights, StyleConfig
from jaxstyle.image import (
    as_content_and_styles,
    as_rgb_float32,
    resize_to,
    scale_shape,
    style_size_for,
)
from jaxstyle.stylize import Progress, Result, stylize
from jaxstyle.vgg import VGGWeights, layer_depth, pools_before


@dataclasses.dataclass(frozen=True)
class PyramidResult(Result):
    """A `Result` for the whole pyramid, plus the per-stage results.

    image, best_loss, best_step, message: from the last stage that ran (its size: `shapes`
        of that stage; smaller than the last scale when an earlier stage stopped the run).
    history: every stage's history concatenated (len = total steps; losses of different
        stages are at different sizes, so not comparable across a stage boundary).
    best_step: counted from the pyramid's start (steps of earlier stages included).
    steps: total steps run; initial_losses: stage 0's.
    timings: each key summed over the stages ("total_s" is the whole call, with resizing).
    stopped: None, or the stopping stage's "interrupted" / "nonfinite" (later stages skipped).
    stages: one `Result` per stage that ran; stage k's config.init is the array it started
        from (for k > 0: the previous result, upsampled).
    shapes: (h, w) of the image at every scale (also those not run).
    style_shapes: per stage that ran, the (h, w) of each style image used there.
    """

    stages: tuple[Result, ...] = ()
    shapes: tuple[tuple[int, int], ...] = ()
    style_shapes: tuple[tuple[tuple[int, int], ...], ...] = ()


class StageProgress:
    """What a pyramid callback sees: `Progress` across the whole pyramid, plus its stage.

    step / total_steps: steps done / planned over all stages (a progress bar spans the
        pyramid); stage_step / stage_total_steps: within the current stage.
    stage: 0-based index of the current stage; num_stages; shape: its image (h, w).
    losses, best_loss: of the current stage (at its size). image(): its best image so far.
    """

    def __init__(self, inner: Progress, *, stage: int, num_stages: int,
                 shape: tuple[int, int], steps_before: int, total_steps: int) -> None:
        self.stage = stage
        self.num_stages = num_stages
        self.shape = shape
        self.stage_step = inner.step
        self.stage_total_steps = inner.total_steps
        self.step = steps_before + inner.step
        self.total_steps = total_steps
        self.losses = inner.losses
        self.best_loss = inner.best_loss
        self._inner = inner

    def image(self) -> np.ndarray:
        """(h, w, 3) float32 RGB in [0, 1]: the current stage's best iterate so far."""
        return self._inner.image()

    def __repr__(self) -> str:
        return (f"StageProgress(stage={self.stage + 1}/{self.num_stages}, "
                f"shape={self.shape}, step={self.step}/{self.total_steps}, "
                f"losses={self.losses}, best_loss={self.best_loss})")


def stage_iterations(config: StyleConfig) -> tuple[int, ...]:
    """Steps per stage: `config.scale_iterations`, else `config.iterations` at every scale."""
    scales = config.scales or (None,)
    if config.scale_iterations is not None:
        return tuple(config.scale_iterations)
    return (config.iterations,) * len(scales)


def stylize_pyramid(
    content: Any,
    styles: Any,
    *,
    weights: VGGWeights,
    config: StyleConfig | None = None,
    loss_weights: LossWeights | None = None,
    callback: Callable[[StageProgress], bool | None] | None = None,
    callback_every: int = 10,
) -> PyramidResult:
    """Stylize coarse to fine at the longer sides `config.scales`; see the module docstring.

    content: (H, W, 3) RGB [0, 1] at any size (resized to each scale); styles: one image or
    a list, at their original sizes (resized per stage by `config.style_scale`).
    `config.scales` None runs one stage at the content's own size (like `stylize`, but with
    the styles resized by style_scale). Other arguments as `stylize`; the callback gets a
    `StageProgress` every `callback_every` steps of the whole pyramid (`progress.step`) and
    at the end of each stage, and may stop the whole pyramid by returning False.
    """
    t_start = time.perf_counter()
    config = StyleConfig() if config is None else config
    content, style_list = as_content_and_styles(content, styles)
    scales = config.scales or (max(content.shape[:2]),)
    iterations = stage_iterations(config)
    shapes = tuple(scale_shape(content.shape[:2], s) for s in scales)
    total_steps = sum(iterations)

    stages: list[Result] = []
    style_shapes: list[tuple[tuple[int, int], ...]] = []
    previous: np.ndarray | None = None
    steps_before = 0
    for k, (shape, n_steps) in enumerate(zip(shapes, iterations, strict=True)):
        stage_content = resize_to(content, shape)
        stage_styles = [resize_to(s, style_size_for(shape, s.shape, config.style_scale))
                        for s in style_list]
        style_shapes.append(tuple(s.shape[:2] for s in stage_styles))
        _check_stage_sizes(config, k, shape, style_shapes[-1])
        if previous is not None:
            init: Any = resize_to(previous, shape)
        elif isinstance(config.init, str):
            init = config.init
        else:
            init = resize_to(as_rgb_float32(config.init, "init image"), shape)
        stage_config = config.replace(iterations=n_steps, init=init, scales=None,
                                      scale_iterations=None)
        stage_callback = None
        if callback is not None:
            stage_callback = _stage_callback(callback, k, len(shapes), shape, steps_before,
                                             total_steps, callback_every)
        # Chunks end at multiples of the stage's interval from the stage's start; with
        # gcd(callback_every, steps_before) they also end at every whole-pyramid multiple of
        # callback_every, where the stage callback passes the call on.
        result = stylize(stage_content, stage_styles, weights=weights, config=stage_config,
                         loss_weights=loss_weights, callback=stage_callback,
                         callback_every=math.gcd(callback_every, steps_before))
        # Only host copies cross a stage boundary: this stage's device buffers are gone.
        del stage_content, stage_styles, init
        stages.append(result)
        previous = result.image
        steps_before += result.steps
        if result.stopped is not None:
            break
    return _combine(stages, config, shapes, tuple(style_shapes),
                    total_s=time.perf_counter() - t_start)


def _stage_callback(callback, stage, num_stages, shape, steps_before, total_steps, every):
    """The stage's callback for `stylize`: calls `callback` at the pyramid's steps that are
    multiples of `every`, and at the stage's last step."""

    def stage_callback(progress: Progress) -> bool | None:
        if (steps_before + progress.step) % every and progress.step < progress.total_steps:
            return None
        return callback(StageProgress(progress, stage=stage, num_stages=num_stages,
                                      shape=shape, steps_before=steps_before,
                                      total_steps=total_steps))

    return stage_callback


def _combine(stages: list[Result], config: StyleConfig, shapes, style_shapes, *,
             total_s: float) -> PyramidResult:
    last = stages[-1]
    steps_before = sum(r.steps for r in stages[:-1])
    history = {name: np.concatenate([r.history[name] for r in stages])
               for name in last.history}
    timings = {key: float(sum(r.timings[key] for r in stages)) for key in last.timings}
    timings["total_s"] = total_s
    return PyramidResult(
        image=last.image,
        history=history,
        best_step=steps_before + last.best_step,
        best_loss=last.best_loss,
        timings=timings,
        stopped=last.stopped,
        config=config,
        message=(None if last.message is None else
                 f"stage {len(stages)} of {len(shapes)} ({shapes[len(stages) - 1][0]}x"
                 f"{shapes[len(stages) - 1][1]}): {last.message}"),
        initial_losses=stages[0].initial_losses,
        steps=steps_before + last.steps,
        stages=tuple(stages),
        shapes=shapes,
        style_shapes=style_shapes,
    )


def min_side(config: StyleConfig) -> int:
    """The smallest image side whose features reach the deepest loss layer (2 ** pools)."""
    deepest = max((*config.content_layers, *config.style_layers), key=layer_depth)
    return 2 ** pools_before(deepest)


def _check_stage_sizes(config: StyleConfig, stage: int, shape, style_shapes) -> None:
    need = min_side(config)
    for what, hw in [("image", shape), *(("style image", s) for s in style_shapes)]:
        if min(hw) < need:
            raise ValueError(
                f"stage {stage + 1} (scale {config.scales[stage] if config.scales else 'as is'}"
                f"): the {what} would be {hw[0]}x{hw[1]}, smaller than {need} px on a side, "
                f"the least the loss layers need; raise the smallest scale or style_scale")


__all__ = ["PyramidResult", "StageProgress", "min_side", "stage_iterations", "stylize_pyramid"]
