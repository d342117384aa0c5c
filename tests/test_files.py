"""jaxstyle.files: the one atomic writer (images, weights, manifests and JSON summaries)."""

import json
import math
import os
import stat

import pytest

from jaxstyle import files


def _plain_open_mode(tmp_path):
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    return stat.S_IMODE(probe.stat().st_mode)


def test_write_json_is_readable_like_a_plain_file(tmp_path):
    path = tmp_path / "summary.json"
    old_umask = os.umask(0o022)  # under 0o077 a plain file is 0o600 too: nothing to tell
    try:
        files.write_json(path, {"b": 1, "a": [1.5, None]}, sort_keys=True)
        plain = _plain_open_mode(tmp_path)
    finally:
        os.umask(old_umask)
    assert path.read_text() == '{\n  "a": [\n    1.5,\n    null\n  ],\n  "b": 1\n}\n'
    # mkstemp would have made it 0o600; the images beside it follow the umask.
    assert plain == 0o644 and stat.S_IMODE(path.stat().st_mode) == plain
    assert sorted(os.listdir(tmp_path)) == ["probe", "summary.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "manifest.json"
    files.write_json(path, {"old": True})
    with pytest.raises(ValueError, match="JSON compliant"):
        files.write_json(path, {"loss": math.nan})  # JSON has no NaN

    def fail(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(path, fail)
    assert json.loads(path.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_json_number():
    assert files.json_number(2) == 2.0
    assert files.json_number(math.inf) is None and files.json_number(math.nan) is None


def test_target_problem(tmp_path):
    assert files.target_problem(tmp_path / "ok.json") is None
    assert "is a directory" in files.target_problem(tmp_path)
    assert "does not exist" in files.target_problem(tmp_path / "no" / "x.json")
    (tmp_path / "f").write_text("")
    assert "is not a directory" in files.target_problem(tmp_path / "f" / "x.json")
    assert os.listdir(tmp_path) == ["f"]  # the probe's temporary file is gone
