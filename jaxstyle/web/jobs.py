"""The runs of `jaxstyle serve`: what a page asks for (`parse_request`), the queue (one run
at a time on the device; `Queue`), and running one (`Runner`).

A run is a Gatys optimization ("refine") or a sweep over a few style weights ("sweep",
beta / 10, beta, 10 beta: a contact sheet of three). With a feed-forward model (SANet or
AdaIN) it starts from that model's result at the output size, the styles blended, as
`jaxstyle --init sanet` does; `Runner.preview` is that result alone, at most PREVIEW_SIDE
pixels on its longer side. Previews run on their own thread beside a run (a forward pass
takes a fraction of a second on a GPU; on a CPU it shares the cores with the run).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxstyle import __version__, checks, color
from jaxstyle.config import StyleConfig
from jaxstyle.files import InputError, SettingError
from jaxstyle.web.gallery import Gallery
from jaxstyle.web.inputs import Inputs
from jaxstyle.web.live import Audience, Cells, Live

MODES = ("refine", "sweep")
SWEEP_FACTORS = (0.1, 1.0, 10.0)
PREVIEW_SIDE = 512
# The page's controls: StyleConfig fields, and the run's other settings.
CONFIG_FIELDS = ("content_weight", "style_weight", "tv_weight", "image_size", "style_scale",
                 "optimizer", "iterations")
OTHER_FIELDS = ("preserve_colors", "alpha")
RECENT = 12  # finished runs listed on the page
_ids = itertools.count(1)


@dataclasses.dataclass(frozen=True)
class Request:
    """A run or preview as a page asked for it, checked: input ids, the config, the rest."""

    mode: str
    content: str
    styles: tuple[str, ...]
    masks: tuple[str | None, ...] | None
    config: StyleConfig
    preserve_colors: str = "none"
    alpha: float = 1.0


def parse_request(data: Any, inputs: Inputs, base: StyleConfig) -> Request:
    """A page's JSON {mode, content, styles, masks, settings: {...}} -> Request, the
    settings replacing those of the server's `base` config. SettingError naming the setting
    (or "content", "styles", "masks") if anything is off; InputError for an image that
    cannot be used."""
    if not isinstance(data, dict):
        raise SettingError("expected a JSON object")
    mode = data.get("mode", "refine")
    if mode not in (*MODES, "preview"):
        raise SettingError(f"mode must be one of {', '.join(MODES)}", "mode")
    content = data.get("content")
    styles = data.get("styles") or []
    masks = data.get("masks")
    if not isinstance(content, str):
        raise SettingError("choose a content image", "content")
    if not isinstance(styles, list) or not styles or not all(isinstance(s, str) for s in styles):
        raise SettingError("choose one or more style images", "styles")
    if masks is not None and (not isinstance(masks, list) or len(masks) != len(styles)):
        raise SettingError("give one mask (or null) per style image", "masks")
    if masks is not None and not any(masks):
        masks = None
    named = [(content, "content"), *((key, "styles") for key in styles),
             *((key, "masks") for key in masks or () if key is not None)]
    for key, field in named:
        if not isinstance(key, str):
            raise SettingError(f"{field}: expected image ids", field)
        try:
            inputs.check(inputs.get(key))
        except KeyError:
            raise SettingError(f"no image {key!r} on this server (reload the page)",
                               field) from None
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise SettingError("settings must be a JSON object", "settings")
    unknown = sorted(set(settings) - set(CONFIG_FIELDS) - set(OTHER_FIELDS))
    if unknown:
        raise SettingError(f"unknown setting {unknown[0]!r}", unknown[0])
    config = base.replace(**{k: settings[k] for k in CONFIG_FIELDS
                             if settings.get(k) is not None})
    preserve = settings.get("preserve_colors") or "none"
    color.check_mode(preserve)
    alpha = float(checks.number("alpha", settings.get("alpha", 1.0)))
    if not 0.0 <= alpha <= 1.0:
        raise SettingError(f"alpha must be in [0, 1], got {alpha:g}", "alpha")
    return Request(mode, content, tuple(styles), None if masks is None else tuple(masks),
                   config, preserve, alpha)


@dataclasses.dataclass
class Job:
    """A run: queued, then running, then done, interrupted, failed or cancelled."""

    request: Request
    title: str
    id: int = dataclasses.field(default_factory=lambda: next(_ids))
    status: str = "queued"
    message: str | None = None
    item: int | None = None  # its gallery item
    submitted: float = dataclasses.field(default_factory=time.time)
    live: Live | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "mode": self.request.mode, "title": self.title,
                "status": self.status, "message": self.message, "item": self.item}


class Queue:
    """Runs waiting for the device, the one running, the recent ones. Thread-safe;
    `notify()` after every change."""

    def __init__(self, notify: Callable[[], None] = lambda: None) -> None:
        self._lock = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._recent: deque[Job] = deque(maxlen=RECENT)
        self.running: Job | None = None
        self.version = 0
        self.notify = notify

    def submit(self, job: Job) -> int:
        """Queue `job`; the number of runs before it (the one running included)."""
        with self._lock:
            self._waiting.append(job)
            ahead = len(self._waiting) - 1 + (self.running is not None)
            self._changed()
        return ahead

    def take(self, timeout: float) -> Job | None:
        """The next job, now running (None after `timeout` seconds without one)."""
        with self._lock:
            if not self._waiting:
                self._lock.wait(timeout)
            if not self._waiting:
                return None
            job = self._waiting.popleft()
            job.status = "running"
            self.running = job
            self._changed()
            return job

    def done(self, job: Job) -> None:
        with self._lock:
            if self.running is job:
                self.running = None
            self._recent.appendleft(job)
            self._changed()

    def cancel(self, job_id: int) -> bool:
        """Take a waiting job off the queue; whether there was one."""
        with self._lock:
            for job in self._waiting:
                if job.id == job_id:
                    self._waiting.remove(job)
                    job.status = "cancelled"
                    self._recent.appendleft(job)
                    self._changed()
                    return True
        return False

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"running": self.running and self.running.to_dict(),
                    "waiting": [j.to_dict() for j in self._waiting],
                    "recent": [j.to_dict() for j in self._recent]}

    def _changed(self) -> None:
        self.version += 1
        self._lock.notify_all()
        self.notify()


class Runner:
    """Runs jobs on the device, in the thread that calls `run` (the serve command's main
    thread), showing each on the page through its `Live` (`current`)."""

    def __init__(self, *, weights: Any, model: Any, inputs: Inputs, gallery: Gallery,
                 audience: Audience, device: dict[str, Any], devices: list[Any],
                 stop_all: threading.Event, notify: Callable[[], None] = lambda: None
                 ) -> None:
        self.weights, self.model, self.inputs, self.gallery = weights, model, inputs, gallery
        self.audience, self.device, self.devices = audience, device, devices
        self.stop_all, self.notify = stop_all, notify
        self.current: Live | None = None
        self._preview = threading.Lock()

    @property
    def model_kind(self) -> str | None:
        if self.model is None:
            return None
        from jaxstyle.arbitrary.models import model_kind

        return model_kind(self.model)

    def run(self, job: Job) -> None:
        """Run `job` to its end; its status and message say how it went (never raises
        but for KeyboardInterrupt)."""
        request = job.request
        live = Live(kind="sweep" if request.mode == "sweep" else "stylize", title=job.title,
                    device=self.device, audience=self.audience,
                    download_name=f"jaxstyle_run{job.id}.png")
        live.listen(self.notify)
        job.live, self.current = live, live
        self.notify()
        try:
            self._run(job, live)
        except (InputError, SettingError) as err:
            job.status, job.message = "failed", " ".join(str(err).split())
        except Exception as err:  # noqa: BLE001 - the server goes on; the page says why
            job.status = "failed"
            job.message = f"{type(err).__name__}: {' '.join(str(err).split())}"
        if job.status == "failed":
            live.finish("failed", job.message)

    def _run(self, job: Job, live: Live) -> None:
        import jaxstyle
        from jaxstyle.grids import loss_weight_grid
        from jaxstyle.objective import as_masks

        request, config = job.request, job.request.config
        live.phase("loading", "reading the images")
        content = self.inputs.load(request.content, max_side=config.output_side)
        styles = [self.inputs.load(key) for key in request.styles]
        masks = None if request.masks is None else [
            np.ones(content.shape[:2], np.float32) if key is None else
            as_masks([self.inputs.load(key)], 1)[0] for key in request.masks]
        grid = None
        if request.mode == "sweep":
            grid = loss_weight_grid(style_weight=[config.style_weight * f
                                                  for f in SWEEP_FACTORS])
            live.cells = Cells.of_grid(grid)
            live.compose = grid.sheet
        k = 1 if grid is None else len(grid.labels)
        stages = jaxstyle.plan_stages(content.shape[:2], [s.shape[:2] for s in styles], config,
                                      settings=k, device=self.devices[0])
        init = None
        if self.model is not None:
            live.phase("loading", f"the {self.model_kind} start image")
            init = self._feed_forward(content, styles, stages[-1].shape,
                                      stages[-1].style_shapes, request, recolor=False)
        settings = self._settings(job, init is not None)
        live.settings = {**settings, "config": config.to_dict()}
        live.refresh()
        live.phase("compiling", " -> ".join(f"{s.shape[1]}x{s.shape[0]}" for s in stages)
                   + " px")

        def callback(progress) -> bool:
            live.progress(progress)
            return not (live.stopped or self.stop_all.is_set())

        options = dict(weights=self.weights, config=config, init=init, style_masks=masks,
                       preserve_colors=request.preserve_colors, callback=callback,
                       callback_every=1 if self.devices[0].platform == "cpu" else 10,
                       devices=self.devices[:1])
        if grid is None:
            result = jaxstyle.stylize(content, styles, **options)
        else:
            result = jaxstyle.sweep(content, styles, loss_weights=grid, **options)
        if result.stopped == "nonfinite" and result.steps == 0:
            raise InputError(result.message)
        live.phase("writing", "writing the result")
        item = self.gallery.add(
            request.mode, result.images, {**settings, "config": config.to_dict()}, job.title,
            labels=None if grid is None else list(grid.labels),
            sheet=None if grid is None else result.contact_sheet(title=job.title),
            configs=None if grid is None else [result.setting_config(i).to_dict()
                                               for i in range(len(result))])
        job.item = item.id
        job.status = {"interrupted": "interrupted", "nonfinite": "failed"}.get(
            result.stopped, "done")
        job.message = result.message or (f"{result.steps} steps, best loss "
                                         f"{min(result.best_losses):.4g}")
        live.finish(job.status, job.message, images=result.images,
                    outputs=[p.name for p in self.gallery.file_paths(item.id)])
        self.notify()

    def preview(self, request: Request) -> np.ndarray:
        """The feed-forward result alone (module docstring); one at a time."""
        if self.model is None:
            raise SettingError("this server has no feed-forward model (start it with --model)",
                               "model")
        from jaxstyle.image import scale_shape, style_size_for

        side = min(request.config.output_side or PREVIEW_SIDE, PREVIEW_SIDE)
        with self._preview:
            content = self.inputs.load(request.content, max_side=side)
            styles = [self.inputs.load(key) for key in request.styles]
            shape = scale_shape(content.shape[:2], side)
            style_shapes = [style_size_for(shape, s.shape[:2], request.config.style_scale)
                            for s in styles]
            return self._feed_forward(content, styles, shape, style_shapes, request,
                                      recolor=request.preserve_colors != "none")

    def _feed_forward(self, content, styles, shape, style_shapes, request: Request, *,
                      recolor: bool) -> np.ndarray:
        """The model's result at `shape`, each style at its size there, blended as the
        config says (`jaxstyle --init sanet`'s start image, which the optimization then
        recolours itself); `recolor`: the styles recoloured to the content first."""
        from jaxstyle.arbitrary import stylize_adain, stylize_sanet
        from jaxstyle.image import resize_to

        stylize = stylize_sanet if self.model_kind == "sanet" else stylize_adain
        styles = [resize_to(s, hw) for s, hw in zip(styles, style_shapes, strict=True)]
        return stylize(self.model, resize_to(content, shape), styles, alpha=request.alpha,
                       style_blend_weights=request.config.normalized_blend_weights(len(styles)),
                       preserve_colors=recolor)

    def _settings(self, job: Job, feed_forward: bool) -> dict[str, Any]:
        request = job.request
        name = lambda key: self.inputs.get(key).name  # noqa: E731
        return {"jaxstyle": __version__, "run": job.id, "mode": request.mode,
                "content": name(request.content), "styles": [name(k) for k in request.styles],
                "style_masks": None if request.masks is None else
                [None if k is None else name(k) for k in request.masks],
                "init": f"{self.model_kind} (alpha {request.alpha:g})" if feed_forward else
                "content", "preserve_colors": request.preserve_colors,
                "weights": self.weights.source, "weights_convention": self.weights.convention}
