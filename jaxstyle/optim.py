"""Optimizers for the image and the step loop that drives them: pure, unbatched functions.

One step function drives every optimizer through optax's extra-args interface
(`tx.update(grad, opt_state, x, value=, grad=, value_fn=)`). `Optimizer` says which and how:
the named ones (`OPTIMIZERS`, one table entry each) or any optax `GradientTransformation`:
    "lbfgs"       optax.lbfgs(): memory 10, zoom line search (20 steps); the default. Its
                  first line search starts at a probed step and its decrease test tolerates
                  the content loss's float32 floor (`jaxstyle.linesearch`).
    "lbfgs-nols"  optax.lbfgs(learning_rate=1, linesearch=None): no line search, like
                  jcjohnson's neural-style; cheap under `jax.vmap` (sweeps).
    "adam"        optax.adam(learning_rate), learning rate 0.02 unless given.
    a transformation, e.g. optax.adamw(1e-2) or optax.lbfgs(): used as given. One whose
                  state holds a line search's value and gradient (optax's L-BFGS) is driven
                  like "lbfgs" (no second evaluation, no projection); any other like "adam".

The state is a pytree (`StepState`) and `chunk` is a pure function of (params, targets,
loss_weights, state, n_steps): `jaxstyle.parallel` maps it over K settings (vmap or in
sequence, sharded over devices) and `jaxstyle.run` drives it from the host.

Conventions:
- The iterate is the unconstrained (H, W, 3) RGB image; pixels may leave [0, 1] during a
  line search's run (its curvature pairs and line search need the plain objective). Other
  optimizers project onto [0, 1] after every step. Callers clip at output.
- `losses` is (4,) float32 (total, content, style, tv) of `state.image`; the optimizer
  minimizes total itself.
- History row t of a chunk holds the losses of the iterate after that chunk's step t.
- `StepState.evaluations` counts objective evaluations (value and gradient together): the
  cost measure of the optimizers, which spend different numbers of evaluations per step.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxstyle import linesearch
from jaxstyle.files import SettingError
from jaxstyle.losses import LossSpec, LossWeights, Targets, total_loss

# Order of the entries of `StepState.losses` and of history rows.
LOSS_NAMES = ("total", "content", "style", "tv")
# Steps per compiled call: a fixed (static) buffer length. The number of steps actually run
# is a traced argument <= this, so neither the callback interval nor the iteration count
# changes the compiled program.
MAX_CHUNK_STEPS = 100


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
        linesearch=optax.scale_by_zoom_linesearch(
            max_linesearch_steps=opt.linesearch_steps, initial_guess_strategy="keep",
            approx_dec_rtol=approx_dec_rtol))


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
    """

    name: str = "lbfgs"
    transform: Any = None
    learning_rate: float | None = None
    memory_size: int = 10
    linesearch_steps: int = 20
    average_decay: float | None = None
    probe_first_step: bool = True
    noise_floor: float = 4e-12

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


class StepState(NamedTuple):
    """Everything the loop carries: a pytree, so `jax.vmap` batches it (leading axis K).

    image:      (H, W, 3) float32 current iterate x_t (unconstrained for L-BFGS).
    opt_state:  the optax state for the parameter pytree {"image": x, "aux": (4,)}.
    value:      () total(x_t), the minimized objective at x_t.
    grad:       (H, W, 3) gradient of the total at x_t.
    losses:     (4,) (total, content, style, tv) at x_t.
    best_image: (H, W, 3) the iterate with the lowest finite total so far.
    best_loss:  () its total.
    best_step:  () int32 step at which it was reached (0 = the initial image).
    step:       () int32 t, steps taken.
    ok:         () bool, every loss and gradient so far finite; False stops the loop.
    evaluations: () int32 objective evaluations (value and gradient) so far, init's
                included: init 1 (2 with zoom L-BFGS's first-step probe); each step
                adds 1 (Adam, L-BFGS without line search) or the zoom line search's
                `num_linesearch_steps` (one evaluation per line-search step). Under
                `jax.vmap` each member counts its own (the batch may compute more).
    average:    None, or with `Optimizer.average_decay` = d the moving average of the
                iterates: (value (H, W, 3), d^n); `output` corrects its bias.
    """

    image: jax.Array
    opt_state: Any
    value: jax.Array
    grad: jax.Array
    losses: jax.Array
    best_image: jax.Array
    best_loss: jax.Array
    best_step: jax.Array
    step: jax.Array
    ok: jax.Array
    evaluations: jax.Array
    average: Any = None


def output(state: StepState) -> jax.Array:
    """The image a run returns: the best iterate, or with averaging the bias-corrected
    average of the iterates, value / (1 - d^n) (Adam's correction; n counts the start)."""
    if state.average is None:
        return state.best_image
    value, decayed = state.average
    return value / (1.0 - decayed)[..., None, None, None]


def _averaged(average: Any, image: jax.Array, decay: float | None,
              keep: jax.Array | bool = False) -> Any:
    """The average after one more iterate: value d + (1 - d) x, d^n d (None: no average);
    unchanged where `keep` (a step that went non-finite adds nothing)."""
    if decay is None:
        return None
    if average is None:  # the start: one update from zero
        return (1.0 - decay) * image, jnp.asarray(decay, jnp.float32)
    value, decayed = average
    return (jnp.where(keep, value, decay * value + (1.0 - decay) * image),
            jnp.where(keep, decayed, decayed * decay))


@functools.partial(jax.jit, static_argnames="spec")
def _loss_vector(params, targets, loss_weights, image, *, spec):
    """(4,) float32 (total, content, style, tv) of `image`: `total_loss` as one vector.

    Jitted although only ever called inside jitted programs: JAX then traces the network once
    per shape, and the init program and every evaluation inside zoom L-BFGS's line search
    reuse that trace and its derivative (XLA inlines the call: the programs are unchanged).
    """
    total, parts = total_loss(params, targets, loss_weights, image, spec)
    return jnp.stack([total, parts["content"], parts["style"], parts["tv"]])


def _objective(params: Any, targets: Targets, loss_weights: LossWeights, spec: LossSpec):
    """f(p) = total(p["image"]) + p["aux"] . stop_gradient(losses).

    p["aux"] stays exactly 0 (its updates are zeroed), so f's value is the total, while the
    gradient with respect to aux is (total, content, style, tv). This is how the loss parts
    ride along with the gradients that optax's line search evaluates and stores: logging them
    costs no extra forward pass.
    """

    def f(p):
        losses = _loss_vector(params, targets, loss_weights, p["image"], spec=spec)
        return losses[0] + jnp.vdot(p["aux"], jax.lax.stop_gradient(losses))

    return f


def _zero_aux(image_grad: jax.Array) -> dict[str, jax.Array]:
    return {"image": image_grad, "aux": jnp.zeros(len(LOSS_NAMES), jnp.float32)}


def _all_finite(*arrays: jax.Array) -> jax.Array:
    return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(a)) for a in arrays])


def init(params: Any, targets: Targets, loss_weights: LossWeights, image: jax.Array, *,
         spec: LossSpec, optim: Optimizer, opt_state: Any = None) -> StepState:
    """The initial state at `image` (H, W, 3): one loss and gradient evaluation, and for
    zoom L-BFGS with `probe_first_step` and no `opt_state` a second one, the probe that sets
    where its first line search starts (stored as the state's `learning_rate`; 1 otherwise).

    opt_state: the optimizer's state to go on from (a previous stage's, `resize_opt_state`);
    None starts it afresh. All leaves are strongly typed (no weak types), so `chunk` sees the
    same types on every call and compiles once.
    """
    image = jnp.asarray(image, jnp.float32)
    f = _objective(params, targets, loss_weights, spec)
    p = _zero_aux(image)
    value, grad = jax.value_and_grad(f)(p)
    losses = grad["aux"]
    probe = optim.probes and opt_state is None
    opt_state = optim.transformation().init(p) if opt_state is None else opt_state
    if optim.name == "lbfgs":
        # Probed here, not in `step`: a cond on the step count there would become a select
        # under jax.vmap and evaluate the probe at every step.
        g = _zero_aux(grad["image"])
        guess = (linesearch.first_step_guess(f, p, value, g, optim.memory_size) if probe
                 else jnp.ones((), jnp.float32))
        opt_state = optax.tree.set(opt_state, learning_rate=guess)
    state = StepState(
        image=image,
        opt_state=opt_state,
        value=value,
        grad=grad["image"],
        losses=losses,
        best_image=image,
        best_loss=losses[0],
        best_step=jnp.zeros((), jnp.int32),
        step=jnp.zeros((), jnp.int32),
        ok=_all_finite(losses, grad["image"]),
        evaluations=jnp.asarray(1 + probe, jnp.int32),
        average=_averaged(None, image, optim.average_decay),
    )
    return jax.tree.map(lambda a: jnp.asarray(a, a.dtype), state)


def step(params: Any, targets: Targets, loss_weights: LossWeights, state: StepState, *,
         spec: LossSpec, optim: Optimizer) -> StepState:
    """One optimizer step from x_t to x_{t+1}; the one step function of every optimizer.

    Evaluations: zoom L-BFGS reads value and gradient at x_{t+1} from its line search;
    Adam and line-search-free L-BFGS evaluate them once. Keeps the best iterate.

    Zoom L-BFGS: the first line search (t = 0) starts at the step `init` stored, every later
    one at step 1; the decrease test's tolerance is `linesearch.approx_dec_rtol` at x_t.
    """
    opt_state = state.opt_state
    if optim.name == "lbfgs":  # the named zoom L-BFGS: its start and tolerance are ours
        tx = optim.transformation(linesearch.approx_dec_rtol(
            targets, loss_weights, state.value, optim.noise_floor))
        start = jnp.where(state.step == 0, optax.tree.get(opt_state, "learning_rate"), 1.0)
        opt_state = optax.tree.set(opt_state, learning_rate=start.astype(jnp.float32))
    else:
        tx = optim.transformation()
    f = _objective(params, targets, loss_weights, spec)
    p = _zero_aux(state.image)
    # The direction comes from the image gradient alone (aux's zeroed: aux never moves). The
    # line search gets the full gradient, aux = the losses at x_t, so that its step-size-0
    # fallback (which returns this gradient) also returns the right losses.
    g = _zero_aux(state.grad)
    g_full = {"image": state.grad, "aux": state.losses}
    updates, opt_state = tx.update(g, opt_state, p, value=state.value, grad=g_full,
                                   value_fn=f)
    image = optax.apply_updates(p, updates)["image"]
    if optim.clip:
        image = jnp.clip(image, 0.0, 1.0)
    if optim.uses_linesearch:
        value = optax.tree.get(opt_state, "value")
        grad = optax.tree.get(opt_state, "grad")
        # One evaluation per line-search step (each step of the zoom, in either phase,
        # evaluates value and gradient once; its fallbacks evaluate nothing).
        evaluations = optax.tree.get(opt_state, "num_linesearch_steps").astype(jnp.int32)
    else:
        value, grad = jax.value_and_grad(f)(_zero_aux(image))
        evaluations = jnp.ones((), jnp.int32)
    losses = grad["aux"]
    if optim.uses_linesearch:
        # Every point the line search tried was NaN/inf and it fell back to step size 0:
        # the run cannot go on. Recorded as a non-finite loss for this step.
        info = optax.tree.get(opt_state, "info")
        blocked = jnp.isinf(info.decrease_error) & (optax.tree.get(opt_state, "learning_rate")
                                                    == 0)
        losses = jnp.where(blocked, jnp.nan, losses)
    ok = state.ok & _all_finite(value, losses, grad["image"])
    better = ok & (losses[0] < state.best_loss)
    new_step = state.step + 1
    return StepState(
        image=image,
        opt_state=opt_state,
        value=value,
        grad=grad["image"],
        losses=losses,
        best_image=jnp.where(better, image, state.best_image),
        best_loss=jnp.where(better, losses[0], state.best_loss),
        best_step=jnp.where(better, new_step, state.best_step),
        step=new_step,
        ok=ok,
        evaluations=state.evaluations + evaluations,
        average=_averaged(state.average, image, optim.average_decay, keep=~ok),
    )


def chunk(params: Any, targets: Targets, loss_weights: LossWeights, state: StepState,
          n_steps: jax.Array, *, spec: LossSpec, optim: Optimizer,
          max_steps: int = MAX_CHUNK_STEPS) -> tuple[StepState, jax.Array]:
    """Run min(n_steps, max_steps) steps, stopping early once `state.ok` is False.

    n_steps is traced (a different count does not recompile); max_steps is static (the
    history buffer length). Returns (state, history) with history (max_steps, 4) float32:
    row i holds (total, content, style, tv) after step i of this call; rows of steps not run
    are NaN. The number of steps run is the change in `state.step`.

    Under `jax.vmap` over loss_weights and state (n_steps unbatched), members that hit a
    non-finite loss freeze while the others go on.
    """
    n = jnp.minimum(jnp.asarray(n_steps, jnp.int32), max_steps)
    history = jnp.full((max_steps, len(LOSS_NAMES)), jnp.nan, jnp.float32)

    def cond(carry):
        i, s, _ = carry
        return (i < n) & s.ok

    def body(carry):
        i, s, h = carry
        s = step(params, targets, loss_weights, s, spec=spec, optim=optim)
        return i + 1, s, h.at[i].set(s.losses)

    _, state, history = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), state,
                                                        history))
    return state, history


def resize_opt_state(opt_state: Any, shape: tuple[int, int]) -> Any:
    """A (K-batched) Adam state moved to images of `shape` (h, w), to go on at the next
    stage of a coarse-to-fine run: the first moments resized bicubically, the second
    bilinearly and kept >= 0; the step count and the loss parts' moments unchanged (so the
    bias correction goes on where it was). Leaves of shape (..., H, W, 3) are the images'."""

    def resize(path, leaf):
        leaf = jnp.asarray(leaf)
        if leaf.ndim < 3 or leaf.shape[-1] != 3:
            return leaf
        second = any(getattr(k, "name", None) == "nu" for k in path)
        out = jax.image.resize(leaf, (*leaf.shape[:-3], *shape, 3),
                               method="linear" if second else "cubic")
        return jnp.maximum(out, 0.0) if second else out

    return jax.tree_util.tree_map_with_path(resize, opt_state)
