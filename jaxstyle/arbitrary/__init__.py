"""Arbitrary style transfer in one forward pass: SANet (Park and Lee, CVPR 2019) and AdaIN
(Huang and Belongie, ICCV 2017), run from the released PyTorch weights.

Modules: `ops` (padding, pooling, upsampling, mean/std, mvn, adain), `encoder` (the
normalised VGG19), `sanet` (attention, SANet block, Transform), `decoder`, `released` (the
released files' layouts), `weights` (loading, jaxstyle's model .npz, conversion) and
`stylize` (the one-pass entry points). Training: `losses` (sanet_loss, adain_loss),
`train_config`, `step` (the sharded Adam step), `data` (image folders to batches),
`checkpoints` (orbax), `trainer` (the loop) and `models` (what sets SANet and AdaIN apart).
"""

from jaxstyle.arbitrary.decoder import Decoder, decode
from jaxstyle.arbitrary.encoder import Encoder, encode
from jaxstyle.arbitrary.losses import adain_loss, sanet_loss
from jaxstyle.arbitrary.ops import adain, mean_std, mvn
from jaxstyle.arbitrary.released import EncoderInputWarning
from jaxstyle.arbitrary.sanet import SANet, Transform, attention, style_code, transform
from jaxstyle.arbitrary.stylize import (
    EncodedStyles,
    check_memory,
    encode_styles,
    plan_memory,
    stylize_adain,
    stylize_sanet,
)
from jaxstyle.arbitrary.weights import (
    convert,
    load_adain,
    load_sanet,
    random_params,
    read_model,
    save_model,
)

__all__ = [
    "Decoder",
    "EncodedStyles",
    "Encoder",
    "EncoderInputWarning",
    "SANet",
    "Transform",
    "adain",
    "adain_loss",
    "attention",
    "check_memory",
    "convert",
    "decode",
    "encode",
    "encode_styles",
    "load_adain",
    "load_sanet",
    "mean_std",
    "mvn",
    "plan_memory",
    "random_params",
    "read_model",
    "sanet_loss",
    "save_model",
    "style_code",
    "stylize_adain",
    "stylize_sanet",
    "transform",
]
