"""jaxstyle: neural style transfer (Gatys et al., CVPR 2016) as a functional JAX/Flax library.

    import jaxstyle
    weights = jaxstyle.load_vgg19()
    result = jaxstyle.stylize(content, style, weights=weights)
"""

from jaxstyle import image
from jaxstyle.config import CONTENT_LAYERS, STYLE_LAYERS, LossWeights, StyleConfig
from jaxstyle.image import ImageError, load_image, save_image
from jaxstyle.losses import (
    LossSpec,
    Targets,
    compute_targets,
    content_loss,
    gram_matrix,
    objective,
    style_layer_loss,
    style_loss,
    total_loss,
    total_variation,
)
from jaxstyle.pyramid import PyramidResult, StageProgress, stylize_pyramid
from jaxstyle.stylize import Progress, Result, stylize
from jaxstyle.sweep import (
    SweepProgress,
    SweepResult,
    WeightGrid,
    loss_weight_grid,
    ratio_weights,
    sweep,
)
from jaxstyle.vgg import (
    LAYER_NAMES,
    VGG19,
    VGGWeights,
    canonical_layer,
    deprocess,
    extract_features,
    preprocess,
    random_weights,
)
from jaxstyle.weights import WeightsError, convert_weights, load_vgg19, save_weights

__version__ = "0.1.0"

__all__ = [
    "CONTENT_LAYERS",
    "LAYER_NAMES",
    "STYLE_LAYERS",
    "VGG19",
    "ImageError",
    "LossSpec",
    "LossWeights",
    "Progress",
    "PyramidResult",
    "Result",
    "StageProgress",
    "StyleConfig",
    "SweepProgress",
    "SweepResult",
    "Targets",
    "VGGWeights",
    "WeightGrid",
    "WeightsError",
    "canonical_layer",
    "compute_targets",
    "content_loss",
    "convert_weights",
    "deprocess",
    "extract_features",
    "gram_matrix",
    "image",
    "load_image",
    "load_vgg19",
    "loss_weight_grid",
    "objective",
    "preprocess",
    "random_weights",
    "ratio_weights",
    "save_image",
    "save_weights",
    "style_layer_loss",
    "style_loss",
    "stylize",
    "stylize_pyramid",
    "sweep",
    "total_loss",
    "total_variation",
]
