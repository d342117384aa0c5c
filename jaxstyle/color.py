"""Keeping the content's colours (Gatys, Bethge, Hertzmann, Shechtman 2016, "Preserving Color
in Neural Artistic Style Transfer", arXiv 1606.05897). NumPy only, on (H, W, 3) RGB in [0, 1].

- "histogram" (section 2.1): each style image is recoloured before the run so that its RGB
  mean and covariance equal the content's (`match_color_histogram`).
- "luminance" (section 2.2): the run sees luminance images only (`luminance_image`, with the
  style's luminance matched to the content's by `match_luminance`); afterwards the content's
  chroma is put back (`luminance_transfer`).
`prepare(content, styles, mode)` and `finish(stylized, content, mode)` are the two halves a
run calls before and after optimizing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxstyle.files import SettingError
from jaxstyle.pixels import rgb_array

# How a run keeps the content's colours: not at all, by luminance-only transfer, or by
# matching the styles' colour statistics to the content's first.
COLOR_MODES = ("none", "luminance", "histogram")

# YIQ (NTSC 1953, FCC): Y is luma, I and Q chroma. Y's row sums to 1 and I's and Q's to 0, so
# a gray pixel (r = g = b = v) has Y = v and I = Q = 0. The inverse is computed, not a rounded
# published table, so RGB -> YIQ -> RGB is exact up to float rounding.
_RGB_TO_YIQ = np.array([
    [0.299, 0.587, 0.114],
    [0.595716, -0.274453, -0.321263],
    [0.211456, -0.522591, 0.311135],
])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def rgb_to_yiq(image: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> (..., 3) YIQ: [Y, I, Q] = M @ [R, G, B] with the NTSC matrix M (float64)."""
    return np.asarray(image, dtype=np.float64) @ _RGB_TO_YIQ.T


def yiq_to_rgb(yiq: np.ndarray) -> np.ndarray:
    """(..., 3) YIQ -> (..., 3) RGB with the exact inverse of rgb_to_yiq's matrix (float64)."""
    return np.asarray(yiq, dtype=np.float64) @ _YIQ_TO_RGB.T


def luminance_image(image: np.ndarray) -> np.ndarray:
    """The luminance-only image the luminance transfer runs on: (H, W, 3) gray, Y replicated.

    Y = 0.299 R + 0.587 G + 0.114 B (the Y of YIQ, as Gatys et al. 2016, section 2.2). VGG
    wants three channels, so Y is repeated into R, G and B. float32 in [0, 1].
    """
    image = rgb_array(image)
    y = rgb_to_yiq(image)[..., :1]
    return np.repeat(np.clip(y, 0.0, 1.0), 3, axis=-1).astype(np.float32)


def match_luminance(style: np.ndarray, content: np.ndarray, *, eps: float = 1e-8) -> np.ndarray:
    """The style's luminance image with its mean and spread matched to the content's.

    Gatys et al. 2016, section 2.2: before a luminance-only transfer, the style luminance is
    L_s' = (sigma_c / sigma_s) (L_s - mu_s) + mu_c, mu and sigma being the mean and standard
    deviation of Y over all pixels, so that the two luminance histograms share their first
    two moments. Returns (H_s, W_s, 3) float32, Y' replicated, clipped to [0, 1].
    eps guards a flat style (sigma_s = 0).
    """
    ys = rgb_to_yiq(rgb_array(style, "style"))[..., 0]
    yc = rgb_to_yiq(rgb_array(content, "content"))[..., 0]
    matched = (yc.std() / (ys.std() + eps)) * (ys - ys.mean()) + yc.mean()
    return np.repeat(np.clip(matched, 0.0, 1.0)[..., None], 3, axis=-1).astype(np.float32)


def luminance_transfer(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Combine the stylized image's luminance with the content's colour (chroma).

    Gatys et al. 2016, section 2.2, in YIQ: out = YIQ->RGB(Y of `stylized`, I and Q of
    `content`). `stylized` may be the gray (Y-replicated) output of a luminance-only run or
    any RGB image. Both (H, W, 3) with the same H, W. Returns (H, W, 3) float32 RGB clipped
    to [0, 1]; where nothing was clipped, the output's Y equals the stylized image's Y and its
    I, Q equal the content's.
    """
    stylized = rgb_array(stylized, "stylized")
    content = rgb_array(content, "content")
    if stylized.shape != content.shape:
        raise ValueError(f"stylized {stylized.shape} and content {content.shape} images must "
                         f"have the same shape")
    yiq = rgb_to_yiq(content)
    yiq[..., 0] = rgb_to_yiq(stylized)[..., 0]
    return np.clip(yiq_to_rgb(yiq), 0.0, 1.0).astype(np.float32)


def _sqrt_psd(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Symmetric square root S^(1/2) (or S^(-1/2)) of a symmetric positive definite 3x3."""
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, 0.0)
    power = -0.5 if inverse else 0.5
    return (vecs * vals**power) @ vecs.T


def color_transfer_matrix(
    style: np.ndarray, content: np.ndarray, *, method: str = "pca", eps: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) of the linear colour transfer x' = A x + b (Gatys et al. 2016, section 2.1).

    With mu_s, Sigma_s and mu_c, Sigma_c the per-channel means and 3x3 RGB covariances of the
    style and content pixels (population covariance, over all pixels; eps * I is added to both
    so that a flat or gray image has an invertible covariance), A is chosen so that
    A Sigma_s A^T = Sigma_c, and b = mu_c - A mu_s:
      "pca":      A = Sigma_c^(1/2) Sigma_s^(-1/2), symmetric square roots from the
                  eigendecomposition (the Image Analogies colour matching the paper cites);
      "cholesky": A = L_c L_s^(-1), with Sigma = L L^T the Cholesky factors.
    Returns A (3, 3) and b (3,), float64.
    """
    if method not in ("pca", "cholesky"):
        raise ValueError(f"method must be 'pca' or 'cholesky', got {method!r}")
    xs = np.asarray(rgb_array(style, "style"), dtype=np.float64).reshape(-1, 3)
    xc = np.asarray(rgb_array(content, "content"), dtype=np.float64).reshape(-1, 3)
    mu_s, mu_c = xs.mean(axis=0), xc.mean(axis=0)
    cov_s = np.cov(xs, rowvar=False, bias=True) + eps * np.eye(3)
    cov_c = np.cov(xc, rowvar=False, bias=True) + eps * np.eye(3)
    if method == "pca":
        a = _sqrt_psd(cov_c) @ _sqrt_psd(cov_s, inverse=True)
    else:
        a = np.linalg.cholesky(cov_c) @ np.linalg.inv(np.linalg.cholesky(cov_s))
    return a, mu_c - a @ mu_s


def match_color_histogram(
    style: np.ndarray, content: np.ndarray, *, method: str = "pca", clip: bool = True
) -> np.ndarray:
    """The style image recoloured so its RGB mean and covariance equal the content's.

    Gatys et al. 2016, section 2.1 ("colour histogram matching"): every style pixel x becomes
    A x + b with (A, b) from `color_transfer_matrix` (default "pca", the symmetric
    eigendecomposition square root; "cholesky" is the paper's other variant). Run the style
    transfer with the returned image as the style: the result keeps the content's colours.
    Returns (H_s, W_s, 3) float32, clipped to [0, 1] (clip=False returns the exact affine
    map, whose mean and covariance match the content's up to eps).
    """
    a, b = color_transfer_matrix(style, content, method=method)
    out = np.asarray(style, dtype=np.float64) @ a.T + b
    if clip:
        out = np.clip(out, 0.0, 1.0)
    return out.astype(np.float32)


def prepare(content: np.ndarray, styles: Sequence[np.ndarray], mode: str
            ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The (content, styles) a run optimizes against for colour mode `mode` (COLOR_MODES).

    "none": unchanged. "histogram": each style recoloured by match_color_histogram(style,
    content). "luminance": the content's luminance_image, and each style's luminance matched
    to the content's (match_luminance); `finish` puts the content's chroma back afterwards.
    """
    check_mode(mode)
    styles = list(styles)
    if mode == "histogram":
        styles = [match_color_histogram(s, content) for s in styles]
    elif mode == "luminance":
        styles = [match_luminance(s, content) for s in styles]
        content = luminance_image(content)
    return np.asarray(content, np.float32), styles


def finish(stylized: np.ndarray, content: np.ndarray, mode: str) -> np.ndarray:
    """The image a user gets for colour mode `mode`: "luminance" recombines the stylized
    luminance with the chroma of `content` (the original RGB content at the stylized image's
    size, luminance_transfer); "none" and "histogram" return `stylized` as float32."""
    check_mode(mode)
    if mode == "luminance":
        return luminance_transfer(stylized, content)
    return np.asarray(stylized, dtype=np.float32)


def check_mode(mode: str) -> None:
    """SettingError (for `preserve_colors`) unless `mode` is one of COLOR_MODES."""
    if mode not in COLOR_MODES:
        raise SettingError(f"preserve_colors must be one of {COLOR_MODES}, got {mode!r}",
                           "preserve_colors")
