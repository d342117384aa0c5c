"""stylize_sanet / stylize_adain end to end: against float64 NumPy and the PyTorch reference
(tests/references/) with the alpha mix and weighted
styles, padding of sizes that are not multiples, vmapped alphas, batches, reused style
encodings, recompilation, colour preservation and input validation."""


import jax
import numpy as np
import pytest
from conftest import smooth_image
from references import numpy_arbitrary as ref

from jaxstyle import runtime
from jaxstyle.arbitrary import encode_styles, stylize_adain, stylize_sanet
from jaxstyle.arbitrary.stylize import EncodedStyles, _program, padding
from jaxstyle.color import match_color_histogram

TOL = 1e-5

torch, tref = ref.torch_reference()
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

CONTENT = smooth_image(20, 40, 36)  # padded to 48 x 48 (SANet) and 40 x 40 (AdaIN)
STYLES = [smooth_image(21, 40, 44), smooth_image(22, 24, 30)]
SMALL = smooth_image(23, 21, 9)  # not multiples of 8, one side under 16: padded to 24 x 16


@pytest.fixture(scope="module")
def sanet(sanet_params):
    return sanet_params


@pytest.fixture(scope="module")
def adain(adain_params):
    return adain_params


@pytest.fixture(scope="module")
def adain_small(adain):
    return stylize_adain(adain, SMALL, STYLES[1])


@pytest.fixture(scope="module")
def sanet_alphas(sanet):
    """Two weighted styles, three alphas in one program: (3, 40, 36, 3)."""
    return stylize_sanet(sanet, CONTENT, STYLES, alpha=[0.0, 0.6, 1.0], style_blend_weights=[3, 1])


def test_padding():
    assert padding(600, "sanet") == (4, 4) and padding(600, "adain") == (0, 0)
    assert padding(36, "sanet") == (6, 6) and padding(37, "sanet") == (5, 6)
    assert padding(5, "sanet") == (13, 14)  # at least 2 x 16
    assert padding(20, "adain") == (2, 2)


def test_sanet_matches_numpy(sanet_alphas):
    assert sanet_alphas.shape == (3, 40, 36, 3) and sanet_alphas.dtype == np.float32
    expected = ref.stylize("sanet", CONTENT, STYLES, alpha=0.6, weights=[3, 1])
    assert ref.rel_err(sanet_alphas[1], expected) <= TOL
    assert 0 <= sanet_alphas.min() and sanet_alphas.max() <= 1


def test_vmapped_alphas_equal_separate_calls(sanet, sanet_alphas):
    """The alpha = 1 member of the vmapped (mixing) program equals a call with the default
    alpha, a separate program that skips the content's own transform T(c, c)."""
    single = stylize_sanet(sanet, CONTENT, STYLES, style_blend_weights=[3, 1])
    assert single.shape == (40, 36, 3)
    np.testing.assert_allclose(single, sanet_alphas[2], rtol=1e-5, atol=1e-6)
    expected = ref.stylize("sanet", CONTENT, STYLES, weights=[3, 1])
    assert ref.rel_err(single, expected) <= TOL
    assert not np.allclose(sanet_alphas[0], single)  # alpha = 0: the content's own transform


def test_adain_matches_numpy_and_batches(adain):
    batch = np.stack([CONTENT, CONTENT[::-1]])
    out = stylize_adain(adain, batch, STYLES, alpha=0.7, style_blend_weights=[1, 2])
    assert out.shape == (2, 40, 36, 3)
    for image, result in zip(batch, out, strict=True):
        expected = ref.stylize("adain", image, STYLES, alpha=0.7, weights=[1, 2],
                               dec_state=ref.decoder_state(3))
        assert ref.rel_err(result, expected) <= TOL


@needs_torch
def test_sanet_and_adain_match_torch(sanet_alphas, adain_small):
    sanet_model = tref.Model("sanet", ref.vgg_state(), ref.decoder_state(1),
                             ref.transformer_state())
    adain_model = tref.Model("adain", ref.vgg_state(), ref.decoder_state(3))

    def nchw(a):
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]

    with torch.inference_mode():
        codes = [sanet_model.encode_style(nchw(s)) for s in STYLES]
        expected = sanet_model.stylize(nchw(CONTENT), codes, alpha=0.6, weights=[0.75, 0.25])
        assert ref.rel_err(sanet_alphas[1], expected[0].numpy().transpose(1, 2, 0)) <= TOL
        expected = adain_model.stylize(nchw(SMALL), [adain_model.encode_style(nchw(STYLES[1]))])
    assert ref.rel_err(adain_small, expected[0].numpy().transpose(1, 2, 0)) <= TOL


def test_sizes_come_back_unresized(adain_small):
    assert adain_small.shape == (21, 9, 3)
    expected = ref.stylize("adain", SMALL, [STYLES[1]], dec_state=ref.decoder_state(3))
    assert ref.rel_err(adain_small, expected) <= TOL


def test_encoded_styles_are_reused_without_recompiling(sanet, sanet_alphas):
    codes = encode_styles(sanet, STYLES)
    assert isinstance(codes, EncodedStyles) and codes.kind == "sanet" and codes.batch == 1
    assert codes.sizes == ((40, 44), (24, 30))
    key, value = codes.codes[0]["relu4_1"]
    assert key.shape == value.shape == (1, 5 * 6, 512)
    out = stylize_sanet(sanet, CONTENT, codes, alpha=[0.0, 0.6, 1.0], style_blend_weights=[3, 1])
    np.testing.assert_array_equal(out, sanet_alphas)
    # New alphas and style weights are traced values: the same programs run again.
    with runtime.count_compiles() as compiled:
        other = stylize_sanet(sanet, CONTENT, codes, alpha=[0.2, 0.5, 0.9],
                              style_blend_weights=[1, 1])
    assert compiled.names == []
    assert not np.allclose(other, out)


def test_params_are_arguments_not_constants(sanet):
    """The compiled program takes the ~80 MB of params as arguments: its lowered text stays
    small (a closure would embed them as constants)."""
    codes = encode_styles(sanet, STYLES[0])
    lowered = _program.lower(sanet, CONTENT[None], codes.codes, np.ones(1, np.float32),
                             np.ones(1, np.float32), kind="sanet", pads=((4, 4), (6, 6)),
                             mix=False, max_attention_bytes=2**28)
    assert len(lowered.as_text()) < 2**20
    params_info = lowered.args_info[0][0]  # (args, kwargs) -> args -> params
    assert len(jax.tree.leaves(params_info)) == len(jax.tree.leaves(sanet))


def test_preserve_colors_recolours_each_style_per_content(adain):
    batch = np.stack([SMALL, 1 - SMALL])
    out = stylize_adain(adain, batch, STYLES[1], preserve_colors=True)
    for k in range(2):
        recoloured = match_color_histogram(STYLES[1], batch[k])
        expected = ref.stylize("adain", batch[k], [recoloured], dec_state=ref.decoder_state(3))
        assert ref.rel_err(out[k], expected) <= TOL
    with pytest.raises(ValueError, match="pass images, not EncodedStyles"):
        stylize_adain(adain, CONTENT, encode_styles(adain, STYLES[0]), preserve_colors=True)


def test_input_validation(sanet, adain):
    bad = [
        (dict(content=np.zeros((8, 8))), "content must be an"),
        (dict(content=np.full((8, 8, 3), np.nan)), "NaN or inf"),
        (dict(content=np.full((8, 8, 3), 1.5)), r"in \[0, 1\].*\[1.5, 1.5\]"),
        (dict(styles=np.zeros((8, 30, 3))), "at least 9 px"),
        (dict(styles=[]), "no style image"),
        (dict(styles=np.zeros((30, 30, 4))), "style image must be an"),
        (dict(alpha=1.5), r"alpha must be in \[0, 1\]"),
        (dict(alpha=[]), "non-empty"),
        (dict(style_blend_weights=[1, 2]), "one weight per style"),
        (dict(style_blend_weights=[-1]), "style_blend_weights must be finite and >= 0"),
        (dict(style_blend_weights=[0]), "must not all be zero"),
    ]
    for change, message in bad:
        args = dict(content=CONTENT, styles=STYLES[0]) | change
        with pytest.raises(ValueError, match=message):
            stylize_adain(adain, args.pop("content"), args.pop("styles"), **args)
    with pytest.raises(ValueError, match="at least 17 px"):
        stylize_sanet(sanet, CONTENT, np.zeros((16, 40, 3)))
    with pytest.raises(ValueError, match="max_attention_bytes must be an integer >= 1"):
        stylize_sanet(sanet, CONTENT, STYLES[0], max_attention_bytes=0)
    with pytest.raises(ValueError, match="needs AdaIN params"):
        stylize_adain(sanet, CONTENT, STYLES[0])
    with pytest.raises(ValueError, match="needs SANet params"):
        stylize_sanet(adain, CONTENT, STYLES[0])
    with pytest.raises(ValueError, match="encoded for adain, not sanet"):
        stylize_sanet(sanet, CONTENT, EncodedStyles("adain", (), ()))
    with pytest.raises(ValueError, match="encoded for 3 contents, got 1"):
        stylize_sanet(sanet, CONTENT, EncodedStyles("sanet", (), (), batch=3))
