"""The images `jaxstyle serve` works on: uploads, and a folder given on its command line.

An upload is streamed to a file the server names (`uploads/upload_<n>` in its own folder;
the client's file name is only shown, never used as a path), at most `max_bytes`, then
checked exactly as the command line checks an input file: `jaxstyle.image.load_image` with
its pixel limit read from the header before anything is decoded (a 20000 x 20000
"decompression bomb" is refused unread), every mode, EXIF rotation, a full decode
(truncation surfaces). A file that fails is deleted and the page gets one line saying why;
the server goes on.

Each image is known by an id ("u3" an upload, "f7" the folder's 7th file): requests name
ids, and the server looks the file up in its own table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle.files import ImageError, InputError
from jaxstyle.image import DEFAULT_MAX_PIXELS, list_images, load_image
from jaxstyle.web.png import png_bytes

THUMB_SIDE = 160  # longer side of the thumbnails the page shows
MAX_UPLOAD_BYTES = 256 * 1024**2
CHUNK = 1 << 16


@dataclasses.dataclass
class Entry:
    """One image: its id, the name shown, its file, and once checked its (h, w) and
    thumbnail (PNG bytes)."""

    id: str
    name: str
    path: Path
    shape: tuple[int, int] | None = None
    thumb: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name,
                "width": None if self.shape is None else self.shape[1],
                "height": None if self.shape is None else self.shape[0]}


class Inputs:
    """The table of images (module docstring). `folder`: where uploads are written (made
    if missing); `images`: the --images folder (its image files, not its subfolders)."""

    def __init__(self, folder: Path, images: Path | None = None, *,
                 max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS
                 ) -> None:
        self.folder = Path(folder)
        self.max_bytes, self.max_pixels = max_bytes, max_pixels
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        # Numbers go on after the folder's highest: a restarted server overwrites nothing.
        taken = [int(p.name[7:]) for p in self.folder.glob("upload_*") if p.name[7:].isdigit()]
        self._uploads = itertools.count(max(taken, default=0) + 1)
        self._check = threading.Lock()  # one decode at a time: uploads can be large
        if images is not None:
            root = Path(images)
            for i, path in enumerate(list_images(root, "--images", recursive=False), 1):
                name = str(Path(path).relative_to(root))
                self._entries[f"f{i}"] = Entry(f"f{i}", name, Path(path))

    def folder_entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e.to_dict() for e in self._entries.values() if e.id.startswith("f")]

    def get(self, key: str) -> Entry:
        """The entry `key`; KeyError (unknown id) otherwise."""
        with self._lock:
            return self._entries[key]

    async def receive(self, reader: Any) -> Entry:
        """Read one upload (the first file part of a multipart `reader`), write it to the
        uploads folder, check it (`check`). InputError naming the upload if anything is
        wrong; nothing is kept then."""
        part = await reader.next()
        while part is not None and not getattr(part, "filename", None):
            await part.release()
            part = await reader.next()
        if part is None:
            raise InputError("no file in the upload")
        name = Path(part.filename).name or "upload"
        number = next(self._uploads)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"upload_{number}"
        size = 0
        try:
            with open(path, "wb") as f:
                while chunk := await part.read_chunk(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise InputError(f"{name}: larger than the {self.max_bytes // 2**20} "
                                         "MiB an upload may be")
                    f.write(chunk)
            if size == 0:
                raise InputError(f"{name}: empty file")
            entry = Entry(f"u{number}", name, path)
            await asyncio.get_running_loop().run_in_executor(None, self.check, entry)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        with self._lock:
            self._entries[entry.id] = entry
        return entry

    def check(self, entry: Entry) -> Entry:
        """Decode `entry`'s file as the command line would (pixel limit first), note its
        size and make its thumbnail; once. InputError "<name>: <problem>" if unusable."""
        if entry.thumb is not None:
            return entry
        with self._check:
            try:
                thumb = load_image(entry.path, max_side=THUMB_SIDE, max_pixels=self.max_pixels)
            except ImageError as err:
                raise InputError(f"{entry.name}: {err.problem}") from None
            entry.shape = _shown_size(entry.path)
            entry.thumb = png_bytes(thumb)
        return entry

    def load(self, key: str, max_side: int | None = None) -> np.ndarray:
        """The image `key` as (H, W, 3) float32 in [0, 1] (checked again: the file is read
        anew), its longer side at most `max_side`."""
        entry = self.check(self.get(key))
        try:
            return load_image(entry.path, max_side=max_side, max_pixels=self.max_pixels)
        except ImageError as err:
            raise InputError(f"{entry.name}: {err.problem}") from None


def _shown_size(path: Path) -> tuple[int, int]:
    """(h, w) of the image as shown (EXIF rotation applied), from the header of a file
    that load_image has just read."""
    from PIL import Image

    with Image.open(path) as im:
        width, height = im.size
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF rotations by 90 degrees
            width, height = height, width
    return height, width
