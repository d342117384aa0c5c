"""The HTTP side: an aiohttp application served from its own thread, and what every page's
routes share (the guard against other sites, the page assets, the event stream).

Why aiohttp: one package gives the server, multipart uploads read as a stream (with a
size limit), streamed responses for server-sent events, a client for the benchmark's
watcher, and a test client that speaks to a real socket; it runs in a thread of its own
(`Server`: its own event loop, no signal handlers), so the run keeps the main thread, where
Ctrl-C and JAX live. Server-sent events rather than a websocket: the page only listens,
and browsers reconnect an EventSource by themselves (an ssh tunnel that drops comes back).

Requests never name files: pages and scripts are package data read once into memory, and
images come from memory or from paths the server chose.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from jaxstyle.web.address import Address, host_allowed

HEARTBEAT_S = 15.0  # a comment line on idle streams, so a vanished client is noticed
MIN_SEND_INTERVAL_S = 0.1  # at most 10 messages a second to one page
WRITE_TIMEOUT_S = 30.0  # a page that reads nothing for this long is dropped
POST_HEADER = "X-Jaxstyle"  # other sites' pages cannot send it without our permission
ASSETS = {"live.html": "text/html", "serve.html": "text/html", "jaxstyle.css": "text/css",
          "plot.js": "text/javascript", "live.js": "text/javascript",
          "serve.js": "text/javascript"}
_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'none'")


def assets() -> dict[str, tuple[bytes, str]]:
    """{name: (bytes, content type)} of the pages and scripts (package data)."""
    folder = resources.files("jaxstyle.web") / "static"
    return {name: ((folder / name).read_bytes(), kind) for name, kind in ASSETS.items()}


def make_app(address: Address, *, client_max_size: int = 1024**2) -> web.Application:
    """An application with the guard (`guard`) and the assets under /static/."""
    app = web.Application(middlewares=[_guard(address)], client_max_size=client_max_size)
    app[SITE] = Site(assets(), Changes())
    app.router.add_get("/static/{name}", _asset)
    app.on_startup.append(_on_loop)
    return app


async def _on_loop(app: web.Application) -> None:
    app[SITE].changes.loop = asyncio.get_running_loop()


def page(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler that answers with the asset `name` (an HTML page)."""

    async def handler(request: web.Request) -> web.Response:
        body, kind = request.app[SITE].assets[name]
        return web.Response(body=body, content_type=kind, headers={"Cache-Control": "no-store"})
    return handler


async def _asset(request: web.Request) -> web.Response:
    found = request.app[SITE].assets.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    return web.Response(body=found[0], content_type=found[1],
                        headers={"Cache-Control": "no-cache"})


def _guard(address: Address):
    """Every request: a Host this server answers to (loopback names for a loopback
    server), and for POST the page's own header; the answers carry a strict content
    policy; an error in a handler becomes a one-line JSON message, not a dead server."""

    @web.middleware
    async def guard(request: web.Request, handler):
        if not host_allowed(request.headers.get("Host"), address):
            return error(403, "this server answers to localhost / 127.0.0.1 only")
        if request.method == "POST" and request.headers.get(POST_HEADER) != "1":
            return error(403, f"POST requests need the {POST_HEADER} header (the page sends "
                              "it; other sites cannot)")
        try:
            response = await handler(request)
        except web.HTTPException as err:
            if err.status >= 400 and err.content_type != "application/json":
                return error(err.status, err.reason)
            raise
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as err:  # noqa: BLE001 - the server stays up, the page says why
            return error(500, f"{type(err).__name__}: {' '.join(str(err).split())}")
        if not response.prepared:
            response.headers.setdefault("Content-Security-Policy", _CSP)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response
    return guard


def error(status: int, message: str) -> web.Response:
    """A JSON error the pages show: {"error": message}."""
    return web.json_response({"error": message}, status=status)


class Changes:
    """Wakes the event streams when something changed: `poke()` from any thread (it never
    blocks: it schedules a call on the server's loop); each stream waits on its own
    asyncio.Event."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.events: set[asyncio.Event] = set()
        self.closing = False

    def poke(self) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        for event in self.events:
            event.set()


@dataclasses.dataclass
class Site:
    """What an application's handlers share (`app[SITE]`): the assets, the change
    notifier, and what the live view and `jaxstyle serve` add (`view`, `app`)."""

    assets: dict[str, tuple[bytes, str]]
    changes: Changes
    live: Callable[[], Any] = lambda: None  # the run shown now (a `Live`) or None
    audience: Any = None  # the pages watching (`live.Audience`)
    messages: Callable[[web.Application], Callable[[], list]] | None = None
    memory: Any = None
    hub: Any = None  # jaxstyle serve's state


SITE = web.AppKey("jaxstyle", Site)


async def stream(request: web.Request, messages: Callable[[], list[tuple[str, Any]]],
                 *, done: Callable[[], bool] = lambda: False) -> web.StreamResponse:
    """Server-sent events: `messages()` -> [(event, JSON-ready data)] of what changed since
    the last call, sent whenever `Changes` is poked (at most every MIN_SEND_INTERVAL_S),
    until the client leaves, `done()` is true after a send, or the server closes."""
    changes = request.app[SITE].changes
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    event = asyncio.Event()
    changes.events.add(event)
    try:
        last_write = time.monotonic()
        while True:
            batch = messages()
            text = "".join(f"event: {name}\ndata: {json.dumps(data, allow_nan=False)}\n\n"
                           for name, data in batch)
            if not batch and time.monotonic() - last_write > HEARTBEAT_S:
                text = ": still here\n\n"
            if text:
                await asyncio.wait_for(response.write(text.encode()), WRITE_TIMEOUT_S)
                last_write = time.monotonic()
            if done() or changes.closing:
                break
            await asyncio.sleep(MIN_SEND_INTERVAL_S)
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), 1.0)
            event.clear()
    except (ConnectionError, asyncio.TimeoutError):
        pass  # the client left or stopped reading: its stream ends, nothing else does
    finally:
        changes.events.discard(event)
    return response


class Server:
    """`app` served on the bound socket `sock` from a thread of its own.

    start() returns once it accepts connections; close() ends the event streams, waits up
    to `grace` seconds for the pages to leave (they close their stream after loading the
    final image), and stops."""

    def __init__(self, app: web.Application, sock: socket.socket) -> None:
        self.app, self.sock = app, sock
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="jaxstyle-web",
                                       daemon=True)
        self.runner: web.AppRunner | None = None

    @property
    def changes(self) -> Changes:
        return self.app[SITE].changes

    def start(self) -> Server:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    async def _start(self) -> None:
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None,
                                    shutdown_timeout=1.0)
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()

    def close(self, grace: float = 0.0, watching: Callable[[], int] = lambda: 0) -> None:
        """Stop serving: first, for up to `grace` seconds, let the `watching()` pages take
        their last messages; then end every stream and close."""
        if not self.thread.is_alive():
            return
        deadline = time.monotonic() + grace
        while watching() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.changes.closing = True
        self.changes.poke()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()
        self.changes.loop = None

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
