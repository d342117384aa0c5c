"""Optimizers for the image and the scanned step loop that drives them.

One step function drives every optimizer through optax's extra-args interface
(`tx.update(grad, opt_state, x, value=, grad=, value_fn=)`):
    "lbfgs"       optax.lbfgs(): memory 10, zoom line search (20 steps); the default.
    "lbfgs-nols"  optax.lbfgs(learning_rate=1, linesearch=None): no line search, like
                  jcjohnson's neural-style; cheap under `jax.vmap` (sweeps).
    "adam"        optax.adam(learning_rate).

The state is a pytree (`StepState`) and `chunk` is a pure function of (params, targets,
loss_weights, state, n_steps), so sweeps `jax.vmap` it over loss weights and states, and
pyramids restart it at each scale. `run_chunk` is `chunk` jitted with the state donated;
`drive` is the host loop around the compiled chunks (callbacks, early stops) of stylize and sweep.

Conventions:
- The iterate is the unconstrained (H, W, 3) RGB image; pixels may leave [0, 1] during
  L-BFGS (its curvature pairs and line search need the plain objective). Adam projects onto
  [0, 1] after every step (`OptimSpec.clip`). Callers clip at output.
- Losses: `losses` is (4,) float32 (total, content, style, tv), unscaled, of `state.image`.
  The optimizer minimizes total / `state.scale`: 1 by default; the initial total with
  `OptimSpec(scale_loss=True)`. Measured (64 px, noise init, 40 steps, synthetic weights,
  objective multiplied by 1e-4, 1, 1e4, 1e8): final/initial loss 0.79-0.85% for every
  combination of optimizer (zoom or no line search), scaling on or off and magnitude, with
  no trend: float32's relative precision does not depend on the magnitude, and after the
  first step L-BFGS is scale invariant. So scaling is off by default and kept as an option.
- History row t of a chunk holds the losses of the iterate after that chunk's step t.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxstyle import executables
from jaxstyle.config import LossWeights, StyleConfig
from jaxstyle.losses import LossSpec, Targets, content_features, total_loss

# Order of the entries of `StepState.losses` and of history rows.
LOSS_NAMES = ("total", "content", "style", "tv")
# Steps per compiled call: a fixed (static) buffer length. The number of steps actually run
# is a traced argument <= this, so neither the callback interval nor the iteration count
# changes the compiled program.
MAX_CHUNK_STEPS = 100


@dataclasses.dataclass(frozen=True)
class OptimSpec:
    """The optimizer, static and hashable (a jit static argument).

    name: "lbfgs" (zoom line search), "lbfgs-nols" (step size 1, no line search) or "adam".
    learning_rate: Adam's step size in [0, 1] pixel units (ignored by L-BFGS).
    memory_size: L-BFGS history length.
    linesearch_steps: most function evaluations per zoom line search.
    scale_loss: minimize total / (initial total) instead of total (no measured benefit).
    clip: project the image onto [0, 1] after each step (Adam only: it would make L-BFGS's
        stored line-search value and gradient belong to another point).
    """

    name: str = "lbfgs"
    learning_rate: float = 0.02
    memory_size: int = 10
    linesearch_steps: int = 20
    scale_loss: bool = False
    clip: bool = True

    def __post_init__(self) -> None:
        if self.name not in ("lbfgs", "lbfgs-nols", "adam"):
            raise ValueError(
                f"optimizer must be 'lbfgs', 'lbfgs-nols' or 'adam', got {self.name!r}"
            )
        if self.clip and self.name != "adam":
            # Frozen dataclass: normalize through object.__setattr__.
            object.__setattr__(self, "clip", False)

    @classmethod
    def from_config(cls, config: StyleConfig, **overrides: Any) -> OptimSpec:
        return cls(name=config.optimizer, learning_rate=float(config.learning_rate),
                   **overrides)

    @property
    def uses_linesearch(self) -> bool:
        """True when the optimizer state holds the value and gradient at the new iterate."""
        return self.name == "lbfgs"

    def transformation(self) -> optax.GradientTransformationExtraArgs:
        """The optax transformation (pure functions; build it inside the traced code)."""
        if self.name == "adam":
            return optax.adam(self.learning_rate)
        if self.name == "lbfgs-nols":
            return optax.lbfgs(learning_rate=1.0, memory_size=self.memory_size,
                               linesearch=None)
        return optax.lbfgs(
            memory_size=self.memory_size,
            linesearch=optax.scale_by_zoom_linesearch(
                max_linesearch_steps=self.linesearch_steps, initial_guess_strategy="one"),
        )


class StepState(NamedTuple):
    """Everything the loop carries: a pytree, so `jax.vmap` batches it (leading axis K).

    image:      (H, W, 3) float32 current iterate x_t (unconstrained for L-BFGS).
    opt_state:  the optax state for the parameter pytree {"image": x, "aux": (4,)}.
    value:      () total(x_t) / scale, the minimized objective at x_t.
    grad:       (H, W, 3) gradient of value at x_t.
    losses:     (4,) unscaled (total, content, style, tv) at x_t.
    best_image: (H, W, 3) the iterate with the lowest finite total so far.
    best_loss:  () its unscaled total.
    best_step:  () int32 step at which it was reached (0 = the initial image).
    step:       () int32 t, steps taken.
    ok:         () bool, every loss and gradient so far finite; False stops the loop.
    scale:      () float32 objective divisor (1 when scaling is off).
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
    scale: jax.Array


@functools.partial(jax.jit, static_argnames="spec")
def _loss_vector(params, targets, loss_weights, image, *, spec):
    """(4,) float32 (total, content, style, tv) of `image`: `total_loss` as one vector.

    Jitted (it is always called inside the jitted programs) so that JAX traces the network
    once per shape: the init program and each evaluation inside zoom L-BFGS's line search
    then reuse the cached trace and its derivative instead of retracing the 16 convolutions.
    XLA inlines the nested call, so the compiled programs are unchanged (same step time,
    same 26 convolutions in `init_at_content`). Measured at 128 px: tracing + lowering of
    the L-BFGS programs 0.72 -> 0.49 s, Adam 0.48 -> 0.39 s (chunk trace 0.37 -> 0.07 s).
    """
    total, parts = total_loss(params, targets, loss_weights, image, spec)
    return jnp.stack([total, parts["content"], parts["style"], parts["tv"]])


def _objective(params: Any, targets: Targets, loss_weights: LossWeights, spec: LossSpec,
               scale: jax.Array):
    """f(p) = total(p["image"]) / scale + p["aux"] . stop_gradient(losses).

    p["aux"] stays exactly 0 (its updates are zeroed), so f's value is total / scale, while
    the gradient with respect to aux is the unscaled (total, content, style, tv). This is how
    the loss parts ride along with the gradients that optax's line search evaluates and
    stores: logging them costs no extra forward pass.
    """

    def f(p):
        losses = _loss_vector(params, targets, loss_weights, p["image"], spec=spec)
        return losses[0] / scale + jnp.vdot(p["aux"], jax.lax.stop_gradient(losses))

    return f


def _zero_aux(image_grad: jax.Array) -> dict[str, jax.Array]:
    return {"image": image_grad, "aux": jnp.zeros(len(LOSS_NAMES), jnp.float32)}


def _all_finite(*arrays: jax.Array) -> jax.Array:
    return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(a)) for a in arrays])


def init(params: Any, targets: Targets, loss_weights: LossWeights, image: jax.Array, *,
         spec: LossSpec, optim: OptimSpec) -> StepState:
    """The initial state at `image` (H, W, 3): one loss and gradient evaluation.

    Pure; `init_state` is its jitted form. All leaves are strongly typed (no weak types),
    so `chunk` sees the same types on every call and compiles once.
    """
    image = jnp.asarray(image, jnp.float32)
    one = jnp.ones((), jnp.float32)
    f = _objective(params, targets, loss_weights, spec, one)
    p = _zero_aux(image)
    value, grad = jax.value_and_grad(f)(p)
    losses = grad["aux"]
    if optim.scale_loss:
        # The initial total, when it is a usable divisor; the loss then starts at 1.
        scale = jnp.where(jnp.isfinite(losses[0]) & (losses[0] > 0), losses[0], one)
    else:
        scale = one
    state = StepState(
        image=image,
        opt_state=optim.transformation().init(p),
        value=value / scale,
        grad=grad["image"] / scale,
        losses=losses,
        best_image=image,
        best_loss=losses[0],
        best_step=jnp.zeros((), jnp.int32),
        step=jnp.zeros((), jnp.int32),
        ok=_all_finite(losses, grad["image"]),
        scale=scale,
    )
    return jax.tree.map(lambda a: jnp.asarray(a, a.dtype), state)


def init_at_content(params: Any, targets: Targets, loss_weights: LossWeights, image: jax.Array,
                    *, spec: LossSpec, optim: OptimSpec) -> tuple[Targets, StepState]:
    """(targets, init state) for a run that starts at the content image `image`.

    targets comes without content features (`compute_targets(with_content=False)`); they are
    the features of `image` itself, computed here in the same program as the initial
    evaluation at `image`, whose forward pass XLA's common-subexpression elimination shares
    with them (measured: the program has the 26 convolutions of one evaluation, and costs what
    one evaluation costs). That saves a forward pass of the content image per run, and the
    content loss at the start is exactly 0.
    """
    targets = targets._replace(content=content_features(params, image, spec))
    return targets, init(params, targets, loss_weights, image, spec=spec, optim=optim)


def step(params: Any, targets: Targets, loss_weights: LossWeights, state: StepState, *,
         spec: LossSpec, optim: OptimSpec) -> StepState:
    """One optimizer step from x_t to x_{t+1}; the one step function of every optimizer.

    Evaluations: zoom L-BFGS reads value and gradient at x_{t+1} from its line search;
    Adam and line-search-free L-BFGS evaluate them once. Keeps the best iterate.
    """
    tx = optim.transformation()
    f = _objective(params, targets, loss_weights, spec, state.scale)
    p = _zero_aux(state.image)
    # The direction comes from the image gradient alone (aux's zeroed: aux never moves). The
    # line search gets the full gradient, aux = the losses at x_t, so that its step-size-0
    # fallback (which returns this gradient) also returns the right losses.
    g = _zero_aux(state.grad)
    g_full = {"image": state.grad, "aux": state.losses}
    updates, opt_state = tx.update(g, state.opt_state, p, value=state.value, grad=g_full,
                                   value_fn=f)
    image = optax.apply_updates(p, updates)["image"]
    if optim.clip:
        image = jnp.clip(image, 0.0, 1.0)
    if optim.uses_linesearch:
        value = optax.tree.get(opt_state, "value")
        grad = optax.tree.get(opt_state, "grad")
    else:
        value, grad = jax.value_and_grad(f)(_zero_aux(image))
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
        scale=state.scale,
    )


def chunk(params: Any, targets: Targets, loss_weights: LossWeights, state: StepState,
          n_steps: jax.Array, *, spec: LossSpec, optim: OptimSpec,
          max_steps: int = MAX_CHUNK_STEPS) -> tuple[StepState, jax.Array]:
    """Run min(n_steps, max_steps) steps, stopping early once `state.ok` is False.

    n_steps is traced (a different count does not recompile); max_steps is static (the
    history buffer length). Returns (state, history) with history (max_steps, 4) float32:
    row i holds the unscaled (total, content, style, tv) after step i of this call; rows of
    steps not run are NaN. The number of steps run is the change in `state.step`.

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


@dataclasses.dataclass
class LoopOutcome:
    """What `drive` returns: the final state, the per-chunk history slices, the steps run,
    and whether the callback stopped the loop."""

    state: Any
    history: list[np.ndarray]
    steps: int
    interrupted: bool


def drive(run_chunk: Callable[[Any, np.int32], tuple[Any, Any]], state: Any,
          total_steps: int, *, steps_run: Callable[[Any], int],
          alive: Callable[[Any], bool], take: Callable[[Any, int], np.ndarray],
          notify: Callable[[Any, int], bool | None] | None = None,
          callback_every: int = 10) -> LoopOutcome:
    """The host loop of `stylize` and `sweep`: compiled chunks until `total_steps` are done.

    run_chunk(state, n) -> (state, history) runs n <= MAX_CHUNK_STEPS steps on the device
    (n is an int32 scalar: any value reuses the program). steps_run(state): steps done so far;
    alive(state): False stops the loop (no finite setting left); take(history, ran): the
    history rows of the ran steps, fetched to the host. notify(state, done) is called every
    `callback_every` steps and once at the end unless it stopped the loop; returning False
    stops it. Chunks end at callback points, so a callback sees exactly that step.
    """
    done, last_notified, interrupted = 0, None, False
    rows: list[np.ndarray] = []
    live = alive(state)  # each a device-to-host fetch: asked once per chunk
    while live and not interrupted and done < total_steps:
        n = min(MAX_CHUNK_STEPS, total_steps - done)
        if notify is not None:
            n = min(n, callback_every - done % callback_every)
        state, history = run_chunk(state, np.int32(n))
        ran = steps_run(state) - done
        rows.append(take(history, ran))  # sliced on the host: no new programs
        done += ran
        live = alive(state)
        if not live:
            break
        if notify is not None and (done % callback_every == 0 or done == total_steps):
            last_notified = done
            interrupted = notify(state, done) is False
    if notify is not None and last_notified != done and not interrupted:
        notify(state, done)
    return LoopOutcome(state, rows, done, interrupted)


# Jitted forms. Params, targets and loss weights are arguments (never constants); spec,
# optim and max_steps are static; the state's buffers are donated to the next chunk.
init_state = jax.jit(init, static_argnames=("spec", "optim"))
init_state_at_content = jax.jit(init_at_content, static_argnames=("spec", "optim"))
run_chunk = jax.jit(chunk, static_argnames=("spec", "optim", "max_steps"),
                    donate_argnames=("state",))


def compile_programs(params: Any, targets: Targets, loss_weights: LossWeights,
                     image: Any, *, spec: LossSpec, optim: OptimSpec,
                     max_steps: int = MAX_CHUNK_STEPS, at_content: bool = False
                     ) -> tuple[Any, Any, float]:
    """(init_fn, chunk_fn, compile seconds): the ahead-of-time compiled `init_state` and
    `run_chunk` for these argument shapes (`executables.aot_compile`: cached in the process,
    0.0 seconds when reused, and read from the on-disk store when it is on).

    init_fn(params, targets, loss_weights, image) -> StepState, or with at_content=True
        (`init_at_content`: targets without content features, image the content image)
        -> (targets, StepState).
    chunk_fn(params, targets, loss_weights, state, n_steps) -> (StepState, history); the
    state is donated: do not use it after the call. n_steps: an int32 scalar.
    """
    init_jit = init_state_at_content if at_content else init_state
    init_fn, init_s = executables.aot_compile(init_jit, dict(spec=spec, optim=optim), params,
                                              targets, loss_weights, image)
    if at_content:
        targets, state = executables.output_shapes(init_fn)
    else:
        state = executables.output_shapes(init_fn)
    chunk_fn, chunk_s = executables.aot_compile(
        run_chunk, dict(spec=spec, optim=optim, max_steps=max_steps), params, targets,
        loss_weights, state, jax.ShapeDtypeStruct((), jnp.int32))
    return init_fn, chunk_fn, init_s + chunk_s
