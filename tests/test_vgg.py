"""The Flax VGG19 against an independent NumPy float64 implementation, and its names.

The reference below shares no code with jaxstyle.vgg: 3x3 'SAME' correlation as nine shifted
matrix products, ReLU, 2x2/2 max or mean pooling (odd sizes floored), preprocessing from the
published constants.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import smooth_image

import jaxstyle
from jaxstyle.vgg import VGG19, features

# VGG19 configuration "E": (block, convolutions) and widths, written out independently.
_BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512)]
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])
_TORCH_MEAN = np.array([0.485, 0.456, 0.406])
_TORCH_STD = np.array([0.229, 0.224, 0.225])

CHECKED = ("conv1_1", "relu1_2", "pool1", "relu2_1", "pool2", "relu3_1", "conv4_2", "relu4_2",
           "pool4", "relu5_1", "pool5")  # fmt: skip


def np_conv3x3(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """out[i, j, o] = sum_{dy, dx, c} xpad[i + dy, j + dx, c] * kernel[dy, dx, c, o] + bias[o]."""
    h, w, _ = x.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, kernel.shape[-1]))
    for dy in range(3):
        for dx in range(3):
            out += xp[dy : dy + h, dx : dx + w] @ kernel[dy, dx]
    return out + bias


def np_pool(x: np.ndarray, kind: str) -> np.ndarray:
    h, w, c = x.shape
    windows = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c)
    return windows.max(axis=(1, 3)) if kind == "max" else windows.mean(axis=(1, 3))


def np_vgg(params, x: np.ndarray, pooling: str, blocks: int = 5) -> dict[str, np.ndarray]:
    """Every layer of VGG19's first `blocks` blocks for a preprocessed (H, W, 3) image."""
    acts = {}
    for b, n, _ in _BLOCKS[:blocks]:
        for i in range(1, n + 1):
            p = params[f"conv{b}_{i}"]
            x = np_conv3x3(x, p["kernel"], p["bias"])
            acts[f"conv{b}_{i}"] = x
            x = np.maximum(x, 0.0)
            acts[f"relu{b}_{i}"] = x
        x = np_pool(x, pooling)
        acts[f"pool{b}"] = x
    return acts


def np_preprocess(image: np.ndarray, convention: str) -> np.ndarray:
    image = image.astype(np.float64)
    if convention == "caffe":
        return image[..., ::-1] * 255.0 - _CAFFE_MEAN_BGR
    return (image - _TORCH_MEAN) / _TORCH_STD


def assert_close(actual, expected, layer, rtol=2e-5):
    """float32 network vs float64 reference: error relative to the layer's largest value."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected)
    assert actual.shape == expected.shape, layer
    scale = np.abs(expected).max()
    assert scale > 0, f"{layer}: all zero, the check would be vacuous"
    err = np.abs(actual - expected).max() / scale
    assert err < rtol, f"{layer}: max error {err:.2e} of max |value| {scale:.3g}"


def float64_params(weights):
    return {
        n: {k: np.asarray(v, np.float64) for k, v in layer.items()}
        for n, layer in weights.params.items()
    }


@pytest.fixture(scope="module")
def ref_params(weights, torch_convention_weights):
    """float64 copies of both synthetic weight sets, converted once per module."""
    return {"caffe": float64_params(weights), "torch": float64_params(torch_convention_weights)}


@pytest.fixture(scope="module")
def image():
    return smooth_image(3, 32, 40)  # 40 -> 20 -> 10 -> 5 -> 2 (floored) -> 1


# Both poolings, both conventions; each combination is one compile of the deep network, so
# the fourth (torch, avg) adds time and no new path.
@pytest.mark.parametrize(
    ("convention", "pooling"), [("caffe", "max"), ("caffe", "avg"), ("torch", "max")]
)
def test_features_match_numpy(
    weights, torch_convention_weights, ref_params, image, pooling, convention
):
    w = weights if convention == "caffe" else torch_convention_weights
    got = jaxstyle.extract_features(w, image, CHECKED, pooling=pooling)
    ref = np_vgg(ref_params[convention], np_preprocess(image, convention), pooling)
    assert set(got) == set(CHECKED)
    for layer in CHECKED:
        assert_close(got[layer], ref[layer], layer)
    assert got["pool5"].shape == (1, 1, 512)


def test_max_and_avg_pooling_differ(weights, image):
    a = jaxstyle.extract_features(weights, image, ("pool1",), pooling="max")["pool1"]
    b = jaxstyle.extract_features(weights, image, ("pool1",), pooling="avg")["pool1"]
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3


def test_preprocess_values_and_round_trip():
    pixel = np.array([[[1.0, 0.5, 0.0]]], np.float32)  # RGB
    # caffe: x255, RGB -> BGR, minus the BGR mean: (0 - 103.939, 127.5 - 116.779, 255 - 123.68)
    caffe = np.asarray(jaxstyle.preprocess(pixel, "caffe"))
    np.testing.assert_allclose(caffe[0, 0], [-103.939, 10.721, 131.32], atol=1e-4)
    # torch: ((1 - .485) / .229, (.5 - .456) / .224, (0 - .406) / .225)
    torch_ = np.asarray(jaxstyle.preprocess(pixel, "torch"))
    np.testing.assert_allclose(torch_[0, 0], [2.2489083, 0.19642857, -1.8044444], rtol=1e-6)
    img = smooth_image(4, 8, 6)
    for convention in ("caffe", "torch"):
        x = jaxstyle.preprocess(img, convention)
        np.testing.assert_allclose(x, np_preprocess(img, convention), rtol=1e-5, atol=1e-4)
        back = jaxstyle.deprocess(x, convention)
        np.testing.assert_allclose(back, img, atol=1e-6)
        batched = jaxstyle.preprocess(np.stack([img, img]), convention)  # (N, H, W, 3) works
        np.testing.assert_allclose(batched[1], x)
    with pytest.raises(ValueError, match="convention"):
        jaxstyle.preprocess(img, "bgr")


def test_keras_aliases(weights, image):
    got = jaxstyle.extract_features(weights, image, ("block4_conv2", "relu4_2", "block2_pool"))
    np.testing.assert_array_equal(got["block4_conv2"], got["relu4_2"])
    pool2 = jaxstyle.extract_features(weights, image, ("pool2",))["pool2"]
    np.testing.assert_array_equal(got["block2_pool"], pool2)
    assert jaxstyle.canonical_layer("block5_conv4") == "relu5_4"
    assert jaxstyle.canonical_layer("block1_pool") == "pool1"


@pytest.mark.parametrize("name", ["relu6_1", "conv1_3", "block3_conv5", "fc1", "relu4-2"])
def test_unknown_layer_lists_valid_names(weights, image, name):
    with pytest.raises(ValueError, match="valid names") as info:
        jaxstyle.extract_features(weights, image, (name,))
    assert "relu4_2" in str(info.value) and "pool5" in str(info.value)
    with pytest.raises(ValueError, match=name):
        jaxstyle.canonical_layer(name)


def test_layer_names_in_forward_order():
    expected = []
    for b, n, _ in _BLOCKS:
        for i in range(1, n + 1):
            expected += [f"conv{b}_{i}", f"relu{b}_{i}"]
        expected.append(f"pool{b}")
    assert jaxstyle.LAYER_NAMES == tuple(expected)
    assert len(jaxstyle.LAYER_NAMES) == 16 * 2 + 5


def test_shallow_layers_create_and_need_only_shallow_params(weights, ref_params, image):
    x = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
    created = jax.eval_shape(VGG19(layers=("relu2_1",)).init, jax.random.key(0), x)["params"]
    assert sorted(created) == ["conv1_1", "conv1_2", "conv2_1"]
    # apply with params for blocks 1-2 only: deeper params are neither needed nor touched
    shallow = {k: v for k, v in weights.params.items() if k[4] in "12"}
    run = jax.jit(features, static_argnames=("layers", "pooling", "convention"))
    out = run(shallow, image, layers=("pool2",), convention="caffe")
    ref = np_vgg(ref_params["caffe"], np_preprocess(image, "caffe"), "max", blocks=2)
    assert_close(out["pool2"], ref["pool2"], "pool2")
    with pytest.raises(Exception, match="conv3_1"):  # asking deeper fails on the missing param
        run(shallow, image, layers=("relu3_1",), convention="caffe")


def test_param_shapes_are_vgg19():
    shapes = jaxstyle.vgg.param_shapes()
    cin = 3
    for b, n, width in _BLOCKS:
        for i in range(1, n + 1):
            assert shapes[f"conv{b}_{i}"] == {"kernel": (3, 3, cin, width), "bias": (width,)}
            cin = width
    total = sum(np.prod(s["kernel"]) + np.prod(s["bias"]) for s in shapes.values())
    assert total == 20_024_384  # VGG19's convolutional parameters (143.7M with the classifier)
