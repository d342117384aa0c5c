"""`jaxstyle serve`'s application: one page to upload or pick images, preview the
feed-forward result, refine it with the Gatys optimization or sweep the style weight, and
keep every result.

    GET  /                     the page (serve.html)
    GET  /setup                the folder's images, the model, the controls' defaults
    POST /upload               one image (multipart, field "file") -> {id, name, width,
                               height}; 400 {"error"} naming the file if it cannot be used
    GET  /input/{id}/thumb     an image's thumbnail (400 {"error"} if it cannot be used)
    POST /preview              {content, styles, settings} -> the feed-forward result (PNG)
    POST /run                  {mode: refine|sweep, content, styles, masks, settings}
                               -> {job, ahead}: queued behind `ahead` runs
    POST /cancel               {job}: take a waiting run off the queue
    GET  /gallery              the results since the server started
    GET  /gallery/{item}/{i}   file i of a result (?download=1: as an attachment)
    GET  /gallery/{item}/{i}/thumb
    and the live view's routes (`view`) for the run on the device now; /events adds
    "queue" and "gallery" messages to "live" and "memory".

A bad request gets 400 {"error": one line, "field": the control it concerns}; nothing a
request sends becomes a path.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from jaxstyle.color import COLOR_MODES
from jaxstyle.config import StyleConfig
from jaxstyle.files import InputError, SettingError
from jaxstyle.optimizers import OPTIMIZERS
from jaxstyle.web.address import Address
from jaxstyle.web.gallery import Gallery
from jaxstyle.web.inputs import Inputs
from jaxstyle.web.jobs import CONFIG_FIELDS, SWEEP_FACTORS, Job, Queue, Runner, parse_request
from jaxstyle.web.live import Audience
from jaxstyle.web.png import png_bytes
from jaxstyle.web.server import SITE, error, make_app, page
from jaxstyle.web.view import add_live_routes, live_messages


@dataclasses.dataclass
class Hub:
    """What the routes share: the images, the results, the queue, the runner."""

    inputs: Inputs
    gallery: Gallery
    queue: Queue
    runner: Runner
    audience: Audience
    base: StyleConfig  # what a page's settings change (its image_size: the control's default)
    previews: ThreadPoolExecutor = dataclasses.field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="jaxstyle-preview"))


def serve_app(hub: Hub, address: Address, devices: Sequence[Any] = ()) -> web.Application:
    """The application (module docstring)."""
    app = make_app(address)
    site = app[SITE]
    site.hub, site.messages = hub, _messages
    app.router.add_get("/", page("serve.html"))
    add_live_routes(app, lambda: hub.runner.current, hub.audience, devices)
    app.router.add_get("/setup", _setup)
    app.router.add_post("/upload", _upload)
    app.router.add_get("/input/{id}/thumb", _input_thumb)
    app.router.add_post("/preview", _preview)
    app.router.add_post("/run", _run)
    app.router.add_post("/cancel", _cancel)
    app.router.add_get("/gallery", _gallery)
    app.router.add_get(r"/gallery/{item:\d+}/{index:\d+}", _gallery_file)
    app.router.add_get(r"/gallery/{item:\d+}/{index:\d+}/thumb", _gallery_thumb)
    return app


def _hub(request: web.Request) -> Hub:
    return request.app[SITE].hub


def _messages(app: web.Application) -> Callable[[], list[tuple[str, Any]]]:
    """The live view's messages, then "queue" and "gallery" whenever they change."""
    hub, live = app[SITE].hub, live_messages(app)
    sent = {"queue": -1, "gallery": -1}

    def messages() -> list[tuple[str, Any]]:
        out = live()
        if sent["queue"] != hub.queue.version:
            sent["queue"] = hub.queue.version
            out.append(("queue", hub.queue.state()))
        if sent["gallery"] != hub.gallery.version:
            sent["gallery"] = hub.gallery.version
            out.append(("gallery", hub.gallery.items()))
        return out
    return messages


def _bad(err: Exception) -> web.Response:
    """400 {"error": the one line, "field": the setting or image it concerns}."""
    return web.json_response({"error": " ".join(str(err).split()),
                              "field": getattr(err, "name", None)}, status=400)


async def _setup(request: web.Request) -> web.Response:
    hub = _hub(request)
    defaults = {name: getattr(hub.base, name) for name in CONFIG_FIELDS}
    return web.json_response({
        "folder": hub.inputs.folder_entries(), "model": hub.runner.model_kind,
        "defaults": {**defaults, "alpha": 1.0, "preserve_colors": "none"},
        "optimizers": list(OPTIMIZERS), "color_modes": list(COLOR_MODES),
        "sweep_factors": list(SWEEP_FACTORS), "max_upload": hub.inputs.max_bytes})


async def _upload(request: web.Request) -> web.Response:
    hub = _hub(request)
    try:
        reader = await request.multipart()
    except (KeyError, AssertionError, ValueError):
        return error(400, "send the image as multipart/form-data, field 'file'")
    try:
        entry = await hub.inputs.receive(reader)
    except InputError as err:
        return _bad(err)
    return web.json_response(entry.to_dict())


async def _input_thumb(request: web.Request) -> web.Response:
    hub = _hub(request)
    try:
        entry = hub.inputs.get(request.match_info["id"])
        entry = await asyncio.get_running_loop().run_in_executor(None, hub.inputs.check, entry)
    except KeyError:
        return error(404, "no such image")
    except InputError as err:
        return _bad(err)
    return web.Response(body=entry.thumb, content_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        raise SettingError("expected a JSON body") from None


async def _preview(request: web.Request) -> web.Response:
    hub = _hub(request)
    loop = asyncio.get_running_loop()
    try:
        data = await _json(request)
        parsed = await loop.run_in_executor(
            None, parse_request, {**data, "mode": "preview"}, hub.inputs, hub.base)
        t = loop.time()
        image = await loop.run_in_executor(hub.previews, hub.runner.preview, parsed)
        seconds = loop.time() - t
    except (SettingError, InputError) as err:
        return _bad(err)
    body = await loop.run_in_executor(None, png_bytes, image)
    return web.Response(body=body, content_type="image/png", headers={
        "Cache-Control": "no-store", "X-Seconds": f"{seconds:.3f}"})


async def _run(request: web.Request) -> web.Response:
    hub = _hub(request)
    loop = asyncio.get_running_loop()
    try:
        data = await _json(request)
        parsed = await loop.run_in_executor(None, parse_request, data, hub.inputs, hub.base)
        await loop.run_in_executor(None, _check_sizes, hub, parsed)
    except (SettingError, InputError) as err:
        return _bad(err)
    names = ", ".join(hub.inputs.get(k).name for k in parsed.styles)
    job = Job(parsed, "")
    job.title = (f"{parsed.mode} #{job.id}: {hub.inputs.get(parsed.content).name} in the "
                 f"style of {names}")
    ahead = hub.queue.submit(job)
    return web.json_response({"job": job.id, "ahead": ahead})


def _check_sizes(hub: Hub, parsed) -> None:
    """The run's sizes against the loss layers and the memory, before it queues (the
    library's own check, SettingError naming image_size or style_scale)."""
    import jaxstyle

    content = hub.inputs.get(parsed.content).shape
    styles = [hub.inputs.get(k).shape for k in parsed.styles]
    k = len(SWEEP_FACTORS) if parsed.mode == "sweep" else 1
    jaxstyle.plan_stages(content, styles, parsed.config, settings=k,
                         device=hub.runner.devices[0])


async def _cancel(request: web.Request) -> web.Response:
    try:
        data = await _json(request)
        job = int(data["job"])
    except (SettingError, KeyError, TypeError, ValueError):
        return error(400, "expected {\"job\": number}")
    return web.json_response({"cancelled": _hub(request).queue.cancel(job)})


async def _gallery(request: web.Request) -> web.Response:
    return web.json_response(_hub(request).gallery.items())


async def _gallery_file(request: web.Request) -> web.StreamResponse:
    try:
        path = _hub(request).gallery.file(int(request.match_info["item"]),
                                          int(request.match_info["index"]))
    except KeyError:
        return error(404, "no such result")
    headers = {"Cache-Control": "max-age=3600"}
    if request.query.get("download"):
        headers["Content-Disposition"] = f'attachment; filename="{path.name}"'
    return web.FileResponse(path, headers=headers)


async def _gallery_thumb(request: web.Request) -> web.Response:
    gallery = _hub(request).gallery
    try:
        body = await asyncio.get_running_loop().run_in_executor(
            None, gallery.thumbnail, int(request.match_info["item"]),
            int(request.match_info["index"]))
    except KeyError:
        return error(404, "no such result")
    return web.Response(body=body, content_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})
