"""The SANet/AdaIN networks against float64 NumPy (tests/references/numpy_arbitrary.py) and, where
torch is installed, against the reference code's PyTorch modules (benchmarks/
torch_arbitrary.py), all on synthetic weights written in the released files' layouts and
PyTorch's legacy format and loaded through jaxstyle.arbitrary.load_sanet.

Accuracy: max |jax - reference| / max |reference| <= 1e-5 (float32 against float64).
"""


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from references import numpy_arbitrary as ref

from jaxstyle.arbitrary import (
    Decoder,
    Encoder,
    SANet,
    Transform,
    adain,
    attention,
    decode,
    encode,
    mean_std,
    mvn,
)
from jaxstyle.arbitrary import decoder as decoder_net
from jaxstyle.arbitrary import encoder as encoder_net
from jaxstyle.arbitrary import sanet as sanet_net
from jaxstyle.arbitrary.ops import UpsampleConv, max_pool_ceil, reflect_conv, upsample_nearest2
from jaxstyle.kernels import max_pool_2x2

TOL = 1e-5
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

torch, tref = ref.torch_reference()
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


@pytest.fixture(scope="module")
def params(sanet_params):
    return sanet_params


@pytest.fixture(scope="module")
def image():
    """A non-multiple size: ceil pooling leaves odd sides at every level (36 -> 18 -> 9 -> 5 ->
    3, 44 -> 22 -> 11 -> 6 -> 3)."""
    return np.random.default_rng(5).random((1, 36, 44, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def features(params, image):
    return jax.jit(encode)(params["encoder"], image)


def _features(seed, shape):
    """Post-ReLU-like NHWC features: non-negative, O(1), some exact zeros."""
    return np.maximum(np.random.default_rng(seed).normal(0.3, 1.0, shape), 0).astype(np.float32)


def test_param_tables_match_the_modules():
    init = lambda module, *xs: jax.tree.map(  # noqa: E731
        lambda a: a.shape, jax.eval_shape(module.init, jax.random.key(0), *xs)["params"])
    assert init(Encoder(), jnp.zeros((1, 32, 32, 3))) == encoder_net.param_shapes()
    assert init(Encoder(("relu2_1",)), jnp.zeros((1, 32, 32, 3))) == \
        encoder_net.param_shapes("relu2_1")
    assert init(Decoder(), jnp.zeros((1, 4, 4, 512))) == decoder_net.param_shapes()
    c41, c51 = jnp.zeros((1, 4, 4, 512)), jnp.zeros((1, 2, 2, 512))
    assert init(Transform(), c41, c51, c41, c51) == sanet_net.param_shapes()


def test_encoder_matches_numpy(features, image):
    expected = ref.encoder(ref.nchw(image))
    assert tuple(features) == LAYERS
    for name in LAYERS:
        assert features[name].shape == ref.nhwc(expected[name]).shape
        assert ref.rel_err(features[name], ref.nhwc(expected[name])) <= TOL, name
    # ceil-mode pooling: relu2_1 ... relu5_1 sides
    assert [features[n].shape[1:3] for n in LAYERS] == [(36, 44), (18, 22), (9, 11), (5, 6),
                                                         (3, 3)]


def test_encoder_computes_nothing_past_the_deepest_layer(params, image, features):
    shallow = {k: params["encoder"][k] for k in ("conv0", "conv1_1", "conv1_2", "conv2_1")}
    out = jax.jit(encode, static_argnums=2)(shallow, image, ("relu2_1", "relu1_1"))
    assert set(out) == {"relu2_1", "relu1_1"}  # only these params were needed
    np.testing.assert_array_equal(out["relu2_1"], features["relu2_1"])
    jaxpr = jax.make_jaxpr(lambda p, x: encode(p, x, ("relu2_1",)))(params["encoder"], image)
    assert str(jaxpr).count("conv_general_dilated") == 4  # conv0, conv1_1, conv1_2, conv2_1
    with pytest.raises(ValueError, match="unknown encoder layer"):
        encode(params["encoder"], image, ("relu4_2",))


def test_max_pool_ceil_values_and_gradient():
    """Ceil mode against NumPy; the gradient goes to each window's first maximum, as torch's
    and jaxstyle.vgg.max_pool_2x2's (integer inputs: many ties)."""
    x = np.random.default_rng(3).integers(0, 3, (2, 7, 9, 5)).astype(np.float32)
    out = jax.jit(max_pool_ceil)(x)
    np.testing.assert_array_equal(out, ref.nhwc(ref.max_pool_ceil(ref.nchw(x))))
    weights = np.arange(out.size, dtype=np.float32).reshape(out.shape)
    grad = jax.jit(jax.grad(lambda x: (max_pool_ceil(x) * weights).sum()))(x)
    padded = lambda x: jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)),  # noqa: E731
                               constant_values=-jnp.inf)
    expected = jax.jit(jax.grad(lambda x: (max_pool_2x2(padded(x)) * weights).sum()))(x)
    np.testing.assert_array_equal(grad, expected)
    if torch is not None:
        xt = torch.from_numpy(ref.nchw(x).copy()).requires_grad_()
        pooled = torch.nn.functional.max_pool2d(xt, 2, 2, ceil_mode=True)
        (pooled * torch.from_numpy(ref.nchw(weights).copy())).sum().backward()
        np.testing.assert_array_equal(grad, ref.nhwc(xt.grad.numpy()))


def test_mean_std_mvn_adain_match_numpy():
    c, s = _features(0, (2, 5, 7, 16)), _features(1, (2, 4, 3, 16))
    mean, std = mean_std(c)
    exp_mean, exp_std = ref.mean_std(ref.nchw(c))
    assert mean.shape == std.shape == (2, 1, 1, 16)
    np.testing.assert_allclose(mean, ref.nhwc(exp_mean), rtol=1e-6)
    np.testing.assert_allclose(std, ref.nhwc(exp_std), rtol=1e-6)  # unbiased: M - 1
    assert ref.rel_err(mvn(c), ref.nhwc(ref.mvn(ref.nchw(c)))) <= TOL
    expected = ref.nhwc(ref.adain(ref.nchw(c), ref.nchw(s)))
    assert ref.rel_err(adain(c, s), expected) <= TOL
    assert ref.rel_err(adain(c, mean_std(s)), expected) <= TOL  # from precomputed statistics


def test_sanet_block_matches_numpy(params):
    content, style = _features(2, (1, 5, 6, 512)), _features(3, (1, 7, 4, 512))
    block = params["transform"]["sanet4_1"]
    out = jax.jit(lambda p, c, s: SANet().apply({"params": p}, c, s))(block, content, style)
    expected = ref.sanet(ref.transformer_state(), "sanet4_1", ref.nchw(content), ref.nchw(style))
    assert ref.rel_err(out, ref.nhwc(expected)) <= TOL


def test_attention_in_chunks_equals_one_block():
    rng = np.random.default_rng(4)
    q = rng.normal(size=(2, 37, 64)).astype(np.float32)  # 37 content positions: ragged chunks
    k = rng.normal(size=(1, 23, 64)).astype(np.float32) / 4  # one style for both contents
    v = rng.normal(size=(1, 23, 64)).astype(np.float32)
    whole = attention(q, k, v)
    small = 2 * 10 * 23 * 4  # logits of 10 rows per step: 4 chunks, the last one padded
    assert sanet_net.attention_chunk(2, 37, 23, small) == 10
    chunked = jax.jit(lambda q, k, v: attention(q, k, v, max_bytes=small))
    assert "scan" in str(jax.make_jaxpr(chunked)(q, k, v))  # really a loop over chunks
    np.testing.assert_allclose(chunked(q, k, v), whole, rtol=1e-6, atol=1e-6)
    logits = np.einsum("ntc,sc->nts", q.astype(np.float64), k[0].astype(np.float64))
    p = np.exp(logits - logits.max(axis=2, keepdims=True))
    expected = np.einsum("nts,sc->ntc", p / p.sum(axis=2, keepdims=True), v[0])
    assert ref.rel_err(whole, expected) <= TOL  # unscaled: no 1/sqrt(C)


def test_chunk_sizes():
    assert sanet_net.attention_chunk(1, 4096, 4096) == 4096  # 512 px: 64 MiB, one block
    assert sanet_net.attention_chunk(1, 16384, 16384) == 4096  # 1024 px: 1 GiB, 4 chunks
    assert sanet_net.attention_chunk(1, 5, 7, max_bytes=1) == 1


@pytest.fixture(scope="module")
def transform_inputs():
    # relu4_1 6x4 (even sides), relu5_1 3x2; styles of other sizes.
    return (_features(5, (1, 6, 4, 512)), _features(6, (1, 3, 2, 512)),
            _features(7, (1, 5, 7, 512)), _features(8, (1, 3, 4, 512)))


@pytest.fixture(scope="module")
def transformed(params, transform_inputs):
    """The reference-shaped Transform (style features in); `stylize` uses the same module
    split at the style side (style_code, with_code), tested end to end there."""
    c41, c51, s41, s51 = transform_inputs
    return jax.jit(Transform().apply)({"params": params["transform"]}, c41, c51, s41, s51)


def test_transform_matches_numpy(transformed, transform_inputs):
    c41, c51, s41, s51 = transform_inputs
    expected = ref.transform(*(ref.nchw(a) for a in (c41, s41, c51, s51)))
    assert transformed.shape == (1, 6, 4, 512)
    assert ref.rel_err(transformed, ref.nhwc(expected)) <= TOL


def test_transform_needs_even_relu4_1(params):
    with pytest.raises(ValueError, match="relu4_1 sides even"):
        Transform().apply({"params": params["transform"]}, jnp.zeros((1, 5, 4, 512)),
                          jnp.zeros((1, 3, 2, 512)), jnp.zeros((1, 4, 4, 512)),
                          jnp.zeros((1, 2, 2, 512)))


@pytest.fixture(scope="module")
def decoder_input():
    return _features(9, (1, 5, 6, 512))


@pytest.fixture(scope="module")
def decoded(params, decoder_input):
    return jax.jit(decode)(params["decoder"], decoder_input)


def test_decoder_matches_numpy(decoded, decoder_input):
    expected = ref.decoder(ref.nchw(decoder_input))
    assert decoded.shape == (1, 40, 48, 3)  # 8x relu4_1's sides
    assert ref.rel_err(decoded, ref.nhwc(expected)) <= TOL


def _torch(x):
    return torch.from_numpy(np.ascontiguousarray(ref.nchw(x)))


def test_upsample_conv_equals_the_direct_form_with_gradients():
    """ops.UpsampleConv (phase kernels on the low-resolution map) against reflect_conv of the
    upsampled map: values, and gradients for the input, kernel and bias (what training of
    the decoder differentiates); and against torch's autograd of the reference modules."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=(2, 3, 5, 6)).astype(np.float32)
    w = rng.normal(size=(2, 6, 10, 4)).astype(np.float32)
    p = {"kernel": rng.normal(size=(3, 3, 6, 4)).astype(np.float32), "bias": np.arange(4.0)}

    class Direct(nn.Module):
        @nn.compact
        def __call__(self, x):
            return reflect_conv(upsample_nearest2(x), 4, "conv")

    def check(apply):  # (loss, output), (d loss / d params, d loss / d x)
        def loss(p, x):
            out = apply(p, x)
            return jnp.sum(out * w), out
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(p, x)

    (_, out), (gp, gx) = check(lambda p, x: UpsampleConv(4).apply({"params": p}, x))
    (_, expected), (gp_direct, gx_direct) = check(
        lambda p, x: Direct().apply({"params": {"conv": p}}, x))
    assert ref.rel_err(out, expected) <= TOL
    assert ref.rel_err(gx, gx_direct) <= TOL
    for name in ("kernel", "bias"):
        assert ref.rel_err(gp[name], gp_direct[name]) <= TOL, name
    if torch is not None:
        net = tref.nn.Sequential(tref.nn.Upsample(scale_factor=2, mode="nearest"),
                                 tref.nn.ReflectionPad2d(1), tref.nn.Conv2d(6, 4, 3))
        tref.load(net, {"2.weight": p["kernel"].transpose(3, 2, 0, 1), "2.bias": p["bias"]})
        xt = _torch(x).requires_grad_()
        (net(xt) * _torch(w)).sum().backward()
        assert ref.rel_err(gx, ref.nhwc(xt.grad.numpy())) <= TOL
        assert ref.rel_err(gp["kernel"], net[2].weight.grad.numpy().transpose(2, 3, 1, 0)) <= TOL


@needs_torch
def test_encoder_matches_torch(features, image):
    model = tref.Model("sanet", ref.vgg_state(), ref.decoder_state(), ref.transformer_state())
    with torch.inference_mode():
        expected = model.features(_torch(image))
    for name, value in zip(LAYERS, expected, strict=True):
        assert ref.rel_err(features[name], ref.nhwc(value.numpy())) <= TOL, name


@needs_torch
def test_transform_and_decoder_match_torch(transformed, transform_inputs, decoded,
                                           decoder_input):
    c41, c51, s41, s51 = transform_inputs
    t = tref.load(tref.Transform(), ref.transformer_state())
    d = tref.load(tref.decoder(), ref.decoder_state())
    with torch.inference_mode():
        expected_t = t(_torch(c41), _torch(s41), _torch(c51), _torch(s51)).numpy()
        expected_d = d(_torch(decoder_input)).numpy()
    assert ref.rel_err(transformed, ref.nhwc(expected_t)) <= TOL
    assert ref.rel_err(decoded, ref.nhwc(expected_d)) <= TOL
