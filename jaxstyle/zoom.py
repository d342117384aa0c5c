"""The zoom line search of L-BFGS, with the objective at one place in the compiled program.

The algorithm is optax's `scale_by_zoom_linesearch` (and so its numbers, iterate for iterate):
find a step a along the direction d that satisfies the strong Wolfe conditions (Nocedal and
Wright, Numerical Optimization, 1999, Algorithms 3.5 and 3.6),

    f(x + a d) <= f(x) + c1 a f'(0)        (sufficient decrease, c1 = 1e-4)
    |f'(a)| <= c2 |f'(0)|                  (curvature, c2 = 0.9)

where the decrease test may instead pass by Hager and Zhang's approximate Wolfe condition
(CG_DESCENT, ACM TOMS 2006, eq. 23), f'(a) <= (2 c1 - 1) f'(0), for a step whose value rises
by at most approx_dec_rtol |f(x)|. Each trial first grows the step (x2) until an interval
holding an acceptable step is found, then zooms into it by cubic, quadratic or bisection
interpolation; after `max_linesearch_steps` trials it takes the best step that decreased f.

Why our own: optax writes the two phases as the two branches of a `lax.cond`, and each
branch evaluates f and its gradient. XLA compiles both (every L-BFGS step program held the
VGG pass twice; the compile time hardly depended on it, measured in docs/benchmarks.md,
"Sweeps"), and under `jax.vmap` a cond becomes a select that runs both branches: two
evaluations per trial, which kept L-BFGS sweeps from batching. Here each trial
chooses its step (a scalar cond), evaluates f once, then updates the phase's bookkeeping
(a cond without f). The state is optax's (`optax.ScaleByZoomLinesearchState`), so the
step loop reads value, gradient and counts as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

SLOPE_RTOL = 1e-4  # c1
CURV_RTOL = 0.9  # c2
INCREASE_FACTOR = 2.0  # the search phase's growth per trial
STEPSIZE_PRECISION = 1e-5  # an interval narrower than this ends the zoom (if a step decreased f)


class Search(NamedTuple):
    """One line search's state along `updates` (d) from `params` (x): float32 scalars,
    int32 count, bool flags, gradients shaped like params.

    stepsize, value, grad, slope: the latest trial a, f(x + a d), its gradient, f'(a).
    low/high (with their values and slopes): the interval the zoom narrows; cubic_ref: the
    zoom's third interpolation point. safe_*: the best trial that passed the decrease test
    (the fallback when the curvature test never passes).
    """

    count: jax.Array
    stepsize_guess: jax.Array
    stepsize: jax.Array
    value: jax.Array
    grad: Any
    slope: jax.Array
    value_init: jax.Array
    slope_init: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array
    interval_found: jax.Array
    done: jax.Array
    failed: jax.Array
    low: jax.Array
    value_low: jax.Array
    slope_low: jax.Array
    high: jax.Array
    value_high: jax.Array
    slope_high: jax.Array
    cubic_ref: jax.Array
    value_cubic_ref: jax.Array
    safe_stepsize: jax.Array
    safe_value: jax.Array
    safe_grad: Any


def start(updates: Any, value: jax.Array, grad: Any, stepsize_guess: jax.Array) -> Search:
    """The search's state before its first trial, at x (value, gradient `grad`)."""
    value = jnp.asarray(value, jnp.float32)
    slope = jnp.real(optax.tree.vdot(updates, grad)).astype(jnp.float32)
    zero, inf = jnp.zeros((), jnp.float32), jnp.full((), jnp.inf, jnp.float32)
    false = jnp.zeros((), bool)
    return Search(
        count=jnp.zeros((), jnp.int32), stepsize_guess=jnp.asarray(stepsize_guess, jnp.float32),
        stepsize=zero, value=value, grad=grad, slope=slope, value_init=value,
        slope_init=slope, decrease_error=inf, curvature_error=inf, interval_found=false,
        done=false, failed=false, low=zero, value_low=value, slope_low=slope, high=zero,
        value_high=value, slope_high=slope, cubic_ref=zero, value_cubic_ref=value,
        safe_stepsize=zero, safe_value=value, safe_grad=grad)


def searching(s: Search) -> jax.Array:
    """Whether the search goes on (the while loop's condition)."""
    return ~(s.done | s.failed)


def _cubic_min(a, fa, fpa, b, fb, c, fc):
    """The critical point of the cubic through (a, fa) with slope fpa at a, (b, fb) and
    (c, fc): p(x) = A (x-a)^3 + B (x-a)^2 + fpa (x-a) + fa, x = a + (-B + sqrt(B^2 - 3 A fpa))
    / (3 A). NaN when there is none (the caller then ignores it)."""
    db, dc = b - a, c - a
    denom = (db * dc) ** 2 * (db - dc)
    rhs = jnp.array([fb - fa - fpa * db, fc - fa - fpa * dc])
    m = jnp.array([[dc**2, -(db**2)], [-(dc**3), db**3]])
    big_a, big_b = jnp.dot(m, rhs, precision=jax.lax.Precision.HIGHEST) / denom
    return a + (-big_b + jnp.sqrt(big_b * big_b - 3.0 * big_a * fpa)) / (3.0 * big_a)


def _quad_min(a, fa, fpa, b, fb):
    """The critical point of the quadratic through (a, fa) with slope fpa at a and (b, fb)."""
    db = b - a
    curvature = (fb - fa - fpa * db) / (db**2)
    return a - fpa / (2.0 * curvature)


def _zoom_point(s: Search) -> jax.Array:
    """The zoom's next trial inside [low, high]: the cubic's minimizer if it lies 20% of the
    interval from its ends, else the quadratic's if 10% away, else the midpoint."""
    delta = jnp.abs(s.high - s.low)
    left, right = jnp.minimum(s.high, s.low), jnp.maximum(s.high, s.low)
    cubic = _cubic_min(s.low, s.value_low, s.slope_low, s.high, s.value_high, s.cubic_ref,
                       s.value_cubic_ref)
    use_cubic = (cubic > left + 0.2 * delta) & (cubic < right - 0.2 * delta)
    quad = _quad_min(s.low, s.value_low, s.slope_low, s.high, s.value_high)
    use_quad = ~use_cubic & (quad > left + 0.1 * delta) & (quad < right - 0.1 * delta)
    middle = jnp.where(use_cubic, cubic, s.cubic_ref)
    middle = jnp.where(use_quad, quad, middle)
    return jnp.where(~use_cubic & ~use_quad, (s.low + s.high) / 2.0, middle)


def _trial_step(s: Search) -> jax.Array:
    """The step to try next: the guess first, then x2 per trial until an interval is found,
    then the zoom's point."""
    grown = jnp.where(s.count == 0, s.stepsize_guess, INCREASE_FACTOR * s.stepsize)
    return jax.lax.cond(s.interval_found, _zoom_point, lambda _: grown, s)


def _errors(a, value, slope, s: Search, approx_dec_rtol):
    """How far the trial (a, f(a), f'(a)) is from each Wolfe condition (0: met; inf for
    NaN): the decrease error the smaller of Armijo's and the approximate condition's."""
    armijo = value - s.value_init - SLOPE_RTOL * a * s.slope_init
    approx = jnp.maximum(slope - (2 * SLOPE_RTOL - 1.0) * s.slope_init,
                         value - s.value_init - approx_dec_rtol * jnp.abs(s.value_init))
    decrease = jnp.maximum(jnp.minimum(approx, armijo), 0.0)
    curvature = jnp.maximum(jnp.abs(slope) - CURV_RTOL * jnp.abs(s.slope_init), 0.0)
    return (jnp.where(jnp.isnan(decrease), jnp.inf, decrease),
            jnp.where(jnp.isnan(curvature), jnp.inf, curvature))


def _after_search(s: Search, a, value, grad, slope, decrease, error, max_steps) -> Search:
    """Algorithm 3.5's bookkeeping after a trial: the interval is found when the trial
    failed the decrease test or did not improve on the previous one (it becomes high), or
    its slope turned positive (it becomes low, the previous trial high)."""
    first = s.count == 0
    safe = decrease <= 0.0
    safe_stepsize, safe_value, safe_grad = optax.tree.where(
        safe, [a, value, grad], [s.safe_stepsize, s.safe_value, s.safe_grad])
    high_is_new = (decrease > 0.0) | ((value >= s.value) & ~first)
    low_is_new = (slope >= 0.0) & ~high_is_new
    previous, new = [s.stepsize, s.value, s.slope], [a, value, slope]
    low, value_low, slope_low, high, value_high, slope_high = optax.tree.where(
        low_is_new, new + previous, previous + new)
    done = error <= 0.0
    return s._replace(
        interval_found=high_is_new | low_is_new | done, done=done,
        failed=(s.count + 1 >= max_steps) & ~done,
        low=low, value_low=value_low, slope_low=slope_low, high=high, value_high=value_high,
        slope_high=slope_high, cubic_ref=low, value_cubic_ref=value_low,
        safe_stepsize=safe_stepsize, safe_value=safe_value, safe_grad=safe_grad)


def _after_zoom(s: Search, a, value, grad, slope, decrease, error, max_steps) -> Search:
    """Algorithm 3.6's bookkeeping after a trial inside [low, high]: it replaces high if it
    failed the decrease test or is no lower than low, else it becomes low (and high takes
    the old low where the slope says the minimum lies on that side). The best decreasing
    trial is kept; the zoom gives up when the interval is below STEPSIZE_PRECISION and some
    trial decreased f, or after max_steps trials."""
    too_small = jnp.abs(s.high - s.low) <= STEPSIZE_PRECISION
    better = (decrease <= 0.0) & (value < s.safe_value)
    safe_stepsize, safe_value, safe_grad = optax.tree.where(
        better, [a, value, grad], [s.safe_stepsize, s.safe_value, s.safe_grad])
    high_is_new = (decrease > 0.0) | (value >= s.value_low)
    high_is_low = (slope * (s.high - s.low) >= 0.0) & ~high_is_new
    old_low, old_high, new = ([s.low, s.value_low, s.slope_low],
                              [s.high, s.value_high, s.slope_high], [a, value, slope])
    high = optax.tree.where(high_is_low, old_low,
                            optax.tree.where(high_is_new, new, old_high))
    low = optax.tree.where(~high_is_new, new, old_low)
    cubic_ref, value_cubic_ref = optax.tree.where(high_is_new | high_is_low, old_high[:2],
                                                  old_low[:2])
    done = error <= 0.0
    gave_up = (s.count + 1 >= max_steps) | (too_small & (safe_stepsize > 0.0))
    return s._replace(
        done=done, failed=gave_up & ~done, low=low[0], value_low=low[1], slope_low=low[2],
        high=high[0], value_high=high[1], slope_high=high[2], cubic_ref=cubic_ref,
        value_cubic_ref=value_cubic_ref, safe_stepsize=safe_stepsize, safe_value=safe_value,
        safe_grad=safe_grad)


def _fall_back(s: Search) -> Search:
    """A search that gave up ends at its best decreasing trial (or, when the last trial's
    value was NaN/inf, at that safe trial even if it is step 0)."""
    use_safe = (s.safe_stepsize > 0.0) | jnp.isinf(s.decrease_error)
    stepsize, value, grad = optax.tree.where(
        use_safe, [s.safe_stepsize, s.safe_value, s.safe_grad], [s.stepsize, s.value, s.grad])
    return s._replace(stepsize=stepsize, value=value, grad=grad)


def trial(s: Search, value_and_grad: Callable[[Any], tuple[jax.Array, Any]], params: Any,
          updates: Any, approx_dec_rtol: Any, max_steps: int) -> Search:
    """One trial: choose the step a, evaluate f and its gradient at x + a d (the only
    evaluation in the program), update the phase's bookkeeping."""
    a = _trial_step(s)
    value, grad = value_and_grad(optax.tree.add_scale(params, a, updates))
    value = jnp.asarray(value, jnp.float32)
    slope = jnp.real(optax.tree.vdot(grad, updates)).astype(jnp.float32)
    decrease, curvature = _errors(a, value, slope, s, approx_dec_rtol)
    error = jnp.maximum(decrease, curvature)
    # The bookkeeping compares the trial with the state before it (the previous trial).
    after = jax.lax.cond(
        s.interval_found,
        lambda s: _after_zoom(s, a, value, grad, slope, decrease, error, max_steps),
        lambda s: _after_search(s, a, value, grad, slope, decrease, error, max_steps), s)
    after = after._replace(count=s.count + 1, stepsize=a, value=value, grad=grad,
                           slope=slope, decrease_error=decrease, curvature_error=curvature)
    return jax.lax.cond(after.failed, _fall_back, lambda s: s, after)


def scale_by_zoom_linesearch(max_linesearch_steps: int, approx_dec_rtol: Any = 1e-6
                             ) -> optax.GradientTransformationExtraArgs:
    """optax's `scale_by_zoom_linesearch` (its defaults, initial_guess_strategy="keep"),
    evaluating the objective once per trial: scales the direction by the step found and
    keeps that step (the next search's first guess), f and its gradient there, and the
    trial count in optax's `ScaleByZoomLinesearchState`. `approx_dec_rtol` may be traced."""

    def init(params):
        return optax.ScaleByZoomLinesearchState(
            learning_rate=jnp.ones((), jnp.float32), value=jnp.full((), jnp.inf, jnp.float32),
            grad=optax.tree.zeros_like(params),
            info=optax.ZoomLinesearchInfo(
                num_linesearch_steps=jnp.zeros((), jnp.int32),
                decrease_error=jnp.full((), jnp.inf, jnp.float32),
                curvature_error=jnp.full((), jnp.inf, jnp.float32)))

    def update(updates, state, params, *, value, grad, value_fn, **extra):
        if extra:
            raise TypeError(f"unexpected arguments {sorted(extra)}: the objective takes "
                            "the parameters only")
        value_and_grad = jax.value_and_grad(value_fn)
        s = jax.lax.while_loop(
            searching,
            lambda s: trial(s, value_and_grad, params, updates, approx_dec_rtol,
                            max_linesearch_steps),
            start(updates, value, grad, state.learning_rate))
        new_state = optax.ScaleByZoomLinesearchState(
            learning_rate=s.stepsize, value=s.value, grad=s.grad,
            info=optax.ZoomLinesearchInfo(num_linesearch_steps=s.count,
                                          decrease_error=s.decrease_error,
                                          curvature_error=s.curvature_error))
        return (optax.tree.scale(s.stepsize, updates),
                optax.tree.cast_like(new_state, other_tree=state))

    return optax.GradientTransformationExtraArgs(init, update)
