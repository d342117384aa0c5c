"""The results of `jaxstyle serve`: each run's images, written to the server's folder with
their settings, listed on the page since the server started.

    result_<n>.png                   a refined image
    result_<n>.png, result_<n>_<label>.png   a sweep: the contact sheet, each setting

Every PNG carries the JSON of the settings that made it in its "jaxstyle" text chunk, as
the command line's files do. Numbers continue after the highest already in the folder, so
a server started again never overwrites an earlier result. Requests name an item and an
index; the path comes from the item.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle.image import load_image, save_image
from jaxstyle.web.inputs import THUMB_SIDE
from jaxstyle.web.png import png_bytes


@dataclasses.dataclass
class Item:
    """One result: its number, "refine" or "sweep", its files (the first is the one shown:
    the image or the sheet), the cells' labels of a sweep, the settings, a title."""

    id: int
    kind: str
    files: list[Path]
    labels: list[str]
    settings: dict[str, Any]
    title: str
    created: float = dataclasses.field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "title": self.title, "labels": self.labels,
                "count": len(self.files), "files": [p.name for p in self.files],
                "settings": self.settings, "created": self.created}


class Gallery:
    """The results written since the server started (module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._items: list[Item] = []
        self._thumbs: dict[tuple[int, int], bytes] = {}
        taken = [int(m.group(1)) for p in self.folder.glob("result_*.png")
                 if (m := re.fullmatch(r"result_(\d+)(_.*)?\.png", p.name))]
        self._next = max(taken, default=0) + 1
        self.version = 0

    def add(self, kind: str, images: np.ndarray, settings: dict[str, Any], title: str, *,
            labels: list[str] | None = None, sheet: np.ndarray | None = None,
            configs: list[dict[str, Any]] | None = None) -> Item:
        """Write a run's `images` ((K, h, w, 3); a sweep's `sheet`, each cell's `labels`
        and `configs` too) with `settings`; the new item."""
        with self._lock:
            number = self._next
            self._next += 1
        stem = f"result_{number:03d}"
        files = []

        def write(path: Path, image: np.ndarray, extra: dict[str, Any]) -> None:
            meta = {**settings, **extra, "output": path.name}
            save_image(path, image, metadata={"jaxstyle": json.dumps(meta, sort_keys=True,
                                                                     default=str)})
            files.append(path)

        if sheet is None:
            write(self.folder / f"{stem}.png", images[0], {})
        else:
            write(self.folder / f"{stem}.png", sheet, {"sheet": True})
            for label, image, config in zip(labels, images, configs, strict=True):
                write(self.folder / f"{stem}_{label}.png", image, {"config": config})
        item = Item(number, kind, files, list(labels or []), settings, title)
        with self._lock:
            self._items.append(item)
            self.version += 1
        return item

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return [item.to_dict() for item in reversed(self._items)]

    def file_paths(self, item_id: int) -> list[Path]:
        with self._lock:
            return next((list(i.files) for i in self._items if i.id == item_id), [])

    def file(self, item_id: int, index: int) -> Path:
        """The path of file `index` of item `item_id`; KeyError if there is none."""
        with self._lock:
            for item in self._items:
                if item.id == item_id:
                    if 0 <= index < len(item.files):
                        return item.files[index]
                    break
        raise KeyError((item_id, index))

    def thumbnail(self, item_id: int, index: int) -> bytes:
        """A small PNG of file `index` of item `item_id` (made once)."""
        key = (item_id, index)
        with self._lock:
            found = self._thumbs.get(key)
        if found is None:
            found = png_bytes(load_image(self.file(item_id, index), max_side=2 * THUMB_SIDE))
            with self._lock:
                self._thumbs[key] = found
        return found
