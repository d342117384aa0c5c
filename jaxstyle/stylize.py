"""`stylize` and `sweep`: a whole run, from images as given to the images a user keeps.

    result = jaxstyle.stylize(content, style, weights=jaxstyle.load_vgg19())
    result.image                         # (H, W, 3) float32 RGB in [0, 1]
    grid = jaxstyle.loss_weight_grid(content=[1, 5], style=[1e2, 1e3, 1e4])
    sweep = jaxstyle.sweep(content, style, weights=weights, loss_weights=grid)
    sweep.images, sweep.contact_sheet()  # (6, H, W, 3), the labelled 2 x 3 sheet

Both are one runner: a `stylize` is a sweep of one setting. The library owns the run's rules:
- sizes (`plan_stages`): the output's longest side is `config.image_size` (the content scaled
  up or down to it; None keeps the content's size) or the last of `config.scales`; each style
  image's longest side is `config.style_scale` times the image's, at every stage, resampled
  from the original style image; sizes the loss layers cannot use, or runs that cannot fit in
  memory, are refused before any work;
- colours (`jaxstyle.color`): `preserve_colors="histogram"` recolours the styles first,
  "luminance" optimizes luminance images and puts the content's chroma back on every image
  returned (progress images too);
- pyramids: with `config.scales`, stage k starts from stage k-1's images upsampled (Lanczos)
  with a fresh optimizer state; `config.init` (or `init=`) starts stage 0;
- the output stays a valid image: L-BFGS optimizes unconstrained pixels (its line search needs
  the plain objective) and its result is clipped to [0, 1]; Adam projects onto [0, 1] after
  every step. The best iterate is kept; a NaN or inf stops that setting with its last good
  image (`Result.nonfinite`, `Result.stopped == "nonfinite"` when all stopped).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxstyle import color, optim, parallel
from jaxstyle.config import LossWeights, StyleConfig
from jaxstyle.grids import WeightGrid, as_settings
from jaxstyle.image import as_rgb, resize_to, scale_shape, style_size_for
from jaxstyle.losses import LossSpec
from jaxstyle.result import LOSS_NAMES, Callback, Result, Stage
from jaxstyle.run import Schedule, StageOutcome, Start, run_stage
from jaxstyle.vgg import VGGWeights, layer_depth, pools_before


def stylize(content: Any, styles: Any, *, weights: VGGWeights, config: StyleConfig | None = None,
            loss_weights: LossWeights | None = None, init: Any = None,
            style_masks: Sequence[Any] | None = None, preserve_colors: str = "none",
            callback: Callback | None = None, callback_every: int = 10,
            devices: Sequence[jax.Device] | None = None) -> Result:
    """Stylize `content` (H, W, 3) RGB [0, 1] with one style image or a list of them.

    Minimizes alpha L_c + beta L_s + gamma TV (`jaxstyle.losses`) over the image for the
    configured steps, starting from `init` (an (h, w, 3) image, resized to each start) or
    `config.init`: "content", "style" (the first style image, resized), "noise" (uniform [0, 1)
    from numpy's default_rng(config.seed)). loss_weights (scalars) override the config's
    alpha, beta, gamma; they are traced, so changing them does not recompile. Neither do
    callback_every nor the step counts. preserve_colors: "none", "luminance" or "histogram".
    style_masks: one mask per style image ((h, w) or (h, w, 1 or 3) in [0, 1], any size:
    resized to each stage's image) saying where each style applies (Gatys et al. 2017's
    guided Grams, `losses.guided_style_layer_loss`); the blend weights are then not used.
    callback(progress: `Progress`) runs every `callback_every` steps and at the end of each
    stage; returning False stops the run (Result.stopped = "interrupted"). devices: where to
    run (default JAX's first device). Raises ValueError for bad arguments and for sizes the
    layers cannot use or memory cannot hold (before any work).
    """
    lw = (config or StyleConfig()).loss_weights if loss_weights is None else loss_weights
    if np.shape(as_settings(lw).content) != (1,) or any(np.ndim(w) for w in lw):
        raise ValueError("stylize takes scalar loss weights; use jaxstyle.sweep for several")
    return _run(content, styles, weights, config, WeightGrid.row(lw), init, style_masks,
                preserve_colors, None, callback, callback_every, devices)


def sweep(content: Any, styles: Any, *, weights: VGGWeights,
          loss_weights: LossWeights | WeightGrid, config: StyleConfig | None = None,
          init: Any = None, style_masks: Sequence[Any] | None = None,
          preserve_colors: str = "none", batch_size: int | None = None,
          callback: Callback | None = None, callback_every: int = 10,
          devices: Sequence[jax.Device] | None = None) -> Result:
    """`stylize` for K loss-weight settings at once, in one compiled program.

    loss_weights: a `WeightGrid` (`loss_weight_grid`, `ratio_weights`) or a `LossWeights` of
    (K,) arrays. Setting i gives what `stylize(..., loss_weights=setting i)` gives (float32
    L-BFGS under vmap may drift from it by rounding). batch_size: settings a device computes
    at once (default: 1 for zoom L-BFGS, else as many as fit in memory: `jaxstyle.parallel`).
    devices: the mesh the K settings are sharded over (default every local device; several
    processes: pass jax.devices(), every process gets every result). Other arguments as
    `stylize`.
    """
    grid = loss_weights if isinstance(loss_weights, WeightGrid) else WeightGrid.row(loss_weights)
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return _run(content, styles, weights, config, grid, init, style_masks, preserve_colors,
                batch_size, callback, callback_every, devices)


def min_side(config: StyleConfig) -> int:
    """The smallest image side whose features reach the deepest loss layer (2 ** pools)."""
    deepest = max((*config.content_layers, *config.style_layers), key=layer_depth)
    return 2 ** pools_before(deepest)


def plan_stages(content_hw: Sequence[int], style_hws: Sequence[Sequence[int]],
                config: StyleConfig, *, settings: int = 1,
                device: jax.Device | None = None) -> tuple[Stage, ...]:
    """The stages of a run for a content image of (h, w) and style images of the given sizes.

    ValueError, before any work, for an image or style image too small for the loss layers
    at some stage, or a last stage whose estimated memory (`parallel.estimated_bytes`, for
    `settings` settings) exceeds what `device` (default JAX's first) can give a run: the
    message names the largest size that fits.
    """
    config.normalized_blend_weights(len(style_hws))  # one blend weight per style image
    side = config.output_side or max(int(content_hw[0]), int(content_hw[1]))
    scales = config.stage_sides(side)
    stages = []
    for scale, iterations in zip(scales, config.stage_iterations(len(scales)), strict=True):
        shape = scale_shape(content_hw, scale)
        style_shapes = tuple(style_size_for(shape, hw, config.style_scale) for hw in style_hws)
        need = min_side(config)
        for what, hw in [("image", shape), *(("style image", s) for s in style_shapes)]:
            if min(hw) < need:
                raise ValueError(
                    f"at {scale} px the {what} would be {hw[0]}x{hw[1]}, smaller than {need} px "
                    "on a side, the least the loss layers need; use a larger size, style_scale "
                    "or smallest scale, or shallower layers")
        stages.append(Stage(shape, style_shapes, iterations))
    _check_memory(stages[-1].shape, config, settings, device or jax.devices()[0])
    return tuple(stages)


def _check_memory(shape: tuple[int, int], config: StyleConfig, settings: int,
                  device: jax.Device) -> None:
    layers = (*config.content_layers, *config.style_layers)
    need = parallel.estimated_bytes(*shape, layers, config.optimizer, settings=settings)
    budget = parallel.memory_budget(device)
    if budget is not None and need > budget:
        fits = math.floor(max(shape) * math.sqrt(budget / need))
        raise ValueError(
            f"a {shape[0]}x{shape[1]} image needs about {need / 2**30:.3g} GiB, more than the "
            f"{budget / 2**30:.3g} GiB a run may use on {device.platform} (half of the free "
            f"memory on a CPU, 80% on an accelerator); the largest that fits is about {fits} px "
            "on its longer side")


def _run(content, styles, weights, config, grid, init, style_masks, preserve_colors,
         batch_size, callback, callback_every, devices) -> Result:
    t_start = time.perf_counter()
    config = StyleConfig() if config is None else config
    if not isinstance(callback_every, (int, np.integer)) or callback_every < 1:
        raise ValueError(f"callback_every must be a positive integer, got {callback_every!r}")
    content = as_rgb(content, "content image")
    styles = [as_rgb(s, f"style image {k}") for k, s in
              enumerate(styles if isinstance(styles, (list, tuple)) else [styles])]
    if not styles and config.style_layers:
        raise ValueError("at least one style image is needed when style layers are set")
    blend = np.asarray(config.normalized_blend_weights(len(styles)), np.float32)
    init = None if init is None else as_rgb(init, "init image")
    masks = None if style_masks is None else as_masks(style_masks, len(styles))
    lws = as_settings(grid.loss_weights)
    k = len(lws.content)
    mesh = parallel.settings_mesh(devices, k)
    stages = plan_stages(content.shape[:2], [s.shape[:2] for s in styles], config,
                         settings=-(-k // mesh.devices.size), device=mesh.devices.flat[0])

    run_content, run_styles = color.prepare(content, styles, preserve_colors)
    if init is not None and preserve_colors == "luminance":
        init = color.luminance_image(init)
    spec = LossSpec.from_config(config, weights.convention)
    opt = optim.OptimSpec.from_config(config)
    outcomes: list[StageOutcome] = []
    steps_before = 0
    for i, stage in enumerate(stages):
        content_here = resize_to(content, stage.shape)  # the chroma "luminance" puts back

        def finish(raw: np.ndarray, content_here=content_here) -> np.ndarray:
            return np.stack([color.finish(im, content_here, preserve_colors) for im in raw])

        start = _start(i, stages, outcomes, init, config, run_content, run_styles)
        schedule = Schedule(i, stages, steps_before, callback, callback_every, finish,
                            sum(o.evaluations for o in outcomes))
        outcome = run_stage(weights.params, spec, opt, resize_to(run_content, stage.shape),
                            [resize_to(s, hw) for s, hw in zip(run_styles, stage.style_shapes,
                                                                strict=True)],
                            blend, None if masks is None else _resize_masks(masks, stage.shape),
                            lws, start, mesh=mesh, batch_size=batch_size, schedule=schedule)
        outcomes.append(outcome)
        steps_before += outcome.steps
        if outcome.interrupted or outcome.nonfinite.all():
            break
    # The images a user gets: colours put back (a next stage started from the raw ones).
    return _result(outcomes, finish(outcomes[-1].images), stages, grid, config,
                   mesh.devices.size, time.perf_counter() - t_start)


def as_masks(masks: Sequence[Any], num_styles: int) -> list[np.ndarray]:
    """Style masks as (h, w) float32 arrays in [0, 1]: (h, w), (h, w, 1) or (h, w, 3) (then
    its luminance) each. ValueError for another count than the style images, another shape,
    values outside [0, 1], or a mask that is 0 everywhere (its style would apply nowhere)."""
    masks = list(masks) if isinstance(masks, (list, tuple)) else [masks]
    if len(masks) != num_styles:
        raise ValueError(f"{len(masks)} style mask(s) given for {num_styles} style image(s): "
                         "one mask per style image")
    out = []
    for k, mask in enumerate(masks):
        m = np.asarray(mask, np.float32)
        if m.ndim == 3 and m.shape[-1] in (1, 3):
            m = m[..., 0] if m.shape[-1] == 1 else color.luminance_image(m)[..., 0]
        if m.ndim != 2 or 0 in m.shape:
            raise ValueError(f"style mask {k} must be an (h, w) array, got shape "
                             f"{np.shape(mask)}")
        if not (np.all(np.isfinite(m)) and m.min() >= 0 and m.max() <= 1):
            raise ValueError(f"style mask {k} must hold values in [0, 1]")
        if not m.max() > 0:
            raise ValueError(f"style mask {k} is black everywhere: its style would apply "
                             "nowhere")
        out.append(m)
    return out


def _resize_masks(masks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """(S, h, w): each mask resized to a stage's image (Lanczos, like the images)."""
    return np.stack([resize_to(np.repeat(m[..., None], 3, -1), shape)[..., 0] for m in masks])


def _start(i: int, stages: tuple[Stage, ...], outcomes: list[StageOutcome], init,
           config: StyleConfig, content: np.ndarray, styles: list[np.ndarray]) -> Start:
    """Where stage i starts: the previous stage's images upsampled (K, h, w, 3) and, for
    Adam with `carry_state`, its optimizer states resized; else the init image or mode at
    this stage's size (None: the content image itself)."""
    shape = stages[i].shape
    keep = (config.optimizer == "adam" and config.carry_state and i + 1 < len(stages))
    if outcomes:
        previous = outcomes[-1]
        opt_state = (None if previous.opt_state is None else
                     optim.resize_opt_state(previous.opt_state, shape))
        return Start(np.stack([resize_to(im, shape) for im in previous.images]), opt_state,
                     keep)
    if init is not None:
        return Start(resize_to(init, shape), keep_state=keep)
    if config.init == "noise":
        return Start(np.random.default_rng(config.seed).random((*shape, 3), np.float32),
                     keep_state=keep)
    if config.init == "style":
        if not styles:
            raise ValueError("init='style' needs a style image")
        return Start(resize_to(styles[0], shape), keep_state=keep)
    return Start(keep_state=keep)


def _result(outcomes: list[StageOutcome], images: np.ndarray, stages: tuple[Stage, ...],
            grid: WeightGrid, config: StyleConfig, devices: int, total_s: float) -> Result:
    last = outcomes[-1]
    steps_before = sum(o.steps for o in outcomes[:-1])
    histories = np.concatenate([o.histories for o in outcomes], axis=1)
    timings = {key: float(sum(o.timings[key] for o in outcomes)) for key in last.timings}
    timings["total_s"] = total_s
    stopped = ("nonfinite" if last.nonfinite.all() else
               "interrupted" if last.interrupted else None)
    total = sum(s.iterations for s in stages)
    message = None
    if stopped == "nonfinite":
        message = _nonfinite_message(steps_before + last.steps, last, len(outcomes))
    elif stopped == "interrupted":
        message = f"stopped by the callback after {steps_before + last.steps} of {total} steps"
    if message is not None and len(stages) > 1:
        h, w = stages[len(outcomes) - 1].shape
        message = f"stage {len(outcomes)} of {len(stages)} ({h}x{w}): {message}"
    return Result(
        images=images,
        grid=grid,
        histories={name: histories[:, :, j].copy() for j, name in enumerate(LOSS_NAMES)},
        best_losses=last.best_losses,
        best_steps=steps_before + last.best_steps,
        evaluations=np.sum([o.evaluations for o in outcomes], axis=0),
        initial_losses={name: outcomes[0].initial_losses[:, j]
                        for j, name in enumerate(LOSS_NAMES)},
        nonfinite=last.nonfinite,
        steps=steps_before + last.steps,
        stage_steps=tuple(o.steps for o in outcomes),
        stage_start_losses=tuple(o.initial_losses[:, 0] for o in outcomes),
        stopped=stopped,
        message=message,
        timings=timings,
        config=config,
        stages=stages,
        batch_size=last.batch_size,
        devices=devices,
    )


def _nonfinite_message(step: int, last: StageOutcome, stages_run: int) -> str:
    if len(last.nonfinite) > 1:
        return (f"the loss became non-finite for every setting by step {step}; kept each "
                "setting's best finite iterate. Check the loss weights, the weights file and "
                "the input images.")
    values = last.histories[0, -1] if last.steps else last.initial_losses[0]
    parts = ", ".join(f"{n}={v:.4g}" for n, v in zip(LOSS_NAMES, values, strict=True))
    if step == 0 and stages_run == 1:  # nothing finite to keep: say so
        where, kept = "at the initial image", "no step was taken"
    else:
        where, kept = f"at step {step}", "kept the best finite iterate"
    return (f"loss or gradient became non-finite {where} ({parts}); {kept}. Check the "
            "weights file, the input images and the loss weights.")
