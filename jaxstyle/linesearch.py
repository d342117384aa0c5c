"""Zoom L-BFGS's line search made cheap: where its first step starts, and its tolerance.

Its own module because these are line-search numerics, apart from `jaxstyle.optim`'s step loop
(which uses them). Two fixes, both options of `optim.OptimSpec` and both on by default:

- The first step (`probe_first_step`). optax's L-BFGS has no curvature pairs at its first
  iteration, so its direction is the gradient scaled to norm <= 1, d = -min(1, 1/|g|) g, and the
  zoom line search starts at step 1 along it. From the content image that step overshoots the
  line minimum by one to two orders of magnitude and the zoom bisects back (several
  evaluations). One probe evaluation at x + d gives value and slope at step 1; the line search
  then starts at the minimizer of the cubic through (0, f, f') and (1, f_1, f'_1)
  (`cubic_step`), which it usually accepts at once. Later line searches start at step 1:
  L-BFGS's own scaling makes that step right.
- The tolerance (`noise_floor`). optax accepts a step whose value rises by at most
  approx_dec_rtol |f(x)| if its slope has turned (the approximate Wolfe test, Hager-Zhang).
  The content loss alpha/2 sum (F(x) - P)^2 evaluated in float32 carries a rounding floor
  of about c alpha sum_l 1/2 |P_l|^2 (c ~ 1e-12: F's rounding errors squared and summed) at
  every point but the content image itself. Where the objective is tiny against that floor
  (noise content against a noise style, alpha >> beta) no step can pass the sufficient
  decrease test by more than noise and the line search runs to its cap. Raising the
  tolerance to tau / |f(x)| with tau = c alpha sum_l 1/2 |P_l|^2 (when that exceeds optax's
  1e-6) lets the slope decide there; on photos the floor is far below 1e-6 |f| and nothing
  changes.

benchmarks/linesearch.py counts the evaluations, old against new (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxstyle.losses import LossSpec, LossWeights, Targets

# optax's default relative tolerance of the approximate sufficient decrease test.
DEFAULT_APPROX_DEC_RTOL = 1e-6


def first_direction(memory_size: int, grad: Any, params: Any) -> Any:
    """The direction of L-BFGS's first step at `params` (gradient pytree `grad`), as
    `optax.lbfgs` computes it with an empty memory: -min(1, 1/|grad|) grad."""
    lbfgs = optax.scale_by_lbfgs(memory_size=memory_size)
    direction, _ = lbfgs.update(grad, lbfgs.init(params), params)
    return optax.tree.scale(-1.0, direction)


def cubic_step(value: jax.Array, slope: jax.Array, probe_value: jax.Array,
               probe_slope: jax.Array) -> jax.Array:
    """The step in (0, 1] at which the cubic through (0, value, slope) and (1, probe_value,
    probe_slope) has its local minimum; else the quadratic's (value, slope at 0, value at 1)
    minimizer; 1 when neither has one in (0, 1], when slope >= 0 or when the probe is not
    finite (the line search then starts at 1, as without a probe).

    With p(a) = value + slope a + b a^2 + c a^3 and df = probe_value - value:
    c = probe_slope + slope - 2 df, b = 3 df - 2 slope - probe_slope, and p'(a) = 0 at
    a = -slope / (b + sqrt(b^2 - 3 c slope)), the root where p'' = 2 sqrt(...) >= 0.
    """
    df = probe_value - value
    c = probe_slope + slope - 2.0 * df
    b = 3.0 * df - 2.0 * slope - probe_slope
    disc = b * b - 3.0 * c * slope
    den = b + jnp.sqrt(jnp.maximum(disc, 0.0))
    cubic = -slope / jnp.where(den > 0, den, 1.0)
    cubic_ok = (disc >= 0) & (den > 0) & (cubic > 0)
    curvature = df - slope  # b + c: the quadratic's coefficient
    quad = -slope / (2.0 * jnp.where(curvature > 0, curvature, 1.0))
    guess = jnp.where(cubic_ok, cubic, jnp.where(curvature > 0, quad, 1.0))
    usable = ((slope < 0) & jnp.isfinite(probe_value) & jnp.isfinite(probe_slope)
              & jnp.isfinite(guess) & (guess > 0))
    return jnp.where(usable, jnp.minimum(guess, 1.0), 1.0)


def first_step_guess(f: Callable[[Any], jax.Array], params: Any, value: jax.Array,
                     grad: Any, memory_size: int) -> jax.Array:
    """Where L-BFGS's first line search from `params` (value `value` of f there, gradient
    pytree `grad`) starts along its direction d (`first_direction` of `grad`): one evaluation
    of f and its gradient at params + d, then `cubic_step`. () float32. A leaf that must not
    move (optim's aux) must be zero in `grad`, as in the gradient L-BFGS is given."""
    direction = first_direction(memory_size, grad, params)
    probe_value, probe_grad = jax.value_and_grad(f)(optax.tree.add(params, direction))
    slope = optax.tree.vdot(grad, direction)
    probe_slope = optax.tree.vdot(probe_grad, direction)
    return cubic_step(value, slope, probe_value, probe_slope).astype(jnp.float32)


# Unit roundoff (half a unit in the last place, relative) of an operand in each format.
UNIT_ROUNDOFF = {"float32": 2.0**-24, "high": 2.0**-16, "tf32": 2.0**-11, "bfloat16": 2.0**-8}


def unit_roundoff(spec: LossSpec) -> Any:
    """u of the objective's convolutions and products as they run: bfloat16 (compute dtype
    or emulated), TF32 (emulated, or float32 at the default precision on an NVIDIA GPU),
    float32 with the "high" precision's three bfloat16 passes, else float32 (a CPU; TPUs'
    default float32 products read bfloat16). A Python float, or a () array chosen by the
    platform the program runs on (`lax.platform_dependent`)."""
    arithmetic = spec.arithmetic
    if spec.compute_dtype == "bfloat16" or arithmetic.rounding == "bfloat16":
        return UNIT_ROUNDOFF["bfloat16"]
    if arithmetic.rounding == "tf32":
        return UNIT_ROUNDOFF["tf32"]
    if arithmetic.precision == "highest":
        return UNIT_ROUNDOFF["float32"]
    gpu = UNIT_ROUNDOFF["high" if arithmetic.precision == "high" else "tf32"]
    tpu = UNIT_ROUNDOFF["high" if arithmetic.precision == "high" else "bfloat16"]
    return jax.lax.platform_dependent(
        cuda=lambda: jnp.float32(gpu), tpu=lambda: jnp.float32(tpu),
        default=lambda: jnp.float32(UNIT_ROUNDOFF["float32"]))


def approx_dec_rtol(targets: Targets, loss_weights: LossWeights, value: jax.Array,
                    noise_floor: float, rounding: Any = 0.0) -> Any:
    """The approximate-decrease tolerance at a point of objective `value`:
    max(1e-6, tau / |value|, rounding), tau = noise_floor * alpha * sum_l 1/2 |P_l|^2 (P_l the
    content targets: the content loss's float32 floor), `rounding` the objective's relative
    rounding error in the arithmetic it runs in (`Optimizer.rounding_tolerance` times
    `unit_roundoff`). A Python float (optax's default) when both are off, else a () float32
    array (traced: a different value does not recompile)."""
    use_floor = noise_floor > 0 and bool(targets.content)
    if not use_floor and isinstance(rounding, float) and rounding <= 0:
        return DEFAULT_APPROX_DEC_RTOL
    rtol = jnp.maximum(jnp.float32(DEFAULT_APPROX_DEC_RTOL), jnp.asarray(rounding, jnp.float32))
    if use_floor:
        half_p2 = sum(0.5 * jnp.vdot(t, t) for t in targets.content.values())
        floor = noise_floor * loss_weights.content_weight * half_p2 / jnp.abs(value)
        rtol = jnp.where(jnp.isfinite(floor) & (floor > rtol), floor, rtol)
    return rtol.astype(jnp.float32)
