"""A training run's settings as a frozen dataclass, and the recipe's constants.

Imports neither JAX nor the networks, so that the command line can build its parser (and
check options) quickly; `trainer.train` takes a `TrainConfig`.
"""

from __future__ import annotations

import dataclasses

KINDS = ("sanet", "adain")
COMPUTE_DTYPES = ("float32", "bfloat16")
DEFAULT_BATCH = {"sanet": 5, "adain": 8}  # the reference recipes' batch sizes
# Side multiple and smallest side of a training image per model (jaxstyle.arbitrary.losses).
MULTIPLE = {"sanet": 16, "adain": 8}
MIN_SIDE = {"sanet": 32, "adain": 16}


def check_step_settings(kind: str, learning_rate: float, lr_decay: float,
                        compute_dtype: str) -> None:
    """ValueError for settings the compiled step cannot take (TrainConfig and StepConfig)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got "
                         f"{compute_dtype!r}")
    if not (learning_rate > 0 and lr_decay >= 0):
        raise ValueError("learning_rate must be > 0 and lr_decay >= 0")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run's settings (the reference recipe by default)."""

    kind: str  # "sanet" or "adain"
    steps: int = 160_000  # total steps, counted from the first run of a resumed one
    batch_size: int | None = None  # images per step over all devices; None: 5 SANet, 8 AdaIN
    learning_rate: float = 1e-4  # Adam's step size at step 0
    lr_decay: float = 5e-5  # lr(k) = learning_rate / (1 + lr_decay * k)
    load_size: int = 512  # images resized so that their smaller side is this
    crop_size: int = 256  # random square crops of this side are trained on
    seed: int = 0  # data order and crops; the initial weights when not given
    compute_dtype: str = "float32"  # "bfloat16": accelerators' arithmetic, float32 weights
    log_every: int = 50  # steps between log lines and progress callbacks
    checkpoint_every: int = 1000  # steps between checkpoints (0: only when stopped and at the end)
    keep_checkpoints: int = 3  # checkpoints kept (the newest)
    sample_every: int = 1000  # steps between sample sheets (0: none)
    samples: int = 4  # contents and styles on a sample sheet
    data_threads: int = 0  # threads reading images ahead (0: one per core, at most 16)

    def __post_init__(self):
        check_step_settings(self.kind, self.learning_rate, self.lr_decay, self.compute_dtype)
        for name in ("steps", "load_size", "crop_size", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("checkpoint_every", "sample_every", "samples", "data_threads", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        m, low = MULTIPLE[self.kind], MIN_SIDE[self.kind]
        if self.crop_size % m or self.crop_size < low:
            raise ValueError(f"{self.kind} trains on crops whose side is a multiple of {m}, "
                             f"at least {low}; got crop_size {self.crop_size}")
        if self.load_size < self.crop_size:
            raise ValueError(f"load_size ({self.load_size}) must be at least crop_size "
                             f"({self.crop_size})")

    @property
    def batch(self) -> int:
        return self.batch_size or DEFAULT_BATCH[self.kind]

    def step_config(self):
        """The `step.StepConfig` of these settings (what the compiled step depends on)."""
        from jaxstyle.arbitrary.step import StepConfig

        return StepConfig(self.kind, self.learning_rate, self.lr_decay, self.compute_dtype)
