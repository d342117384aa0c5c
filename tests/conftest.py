"""Strict test settings and shared fixtures.

Rank promotion raises and warnings are errors (pyproject), so silent broadcasting and
deprecated calls fail here first. Compiled functions are shared through session fixtures.
"""

import os

# Tests run on the CPU, with a persistent compile cache off so every test sees the same jax.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAXSTYLE_NO_COMPILE_CACHE", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

import jaxstyle  # noqa: E402
from jaxstyle import download  # noqa: E402


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Downloads may reach the tests' own servers on 127.0.0.1, nothing else: a test that
    would fetch from the internet fails at once instead of depending on the network."""
    import urllib.error
    import urllib.parse

    real = download._urlopen

    def guarded(url, *args, **kwargs):
        host = urllib.parse.urlparse(url if isinstance(url, str) else url.full_url).hostname
        if host not in ("127.0.0.1", "localhost"):
            raise urllib.error.URLError(f"no network in the tests ({host})")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(download, "_urlopen", guarded)


@pytest.fixture(scope="session")
def weights():
    """Synthetic VGG19 weights (caffe convention), shared by the whole session."""
    return jaxstyle.random_weights(seed=0)


@pytest.fixture(scope="session")
def torch_convention_weights():
    return jaxstyle.random_weights(seed=1, convention="torch")


def smooth_image(seed: int, height: int, width: int) -> np.ndarray:
    """A deterministic, smooth-ish (H, W, 3) float32 RGB image in [0, 1]."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 8 + 2, width // 8 + 2, 3))
    ys = np.linspace(0, coarse.shape[0] - 1.001, height)
    xs = np.linspace(0, coarse.shape[1] - 1.001, width)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    img = (coarse[y0][:, x0] * (1 - fy) * (1 - fx) + coarse[y0 + 1][:, x0] * fy * (1 - fx)
           + coarse[y0][:, x0 + 1] * (1 - fy) * fx + coarse[y0 + 1][:, x0 + 1] * fy * fx)
    img += 0.05 * rng.standard_normal(img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.fixture(scope="session")
def content_image():
    return smooth_image(10, 48, 64)


@pytest.fixture(scope="session")
def style_image():
    return smooth_image(11, 56, 40)


@pytest.fixture(scope="session")
def arbitrary_files(tmp_path_factory):
    """The five released AdaIN/SANet files with synthetic weights, in PyTorch's legacy format
    (tests/arbitrary_reference.py), written once per session."""
    import arbitrary_reference

    return arbitrary_reference.write_released(tmp_path_factory.mktemp("released"))


@pytest.fixture(scope="session")
def sanet_params(arbitrary_files):
    from jaxstyle.arbitrary import load_sanet

    return load_sanet(vgg=arbitrary_files["vgg_normalised.pth"],
                      decoder=arbitrary_files["decoder_iter_500000.pth"],
                      transformer=arbitrary_files["transformer_iter_500000.pth"])


@pytest.fixture(scope="session")
def adain_params(arbitrary_files):
    from jaxstyle.arbitrary import load_adain

    return load_adain(vgg=arbitrary_files["vgg_normalised.pth"],
                      decoder=arbitrary_files["decoder.pth"])
