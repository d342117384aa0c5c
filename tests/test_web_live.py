"""The live view (`--serve`): `Live` fed as a run's callback feeds it, its routes through
aiohttp's test client, and the server in its thread against clients that leave, stall or
come two at a time. No JAX: a run here is a loop of `update` calls."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("aiohttp")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from jaxstyle.web import address as addresses  # noqa: E402
from jaxstyle.web.live import MAX_POINTS, Cells, Live  # noqa: E402
from jaxstyle.web.server import Server  # noqa: E402
from jaxstyle.web.view import live_app  # noqa: E402

LOCAL = addresses.Address("127.0.0.1", 0)
POST = {"X-Jaxstyle": "1"}


def image(value: float, h: int = 8, w: int = 12) -> np.ndarray:
    return np.full((h, w, 3), value, np.float32)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


async def read_events(response, until, timeout: float = 10.0) -> list[tuple[str, dict]]:
    """Server-sent events from `response` until `until(events)` is true."""
    events, name = [], None
    deadline = time.monotonic() + timeout
    while not until(events):
        assert time.monotonic() < deadline, events
        line = (await asyncio.wait_for(response.content.readline(), timeout)).decode()
        if line.startswith("event: "):
            name = line[7:].strip()
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


# --------------------------------------------------------------------------- address


@pytest.mark.parametrize("text, host, port", [
    ("8000", "127.0.0.1", 8000), ("0", "127.0.0.1", 0), ("0.0.0.0:80", "0.0.0.0", 80),
    ("localhost:9", "localhost", 9), ("[::1]:8000", "::1", 8000)])
def test_parse_address(text, host, port):
    assert addresses.parse_address(text) == addresses.Address(host, port)


@pytest.mark.parametrize("text", ["", "x", ":80", "1.2.3.4:", "::1:80", "70000", "h:-1"])
def test_parse_address_refuses(text):
    with pytest.raises(ValueError, match="^'"):
        addresses.parse_address(text)


def test_a_busy_port_is_one_line_naming_it():
    first = addresses.bind(LOCAL)
    try:
        port = addresses.bound_port(first)
        with pytest.raises(OSError) as err:
            addresses.bind(addresses.Address("127.0.0.1", port))
        assert str(err.value) == (f"cannot serve on 127.0.0.1:{port}: the port is in use "
                                  "(another program, or another run's --serve); choose "
                                  "another port, or 0 for any free one")
    finally:
        first.close()


@pytest.mark.parametrize("header, ok", [
    ("127.0.0.1:8000", True), ("localhost:9000", True), ("[::1]:8000", True),
    ("LOCALHOST", True), ("evil.example:8000", False), (None, False)])
def test_a_loopback_server_answers_loopback_names_only(header, ok):
    assert addresses.host_allowed(header, addresses.Address("127.0.0.1", 8000)) is ok
    assert addresses.host_allowed(header, addresses.Address("0.0.0.0", 8000))


# --------------------------------------------------------------------------- Live


def test_images_leave_the_run_only_while_watched_and_at_most_every_interval(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])  # the run's clock, stepped
    live = Live(kind="stylize", title="t", min_interval=0.1, image_share=1.0)
    pulled = []

    def feed(steps):
        for step in steps:
            live.update(step, 100, {"total": 1.0},
                        images=lambda step=step: pulled.append(step) or image(0.5))
            clock[0] += 0.04  # a step every 40 ms

    feed(range(5))
    assert pulled == []  # nobody watching: the run never copies an image
    with live.watch():
        feed(range(5, 20))
    feed(range(20, 25))
    assert pulled == [5, 8, 11, 14, 17]  # every third step: at least 100 ms apart


def test_a_slow_image_copy_is_taken_less_often():
    """The copy may take at most image_share of the run's time: one that took 40 ms waits
    2 s for the next."""
    live = Live(kind="stylize", title="t", min_interval=0.0, image_share=0.02)
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.04)
        return image(0.2)

    with live.watch():
        for step in range(20):
            live.update(step, 20, {"total": 1.0}, images=slow)
    assert len(calls) == 1


def test_snapshot_sends_what_changed():
    live = Live(kind="stylize", title="a run", settings={"x": 1})
    first, cursor = live.snapshot()
    assert first["reset"] and first["title"] == "a run" and first["points"] == []
    live.update(10, 100, {"total": 3.0, "style": 2.0}, stage=0, stages=2, shape=(8, 12),
                evaluations=11)
    live.update(20, 100, {"total": np.float32(2.0), "style": float("nan")})
    delta, cursor = live.snapshot(cursor)
    assert [p[1:] for p in delta["points"]] == [[10.0, 3.0, 2.0], [20.0, 2.0, None]]
    assert delta["series"] == ["total", "style"] and "reset" not in delta
    assert delta["step"] == 20 and delta["status"] == "running"
    assert live.snapshot(cursor)[0] == {"run": live.id}  # nothing new
    live.set_images(image(0.25))
    delta, cursor = live.snapshot(cursor)
    assert delta["image"]["version"] == 1 and delta["image"]["count"] == 1
    json.dumps(delta, allow_nan=False)  # what the stream sends


def test_a_long_history_is_thinned_and_sent_again():
    live = Live(kind="stylize", title="t")
    _, cursor = live.snapshot()
    for step in range(MAX_POINTS + 1):
        live.update(step, None, {"total": 1.0 + step})
    data, _ = live.snapshot(cursor)
    assert data["reset"] and len(data["points"]) <= MAX_POINTS // 2 + 2
    assert data["points"][-1][1] == MAX_POINTS  # the newest point is kept


def test_stop_is_asked_once_and_not_after_the_end():
    live = Live(kind="stylize", title="t")
    heard = []
    live.on_stop(lambda: heard.append(1))
    assert live.request_stop() and live.stopped
    assert not live.request_stop()
    assert heard == [1]
    done = Live(kind="stylize", title="t")
    done.finish("done", exit_code=0)
    assert not done.request_stop() and not done.stopped


def test_png_of_a_sweep_cell_and_its_sheet():
    cells = Cells(("a", "b"), ("",), ("a", "b"))
    live = Live(kind="sweep", title="t", cells=cells, settings={"k": "v"},
                compose=lambda ims: np.concatenate(list(ims), axis=1))
    assert live.png() is None
    live.set_images(np.stack([image(0.0), image(1.0)]), step=7)
    _, one = live.png(1)
    _, sheet = live.png("sheet")
    assert np.asarray(Image.open(io.BytesIO(one))).min() == 255
    with Image.open(io.BytesIO(sheet)) as im:
        assert im.size == (24, 8)
        assert json.loads(im.text["jaxstyle"]) == {"k": "v", "step": 7}
    assert live.png(2) is None


# --------------------------------------------------------------------------- routes


def test_routes_state_events_image_download_stop():
    live = Live(kind="stylize", title="routes", settings={"content": "c.png"},
                download_name="out.png")

    async def main():
        async with TestClient(TestServer(live_app(live, LOCAL))) as client:
            page = await client.get("/")
            assert page.status == 200 and "live.js" in await page.text()
            assert "default-src 'self'" in page.headers["Content-Security-Policy"]
            assert (await client.get("/image")).status == 404
            events = await client.get("/events")
            assert live.watchers == 1
            got = await read_events(events, lambda e: any(n == "live" for n, _ in e))
            assert got[0][1]["title"] == "routes"

            def feed():  # the run's thread
                for step in range(1, 4):
                    live.update(step, 3, {"total": 1.0 / step},
                                images=lambda: image(0.1), shape=(8, 12))
                    time.sleep(0.12)
            await asyncio.get_running_loop().run_in_executor(None, feed)
            got = await read_events(events, lambda e: sum(
                len(d.get("points", [])) for n, d in e if n == "live") >= 3 and any(
                "image" in d for _, d in e))
            version = next(d["image"]["version"] for _, d in got if "image" in d)
            reply = await client.get(f"/image?v={version}")
            assert reply.status == 200 and reply.content_type == "image/png"
            assert (await client.get("/image?cell=x")).status == 400
            download = await client.get("/download")
            assert download.headers["Content-Disposition"] == 'attachment; filename="out.png"'
            assert (await client.post("/stop")).status == 403  # the page's header is needed
            stop = await client.post("/stop", headers=POST)
            assert (await stop.json()) == {"stopping": True} and live.stopped
            state = await (await client.get("/state")).json()
            assert state["status"] == "stopping" and state["step"] == 3
            events.close()
            await asyncio.sleep(0.3)
            assert live.watchers == 0
            foreign = await client.get("/state", headers={"Host": "evil.example"})
            assert foreign.status == 403
    run(main())


# --------------------------------------------------------------------------- the thread


def started(live: Live) -> Server:
    sock = addresses.bind(LOCAL)
    return Server(live_app(live, LOCAL), sock).start()


def raw_events(port: int) -> socket.socket:
    """A client that asks for the event stream and then reads nothing."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


def test_a_stalled_or_vanished_client_never_holds_up_the_run():
    live = Live(kind="stylize", title="t", min_interval=0.0)
    server = started(live)
    port = addresses.bound_port(server.sock)
    try:
        stalled = raw_events(port)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        gone = raw_events(port)
        deadline = time.monotonic() + 5
        while live.watchers < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        gone.close()
        big = np.random.default_rng(0).random((256, 256, 3)).astype(np.float32)
        slowest = 0.0
        for step in range(300):  # ~MBs of events the stalled client never reads
            t = time.perf_counter()
            live.update(step, 300, {"total": float(step + 1), "style": 1.0},
                        images=lambda: big)
            slowest = max(slowest, time.perf_counter() - t)
        assert slowest < 1.0, slowest  # one image copy, never a wait on a client
        deadline = time.monotonic() + 5
        while live.watchers != 1:  # the vanished one is dropped, the stalled one stays
            assert time.monotonic() < deadline, live.watchers
            time.sleep(0.05)
        stalled.close()
    finally:
        t = time.monotonic()
        server.close()
        assert time.monotonic() - t < 5


def test_two_pages_at_once_both_follow_the_run():
    live = Live(kind="stylize", title="two")
    server = started(live)
    port = addresses.bound_port(server.sock)

    async def page(results):
        import aiohttp

        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{port}/events") as response:
            got = await read_events(response, lambda e: any(
                d.get("status") == "done" for n, d in e if n == "live"))
            results.append(got)

    async def main():
        results = []
        pages = [asyncio.create_task(page(results)) for _ in range(2)]
        while live.watchers < 2:
            await asyncio.sleep(0.01)

        def feed():
            for step in range(5):
                live.update(step, 5, {"total": 1.0})
                time.sleep(0.02)
            live.finish("done", exit_code=0, images=image(0.3))
        threading.Thread(target=feed).start()
        await asyncio.gather(*pages)
        return results

    try:
        results = run(main())
    finally:
        server.close()
    for got in results:
        steps = [p[1] for n, d in got if n == "live" for p in d.get("points", [])]
        assert steps == [0, 1, 2, 3, 4]
        assert any("image" in d for _, d in got)


def test_news_reach_the_page_at_once():
    """Each update wakes the page's stream (not its one-second heartbeat check)."""
    live = Live(kind="stylize", title="t")
    server = started(live)
    port = addresses.bound_port(server.sock)

    async def main():
        import aiohttp

        delays = []
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{port}/events") as response:
            await read_events(response, lambda e: len(e) > 0)
            for step in range(5):
                await asyncio.sleep(0.25)
                t = time.monotonic()
                live.update(step, 5, {"total": 1.0})
                await read_events(response, lambda e: any("points" in d for _, d in e))
                delays.append(time.monotonic() - t)
        return delays

    try:
        delays = run(main())
    finally:
        server.close()
    assert sorted(delays)[2] < 0.5, delays  # without the poke: about 0.85 s
