"""Training images: content and style folders -> batches of random crops, per host.

    content = list_images("coco/", "--content-dir");  style = list_images("wikiart/", ...)
    spec = DataSpec(content, style, batch_size=5, load_size=512, crop_size=256, seed=0)
    source = TrainBatches(spec, steps, process_index=0, process_count=1)
    with iterate(source, start=0, threads=8) as batches:  # batch["content"]: (5, 256, 256, 3)
        ...

Each image is read with `jaxstyle.image.load_image` (every mode, EXIF rotation), resized so
that its smaller side is `load_size` (aspect kept; load_size + 1 at most, from rounding the
longer side, so that one Lanczos pass does it, a JPEG first decoded at a reduced scale when
much larger), and a random crop_size x crop_size square taken from it (as the official AdaIN
code: smaller side 512, random 256 crops), as uint8.

Slots: a batch of B has B slots. The files, permuted once by the seed, are dealt to the slots
(slot g holds files[g::B], or one file when there are fewer files than slots), and slot g of
batch j is the j-th image of slot g's stream: its files, reshuffled every pass over them
(seed, slot, pass), each cropped at random (seed, slot, j). So batch j is a pure function of
(seed, B, the file lists, j):
- deterministic, whatever the number of worker threads or processes;
- its position is the step index j: a resumed run starts at the step it stopped at;
- host h of H computes slots h B/H ... (h + 1) B/H - 1 only, and reads only their files (its
  own shard of each list); the H hosts' rows together are the one-host batch, so a run
  gives the same batches on any number of hosts and devices.
An unreadable file (`ImageError`: missing, truncated, not an image ...) is skipped: the slot
takes the next file of its stream instead, and the batch lists what it skipped
(`batch["skipped"]`), so the trainer can count and report it; a slot whose files are all
unreadable raises InputError.

`iterate` reads batches start, start + 1, ... ahead on a pool of threads, in order. Threads,
not processes: PIL's decoding and resizing release the GIL. (grain did the same with a
dependency and its own threads; its worker processes left shared-memory errors at exit in a
trial, grain 0.2.18, so this module does without it.)
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle.files import ImageError, InputError
from jaxstyle.image import load_image, resize_to, to_uint8

_KINDS = {"content": 0, "style": 1}  # stream ids in the seeds


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What the batches are made of (hashable; the file lists as tuples of paths)."""

    content: tuple[str, ...]  # content image files
    style: tuple[str, ...]  # style image files
    batch_size: int  # B, over all hosts
    load_size: int = 512  # smaller side after resizing
    crop_size: int = 256  # side of the random square crop
    seed: int = 0  # file order, reshuffles and crops

    def __post_init__(self):
        if not self.content or not self.style:
            raise ValueError("DataSpec needs at least one content and one style file")
        if self.batch_size < 1 or self.crop_size < 1:
            raise ValueError("batch_size and crop_size must be >= 1")
        if self.load_size < self.crop_size:
            raise ValueError(f"load_size ({self.load_size}) must be at least crop_size "
                             f"({self.crop_size})")


def load_crop(path: str, load_size: int, crop_size: int,
              rng: np.random.Generator | None) -> np.ndarray:
    """One image file -> (crop_size, crop_size, 3) uint8: resized (smaller side load_size, see
    the module docstring), then cropped at a random position (`rng`) or, with rng None, at
    the centre. Raises ImageError for a file that cannot be used."""
    image = load_image(path, max_side=_long_side(path, load_size))
    h, w = image.shape[:2]
    if min(h, w) < load_size:  # smaller than asked: enlarge (the longer side rounded)
        scale = load_size / min(h, w)
        image = resize_to(image, (max(load_size, round(h * scale)),
                                  max(load_size, round(w * scale))))
        h, w = image.shape[:2]
    if rng is None:
        top, left = (h - crop_size) // 2, (w - crop_size) // 2
    else:
        top, left = int(rng.integers(h - crop_size + 1)), int(rng.integers(w - crop_size + 1))
    return to_uint8(image[top:top + crop_size, left:left + crop_size])


def _long_side(path: str, load_size: int) -> int:
    """The longer side that gives a smaller side of load_size, from the file's header (so
    that load_image can decode a large JPEG at a reduced scale)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception as err:  # noqa: BLE001 - any failure here is "cannot use this file"
        raise ImageError(path, f"cannot read the image header ({type(err).__name__}: {err})"
                         ) from None
    return math.ceil(max(h, w) * load_size / max(1, min(h, w)))


class TrainBatches:
    """Random-access batches of one host (module docstring): `source[j]` is batch j,
    {"content", "style": (B/H, crop, crop, 3) uint8, "skipped": ((path, problem), ...)}.

    len() is `steps`. Thread-safe: batches are read concurrently (`iterate`).
    """

    def __init__(self, spec: DataSpec, steps: int, *, process_index: int = 0,
                 process_count: int = 1) -> None:
        if spec.batch_size % process_count:
            raise ValueError(f"batch size {spec.batch_size} does not split over "
                             f"{process_count} hosts")
        self.spec, self.steps = spec, int(steps)
        self.local = spec.batch_size // process_count
        first = process_index * self.local
        self.slots = {kind: [slot_files(files, spec.batch_size, spec.seed, kind, g)
                             for g in range(first, first + self.local)]
                      for kind, files in (("content", spec.content), ("style", spec.style))}
        self.first_slot = first

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> dict[str, Any]:
        if not 0 <= step < self.steps:
            raise IndexError(step)
        out: dict[str, Any] = {"skipped": ()}
        for kind, slots in self.slots.items():
            crops = []
            for b, files in enumerate(slots):
                crop, skipped = self._read(kind, self.first_slot + b, files, step)
                crops.append(crop)
                out["skipped"] += skipped
            out[kind] = np.stack(crops)
        return out

    def _read(self, kind: str, slot: int, files: Sequence[str], step: int):
        """Slot `slot`'s image of batch `step`: the stream's file at position `step`, or the
        first readable one after it in the same pass (each file tried once). Returns (crop,
        ((path, problem), ...) skipped)."""
        spec, skipped, n = self.spec, [], len(files)
        rng = np.random.default_rng([spec.seed, _KINDS[kind], slot, step, 1])
        p, i = divmod(step, n)
        order = pass_order(n, spec.seed, kind, slot, p)
        for k in range(n):
            path = files[order[(i + k) % n]]
            try:
                return load_crop(path, spec.load_size, spec.crop_size, rng), tuple(skipped)
            except ImageError as err:
                skipped.append((path, err.problem))
        raise InputError(f"every {kind} file of slot {slot} is unreadable, e.g. "
                         f"{skipped[0][0]}: {skipped[0][1]}")


def slot_files(files: Sequence[str], batch_size: int, seed: int, kind: str, slot: int
               ) -> tuple[str, ...]:
    """Slot `slot`'s files: `files` permuted by (seed, kind), then every batch_size-th from
    position slot (one file when there are fewer files than slots: slot mod len)."""
    order = np.random.default_rng([seed, _KINDS[kind]]).permutation(len(files))
    return tuple(files[i] for i in order[slot % len(files)::batch_size])


def pass_order(n: int, seed: int, kind: str, slot: int, p: int) -> np.ndarray:
    """The order of a slot's n files in its pass p over them: position p n + i of the
    slot's stream is its file pass_order(...)[i]; a permutation drawn from (seed, kind,
    slot, p)."""
    return np.random.default_rng([seed, _KINDS[kind], slot, p]).permutation(n)


@contextlib.contextmanager
def iterate(source: TrainBatches, start: int = 0, *, threads: int = 2, buffer: int = 4
            ) -> Iterator[Iterator[dict[str, Any]]]:
    """A context giving an iterator over batches start, start + 1, ... len(source) - 1 of
    `source`, in order, `buffer` batches read ahead by `threads` threads; on exit the
    batches not yet started are cancelled and the threads joined. A batch's exception
    (InputError) is raised when the iterator reaches it."""
    pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="jaxstyle-data")
    pending: collections.deque = collections.deque()

    def batches() -> Iterator[dict[str, Any]]:
        ahead = range(start, len(source))
        it = iter(ahead)
        for j in itertools.islice(it, max(1, buffer)):
            pending.append(pool.submit(source.__getitem__, j))
        while pending:
            batch = pending.popleft().result()
            for j in itertools.islice(it, 1):
                pending.append(pool.submit(source.__getitem__, j))
            yield batch

    try:
        yield batches()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)


def default_threads() -> int:
    """Read-ahead threads when not given: one per core, at most 16."""
    return max(1, min(16, os.cpu_count() or 1))


def sample_images(files: Sequence[str], count: int, load_size: int, crop_size: int
                  ) -> tuple[np.ndarray, list[str]]:
    """The first `count` readable files, centre-cropped as the training images are cropped:
    ((n, crop, crop, 3) float32 in [0, 1], their names). For the progress sheets."""
    images, names = [], []
    for path in files:
        if len(images) == count:
            break
        try:
            images.append(load_crop(path, load_size, crop_size, None))
        except ImageError:
            continue
        names.append(Path(path).name)
    if not images:
        raise InputError(f"no readable image among {len(files)} files, e.g. {files[0]}")
    return np.stack(images).astype(np.float32) / 255.0, names
