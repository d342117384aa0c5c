"""Sweeps: grid helpers, chunking, sharding, and sweep()[i] == stylize(setting i).

Images are 32 x 32 and runs a few steps, so every compiled program is small; the sweeps are
module-scope fixtures shared by the tests that compare them.
"""

import importlib
import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smooth_image

import jaxstyle
from jaxstyle.config import LossWeights, StyleConfig
from jaxstyle.runtime import count_compiles

# The module (jaxstyle.sweep, the attribute, is the function).
sw = importlib.import_module("jaxstyle.sweep")
SIZE = 32


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("x, text", [
    (0, "0"), (1, "1"), (5, "5"), (0.5, "0.5"), (100, "100"), (1000, "1e3"), (1e4, "1e4"),
    (1.5e4, "1.5e4"), (8e-4, "8e-4"), (1e-3, "1e-3"), (5e-3, "5e-3"), (0.05, "0.05"),
    (2.5, "2.5"), (123456, "1.235e5"),
])
def test_format_weight(x, text):
    assert sw.format_weight(x) == text
    assert float(text) == pytest.approx(x, rel=1e-3)


def test_setting_label():
    assert sw.setting_label(1, 1e3, 0) == "c1_s1e3_tv0"
    assert sw.setting_label(5, 8e-4, 1e-2) == "c5_s8e-4_tv0.01"


def test_grid_content_by_style():
    grid = sw.loss_weight_grid(content=[1, 5], style=[1e2, 1e3, 1e4], tv=1e-3)
    assert grid.shape == (2, 3)
    assert grid.col_labels == ("beta=100", "beta=1e3", "beta=1e4")
    assert grid.row_labels == ("alpha=1", "alpha=5")
    assert (grid.row_title, grid.col_title) == ("content", "style")
    # Row-major: cell (r, c) is content[r], style[c]; every product member exactly once.
    expected = [(c, s, 1e-3) for c in (1, 5) for s in (1e2, 1e3, 1e4)]
    got = list(zip(*(a.tolist() for a in grid.loss_weights), strict=True))
    np.testing.assert_allclose(got, expected, rtol=1e-7)
    assert all(a.dtype == np.float32 and a.shape == (6,) for a in grid.loss_weights)
    assert grid.labels[4] == "c5_s1e3_tv1e-3"


def test_grid_three_axes_and_single_axis():
    grid = sw.loss_weight_grid(content=[1, 2], style=[10, 20], tv=[0, 1, 2])
    # Columns: style; rows: content x tv (content slowest).
    assert grid.shape == (6, 2)
    assert grid.row_labels[:3] == ("alpha=1 gamma=0", "alpha=1 gamma=1", "alpha=1 gamma=2")
    got = set(zip(*(a.tolist() for a in grid.loss_weights), strict=True))
    assert got == set(itertools.product((1.0, 2.0), (10.0, 20.0), (0.0, 1.0, 2.0)))
    i = grid.row_labels.index("alpha=2 gamma=1") * 2 + grid.col_labels.index("beta=20")
    assert [float(a[i]) for a in grid.loss_weights] == [2.0, 20.0, 1.0]

    single = sw.loss_weight_grid(tv=[0, 1e-2])
    assert single.shape == (1, 2) and single.col_title == "tv"
    assert sw.loss_weight_grid().shape == (1, 1)
    with pytest.raises(ValueError, match="repeat"):
        sw.loss_weight_grid(style=[1, 1])
    with pytest.raises(ValueError, match=">= 0"):
        sw.loss_weight_grid(content=[-1, 1])


def test_ratio_weights():
    ratios = [1e-3, 8e-4, 5e-3, 5e-4]  # Gatys et al. Fig. 3
    grid = sw.ratio_weights(ratios)  # alpha fixed at 1
    np.testing.assert_allclose(grid.loss_weights.content, 1.0)
    np.testing.assert_allclose(grid.loss_weights.style, [1e3, 1250, 200, 2e3], rtol=1e-6)
    assert grid.col_labels[1] == "alpha/beta=8e-4"
    fixed_beta = sw.ratio_weights(ratios, style_weight=1e4, tv=[0, 1])
    assert fixed_beta.shape == (2, 4)
    np.testing.assert_allclose(fixed_beta.loss_weights.content / fixed_beta.loss_weights.style,
                               ratios * 2, rtol=1e-6)
    np.testing.assert_allclose(fixed_beta.loss_weights.tv, [0] * 4 + [1] * 4)
    with pytest.raises(ValueError, match="not both"):
        sw.ratio_weights(ratios, content_weight=1, style_weight=1)
    with pytest.raises(ValueError, match="> 0"):
        sw.ratio_weights([0.0])


def test_pad_settings():
    lw = LossWeights(*(np.arange(5, dtype=np.float32) + k for k in range(3)))
    padded, k = sw.pad_settings(lw, 4)
    assert k == 5 and padded.content.shape == (8,)
    np.testing.assert_array_equal(padded.style, [1, 2, 3, 4, 5, 5, 5, 5])
    same, k = sw.pad_settings(lw, 5)
    assert k == 5 and same is lw


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 9])
def test_map_settings_equals_loop(batch):
    xs = (np.arange(5, dtype=np.float32), np.arange(10, dtype=np.float32).reshape(5, 2))

    def f(a, b):  # a while_loop with a per-member trip count, like the step loop
        return jax.lax.while_loop(lambda c: c[0] < a, lambda c: (c[0] + 1, c[1] * 1.5),
                                  (jnp.zeros((), jnp.float32), b))[1]

    got = jax.jit(lambda x: sw.map_settings(f, x, batch))(xs)
    expected = np.stack([np.asarray(xs[1][i]) * 1.5 ** i for i in range(5)])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_one_setting_runs_unbatched():
    """K = 1 (whatever the batch size) runs f unbatched: its conds stay conds (a vmap, even of
    one, would turn them into selects that run both branches)."""
    xs = (np.full((1,), 3.0, np.float32), np.ones((1, 2), np.float32))

    def f(a, b):
        return jax.lax.cond(a > 2, lambda b: b * 1.5, lambda b: b - 1.0, b)

    for batch in (1, 4):
        compiled = jax.jit(lambda x, batch=batch: sw.map_settings(f, x, batch)).lower(xs)
        assert "conditional(" in compiled.compile().as_text(), batch
        got = jax.jit(lambda x, batch=batch: sw.map_settings(f, x, batch))(xs)
        np.testing.assert_allclose(got, np.ones((1, 2)) * 1.5, rtol=1e-6)
    vmapped = jax.jit(jax.vmap(lambda a, b: f(a, b))).lower(*xs).compile().as_text()
    assert "conditional(" not in vmapped  # what the check tells apart


def test_auto_batch_size(monkeypatch):
    cpu = jax.devices("cpu")[0]
    free = sw.free_memory_bytes(cpu)
    assert free is not None and 0 < free
    # Zoom L-BFGS runs its settings in sequence whatever the memory.
    assert sw.auto_batch_size(16, 64, 64, "lbfgs", cpu) == 1
    per = sw.setting_bytes(256, 256, "adam")
    assert per == 2000 * 256 * 256
    state = sw.state_bytes(256, 256, "adam")
    assert state == 5 * 256 * 256 * 3 * 4  # iterate, gradient, best, Adam's two moments
    need = 80e6 + sw.FIXED_BYTES + 2 * 8 * state + 3.5 * per  # room for 3.5 settings
    monkeypatch.setattr(sw, "free_memory_bytes", lambda d: int(need / sw.CPU_MEMORY_FRACTION))
    assert sw.auto_batch_size(8, 256, 256, "adam", cpu, params_bytes=int(80e6)) == 3
    assert sw.auto_batch_size(2, 256, 256, "adam", cpu) == 2  # capped at K
    monkeypatch.setattr(sw, "free_memory_bytes", lambda d: 1)
    assert sw.auto_batch_size(8, 256, 256, "lbfgs-nols", cpu) == 1
    monkeypatch.setattr(sw, "free_memory_bytes", lambda d: None)
    assert sw.auto_batch_size(8, 256, 256, "adam", cpu) == 8


# --------------------------------------------------------------------------- sweeps


@pytest.fixture(scope="module")
def images():
    return smooth_image(20, SIZE, SIZE), smooth_image(21, SIZE, SIZE)


# Style weights far apart, so the settings' images differ (a test that cannot fail otherwise).
GRID = sw.loss_weight_grid(content=1.0, style=[1e3, 1e5, 1e7], tv=[0.0, 10.0])
ADAM = StyleConfig(optimizer="adam", iterations=3, learning_rate=0.05, init="noise", seed=3)
# Few iterations: float32 L-BFGS amplifies rounding (0.7% after 40 iterations, FINDINGS.md).
LBFGS = StyleConfig(optimizer="lbfgs", iterations=4, init="noise", seed=3)


def _setting(grid, i):
    return LossWeights.of(*(float(a[i]) for a in grid.loss_weights))


@pytest.fixture(scope="module")
def adam_sweep(weights, images):
    """Unchunked (one vmap over all K = 6) Adam sweep."""
    return sw.sweep(*images, weights=weights, config=ADAM, loss_weights=GRID, batch_size=6)


@pytest.fixture(scope="module")
def chunked_sweeps(weights, images):
    """K = 6 in vmapped batches of 4 (remainder 2), callback every 2 of 3 steps, compiles
    counted; then the same program for other weights and iterations, and an interrupted run."""
    calls = []

    def callback(p):
        calls.append((p.step, p.total_steps, p.losses["total"].copy(), p.images().shape))

    with count_compiles() as first:
        chunked = sw.sweep(*images, weights=weights, config=ADAM, loss_weights=GRID,
                           batch_size=4, callback=callback, callback_every=2)
    other_grid = sw.loss_weight_grid(content=[2.0, 3.0], style=[1e2, 1e4, 1e6])
    with count_compiles() as again:
        other = sw.sweep(*images, weights=weights, config=ADAM.replace(iterations=5),
                         loss_weights=other_grid, batch_size=4)
        interrupted = sw.sweep(*images, weights=weights, config=ADAM, loss_weights=GRID,
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
    for i in range(6):
        one = jaxstyle.stylize(*images, weights=weights, config=ADAM,
                               loss_weights=_setting(GRID, i))
        # Same arithmetic per setting; vmap may only change XLA's rounding: to 1e-6 (pixels
        # in [0, 1]) and 1e-5 relative on the losses.
        np.testing.assert_allclose(r.images[i], one.image, atol=1e-6)
        for name in one.history:
            np.testing.assert_allclose(r.histories[name][i], one.history[name], rtol=1e-5)
        assert r.best_losses[i] == pytest.approx(one.best_loss, rel=1e-5)
        assert r.best_steps[i] == one.best_step
        np.testing.assert_allclose(r.initial_losses["total"][i],
                                   one.initial_losses["total"], rtol=1e-6)


def test_lbfgs_sweep_equals_stylize(weights, images):
    grid = sw.loss_weight_grid(style=[1e3, 1e7], tv=[0.0, 10.0])
    r = sw.sweep(*images, weights=weights, config=LBFGS, loss_weights=grid)
    assert r.batch_size == 1  # zoom L-BFGS: settings in sequence (the measured default)
    assert np.abs(r.images[0] - r.images[1]).max() > 0.01
    for i in range(4):
        one = jaxstyle.stylize(*images, weights=weights, config=LBFGS,
                               loss_weights=_setting(grid, i))
        # Measured gap after 4 iterations: < 1e-5. L-BFGS amplifies float32 rounding (0.7%
        # after 40 iterations, FINDINGS.md), so allow 10x: 1e-4 on pixels and losses.
        np.testing.assert_allclose(r.images[i], one.image, atol=1e-4)
        np.testing.assert_allclose(r.histories["total"][i], one.history["total"], rtol=1e-4)
        assert r.best_losses[i] == pytest.approx(one.best_loss, rel=1e-4)


def test_chunked_equals_unchunked(adam_sweep, chunked_sweeps):
    chunked = chunked_sweeps["chunked"]
    assert chunked.batch_size == 4 and chunked.steps == 3
    # Batches of 4 and 2 against one vmap of 6: equal up to XLA's rounding, which Adam's
    # g / sqrt(v) turns into up to a full step (lr = 0.05) where g is near 0: measured 5e-6;
    # allowed 1e-3 of a step (5e-5).
    np.testing.assert_allclose(chunked.images, adam_sweep.images, atol=1e-3 * ADAM.learning_rate)
    for name, h in adam_sweep.histories.items():
        np.testing.assert_allclose(chunked.histories[name], h, rtol=1e-5)
    np.testing.assert_array_equal(chunked.best_steps, adam_sweep.best_steps)


def test_one_compilation_per_sweep(chunked_sweeps):
    # A fresh program (batch 4): the init and the chunk program, each compiled once,
    # although the chunk program ran twice (steps 2 + 1).
    # (Targets and dtype conversions compile too when this test runs alone: not counted.)
    first = [n for n in chunked_sweeps["first"] if "local_" in n]
    assert len(first) == 2, chunked_sweeps["first"]
    assert sum("local_chunk" in n for n in first) == 1
    assert sum("local_init" in n for n in first) == 1
    # Other weights, another iteration count, an interrupted run: nothing compiled.
    assert chunked_sweeps["again"] == []
    assert chunked_sweeps["other"].timings["compile_s"] == 0.0


def test_callback_and_interrupt(chunked_sweeps):
    calls = chunked_sweeps["calls"]
    assert [c[0] for c in calls] == [2, 3]
    assert all(c[1] == 3 and c[2].shape == (6,) and c[3] == (6, SIZE, SIZE, 3) for c in calls)
    np.testing.assert_array_equal(calls[-1][2], chunked_sweeps["chunked"].histories["total"][:, -1])
    stopped = chunked_sweeps["interrupted"]
    assert stopped.stopped == "interrupted" and stopped.steps == 2
    np.testing.assert_array_equal(stopped.histories["total"],
                                  chunked_sweeps["chunked"].histories["total"][:, :2])


def test_other_grid_results(chunked_sweeps):
    other = chunked_sweeps["other"]
    assert other.grid.shape == (2, 3) and other.steps == 5
    np.testing.assert_array_equal(other.loss_weights.content, [2, 2, 2, 3, 3, 3])
    assert np.all(np.isfinite(other.best_losses))


def test_nonfinite_setting_freezes_alone(weights, images, adam_sweep):
    # gamma = 3e38 overflows float32 at the (noise) initial image, whose TV is ~1e3; the
    # other settings, those of `adam_sweep`, go on. Same shapes and batch: no compilation.
    lw = LossWeights(np.ones(6, np.float32), np.array([1e3, 1e5, 1e3] * 2, np.float32),
                     np.array([0, 0, 3e38, 10, 10, 3e38], np.float32))
    r = sw.sweep(*images, weights=weights, config=ADAM, loss_weights=lw, batch_size=6)
    bad = np.array([False, False, True] * 2)
    np.testing.assert_array_equal(r.nonfinite, bad)
    assert r.stopped is None and r.steps == 3 and r.timings["compile_s"] == 0.0
    assert np.all(np.isnan(r.histories["total"][bad]))
    same = adam_sweep.histories["total"][[0, 1, 3, 4]]
    np.testing.assert_allclose(r.histories["total"][~bad], same, rtol=1e-5)
    noise = np.random.default_rng(ADAM.seed).random(images[0].shape, np.float32)
    np.testing.assert_array_equal(r.images[2], noise)  # the initial image, untouched
    manifest = json.loads(json.dumps(r.manifest(), allow_nan=False))  # NaN-free JSON
    assert [s["nonfinite"] for s in manifest["settings"]] == bad.tolist()


def test_contact_sheet_and_manifest(adam_sweep):
    sheet = adam_sweep.contact_sheet(title="test")
    rows, cols = GRID.shape
    assert sheet.ndim == 3 and sheet.shape[0] > rows * SIZE and sheet.shape[1] > cols * SIZE
    manifest = json.loads(json.dumps(adam_sweep.manifest()))
    assert [s["label"] for s in manifest["settings"]] == list(GRID.labels)
    assert manifest["settings"][4]["row"] == 1 and manifest["settings"][4]["col"] == 1
    assert manifest["settings"][4]["style_weight"] == pytest.approx(1e5)


def test_bad_arguments(weights, images):
    with pytest.raises(ValueError, match="batch_size"):
        sw.sweep(*images, weights=weights, config=ADAM, loss_weights=GRID, batch_size=0)
    with pytest.raises(ValueError, match=r"\(K,\)"):
        sw.sweep(*images, weights=weights, config=ADAM, loss_weights=LossWeights.of(1, 2, 3))
    with pytest.raises(ValueError, match=">= 0"):
        sw.sweep(*images, weights=weights, config=ADAM,
                 loss_weights=LossWeights(np.array([1.0, -1.0]), np.ones(2), np.zeros(2)))
    with pytest.raises(ValueError, match="stylize_pyramid"):
        sw.sweep(*images, weights=weights, config=ADAM.replace(scales=(16, 32)),
                 loss_weights=GRID)


SHARDED = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, sys.argv[1])
    from conftest import smooth_image
    import jaxstyle
    import importlib
    sw = importlib.import_module("jaxstyle.sweep")
    from jaxstyle.executables import _COMPILED

    assert len(jax.devices()) == 4
    w = jaxstyle.random_weights(0)
    imgs = smooth_image(20, 32, 32), smooth_image(21, 32, 32)
    cfg = jaxstyle.StyleConfig(optimizer="adam", iterations=3, learning_rate=0.05,
                               init="noise", seed=3)
    grid = sw.loss_weight_grid(style=[1e3, 1e5, 1e7], tv=[0.0, 10.0])  # GRID: K = 6
    seen = {}

    def callback(p):
        best = p.state.best_image
        seen["spec_ok"] = best.sharding.spec == jax.sharding.PartitionSpec("settings")
        seen["shards"] = sorted((s.device.id, s.index[0].start, s.index[0].stop,
                                 float(np.abs(np.asarray(s.data)).sum()))
                                for s in best.addressable_shards)
        seen["sums"] = np.abs(np.asarray(best)).sum(axis=(1, 2, 3)).tolist()

    sharded = sw.sweep(*imgs, weights=w, config=cfg, loss_weights=grid, callback=callback)
    texts = [c.as_text() for c in _COMPILED.values()]
    np.savez(sys.argv[2], images=sharded.images, best=sharded.best_losses,
             total=sharded.histories["total"])
    print(json.dumps(dict(
        devices=sharded.devices, batch=sharded.batch_size, n=len(sharded),
        labels=list(sharded.labels),
        collectives=[op for op in ("all-reduce", "all-gather", "all-to-all",
                                   "collective-permute") if any(op in t for t in texts)],
        **seen)))
""")


def test_sharded_sweep_subprocess(tmp_path, adam_sweep):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=4")
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED)
    results = tmp_path / "sharded.npz"
    out = subprocess.run([sys.executable, str(script), str(Path(__file__).parent),
                          str(results)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # K = 6 padded to 8 over 4 devices: 2 settings per device; padding dropped.
    assert got["devices"] == 4 and got["n"] == 6 and got["batch"] == 2
    assert got["labels"] == list(GRID.labels)
    # Sharded equals the unsharded `adam_sweep` (same config and grid, one device, one vmap
    # of 6) up to rounding: vmap widths 2 and 6 may round differently, which Adam's
    # g / sqrt(v) can turn into a step where g is near 0 (see test_chunked_equals_unchunked).
    sharded = np.load(results)
    np.testing.assert_allclose(sharded["images"], adam_sweep.images,
                               atol=1e-3 * ADAM.learning_rate)
    np.testing.assert_allclose(sharded["best"], adam_sweep.best_losses, rtol=1e-5)
    np.testing.assert_allclose(sharded["total"], adam_sweep.histories["total"], rtol=1e-5)
    # Each device holds its own contiguous block of 2 settings of the 8.
    assert got["spec_ok"]
    shards = got["shards"]
    assert [(d, a, b) for d, a, b, _ in shards] == [(0, 0, 2), (1, 2, 4), (2, 4, 6), (3, 6, 8)]
    sums = got["sums"]
    for _, a, b, total in shards:
        assert total == pytest.approx(sum(sums[a:b]), rel=1e-6)
    # Settings are independent: no cross-device communication in the compiled programs.
    assert got["collectives"] == []


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("sweep_cli")
    for name, seed in (("content.png", 20), ("style.png", 21)):
        Image.fromarray((smooth_image(seed, SIZE, SIZE) * 255).astype(np.uint8)).save(d / name)
    jaxstyle.save_weights(jaxstyle.random_weights(0), d / "vgg19.npz")
    return d


def test_cli_grid_writes_images_sheet_and_manifest(cli_files, adam_sweep, tmp_path, capsys):
    from PIL import Image

    from jaxstyle import cli

    out = tmp_path / "grid.png"
    # The same statics, shapes, K and batch as `adam_sweep` (requested above, so it ran
    # first): its compiled programs are reused.
    argv = [str(cli_files / "content.png"), str(cli_files / "style.png"), "-o", str(out),
            "--weights", str(cli_files / "vgg19.npz"), "--optimizer", "adam",
            "--learning-rate", "0.05", "--iterations", "3", "--init", "noise",
            "--style-weight", "1e3,1e5,1e7", "--tv-weight", "0,10", "--batch-size", "6",
            "--print-every", "0"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert "wrote 6 images" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "grid.json").read_text())
    assert manifest["status"] == "completed" and manifest["steps"] == 3
    assert manifest["grid"]["cols"] == ["beta=1e3", "beta=1e5", "beta=1e7"]
    assert manifest["grid"]["rows"] == ["gamma=0", "gamma=10"]
    names = sorted(p.name for p in tmp_path.iterdir())
    expected = sorted(["grid.png", "grid.json"] + [f"grid_c1_s{s}_tv{t}.png"
                                                   for s in ("1e3", "1e5", "1e7")
                                                   for t in ("0", "10")])
    assert names == expected
    for entry in manifest["settings"]:
        with Image.open(entry["file"]) as im:
            assert im.size == (SIZE, SIZE)
            config = json.loads(im.text["jaxstyle"])["config"]
        # Each image carries its own weights.
        assert (config["style_weight"], config["tv_weight"]) == (
            pytest.approx(entry["style_weight"]), pytest.approx(entry["tv_weight"]))
    with Image.open(out) as sheet:
        assert sheet.size[0] > 3 * SIZE and sheet.size[1] > 2 * SIZE
    assert manifest["timings"]["compile_s"] == 0.0  # reused from the library sweep above
    assert set(manifest["timings"]) >= {"targets_s", "steps_s", "sweep_s", "total_s"}


@pytest.mark.parametrize("extra, needle", [
    (["--ratio", "1e-3", "--content-weight", "1", "--style-weight", "1"], "at most one of"),
    (["--ratio", "1e-3,0"], "--ratio: must be > 0"),
    (["--ratio", "1e-3", "--style-weight", "1,2"], "at most one of"),
    (["--batch-size", "2"], "--batch-size is for sweeps"),
    (["--style-weight", "1,2", "--batch-size", "0"], "--batch-size: must be > 0"),
    (["--style-weight", "1,2", "--save-every", "5"], "--save-every is not available"),
])
def test_cli_sweep_usage_errors(cli_files, tmp_path, capsys, extra, needle):
    from jaxstyle import cli

    argv = [str(cli_files / "content.png"), str(cli_files / "style.png"), "-o",
            str(tmp_path / "o.png"), *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_cli_ratio_grid():
    from jaxstyle import cli

    args = cli.build_parser().parse_args(["c.png", "s.png", "-o", "o.png", "--ratio",
                                          "1e-3,8e-4,5e-3,5e-4", "--style-weight", "1e4"])
    grid = cli.sweep_grid(args)
    np.testing.assert_allclose(grid.loss_weights.content, [10, 8, 50, 5], rtol=1e-6)
    np.testing.assert_allclose(grid.loss_weights.style, 1e4)
    assert cli.config_from_args(args).style_weight == 1e4
    single = cli.build_parser().parse_args(["c.png", "s.png", "-o", "o.png"])
    assert cli.sweep_grid(single) is None
