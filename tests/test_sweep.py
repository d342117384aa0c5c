"""Sweeps: sweep()[i] == stylize(setting i), batches, one compile, callbacks, non-finite
settings, stages, and several devices and processes (subprocesses).

Images are 32 x 32 and runs a few steps, so every compiled program is small; the sweeps are
module-scope fixtures shared by the tests that compare them.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SHALLOW, assert_adam_runs_close, smooth_image, subprocess_xla_flags

import jaxstyle
from jaxstyle import LossWeights, StyleConfig
from jaxstyle.runtime import count_compiles

SIZE = 32
# Style weights far apart, so the settings' images differ (a test that cannot fail otherwise).
GRID = jaxstyle.loss_weight_grid(content_weight=1.0, style_weight=[1e3, 1e5, 1e7],
                                 tv_weight=[0.0, 10.0])
# The sweep's machinery is under test, not the network: the first two VGG blocks (SHALLOW).
ADAM = StyleConfig(optimizer="adam", iterations=3, learning_rate=0.05, init="noise", seed=3,
                   **SHALLOW)
# Few iterations: float32 L-BFGS amplifies rounding (0.7% after 40 iterations, measured).
LBFGS = StyleConfig(optimizer="lbfgs", iterations=4, init="noise", seed=3, **SHALLOW)


@pytest.fixture(scope="module")
def images():
    return smooth_image(20, SIZE, SIZE), smooth_image(21, SIZE, SIZE)


def _setting(grid, i):
    return LossWeights.of(*(float(a[i]) for a in grid.loss_weights))


@pytest.fixture(scope="module")
def adam_sweep(weights, images):
    """Unchunked (one vmap over all K = 6) Adam sweep."""
    return jaxstyle.sweep(*images, weights=weights, config=ADAM, loss_weights=GRID,
                          batch_size=6)


@pytest.fixture(scope="module")
def chunked_sweeps(weights, images):
    """K = 6 in vmapped batches of 4 (remainder 2), callback every 2 of 3 steps, compiles
    counted; then the same program for other weights and iterations, and an interrupted run."""
    calls = []

    def callback(p):
        calls.append((p.step, p.total_steps, p.losses["total"].copy(), p.images().shape))

    with count_compiles() as first:
        chunked = jaxstyle.sweep(*images, weights=weights, config=ADAM, loss_weights=GRID,
                                 batch_size=4, callback=callback, callback_every=2)
    other_grid = jaxstyle.loss_weight_grid(content_weight=[2.0, 3.0], style_weight=[1e2, 1e4, 1e6])
    with count_compiles() as again:
        other = jaxstyle.sweep(*images, weights=weights, config=ADAM.replace(iterations=5),
                               loss_weights=other_grid, batch_size=4)
        interrupted = jaxstyle.sweep(*images, weights=weights, config=ADAM, loss_weights=GRID,
                                     batch_size=4, callback=lambda p: False, callback_every=2)
    return dict(chunked=chunked, calls=calls, first=first, again=again,
                other=other, interrupted=interrupted)


def test_adam_sweep_equals_stylize(weights, images, adam_sweep):
    r = adam_sweep
    assert r.images.shape == (6, SIZE, SIZE, 3) and r.images.dtype == np.float32
    assert r.histories["total"].shape == (6, 3) and r.steps == 3 and r.stopped is None
    assert r.labels == GRID.labels and r.batch_size == 6 and r.devices == 1
    # The settings differ, so the comparison below can tell them apart.
    assert np.abs(r.images[0] - r.images[2]).max() > 0.01
    with pytest.raises(ValueError, match="a sweep of 6 settings"):
        r.image  # noqa: B018 - the single-run view refuses
    for i in range(6):
        one = jaxstyle.stylize(*images, weights=weights, config=ADAM,
                               loss_weights=_setting(GRID, i))
        # Same arithmetic per setting; vmap may only change XLA's rounding (the losses to
        # 1e-5 relative, the pixels as `assert_adam_runs_close` bounds them).
        assert_adam_runs_close(r.images[i], one.image, learning_rate=ADAM.learning_rate,
                               steps=3, what=f"setting {i}")
        for name in one.history:
            np.testing.assert_allclose(r.histories[name][i], one.history[name], rtol=1e-5)
        assert r.best_losses[i] == pytest.approx(one.best_loss, rel=1e-5)
        assert r.best_steps[i] == one.best_step
        np.testing.assert_allclose(r.initial_losses["total"][i],
                                   one.initial_losses["total"][0], rtol=1e-6)
        assert r.setting_config(i) == one.config.replace(
            **{f"{k}_weight": float(v[0]) for k, v in zip(("content", "style", "tv"),
                                                         _setting_arrays(GRID, i)[:3],
                                                         strict=True)})


def _setting_arrays(grid, i):
    return [np.atleast_1d(a[i]) for a in grid.loss_weights]


def test_lbfgs_sweep_equals_stylize(weights, images):
    grid = jaxstyle.loss_weight_grid(style_weight=[1e3, 1e7], tv_weight=[0.0, 10.0])
    r = jaxstyle.sweep(*images, weights=weights, config=LBFGS, loss_weights=grid)
    assert r.batch_size == 4  # zoom L-BFGS vmapped too (jaxstyle.zoom: one f per trial)
    assert np.abs(r.images[0] - r.images[1]).max() > 0.01
    for i in range(4):
        one = jaxstyle.stylize(*images, weights=weights, config=LBFGS,
                               loss_weights=_setting(grid, i))
        # Measured gap after 4 iterations: < 1e-5 (in sequence and vmapped). L-BFGS
        # amplifies float32 rounding (0.7% after 40 iterations), so allow 10x: 1e-4 on
        # pixels and losses.
        np.testing.assert_allclose(r.images[i], one.image, atol=1e-4)
        np.testing.assert_allclose(r.histories["total"][i], one.history["total"], rtol=1e-4)
        assert r.best_losses[i] == pytest.approx(one.best_loss, rel=1e-4)
        assert r.evaluations[i] == one.evaluations[0]  # each setting counts its own


def test_chunked_equals_unchunked(adam_sweep, chunked_sweeps):
    chunked = chunked_sweeps["chunked"]
    assert chunked.batch_size == 4 and chunked.steps == 3
    # Batches of 4 and 2 against one vmap of 6: equal up to XLA's rounding.
    assert_adam_runs_close(chunked.images, adam_sweep.images, learning_rate=ADAM.learning_rate,
                           steps=3)
    for name, h in adam_sweep.histories.items():
        np.testing.assert_allclose(chunked.histories[name], h, rtol=1e-5)
    np.testing.assert_array_equal(chunked.best_steps, adam_sweep.best_steps)


def test_one_compilation_per_sweep(chunked_sweeps):
    # A fresh program (batch 4): the init and the chunk program, each compiled once,
    # although the chunk program ran twice (steps 2 + 1).
    first = [n for n in chunked_sweeps["first"].names if "local_" in n]
    assert sorted(first) == ["jit(local_chunk)", "jit(local_init)"], first
    # Other weights, another iteration count, an interrupted run: nothing compiled.
    assert chunked_sweeps["again"].names == []
    assert chunked_sweeps["other"].timings["compile_s"] == 0.0


def test_callback_and_interrupt(chunked_sweeps):
    calls = chunked_sweeps["calls"]
    assert [c[0] for c in calls] == [2, 3]
    assert all(c[1] == 3 and c[2].shape == (6,) and c[3] == (6, SIZE, SIZE, 3) for c in calls)
    np.testing.assert_array_equal(calls[-1][2],
                                  chunked_sweeps["chunked"].histories["total"][:, -1])
    stopped = chunked_sweeps["interrupted"]
    assert stopped.stopped == "interrupted" and stopped.steps == 2
    np.testing.assert_array_equal(stopped.histories["total"],
                                  chunked_sweeps["chunked"].histories["total"][:, :2])


def test_other_grid_results(chunked_sweeps):
    other = chunked_sweeps["other"]
    assert other.grid.shape == (2, 3) and other.steps == 5
    np.testing.assert_array_equal(other.loss_weights.content_weight, [2, 2, 2, 3, 3, 3])
    assert np.all(np.isfinite(other.best_losses))


def test_nonfinite_setting_freezes_alone(weights, images, adam_sweep):
    # gamma = 3e38 overflows float32 at the (noise) initial image, whose TV is ~1e3; the
    # other settings, those of `adam_sweep`, go on. Same shapes and batch: no compilation.
    lw = LossWeights(np.ones(6, np.float32), np.array([1e3, 1e5, 1e3] * 2, np.float32),
                     np.array([0, 0, 3e38, 10, 10, 3e38], np.float32))
    r = jaxstyle.sweep(*images, weights=weights, config=ADAM, loss_weights=lw, batch_size=6)
    bad = np.array([False, False, True] * 2)
    np.testing.assert_array_equal(r.nonfinite, bad)
    assert r.stopped is None and r.steps == 3 and r.timings["compile_s"] == 0.0
    assert np.all(np.isnan(r.histories["total"][bad]))
    same = adam_sweep.histories["total"][[0, 1, 3, 4]]
    np.testing.assert_allclose(r.histories["total"][~bad], same, rtol=1e-5)
    noise = np.random.default_rng(ADAM.seed).random(images[0].shape, np.float32)
    np.testing.assert_array_equal(r.images[2], noise)  # the initial image, untouched
    summary = json.loads(json.dumps(r.summary(), allow_nan=False))  # NaN-free JSON
    assert [s["nonfinite"] for s in summary["settings"]] == bad.tolist()


def test_contact_sheet_and_summary(adam_sweep):
    sheet = adam_sweep.contact_sheet(title="test")
    rows, cols = GRID.shape
    assert sheet.ndim == 3 and sheet.shape[0] > rows * SIZE and sheet.shape[1] > cols * SIZE
    summary = json.loads(json.dumps(adam_sweep.summary()))
    assert [s["label"] for s in summary["settings"]] == list(GRID.labels)
    assert summary["settings"][4]["row"] == 1 and summary["settings"][4]["col"] == 1
    assert summary["settings"][4]["style_weight"] == pytest.approx(1e5)
    assert summary["config"]["optimizer"] == "adam" and summary["status"] == "completed"


def test_sweeps_run_stages_too(weights, images):
    """A sweep with scales: every setting's stage 1 starts from its own stage-0 image."""
    grid = jaxstyle.loss_weight_grid(style_weight=[1e3, 1e7])
    config = ADAM.replace(scales=(16, SIZE), scale_iterations=(2, 1))
    r = jaxstyle.sweep(*images, weights=weights, config=config, loss_weights=grid,
                       batch_size=2)
    assert r.images.shape == (2, SIZE, SIZE, 3) and r.stage_steps == (2, 1)
    for i in range(2):
        one = jaxstyle.stylize(*images, weights=weights, config=config,
                               loss_weights=_setting(grid, i))
        np.testing.assert_allclose(r.images[i], one.image, atol=1e-4)
        assert r.evaluations[i] == one.evaluations[0] == (1 + 2) + (1 + 1)  # Adam, vmapped
        assert r.stage_start_losses[1][i] == pytest.approx(one.stage_start_losses[1][0],
                                                           rel=1e-4)


def test_bad_arguments(weights, images):
    with pytest.raises(ValueError, match="batch_size"):
        jaxstyle.sweep(*images, weights=weights, config=ADAM, loss_weights=GRID, batch_size=0)
    with pytest.raises(ValueError, match=">= 0"):
        jaxstyle.sweep(*images, weights=weights, config=ADAM,
                       loss_weights=LossWeights(np.array([1.0, -1.0]), np.ones(2), np.zeros(2)))


SHARDED = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, sys.argv[1])
    from conftest import SHALLOW, smooth_image
    import jaxstyle
    from jaxstyle import optim, parallel
    from jaxstyle.grids import as_settings
    from jaxstyle.objective import prepare_targets

    assert len(jax.devices()) == 4
    w = jaxstyle.random_weights(0)
    imgs = smooth_image(20, 32, 32), smooth_image(21, 32, 32)
    cfg = jaxstyle.StyleConfig(optimizer="adam", iterations=3, learning_rate=0.05,
                               init="noise", seed=3, **SHALLOW)
    # GRID: K = 6
    grid = jaxstyle.loss_weight_grid(style_weight=[1e3, 1e5, 1e7], tv_weight=[0.0, 10.0])
    sharded = jaxstyle.sweep(*imgs, weights=w, config=cfg, loss_weights=grid)
    # The chunk program it ran, compiled again to read: K = 6 padded to 8, 2 per device.
    mesh = parallel.settings_mesh()
    spec, targets = prepare_targets(w, imgs[0], imgs[1], cfg)
    init, chunk = parallel.programs(mesh, spec, cfg.optimizer_spec(),
                                    sharded.batch_size, "shared")
    lws = parallel.pad_settings(as_settings(grid.loss_weights), 4)[0]
    style_only = targets._replace(content={})
    _, state, _ = jax.eval_shape(init, w.params, imgs[0], style_only, lws, imgs[0], None)
    text = chunk.lower(w.params, targets, lws, state, np.int32(1)).compile().as_text()
    np.savez(sys.argv[2], images=sharded.images, best=sharded.best_losses,
             total=sharded.histories["total"])
    print(json.dumps(dict(
        devices=sharded.devices, batch=sharded.batch_size, n=len(sharded),
        labels=list(sharded.labels),
        collectives=[op for op in ("all-reduce", "all-gather", "all-to-all",
                                   "collective-permute") if op in text])))
""")


def _run_script(tmp_path, script, *args, env=None, timeout=300):
    path = tmp_path / "script.py"
    path.write_text(script)
    # This checkout first on the path (the venv's jaxstyle may be another checkout).
    return subprocess.Popen([sys.executable, str(path), str(Path(__file__).parent), *args],
                            env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
                                     **(env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _same_as(adam_sweep, npz):
    # vmap widths 2 or 3 against 6 may round differently, which Adam's g / sqrt(v) can turn
    # into a step where g is near 0 (see test_chunked_equals_unchunked).
    got = np.load(npz)
    assert_adam_runs_close(got["images"], adam_sweep.images, learning_rate=ADAM.learning_rate,
                           steps=3)
    np.testing.assert_allclose(got["best"], adam_sweep.best_losses, rtol=1e-5)
    np.testing.assert_allclose(got["total"], adam_sweep.histories["total"], rtol=1e-5)


def test_sharded_sweep_subprocess(tmp_path, adam_sweep):
    results = tmp_path / "sharded.npz"
    got = _finish(_run_script(tmp_path, SHARDED, str(results),
                              env={"XLA_FLAGS": subprocess_xla_flags(
                                  "--xla_force_host_platform_device_count=4")}))
    # K = 6 padded to 8 over 4 devices: 2 settings per device; padding dropped.
    assert got["devices"] == 4 and got["n"] == 6 and got["batch"] == 2
    assert got["labels"] == list(GRID.labels)
    _same_as(adam_sweep, results)
    # Settings are independent: no cross-device communication in the compiled program.
    assert got["collectives"] == []


MULTIHOST = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{sys.argv[2]}", num_processes=2,
                               process_id=int(sys.argv[3]))
    sys.path.insert(0, sys.argv[1])
    from conftest import SHALLOW, smooth_image
    import jaxstyle

    w = jaxstyle.random_weights(0)
    imgs = smooth_image(20, 32, 32), smooth_image(21, 32, 32)
    cfg = jaxstyle.StyleConfig(optimizer="adam", iterations=3, learning_rate=0.05,
                               init="noise", seed=3, **SHALLOW)
    # GRID: K = 6
    grid = jaxstyle.loss_weight_grid(style_weight=[1e3, 1e5, 1e7], tv_weight=[0.0, 10.0])
    r = jaxstyle.sweep(*imgs, weights=w, config=cfg, loss_weights=grid,
                       devices=jax.devices())
    np.savez(sys.argv[4], images=r.images, best=r.best_losses, total=r.histories["total"])
    print(json.dumps(dict(devices=r.devices, local=len(jax.local_devices()),
                          processes=jax.process_count(), n=len(r))))
""")


def test_two_processes_share_one_sweep_and_both_get_every_result(tmp_path, adam_sweep):
    """The multi-host sweep: two loopback processes (gloo collectives), one device each,
    the K = 6 settings sharded over both; each process gets all six results."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [_run_script(tmp_path / str(i), MULTIHOST, str(port), str(i),
                         str(tmp_path / f"r{i}.npz")) for i in range(2) if
             (tmp_path / str(i)).mkdir() is None]
    for i, process in enumerate(procs):
        got = _finish(process)
        assert got == {"devices": 2, "local": 1, "processes": 2, "n": 6}
        _same_as(adam_sweep, tmp_path / f"r{i}.npz")
