"""Training data (jaxstyle.arbitrary.data): folders listed, images resized and cropped,
batches a pure function of (seed, files, step): the same from any position, any number of
read-ahead threads, and split over hosts; unreadable files skipped and reported; empty or
missing folders a one-line error."""

import numpy as np
import pytest
from conftest import smooth_image
from PIL import Image

from jaxstyle.arbitrary import data
from jaxstyle.files import InputError
from jaxstyle.image import list_images


def _folder(root, name, sizes, seed):
    folder = root / name
    folder.mkdir()
    for i, (h, w) in enumerate(sizes):
        image = (smooth_image(seed + i, h, w) * 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{i:02d}.{'png' if i % 2 else 'jpg'}")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    content = _folder(root, "content", [(48, 64), (64, 40), (40, 40), (56, 72), (44, 60)], 0)
    style = _folder(root, "style", [(40, 56), (64, 64), (72, 48)], 20)
    (content / "sub").mkdir()
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(content / "sub" / "deep.PNG")
    (content / "notes.txt").write_text("not an image")
    return content, style


@pytest.fixture(scope="module")
def spec(folders):
    content, style = folders
    return data.DataSpec(list_images(content), list_images(style), batch_size=4,
                         load_size=40, crop_size=32, seed=3)


def test_list_images(folders, tmp_path):
    content, _ = folders
    found = list_images(content, "--content-dir")
    assert len(found) == 6 and found == tuple(sorted(found))  # recursive, suffixes only
    assert found[-1].endswith("deep.PNG")
    (tmp_path / "empty").mkdir()
    for path, problem in ((tmp_path / "empty", "no image files"),
                          (tmp_path / "missing", "no such directory"),
                          (content / "notes.txt", "not a directory")):
        with pytest.raises(InputError, match=problem) as err:
            list_images(path, "--style-dir")
        assert "\n" not in str(err.value) and "--style-dir" in str(err.value)


def test_load_crop(folders):
    path = str(folders[0] / "00.jpg")  # 48 x 64: smaller side 40 -> 40 x 53
    rng = np.random.default_rng(0)
    crops = [data.load_crop(path, 40, 32, rng) for _ in range(3)]
    assert all(c.shape == (32, 32, 3) and c.dtype == np.uint8 for c in crops)
    assert not np.array_equal(crops[0], crops[1])  # random positions
    centre = data.load_crop(path, 40, 32, None)
    assert np.array_equal(centre, data.load_crop(path, 40, 32, None))
    # An image smaller than load_size is enlarged to it.
    small = data.load_crop(str(folders[0] / "02.jpg"), 64, 48, None)
    assert small.shape == (48, 48, 3)


def test_batches_are_a_function_of_the_step(spec):
    source = data.TrainBatches(spec, steps=6)
    first = [source[j] for j in range(6)]
    again = data.TrainBatches(spec, steps=6)
    for j in (5, 2, 0):  # any order: no iterator state
        assert np.array_equal(again[j]["content"], first[j]["content"])
        assert np.array_equal(again[j]["style"], first[j]["style"])
    assert first[0]["content"].shape == (4, 32, 32, 3) and first[0]["style"].dtype == np.uint8
    assert not np.array_equal(first[0]["content"], first[1]["content"])
    other = data.TrainBatches(data.DataSpec(spec.content, spec.style, 4, 40, 32, seed=4), 6)
    assert not np.array_equal(other[0]["content"], first[0]["content"])
    with pytest.raises(IndexError):
        source[6]


def test_hosts_rows_make_the_one_host_batch(spec):
    one = data.TrainBatches(spec, steps=3)
    hosts = [data.TrainBatches(spec, steps=3, process_index=h, process_count=2)
             for h in range(2)]
    for j in range(3):
        rows = [h[j] for h in hosts]
        assert rows[0]["content"].shape[0] == 2
        for kind in ("content", "style"):
            assert np.array_equal(np.concatenate([r[kind] for r in rows]), one[j][kind])
    # Each host reads only its own slots' files: its shard of the lists.
    files = [{f for slot in h.slots["content"] for f in slot} for h in hosts]
    assert not files[0] & files[1] and files[0] | files[1] == set(spec.content)
    with pytest.raises(ValueError, match="split"):
        data.TrainBatches(spec, 3, process_index=0, process_count=3)


@pytest.mark.parametrize("threads", [1, 3])
def test_iterate_resumes_at_any_position(spec, threads):
    source = data.TrainBatches(spec, steps=5)
    with data.iterate(source, start=2, threads=threads) as batches:
        got = list(batches)
    assert len(got) == 3
    for j, batch in zip(range(2, 5), got, strict=True):
        assert np.array_equal(batch["content"], source[j]["content"])
        assert np.array_equal(batch["style"], source[j]["style"])


def test_unreadable_files_are_skipped_and_reported(folders, tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    for name in ("a.png", "b.jpg"):
        (content / name).write_bytes((folders[0] / "01.png").read_bytes())
    (content / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (content / "text.png").write_text("hello")
    spec = data.DataSpec(list_images(content), list_images(folders[1]),
                         batch_size=2, load_size=40, crop_size=32)
    source = data.TrainBatches(spec, steps=8)
    skipped = [p for j in range(8) for p, _ in source[j]["skipped"]]
    assert skipped and {p.rsplit("/", 1)[-1] for p in skipped} <= {"broken.jpg", "text.png"}
    assert all(source[j]["content"].shape == (2, 32, 32, 3) for j in range(8))
    # All files of a slot unreadable: a one-line error naming one.
    bad = data.DataSpec((str(content / "text.png"),), spec.style, 2, 40, 32)
    with pytest.raises(InputError, match="unreadable"):
        data.TrainBatches(bad, 1)[0]


def test_spec_validation(spec):
    with pytest.raises(ValueError, match="load_size"):
        data.DataSpec(spec.content, spec.style, 2, load_size=16, crop_size=32)
    with pytest.raises(ValueError, match="at least one"):
        data.DataSpec((), spec.style, 2)


def test_iterate_stops_early_and_raises_in_order(spec, folders):
    source = data.TrainBatches(spec, steps=50)
    with data.iterate(source, threads=2, buffer=3) as batches:
        first = next(batches)  # leaving early: the rest cancelled, the threads joined
    assert np.array_equal(first["content"], source[0]["content"])
    bad = data.TrainBatches(data.DataSpec((str(folders[0] / "notes.txt"),), spec.style, 2,
                                          40, 32), steps=3)
    with data.iterate(bad) as batches, pytest.raises(InputError, match="unreadable"):
        next(batches)
