"""Reading the released AdaIN/SANet files and jaxstyle's model .npz, on synthetic files
written in the released layouts and PyTorch's legacy format (tests/references/numpy_arbitrary.py):
every key and shape, the encoder's first layer, files given in each other's place,
truncated, corrupt and missing files, $JAXSTYLE_ARBITRARY_WEIGHTS, conversion."""

import zipfile

import jax
import numpy as np
import pytest
from references import numpy_arbitrary as ref
from references import weight_files as wf

from jaxstyle import torchfile
from jaxstyle.arbitrary import (
    EncoderInputWarning,
    convert,
    load_adain,
    load_sanet,
    random_params,
    read_model,
    save_model,
)
from jaxstyle.arbitrary import weights as W
from jaxstyle.files import WeightsError

# Params paths of the released keys, written out here independently of jaxstyle's tables.
VGG_NAMES = {0: "conv0", 2: "conv1_1", 5: "conv1_2", 9: "conv2_1", 12: "conv2_2",
             16: "conv3_1", 19: "conv3_2", 22: "conv3_3", 25: "conv3_4", 29: "conv4_1",
             32: "conv4_2", 35: "conv4_3", 38: "conv4_4", 42: "conv5_1"}
DECODER_NAMES = {1: "conv1", 5: "conv2", 8: "conv3", 11: "conv4", 14: "conv5", 18: "conv6",
                 21: "conv7", 25: "conv8", 28: "conv9"}


@pytest.fixture(scope="module")
def files(arbitrary_files):
    return arbitrary_files


@pytest.fixture(autouse=True)
def no_weights_dir(monkeypatch):
    monkeypatch.delenv(W.ENV_DIR, raising=False)


def _expected(part_state, names):
    """{name: {"kernel": HWIO, "bias"}} from an OIHW state dict and an index -> name table."""
    return {name: {"kernel": part_state[f"{i}.weight"].transpose(2, 3, 1, 0),
                   "bias": part_state[f"{i}.bias"]} for i, name in names.items()}


def _assert_tree_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.shape == e.shape and a.dtype == np.float32
        np.testing.assert_array_equal(a, e)


def _transform_expected():
    state = ref.transformer_state()
    out = {}
    for level in ("sanet4_1", "sanet5_1"):
        out[level] = {name: {"kernel": state[f"{level}.{name}.weight"].transpose(2, 3, 1, 0),
                             "bias": state[f"{level}.{name}.bias"]}
                      for name in ("f", "g", "h", "out_conv")}
    out["merge_conv"] = {"kernel": state["merge_conv.weight"].transpose(2, 3, 1, 0),
                         "bias": state["merge_conv.bias"]}
    return out


@pytest.mark.parametrize("reader", ["torch", "restricted"])
def test_sanet_every_key_and_shape(files, reader, monkeypatch):
    """Every used key lands at its place, transposed OIHW -> HWIO, with torch.load and with
    jaxstyle's torch-free reader of the legacy format."""
    if reader == "restricted":
        monkeypatch.setattr(torchfile, "_import_torch", lambda: None)
    elif torchfile._import_torch() is None:
        pytest.skip("torch is not installed")
    params = W.read_params("sanet", vgg=files["vgg_normalised.pth"],
                           decoder=files["decoder_iter_500000.pth"],
                           transformer=files["transformer_iter_500000.pth"])
    _assert_tree_equal(params, {"encoder": _expected(ref.vgg_state(), VGG_NAMES),
                                "decoder": _expected(ref.decoder_state(1), DECODER_NAMES),
                                "transform": _transform_expected()})


def test_adain_encoder_stops_at_conv4_1(files):
    params = load_adain(vgg=files["vgg_normalised.pth"], decoder=files["decoder.pth"])
    vgg = {i: n for i, n in VGG_NAMES.items() if i <= 29}
    _assert_tree_equal(params, {"encoder": _expected(ref.vgg_state(), vgg),
                                "decoder": _expected(ref.decoder_state(3), DECODER_NAMES)})
    assert isinstance(params["decoder"]["conv1"]["kernel"], jax.Array)  # on the device


@pytest.mark.parametrize("given, as_, found", [
    ("decoder.pth", "vgg", "an AdaIN/SANet decoder"),
    ("vgg_normalised.pth", "decoder", "the normalised VGG19 encoder"),
    ("transformer_iter_500000.pth", "decoder", "the SANet Transform"),
    ("decoder_iter_500000.pth", "transformer", "an AdaIN/SANet decoder"),
])
def test_a_file_in_another_s_place_is_named(files, given, as_, found):
    sources = {"vgg": files["vgg_normalised.pth"], "decoder": files["decoder_iter_500000.pth"],
               "transformer": files["transformer_iter_500000.pth"]}
    sources[as_] = files[given]
    with pytest.raises(WeightsError) as e:
        load_sanet(**sources)
    message = str(e.value)
    assert "\n" not in message and str(files[given]) in message
    assert f"is {found}" in message


def test_truncated_and_corrupt_files(files, tmp_path):
    data = files["decoder.pth"].read_bytes()
    for name, content in (("cut.pth", data[: len(data) // 2]), ("junk.pth", b"not a pickle"),
                          ("empty.pth", b"")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(WeightsError) as e:
            load_adain(vgg=files["vgg_normalised.pth"], decoder=path)
        assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_files_say_where_they_are_published(files, tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match=r"vgg_normalised\.pth.*pytorch-AdaIN.*no checksum"):
        load_adain(decoder=files["decoder.pth"])
    with pytest.raises(WeightsError, match=rf"decoder_iter_500000\.pth.*{W.ENV_DIR}.*SANET"):
        load_sanet(vgg=files["vgg_normalised.pth"])
    with pytest.raises(WeightsError, match="no such file"):
        load_adain(vgg=tmp_path / "nope.pth", decoder=files["decoder.pth"])
    monkeypatch.setenv(W.ENV_DIR, str(tmp_path))
    with pytest.raises(WeightsError, match=rf"decoder\.pth or iter_1000000\.pth not found in "
                                           rf"{tmp_path}"):
        load_adain(vgg=files["vgg_normalised.pth"])


def test_weights_directory(files, monkeypatch, tmp_path, sanet_params):
    monkeypatch.setenv(W.ENV_DIR, str(files["vgg_normalised.pth"].parent))
    _assert_tree_equal(W.read_params("sanet"), jax.device_get(sanet_params))
    # AdaIN prefers decoder.pth, else iter_1000000.pth; explicit files win.
    assert np.array_equal(W.read_params("adain")["decoder"]["conv9"]["bias"],
                          ref.decoder_state(3)["28.bias"])
    explicit = W.read_params("adain", decoder=files["iter_1000000.pth"])
    assert np.array_equal(explicit["decoder"]["conv9"]["bias"], ref.decoder_state(4)["28.bias"])
    other = tmp_path / "only-iter"
    other.mkdir()
    for name in ("vgg_normalised.pth", "iter_1000000.pth"):
        (other / name).write_bytes(files[name].read_bytes())
    monkeypatch.setenv(W.ENV_DIR, str(other))
    assert np.array_equal(W.read_params("adain")["decoder"]["conv9"]["bias"],
                          ref.decoder_state(4)["28.bias"])


def _write(tmp_path, name, state):
    return wf.write_legacy_state_dict(tmp_path / name, state)


def test_bad_keys_and_shapes_are_listed(files, tmp_path):
    state = dict(ref.decoder_state())
    state["5.weight"] = state["5.weight"][:, :128]
    del state["28.bias"]
    state["30.weight"] = np.zeros(3, np.float32)
    path = _write(tmp_path, "bad.pth", state)
    with pytest.raises(WeightsError) as e:
        load_adain(vgg=files["vgg_normalised.pth"], decoder=path)
    message = str(e.value)
    assert "missing 28.bias" in message and "unexpected 30.weight" in message
    assert "5.weight has shape (256, 128, 3, 3), expected (256, 256, 3, 3)" in message
    nan = dict(ref.transformer_state(), **{"merge_conv.bias": np.full(512, np.nan, np.float32)})
    with pytest.raises(WeightsError, match="merge_conv.bias contains NaN"):
        load_sanet(vgg=files["vgg_normalised.pth"], decoder=files["decoder_iter_500000.pth"],
                   transformer=_write(tmp_path, "nan.pth", nan))
    with pytest.raises(WeightsError, match="match no released layout.*torchvision VGG19"):
        load_adain(vgg=_write(tmp_path, "tv.pth", {"features.0.weight": np.zeros((64, 3, 3, 3)),
                                                   "features.0.bias": np.zeros(64)}),
                   decoder=files["decoder.pth"])


def test_unused_encoder_layers_may_be_absent(files, tmp_path):
    """conv5_2 .. conv5_4 (45, 48, 51) are never used: a file without them loads."""
    state = {k: v for k, v in ref.vgg_state().items() if int(k.split(".")[0]) < 45}
    params = load_adain(vgg=_write(tmp_path, "vgg42.pth", state), decoder=files["decoder.pth"])
    assert "conv4_1" in params["encoder"]


def test_encoder_first_layer(files, tmp_path):
    state = dict(ref.vgg_state())
    state["0.weight"] = np.eye(3, dtype=np.float32)[:, :, None, None]  # identity, not the map
    with pytest.warns(EncoderInputWarning, match="first layer.*used as stored"):
        params = load_adain(vgg=_write(tmp_path, "id.pth", state), decoder=files["decoder.pth"])
    np.testing.assert_array_equal(params["encoder"]["conv0"]["kernel"][0, 0], np.eye(3))
    state["0.weight"] = np.zeros((3, 3, 3, 3), np.float32)  # a 3x3 first layer: not the file
    with pytest.raises(WeightsError, match=r"0\.weight has shape \(3, 3, 3, 3\), expected "
                                           r"\(3, 3, 1, 1\)"):
        load_adain(vgg=_write(tmp_path, "3x3.pth", state), decoder=files["decoder.pth"])


def test_convert_and_model_npz(files, tmp_path, sanet_params):
    sources = dict(vgg=files["vgg_normalised.pth"], decoder=files["decoder_iter_500000.pth"],
                   transformer=files["transformer_iter_500000.pth"])
    full = convert("sanet", tmp_path / "sanet.npz", **sources)
    with np.load(full, allow_pickle=False) as f:
        assert str(f["kind"]) == "sanet" and f["kind"].shape == ()
        assert f["decoder/conv1/kernel"].shape == (3, 3, 512, 256)
        assert f["transform/sanet4_1/f/kernel"].shape == (1, 1, 512, 512)
        assert f["encoder/conv5_1/kernel"].shape == (3, 3, 512, 512)
        assert "encoder/conv5_2/kernel" not in f.files
    expected = jax.device_get(sanet_params)
    _assert_tree_equal(jax.device_get(load_sanet(model=full)), expected)
    kind, stored = read_model(full)
    assert kind == "sanet"
    _assert_tree_equal(stored, expected)
    # Without the encoder (as training writes it): the encoder then comes from vgg=.
    bare = convert("sanet", tmp_path / "bare.npz", include_encoder=False, **sources)
    with pytest.raises(WeightsError,
                       match=r"sanet encoder: no file given.*vgg_normalised.*as vgg=PATH"):
        load_sanet(model=bare)
    _assert_tree_equal(jax.device_get(load_sanet(model=bare, vgg=files["vgg_normalised.pth"])),
                       expected)
    with pytest.raises(WeightsError, match="is a sanet model, not adain: load it with load_sanet"):
        load_adain(model=full)
    with pytest.raises(WeightsError, match="jaxstyle model .npz.*model="):
        load_sanet(vgg=full, decoder=files["decoder_iter_500000.pth"],
                   transformer=files["transformer_iter_500000.pth"])


def test_bad_model_files(tmp_path, files):
    good = convert("adain", tmp_path / "adain.npz", vgg=files["vgg_normalised.pth"],
                   decoder=files["decoder.pth"])
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="not a readable jaxstyle model"):
        read_model(cut)
    no_kind = tmp_path / "nokind.npz"
    np.savez(no_kind, x=np.zeros(3))
    with pytest.raises(WeightsError, match="no 0-d string 'kind'"):
        read_model(no_kind)
    with zipfile.ZipFile(good) as z:
        assert all(n.endswith(".npy") for n in z.namelist())
    params = jax.device_get(load_adain(model=good))
    params["decoder"]["conv2"]["kernel"] = params["decoder"]["conv2"]["kernel"][..., :7]
    with pytest.raises(WeightsError, match="refusing to write.*decoder/conv2/kernel has shape"):
        save_model(params, tmp_path / "x.npz", "adain")
    assert not (tmp_path / "x.npz").exists()
    with pytest.raises(ValueError, match="kind must be one of"):
        save_model(params, tmp_path / "x.npz", "adain2")


def test_random_params_have_the_model_shapes():
    for kind in ("sanet", "adain"):
        shapes = jax.tree.map(lambda a: a.shape, random_params(kind))
        assert shapes == W.param_shapes(kind)
    conv0 = random_params("adain")["encoder"]["conv0"]
    assert np.array_equal(conv0["kernel"][0, 0].T, ref.vgg_state()["0.weight"][:, :, 0, 0])
