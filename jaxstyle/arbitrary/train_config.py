"""A training run's settings as one frozen, hashable dataclass (the reference recipe by
default); `trainer.train` takes it, and `step` compiles the train step for its `step_key()`.
"""

from __future__ import annotations

import dataclasses

from jaxstyle import checks
from jaxstyle.arbitrary.models import DEFAULT_BATCH, MIN_TRAIN_SIDE, MULTIPLE, check_kind
from jaxstyle.files import SettingError
from jaxstyle.runtime import COMPUTE_DTYPES

# The fields the compiled step depends on (the rest shape the loop around it).
STEP_FIELDS = ("kind", "learning_rate", "lr_decay", "compute_dtype", "noise_weight")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run's settings (the reference recipe by default).

    kind: "sanet" or "adain". steps: total steps, counted from the first run of a resumed
    one. batch_size: images per step over all devices (None: 5 for SANet, 8 for AdaIN).
    learning_rate: Adam's step size at step 0; lr_decay: lr(k) = learning_rate /
    (1 + lr_decay k). load_size: images resized so that their smaller side is this;
    crop_size: the side of the random square crops trained on (a multiple of 16 for SANet,
    8 for AdaIN). seed: data order and crops, and the initial weights when none are given.
    compute_dtype: "float32", or "bfloat16" (accelerators' arithmetic; float32 weights,
    optimizer and losses). log_every: steps between log lines and progress callbacks.
    checkpoint_every: steps between checkpoints (0: only when stopped and at the end);
    keep_checkpoints: how many, the newest. sample_every: steps between sample sheets (0:
    none); samples: contents and styles on a sheet. data_threads: threads reading images
    ahead (0: one per core, at most 16). noise_weight: the weight of MCCNet's illumination
    term (Deng et al., AAAI 2021; their code weighs it 3000): the content plus Gaussian noise
    must decode to what the clean content decodes to (`losses.noise_loss`); 0 (default): not
    computed, the reference recipe. It steadies a model on video without video data.
    """

    kind: str
    steps: int = 160_000
    batch_size: int | None = None
    learning_rate: float = 1e-4
    lr_decay: float = 5e-5
    load_size: int = 512
    crop_size: int = 256
    seed: int = 0
    compute_dtype: str = "float32"
    log_every: int = 50
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    sample_every: int = 1000
    samples: int = 4
    data_threads: int = 0
    noise_weight: float = 0.0

    def __post_init__(self):
        check_kind(self.kind)
        checks.choice("compute_dtype", self.compute_dtype, COMPUTE_DTYPES)
        checks.positive("learning_rate", self.learning_rate)
        checks.weights("lr_decay", self.lr_decay)
        checks.weights("noise_weight", checks.number("noise_weight", self.noise_weight))
        for name in ("steps", "load_size", "crop_size", "log_every", "keep_checkpoints"):
            checks.integer(name, getattr(self, name), 1)
        for name in ("checkpoint_every", "sample_every", "samples", "data_threads", "seed"):
            checks.integer(name, getattr(self, name), 0)
        if self.batch_size is not None:
            checks.integer("batch_size", self.batch_size, 1)
        m, low = MULTIPLE[self.kind], MIN_TRAIN_SIDE[self.kind]
        if self.crop_size % m or self.crop_size < low:
            raise SettingError(f"{self.kind} trains on crops whose side is a multiple of {m}, "
                               f"at least {low}; got crop_size {self.crop_size}", "crop_size")
        if self.load_size < self.crop_size:
            raise SettingError(f"load_size {self.load_size} must be at least crop_size "
                               f"{self.crop_size}", "load_size")

    @property
    def batch(self) -> int:
        """Images per step: batch_size, else the recipe's."""
        return self.batch_size or DEFAULT_BATCH[self.kind]

    def step_key(self) -> TrainConfig:
        """This config with every field the compiled step does not read at its default: equal
        for runs that can share one compiled step."""
        return TrainConfig(**{name: getattr(self, name) for name in STEP_FIELDS})
