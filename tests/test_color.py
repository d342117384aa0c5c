"""Colour preservation (jaxstyle.color) against the formulas written out independently."""

import numpy as np
import pytest
import scipy.linalg
from conftest import smooth_image

from jaxstyle import color

YIQ = np.array([[0.299, 0.587, 0.114],
                [0.595716, -0.274453, -0.321263],
                [0.211456, -0.522591, 0.311135]])


def _stats(img):
    x = np.asarray(img, np.float64).reshape(-1, 3)
    return x.mean(axis=0), np.cov(x, rowvar=False, bias=True)


@pytest.mark.parametrize("method", ["pca", "cholesky"])
def test_match_color_histogram(method, content_image, style_image):
    raw = color.match_color_histogram(style_image, content_image, method=method, clip=False)
    assert raw.shape == style_image.shape and raw.dtype == np.float32
    mu, cov = _stats(raw)
    mu_c, cov_c = _stats(content_image)
    np.testing.assert_allclose(mu, mu_c, atol=1e-5)
    np.testing.assert_allclose(cov, cov_c, atol=1e-5, rtol=1e-3)
    # The transfer is affine in the style pixels, and A Sigma_s A^T = Sigma_c.
    a, b = color.color_transfer_matrix(style_image, content_image, method=method)
    np.testing.assert_allclose(raw, style_image.astype(np.float64) @ a.T + b, atol=1e-5)
    np.testing.assert_allclose(a @ _stats(style_image)[1] @ a.T, cov_c, atol=1e-6)
    cov_s = _stats(style_image)[1]
    if method == "pca":  # Image Analogies: symmetric square roots, Sigma_c^1/2 Sigma_s^-1/2
        expect = scipy.linalg.sqrtm(cov_c).real @ np.linalg.inv(scipy.linalg.sqrtm(cov_s).real)
    else:  # L_c L_s^-1, lower-triangular Cholesky factors
        expect = (scipy.linalg.cholesky(cov_c, lower=True)
                  @ np.linalg.inv(scipy.linalg.cholesky(cov_s, lower=True)))
    np.testing.assert_allclose(a, expect, rtol=1e-4, atol=1e-5)
    clipped = color.match_color_histogram(style_image, content_image, method=method)
    np.testing.assert_allclose(clipped, np.clip(raw, 0, 1), atol=1e-6)


def test_match_color_histogram_gray_style_and_bad_method(content_image):
    gray = np.full((8, 8, 3), 0.4, np.float32)
    out = color.match_color_histogram(gray, content_image)
    np.testing.assert_allclose(out, np.broadcast_to(content_image.mean(axis=(0, 1)),
                                                    out.shape), atol=1e-5)
    with pytest.raises(ValueError, match="method"):
        color.match_color_histogram(gray, content_image, method="lab")


def test_yiq_round_trip_and_luminance_image(content_image):
    yiq = color.rgb_to_yiq(content_image)
    np.testing.assert_allclose(yiq, content_image.astype(np.float64) @ YIQ.T, atol=1e-12)
    np.testing.assert_allclose(color.yiq_to_rgb(yiq), content_image, atol=1e-6)
    lum = color.luminance_image(content_image)
    expect = content_image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(lum, np.repeat(expect[..., None], 3, -1), atol=1e-6)


def test_luminance_transfer(content_image, style_image):
    stylized = smooth_image(21, *content_image.shape[:2])
    out = color.luminance_transfer(stylized, content_image)
    assert out.shape == content_image.shape and out.dtype == np.float32
    y_out, y_sty, y_con = (np.asarray(im, np.float64) @ YIQ.T
                           for im in (out, stylized, content_image))
    raw = np.concatenate([y_sty[..., :1], y_con[..., 1:]], -1) @ np.linalg.inv(YIQ).T
    unclipped = np.all((raw > 0) & (raw < 1), axis=-1)
    assert unclipped.mean() > 0.5  # the check below covers most pixels
    np.testing.assert_allclose(y_out[unclipped, 0], y_sty[unclipped, 0], atol=1e-6)
    np.testing.assert_allclose(y_out[unclipped, 1:], y_con[unclipped, 1:], atol=1e-6)
    assert out.min() >= 0 and out.max() <= 1
    # A gray (luminance-only) result gets the content's colours back.
    gray = color.luminance_image(stylized)
    np.testing.assert_allclose(color.luminance_transfer(gray, content_image)[unclipped],
                               out[unclipped], atol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        color.luminance_transfer(style_image, content_image)


def test_match_luminance(content_image, style_image):
    out = color.match_luminance(style_image, content_image)
    assert out.shape == style_image.shape
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    ys = style_image.astype(np.float64) @ YIQ[0]
    yc = content_image.astype(np.float64) @ YIQ[0]
    expect = np.clip((ys - ys.mean()) / ys.std() * yc.std() + yc.mean(), 0, 1)
    np.testing.assert_allclose(out[..., 0], expect, atol=1e-6)


def test_prepare_and_finish(content_image, style_image):
    c, s = color.prepare(content_image, [style_image], "none")
    np.testing.assert_array_equal(c, content_image)
    np.testing.assert_array_equal(s[0], style_image)
    c, s = color.prepare(content_image, [style_image, style_image], "histogram")
    np.testing.assert_array_equal(c, content_image)
    assert len(s) == 2
    np.testing.assert_array_equal(s[1], color.match_color_histogram(style_image, content_image))
    c, s = color.prepare(content_image, [style_image], "luminance")
    np.testing.assert_array_equal(c, color.luminance_image(content_image))
    np.testing.assert_array_equal(s[0], color.match_luminance(style_image, content_image))
    final = color.finish(c, content_image, "luminance")
    np.testing.assert_allclose(final, content_image, atol=2e-6)  # content's own Y and chroma
    stylized = smooth_image(22, *content_image.shape[:2])
    for mode in ("none", "histogram"):  # applied before the run, if at all: unchanged after
        np.testing.assert_array_equal(color.finish(stylized, content_image, mode), stylized)
    for call in (lambda: color.finish(c, content_image, "lab"),
                 lambda: color.prepare(content_image, [style_image], "lab")):
        with pytest.raises(ValueError, match="preserve_colors must be one of"):
            call()
