"""A run's files: where each image goes and what metadata it carries.

    OUT.png                one setting's image, or the labelled contact sheet of a sweep
    OUT_<label>.png        setting <label>'s image in a sweep (OUT_c1_s1000_tv0.png)
    OUT_<step>.png         a snapshot every --save-every steps

Every PNG/JPEG carries, under the key "jaxstyle", the JSON of the settings that made it (the
inputs and the setting's `StyleConfig`), so an image says how to make it again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jaxstyle.config import StyleConfig
from jaxstyle.image import save_image


def save_with_settings(path: Path, image: Any, settings: dict, config: StyleConfig) -> str:
    """save_image with the settings that made it in its metadata; returns the path."""
    meta = {**settings, "output": str(path), "config": config.to_dict()}
    save_image(path, image, metadata={"jaxstyle": json.dumps(meta, sort_keys=True)})
    return str(path)


def step_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}_{step}{output.suffix}")


def setting_path(output: Path, label: str) -> Path:
    return output.with_name(f"{output.stem}_{label}{output.suffix}")


def write_result(output: Path, result: Any, settings: dict, title: str) -> dict[str, Any]:
    """Write a `Result`'s images: one setting's to `output`; a sweep's each to its
    `setting_path` and their contact sheet (titled `title`) to `output`. Returns what was
    written ({"image": path} or {"images": [...], "sheet": path})."""
    if len(result) == 1:
        return {"image": save_with_settings(output, result.image, settings, result.config)}
    images = [save_with_settings(setting_path(output, label), image, settings,
                                 result.setting_config(i))
              for i, (label, image) in enumerate(zip(result.labels, result.images,
                                                     strict=True))]
    sheet = save_with_settings(output, result.contact_sheet(title=title), settings,
                               result.config)
    return {"images": images, "sheet": sheet}
