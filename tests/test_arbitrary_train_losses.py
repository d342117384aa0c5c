"""sanet_loss / adain_loss (jaxstyle.arbitrary.losses) on synthetic weights: every term's
value against float64 NumPy (tests/references/numpy_arbitrary.py, the networks module by module),
values and gradients against the reference training code in float64 PyTorch
(tests/references/torch_train.py, skipped without torch), the identity terms with style = content,
and the frozen encoder.

The losses and gradients are computed in float64 (jax.enable_x64) to be compared at 1e-6 and
1e-5: in float32 the SANet decoder's gradient is 1.9e-4 (max-abs relative) from float64, its
attention's softmax over unscaled logits amplifying rounding, which hides nothing but would
leave the tolerance meaningless. float32, the training dtype, is checked on SANet's values (1e-4).
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import OPTIMIZED_COMPILE, smooth_image
from references import numpy_arbitrary as ref
from references.numpy_arbitrary import LAYERS, numpy_adain_loss, numpy_sanet_loss

from jaxstyle.arbitrary import adain_loss, sanet_loss
from jaxstyle.arbitrary.released import layout

TOL = 1e-4  # float32 values against float64
TOL64 = 1e-6  # float64 values
GRAD_TOL64 = 1e-5  # float64 gradients against torch (measured 5e-7: a float32 step in there)
# The float64 value_and_grad runs long enough that LLVM's optimizations pay for their compile
# time: the suite's level 0 (conftest) ran it in 72 s, level 1 in 20 s on this CPU.
SIDE = 32  # SANet's smallest training side: relu5_1 is 2 x 2
CONTENT = smooth_image(40, SIDE, SIDE)[None]  # batches of one: the references are slow
STYLE = smooth_image(50, SIDE, SIDE)[None]

try:
    import torch
    from references import torch_train
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


@pytest.fixture(scope="module")
def states():
    return ref.vgg_state(), ref.decoder_state(), ref.transformer_state()


def _wide(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _value_and_grad64(loss, params, pairs):
    """The float64 value_and_grad of `loss` at each (content, style) of `pairs` (one
    program: the calls share the x64 trace context)."""
    with jax.enable_x64(True):
        fn = jax.jit(jax.value_and_grad(
            lambda p, c, s: loss(p, c, s, compute_dtype=jnp.float64), has_aux=True),
            compiler_options=OPTIMIZED_COMPILE)
        params = _wide(params)
        return [jax.tree.map(np.asarray, fn(params, c.astype(np.float64),
                                            s.astype(np.float64))) for c, s in pairs]


@pytest.fixture(scope="module")
def sanet64(sanet_params):
    """sanet_loss's float64 (value, aux), grads at (CONTENT, STYLE) and (CONTENT, CONTENT)."""
    return _value_and_grad64(sanet_loss, sanet_params, [(CONTENT, STYLE), (CONTENT, CONTENT)])


@pytest.fixture(scope="module")
def sanet_result(sanet64):
    return sanet64[0]


@pytest.fixture(scope="module")
def adain_result(adain_params):
    return _value_and_grad64(adain_loss, adain_params, [(CONTENT, STYLE)])[0]


def _check(parts, total, expected, weights, tol):
    assert set(parts) == set(expected)
    for name, value in expected.items():
        assert abs(float(parts[name]) - value) <= tol * abs(value), (name, parts[name], value)
    want = sum(weights[k] * v for k, v in expected.items())
    assert abs(float(total) - want) <= tol * want


@pytest.fixture(scope="module")
def numpy_sanet(states):
    return numpy_sanet_loss(*states, CONTENT, STYLE)


@pytest.fixture(scope="module")
def numpy_adain(states):
    return numpy_adain_loss(states[0], ref.decoder_state(3), CONTENT, STYLE)


SANET_W = {"content": 1, "style": 3, "identity1": 50, "identity2": 1}
ADAIN_W = {"content": 1, "style": 10}


def test_sanet_loss_matches_numpy(sanet_result, numpy_sanet):
    assert all(v > 0 for v in numpy_sanet.values())
    (total, parts), _ = sanet_result
    _check(parts, total, numpy_sanet, SANET_W, TOL64)


def test_adain_loss_matches_numpy(adain_result, numpy_adain):
    (total, parts), _ = adain_result
    _check(parts, total, numpy_adain, ADAIN_W, TOL64)


def test_float32_values_match_numpy(sanet_params, numpy_sanet):
    """The training dtype: float32 arithmetic throughout, the same terms within 1e-4 (AdaIN's
    float32 loss is checked through the train step, tests/test_arbitrary_train_step.py)."""
    total, parts = jax.jit(sanet_loss)(sanet_params, CONTENT, STYLE)
    assert total.dtype == jnp.float32
    _check(parts, total, numpy_sanet, SANET_W, TOL)


def test_identity_terms_with_style_equal_to_content(sanet64, states):
    """style = content: T(c, s) = T(c, c) = T(s, s), so identity1 is twice mse(Icc, c),
    identity2 twice the feature distance, and content/style measure Icc against c."""
    (_, parts), _ = sanet64[1]
    vgg, dec, tr = states
    c = ref.nchw(CONTENT).astype(np.float64)
    fc = ref.encoder(c, state=vgg)
    icc = ref.decoder(ref.transform(fc["relu4_1"], fc["relu4_1"], fc["relu5_1"],
                                    fc["relu5_1"], state=tr), dec)
    gcc = ref.encoder(icc, state=vgg)
    identity1 = 2 * ref.mse(icc, c)
    identity2 = 2 * sum(ref.mse(gcc[k], fc[k]) for k in LAYERS)
    assert abs(float(parts["identity1"]) - identity1) <= TOL64 * identity1
    assert abs(float(parts["identity2"]) - identity2) <= TOL64 * identity2
    style = ref.style_distance(gcc, fc, LAYERS)
    assert abs(float(parts["style"]) - style) <= TOL64 * style


def test_encoder_is_frozen(sanet_result, adain_result):
    for (_, _), grads in (sanet_result, adain_result):
        assert all(not np.any(np.asarray(g)) for g in jax.tree.leaves(grads["encoder"]))
        assert any(np.any(np.asarray(g)) for g in jax.tree.leaves(grads["decoder"]))
    assert any(np.any(np.asarray(g)) for g in jax.tree.leaves(sanet_result[1]["transform"]))


def _torch_grads(kind, states, content, style):
    """(parts, {part: {torch key: grad as a JAX-layout array}}) of the reference training
    code's loss, in float64."""
    vgg, dec, tr = states
    dec = dec if kind == "sanet" else ref.decoder_state(3)  # conftest's decoder.pth
    model = torch_train.TrainModel(kind, vgg, dec, tr if kind == "sanet" else None,
                                   dtype=torch.float64)
    c, s = (torch.from_numpy(ref.nchw(x).astype(np.float64)) for x in (content, style))
    total, parts = model.loss(c, s)
    total.backward()
    modules = {"decoder": model.model.decoder}
    if kind == "sanet":
        modules["transform"] = model.model.transform
    grads = {}
    for part, module in modules.items():
        lay = layout("decoder" if part == "decoder" else "transformer")
        tree = {}
        for key, p in module.named_parameters():
            target, _ = lay[key]
            g = p.grad.numpy()
            g = g.transpose(2, 3, 1, 0) if g.ndim == 4 else g
            node = tree
            for name in target[:-1]:
                node = node.setdefault(name, {})
            node[target[-1]] = g
        grads[part] = tree
    return {k: v.item() for k, v in parts.items()}, total.item(), grads


def _grad_err(actual, expected) -> float:
    """max |a - e| / max |e| over all of a part's leaves."""
    a = np.concatenate([np.ravel(x) for x in jax.tree.leaves(actual)])
    e = np.concatenate([np.ravel(x) for x in jax.tree.leaves(expected)])
    return float(np.abs(a - e).max() / np.abs(e).max())


@needs_torch
@pytest.mark.parametrize("kind", ["sanet", "adain"])
def test_values_and_gradients_match_torch(kind, sanet_result, adain_result, states):
    (total, parts), grads = sanet_result if kind == "sanet" else adain_result
    t_parts, t_total, t_grads = _torch_grads(kind, states, CONTENT, STYLE)
    assert abs(float(total) - t_total) <= TOL64 * t_total
    for name, value in t_parts.items():
        assert abs(float(parts[name]) - value) <= TOL64 * abs(value), name
    for part, expected in t_grads.items():
        assert jax.tree.structure(grads[part]) == jax.tree.structure(expected)
        assert _grad_err(grads[part], expected) <= GRAD_TOL64, part


def test_bad_inputs():
    params = {"decoder": {}, "transform": {}}
    with pytest.raises(ValueError, match="encoder"):
        sanet_loss(params, CONTENT, STYLE)
    with pytest.raises(ValueError, match="multiples of 16"):
        sanet_loss({**params, "encoder": {}}, CONTENT[:, :24, :24], STYLE[:, :24, :24])
    with pytest.raises(ValueError, match="one shape"):
        adain_loss({"encoder": {}, "decoder": {}}, CONTENT, STYLE[:, :16, :16])


def test_bfloat16_arithmetic(adain_params, numpy_adain):
    """--bf16: the networks in bfloat16 (8 bits of mantissa), the statistics and losses in
    float32: float32 results within a few percent."""
    total, parts = jax.jit(lambda p, c, s: adain_loss(p, c, s, compute_dtype=jnp.bfloat16))(
        adain_params, CONTENT, STYLE)
    assert total.dtype == jnp.float32 and all(v.dtype == jnp.float32 for v in parts.values())
    for name, value in numpy_adain.items():
        assert float(parts[name]) == pytest.approx(value, rel=0.05), name
