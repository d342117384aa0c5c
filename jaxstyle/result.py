"""What a run reports: its stages (`Stage`), what a callback sees (`Progress`) and the
outcome (`Result`, with the `summary()` that --json writes). `jaxstyle.run` fills them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxstyle import files
from jaxstyle.config import StyleConfig
from jaxstyle.grids import WeightGrid
from jaxstyle.losses import LossWeights


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
    losses: {"total", "content", "style", "tv", "temporal"}: (K,) arrays at the latest step
        (unweighted parts, weighted total; "temporal" is 0 but for a video's frames);
        shown_losses(): the same without a temporal term that is 0 throughout (what progress
        lines and pages show); best_losses: (K,) lowest finite totals of this stage so far.
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

    def shown_losses(self) -> dict[str, np.ndarray]:
        return {name: v for name, v in self.losses.items() if name != "temporal" or np.any(v)}

    def image(self) -> np.ndarray:
        images = self.images()
        if len(images) != 1:
            raise ValueError(f"{len(images)} settings: use images()")
        return images[0]

    def __repr__(self) -> str:
        return (f"Progress(step={self.step}/{self.total_steps}, stage={self.stage}, "
                f"num_stages={self.num_stages}, shape={self.shape}, "
                f"best_losses={self.best_losses})")


Callback = Callable[[Progress], "bool | None"]


@dataclasses.dataclass(frozen=True)
class Result:
    """The outcome of `stylize` (K = 1) or `sweep` (K settings).

    images:        (K, H, W, 3) float32 RGB in [0, 1]: each setting's best iterate of the
                   last stage run, clipped, colours as asked (`preserve_colors`). A run
                   stopped early returns its current stage's images: see image_stage.
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
    image_stage:   the index (0-based) into `stages` of the stage the images come from: the
                   last stage, unless the run stopped earlier (then the images have that
                   stage's smaller size, `stages[image_stage].shape`).

    A sweep's result indexes as its settings: `result[i]` is setting i's one-setting
    Result (what `stylize` with that setting returns), `len(result)` is K, and iterating
    gives the settings in order.
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
    image_stage: int = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Result:
        """Setting i's result alone (a negative i counts from the end)."""
        k = len(self)
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not -k <= i < k:
            raise IndexError(f"a sweep of {k} setting(s): index {i!r} is out of range")
        i = int(i) % k
        one = slice(i, i + 1)
        lw = LossWeights(*(w[one] for w in self.grid.loss_weights))
        return dataclasses.replace(
            self, images=self.images[one], grid=WeightGrid(lw, ("",), (self.labels[i],)),
            histories={n: v[one] for n, v in self.histories.items()},
            best_losses=self.best_losses[one], best_steps=self.best_steps[one],
            evaluations=self.evaluations[one],
            initial_losses={n: v[one] for n, v in self.initial_losses.items()},
            nonfinite=self.nonfinite[one],
            stage_start_losses=tuple(v[one] for v in self.stage_start_losses),
            config=self.setting_config(i))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

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
        return self.config.replace(**{name: float(w[i]) for name, w in lw._asdict().items()})

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
                **{name: float(w[i]) for name, w in lw._asdict().items()},
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
            "image_stage": self.image_stage,
            "config": self.config.to_dict(),
        }
