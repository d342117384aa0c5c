"""stylize() and the step loop: descent, determinism, no recompiles, callbacks, NaN, best iterate.

Every run here has the same shapes (content 32x40, style 40x32), so the L-BFGS and Adam
programs compile once for the module and later runs reuse them.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smooth_image

import jaxstyle
from jaxstyle import optim
from jaxstyle.image import resize_to
from jaxstyle.losses import prepare_targets
from jaxstyle.runtime import count_compiles

ITERATIONS = 10


@pytest.fixture(scope="module")
def images():
    return smooth_image(20, 32, 40), smooth_image(21, 40, 32)


def make_config(optimizer, **changes):
    fields = dict(optimizer=optimizer, iterations=ITERATIONS, init="noise", tv_weight=1e-3)
    return jaxstyle.StyleConfig(**{**fields, **changes})


def run(weights, images, optimizer, *, callback_every=4, **changes):
    calls = []

    def callback(progress):
        calls.append((progress.step, progress.total_steps, dict(progress.losses),
                      progress.best_loss, progress.image(), progress))

    result = jaxstyle.stylize(*images, weights=weights, config=make_config(optimizer, **changes),
                              callback=callback, callback_every=callback_every)
    return result, calls


@pytest.fixture(scope="module")
def lbfgs_run(weights, images):
    return run(weights, images, "lbfgs")


@pytest.fixture(scope="module")
def adam_run(weights, images):
    return run(weights, images, "adam")


@pytest.mark.parametrize("which", ["lbfgs_run", "adam_run"])
def test_optimizers_lower_the_loss(request, which):
    result, _ = request.getfixturevalue(which)
    total = result.history["total"]
    assert result.stopped is None and result.steps == ITERATIONS
    assert all(len(v) == ITERATIONS for v in result.history.values())
    assert np.all(np.isfinite(total))
    assert total[-1] < 0.5 * result.initial_losses["total"]
    assert result.best_loss == pytest.approx(min(total.min(), result.initial_losses["total"]))
    # The total is the weighted sum of the recorded parts.
    c = result.config
    np.testing.assert_allclose(
        total, c.content_weight * result.history["content"]
        + c.style_weight * result.history["style"] + c.tv_weight * result.history["tv"],
        rtol=1e-5)
    assert result.image.shape == (32, 40, 3) and result.image.dtype == np.float32
    assert result.image.min() >= 0.0 and result.image.max() <= 1.0
    assert set(result.timings) == {"targets_s", "compile_s", "steps_s", "total_s"}
    assert result.timings["compile_s"] > 0 and result.timings["steps_s"] > 0


def test_lbfgs_beats_adam_in_the_same_steps(lbfgs_run, adam_run):
    assert lbfgs_run[0].best_loss < adam_run[0].best_loss


def test_callback_progress(lbfgs_run):
    result, calls = lbfgs_run
    assert [c[0] for c in calls] == [4, 8, 10]
    assert all(c[1] == ITERATIONS for c in calls)
    for step, _, losses, best_loss, image, _ in calls:
        assert set(losses) == {"total", "content", "style", "tv"}
        assert losses["total"] == pytest.approx(result.history["total"][step - 1])
        assert best_loss <= losses["total"]
        assert image.shape == (32, 40, 3) and 0 <= image.min() and image.max() <= 1
    np.testing.assert_array_equal(calls[-1][4], result.image)
    # A stale Progress says so: its device buffers went to the next chunk (donation).
    with pytest.raises(RuntimeError, match="during the callback"):
        calls[0][5].image()


def test_same_seed_same_image(weights, images, lbfgs_run):
    again, _ = run(weights, images, "lbfgs")
    np.testing.assert_array_equal(again.image, lbfgs_run[0].image)
    np.testing.assert_array_equal(again.history["total"], lbfgs_run[0].history["total"])
    other = jaxstyle.stylize(*images, weights=weights,
                             config=make_config("lbfgs", seed=1, iterations=1))
    assert other.initial_losses["total"] != pytest.approx(again.initial_losses["total"])


def test_no_recompile_for_weights_interval_or_iterations(weights, images, lbfgs_run):
    with count_compiles() as events:  # the listener works: a new program is counted
        jax.jit(lambda x: x * 3.25 + 1)(np.ones(7, np.float32)).block_until_ready()
    assert len(events) == 1
    steps = []
    with count_compiles() as events:
        result = jaxstyle.stylize(
            *images, weights=weights, config=make_config("lbfgs", iterations=7),
            loss_weights=jaxstyle.LossWeights.of(3.0, 50.0, 0.1),
            callback=lambda p: steps.append(p.step), callback_every=3)
    assert events == []
    assert result.timings["compile_s"] == 0.0
    assert steps == [3, 6, 7] and result.steps == 7
    assert result.initial_losses["total"] != pytest.approx(lbfgs_run[0].initial_losses["total"])


def test_callback_false_stops_early(weights, images):
    result = jaxstyle.stylize(*images, weights=weights, config=make_config("lbfgs"),
                              callback=lambda p: p.step < 4, callback_every=2)
    assert result.stopped == "interrupted" and "after 4 of 10" in result.message
    assert result.steps == 4 and len(result.history["total"]) == 4
    assert result.best_step <= 4
    assert result.best_loss == pytest.approx(min(result.history["total"].min(),
                                                 result.initial_losses["total"]))


def test_best_iterate_is_kept(weights, images):
    """Adam from the content image first moves away from it (a worse loss at every step
    here), so the best iterate is the initial image, not the last one."""
    content = images[0]
    result = jaxstyle.stylize(*images, weights=weights,
                              config=make_config("adam", init=content, iterations=6))
    assert result.history["total"].min() > result.initial_losses["total"]  # the premise
    assert result.best_step == 0
    assert result.best_loss == pytest.approx(result.initial_losses["total"])
    np.testing.assert_array_equal(result.image, content)


def poisoned(weights):
    params = dict(weights.params)
    bias = np.array(params["conv3_1"]["bias"])
    bias[0] = np.nan
    params["conv3_1"] = {**params["conv3_1"], "bias": jnp.asarray(bias)}
    return jaxstyle.VGGWeights(params, weights.convention, source="poisoned")


def test_nonfinite_at_start_returns_the_initial_image(weights, images, lbfgs_run):
    bad = poisoned(weights)
    with count_compiles() as events:
        result = jaxstyle.stylize(*images, weights=bad, config=make_config("lbfgs"))
    assert events == []
    assert result.stopped == "nonfinite"
    assert "non-finite at the initial image" in result.message
    assert result.steps == 0 and result.best_step == 0
    noise = np.random.default_rng(0).random((32, 40, 3), np.float32)
    np.testing.assert_array_equal(result.image, noise)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_nonfinite_mid_run_keeps_the_last_good_best(weights, images, lbfgs_run, adam_run,
                                                     optimizer):
    """A loss that turns inf after 3 good steps: the loop stops at once, best kept."""
    config = make_config(optimizer)
    spec, targets = prepare_targets(weights, images[0], images[1], config)
    lw = config.loss_weights
    x0 = np.random.default_rng(0).random((32, 40, 3), np.float32)
    with count_compiles() as events:
        init_fn, chunk_fn, seconds = optim.compile_programs(
            weights.params, targets, lw, x0, spec=spec, optim=optim.OptimSpec.from_config(config))
        state = init_fn(weights.params, targets, lw, x0)
        state, _ = chunk_fn(weights.params, targets, lw, state, np.int32(3))
    assert events == [] and seconds == 0.0  # shared with the stylize runs above
    best, best_step = np.array(state.best_image), int(state.best_step)
    assert best_step == 3
    bad = jaxstyle.LossWeights(jnp.asarray(np.inf, jnp.float32), lw.style, lw.tv)
    state, history = chunk_fn(weights.params, targets, bad, state, np.int32(5))
    history = np.asarray(history)
    assert not bool(state.ok) and int(state.step) == 4
    assert not np.isfinite(history[0, 0]) and np.all(np.isnan(history[1:]))
    assert int(state.best_step) == best_step
    np.testing.assert_array_equal(np.asarray(state.best_image), best)


def test_bad_arguments(weights, images):
    content, style = images
    with pytest.raises(ValueError, match="callback_every"):
        jaxstyle.stylize(content, style, weights=weights, callback_every=0)
    with pytest.raises(ValueError, match="init image has shape"):
        jaxstyle.stylize(content, style, weights=weights,
                         config=make_config("lbfgs", init=np.zeros((8, 8, 3), np.float32)))
    with pytest.raises(ValueError, match="content image contains NaN"):
        jaxstyle.stylize(np.full_like(content, np.nan), style, weights=weights)
    with pytest.raises(ValueError, match="scalar loss weights"):
        jaxstyle.stylize(content, style, weights=weights,
                         loss_weights=jaxstyle.LossWeights.of([1, 2], 1, 0))
    with pytest.raises(ValueError, match="RGB"):
        jaxstyle.stylize(content[..., :2], style, weights=weights)
    with pytest.raises(ValueError, match="stylize_pyramid"):
        jaxstyle.stylize(content, style, weights=weights,
                         config=make_config("lbfgs", scales=(16, 32)))


def test_vmap_over_loss_weights_equals_single_runs(weights, images, adam_run):
    """The chunk is a pure function of a pytree state: vmap over (loss weights, state)."""
    config = make_config("adam")
    spec, targets = prepare_targets(weights, images[0], images[1], config)
    opt = optim.OptimSpec.from_config(config)
    x0 = np.random.default_rng(0).random((32, 40, 3), np.float32)
    settings = [jaxstyle.LossWeights.of(1.0, 1e3, 1e-3), jaxstyle.LossWeights.of(5.0, 1e2, 0.0)]
    init_fn, chunk_fn, _ = optim.compile_programs(weights.params, targets, settings[0], x0,
                                                  spec=spec, optim=opt)
    singles = []
    for lw in settings:
        state, hist = chunk_fn(weights.params, targets, lw, init_fn(weights.params, targets,
                                                                    lw, x0), np.int32(4))
        singles.append((np.asarray(state.image), np.asarray(hist)))
    batch = jax.tree.map(lambda *v: jnp.stack(v), *settings)

    @jax.jit
    def batched(params, targets, lws, x0):
        states = jax.vmap(lambda lw: optim.init(params, targets, lw, x0, spec=spec,
                                                optim=opt))(lws)
        return jax.vmap(
            lambda lw, s: optim.chunk(params, targets, lw, s, 4, spec=spec, optim=opt,
                                      max_steps=optim.MAX_CHUNK_STEPS))(lws, states)

    states, hists = batched(weights.params, targets, batch, x0)
    for k, (image, hist) in enumerate(singles):
        np.testing.assert_allclose(np.asarray(states.image[k]), image, atol=1e-5)
        np.testing.assert_allclose(np.asarray(hists[k, :4]), hist[:4], rtol=1e-4)


def _tv(x):
    x = np.asarray(x, np.float64)
    return float(np.sum((x[1:] - x[:-1]) ** 2) + np.sum((x[:, 1:] - x[:, :-1]) ** 2))


@pytest.mark.parametrize("init", ["style", "noise", "array"])
def test_init_images(weights, images, lbfgs_run, init):
    """The initial losses are those of the documented initial image (TV: NumPy)."""
    content, style = images
    array = smooth_image(22, 32, 40)
    expected = {
        "style": resize_to(style, (32, 40)),
        "noise": np.random.default_rng(3).random((32, 40, 3), np.float32),
        "array": array,
    }[init]
    result = jaxstyle.stylize(content, style, weights=weights, config=make_config(
        "lbfgs", iterations=1, seed=3, init=array if init == "array" else init))
    assert result.initial_losses["tv"] == pytest.approx(_tv(expected), rel=1e-5)


class _FakeLoop:
    """A host-side stand-in for a compiled chunk: state = (steps done, alive), history rows
    = step numbers; goes non-finite after `dies_at` steps."""

    def __init__(self, dies_at=None):
        self.dies_at, self.chunks = dies_at, []

    def run(self, state, n):
        done, _ = state
        self.chunks.append(int(n))
        stop = done + int(n) if self.dies_at is None else min(done + int(n), self.dies_at)
        return (stop, self.dies_at is None or stop < self.dies_at), np.arange(done + 1, stop + 1)


def _drive(fake, total, notify=None, every=4):
    return optim.drive(fake.run, (0, True), total, steps_run=lambda s: s[0],
                       alive=lambda s: s[1], take=lambda h, ran: h[:ran], notify=notify,
                       callback_every=every)


def test_drive_chunks_end_at_callback_points_and_notify_once_at_the_end():
    seen, fake = [], _FakeLoop()
    out = _drive(fake, 10, notify=lambda s, done: seen.append(done))
    assert fake.chunks == [4, 4, 2] and seen == [4, 8, 10]
    assert out.steps == 10 and not out.interrupted
    assert np.concatenate(out.history).tolist() == list(range(1, 11))
    fake = _FakeLoop()
    out = _drive(fake, 2 * optim.MAX_CHUNK_STEPS + 1)  # no callback: the longest chunks
    assert fake.chunks == [optim.MAX_CHUNK_STEPS, optim.MAX_CHUNK_STEPS, 1]


def test_drive_stops_on_false_and_on_a_dead_state():
    seen, fake = [], _FakeLoop()
    out = _drive(fake, 20, notify=lambda s, done: seen.append(done) or done < 8)
    assert out.interrupted and out.steps == 8 and seen == [4, 8]  # no extra final call
    seen, fake = [], _FakeLoop(dies_at=6)
    out = _drive(fake, 20, notify=lambda s, done: seen.append(done))
    assert not out.interrupted and out.steps == 6 and seen == [4, 6]  # the end is notified
    assert np.concatenate(out.history).tolist() == list(range(1, 7))
    seen = []
    out = optim.drive(_FakeLoop().run, (0, False), 5, steps_run=lambda s: s[0],
                      alive=lambda s: s[1], take=lambda h, ran: h[:ran],
                      notify=lambda s, done: seen.append(done))
    assert out.steps == 0 and out.history == [] and seen == [0]


def test_init_at_content_shares_the_content_forward_pass(weights, images):
    """The content targets come out of the initial evaluation's own forward pass."""
    import re

    content, style = images
    config = jaxstyle.StyleConfig()
    lw, opt = jaxstyle.LossWeights.of(1.0, 1e3, 0.0), optim.OptimSpec()
    spec, full = prepare_targets(weights, content, [style], config)
    _, without = prepare_targets(weights, content, [style], config, with_content=False)
    assert without.content == {} and without.grams.keys() == full.grams.keys()
    plain = optim.init_state.lower(weights.params, full, lw, content, spec=spec, optim=opt)
    shared = optim.init_state_at_content.lower(weights.params, without, lw, content, spec=spec,
                                               optim=opt)

    def convolutions(lowered):
        return len(re.findall(r"convolution\(", lowered.compile().as_text()))

    # 13 convolutions up to conv5_1, forward and input gradient: a separate content forward
    # pass would add 10 (up to conv4_2) unless XLA merged it with the evaluation's.
    assert convolutions(plain) == 26
    assert convolutions(shared) == 26
    targets, state = shared.compile()(weights.params, without, lw, content)
    for name, p in full.content.items():
        np.testing.assert_allclose(targets.content[name], p, rtol=1e-5,
                                   atol=1e-5 * float(np.abs(p).max()))
    assert float(state.losses[1]) == 0.0  # the content loss at the content image, exactly
    reference = optim.init_state(weights.params, full, lw, content, spec=spec, optim=opt)
    np.testing.assert_allclose(state.losses, reference.losses, rtol=1e-4, atol=1e-6)
