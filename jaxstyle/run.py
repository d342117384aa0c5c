"""The host side of a run: compile, drive the compiled chunks, report progress.

`run_stage` runs one image size of a run for all its K settings (K = 1 for `stylize`): the
style targets, the init and chunk programs of `jaxstyle.parallel`, then chunks of at most
`optim.MAX_CHUNK_STEPS` steps until the stage's steps are done, every setting went
non-finite, or the callback said stop. `jaxstyle.stylize` calls it once per stage and
collects the stages into one `Result`; callbacks see one `Progress` shape either way.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxstyle import optim, optimizers, parallel, runtime
from jaxstyle.losses import LOSS_NAMES, LossSpec, LossWeights, Temporal, compute_targets
from jaxstyle.result import Callback, Progress, Stage


@dataclasses.dataclass
class StageOutcome:
    """What `run_stage` returns: (K, ...) host arrays, images clipped but colours untouched."""

    images: np.ndarray
    histories: np.ndarray  # (K, steps, 5): LOSS_NAMES
    best_losses: np.ndarray
    best_steps: np.ndarray  # within the stage
    evaluations: np.ndarray  # (K,) within the stage, its initial ones included
    initial_losses: np.ndarray  # (K, 5)
    nonfinite: np.ndarray
    steps: int
    interrupted: bool
    timings: dict[str, float]
    batch_size: int
    opt_state: Any = None  # the final optimizer states (K-batched, host), when asked for


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Where a stage sits in its run, for progress: its index, the run's stages, the steps
    before it, the callback with its interval (in steps of the whole run), and each setting's
    evaluations before it ((K,) or 0)."""

    index: int
    stages: tuple[Stage, ...]
    steps_before: int
    callback: Callback | None
    every: int
    finish: Callable[[np.ndarray], np.ndarray]  # (K, h, w, 3) raw -> what the user sees
    evaluations_before: np.ndarray | int = 0

    @property
    def total_steps(self) -> int:
        return sum(s.iterations for s in self.stages)


@dataclasses.dataclass(frozen=True)
class Start:
    """Where a stage starts. image: None (the content image), (h, w, 3) for every setting or
    (K, h, w, 3); opt_state: None (afresh) or the K settings' optimizer states to go on from;
    keep_state: return the final optimizer states (for the next stage to go on)."""

    image: np.ndarray | None = None
    opt_state: Any = None
    keep_state: bool = False


def run_stage(params: Any, spec: LossSpec, opt: optimizers.Optimizer, content: np.ndarray,
              styles: list[np.ndarray], blend: np.ndarray, masks: np.ndarray | None,
              loss_weights: LossWeights, start: Start, *, mesh: Mesh,
              batch_size: int | None, schedule: Schedule,
              temporal: Temporal | None = None) -> StageOutcome:
    """Optimize K settings at one size: content (h, w, 3), styles [(hk, wk, 3)], blend (S,),
    masks None or (S, h, w), loss_weights (K,) host arrays, temporal None or a video frame's
    `Temporal` at (h, w), from `start`. Stops early when every setting is non-finite or the
    callback returns False."""
    t_start = time.perf_counter()
    stage = schedule.stages[schedule.index]
    n_dev = mesh.devices.size
    lws, k = parallel.pad_settings(loss_weights, n_dev)
    k_local = len(lws.content_weight) // n_dev
    image0, opt_state0 = start.image, start.opt_state
    init_from = ("content" if image0 is None else
                 "per_setting" if np.ndim(image0) == 4 else "shared")
    if init_from == "per_setting":
        image0, _ = parallel.pad_settings(image0, n_dev)
    if opt_state0 is not None:
        opt_state0, _ = parallel.pad_settings(opt_state0, n_dev)
    replicated, by_setting = NamedSharding(mesh, P()), NamedSharding(mesh, P(parallel.AXIS))

    with runtime.count_compiles() as compiles:
        params, content, styles, blend, masks = runtime.put(
            (params, content, styles, blend, masks), replicated)
        # Dispatched, not awaited: the programs compile while the device computes them.
        style = compute_targets(params, content, styles, blend, spec, with_content=False,
                                masks=masks)
        if temporal is not None:  # data like the content: replicated, traced
            style = style._replace(temporal=runtime.put(temporal, replicated))
        lws = runtime.put(lws, by_setting)
        if image0 is not None:
            image0 = runtime.put(image0, by_setting if init_from == "per_setting"
                                  else replicated)
        opt_state0 = None if opt_state0 is None else runtime.put(opt_state0, by_setting)
        inputs = (params, content, style, lws, image0, opt_state0)
        batch, run_chunk = _programs(inputs, mesh, spec, opt, init_from, k_local, batch_size)
        targets, state, initial = run_chunk.init(*inputs)
        loop = _drive(lambda s, n: run_chunk.chunk(params, targets, lws, s, n), state, k,
                      initial, stage, schedule, start.keep_state)
    t_end = time.perf_counter()
    t_ready = loop.pop("t_ready")
    loop["timings"] = {"setup_s": t_ready - t_start, "compile_s": compiles.seconds,
                       "steps_s": t_end - t_ready, "total_s": t_end - t_start}
    return StageOutcome(batch_size=batch, **loop)


@dataclasses.dataclass(frozen=True)
class _Compiled:
    init: Any
    chunk: Any


def _programs(inputs, mesh, spec, opt, init_from, k_local, batch_size
              ) -> tuple[int, _Compiled]:
    """(B, the init and chunk programs) for the init program's `inputs`: B as given, else
    `parallel.fit_batch_size` (which compiles the one-setting chunk to read its memory
    analysis)."""
    carry = inputs[-1] is not None

    def get(b: int) -> _Compiled:
        return _Compiled(*parallel.programs(mesh, spec, opt, b, init_from, carry))

    if batch_size is not None:
        return min(int(batch_size), k_local), get(min(int(batch_size), k_local))
    one = get(1)

    def compile_one():
        targets, state, _ = jax.eval_shape(one.init, *inputs)
        return one.chunk.lower(inputs[0], targets, inputs[3], state, np.int32(0)).compile()

    batch, compiled = parallel.fit_batch_size(compile_one, k_local, mesh.devices.flat[0],
                                              opt)
    if batch == 1:
        return 1, one if compiled is None else _Compiled(one.init, compiled)
    return batch, get(batch)


def _drive(run_chunk, state, k: int, initial, stage: Stage, schedule: Schedule,
           keep_state: bool) -> dict:
    """The host loop: compiled chunks until the stage's steps are done, every setting is
    non-finite, or the callback says stop. Chunks end at callback points, so a callback sees
    exactly its step."""
    every, callback, before = schedule.every, schedule.callback, schedule.steps_before
    total = stage.iterations
    done, last_called, interrupted, rows = 0, None, False, []
    t_ready = None
    live = True
    while live and not interrupted and done < total:
        n = min(optim.MAX_CHUNK_STEPS, total - done)
        if callback is not None:
            n = min(n, every - (before + done) % every)
        state, history = run_chunk(state, np.int32(n))
        if t_ready is None:  # the first chunk is dispatched: setup is over
            t_ready = time.perf_counter()
        ran = int(runtime.fetch(state.step).max()) - done
        rows.append(runtime.fetch(history)[:k, :ran])
        done += ran
        live = bool(runtime.fetch(state.ok)[:k].any())
        if live and callback is not None and ((before + done) % every == 0 or done == total):
            last_called = done
            interrupted = callback(_progress(state, before + done, k, schedule)) is False
    if t_ready is None:  # no chunk ran: non-finite at the initial image
        t_ready = time.perf_counter()
    if callback is not None and last_called != done and not interrupted:
        callback(_progress(state, before + done, k, schedule))
    images, best_loss, best_step, ok, evaluations = runtime.fetch(
        (optim.output(state), state.best_loss, state.best_step, state.ok, state.evaluations))
    return {
        "images": np.clip(images[:k].astype(np.float32), 0.0, 1.0),
        "opt_state": (jax.tree.map(lambda a: a[:k], runtime.fetch(state.opt_state))
                      if keep_state else None),
        "histories": (np.concatenate(rows, axis=1) if rows
                      else np.zeros((k, 0, len(LOSS_NAMES)), np.float32)),
        "best_losses": best_loss[:k].astype(np.float64),
        "best_steps": best_step[:k].astype(np.int64),
        "evaluations": evaluations[:k].astype(np.int64),
        "initial_losses": runtime.fetch(initial)[:k].astype(np.float64),
        "nonfinite": ~ok[:k],
        "steps": done,
        "interrupted": interrupted,
        "t_ready": t_ready,
    }


def _progress(state: optim.StepState, step: int, k: int, schedule: Schedule) -> Progress:
    losses, best, evaluations = runtime.fetch((state.losses, state.best_loss,
                                                state.evaluations))
    stage = schedule.stages[schedule.index]

    def images() -> np.ndarray:
        if state.best_image.is_deleted():
            raise RuntimeError("Progress.images() can only be called during the callback")
        raw = np.clip(runtime.fetch(optim.output(state))[:k].astype(np.float32), 0.0, 1.0)
        return schedule.finish(raw)

    return Progress(step, schedule.total_steps, schedule.index, len(schedule.stages),
                    stage.shape, {name: losses[:k, j] for j, name in enumerate(LOSS_NAMES)},
                    best[:k], images,
                    schedule.evaluations_before + evaluations[:k].astype(np.int64))
