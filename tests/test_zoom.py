"""jaxstyle.zoom: optax's zoom line search with the objective evaluated at one place.

Against optax's `scale_by_zoom_linesearch` inside `optax.lbfgs`, on small float32 problems
that reach each of its paths (growing steps, the zoom, the give-up fallback, a step into
NaN): the same evaluation counts and iterates. Then what it is for: the compiled update holds
one copy of the objective (optax's two), and under `jax.vmap` each trial evaluates once.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxstyle import optimizers, zoom


def rosenbrock(x):
    return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def wavy(x):  # many local minima: line searches that zoom and give up
    return jnp.sum(jnp.cos(3 * x) + 0.1 * x**2) + 1e3


def barrier(x):  # NaN for x <= 0: trials outside the domain
    return jnp.sum(x - jnp.log(x))


def _run(linesearch, f, x0, iterations):
    """`iterations` L-BFGS steps from x0 with `linesearch`: the iterates, each search's
    trial count, and every value f took (a host callback: trials included)."""
    tx = optax.lbfgs(memory_size=10, linesearch=linesearch)
    values = []

    def logged(x):
        value = f(x)
        jax.debug.callback(lambda v: values.append(float(v)), value)
        return value

    value_and_grad = jax.value_and_grad(logged)

    @jax.jit
    def step(x, state):
        value, grad = value_and_grad(x)
        updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=logged)
        return optax.apply_updates(x, updates), state

    x, state, xs, counts = x0, tx.init(x0), [], []
    for _ in range(iterations):
        x, state = step(x, state)
        xs.append(np.asarray(x))
        counts.append(int(optax.tree.get(state, "num_linesearch_steps")))
    return np.array(xs), counts, values


@pytest.mark.parametrize("f, x0, approx_dec_rtol", [
    (rosenbrock, np.linspace(-1.2, 1.0, 12), 1e-6),
    (wavy, np.random.default_rng(0).normal(size=12), 1e-3),
    (barrier, np.linspace(0.05, 4.0, 12), 1e-6)], ids=["rosenbrock", "wavy", "barrier"])
def test_the_same_searches_as_optax(f, x0, approx_dec_rtol):
    """30 iterations each; wavy's searches zoom (more than 2 trials) and one gives up at the
    cap of 20, a barrier trial's value is NaN: every path of the search is compared."""
    x0 = jnp.asarray(x0, jnp.float32)
    theirs = optax.scale_by_zoom_linesearch(20, initial_guess_strategy="keep",
                                            approx_dec_rtol=approx_dec_rtol)
    ours = zoom.scale_by_zoom_linesearch(20, approx_dec_rtol)
    expected_x, expected_counts, _ = _run(theirs, f, x0, 30)
    got_x, got_counts, values = _run(ours, f, x0, 30)
    assert got_counts == expected_counts
    # The same float32 operations in the same order (bit for bit on the CPU this was written
    # on); the bound leaves room for another CPU contracting a multiply-add differently.
    np.testing.assert_allclose(got_x, expected_x, rtol=1e-5, atol=1e-6)
    if f is wavy:
        assert max(got_counts) == 20 and any(2 < c < 20 for c in got_counts)
    if f is barrier:
        assert any(np.isnan(v) for v in values) and np.all(got_x > 0)


def _convolutions(tx, batched):
    """Convolutions in the compiled update of L-BFGS `tx` for f(x) = sum(conv(x)^2): f and
    its gradient are 2 (the forward and the input-gradient convolution) per copy of f."""
    kernel = jnp.ones((3, 3, 1, 1), jnp.float32)

    def f(x):
        y = jax.lax.conv_general_dilated(x[None, :, :, None], kernel, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(y**2)

    def update(x):
        value, grad = jax.value_and_grad(f)(x)
        return tx.update(grad, tx.init(x), x, value=value, grad=grad, value_fn=f)

    fn = jax.vmap(update) if batched else update
    x = jnp.ones((4, 8, 8) if batched else (8, 8), jnp.float32)
    return jax.jit(fn).lower(x).compile().as_text().count(" convolution(")


def test_the_objective_is_compiled_once_and_evaluated_once_per_trial():
    """2 convolutions at x (the update's own value_and_grad), then 2 per copy of f in the
    line search's loop. optax's copies sit in a cond's two branches (one runs); vmapped (a
    sweep), the cond becomes a select and both run at every trial."""
    ours = optimizers.Optimizer().transformation()  # the default optimizer, "lbfgs"
    theirs = optax.lbfgs()
    for batched in (False, True):
        assert _convolutions(ours, batched) == 2 + 2, batched
        assert _convolutions(theirs, batched) == 2 + 2 * 2, batched
