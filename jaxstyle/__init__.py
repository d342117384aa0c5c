"""jaxstyle: neural style transfer (Gatys et al., CVPR 2016) as a functional JAX/Flax library.

    import jaxstyle
    weights = jaxstyle.load_vgg19()          # or jaxstyle.random_weights(0), offline
    result = jaxstyle.stylize(content, style, weights=weights,
                              config=jaxstyle.StyleConfig(image_size=512))
    result.image                             # (H, W, 3) float32 RGB in [0, 1]

Feed-forward arbitrary style (SANet, AdaIN) lives in `jaxstyle.arbitrary`.
"""

from jaxstyle.config import CONTENT_LAYERS, STYLE_LAYERS, StyleConfig
from jaxstyle.files import ImageError, InputError, SettingError, WeightsError
from jaxstyle.grids import WeightGrid, loss_weight_grid, ratio_weights
from jaxstyle.image import load_image, save_image
from jaxstyle.losses import (
    LossSpec,
    LossWeights,
    Targets,
    Temporal,
    compute_targets,
    content_loss,
    gram_matrix,
    style_layer_loss,
    style_loss,
    temporal_loss,
    total_loss,
    total_variation,
)
from jaxstyle.objective import objective
from jaxstyle.optimizers import OPTIMIZERS, Optimizer
from jaxstyle.result import Progress, Result, Stage
from jaxstyle.sheet import contact_sheet
from jaxstyle.stylize import plan_memory, plan_stages, stylize, sweep
from jaxstyle.vgg import (
    LAYER_NAMES,
    VGG19,
    VGGWeights,
    canonical_layer,
    deprocess,
    extract_features,
    features,
    preprocess,
    random_weights,
)
from jaxstyle.weights import convert_weights, load_vgg19, save_weights

__version__ = "0.3.0"

__all__ = [
    "CONTENT_LAYERS",
    "LAYER_NAMES",
    "OPTIMIZERS",
    "STYLE_LAYERS",
    "VGG19",
    "ImageError",
    "InputError",
    "LossSpec",
    "LossWeights",
    "Optimizer",
    "Progress",
    "Result",
    "SettingError",
    "Stage",
    "StyleConfig",
    "Targets",
    "Temporal",
    "VGGWeights",
    "WeightGrid",
    "WeightsError",
    "canonical_layer",
    "compute_targets",
    "contact_sheet",
    "content_loss",
    "convert_weights",
    "deprocess",
    "extract_features",
    "features",
    "gram_matrix",
    "load_image",
    "load_vgg19",
    "loss_weight_grid",
    "objective",
    "plan_memory",
    "plan_stages",
    "preprocess",
    "random_weights",
    "ratio_weights",
    "save_image",
    "save_weights",
    "style_layer_loss",
    "style_loss",
    "stylize",
    "sweep",
    "temporal_loss",
    "total_loss",
    "total_variation",
]
