"""Images as PNG bytes for the pages (in memory; files go through `jaxstyle.image`)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np


def png_bytes(image: np.ndarray, settings: Mapping[str, Any] | None = None, *,
              fast: bool = False) -> bytes:
    """An (h, w, 3) image in [0, 1] as PNG bytes, with `settings` as JSON in its "jaxstyle"
    text chunk (as the command line's files carry them); `fast`: the lightest compression
    (a live frame, encoded again for every new image)."""
    from PIL import Image, PngImagePlugin

    from jaxstyle.image import to_uint8

    info = PngImagePlugin.PngInfo()
    if settings:
        info.add_itxt("jaxstyle", json.dumps(settings, sort_keys=True, default=str))
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG", pnginfo=info,
                                          compress_level=1 if fast else 6)
    return buffer.getvalue()
