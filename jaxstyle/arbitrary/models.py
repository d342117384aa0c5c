"""The two feed-forward models and what sets them apart: the constants every other module of
`jaxstyle.arbitrary` reads (the networks, weights, stylize, losses, training).

SANet (Park and Lee, "Arbitrary Style Transfer with Style-Attentional Networks", CVPR 2019)
reads the encoder's relu4_1 and relu5_1 and has a Transform; AdaIN (Huang and Belongie,
"Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization", ICCV 2017)
reads relu4_1 only. Both decode with the same decoder architecture (docs/arbitrary.md).
"""

from __future__ import annotations

from typing import Any

from jaxstyle import checks
from jaxstyle.files import SettingError

KINDS = ("sanet", "adain")
# The params' parts: {"encoder", "decoder"[, "transform"]}.
PARTS = {"sanet": ("encoder", "decoder", "transform"), "adain": ("encoder", "decoder")}
# The encoder layers each model reads (the encoder stops at the last).
LEVELS = {"sanet": ("relu4_1", "relu5_1"), "adain": ("relu4_1",)}
DEEPEST = {kind: levels[-1] for kind, levels in LEVELS.items()}
# Image sides are multiples of this: the decoder gives 8 x relu4_1's sides, and SANet's
# Transform adds relu5_1 upsampled x2 to relu4_1, so relu4_1's sides must be even there.
MULTIPLE = {"sanet": 16, "adain": 8}
# Least training side: every reflection-padded feature map needs 2 rows (2 x MULTIPLE).
MIN_TRAIN_SIDE = {kind: 2 * m for kind, m in MULTIPLE.items()}
# Least style side at inference: the deepest reflection-padded map (SANet: conv5_1's input,
# H/16; AdaIN: conv4_1's, H/8, ceil-mode pooling) must have 2 rows.
MIN_STYLE_SIDE = {kind: m + 1 for kind, m in MULTIPLE.items()}
# The reference recipes' training batch sizes.
DEFAULT_BATCH = {"sanet": 5, "adain": 8}


def check_kind(kind: str) -> None:
    """SettingError unless `kind` is "sanet" or "adain"."""
    checks.choice("kind", kind, KINDS)


def model_kind(params: Any) -> str:
    """"sanet" for params with a Transform, else "adain"; ValueError if not such params."""
    if not isinstance(params, dict) or not {"encoder", "decoder"} <= set(params):
        raise SettingError("expected AdaIN or SANet params ({'encoder', 'decoder'[, "
                           "'transform']}) from load_sanet / load_adain", "params")
    return "sanet" if "transform" in params else "adain"
