"""Strict test settings, shared fixtures and the helpers every test file uses.

Rank promotion raises and warnings are errors (pyproject), so silent broadcasting and
deprecated calls fail here first. Compiled functions are shared through session fixtures.
Independent implementations the tests compare with (NumPy, PyTorch) live in tests/
(`references/`).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

# Tests run on the CPU, with a persistent compile cache off so every test sees the same jax.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAXSTYLE_NO_COMPILE_CACHE", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jaxstyle  # noqa: E402
from jaxstyle import download, runtime  # noqa: E402

# The XLA CPU flags of every in-process test: the ones `jaxstyle` itself runs the objective
# with (runtime.CPU_FLAGS), LLVM's optimizations off (TEST_COMPILE), plus whatever XLA_FLAGS
# the caller set (those win; e.g. --xla_cpu_max_isa=AVX2 to run the suite as on an older
# CPU). XLA reads them once, when the first test starts a backend: set here, before any, so
# that no test's order decides them.
# Level 0 instead of XLA's default 2, and XLA's older elemental emitters instead of its MLIR
# fusion emitters: the tests' programs run a few steps on small images, so compile time is
# most of their time (the convolutions and dots are library calls either way). On this CPU
# LLVM level 0 took the suite from 398-425 s (level 1) to 356 s on 2 workers, and the older
# emitters compiled the 32 px stylize programs in 1.2 s instead of 3.4 s (the suite: 231 s).
# A program that runs long passes OPTIMIZED_COMPILE to its jit.
TEST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
OPTIMIZED_COMPILE = {"xla_backend_optimization_level": 1}
_CALLER_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")
runtime.set_xla_cpu_flags((*runtime.CPU_FLAGS, *TEST_COMPILE))
jax.config.update("jax_numpy_rank_promotion", "raise")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def subprocess_xla_flags(*extra: str, library_flags: bool = True) -> str:
    """The XLA_FLAGS of a test's subprocess, with `extra` flags added.

    A subprocess inherits this process's XLA_FLAGS (the caller's, runtime.CPU_FLAGS and
    TEST_COMPILE) anyway: call this only to add a flag (e.g. more host devices), or with
    library_flags=False for a process that sets its own library flags (training's
    runtime.CPU_TRAIN_FLAGS, which lose to flags of the same name already set). The caller's
    flags are kept either way: a suite run under --xla_cpu_max_isa=AVX2 runs its
    subprocesses so too."""
    base = os.environ.get("XLA_FLAGS", "") if library_flags else " ".join(
        [_CALLER_XLA_FLAGS, *TEST_COMPILE])
    return " ".join([base, *extra]).strip()


# The first two VGG blocks only, for tests of the run's plumbing (stages, sweeps, callbacks,
# optimizers) rather than of the network: half the compile time of the default layers.
SHALLOW = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}


def assert_rel(actual, expected, rtol, what=""):
    """max |actual - expected| / max |expected| < rtol (float64; an all-zero expectation
    would make the check vacuous and fails it)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = np.abs(expected).max()
    assert scale > 0, f"{what}: expected all zero, the check would be vacuous"
    err = np.abs(actual - expected).max() / scale
    assert err < rtol, f"{what}: relative error {err:.2e}"


# Adam's largest move of one element in one step, in learning rates: its bias-corrected
# m / sqrt(v) is at most (1 - b1) / sqrt(1 - b2) = 3.16 for optax's b1 0.9, b2 0.999 (Kingma
# and Ba 2015, section 2.1; exactly 1 at the first step).
ADAM_MAX_STEP = (1 - 0.9) / (1 - 0.999) ** 0.5


def assert_adam_runs_close(actual, expected, *, learning_rate, steps, typical=1e-6,
                           quantile=0.99, what=""):
    """Two float32 Adam runs of one computation whose sums run in another order (vmap against
    a loop, several devices against one): the rounding differs by a few float32 spacings
    (`typical`, at the `quantile` of the elements), and where a gradient is near zero Adam's
    sign-like g / sqrt(v) can turn it into whole steps: every element within the most two
    runs can drift apart in `steps` steps, 2 x steps x ADAM_MAX_STEP x learning_rate. Bounds
    from the arithmetic, not one CPU's rounding."""
    diff = np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))
    worst = 2 * steps * ADAM_MAX_STEP * learning_rate
    assert np.quantile(diff, quantile) <= typical, (what, np.quantile(diff, quantile))
    assert diff.max() <= worst, (what, diff.max(), worst)


def one_line_error(capsys) -> str:
    """stderr of the last main() call: exactly one line, no traceback; returned."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("jaxstyle: error: ")
    return lines[0]


def load_script(path: str):
    """A script of this checkout (e.g. "benchmarks/bench.py") imported as a module."""
    path = ROOT / path
    spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_python(script: str, *args, env=None) -> subprocess.Popen:
    """Start `script` with this checkout first on the path (the venv's jaxstyle may be another
    checkout), on the CPU, without the compile cache."""
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        env=dict(os.environ, JAX_PLATFORMS="cpu", JAXSTYLE_NO_COMPILE_CACHE="1",
                 PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), **(env or {})),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout=300) -> str:
    """The stdout of a `run_python` process, which must exit 0."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out


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
    (tests/references/numpy_arbitrary.py), written once per session."""
    from references import numpy_arbitrary

    return numpy_arbitrary.write_released(tmp_path_factory.mktemp("released"))


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
