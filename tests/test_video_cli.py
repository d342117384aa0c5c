"""`jaxstyle video` on the command line: bad inputs (one line, exit 1 or 2, nothing left
behind, refused before any work), a run with each engine, Ctrl-C."""

import json
import signal
import time

import av
import numpy as np
import pytest
from conftest import EXAMPLES, one_line_error, run_python
from references.video_files import audio_packets, panning_frames, write_video

import jaxstyle
from jaxstyle import cli

STYLE = str(EXAMPLES / "hubble_deep_field.jpg")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    write_video(path, panning_frames(jaxstyle.load_image(EXAMPLES / "chelsea.jpg"), 6, 36, 48))
    return path


@pytest.fixture(scope="module")
def vgg(tmp_path_factory, weights):  # the synthetic VGG19 as a file, for --weights
    path = tmp_path_factory.mktemp("vgg") / "vgg.npz"
    jaxstyle.save_weights(weights, path)
    return path


def _bad(capsys, argv, status, *words):
    t0 = time.perf_counter()
    assert cli.main(["video", *map(str, argv)]) == status
    line = one_line_error(capsys)
    assert all(w in line for w in words), line
    assert time.perf_counter() - t0 < 10  # refused before any work
    return line


def test_bad_inputs_get_one_line_and_leave_nothing(clip, tmp_path, capsys):
    (tmp_path / "text.mp4").write_text("hello")
    write_video(tmp_path / "sound.m4a", np.zeros((4, 8, 8, 3), np.uint8), video=False)
    out = tmp_path / "out.mp4"
    _bad(capsys, [tmp_path / "text.mp4", STYLE, "-o", out], 1, "not a video")
    _bad(capsys, [tmp_path / "sound.m4a", STYLE, "-o", out], 1, "no video stream")
    _bad(capsys, [clip, STYLE, "-o", tmp_path / "missing" / "out.mp4"], 1, "does not exist")
    _bad(capsys, [clip, STYLE, "-o", clip], 2, "would overwrite the input")
    _bad(capsys, [tmp_path / "%05d.png", STYLE, "-o", out], 1, "matches no file")
    _bad(capsys, [clip, STYLE, "-o", out, "--start", "60"], 2, "--start", "past the end")
    _bad(capsys, [clip, STYLE, "-o", out, "--image-size", "100000"], 2, "--image-size")
    _bad(capsys, [clip, STYLE, "-o", out, "--image-size", "8000"], 2, "--image-size", "GiB")
    _bad(capsys, [clip, STYLE, "-o", out, "--image-size", "8000", "--engine", "adain"], 2,
         "--image-size", "GiB")
    _bad(capsys, [clip, STYLE, "-o", tmp_path / "out.avi"], 2, "--output", ".mp4")
    _bad(capsys, [clip, STYLE, "-o", out, "--temporal-frames", "2,4"], 2, "--temporal-frames")
    _bad(capsys, [clip, STYLE, "-o", out, "--engine", "adain", "--weights", "x.npz"], 2,
         "--weights")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sound.m4a", "text.mp4"]


def test_adain_run_with_json_twice(clip, arbitrary_files, tmp_path):
    out, summary = tmp_path / "a.mp4", tmp_path / "a.json"
    argv = ["video", str(clip), STYLE, "-o", str(out), "--engine", "adain", "--vgg",
            str(arbitrary_files["vgg_normalised.pth"]), "--decoder",
            str(arbitrary_files["decoder.pth"]), "--image-size", "32", "--json", str(summary),
            "--temporal-weight", "0.5", "--quiet"]
    assert cli.main(argv) == 0
    doc = json.loads(summary.read_text())
    assert doc["status"] == "completed" and doc["engine"] == "adain"
    assert doc["frames"] == 6 and doc["frame_rate"] == "30000/1001" and doc["size"] == [32, 24]
    assert doc["warping_error"] > 0 and doc["input_warping_error"] > 0
    assert doc["temporal_weight"] == 0.5 and doc["flow"] == "dis-fast"
    assert {"flow_s", "stylize_s", "encode_s", "total_s"} <= set(doc["timings"])
    with av.open(str(out)) as c:
        assert str(c.streams.video[0].average_rate) == "30000/1001"
        assert len(list(c.decode(video=0))) == 6
    assert audio_packets(out) == audio_packets(clip)
    assert cli.main(argv) == 0  # the same command twice: replaced atomically
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.mp4"]


def test_ctrl_c_writes_a_playable_video_and_exits_130(vgg, tmp_path):
    clip = tmp_path / "long.mp4"
    write_video(clip, panning_frames(jaxstyle.load_image(EXAMPLES / "chelsea.jpg"), 60, 32, 32,
                                     step=(1, 1)))
    out, summary = tmp_path / "out.mp4", tmp_path / "out.json"
    p = run_python("import sys; from jaxstyle.cli import main; sys.exit(main(sys.argv[1:]))",
                   "video", clip, STYLE, "-o", out, "--weights", vgg, "--image-size", "32",
                   "--iterations", "2", "--frame-iterations", "2", "--scales", "none",
                   "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1",
                   "--optimizer", "adam", "--json", summary)
    line = ""
    while not line.startswith("frame 10/"):  # progress lines: every 10 frames
        line = p.stderr.readline()
        assert line or p.poll() is None, p.stderr.read()
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "interrupted" in err
    with av.open(str(out)) as c:
        done = len(list(c.decode(video=0)))
    assert 10 <= done < 60
    doc = json.loads(summary.read_text())  # the Gatys engine's summary, as far as it went
    assert doc["status"] == "interrupted" and doc["frames"] == done
    assert doc["engine"] == "gatys" and doc["frame_iterations"] == 2
    assert len(doc["per_frame"]["warping_error"]) == done - 1


def test_the_live_page_shows_each_frame_and_stop_ends_the_video(clip, arbitrary_files,
                                                                tmp_path, monkeypatch):
    """--serve: the page gets every frame (its E_warp plotted, the frame as the image); Stop
    pressed on it after the third frame ends the run as Ctrl-C does: a playable video of the
    frames done, exit 130, the page's final state saying so."""
    pytest.importorskip("aiohttp")
    from jaxstyle.cli import live
    from jaxstyle.web.live import Live

    views, update = [], Live.update

    class Recorded(live.View):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            views.append(self)

    def pressing_stop(self, step, *args, **kwargs):
        update(self, step, *args, **kwargs)
        if step == 3:
            self.request_stop()

    monkeypatch.setattr(live, "View", Recorded)
    monkeypatch.setattr(Live, "update", pressing_stop)
    out = tmp_path / "live.mp4"
    argv = ["video", str(clip), STYLE, "-o", str(out), "--engine", "adain", "--vgg",
            str(arbitrary_files["vgg_normalised.pth"]), "--decoder",
            str(arbitrary_files["decoder.pth"]), "--image-size", "32", "--batch-size", "1",
            "--serve", "0", "--quiet"]
    assert cli.main(argv) == 130
    (view,) = views
    state, _ = view.live.snapshot()
    assert state["kind"] == "video" and state["status"] == "interrupted"
    assert state["exit_code"] == 130 and state["outputs"] == [str(out)]
    assert state["series"] == ["E_warp"] and [p[1] for p in state["points"]] == [1, 2, 3]
    assert all(p[2] > 0 for p in state["points"][1:])  # no E_warp for the first frame
    assert state["settings"]["engine"] == "adain" and state["settings"]["size"] == "32x24"
    version, png = view.live.png()
    assert png.startswith(b"\x89PNG")
    with av.open(str(out)) as c:
        assert len(list(c.decode(video=0))) == 3
