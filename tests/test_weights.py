"""Weight loading, verification, conversion and download, on synthetic files in real layouts.

Files are written by tests/references/weight_files.py the way Keras, torch.save and jaxstyle
write them.
Downloads go to an HTTP server on 127.0.0.1 started here; nothing touches the network.
"""

import hashlib
import http.server
import importlib.abc
import os
import socket
import sys
import threading
import urllib.error
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from references import weight_files as wf

import jaxstyle
from jaxstyle import download as D
from jaxstyle import files as F
from jaxstyle import weights as W
from jaxstyle.vgg import VGG19, VGGWeights

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")


class _BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@pytest.fixture
def no_torch(monkeypatch):
    """Make `import torch` fail, as on a machine without torch (the restricted reader runs).

    torch leaves sys.modules for the test (restored after) rather than being set to None
    there: libraries such as scipy look for sys.modules["torch"] and would trip on a None.
    """
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_BlockTorch(), *sys.meta_path])


@pytest.fixture(scope="module")
def ref(weights):
    return {n: {k: np.array(v) for k, v in layer.items()} for n, layer in weights.params.items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory, weights):
    """Lazily written weight files, one per layout, shared by the module."""
    directory = tmp_path_factory.mktemp("weights")
    writers = {
        "keras_W_1.h5": lambda p: wf.write_keras_h5(p, weights.params, style="W_1"),
        "keras_kernel.h5": lambda p: wf.write_keras_h5(p, weights.params, style="kernel"),
        "keras_top.h5": lambda p: wf.write_keras_h5(
            p, weights.params, style="kernel", include_top=True
        ),
        "jaxstyle.npz": lambda p: wf.write_npz(p, weights.params, "caffe"),
        "written.pth": lambda p: wf.write_torch_zip(p, weights.params, classifier=True),
        "written_legacy.pth": lambda p: wf.write_torch_legacy(p, weights.params),
        "written_legacy_0_3.pth": lambda p: wf.write_torch_legacy(p, weights.params,
                                                                   before_0_4=True),
        "strided.pth": lambda p: wf.write_torch_zip(p, weights.params, transposed_view=True),
        "strided_legacy.pth": lambda p: wf.write_torch_legacy(p, weights.params,
                                                              transposed_view=True),
        "torch_save.pth": lambda p: wf.write_torch_with_torch(p, weights.params, classifier=True),
        "torch_legacy.pth": lambda p: wf.write_torch_with_torch(p, weights.params, legacy=True),
    }
    made = {}
    if HAVE_TORCH:  # written now: tests that hide torch may ask for them later
        for name in ("torch_save.pth", "torch_legacy.pth"):
            made[name] = writers[name](directory / name)

    def get(name):
        if name not in made:
            made[name] = writers[name](directory / name)
        return made[name]

    return get


def assert_same_params(params, ref):
    assert sorted(params) == sorted(ref)
    for name in ref:
        for kind in ("kernel", "bias"):
            got = np.asarray(params[name][kind])
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, ref[name][kind], err_msg=f"{name}/{kind}")


# --- every format loads to the same params -----------------------------------------------------

KERAS = ["keras_W_1.h5", "keras_kernel.h5", "keras_top.h5"]


@pytest.mark.parametrize("name", [*KERAS, "jaxstyle.npz"])
def test_keras_and_npz_load_identically(files, ref, name):
    w = jaxstyle.load_vgg19(files(name))
    assert w.convention == "caffe"
    assert w.source == str(files(name))
    assert_same_params(w.params, ref)


@pytest.mark.parametrize(
    "name",
    [
        "written.pth",
        "strided.pth",
        "strided_legacy.pth",
        "written_legacy.pth",
        "written_legacy_0_3.pth",
        pytest.param("torch_save.pth", marks=needs_torch),
        pytest.param("torch_legacy.pth", marks=needs_torch),
    ],
)
def test_torch_restricted_reader_without_torch(files, ref, no_torch, name):
    w = jaxstyle.load_vgg19(files(name))
    assert w.convention == "torch"
    assert_same_params(w.params, ref)


@needs_torch
@pytest.mark.parametrize("name", ["torch_save.pth", "torch_legacy.pth", "written.pth",
                                  "written_legacy.pth"])
def test_torch_files_with_torch_load(files, ref, name):
    # written*.pth through torch.load also proves the test writers make what torch reads.
    w = jaxstyle.load_vgg19(files(name))
    assert w.convention == "torch"
    assert_same_params(w.params, ref)


def test_torch_layout_convolves_like_pytorch(files, weights, no_torch):
    """OIHW -> HWIO proved against PyTorch's definition, computed with SciPy on the raw OIHW.

    torch.nn.Conv2d: out[o] = b[o] + sum_c cross_correlate(x[c], W[o, c]), zero padding 1.
    """
    state = wf.torch_state_dict_arrays(weights.params)
    loaded = jaxstyle.load_vgg19(files("written.pth"))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((12, 10, 3))  # an already preprocessed input, (H, W, C)

    def torch_conv(x, w_oihw, b):
        return np.stack(
            [
                b[o]
                + sum(
                    scipy.signal.correlate2d(x[..., c], w_oihw[o, c], mode="same")
                    for c in range(w_oihw.shape[1])
                )
                for o in range(w_oihw.shape[0])
            ],
            axis=-1,
        )

    c11 = torch_conv(x, state["features.0.weight"].astype(float), state["features.0.bias"])
    c12 = torch_conv(np.maximum(c11, 0), state["features.2.weight"].astype(float),
                     state["features.2.bias"])  # fmt: skip
    out = VGG19(layers=("conv1_1", "conv1_2")).apply(
        {"params": loaded.params}, x[None].astype(np.float32)
    )
    np.testing.assert_allclose(out["conv1_1"][0], c11, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["conv1_2"][0], c12, rtol=1e-4, atol=1e-4)


def test_all_formats_give_identical_features(files, no_torch):
    image = np.random.default_rng(0).random((32, 32, 3), np.float32)
    layers = ("relu1_1", "pool2", "relu3_1")
    by_convention = {}
    for name in [*KERAS, "jaxstyle.npz", "written.pth"]:
        w = jaxstyle.load_vgg19(files(name))
        feats = jaxstyle.extract_features(w, image, layers)
        if w.convention not in by_convention:
            by_convention[w.convention] = (name, feats)
            continue
        first, expected = by_convention[w.convention]
        for layer in layers:
            np.testing.assert_array_equal(feats[layer], expected[layer], err_msg=f"{name}/{first}")
    assert sorted(by_convention) == ["caffe", "torch"]


# --- conversion ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "convention"), [("keras_W_1.h5", "caffe"), ("written.pth", "torch")]
)
def test_convert_round_trip(files, ref, tmp_path, no_torch, name, convention):
    dest = tmp_path / "vgg19.npz"
    dest.write_bytes(b"an older file, replaced atomically")
    assert jaxstyle.convert_weights(files(name), dest) == dest
    assert os.listdir(tmp_path) == ["vgg19.npz"]  # no temporary file left behind
    w = jaxstyle.load_vgg19(dest)
    assert w.convention == convention
    assert_same_params(w.params, ref)
    with np.load(dest, allow_pickle=False) as f:  # the documented layout, readable without us
        assert sorted(f.files) == sorted(["convention", *W.expected_shapes()])
        assert f["convention"].shape == () and str(f["convention"]) == convention


def test_convert_to_unwritable_place(files, tmp_path):
    with pytest.raises(W.WeightsError, match="cannot write"):
        jaxstyle.convert_weights(files("jaxstyle.npz"), tmp_path / "missing_dir" / "x.npz")


def test_save_weights_refuses_wrong_params(tmp_path, weights):
    params = dict(weights.params)
    del params["conv5_4"]
    with pytest.raises(
        W.WeightsError,
        match="x.npz: refusing to write VGG19 weights: missing conv5_4/kernel, conv5_4/bias",
    ):
        jaxstyle.save_weights(VGGWeights(params, "caffe"), tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_env_var_names_the_default_file(files, ref, monkeypatch, tmp_path):
    monkeypatch.setenv("JAXSTYLE_WEIGHTS", str(files("jaxstyle.npz")))
    monkeypatch.setattr(D, "_urlopen", _no_network)
    w = jaxstyle.load_vgg19(cache_dir=tmp_path)
    assert w.source == str(files("jaxstyle.npz"))
    assert_same_params(w.params, ref)
    monkeypatch.setenv("JAXSTYLE_WEIGHTS", str(tmp_path / "gone.npz"))
    with pytest.raises(ValueError, match=r"gone.npz.*\(file named by \$JAXSTYLE_WEIGHTS\)"):
        jaxstyle.load_vgg19(cache_dir=tmp_path)
    url = "file://" + str(files("jaxstyle.npz"))  # a file URL is read in place, not copied
    assert jaxstyle.load_vgg19(url).source == str(files("jaxstyle.npz"))


def test_expected_shapes_come_from_the_model():
    shapes = W.expected_shapes()
    assert len(shapes) == 32
    assert shapes["conv1_1/kernel"] == (3, 3, 3, 64)
    assert shapes["conv3_2/kernel"] == (3, 3, 256, 256)
    assert shapes["conv5_4/bias"] == (512,)
    # The table the loader checks files against is the Flax module's own params.
    abstract = jax.eval_shape(VGG19(layers=("pool5",)).init, jax.random.key(0),
                              jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))["params"]
    assert shapes == {
        f"{n}/{k}": tuple(a.shape) for n, d in abstract.items() for k, a in d.items()
    }
    assert list(shapes) == [f"{n}/{k}" for n in jaxstyle.vgg.CONV_NAMES for k in ("kernel", "bias")]


def test_torch_index_matches_torchvision_sequence():
    # torchvision's cfg "E": 64,64,M,128,128,M,256x4,M,512x4,M,512x4,M; each conv is followed
    # by a ReLU module and each M is one MaxPool module.
    cfg = [64, 64, "M", 128, 128, "M", *[256] * 4, "M", *[512] * 4, "M", *[512] * 4, "M"]
    index, conv_indices = 0, []
    for v in cfg:
        if v == "M":
            index += 1
        else:
            conv_indices.append(index)
            index += 2
    assert list(W.TORCH_FEATURE_INDEX.values()) == conv_indices
    assert list(W.TORCH_FEATURE_INDEX) == list(jaxstyle.vgg.CONV_NAMES)


# --- bad files ----------------------------------------------------------------------------------


def test_not_hdf5(tmp_path):
    path = tmp_path / "vgg19.h5"
    path.write_text("<html>404 Not Found</html>")
    with pytest.raises(ValueError, match=r"vgg19.h5 is not an HDF5 file"):
        jaxstyle.load_vgg19(path)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read weights file .*nope.npz"):
        jaxstyle.load_vgg19(tmp_path / "nope.npz")


def test_keras_missing_layer(tmp_path, weights):
    path = wf.write_keras_h5(tmp_path / "m.h5", weights.params, skip=("block3_conv2",))
    with pytest.raises(
        ValueError,
        match=r"m.h5: does not hold VGG19 weights: missing conv3_2/kernel, conv3_2/bias$",
    ):
        jaxstyle.load_vgg19(path)


def test_keras_wrong_kernel_shape(tmp_path, weights):
    bad = (np.zeros((3, 3, 128, 256), np.float32), np.zeros(256, np.float32))
    path = wf.write_keras_h5(
        tmp_path / "s.h5", weights.params, style="kernel", override={"block3_conv2": bad}
    )
    expected = r"conv3_2/kernel has shape \(3, 3, 128, 256\), expected \(3, 3, 256, 256\)"
    with pytest.raises(ValueError, match=expected):
        jaxstyle.load_vgg19(path)


def test_keras_file_without_layer_names(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("w", data=np.zeros(3))
    with pytest.raises(ValueError, match="x.h5.*not a Keras weights file"):
        jaxstyle.load_vgg19(tmp_path / "x.h5")


def test_truncated_files(tmp_path, files, no_torch):
    for name in ["jaxstyle.npz", "written.pth", "written_legacy.pth", "keras_W_1.h5"]:
        data = files(name).read_bytes()
        path = tmp_path / name
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match=f"{name}.*(corrupt|truncated|cannot read)"):
            jaxstyle.load_vgg19(path)


def test_npz_with_extra_layer_and_nan(tmp_path, weights):
    path = wf.write_npz(tmp_path / "a.npz", weights.params)
    with np.load(path) as f:
        arrays = dict(f)
    arrays["conv6_1/kernel"] = np.zeros(3, np.float32)
    arrays["conv2_1/bias"] = arrays["conv2_1/bias"].copy()
    arrays["conv2_1/bias"][3] = np.nan
    np.savez(tmp_path / "b.npz", **arrays)
    with pytest.raises(ValueError, match="unexpected conv6_1/kernel.*conv2_1/bias contains NaN"):
        jaxstyle.load_vgg19(tmp_path / "b.npz")
    del arrays["convention"], arrays["conv6_1/kernel"]
    np.savez(tmp_path / "c.npz", **arrays)
    with pytest.raises(ValueError, match="c.npz: npz without a 0-d string 'convention'"):
        jaxstyle.load_vgg19(tmp_path / "c.npz")


@pytest.mark.parametrize("writer", [wf.write_torch_zip, wf.write_torch_legacy],
                         ids=["zip", "legacy"])
def test_torch_extra_key(tmp_path, weights, no_torch, writer):
    extra = {"features.37.weight": np.zeros((2, 2, 3, 3), np.float32)}
    path = writer(tmp_path / "e.pth", weights.params, extra_tensors=extra)
    with pytest.raises(ValueError, match="e.pth: keys that torchvision's VGG19 does not have: "
                                         "features.37.weight"):  # fmt: skip
        jaxstyle.load_vgg19(path)


@pytest.mark.parametrize("torch_present", [False, pytest.param(True, marks=needs_torch)])
@pytest.mark.parametrize("writer", [wf.write_torch_zip, wf.write_torch_legacy],
                         ids=["zip", "legacy"])
def test_pickle_with_forbidden_global_is_refused_not_run(tmp_path, weights, monkeypatch,
                                                         torch_present, writer):  # fmt: skip
    if not torch_present:
        monkeypatch.delitem(sys.modules, "torch", raising=False)
        monkeypatch.setattr(sys, "meta_path", [_BlockTorch(), *sys.meta_path])
    marker = tmp_path / "pwned"
    payload = wf.evil("os", "system", f"touch {marker}")
    path = writer(tmp_path / "evil.pth", weights.params, extra={"x": payload})
    with pytest.raises(ValueError, match=r"evil.pth.*os.system"):
        jaxstyle.load_vgg19(path)
    assert not marker.exists()


def test_legacy_header_alone_is_corrupt(tmp_path, no_torch):
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    # The legacy format opens with the pickled magic number 0x1950a86a20f9469cfc6c.
    path.write_bytes(b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.")
    with pytest.raises(ValueError, match=r"vgg19-dcbb9e9d.pth is a corrupt PyTorch checkpoint"):
        jaxstyle.load_vgg19(path)


# --- download -----------------------------------------------------------------------------------


def _no_network(*args, **kwargs):
    raise AssertionError("unexpected network access")


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}  # path -> bytes; the "/cut/" prefix sends half and hangs up
    hits: list = []
    timeout = 5  # a stuck client cannot hold the server thread forever

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.hits.append(self.path)
        cut = self.path.startswith("/cut/")
        body = self.routes.get(self.path.removeprefix("/cut"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if cut else body)
        if cut:
            self.close_connection = True

    def log_message(self, *args):  # keep test output quiet
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # clients that hang up on purpose (the Ctrl-C test) are not errors here


@pytest.fixture(scope="module")
def server(files):
    body = files("keras_W_1.h5").read_bytes()
    _Handler.routes = {"/notop.h5": body, "/plain.npz": files("jaxstyle.npz").read_bytes()}
    _Handler.hits = []
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hashlib.md5(body).hexdigest()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def default_from(server, monkeypatch):
    """Point the default download at the local server; returns a function to pick the path."""
    base, md5 = server

    def use(path="/notop.h5", checksum=md5):
        monkeypatch.setattr(W, "DEFAULT_URL", base + path)
        monkeypatch.setattr(W, "DEFAULT_MD5", checksum)
        return base + path

    monkeypatch.delenv("JAXSTYLE_WEIGHTS", raising=False)
    return use


def test_download_verifies_caches_and_then_stays_offline(default_from, tmp_path, ref, monkeypatch):
    url = default_from()
    cache = tmp_path / "cache"
    calls = []
    hits = len(_Handler.hits)
    w = jaxstyle.load_vgg19(
        cache_dir=cache, progress=lambda done, total: calls.append((done, total))
    )
    assert_same_params(w.params, ref)
    cached = cache / W.DEFAULT_FILENAME
    assert w.source == str(cached)
    assert sorted(os.listdir(cache)) == [f".{W.DEFAULT_FILENAME}.verified", W.DEFAULT_FILENAME]
    size = cached.stat().st_size
    assert _Handler.hits[hits:] == ["/notop.h5"] and url.endswith("/notop.h5")
    assert calls[0] == (0, size) and calls[-1] == (size, size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    monkeypatch.setattr(D, "_urlopen", _no_network)  # a second call must not touch the network
    monkeypatch.setenv("JAXSTYLE_HOME", str(cache))  # and JAXSTYLE_HOME names the cache
    again = jaxstyle.load_vgg19(progress=lambda *a: calls.append(a))
    assert_same_params(again.params, ref)
    assert len(_Handler.hits) == hits + 1 and calls[-1] == (size, size)


def test_verified_cache_is_not_hashed_again_until_it_changes(default_from, tmp_path, ref,
                                                              monkeypatch):
    default_from()
    jaxstyle.load_vgg19(cache_dir=tmp_path)  # downloaded, verified, stamped
    cached = tmp_path / W.DEFAULT_FILENAME
    hashed = []
    real_check, real_open = D._checksum_error, D._urlopen
    monkeypatch.setattr(D, "_checksum_error", lambda *a: hashed.append(a) or real_check(*a))
    monkeypatch.setattr(D, "_urlopen", _no_network)

    assert_same_params(jaxstyle.load_vgg19(cache_dir=tmp_path).params, ref)
    assert hashed == []  # unchanged since verified: the stamp stands for the MD5
    st = cached.stat()
    os.utime(cached, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # rewritten, same bytes
    jaxstyle.load_vgg19(cache_dir=tmp_path)
    assert len(hashed) == 1  # hashed again, passed, stamped again
    jaxstyle.load_vgg19(cache_dir=tmp_path)
    assert len(hashed) == 1

    # Replaced by a damaged copy of the same size with the same mtime (as `cp -p` would):
    # the inode and ctime differ, so it is hashed, rejected, and fetched again.
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy = tmp_path / "copy"
    copy.write_bytes(bytes(data))
    st = cached.stat()
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(copy, cached)
    monkeypatch.setattr(D, "_urlopen", real_open)
    assert_same_params(jaxstyle.load_vgg19(cache_dir=tmp_path).params, ref)
    assert len(hashed) == 3  # the damaged file, then the new download
    # A stamp for another checksum (a new published file) does not vouch for this one.
    monkeypatch.setattr(W, "DEFAULT_MD5", "0" * 32)
    with pytest.raises(W.WeightsError, match="checksum mismatch"):
        jaxstyle.load_vgg19(cache_dir=tmp_path)


def test_wrong_checksum_leaves_nothing(default_from, tmp_path):
    default_from(checksum="0" * 32)
    with pytest.raises(W.WeightsError, match="checksum mismatch.*expected 0000"):
        jaxstyle.load_vgg19(cache_dir=tmp_path)
    assert os.listdir(tmp_path) == []


def test_connection_cut_half_way_leaves_no_file(default_from, tmp_path):
    default_from("/cut/notop.h5")
    with pytest.raises(W.WeightsError, match="connection closed"):
        jaxstyle.load_vgg19(cache_dir=tmp_path)
    assert os.listdir(tmp_path) == []


def test_interrupted_download_leaves_no_file(default_from, tmp_path):
    default_from()

    def ctrl_c(done, total):
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        jaxstyle.load_vgg19(cache_dir=tmp_path, progress=ctrl_c)
    assert os.listdir(tmp_path) == []


def test_damaged_cache_entry_is_fetched_again(default_from, tmp_path, ref):
    default_from()
    (tmp_path / W.DEFAULT_FILENAME).write_bytes(b"half a file")
    w = jaxstyle.load_vgg19(cache_dir=tmp_path)
    assert_same_params(w.params, ref)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("how", ["refused", "no_route", "http_404"])
def test_offline_gives_one_clear_message(default_from, server, tmp_path, monkeypatch, how):
    if how == "refused":
        url = f"http://127.0.0.1:{_closed_port()}/notop.h5"
        monkeypatch.setattr(W, "DEFAULT_URL", url)
    elif how == "no_route":
        url = default_from()

        def offline(*args, **kwargs):
            raise urllib.error.URLError(OSError(101, "Network is unreachable"))

        monkeypatch.setattr(D, "_urlopen", offline)
    else:
        url = default_from("/missing.h5")
    with pytest.raises(W.WeightsError) as info:
        jaxstyle.load_vgg19(cache_dir=tmp_path / "c")
    message = str(info.value)
    for part in (url, W.DEFAULT_FILENAME, "load_vgg19(PATH)", "JAXSTYLE_WEIGHTS",
                 str(tmp_path / "c" / W.DEFAULT_FILENAME)):  # fmt: skip
        assert part in message, (part, message)
    assert "\n" not in message
    if how == "http_404":
        assert "HTTP 404" in message
    assert not any((tmp_path / "c").iterdir())


def test_url_source_with_and_without_published_checksum(server, tmp_path, ref):
    base, _ = server
    w = jaxstyle.load_vgg19(base + "/plain.npz", cache_dir=tmp_path)  # none published: loaded
    assert w.source == str(tmp_path / "plain.npz")
    assert_same_params(w.params, ref)
    body = _Handler.routes["/plain.npz"]
    good = f"/vgg19-{hashlib.sha256(body).hexdigest()[:8]}.pth"
    _Handler.routes[good] = body  # a torch.hub-style name carries a SHA-256 prefix
    _Handler.routes["/vgg19-00000000.pth"] = body
    assert_same_params(jaxstyle.load_vgg19(base + good, cache_dir=tmp_path).params, ref)
    with pytest.raises(W.WeightsError, match="SHA-256"):
        jaxstyle.load_vgg19(base + "/vgg19-00000000.pth", cache_dir=tmp_path)
    assert not (tmp_path / "vgg19-00000000.pth").exists()


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXSTYLE_HOME", str(tmp_path / "home"))
    assert F.home_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert F.home_dir() == tmp_path / "home"
    monkeypatch.delenv("JAXSTYLE_HOME")
    import platformdirs

    assert F.home_dir() == type(tmp_path)(platformdirs.user_cache_dir("jaxstyle"))


@pytest.fixture(scope="module")
def repeated_storage_files(tmp_path_factory):
    """Files torch.save wrote (both formats) holding a (4000, 4000) tensor that repeats a
    3-element storage (stride 0): 64 MB described by a few bytes."""
    torch = pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("repeated")
    state = {"features.0.bias": torch.arange(3.0).as_strided((4000, 4000), (0, 0))}
    paths = []
    for legacy in (False, True):
        path = folder / f"repeated_{'legacy' if legacy else 'zip'}.pth"
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
        paths.append(path)
    return paths


def test_a_repeating_tensor_record_is_refused(repeated_storage_files, no_torch):
    for path in repeated_storage_files:
        with pytest.raises(W.WeightsError, match="refused.*repeats its storage"):
            jaxstyle.load_vgg19(path)


def test_a_pickle_cannot_alter_the_readers_stand_ins(tmp_path, files, ref, no_torch):
    """BUILD on the rebuild function a file names (here: its __defaults__) must not change
    how the next file is read."""
    pkl = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n"  # the function
           b"N}X\x0c\x00\x00\x00__defaults__)s\x86b.")  # BUILD (None, {__defaults__: ()})
    bad = tmp_path / "bad.pth"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("archive/data.pkl", pkl)
    with pytest.raises(W.WeightsError):
        jaxstyle.load_vgg19(bad)
    assert_same_params(jaxstyle.load_vgg19(files("written.pth")).params, ref)
