"""The step loop that drives every optimizer: pure, unbatched functions of a `StepState`.

One step function drives every optimizer (`jaxstyle.optimizers.Optimizer`: the named ones or
any optax transformation) through optax's extra-args interface (`tx.update(grad, opt_state,
x, value=, grad=, value_fn=)`). The state is a pytree (`StepState`) and `chunk` is a pure
function of (params, targets, loss_weights, state, n_steps): `jaxstyle.parallel` maps it over K
settings (vmap or in sequence, sharded over devices) and `jaxstyle.run` drives it from the
host.

Conventions:
- The iterate is the unconstrained (H, W, 3) RGB image; pixels may leave [0, 1] during a
  line search's run (its curvature pairs and line search need the plain objective). Other
  optimizers project onto [0, 1] after every step. Callers clip at output.
- `losses` is (5,) float32 (total, content, style, tv, temporal) of `state.image`
  (`LOSS_NAMES`); the
  optimizer minimizes total itself.
- History row t of a chunk holds the losses of the iterate after that chunk's step t.
- `StepState.evaluations` counts objective evaluations (value and gradient together): the
  cost measure of the optimizers, which spend different numbers of evaluations per step.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxstyle import linesearch
from jaxstyle.losses import LOSS_NAMES, LossSpec, LossWeights, Targets, total_loss
from jaxstyle.optimizers import Optimizer

# Steps per compiled call: a fixed (static) buffer length. The number of steps actually run
# is a traced argument <= this, so neither the callback interval nor the iteration count
# changes the compiled program.
MAX_CHUNK_STEPS = 100


class StepState(NamedTuple):
    """Everything the loop carries: a pytree, so `jax.vmap` batches it (leading axis K).

    image:      (H, W, 3) float32 current iterate x_t (unconstrained for L-BFGS).
    opt_state:  the optax state for the parameter pytree {"image": x, "aux": (5,)}.
    value:      () total(x_t), the minimized objective at x_t.
    grad:       (H, W, 3) gradient of the total at x_t.
    losses:     (5,) (total, content, style, tv, temporal) at x_t (`LOSS_NAMES`).
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
    """(5,) float32 (total, content, style, tv, temporal) of `image`: `total_loss` as one
    vector in `LOSS_NAMES` order.

    Jitted although only ever called inside jitted programs: JAX then traces the network once
    per shape, and the init program and every evaluation inside zoom L-BFGS's line search
    reuse that trace and its derivative (XLA inlines the call: the programs are unchanged).
    """
    total, parts = total_loss(params, targets, loss_weights, image, spec)
    return jnp.stack([total, *(parts[name] for name in LOSS_NAMES[1:])])


def _objective(params: Any, targets: Targets, loss_weights: LossWeights, spec: LossSpec):
    """f(p) = total(p["image"]) + p["aux"] . stop_gradient(losses).

    p["aux"] stays exactly 0 (its updates are zeroed), so f's value is the total, while the
    gradient with respect to aux is the loss vector (`LOSS_NAMES`). This is how the loss parts
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
        rounding = (optim.rounding_tolerance * linesearch.unit_roundoff(spec)
                    if optim.rounding_tolerance > 0 else 0.0)
        tx = optim.transformation(linesearch.approx_dec_rtol(
            targets, loss_weights, state.value, optim.noise_floor, rounding))
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
    history buffer length). Returns (state, history) with history (max_steps, 5) float32:
    row i holds the losses (`LOSS_NAMES`) after step i of this call; rows of steps not run
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
