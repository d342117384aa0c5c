"""Settings on devices (jaxstyle.parallel): padding, mapping in batches, the memory-based
batch size, free memory."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxstyle import memory, parallel
from jaxstyle.losses import LossWeights
from jaxstyle.optimizers import Optimizer

ADAM = Optimizer("adam")


def test_pad_settings():
    lw = LossWeights(*(np.arange(5, dtype=np.float32) + k for k in range(3)))
    padded, k = parallel.pad_settings(lw, 4)
    assert k == 5 and padded.content_weight.shape == (8,)
    np.testing.assert_array_equal(padded.style_weight, [1, 2, 3, 4, 5, 5, 5, 5])
    same, k = parallel.pad_settings(lw, 5)
    assert k == 5 and same is lw


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 9])
def test_map_settings_equals_loop(batch):
    xs = (np.arange(5, dtype=np.float32), np.arange(10, dtype=np.float32).reshape(5, 2))

    def f(a, b):  # a while_loop with a per-member trip count, like the step loop
        return jax.lax.while_loop(lambda c: c[0] < a, lambda c: (c[0] + 1, c[1] * 1.5),
                                  (jnp.zeros((), jnp.float32), b))[1]

    got = jax.jit(lambda x: parallel.map_settings(f, x, batch))(xs)
    expected = np.stack([np.asarray(xs[1][i]) * 1.5 ** i for i in range(5)])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_one_setting_runs_unbatched_and_without_a_loop():
    """K = 1 (whatever the batch size) runs f once, unbatched and outside any loop: its conds
    stay conds (a vmap, even of one, would turn them into selects that run both branches)."""
    xs = (np.full((1,), 3.0, np.float32), np.ones((1, 2), np.float32))

    def f(a, b):
        return jax.lax.cond(a > 2, lambda b: b * 1.5, lambda b: b - 1.0, b)

    for batch in (1, 4):
        mapped = jax.jit(lambda x, batch=batch: parallel.map_settings(f, x, batch))
        text = mapped.lower(xs).compile().as_text()
        assert "conditional(" in text and "while(" not in text, batch
        np.testing.assert_allclose(mapped(xs), np.ones((1, 2)) * 1.5, rtol=1e-6)
    vmapped = jax.jit(jax.vmap(lambda a, b: f(a, b))).lower(*xs).compile().as_text()
    assert "conditional(" not in vmapped  # what the check tells apart


def _compiled(argument, output, alias, temp):
    stats = types.SimpleNamespace(argument_size_in_bytes=argument, output_size_in_bytes=output,
                                  alias_size_in_bytes=alias, temp_size_in_bytes=temp)
    return types.SimpleNamespace(memory_analysis=lambda: stats)


def test_fit_batch_size_from_xla_memory_analysis(monkeypatch):
    cpu = jax.devices("cpu")[0]
    assert memory.available_bytes(cpu) > 0
    compiled = []

    def compile_one():
        compiled.append(1)
        return _compiled(100, 50, 40, 30)

    assert not Optimizer.of(optax.lbfgs()).batches and Optimizer.of(optax.adamw(1e-2)).batches
    # optax's own zoom L-BFGS, or one local setting: 1, without compiling anything to find out.
    assert parallel.fit_batch_size(compile_one, 16, cpu, Optimizer.of(optax.lbfgs())) == (
        1, None)
    assert parallel.fit_batch_size(compile_one, 1, cpu, ADAM) == (1, None)
    assert compiled == []
    # Budget 200: fixed 100 + 50 - 40 = 110, then 30 per setting in flight: 3.
    monkeypatch.setattr(memory, "limit_bytes", lambda device: 200)
    batch, program = parallel.fit_batch_size(compile_one, 8, cpu, ADAM)
    assert batch == 3 and program.memory_analysis().temp_size_in_bytes == 30
    assert parallel.fit_batch_size(compile_one, 2, cpu, Optimizer("lbfgs-nols"))[0] == 2
    # The named zoom L-BFGS batches too: its line search evaluates once per vmapped trial.
    assert parallel.fit_batch_size(compile_one, 8, cpu, Optimizer("lbfgs"))[0] == 3
    monkeypatch.setattr(memory, "limit_bytes", lambda device: 1)
    assert parallel.fit_batch_size(compile_one, 8, cpu, ADAM)[0] == 1  # at least 1
    monkeypatch.setattr(memory, "limit_bytes", lambda device: None)
    assert parallel.fit_batch_size(compile_one, 8, cpu, ADAM)[0] == 8  # unknown: all


def test_estimated_bytes_grows_with_pixels_settings_and_depth():
    layers = ("relu4_2", "relu5_1")
    one = parallel.estimated_bytes(100, 100, layers, ADAM)
    assert parallel.estimated_bytes(200, 200, layers, ADAM) > 3.5 * (
        one - parallel.estimated_bytes(1, 1, layers, ADAM))
    assert parallel.estimated_bytes(100, 100, layers, Optimizer("lbfgs")) > one
    assert parallel.estimated_bytes(100, 100, layers, ADAM, settings=4) > one
    assert parallel.estimated_bytes(100, 100, ("relu2_1",), ADAM) < one
