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

import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxstyle import color, memory, optim, parallel
from jaxstyle.config import StyleConfig
from jaxstyle.files import SettingError
from jaxstyle.grids import WeightGrid, as_settings
from jaxstyle.image import resize_to, scale_shape, style_size_for
from jaxstyle.losses import LOSS_NAMES, LossWeights, Temporal
from jaxstyle.objective import as_masks, as_styles, as_temporal, resize_temporal
from jaxstyle.pixels import as_rgb
from jaxstyle.result import Callback, Result, Stage
from jaxstyle.run import Schedule, StageOutcome, Start, run_stage
from jaxstyle.vgg import VGGWeights, as_weights, layer_depth, pools_before


def stylize(content: Any, styles: Any, *, weights: VGGWeights, config: StyleConfig | None = None,
            loss_weights: LossWeights | None = None, init: Any = None,
            style_masks: Sequence[Any] | None = None, preserve_colors: str = "none",
            callback: Callback | None = None, callback_every: int = 10,
            devices: Sequence[jax.Device] | None = None,
            memory_limit: float | None = None,
            temporal: Temporal | None = None) -> Result:
    """Stylize one content image with one style image or several; returns a `Result`.

    Minimizes total = alpha L_c + beta L_s + gamma TV (`jaxstyle.losses`) over the image
    with the configured optimizer, coarse to fine (`StyleConfig`).

    content         (H, W, 3) RGB image: floats in [0, 1], or uint8 (divided by 255).
    styles          one (h, w, 3) image or a list of them, each its own size (the same
                    sample rules); several are blended by `config.style_blend_weights`.
    weights         the VGG19 weights: `load_vgg19()` (the cached download or a file) or
                    `random_weights()` (offline trials; the images mean nothing).
    config          a `StyleConfig` (default `StyleConfig()`): layers, loss weights,
                    optimizer, steps, output size, stages. help(jaxstyle.StyleConfig).
    loss_weights    a scalar `LossWeights(alpha, beta, gamma)` overriding the config's;
                    traced, so a new value does not recompile (neither do callback_every and
                    the step counts). For several settings use `sweep`.
    init            an (h, w, 3) start image (resized to the first stage), overriding
                    `config.init` ("content", "style": the first style image, "noise":
                    uniform [0, 1) from numpy's default_rng(config.seed)).
    style_masks     one mask per style image ((h, w) or (h, w, 1 or 3), values in [0, 1] or
                    uint8, any size: resized to each stage) saying where each style applies
                    (Gatys et al. 2017's guided Grams); the blend weights are then not used.
    preserve_colors "none", "luminance" (the transfer on luminance, the content's colours
                    put back) or "histogram" (the styles recoloured to the content's colour
                    statistics first).
    callback        callback(progress: `Progress`) every `callback_every` steps (a positive
                    int) and at the end of each stage; returning False stops the run
                    (Result.stopped == "interrupted").
    devices         where to run (default JAX's first device).
    memory_limit    GiB the run may use (default: the available memory less a margin);
                    a run estimated above it is refused before any work.
    temporal        a video frame's earlier results (`losses.Temporal`: (J, H, W, 3) warped
                    images and (J, H, W) weights in [0, 1], at the output's size): adds
                    tau L_t (`losses.temporal_loss`, tau = `config.temporal_weight`) to the
                    objective. None (default): the image objective. Its values are traced:
                    frames of one video, each with new images and weights, share one
                    compiled program (`jaxstyle.video`).

    Raises SettingError (a ValueError naming the argument or field) for bad arguments, and
    for sizes the loss layers cannot use or memory cannot hold, before any work.
    """
    config = _config(config)
    lw = config.loss_weights if loss_weights is None else _loss_weights(loss_weights)
    if any(np.ndim(w) for w in lw):
        raise SettingError("stylize takes scalar loss weights; use jaxstyle.sweep for several",
                           "loss_weights")
    return _run(content, styles, weights, config, WeightGrid.row(lw), init, style_masks,
                preserve_colors, None, callback, callback_every, devices, memory_limit,
                temporal)


def sweep(content: Any, styles: Any, *, weights: VGGWeights,
          loss_weights: LossWeights | WeightGrid, config: StyleConfig | None = None,
          init: Any = None, style_masks: Sequence[Any] | None = None,
          preserve_colors: str = "none", batch_size: int | None = None,
          callback: Callback | None = None, callback_every: int = 10,
          devices: Sequence[jax.Device] | None = None,
          memory_limit: float | None = None) -> Result:
    """`stylize` for K loss-weight settings at once, in one compiled program; returns a
    `Result` of K images, indexable as its settings (`result[i]` is setting i's `Result`).

    loss_weights    a `WeightGrid` (`loss_weight_grid`, `ratio_weights`: the contact sheet's
                    rows and columns) or a `LossWeights` of (K,) arrays (one row).
    batch_size      settings a device computes at once under `jax.vmap` (a positive int;
                    default: as many as fit in memory, `jaxstyle.parallel`).
    devices         the mesh the K settings are sharded over (default every local device;
                    several processes: pass jax.devices(), every process gets every result).
    The other arguments (memory_limit too) are `stylize`'s. Setting i gives what `stylize(...,
    loss_weights=setting i)` gives, up to float32 rounding in another summation order
    (Adam's first steps are sign-like, so its pixels may drift by more where a gradient is
    near zero; the losses agree).
    """
    config = _config(config)
    grid = loss_weights if isinstance(loss_weights, WeightGrid) else WeightGrid.row(
        _loss_weights(loss_weights))
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(
            batch_size, (int, np.integer)) or batch_size < 1):
        raise SettingError(f"batch_size must be a positive integer, got {batch_size!r}",
                           "batch_size")
    return _run(content, styles, weights, config, grid, init, style_masks, preserve_colors,
                batch_size, callback, callback_every, devices, memory_limit, None)


def _config(config: Any) -> StyleConfig:
    if config is None:
        return StyleConfig()
    if not isinstance(config, StyleConfig):
        raise SettingError(f"config must be a StyleConfig (jaxstyle.StyleConfig(...)), got "
                           f"{type(config).__name__}", "config")
    return config


def _loss_weights(loss_weights: Any) -> LossWeights:
    if not isinstance(loss_weights, LossWeights):
        raise SettingError("loss_weights must be a LossWeights(content_weight, style_weight, "
                           f"tv_weight), got {type(loss_weights).__name__}", "loss_weights")
    return loss_weights


def min_side(config: StyleConfig) -> int:
    """The smallest image side whose features reach the deepest loss layer (2 ** pools)."""
    deepest = max((*config.content_layers, *config.style_layers), key=layer_depth)
    return 2 ** pools_before(deepest)


def plan_stages(content_hw: Sequence[int], style_hws: Sequence[Sequence[int]],
                config: StyleConfig, *, settings: int = 1, device: jax.Device | None = None,
                memory_limit: float | None = None) -> tuple[Stage, ...]:
    """The stages of a run for a content image of (h, w) and style images of the given sizes.

    SettingError, before any work, for an image or style image too small for the loss layers
    at some stage, or a last stage whose estimated memory (`plan_memory`, for `settings`
    settings on `device`, default JAX's first) exceeds what the run may use (`memory_limit`
    GiB, else the available memory less a margin): the message names the largest size that
    fits.
    """
    stages = _stages(content_hw, style_hws, config)
    device = device or jax.devices()[0]
    plan = plan_memory(content_hw, style_hws, config, settings=settings, device=device,
                       memory_limit=memory_limit)
    shape = stages[-1].shape

    def bytes_at(side: int) -> int:
        h, w = scale_shape(shape, side) if side else (0, 0)
        return _run_bytes(h, w, config, settings)

    memory.check(plan, f"a {shape[0]}x{shape[1]} image", bytes_at, max(shape), device)
    return stages


def plan_memory(content_hw: Sequence[int], style_hws: Sequence[Sequence[int]],
                config: StyleConfig, *, settings: int = 1, device: jax.Device | None = None,
                memory_limit: float | None = None) -> memory.MemoryPlan:
    """What the run's last stage adds to the process at its peak (`parallel.estimated_bytes`,
    a model measured against real runs) and what it may use on `device`."""
    shape = _stages(content_hw, style_hws, config)[-1].shape
    return memory.plan(_run_bytes(*shape, config, settings), device or jax.devices()[0],
                       memory_limit)


def _run_bytes(height: int, width: int, config: StyleConfig, settings: int) -> int:
    return parallel.estimated_bytes(height, width,
                                    (*config.content_layers, *config.style_layers),
                                    config.optimizer_spec(), settings=settings)


def _stages(content_hw, style_hws, config: StyleConfig) -> tuple[Stage, ...]:
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
                raise SettingError(
                    f"at {scale} px the {what} would be {hw[0]}x{hw[1]}, smaller than {need} px "
                    "on a side, the least the loss layers need; use a larger size, style_scale "
                    "or smallest scale, or shallower layers",
                    "image_size" if what == "image" else "style_scale")
        stages.append(Stage(shape, style_shapes, iterations))
    return tuple(stages)


def _run(content, styles, weights, config, grid, init, style_masks, preserve_colors,
         batch_size, callback, callback_every, devices, memory_limit, temporal) -> Result:
    t_start = time.perf_counter()
    weights = as_weights(weights)
    if isinstance(callback_every, bool) or not isinstance(callback_every, (int, np.integer)) \
            or callback_every < 1:
        raise SettingError(f"callback_every must be a positive integer, got {callback_every!r}",
                           "callback_every")
    color.check_mode(preserve_colors)
    content = as_rgb(content, "content image")
    styles = as_styles(styles, config)
    blend = np.asarray(config.normalized_blend_weights(len(styles)), np.float32)
    init = None if init is None else as_rgb(init, "init image")
    masks = None if style_masks is None else as_masks(style_masks, len(styles))
    lws = as_settings(grid.loss_weights)
    k = len(lws.content_weight)
    mesh = parallel.settings_mesh(devices, k)
    stages = plan_stages(content.shape[:2], [s.shape[:2] for s in styles], config,
                         settings=-(-k // mesh.devices.size), device=mesh.devices.flat[0],
                         memory_limit=memory_limit)
    temporal = None if temporal is None else as_temporal(temporal, stages[-1].shape)
    if temporal is not None and preserve_colors == "luminance":  # compared as optimized
        temporal = temporal._replace(images=np.stack([color.luminance_image(im)
                                                      for im in temporal.images]))

    run_content, run_styles = color.prepare(content, styles, preserve_colors)
    if init is not None and preserve_colors == "luminance":
        init = color.luminance_image(init)
    spec = config.loss_spec(weights.convention)
    opt = config.optimizer_spec()
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
                            lws, start, mesh=mesh, batch_size=batch_size, schedule=schedule,
                            temporal=None if temporal is None else
                            resize_temporal(temporal, stage.shape))
        outcomes.append(outcome)
        steps_before += outcome.steps
        if outcome.interrupted or outcome.nonfinite.all():
            break
    # The images a user gets: colours put back (a next stage started from the raw ones).
    return _result(outcomes, finish(outcomes[-1].images), stages, grid, config,
                   mesh.devices.size, time.perf_counter() - t_start)


def _resize_masks(masks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """(S, h, w): each mask resized to a stage's image (Lanczos, like the images)."""
    return np.stack([resize_to(np.repeat(m[..., None], 3, -1), shape)[..., 0] for m in masks])


def _start(i: int, stages: tuple[Stage, ...], outcomes: list[StageOutcome], init,
           config: StyleConfig, content: np.ndarray, styles: list[np.ndarray]) -> Start:
    """Where stage i starts: the previous stage's images upsampled (K, h, w, 3) and, for
    Adam with `carry_state`, its optimizer states resized; else the init image or mode at
    this stage's size (None: the content image itself)."""
    shape = stages[i].shape
    keep = (config.optimizer_spec().carry_state and config.carry_state
            and i + 1 < len(stages))
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
        image_stage=len(outcomes) - 1,
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
