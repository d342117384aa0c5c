"""`jaxstyle serve`'s routes through aiohttp's test client, with a real runner (random
weights, 32 px, shallow layers, Adam) working the queue in a thread: uploads good and bad,
the preview, runs, the queue, stopping, the gallery."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import struct
import threading
import time
import zlib

import jax
import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

pytest.importorskip("aiohttp")
from aiohttp import FormData  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from jaxstyle.arbitrary import random_params  # noqa: E402
from jaxstyle.config import StyleConfig  # noqa: E402
from jaxstyle.image import save_image  # noqa: E402
from jaxstyle.web import device as device_info  # noqa: E402
from jaxstyle.web.address import Address  # noqa: E402
from jaxstyle.web.app import Hub, serve_app  # noqa: E402
from jaxstyle.web.gallery import Gallery  # noqa: E402
from jaxstyle.web.inputs import Inputs  # noqa: E402
from jaxstyle.web.jobs import Queue, Runner  # noqa: E402
from jaxstyle.web.live import Audience  # noqa: E402

POST = {"X-Jaxstyle": "1"}
BASE = StyleConfig(image_size=32, optimizer="adam", iterations=3, scales=None,
                   content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header says width x height (its data is a few bytes): what a
    decompression bomb looks like before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def png(seed: int, h: int = 40, w: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((smooth_image(seed, h, w) * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def hub(tmp_path_factory, weights):
    root = tmp_path_factory.mktemp("serve")
    folder = root / "images"
    folder.mkdir()
    save_image(folder / "a.png", smooth_image(1, 40, 48))
    (folder / "broken.png").write_bytes(png(2)[:300])
    devices = jax.devices()[:1]
    audience, stop_all = Audience(), threading.Event()
    inputs, gallery = Inputs(root / "out" / "uploads", folder), Gallery(root / "out")
    runner = Runner(weights=weights, model=random_params("adain"), inputs=inputs,
                    gallery=gallery, audience=audience, device=device_info.describe(devices),
                    devices=devices, stop_all=stop_all)
    hub = Hub(inputs, gallery, Queue(), runner, audience, BASE)
    worker = Worker(hub)
    yield hub
    worker.close()
    stop_all.set()


class Worker:
    """The serve command's main loop, in a thread; `paused` holds it before the next job."""

    def __init__(self, hub: Hub) -> None:
        self.hub, self.closed, self.paused = hub, False, threading.Event()
        self.idle = threading.Event()
        hub.worker = self
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        while not self.closed:
            if self.paused.is_set():
                self.idle.set()
                time.sleep(0.02)
                continue
            self.idle.clear()
            job = self.hub.queue.take(0.05)
            if job is not None:
                self.hub.runner.run(job)
                self.hub.queue.done(job)

    def pause(self) -> None:
        """Hold the worker before its next job (returns once it holds)."""
        self.paused.set()
        assert self.idle.wait(120)

    def close(self) -> None:
        self.closed = True
        self.thread.join(60)


def run(hub: Hub, test) -> None:
    async def main():
        app = serve_app(hub, Address("127.0.0.1", 0), hub.runner.devices)
        async with TestClient(TestServer(app)) as client:
            await test(client)
    asyncio.run(asyncio.wait_for(main(), 120))


async def upload(client, data: bytes, name: str = "x.png"):
    form = FormData()
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    return await client.post("/upload", data=form, headers=POST)


async def post(client, path: str, body) -> tuple[int, dict | bytes]:
    reply = await client.post(path, json=body, headers=POST)
    if reply.content_type == "application/json":
        return reply.status, await reply.json()
    return reply.status, await reply.read()


async def until_done(hub: Hub, job: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = hub.queue.state()
        found = [j for j in state["recent"] if j["id"] == job]
        if found:
            return found[0]
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("data, name, problem", [
    (b"not an image at all", "notes.txt", "notes.txt: not an image file"),
    (png(3)[:200], "cut.png", "cut.png: truncated"),
    # Pillow itself refuses over twice its limit, in the header: the command line's words
    (png_header_only(20000, 20000), "bomb.png", "bomb.png: over Pillow's decompression-bomb "
                                                "limit"),
    (png_header_only(10000, 10000), "large.png", "large.png: image is 10000x10000 = "
                                                 "100000000 pixels, over the limit"),
    (b"", "empty.png", "empty.png: empty file"),
    (png(4, 200, 200), "big.png", "big.png: larger than the 0 MiB an upload may be")],
    ids=["text", "truncated", "20000x20000", "10000x10000", "empty", "too-many-bytes"])
def test_bad_uploads_get_one_line_and_leave_nothing(hub, data, name, problem):
    async def test(client):
        limit = hub.inputs.max_bytes
        hub.inputs.max_bytes = 2000 if name == "big.png" else limit
        try:
            reply = await upload(client, data, name)
        finally:
            hub.inputs.max_bytes = limit
        assert reply.status == 400
        message = (await reply.json())["error"]
        assert message.startswith(problem), message
        assert "\n" not in message
        assert (await client.get("/setup")).status == 200  # the server goes on
        assert not [p for p in hub.inputs.folder.glob("upload_*")
                    if p.name not in hub.kept_uploads]
    hub.kept_uploads = getattr(hub, "kept_uploads", set())
    run(hub, test)


def test_upload_requests_that_are_not_uploads(hub):
    async def test(client):
        assert (await client.post("/upload", data=b"x", headers=POST)).status == 400
        empty = FormData(default_to_multipart=True)
        empty.add_field("note", "no file here")
        reply = await client.post("/upload", data=empty, headers=POST)
        assert (await reply.json())["error"] == "no file in the upload"
        no_header = await client.post("/upload", data=b"x")
        assert no_header.status == 403
    run(hub, test)


def test_a_client_that_leaves_mid_upload(hub):
    async def test(client):
        before = set(hub.inputs.folder.glob("upload_*")) if hub.inputs.folder.exists() else set()
        sock = socket.create_connection(("127.0.0.1", client.server.port))
        body = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                b"\r\n" + png(5)[:100])
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Jaxstyle: 1\r\n"
                     b"Content-Type: multipart/form-data; boundary=B\r\n"
                     b"Content-Length: 100000\r\n\r\n" + body)
        await asyncio.sleep(0.3)
        sock.close()
        await asyncio.sleep(0.3)
        assert (await client.get("/setup")).status == 200
        assert set(hub.inputs.folder.glob("upload_*")) == before
    run(hub, test)


def test_upload_preview_refine_gallery_download(hub):
    async def test(client):
        setup = await (await client.get("/setup")).json()
        assert setup["model"] == "adain" and setup["defaults"]["image_size"] == 32
        assert [e["name"] for e in setup["folder"]] == ["a.png", "broken.png"]
        broken = await client.get("/input/f2/thumb")
        assert broken.status == 400
        assert (await broken.json())["error"].startswith("broken.png: truncated")
        reply = await upload(client, png(6), "cat.png")
        content = await reply.json()
        hub.kept_uploads.add(f"upload_{content['id'][1:]}")
        assert content["name"] == "cat.png" and (content["width"], content["height"]) == (48, 40)
        thumb = await client.get(f"/input/{content['id']}/thumb")
        assert thumb.content_type == "image/png"
        request = {"content": content["id"], "styles": ["f1"], "settings": {"alpha": 0.5}}
        status, body = await post(client, "/preview", request)
        assert status == 200
        assert Image.open(io.BytesIO(body)).size == (32, 27)
        status, body = await post(client, "/run", {**request, "mode": "refine"})
        assert status == 200, body
        job = await until_done(hub, body["job"])
        assert job["status"] == "done", job
        items = await (await client.get("/gallery")).json()
        item = next(i for i in items if i["id"] == job["item"])
        download = await client.get(f"/gallery/{item['id']}/0?download=1")
        assert download.headers["Content-Disposition"] == \
            f'attachment; filename="{item["files"][0]}"'
        with Image.open(io.BytesIO(await download.read())) as im:
            settings = json.loads(im.text["jaxstyle"])
            assert im.size == (32, 27)
        assert settings["content"] == "cat.png" and settings["styles"] == ["a.png"]
        assert settings["init"] == "adain (alpha 0.5)"
        assert settings["config"]["iterations"] == 3
        assert (await client.get(f"/gallery/{item['id']}/0/thumb")).status == 200
        assert (await client.get(f"/gallery/{item['id']}/5")).status == 404
    run(hub, test)


@pytest.mark.parametrize("change, field", [
    ({"settings": {"style_weight": -1}}, "style_weight"),
    ({"settings": {"iterations": 2.5}}, "iterations"),
    ({"settings": {"image_size": 1}}, "image_size"),
    ({"settings": {"style_scale": 0.01}}, "style_scale"),
    ({"settings": {"optimizer": "sgd"}}, "optimizer"),
    ({"settings": {"alpha": 2}}, "alpha"),
    ({"settings": {"colour": 1}}, "colour"),
    ({"content": "u999"}, "content"),
    ({"styles": []}, "styles"),
    ({"mode": "paint"}, "mode")])
def test_bad_settings_name_their_control(hub, change, field):
    async def test(client):
        request = {"mode": "refine", "content": "f1", "styles": ["f1"], "settings": {}}
        status, body = await post(client, "/run", {**request, **change})
        assert status == 400 and body["field"] == field, body
        assert len(body["error"].splitlines()) == 1
    run(hub, test)


def test_the_queue_says_where_a_run_waits_and_a_run_stops_with_its_result(hub):
    async def test(client):
        events = await client.get("/events")
        hub.worker.pause()
        request = {"mode": "refine", "content": "f1", "styles": ["f1"]}
        status, first = await post(client, "/run", {**request, "settings": {
            "iterations": 100000}})
        status, second = await post(client, "/run", request)
        status, third = await post(client, "/run", request)
        assert (first["ahead"], second["ahead"], third["ahead"]) == (0, 1, 2)
        status, body = await post(client, "/cancel", {"job": third["job"]})
        assert body == {"cancelled": True}
        hub.worker.paused.clear()
        deadline = time.monotonic() + 60
        queue = None
        while True:  # the page hears: the long run on the device, the second waiting
            line = (await asyncio.wait_for(events.content.readline(), 30)).decode()
            if line.startswith("data: ") and '"waiting"' in line:
                queue = json.loads(line[6:])
                if queue["running"] and queue["running"]["id"] == first["job"]:
                    break
            assert time.monotonic() < deadline
        assert [j["id"] for j in queue["waiting"]] == [second["job"]]
        while hub.runner.current is None or hub.runner.current.snapshot()[0]["step"] < 2:
            await asyncio.sleep(0.05)
        assert (await post(client, "/stop", {}))[1] == {"stopping": True}
        stopped = await until_done(hub, first["job"])
        assert stopped["status"] == "interrupted" and stopped["item"] is not None
        assert (await until_done(hub, second["job"]))["status"] == "done"
        events.close()
    run(hub, test)


def test_a_sweep_writes_its_sheet_and_each_setting(hub):
    async def test(client):
        status, body = await post(client, "/run", {
            "mode": "sweep", "content": "f1", "styles": ["f1"],
            "settings": {"style_weight": 100}})
        job = await until_done(hub, body["job"])
        assert job["status"] == "done", job
        item = next(i for i in await (await client.get("/gallery")).json()
                    if i["id"] == job["item"])
        assert item["kind"] == "sweep" and len(item["files"]) == 4
        weights = []
        for i in (1, 2, 3):
            data = await (await client.get(f"/gallery/{item['id']}/{i}")).read()
            with Image.open(io.BytesIO(data)) as im:
                weights.append(json.loads(im.text["jaxstyle"])["config"]["style_weight"])
        assert weights == pytest.approx([10, 100, 1000])
    run(hub, test)


def test_uploads_never_overwrite_an_earlier_servers(tmp_path):
    (tmp_path / "upload_7").write_bytes(b"an earlier server's upload")

    class Part:
        filename = "../../etc/a.png"
        chunks = [png(7), b""]

        async def read_chunk(self, size):
            return self.chunks.pop(0)

    class Reader:
        async def next(self):
            return Part()

    entry = asyncio.run(Inputs(tmp_path).receive(Reader()))
    assert (entry.id, entry.name, entry.path) == ("u8", "a.png", tmp_path / "upload_8")
    assert (tmp_path / "upload_7").read_bytes() == b"an earlier server's upload"


def test_masks_are_checked_before_the_run_queues(hub):
    async def test(client):
        request = {"mode": "refine", "content": "f1", "styles": ["f1", "f1"]}
        for masks, problem in (([None], "give one mask (or null) per style image"),
                               (["u999", None], "no image 'u999' on this server")):
            status, body = await post(client, "/run", {**request, "masks": masks})
            assert status == 400 and body["error"].startswith(problem), body
            assert body["field"] == "masks"
        hub.worker.pause()
        try:
            status, body = await post(client, "/run", {**request, "masks": ["f1", None]})
            assert status == 200
            assert hub.queue.cancel(body["job"])
        finally:
            hub.worker.paused.clear()
    run(hub, test)
