"""The Gatys objective as a plain function of the image, for any optimizer, and the checks of
what goes into it (images, style masks, a video frame's temporal targets).

    f = jaxstyle.objective(weights, content, style, config)
    total, parts = f(image)              # parts: the unweighted content, style and TV losses
    step = jax.jit(lambda f, x: jax.value_and_grad(lambda x: f(x)[0])(x))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxstyle import color
from jaxstyle.config import StyleConfig
from jaxstyle.files import SettingError
from jaxstyle.image import resize_to
from jaxstyle.losses import (
    LossSpec,
    LossWeights,
    Targets,
    Temporal,
    compute_targets,
    total_loss,
)
from jaxstyle.pixels import as_rgb, unit_samples
from jaxstyle.vgg import VGGWeights, as_weights


def as_styles(styles: Any, config: StyleConfig) -> list[np.ndarray]:
    """One style image or a list of them, each checked (`image.as_rgb`); SettingError when
    none is given but style layers are set."""
    items = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    checked = [as_rgb(s, "style image" if len(items) == 1 else f"style image {k}")
               for k, s in enumerate(items)]
    if not checked and config.style_layers:
        raise SettingError("at least one style image is needed when style layers are set",
                           "styles")
    return checked


def as_masks(masks: Sequence[Any], num_styles: int) -> list[np.ndarray]:
    """Style masks as (h, w) float32 arrays in [0, 1]: (h, w), (h, w, 1) or (h, w, 3) (then
    its luminance) each, samples as images' (`image.as_rgb`: uint8 is divided by 255).
    SettingError for another count than the style images, another shape, values outside
    [0, 1], or a mask that is 0 everywhere (its style would apply nowhere)."""
    masks = list(masks) if isinstance(masks, (list, tuple)) else [masks]
    if len(masks) != num_styles:
        raise SettingError(f"{len(masks)} style mask(s) given for {num_styles} style image(s): "
                           "one mask per style image", "style_masks")
    out = []
    for k, mask in enumerate(masks):
        what = f"style mask {k}"
        m = np.asarray(mask)
        if m.ndim == 3 and m.shape[-1] in (1, 3):
            m = unit_samples(m, what)
            m = m[..., 0] if m.shape[-1] == 1 else color.luminance_image(m)[..., 0]
        if m.ndim != 2 or 0 in m.shape:
            raise SettingError(f"{what} must be an (h, w) array, got shape {np.shape(mask)}",
                               "style_masks")
        m = unit_samples(m, what)
        if not m.max() > 0:
            raise SettingError(f"{what} is black everywhere: its style would apply nowhere",
                               "style_masks")
        out.append(m)
    return out


def as_temporal(temporal: Any, shape: tuple[int, int]) -> Temporal:
    """`temporal` checked: (J, H, W, 3) images and (J, H, W) weights, both in [0, 1], at the
    output's (H, W); SettingError naming `temporal` otherwise."""
    if not isinstance(temporal, Temporal):
        raise SettingError("temporal must be a jaxstyle.losses.Temporal(images, weights), got "
                           f"{type(temporal).__name__}", "temporal")
    images = np.asarray(temporal.images, np.float32)
    weights = np.asarray(temporal.weights, np.float32)
    if images.ndim != 4 or images.shape[1:] != (*shape, 3) or weights.shape != images.shape[:3]:
        raise SettingError(f"temporal needs (J, {shape[0]}, {shape[1]}, 3) images and (J, "
                           f"{shape[0]}, {shape[1]}) weights at the output's size, got "
                           f"{images.shape} and {weights.shape}", "temporal")
    for what, a in (("images", images), ("weights", weights)):
        if not (np.isfinite(a).all() and a.min(initial=0) >= 0 and a.max(initial=0) <= 1):
            raise SettingError(f"temporal {what} must be finite and in [0, 1]", "temporal")
    return Temporal(images, weights)


def resize_temporal(temporal: Temporal, shape: tuple[int, int]) -> Temporal:
    """The temporal targets at a stage's (h, w) (as given at the output's size)."""
    if temporal.images.shape[1:3] == tuple(shape):
        return temporal
    images = np.stack([resize_to(im, shape) for im in temporal.images])
    weights = np.stack([np.clip(resize_to(np.repeat(c[..., None], 3, -1), shape)[..., 0], 0, 1)
                        for c in temporal.weights])
    return Temporal(images, weights)


def prepare_targets(weights: VGGWeights, content: Any, styles: Any, config: StyleConfig,
                    style_masks: Sequence[Any] | None = None) -> tuple[LossSpec, Targets]:
    """(the static spec, the targets) of `config` for a content image (H, W, 3) and one style
    image or a list of them, all RGB [0, 1]: what `losses.total_loss` takes besides the image.
    style_masks: None, or one mask in [0, 1] per style image, at the content's size."""
    content = as_rgb(content, "content image")
    styles = as_styles(styles, config)
    blend = np.asarray(config.normalized_blend_weights(len(styles)), np.float32)
    spec = config.loss_spec(weights.convention)
    masks = None
    if style_masks is not None:
        masks = np.stack(as_masks(style_masks, len(styles)))
        if masks.shape[1:] != content.shape[:2]:
            raise SettingError(f"style_masks must have the content's size {content.shape[:2]}, "
                               f"got {masks.shape[1:]}", "style_masks")
    content, styles, blend, masks = jax.device_put((content, styles, blend, masks))
    return spec, compute_targets(weights.params, content, styles, blend, spec, masks=masks)


def objective(weights: VGGWeights, content: Any, styles: Any, config: StyleConfig | None = None,
              loss_weights: LossWeights | None = None,
              style_masks: Sequence[Any] | None = None, *,
              with_parts: bool = True) -> jax.tree_util.Partial:
    """The Gatys objective as a plain function of the image, for any optimizer.

    Returns f: f(image) -> (total, {"content": L_c, "style": L_s, "tv": TV}) for an
    (H, W, 3) RGB [0, 1] image of the content image's shape, where
    total = alpha L_c + beta L_s + gamma TV with the loss weights (`loss_weights`, else
    the config's) and the parts are UNWEIGHTED. with_parts=False: f(image) -> total alone,
    the value_fn optax's line search wants (`optax.value_and_grad_from_state(f)`).
    Targets are computed here, once. f is a `jax.tree_util.Partial`, a pytree whose leaves
    are the params, targets and loss weights: pass f as an argument to a jitted function
    (`jax.jit(lambda f, x: f(x))`) so that those stay arguments instead of ~80 MB of
    baked-in constants. style_masks: one mask per style image at the content's size
    (spatial control: the guided style loss, `losses.Targets`).
    """
    config = StyleConfig() if config is None else config
    if not isinstance(config, StyleConfig):
        raise SettingError(f"config must be a StyleConfig, got {type(config).__name__}",
                           "config")
    spec, targets = prepare_targets(as_weights(weights), content, styles, config,
                                    style_masks)
    loss_weights = config.loss_weights if loss_weights is None else loss_weights
    shape = tuple(np.shape(content)[:2]) + (3,)
    return jax.tree_util.Partial(_SpecLoss(spec, shape, with_parts), weights.params, targets,
                                 loss_weights)


@dataclasses.dataclass(frozen=True)
class _SpecLoss:
    """`total_loss` with its static spec and image shape bound; equal ones compare equal (no
    recompiles)."""

    spec: LossSpec
    shape: tuple[int, int, int]
    with_parts: bool = True

    def __call__(self, params, targets, loss_weights, image):
        if tuple(np.shape(image)) != self.shape:
            raise SettingError(f"the objective takes images of the content's shape "
                               f"{self.shape}, got {tuple(np.shape(image))}", "image")
        total, parts = total_loss(params, targets, loss_weights, image, self.spec)
        return (total, parts) if self.with_parts else total
