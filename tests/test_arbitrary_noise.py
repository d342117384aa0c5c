"""MCCNet's illumination term in training (TrainConfig.noise_weight, --noise-weight): the
loss against an independent composition of the networks' public pieces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smooth_image

from jaxstyle import cli
from jaxstyle.arbitrary import adain, decode, encode, sanet
from jaxstyle.arbitrary.losses import adain_loss, noise_sample, sanet_loss
from jaxstyle.arbitrary.train_config import TrainConfig
from jaxstyle.files import SettingError


def _batch(seed, n=2, side=32):
    return jnp.asarray(np.stack([smooth_image(seed + i, side, side) for i in range(n)]))


def test_adain_noise_term(adain_params):
    c, s = _batch(0, 1, 16), _batch(5, 1, 16)
    n = noise_sample(jax.random.key(0), c.shape)
    total, noisy = jax.jit(adain_loss)(adain_params, c, s, noise=n, noise_weight=30.0)
    enc, dec = adain_params["encoder"], adain_params["decoder"]

    def out(x):
        return decode(dec, adain(encode(enc, x, ("relu4_1",))["relu4_1"],
                                 encode(enc, s, ("relu4_1",))["relu4_1"]))

    want = float(jnp.mean((out(c + n) - out(c)) ** 2))
    assert float(noisy["noise"]) == pytest.approx(want, rel=1e-4)
    assert float(total) == pytest.approx(
        float(noisy["content"] + 10 * noisy["style"] + 30 * noisy["noise"]), rel=1e-6)


def test_sanet_noise_term(sanet_params):
    c, s = _batch(0, 1), _batch(5, 1)
    n = noise_sample(jax.random.key(1), c.shape)
    total, noisy = jax.jit(sanet_loss)(sanet_params, c, s, noise=n, noise_weight=10.0)
    enc, dec, tp = (sanet_params[k] for k in ("encoder", "decoder", "transform"))
    fs = encode(enc, s, ("relu4_1", "relu5_1"))
    code = sanet.style_code(tp, fs["relu4_1"], fs["relu5_1"])

    def out(x):
        f = encode(enc, x, ("relu4_1", "relu5_1"))
        return decode(dec, sanet.transform(tp, f["relu4_1"], f["relu5_1"], code))

    want = float(jnp.mean((out(c + n) - out(c)) ** 2))
    assert float(noisy["noise"]) == pytest.approx(want, rel=1e-3)
    weights = {"content": 1, "style": 3, "identity1": 50, "identity2": 1, "noise": 10}
    assert float(total) == pytest.approx(sum(w * float(noisy[k]) for k, w in weights.items()),
                                         rel=1e-6)


def test_noise_sample_statistics():
    n = np.asarray(noise_sample(jax.random.key(3), (4, 64, 64, 3)))
    assert 0.009 < n.std() < 0.021 and abs(n.mean()) < 1e-3


def test_config_and_option(tmp_path):
    assert TrainConfig("adain").noise_weight == 0.0
    assert TrainConfig("adain", noise_weight=3000).step_key().noise_weight == 3000
    with pytest.raises(SettingError) as err:
        TrainConfig("adain", noise_weight=-1)
    assert err.value.name == "noise_weight"
    _, args = cli.parse(["train-adain", "--content-dir", "c", "--style-dir", "s", "--out",
                         str(tmp_path), "--noise-weight", "3000"])
    assert args.noise_weight == 3000.0
