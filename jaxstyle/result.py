"""What a run reports: its stages (`Stage`), what a callback sees (`Progress`) and the
outcome (`Result`, with the `summary()` that --json writes). `jaxstyle.run` fills them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxstyle import files, optim
from jaxstyle.config import LossWeights, StyleConfig
from jaxstyle.grids import WeightGrid

LOSS_NAMES = optim.LOSS_NAMES


@dataclasses.dataclass(frozen=True)
class Stage:
    """One image size of a run: the image's (h, w), each style image's (h, w), the steps."""

    shape: tuple[int, int]
    style_shapes: tuple[tuple[int, int], ...]
    iterations: int


class Progress:
    """What a callback sees, every `callback_every` steps and at the end of each stage.

    step / total_steps: steps done / planned over the whole run (all stages).
    stage (0-based), num_stages, shape: the current stage and its image (h, w).
    losses: {"total", "content", "style", "tv"}: (K,) arrays at the latest step (unweighted
        parts, weighted total); best_losses: (K,) lowest finite totals of this stage so far.
    evaluations: (K,) int objective evaluations (value and gradient) each setting spent over
        the whole run so far, or None (a caller that does not count them).
    images(): (K, h, w, 3) float32 RGB in [0, 1], the best iterates so far (colours as the
        result will have them); image(): the one image of a single-setting run.
    images() works only during the callback: the next chunk reuses the device buffers.
    """

    def __init__(self, step: int, total_steps: int, stage: int, num_stages: int,
                 shape: tuple[int, int], losses: dict[str, np.ndarray],
                 best_losses: np.ndarray, images: Callable[[], np.ndarray],
                 evaluations: np.ndarray | None = None) -> None:
        self.step, self.total_steps = step, total_steps
        self.evaluations = evaluations
        self.stage, self.num_stages, self.shape = stage, num_stages, shape
        self.losses, self.best_losses = losses, best_losses
        self._images = images

    def images(self) -> np.ndarray:
        return self._images()

    def image(self) -> np.ndarray:
        images = self.images()
        if len(images) != 1:
            raise ValueError(f"{len(images)} settings: use images()")
        return images[0]

    def __repr__(self) -> str:
        return (f"Progress(step={self.step}/{self.total_steps}, stage={self.stage + 1}/"
                f"{self.num_stages}, shape={self.shape}, best_losses={self.best_losses})")


Callback = Callable[[Progress], "bool | None"]


@dataclasses.dataclass(frozen=True)
class Result:
    """The outcome of `stylize` (K = 1) or `sweep` (K settings).

    images:        (K, H, W, 3) float32 RGB in [0, 1]: each setting's best iterate of the
                   last stage run, clipped, colours as asked (`preserve_colors`).
    grid:          the K (alpha, beta, gamma) settings and their rows x cols layout; its
                   `loss_weights` are (K,) float32 arrays, `labels` the file names' parts.
    histories:     {"total", "content", "style", "tv"}: (K, steps) float32 over all stages;
                   entry [i, t] = losses of setting i after step t + 1; NaN after a setting
                   stopped on a non-finite loss. Stages' losses are at their own sizes.
    best_losses:   (K,) weighted totals of the images; best_steps: (K,) the steps at which
                   they were reached, counted from the run's start.
    evaluations:   (K,) int64 objective evaluations (value and gradient together) each setting
                   spent, all stages, each stage's initial ones included
                   (`optim.StepState.evaluations`): the optimizers' common cost unit, as
                   zoom L-BFGS spends a varying number per step.
    initial_losses: {name: (K,)} losses of the first stage's initial image.
    nonfinite:     (K,) bool: settings stopped by a NaN/inf loss or gradient.
    steps:         steps run, all stages; stage_steps: per stage run; stage_start_losses:
                   per stage run, the (K,) totals of its first image (for a later stage: the
                   previous stage's images upsampled, at this stage's targets).
    stopped:       None, "interrupted" (the callback returned False) or "nonfinite" (every
                   setting went non-finite); message: one line saying why, else None.
    timings:       seconds: "setup_s" (until the first chunk was dispatched: targets,
                   tracing, compiling), "compile_s" (of which lowering, compiling
                   or reading JAX's cache), "steps_s", "total_s".
    config, stages: the configuration and the planned stages; batch_size, devices: settings
                   per device at once, and devices used.
    """

    images: np.ndarray
    grid: WeightGrid
    histories: dict[str, np.ndarray]
    best_losses: np.ndarray
    best_steps: np.ndarray
    evaluations: np.ndarray
    initial_losses: dict[str, np.ndarray]
    nonfinite: np.ndarray
    steps: int
    stage_steps: tuple[int, ...]
    stage_start_losses: tuple[np.ndarray, ...]
    stopped: str | None
    message: str | None
    timings: dict[str, float]
    config: StyleConfig
    stages: tuple[Stage, ...]
    batch_size: int
    devices: int

    def __len__(self) -> int:
        return len(self.images)

    @property
    def loss_weights(self) -> LossWeights:
        return self.grid.loss_weights

    @property
    def labels(self) -> tuple[str, ...]:
        return self.grid.labels

    # One-setting views (stylize).
    @property
    def image(self) -> np.ndarray:
        """(H, W, 3): the image of a single-setting run."""
        return self.images[self._single()]

    @property
    def history(self) -> dict[str, np.ndarray]:
        return {name: v[self._single()] for name, v in self.histories.items()}

    @property
    def best_loss(self) -> float:
        return float(self.best_losses[self._single()])

    @property
    def best_step(self) -> int:
        return int(self.best_steps[self._single()])

    def _single(self) -> int:
        if len(self) != 1:
            raise ValueError(f"a sweep of {len(self)} settings: use images, histories, "
                             "best_losses, best_steps")
        return 0

    def setting_config(self, i: int) -> StyleConfig:
        """The config with setting i's loss weights (what made image i)."""
        lw = self.grid.loss_weights
        return self.config.replace(content_weight=float(lw.content[i]),
                                   style_weight=float(lw.style[i]), tv_weight=float(lw.tv[i]))

    def contact_sheet(self, *, title: str | None = None,
                      max_cell_side: int | None = None) -> np.ndarray:
        """The labelled rows x cols sheet of the images (`WeightGrid.sheet`)."""
        return self.grid.sheet(self.images, title=title, max_cell_side=max_cell_side)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: status, steps, evaluations (summed over the settings), stages, timings,
        the config, and per setting its weights, label, grid cell, evaluations and
        best/initial/final losses (NaN and inf as null)."""
        num = files.json_number
        settings = []
        for i, label in enumerate(self.labels):
            lw = self.grid.loss_weights
            settings.append({
                "label": label,
                "content_weight": float(lw.content[i]),
                "style_weight": float(lw.style[i]),
                "tv_weight": float(lw.tv[i]),
                "row": i // self.grid.shape[1],
                "col": i % self.grid.shape[1],
                "best_loss": num(self.best_losses[i]),
                "best_step": int(self.best_steps[i]),
                "evaluations": int(self.evaluations[i]),
                "initial_losses": {k: num(v[i]) for k, v in self.initial_losses.items()},
                "final_losses": {k: num(v[i, -1]) if v.shape[1] else None
                                 for k, v in self.histories.items()},
                "nonfinite": bool(self.nonfinite[i]),
            })
        return {
            "status": self.stopped or "completed",
            "message": self.message,
            "steps": self.steps,
            "evaluations": int(np.sum(self.evaluations)),
            "stages": [{"shape": list(s.shape), "style_shapes": [list(t) for t in s.style_shapes],
                        "iterations": s.iterations, "steps": n,
                        "start_losses": [num(v) for v in start]}
                       for s, n, start in zip(self.stages, self.stage_steps,
                                              self.stage_start_losses, strict=False)],
            "settings": settings,
            "grid": {"rows": list(self.grid.row_labels), "cols": list(self.grid.col_labels),
                     "row_title": self.grid.row_title, "col_title": self.grid.col_title},
            "batch_size": self.batch_size,
            "devices": self.devices,
            "timings": dict(self.timings),
            "config": self.config.to_dict(),
        }
