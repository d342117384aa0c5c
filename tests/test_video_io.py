"""Frames in and out (jaxstyle.video.source, .sink) and the streaming pipeline, on synthetic
files written by tests/references/video_files.py."""

from fractions import Fraction

import av
import numpy as np
import pytest
from conftest import EXAMPLES
from PIL import Image
from references.video_files import audio_packets, panning_frames, write_video

import jaxstyle
from jaxstyle.files import InputError, SettingError
from jaxstyle.video import open_sink, open_source, stylize_file, stylize_video

PHOTO = jaxstyle.load_image(EXAMPLES / "chelsea.jpg")


class Identity:
    """An engine that returns each frame as it is (the pipeline's plumbing alone)."""

    name = "adain"

    def run(self, items, styles, distances, temporal_weight, stop):
        import jax.numpy as jnp

        for item in items:
            yield item, jnp.asarray(item.pixels, jnp.float32) / 255
            if stop():
                return


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    frames = panning_frames(PHOTO, 9, 33, 47)
    write_video(path, frames, rotation=90)
    return path, frames


def _stream(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        return s.average_rate, s.time_base, [f.pts for f in frames], frames


def test_round_trip_keeps_count_rate_timestamps_rotation_and_audio(clip, tmp_path):
    path, frames = clip
    src = open_source(path)
    assert src.info.rate == Fraction(30000, 1001) and src.info.size == (47, 33)
    out = tmp_path / "out.mp4"
    with open_sink(out, src.info) as sink:
        got = [f.pixels for f in src.frames()]
        for f, pixels in zip(src.frames(), got, strict=True):
            sink.write(pixels, f.pts)
    assert len(got) == 9 and got[0].shape == (33, 47, 3)
    assert np.abs(got[4].astype(int) - frames[4]).mean() < 3  # H.264 at crf 10
    rate, base, pts, decoded = _stream(out)
    assert rate == Fraction(30000, 1001) and len(decoded) == 9
    assert pts == _stream(path)[2]
    assert (decoded[0].width, decoded[0].height) == (48, 34)  # padded for 4:2:0, and said
    assert "padded 47x33 to 48x34" in sink.notes[0]
    assert decoded[0].rotation == 90
    assert audio_packets(out) == audio_packets(path)  # bit for bit
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_a_folder_output_keeps_the_odd_size_and_a_pattern_reads_it_back(clip, tmp_path):
    path, frames = clip
    out = tmp_path / "frames"
    result = stylize_file(path, out, PHOTO, engine=Identity(), temporal_weight=0.0)
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{i:05d}.png" for i in range(9)] and result.count == 9
    with Image.open(out / "00003.png") as im:
        assert im.size == (47, 33)
    back = open_source(out / "%05d.png")
    assert back.info.frames == 9 and len(list(back.frames())) == 9
    # The same command again replaces the frames.
    stylize_file(path, out, PHOTO, engine=Identity(), temporal_weight=0.0, every=2)
    assert len(list(out.iterdir())) == 5


def test_start_duration_every(clip):
    path, _ = clip
    src = open_source(path, start=3 / (30000 / 1001), duration=4 / (30000 / 1001), every=2)
    frames = list(src.frames())
    assert len(frames) == 2 and src.info.rate == Fraction(15000, 1001)
    assert [f.pts for f in frames] == [0, 2002]
    with pytest.raises(SettingError, match="past the end") as err:
        open_source(path, start=60)
    assert err.value.name == "start"


def test_bad_inputs(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(InputError, match="not a video"):
        open_source(tmp_path / "notes.mp4")
    write_video(tmp_path / "sound.mp4", np.zeros((5, 8, 8, 3), np.uint8), video=False)
    with pytest.raises(InputError, match="no video stream"):
        open_source(tmp_path / "sound.mp4")
    with pytest.raises(InputError, match="matches no file"):
        open_source(tmp_path / "%05d.png")


def test_identity_through_the_pipeline_has_the_input_warping_error(clip):
    _, frames = clip
    r = stylize_video(frames, PHOTO, engine=Identity(), temporal_weight=0.0)
    assert r.count == 9 and len(r.per_frame["warping_error"]) == 8
    np.testing.assert_allclose(r.per_frame["warping_error"],
                               r.per_frame["input_warping_error"], rtol=1e-5, atol=1e-9)
    unwarped = np.mean((frames[1:].astype(float) - frames[:-1]) ** 2) / 255**2
    assert r.warping_error < 0.05 * unwarped


def test_stopping_writes_a_playable_video_of_the_frames_done(clip, tmp_path):
    path, _ = clip
    out = tmp_path / "stopped.mkv"
    r = stylize_file(path, out, PHOTO, engine=Identity(), temporal_weight=0.0,
                     callback=lambda p: p.index < 3)
    assert r.stopped == "interrupted" and r.count == 4
    assert len(_stream(out)[3]) == 4
    assert audio_packets(out) and len(audio_packets(out)) < len(audio_packets(path))


def test_feed_forward_engine_batches_and_blends(adain_params):
    from jaxstyle.video import FeedForwardEngine

    frames = panning_frames(PHOTO, 5, 32, 40)
    engine = FeedForwardEngine(adain_params, batch_size=5)  # one program, as stylize_adain's
    raw = stylize_video(frames, PHOTO[:64, :64], engine=engine, temporal_weight=0.0)
    from jaxstyle import arbitrary

    np.testing.assert_allclose(raw.frames, arbitrary.stylize_adain(adain_params, frames,
                                                                   PHOTO[:64, :64]), atol=2e-5)
    blended = stylize_video(frames, PHOTO[:64, :64], engine=engine, temporal_weight=0.8)
    np.testing.assert_allclose(blended.frames[0], raw.frames[0], atol=1e-6)
    assert not np.allclose(blended.frames[2], raw.frames[2])
    with pytest.raises(SettingError, match="in \\[0, 1\\]"):
        stylize_video(frames, PHOTO[:64, :64], engine=engine, temporal_weight=2.0)
