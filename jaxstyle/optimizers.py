"""Which optimizer moves the image, and how the step loop drives it: `Optimizer`.

The named optimizers (`OPTIMIZERS`, one `NAMED` entry each; a new one is one entry here):
    "lbfgs"       optax.lbfgs(): memory 10, zoom line search (20 steps); the default. Its
                  first line search starts at a probed step and its decrease test tolerates
                  the content loss's float32 floor (`jaxstyle.linesearch`); the line search
                  is optax's, written to evaluate the objective once per trial
                  (`jaxstyle.zoom`).
    "adam"        optax.adam(learning_rate), learning rate 0.02 unless given.
    "lbfgs-nols"  optax.lbfgs(learning_rate=1, linesearch=None): no line search, like
                  jcjohnson's neural-style; cheap under `jax.vmap` (sweeps).
or any optax `GradientTransformation`, e.g. optax.adamw(1e-2) or optax.lbfgs(), used as given:
one whose state holds a line search's value and gradient (optax's L-BFGS) is driven like
"lbfgs" (no second evaluation, no projection onto [0, 1]); any other like "adam".
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxstyle import linesearch, zoom
from jaxstyle.files import SettingError
from jaxstyle.losses import LOSS_NAMES


@dataclasses.dataclass(frozen=True)
class Named:
    """What a named optimizer is: make(optimizer, approx_dec_rtol) -> its optax
    transformation; `line_search`: its state holds the value and gradient at the new
    iterate (zoom L-BFGS); `carry_state`: its state can go on at the next stage's size,
    resized (Adam's moments; L-BFGS's curvature pairs belong to one size); `learning_rate`:
    its default step size, or None when it takes none."""

    make: Callable[[Optimizer, Any], optax.GradientTransformationExtraArgs]
    line_search: bool = False
    carry_state: bool = False
    learning_rate: float | None = None


def _zoom_lbfgs(opt: Optimizer, approx_dec_rtol: Any):
    return optax.lbfgs(
        memory_size=opt.memory_size,
        linesearch=zoom.scale_by_zoom_linesearch(opt.linesearch_steps, approx_dec_rtol))


def _lbfgs_no_linesearch(opt: Optimizer, approx_dec_rtol: Any):
    return optax.lbfgs(learning_rate=1.0, memory_size=opt.memory_size, linesearch=None)


def _adam(opt: Optimizer, approx_dec_rtol: Any):
    return optax.adam(opt.learning_rate)


# The named optimizers, in the order the command line lists them (the first is the default).
NAMED: dict[str, Named] = {
    "lbfgs": Named(_zoom_lbfgs, line_search=True),
    "adam": Named(_adam, carry_state=True, learning_rate=0.02),
    "lbfgs-nols": Named(_lbfgs_no_linesearch),
}
OPTIMIZERS = tuple(NAMED)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """The optimizer of a run: static and hashable (a jit static argument).

    name: one of OPTIMIZERS, or "custom" with `transform` an optax GradientTransformation.
    learning_rate: the step size of an optimizer that takes one (Adam: [0, 1] pixel units,
        0.02 by default); None otherwise. memory_size: L-BFGS history length.
        linesearch_steps: most function evaluations per zoom line search.
    average_decay: None, or d in (0, 1): the state also carries the bias-corrected
        exponential moving average of the iterates (`output`).
    probe_first_step: zoom L-BFGS: `init` evaluates the objective once more, at the first
        L-BFGS step, and the first line search starts at the cubic fit's step
        (`linesearch.first_step_guess`) instead of at that unit step (which overshoots
        from the content image); later line searches start at step 1 either way.
    noise_floor: zoom L-BFGS: c in the decrease test's rounding tolerance
        tau = c * alpha * sum_l 1/2 |P_l|^2 (`linesearch.approx_dec_rtol`); 0 keeps
        optax's 1e-6 relative tolerance. 4e-12: a few times the float32 error of the
        content loss near its minimum (docs/benchmarks.md).
    rounding_tolerance: zoom L-BFGS: k in the decrease test's relative tolerance k u, u the
        unit roundoff of the objective's arithmetic (`linesearch.unit_roundoff`: TF32 on an
        NVIDIA GPU at the default precision, bfloat16, float32): a step whose value rises by
        less than the rounding of the value is judged by its slope (the approximate Wolfe
        conditions, Hager and Zhang 2005). 0 turns it off.
    """

    name: str = "lbfgs"
    transform: Any = None
    learning_rate: float | None = None
    memory_size: int = 10
    linesearch_steps: int = 20
    average_decay: float | None = None
    probe_first_step: bool = True
    noise_floor: float = 4e-12
    rounding_tolerance: float = 1.0

    def __post_init__(self) -> None:
        if self.name == "custom":
            if not isinstance(self.transform, optax.GradientTransformation):
                raise SettingError("a custom optimizer needs an optax GradientTransformation, "
                                   f"got {self.transform!r}", "optimizer")
            if self.learning_rate is not None:
                raise SettingError("learning_rate is for the named optimizers: set the step "
                                   "size in the optax transformation itself", "learning_rate")
            return
        if self.name not in NAMED:
            raise SettingError(f"optimizer must be one of {OPTIMIZERS} or an optax "
                               f"GradientTransformation, got {self.name!r}", "optimizer")
        default = NAMED[self.name].learning_rate
        if self.learning_rate is not None and default is None:
            raise SettingError(f"learning_rate is Adam's step size; {self.name} takes none",
                               "learning_rate")
        if self.learning_rate is None and default is not None:
            object.__setattr__(self, "learning_rate", default)

    @classmethod
    def of(cls, optimizer: Any, **options: Any) -> Optimizer:
        """From a name in OPTIMIZERS or an optax GradientTransformation (`options`: the
        other fields)."""
        if isinstance(optimizer, optax.GradientTransformation):
            return cls("custom", transform=optimizer, **options)
        return cls(optimizer, **options)

    @property
    def label(self) -> str:
        """The name for summaries: the named optimizer's, or "custom"."""
        return self.name

    @functools.cached_property
    def uses_linesearch(self) -> bool:
        """True when the optimizer state holds the value and gradient at the new iterate
        (a zoom line search): the step reads them instead of evaluating again, counts the
        line search's evaluations, and never projects the image (that would make them
        belong to another point)."""
        if self.name != "custom":
            return NAMED[self.name].line_search
        probe = {"image": jax.ShapeDtypeStruct((1, 1, 3), jnp.float32),
                 "aux": jax.ShapeDtypeStruct((len(LOSS_NAMES),), jnp.float32)}
        state = jax.eval_shape(self.transform.init, probe)
        return all(optax.tree.get(state, key, None) is not None
                   for key in ("value", "grad", "num_linesearch_steps"))

    @property
    def batches(self) -> bool:
        """Whether a sweep may vmap several settings of this optimizer: every named one
        (`jaxstyle.zoom` evaluates f once per vmapped trial); not a custom optax line search,
        whose two cond branches both evaluate f once vmapped (it runs one setting at a
        time)."""
        return self.name != "custom" or not self.uses_linesearch

    @property
    def clip(self) -> bool:
        """Project the image onto [0, 1] after each step: every optimizer without a line
        search."""
        return not self.uses_linesearch

    @property
    def carry_state(self) -> bool:
        """Whether its state can go on at the next stage of a coarse-to-fine run, resized."""
        return self.name != "custom" and NAMED[self.name].carry_state

    @property
    def probes(self) -> bool:
        """Whether `init` probes the first step (named zoom L-BFGS only: its line search
        starts at the step held in its state)."""
        return self.name == "lbfgs" and self.probe_first_step

    def transformation(self, approx_dec_rtol: Any = linesearch.DEFAULT_APPROX_DEC_RTOL
                       ) -> optax.GradientTransformationExtraArgs:
        """The optax transformation (pure functions; build it inside the traced code).

        Zoom L-BFGS starts each line search at the step held in its state's `learning_rate`
        (optax's "keep"), which `init` and `step` set; approx_dec_rtol may be traced. Neither
        changes the state's structure.
        """
        if self.name == "custom":
            return optax.with_extra_args_support(self.transform)
        return NAMED[self.name].make(self, approx_dec_rtol)
