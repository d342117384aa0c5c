"""The sharded train step (jaxstyle.arbitrary.step): the loss it reports against float64
NumPy, Adam's first update and the learning-rate schedule, and data parallelism: 4 virtual
CPU devices (a subprocess) give the one-device losses and weights, through an all-reduce."""

import json
import textwrap

import jax
import numpy as np
import pytest
from conftest import assert_adam_runs_close, finish, run_python, smooth_image, subprocess_xla_flags
from references import numpy_arbitrary as ref
from references.numpy_arbitrary import numpy_adain_loss

from jaxstyle.arbitrary import step
from jaxstyle.arbitrary.train_config import TrainConfig

# The configuration of the in-process tests, shared with tests/test_arbitrary_train_run.py
# (the CLI's runs at lr 1e-3): one compiled step for both.
CONFIG = TrainConfig("adain", learning_rate=1e-3, lr_decay=5e-5)
BATCH = np.stack([smooth_image(60 + i, 32, 32) for i in range(4)])
UINT8 = np.round(BATCH * 255).astype(np.uint8)


def test_schedule_and_config():
    lr = step.schedule(CONFIG)
    assert float(lr(0)) == pytest.approx(1e-3)
    assert float(lr(20_000)) == pytest.approx(1e-3 / 2)
    with pytest.raises(ValueError, match="kind"):
        TrainConfig("gatys")
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig("adain", learning_rate=0.0)


def test_init_params_as_pytorch_conv2d():
    """Fresh weights as the reference code's nn.Conv2d defaults: U(-b, b), b = 1/sqrt(fan_in),
    kernels and biases; the trainable parts only, in the loaders' layout; seeded."""
    from jaxstyle.arbitrary.weights import param_shapes

    params = step.init_params("sanet", seed=3)
    shapes = param_shapes("sanet", encoder=False)
    assert set(params) == {"decoder", "transform"}
    assert set(params["transform"]) == set(shapes["transform"])
    conv1 = params["decoder"]["conv1"]  # 3 x 3 x 512 -> 256
    assert conv1["kernel"].shape == (3, 3, 512, 256) and conv1["kernel"].dtype == np.float32
    bound = 1 / np.sqrt(9 * 512)
    for leaf in conv1.values():
        assert np.abs(leaf).max() <= bound
        assert np.std(leaf) == pytest.approx(bound / np.sqrt(3), rel=0.1)
    f = params["transform"]["sanet4_1"]["f"]["kernel"]  # 1 x 1 x 512 -> 512
    assert np.abs(f).max() <= 1 / np.sqrt(512) and np.abs(f).max() > 0.9 / np.sqrt(512)
    again = step.init_params("sanet", seed=3)["decoder"]["conv9"]["kernel"]
    assert np.array_equal(again, params["decoder"]["conv9"]["kernel"])
    assert not np.array_equal(step.init_params("sanet", seed=4)["decoder"]["conv9"]["kernel"],
                              again)


def test_first_step(adain_params):
    """Step 1 reports the loss of the weights it started from (float32 against float64 NumPy:
    AdaIN's float32 loss check), the lr of k = 0, and Adam's first update moves each weight
    by lr g / (|g| + eps): lr wherever the gradient is not tiny."""
    mesh = step.batch_mesh(jax.devices()[:1])
    trainable = {"decoder": adain_params["decoder"]}
    before = jax.tree.map(np.asarray, trainable)
    state = step.put_replicated(step.init_state(trainable, CONFIG), mesh)
    encoder = step.put_replicated(adain_params["encoder"], mesh)
    fn = step.compiled_step(mesh, CONFIG)
    c, s = UINT8[:2], UINT8[2:]
    state, metrics = fn(state, encoder, step.put_batch(c, mesh), step.put_batch(s, mesh))
    metrics = {k: float(v) for k, v in step.to_host(metrics).items()}
    expected = numpy_adain_loss(ref.vgg_state(), ref.decoder_state(3), c / 255.0, s / 255.0)
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, rel=1e-4), name
    assert metrics["total"] == pytest.approx(expected["content"] + 10 * expected["style"],
                                             rel=1e-4)
    assert metrics["lr"] == pytest.approx(1e-3)
    assert int(state.step) == 1
    moved = np.concatenate([np.ravel(a - b) for a, b in zip(
        jax.tree.leaves(step.to_host(state.params)), jax.tree.leaves(before), strict=True)])
    assert np.abs(moved).max() <= 1e-3 * (1 + 1e-5)
    assert np.median(np.abs(moved)) == pytest.approx(1e-3, rel=0.05)
    assert step.compiled_step(mesh, CONFIG) is fn  # cached per (mesh, config)


SHARDED = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from conftest import smooth_image
    from jaxstyle.arbitrary import step
    from jaxstyle.arbitrary.train_config import TrainConfig
    from jaxstyle.arbitrary.weights import random_params

    config = TrainConfig("adain", learning_rate=1e-4)
    encoder = random_params("adain", seed=1)["encoder"]
    trainable = step.init_params("adain", seed=2)
    batch = np.stack([smooth_image(70 + i, 32, 32) for i in range(8)])
    batch = np.round(batch * 255).astype(np.uint8)
    out = {}
    for n in (1, 4):
        mesh = step.batch_mesh(jax.devices()[:n])
        step.check_batch(4, mesh)
        state = step.put_replicated(step.init_state(trainable, config), mesh)
        enc = step.put_replicated(encoder, mesh)
        fn = step.compiled_step(mesh, config)
        c, s = step.put_batch(batch[:4], mesh), step.put_batch(batch[4:], mesh)
        hlo = fn.lower(state, enc, c, s).compile().as_text()
        totals = []
        for _ in range(3):
            state, metrics = fn(state, enc, c, s)
            totals.append(float(metrics["total"]))
        params = step.to_host(state.params)
        np.savez(sys.argv[1] + f"{n}.npz", *jax.tree.leaves(params))
        out[n] = {"totals": totals, "all_reduce": "all-reduce" in hlo,
                  "devices": len(c.sharding.device_set)}
    try:
        step.check_batch(5, step.batch_mesh())
    except ValueError as err:
        out["odd"] = str(err)
    print(json.dumps(out))
""")


def test_four_devices_equal_one(tmp_path):
    """Data parallel: the batch of 4 split over 4 devices (one image each), the gradients
    summed by an all-reduce, gives the one-device losses and weights for 3 steps."""
    out = finish(run_python(SHARDED, tmp_path / "p", env={
        "XLA_FLAGS": subprocess_xla_flags("--xla_force_host_platform_device_count=4")}))
    got = json.loads(out.strip().splitlines()[-1])
    one, four = got["1"], got["4"]
    assert one["devices"] == 1 and four["devices"] == 4
    assert four["all_reduce"] and not one["all_reduce"]
    np.testing.assert_allclose(four["totals"], one["totals"], rtol=1e-5)
    assert four["totals"][-1] < four["totals"][0]
    a, b = np.load(tmp_path / "p1.npz"), np.load(tmp_path / "p4.npz")
    # The gradient's all-reduce sums in another order; Adam turns that rounding into whole
    # steps where a gradient is near 0: 0.9% of the 3.5M weights moved by more than 1e-6
    # (up to 2.3e-4) with XLA's default emitters, 1.3% (up to 2.5e-4) with the suite's
    # compile flags. Bounded by Adam's largest steps; the losses they give agree to 1e-5
    # (above).
    assert_adam_runs_close(np.concatenate([np.ravel(b[k]) for k in a.files]),
                           np.concatenate([np.ravel(a[k]) for k in a.files]),
                           learning_rate=1e-4, steps=3, quantile=0.98)
    assert "multiple of 4" in got["odd"]
