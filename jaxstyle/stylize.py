"""`stylize`: one image, optimized by the compiled step loop of `jaxstyle.optim`.

    result = jaxstyle.stylize(content, style, weights=jaxstyle.load_vgg19())
    result.image  # (H, W, 3) float32 RGB in [0, 1]

Images are taken as given: resizing (max side, style scale) is the job of `jaxstyle.image`
and the CLI. Style images of another size than the content are fine: their Grams are
rescaled to the content's feature sizes (`compute_targets`).

How the output stays a valid image: L-BFGS optimizes unconstrained pixels (its line search
and curvature pairs need the plain objective) and the output is clipped to [0, 1]; Adam
projects onto [0, 1] after every step. Measured at 64 px, 40 steps, synthetic weights: L-BFGS
left 0.1-0.2% of the pixels outside [0, 1] (by at most 0.09) and clipping raised the loss by
0.3-1.1%; Adam with per-step clipping reached a lower loss than unconstrained Adam clipped at
the end (98.6 vs 99.6).

Non-finite losses: the loop stops at the first step whose loss or gradient is NaN or inf, and
`stylize` returns normally with `Result.stopped == "nonfinite"`, `Result.message` saying
what happened, and `Result.image` the best finite iterate (so a caller can always save it).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from jaxstyle import optim
from jaxstyle.config import LossWeights, StyleConfig
from jaxstyle.image import as_content_and_styles, as_rgb_float32, resize_to
from jaxstyle.losses import prepare_targets
from jaxstyle.vgg import VGGWeights


@dataclasses.dataclass(frozen=True)
class Result:
    """The outcome of `stylize`.

    image:        (H, W, 3) float32 RGB in [0, 1]: the best iterate, clipped.
    history:      {"total", "content", "style", "tv"}: float32 arrays, entry t = unweighted
                  losses (total weighted) of the iterate after step t + 1; NaN/inf entries
                  only at the step that stopped a "nonfinite" run.
    best_step:    steps taken to reach the best iterate (0 = the initial image).
    best_loss:    its weighted total (of the unclipped iterate; clipping changes it little).
    timings:      {"targets_s", "compile_s", "steps_s", "total_s"}, seconds. compile_s is the
                  ahead-of-time lowering + compilation of the init and chunk programs (0 when
                  reused from an earlier call); the targets are computed meanwhile, and
                  targets_s is the rest of the setup (start until ready to step, minus
                  compile_s); steps_s includes the initial evaluation (which, from the
                  content init, also yields the content targets).
    stopped:      None (all iterations ran), "interrupted" (the callback returned False) or
                  "nonfinite" (a NaN or inf loss or gradient).
    config:       the StyleConfig used.
    message:      a one-line explanation when stopped, else None.
    initial_losses: the losses of the initial image, same keys as history.
    steps:        steps run (len of each history array).
    """

    image: np.ndarray
    history: dict[str, np.ndarray]
    best_step: int
    best_loss: float
    timings: dict[str, float]
    stopped: str | None
    config: StyleConfig
    message: str | None = None
    initial_losses: dict[str, float] = dataclasses.field(default_factory=dict)
    steps: int = 0


class Progress:
    """What a callback sees: step (steps done), total_steps, losses (dict of floats, latest
    step), best_loss, and image() (the best image so far, fetched to the host on demand).

    image() is valid only during the callback: the next chunk reuses the device buffers.
    """

    def __init__(self, step: int, total_steps: int, losses: dict[str, float],
                 best_loss: float, best_image: jax.Array) -> None:
        self.step = step
        self.total_steps = total_steps
        self.losses = losses
        self.best_loss = best_loss
        self._best_image = best_image

    def image(self) -> np.ndarray:
        """(H, W, 3) float32 RGB in [0, 1]: the best iterate so far, clipped."""
        if self._best_image.is_deleted():
            raise RuntimeError("Progress.image() can only be called during the callback")
        return _to_output(self._best_image)

    def __repr__(self) -> str:
        return (f"Progress(step={self.step}, total_steps={self.total_steps}, "
                f"losses={self.losses}, best_loss={self.best_loss})")


Callback = Callable[[Progress], "bool | None"]


def stylize(
    content: Any,
    styles: Any,
    *,
    weights: VGGWeights,
    config: StyleConfig | None = None,
    loss_weights: LossWeights | None = None,
    callback: Callback | None = None,
    callback_every: int = 10,
) -> Result:
    """Stylize `content` (H, W, 3) RGB [0, 1] with one style image or a list of them.

    Minimizes alpha L_c + beta L_s + gamma TV (see `jaxstyle.losses`) over the image for
    `config.iterations` steps of `config.optimizer`, starting from `config.init`:
      "content"  the content image;
      "style"    the first style image, resized (Lanczos, image.resize_to) to the content's size;
      "noise"    uniform [0, 1) white noise from numpy's default_rng(config.seed);
      an array   an (H, W, 3) image of the content's shape, clipped to [0, 1].
    loss_weights (scalar `LossWeights`) overrides config's alpha/beta/gamma; it is traced,
    so changing it does not recompile. Neither does callback_every nor iterations: the loop
    runs in compiled chunks of at most `optim.MAX_CHUNK_STEPS` steps with a traced length.

    callback(progress) is called every `callback_every` steps and once at the end (unless
    it stopped the run); returning False stops early (Result.stopped = "interrupted").
    Raises ValueError for bad arguments (shapes, non-finite images, negative weights).
    """
    t_start = time.perf_counter()
    config = check_run_arguments(config, callback_every, "stylize")
    content, style_list = as_content_and_styles(content, styles)
    loss_weights = _check_loss_weights(config.loss_weights if loss_weights is None
                                       else loss_weights)
    image0 = initial_image(config, content, style_list)

    # Starting at the content image, the initial evaluation computes the content targets too
    # (one forward pass of the content image fewer: `optim.init_at_content`).
    at_content = isinstance(config.init, str) and config.init == "content"
    # The targets are dispatched, not awaited: the programs compile (from their shapes)
    # while the device computes them.
    spec, targets = prepare_targets(weights, content, style_list, config,
                                    with_content=not at_content)
    opt = optim.OptimSpec.from_config(config)
    init_fn, chunk_fn, compile_s = optim.compile_programs(
        weights.params, targets, loss_weights, image0, spec=spec, optim=opt,
        at_content=at_content)
    jax.block_until_ready(targets)
    t_compiled = time.perf_counter()

    if at_content:
        targets, state = init_fn(weights.params, targets, loss_weights, image0)
    else:
        state = init_fn(weights.params, targets, loss_weights, image0)
    initial = np.asarray(state.losses, np.float64)
    total_steps = config.iterations

    def notify(state: optim.StepState, done: int) -> bool | None:
        return callback(_progress(state, done, total_steps))

    loop = optim.drive(
        lambda state, n: chunk_fn(weights.params, targets, loss_weights, state, n),
        state, total_steps,
        steps_run=lambda state: int(state.step),
        alive=lambda state: bool(state.ok),
        take=lambda history, ran: np.asarray(history)[:ran],
        notify=None if callback is None else notify, callback_every=callback_every)
    state, rows, done = loop.state, loop.history, loop.steps
    stopped = message = None
    if not bool(state.ok):
        stopped = "nonfinite"
        message = _nonfinite_message(done, rows[-1][-1] if done else initial)
    elif loop.interrupted:
        stopped = "interrupted"
        message = f"stopped by the callback after {done} of {total_steps} steps"
    image = _to_output(state.best_image)
    t_end = time.perf_counter()

    hist = np.concatenate(rows) if rows else np.zeros((0, len(optim.LOSS_NAMES)), np.float32)
    return Result(
        image=image,
        history={name: hist[:, k].copy() for k, name in enumerate(optim.LOSS_NAMES)},
        best_step=int(state.best_step),
        best_loss=float(state.best_loss),
        timings={
            "targets_s": t_compiled - t_start - compile_s,
            "compile_s": compile_s,
            "steps_s": t_end - t_compiled,
            "total_s": t_end - t_start,
        },
        stopped=stopped,
        config=config,
        message=message,
        initial_losses=_loss_dict(initial),
        steps=done,
    )


def _progress(state: optim.StepState, done: int, total_steps: int) -> Progress:
    return Progress(done, total_steps, _loss_dict(np.asarray(state.losses)),
                    float(state.best_loss), state.best_image)


def _loss_dict(values: np.ndarray) -> dict[str, float]:
    return {name: float(v) for name, v in zip(optim.LOSS_NAMES, values, strict=True)}


def _nonfinite_message(step: int, losses: np.ndarray) -> str:
    parts = ", ".join(f"{n}={v:.4g}" for n, v in _loss_dict(losses).items())
    if step == 0:  # nothing finite to keep: say so rather than claim a best iterate
        where, kept = "at the initial image", "no step was taken"
    else:
        where, kept = f"at step {step}", "kept the best finite iterate"
    return (f"loss or gradient became non-finite {where} ({parts}); {kept}. Check the "
            "weights file, the input images and the loss weights.")


def _to_output(image: jax.Array) -> np.ndarray:
    return np.clip(np.asarray(image, np.float32), 0.0, 1.0)


def _check_loss_weights(lw: LossWeights) -> LossWeights:
    if not isinstance(lw, LossWeights):
        raise ValueError(f"loss_weights must be a LossWeights, got {type(lw).__name__}")
    out = LossWeights.of(*lw)  # float32, finite and >= 0, or ValueError
    if out.content.shape != ():
        raise ValueError(f"stylize takes scalar loss weights (shape {out.content.shape}); "
                         "use jaxstyle.sweep for several settings")
    return out


def check_run_arguments(config: StyleConfig | None, callback_every: Any, entry: str
                        ) -> StyleConfig:
    """The config (default StyleConfig()) after the checks `stylize` and `sweep` share: one
    size (config.scales, a pyramid, is refused: silently running one scale would drop it)
    and a positive integer callback interval. ValueError naming `entry` otherwise."""
    config = StyleConfig() if config is None else config
    if config.scales:
        raise ValueError(f"{entry} runs at the content image's size: config.scales (a "
                         "pyramid) is for jaxstyle.stylize_pyramid")
    if not isinstance(callback_every, (int, np.integer)) or callback_every < 1:
        raise ValueError(f"callback_every must be a positive integer, got {callback_every!r}")
    return config


def initial_image(config: StyleConfig, content: np.ndarray,
                  styles: Sequence[np.ndarray]) -> np.ndarray:
    """The optimizer's starting image for `config.init` (see `stylize`), (H, W, 3) float32."""
    init = config.init
    if isinstance(init, str):
        if init == "content":
            return content
        if init == "noise":
            return np.random.default_rng(config.seed).random(content.shape, np.float32)
        if init == "style":
            if not styles:
                raise ValueError("init='style' needs a style image")
            return resize_to(styles[0], content.shape[:2])  # the project's one resize
        raise ValueError(f"unknown init {init!r}")
    arr = as_rgb_float32(init, "init image")
    if arr.shape != content.shape:
        raise ValueError(f"init image has shape {arr.shape}, the content image {content.shape}")
    return np.clip(arr, 0.0, 1.0)


__all__ = ["Progress", "Result", "stylize"]
