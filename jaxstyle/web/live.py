"""`Live`: one run as its page sees it, written by the run's thread, read by the server's.

The run side calls `update` (or `progress` with a style transfer's `Progress`,
`train_progress` with training's) from its callback, `phase` between its parts and `finish`
at the end. Nothing there waits for the network: each call takes a lock for a few
assignments and pokes the server's event loop (`listen`), which sends the news to each page
at its own pace, so a slow or vanished client costs the run nothing.

Images cost a device-to-host copy, so `update` takes them as a function, called only when
a page is watching (`watch`), at most every `min_interval` seconds (0.1) and no more often
than keeps that copy under `image_share` (1%) of the run's time: a copy that took 5 ms
waits 0.5 s for the next. The server encodes them (`png`) in its own thread.

The page reads `snapshot(cursor)`: what changed since the cursor it was last sent (new
points of the loss plot, a new image version, the status).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle.web.png import png_bytes

MAX_POINTS = 4000  # a longer history is thinned to every other point
RATE_WINDOW_S = 5.0  # steps per second over about this many seconds
_ids = itertools.count(1)


@dataclasses.dataclass(frozen=True)
class Cells:
    """How K images are laid out on the page: rows x cols, labelled (a sweep's grid)."""

    labels: tuple[str, ...]
    row_labels: tuple[str, ...] = ("",)
    col_labels: tuple[str, ...] = ("",)

    @classmethod
    def of_grid(cls, grid: Any) -> Cells:
        """The layout of a `jaxstyle.WeightGrid`."""
        return cls(tuple(grid.labels), tuple(grid.row_labels), tuple(grid.col_labels))

    def to_dict(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "rows": list(self.row_labels),
                "cols": list(self.col_labels)}


@dataclasses.dataclass(frozen=True)
class Cursor:
    """What one page has been sent: the history epoch and length, image and state versions."""

    epoch: int = -1
    points: int = 0
    image: int = -1
    state: int = -1


class Audience:
    """How many pages watch, shared by the runs one server shows (thread-safe):
    `with audience.watch():` while a page is open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        with self._lock:
            self._count += 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1


class Live:
    """The state of one run for its page (module docstring).

    kind: "stylize", "sweep", "train", ... (what the page shows); title: a line naming the
    run; settings: JSON-ready, shown as a table and written into downloaded PNGs; device:
    JSON-ready description; cells: the layout of a run's several images (None: one image);
    compose: K images -> the one image Download gives (a sweep's contact sheet);
    audience: the pages watching (shared by a server's runs; default this run's own).
    """

    def __init__(self, *, kind: str, title: str, settings: Mapping[str, Any] | None = None,
                 device: Mapping[str, Any] | None = None, cells: Cells | None = None,
                 compose: Callable[[np.ndarray], np.ndarray] | None = None,
                 download_name: str = "jaxstyle.png", min_interval: float = 0.1,
                 image_share: float = 0.01, audience: Audience | None = None) -> None:
        self.id = next(_ids)
        self.kind, self.title, self.cells, self.compose = kind, title, cells, compose
        self.settings = dict(settings or {})
        self.device = dict(device or {})
        self.download_name = download_name
        self.min_interval, self.image_share = min_interval, image_share
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._stop_hooks: list[Callable[[], None]] = []
        self._t0 = time.monotonic()
        self._state = {"status": "starting", "message": None, "exit_code": None,
                       "outputs": None, "step": 0, "total": None, "stage": 0, "stages": 1,
                       "shape": None, "evaluations": None, "steps_per_s": None, "extra": {}}
        self._state_version = 0
        self._series: list[str] = []
        self._points: list[list[float | None]] = []
        self._epoch = 0
        self._images: np.ndarray | None = None
        self._image_file: Path | None = None
        self._image_version = 0
        self._image_step: int | None = None
        self._png: dict[tuple[int, int | str], bytes] = {}
        self.audience = audience or Audience()
        self._last_pull, self._pull_cost = -math.inf, 0.0

    # ------------------------------------------------------------------ the run's side

    def phase(self, status: str, message: str | None = None) -> None:
        """The run is now `status` ("loading", "compiling", "running", ...)."""
        with self._lock:
            self._state.update(status=status, message=message)
            self._state_version += 1
        self._notify()

    def update(self, step: int, total: int | None, losses: Mapping[str, float], *,
               images: Callable[[], np.ndarray] | None = None, stage: int = 0,
               stages: int = 1, shape: Sequence[int] | None = None,
               evaluations: int | None = None, extra: Mapping[str, Any] | None = None
               ) -> None:
        """A progress point: `step` of `total`, the plotted `losses` ({series: value}),
        and `images()` -> (K, h, w, 3) or (h, w, 3) in [0, 1], called only when a page
        watches and the interval allows (module docstring)."""
        now = time.monotonic() - self._t0
        row = [now, float(step), *(None for _ in self._series)]
        with self._lock:
            for name, value in losses.items():
                if name not in self._series:
                    self._series.append(name)
                    row.append(None)
                    for old in self._points:
                        old.append(None)
                value = float(value)
                row[2 + self._series.index(name)] = value if math.isfinite(value) else None
            self._points.append(row)
            if len(self._points) > MAX_POINTS:
                self._points = self._points[:-1:2] + self._points[-1:]
                self._epoch += 1
            status = self._state["status"]
            self._state.update(step=int(step), total=total, stage=int(stage),
                               stages=int(stages), steps_per_s=self._rate(),
                               shape=None if shape is None else [int(s) for s in shape],
                               evaluations=None if evaluations is None else int(evaluations),
                               extra=dict(extra or {}),
                               status="running" if status in ("starting", "compiling",
                                                              "loading") else status)
            self._state_version += 1
            pull = images is not None and self._want_image(now)
        if pull:
            t = time.perf_counter()
            pixels = np.asarray(images(), np.float32)
            cost = time.perf_counter() - t
            self.set_images(pixels, step=step)
            with self._lock:
                self._last_pull, self._pull_cost = now, cost
        self._notify()

    def progress(self, progress: Any) -> None:
        """`update` from a style transfer's `jaxstyle.Progress` (K settings): one setting's
        losses as its parts, several settings' totals each under its cell label."""
        losses = progress.shown_losses()
        if len(losses["total"]) == 1:
            plotted = {name: v[0] for name, v in losses.items()}
        else:
            names = self.cells.labels if self.cells else range(len(losses["total"]))
            plotted = {f"total {n}": v for n, v in zip(names, losses["total"], strict=False)}
        evals = progress.evaluations
        self.update(progress.step, progress.total_steps, plotted, images=progress.images,
                    stage=progress.stage, stages=progress.num_stages, shape=progress.shape,
                    evaluations=None if evals is None else int(np.sum(evals)))

    def train_progress(self, progress: Any, samples: Path | None = None) -> None:
        """`update` from training's Progress; `samples`: its newest sample sheet file."""
        extra = {"lr": progress.lr, "images_per_s": progress.images_per_s,
                 "skipped": progress.skipped}
        self.update(progress.step, progress.total_steps, progress.losses, extra=extra)
        if samples is not None:
            self.set_image_file(samples, step=progress.step)

    def set_images(self, images: np.ndarray, step: int | None = None) -> None:
        """Show `images` ((K, h, w, 3) or (h, w, 3), floats in [0, 1]) now."""
        images = np.asarray(images, np.float32)
        if images.ndim == 3:
            images = images[None]
        with self._lock:
            self._images, self._image_file = images, None
            self._image_version += 1
            self._image_step = step
            self._png.clear()
        self._notify()

    def set_image_file(self, path: Path, step: int | None = None) -> None:
        """Show the image file `path` (e.g. training's sample sheet), if it is a new one
        and exists; it is read when a page asks for it."""
        path = Path(path)
        with self._lock:
            if path == self._image_file or not path.is_file():
                return
            self._images, self._image_file = None, path
            self._image_version += 1
            self._image_step = step
            self._png.clear()
        self._notify()

    def finish(self, status: str, message: str | None = None, *, exit_code: int | None = None,
               images: np.ndarray | None = None, outputs: Any = None) -> None:
        """The run is over: `status` ("done", "interrupted", "failed"), its final images
        (shown whether or not a page watches) and the files written."""
        if images is not None:
            self.set_images(images)
        with self._lock:
            self._state.update(status=status, message=message, exit_code=exit_code,
                               outputs=outputs, steps_per_s=None)
            self._state_version += 1
        self._notify()

    def refresh(self) -> None:
        """The description (settings, device, cells) changed: pages get all of it again."""
        with self._lock:
            self._epoch += 1
            self._state_version += 1
            self._png.clear()
        self._notify()

    @property
    def stopped(self) -> bool:
        """Whether a page asked to stop."""
        return self.stop_event.is_set()

    def on_stop(self, hook: Callable[[], None]) -> None:
        """Call `hook()` (in the server's thread) when a page asks to stop."""
        self._stop_hooks.append(hook)

    # --------------------------------------------------------------- the server's side

    def request_stop(self) -> bool:
        """A page asks to stop; whether this is the first request of a running run."""
        with self._lock:
            if self.stop_event.is_set() or self._state["exit_code"] is not None or \
                    self._state["status"] in ("done", "interrupted", "failed"):
                return False
            self.stop_event.set()
            self._state["status"] = "stopping"
            self._state_version += 1
        for hook in self._stop_hooks:
            hook()
        self._notify()
        return True

    def listen(self, notify: Callable[[], None]) -> Callable[[], None]:
        """Call `notify()` (from the run's thread: it must not block) after every change;
        returns the function that stops it."""
        with self._lock:
            self._listeners.append(notify)

        def remove() -> None:
            with self._lock:
                if notify in self._listeners:
                    self._listeners.remove(notify)
        return remove

    def watch(self):
        """`with live.watch():` while a page shows the run: images are fetched only then."""
        return self.audience.watch()

    @property
    def watchers(self) -> int:
        return self.audience.count

    def snapshot(self, cursor: Cursor = Cursor()) -> tuple[dict[str, Any], Cursor]:
        """(what changed since `cursor`, the new cursor); a fresh Cursor gets everything."""
        with self._lock:
            out: dict[str, Any] = {"run": self.id}
            if cursor.state != self._state_version or cursor.epoch == -1:
                out.update(self._state, elapsed=time.monotonic() - self._t0)
            if cursor.epoch != self._epoch:
                out.update(kind=self.kind, title=self.title, settings=self.settings,
                           device=self.device, cells=self.cells and self.cells.to_dict(),
                           download=self.download_name, reset=True,
                           points=[list(p) for p in self._points], series=list(self._series))
            elif len(self._points) > cursor.points:
                out.update(points=[list(p) for p in self._points[cursor.points:]],
                           series=list(self._series))
            if cursor.image != self._image_version and self._image_version:
                count = 1 if self._images is None else len(self._images)
                out["image"] = {"version": self._image_version, "count": count,
                                "step": self._image_step}
            return out, Cursor(self._epoch, len(self._points), self._image_version,
                               self._state_version)

    def png(self, index: int | str | None = None, version: int | None = None
            ) -> tuple[int, bytes] | None:
        """(version, PNG bytes) of image `index` (None: the one image, or the composed
        sheet; "sheet": the download) of the newest version; None if there is none."""
        with self._lock:
            images, file, current = self._images, self._image_file, self._image_version
            step = self._image_step
            key = (current, "one" if index is None else index)
            cached = self._png.get(key)
        if cached is not None:
            return current, cached
        if file is not None:
            try:
                data = file.read_bytes()
            except OSError:
                return None
        elif images is None:
            return None
        else:
            if index in (None, "sheet"):
                picture = images[0] if len(images) == 1 or self.compose is None else \
                    self.compose(images)
            elif isinstance(index, int) and 0 <= index < len(images):
                picture = images[index]
            else:
                return None
            data = png_bytes(picture, {**self.settings, "step": step}, fast=True)
        with self._lock:
            if self._image_version == current:
                self._png[key] = data
        return current, data

    # ------------------------------------------------------------------ inside

    def _want_image(self, now: float) -> bool:
        wait = max(self.min_interval, self._pull_cost / self.image_share)
        return self.audience.count > 0 and now - self._last_pull >= wait

    def _rate(self) -> float | None:
        """Steps per second over the last RATE_WINDOW_S (points come after each chunk, so
        compiling falls before the first)."""
        points = self._points
        if len(points) < 2:
            return None
        last = points[-1]
        i = len(points) - 2
        while i > 0 and last[0] - points[i][0] < RATE_WINDOW_S:
            i -= 1
        dt, ds = last[0] - points[i][0], last[1] - points[i][1]
        return ds / dt if dt > 0 and ds >= 0 else None

    def _notify(self) -> None:
        for notify in list(self._listeners):
            notify()
