"""`--serve` and `jaxstyle serve` on the command line: the options, and the errors that
come before any work (a busy port, a bad address)."""

from __future__ import annotations

import socket

import pytest
from conftest import one_line_error

from jaxstyle import cli
from jaxstyle.cli import train

pytest.importorskip("aiohttp")


@pytest.fixture
def busy_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.parametrize("command", [[], ["video"], ["train-sanet"], ["train-adain"]])
def test_long_commands_have_serve_and_open_browser(command, capsys):
    assert cli.main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--serve [HOST:]PORT" in out and "--open-browser" in out


def test_serve_help(capsys):
    assert cli.main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("[HOST:]PORT", "--model", "--weights", "--images", "--out"):
        assert option in out


def test_a_bad_address_is_a_usage_error(capsys, tmp_path):
    status = cli.main(["c.png", "s.png", "-o", str(tmp_path / "o.png"), "--serve", "host:x"])
    assert status == 2
    assert "--serve" in one_line_error(capsys)


def test_a_busy_port_fails_before_any_work(busy_port, tmp_path, capsys):
    """One line, exit 1, and nothing read: the images and weights named do not exist."""
    out = tmp_path / "o.png"
    status = cli.main([str(tmp_path / "missing.png"), "s.png", "-o", str(out), "--weights",
                       str(tmp_path / "missing.npz"), "--serve", str(busy_port)])
    assert status == 1
    assert one_line_error(capsys) == (
        f"jaxstyle: error: --serve: cannot serve on 127.0.0.1:{busy_port}: the port is in use "
        "(another program, or another run's --serve); choose another port, or 0 for any "
        "free one")
    assert not out.exists()


def test_serve_on_a_busy_port(busy_port, tmp_path, capsys):
    status = cli.main(["serve", str(busy_port), "--out", str(tmp_path / "srv"),
                       "--weights", str(tmp_path / "missing.npz")])
    assert status == 1
    assert "the port is in use" in one_line_error(capsys)


def test_serve_with_a_missing_images_folder(tmp_path, capsys):
    status = cli.main(["serve", "0", "--out", str(tmp_path / "srv"), "--images",
                       str(tmp_path / "nowhere")])
    assert status == 1
    assert "--images" in one_line_error(capsys)


def test_the_newest_sample_sheet_of_a_training_run(tmp_path):
    for step in (4, 8):
        (tmp_path / f"samples_{step}.png").write_bytes(b"x")
    assert train._samples(tmp_path, 9, 4) == tmp_path / "samples_8.png"
    # the sheet of step 12 is written after step 12's progress call: the previous one
    assert train._samples(tmp_path, 12, 4) == tmp_path / "samples_8.png"
    assert train._samples(tmp_path, 3, 4) is None
    assert train._samples(tmp_path, 9, 0) is None
    (tmp_path / "samples_10.png").write_bytes(b"x")
    assert train._samples(tmp_path, 10, 4, final=True) == tmp_path / "samples_10.png"


def test_a_view_is_two_lines_for_any_command(capsys):
    """The seam another long command (jaxstyle video) uses: nothing without --serve; with
    it, a page up for the `with` block, fed by update(), stopped from the page."""
    import argparse
    import json
    import urllib.request

    import numpy as np

    from jaxstyle.cli import live
    from jaxstyle.web.address import Address
    from jaxstyle.web.live import Cells

    idle = live.View(argparse.Namespace(serve=None, open_browser=False), kind="x", title="t")
    with idle:
        idle.update(1, 2, {"total": 1.0}, images=lambda: 1 / 0)  # never called
        assert not idle.stopped
    args = argparse.Namespace(serve=Address("127.0.0.1", 0), open_browser=False, quiet=True)
    view = live.View(args, kind="video", title="in.mp4 -> out.mp4")
    with view:
        assert capsys.readouterr().err == f"jaxstyle: watch the run at {view.url}\n"
        view.describe(settings={"style": "s.png"},
                      cells=Cells(("output", "input"), ("",), ("output", "input")))
        view.update(3, 10, {"total": 2.0})
        view.live.set_images(np.zeros((2, 4, 4, 3), np.float32))
        with urllib.request.urlopen(view.url + "state") as reply:
            state = json.load(reply)
        assert state["step"] == 3 and state["cells"]["labels"] == ["output", "input"]
        request = urllib.request.Request(view.url + "stop", method="POST",
                                         headers={"X-Jaxstyle": "1"})
        urllib.request.urlopen(request).close()
        assert view.stopped
        view.finish("interrupted", exit_code=130)
    assert "Stop pressed on the page" not in capsys.readouterr().err  # quiet
