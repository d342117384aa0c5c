"""benchmarks/train_pieces.py --quick end to end in this process (jax, and PyTorch when
torch is installed), so that the script cannot rot; every piece of each model is timed."""

import importlib.util
import json
import sys

from test_arbitrary_train_step import ROOT

_spec = importlib.util.spec_from_file_location("_train_pieces",
                                               ROOT / "benchmarks" / "train_pieces.py")
pieces = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = pieces
_spec.loader.exec_module(pieces)


def test_quick_run_times_every_piece(tmp_path):
    out = tmp_path / "pieces.json"
    assert pieces.main(["--quick", "--models", "sanet,adain", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["size"] == 32 and report["settings"]["batch"] == 2
    timed = {(s["kind"], s["piece"]) for s in report["summary"]}
    assert timed == {("sanet", p) for p in pieces.PIECES} | {
        ("adain", p) for p in pieces.PIECES if p != "transform"}
    torch_ran = any(r["framework"] == "torch" for r in report["rows"])
    for s in report["summary"]:
        assert s["jax_s"] > 0
        assert (s["torch_s"] > 0) if torch_ran else s["torch_s"] is None


def test_inputs_follow_the_recipe_shapes():
    x = pieces._inputs("sanet", 64, 2)
    assert x["pair"].shape == (4, 64, 64, 3) and x["decoded"].shape == (6, 64, 64, 3)
    assert x["relu4_1"].shape == (6, 8, 8, 512) and x["relu5_1"].shape == (6, 4, 4, 512)
    assert pieces._inputs("adain", 64, 2)["decoded"].shape == (2, 64, 64, 3)
