"""The live view's routes: one run (`Live`) watched from a page.

    GET  /            the page (live.html)
    GET  /events      server-sent events: "live" (what changed in the run), "memory"
    GET  /image       the current image as PNG (?cell=i: image i of a sweep); 404 before one
    GET  /download    the current image (a sweep's contact sheet) as an attachment, its
                      settings and step in the PNG's "jaxstyle" text chunk
    GET  /state       the run as JSON (what a fresh page gets first)
    POST /stop        stop the run as Ctrl-C does (the result is written, exit 130)

`add_live_routes(app, current)` puts them on an application, `current()` giving the run
shown now (`jaxstyle serve` shows each of its runs in turn). `live_app` is the whole
application of `--serve`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from jaxstyle.web import device as device_info
from jaxstyle.web.address import Address
from jaxstyle.web.live import Audience, Cursor, Live
from jaxstyle.web.server import SITE, error, make_app, page, stream

MEMORY_EVERY_S = 1.0


def live_app(live: Live, address: Address, devices: Sequence[Any] = ()) -> web.Application:
    """The application of a command's `--serve`: the live view of `live` at /."""
    app = make_app(address)
    app.router.add_get("/", page("live.html"))
    add_live_routes(app, lambda: live, live.audience, devices)
    live.listen(app[SITE].changes.poke)
    return app


def add_live_routes(app: web.Application, current: Callable[[], Live | None],
                    audience: Audience, devices: Sequence[Any] = ()) -> None:
    """The live view's routes (module docstring) for the run `current()` on `app`; each
    open event stream counts in `audience` (the runs' images are fetched only then)."""
    site = app[SITE]
    site.live, site.audience, site.memory = current, audience, _Memory(devices)
    site.messages = site.messages or live_messages  # jaxstyle serve adds its own to these
    app.router.add_get("/events", _events)
    app.router.add_get("/image", _image)
    app.router.add_get("/download", _download)
    app.router.add_get("/state", _state)
    app.router.add_post("/stop", _stop)


def live_messages(app: web.Application) -> Callable[[], list[tuple[str, Any]]]:
    """A page's stream of "live" and "memory" messages: each call gives what changed since
    the previous one (a new run: everything)."""
    cursor, run, memory_sent = Cursor(), None, 0.0

    def messages() -> list[tuple[str, Any]]:
        nonlocal cursor, run, memory_sent
        out = []
        live = app[SITE].live()
        if live is not None:
            if live.id != run:
                cursor, run = Cursor(), live.id
            data, cursor = live.snapshot(cursor)
            if len(data) > 1:
                out.append(("live", data))
        now = time.monotonic()
        memory = app[SITE].memory
        if now - memory_sent >= MEMORY_EVERY_S and memory.devices:
            memory_sent = now
            out.append(("memory", memory.read()))
        return out
    return messages


async def _events(request: web.Request) -> web.StreamResponse:
    site = request.app[SITE]
    with site.audience.watch():
        return await stream(request, site.messages(request.app))


async def _image(request: web.Request) -> web.Response:
    live = _live(request)
    cell = request.query.get("cell")
    index: int | None = None
    if cell is not None:
        if not cell.isdigit():
            return error(400, "cell must be a number")
        index = int(cell)
    found = await asyncio.get_running_loop().run_in_executor(None, live.png, index)
    if found is None:
        return error(404, "no image yet" if index is None else f"no image {cell}")
    version, data = found
    return web.Response(body=data, content_type="image/png",
                        headers={"Cache-Control": "no-store", "X-Image-Version": str(version)})


async def _download(request: web.Request) -> web.Response:
    live = _live(request)
    found = await asyncio.get_running_loop().run_in_executor(None, live.png, "sheet")
    if found is None:
        return error(404, "no image yet")
    version, data = found
    return web.Response(body=data, content_type="image/png", headers={
        "Cache-Control": "no-store", "X-Image-Version": str(version),
        "Content-Disposition": f'attachment; filename="{live.download_name}"'})


async def _state(request: web.Request) -> web.Response:
    data, _ = _live(request).snapshot()
    return web.json_response(data)


async def _stop(request: web.Request) -> web.Response:
    live = _live(request)
    first = live.request_stop()
    return web.json_response({"stopping": first})


def _live(request: web.Request) -> Live:
    live = request.app[SITE].live()
    if live is None:
        raise web.HTTPNotFound(reason="no run yet")
    return live


class _Memory:
    """The devices' memory, read at most once a second whatever the number of pages."""

    def __init__(self, devices: Sequence[Any]) -> None:
        self.devices, self._read_at, self._value = list(devices), -1.0, {}

    def read(self) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._read_at >= MEMORY_EVERY_S:
            self._read_at, self._value = now, device_info.memory(self.devices)
        return self._value
