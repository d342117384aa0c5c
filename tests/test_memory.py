"""jaxstyle.memory: the limit a run may use and the one check every command makes before any
work; the commands' refusals of sizes that cannot fit (each within seconds, one line, exit 2,
nothing written) and their acceptance of sizes that fit (regression: a 2048 px Gatys run was
refused on a 24 GB machine by an estimate 30% high against half the free memory)."""

import time

import jax
import pytest
from conftest import EXAMPLES, one_line_error

import jaxstyle
from jaxstyle import cli, memory
from jaxstyle.files import SettingError

CPU = jax.devices("cpu")[0]


def test_the_limit_is_the_available_memory_less_a_margin(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 20 * memory.GIB)
    assert memory.limit_bytes(CPU) == 19 * memory.GIB  # 5%: above the 256 MiB floor
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1 * memory.GIB)
    assert memory.limit_bytes(CPU) == memory.GIB - memory.MARGIN_MIN_BYTES
    assert memory.limit_bytes(CPU, memory_limit=2.5) == int(2.5 * memory.GIB)
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)
    assert memory.limit_bytes(CPU) is None and memory.plan(10**15, CPU).fits
    with pytest.raises(SettingError, match="memory_limit must be a number of GiB > 0"):
        memory.limit_bytes(CPU, memory_limit=0)


def test_check_names_the_largest_size_that_fits():
    def bytes_at(side):
        return 100 + side * side

    plan = memory.MemoryPlan(bytes_at(1000), 100 + 300 * 300)
    with pytest.raises(SettingError, match="the largest that fits is about 300 px") as info:
        memory.check(plan, "a 1000x1000 image", bytes_at, 1000, CPU)
    assert info.value.name == "image_size" and "a 1000x1000 image needs about" in str(info.value)
    memory.check(memory.MemoryPlan(5, 10), "x", bytes_at, 10, CPU)  # fits: nothing raised


def test_a_2048_px_default_run_fits_where_it_ran():
    """The estimate of the Gatys default at 2048 px (chelsea's 300 x 451 aspect) is within 15%
    of the 7.0 GiB peak measured by benchmarks/memory.py on the CPU (random weights), so
    a 24 GB machine's ~20 GiB available admits it."""
    config = jaxstyle.StyleConfig(image_size=2048)
    plan = jaxstyle.plan_memory((300, 451), [(446, 512)], config, memory_limit=20.0)
    measured_peak = 7158 * 2**20  # VmHWM, with the 192 MiB the process held when it planned
    assert abs(plan.run_bytes + 192 * 2**20 - measured_peak) < 0.15 * measured_peak
    assert plan.fits
    # Where it ran: the CLI's plan with the machine's memory (skipped on a small machine).
    if memory.limit_bytes(CPU) and memory.limit_bytes(CPU) > 10 * memory.GIB:
        jaxstyle.plan_stages((300, 451), [(446, 512)], config)


@pytest.mark.parametrize("argv", [
    [str(EXAMPLES / "chelsea.jpg"), str(EXAMPLES / "stripes.png")],
    ["sanet", str(EXAMPLES / "chelsea.jpg"), str(EXAMPLES / "stripes.png")],
    ["adain", str(EXAMPLES / "chelsea.jpg"), str(EXAMPLES / "stripes.png")],
], ids=["gatys", "sanet", "adain"])
def test_an_absurd_size_is_refused_at_once(argv, tmp_path, capsys, arbitrary_files):
    weights = (["--weights", str(tmp_path / "none.npz")] if len(argv) == 2 else
               ["--vgg", str(arbitrary_files["vgg_normalised.pth"]), "--decoder",
                str(arbitrary_files["decoder.pth"])])
    out = tmp_path / "out" / "o.png"
    out.parent.mkdir()
    t0 = time.perf_counter()
    assert cli.main([*argv, "-o", str(out), "--image-size", "1000000", *weights]) == 2
    assert time.perf_counter() - t0 < 20  # regression: adain hung (killed after 400 s)
    line = one_line_error(capsys)
    assert "--image-size" in line and "the largest that fits is about" in line, line
    assert list(out.parent.iterdir()) == []


def test_train_refuses_a_crop_that_cannot_fit(tmp_path, capsys, arbitrary_files):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes((EXAMPLES / "stripes.png").read_bytes())
    run = tmp_path / "run"
    argv = ["train-adain", "--content-dir", str(folder), "--style-dir", str(folder),
            "--vgg", str(arbitrary_files["vgg_normalised.pth"]), "--out", str(run),
            "--crop-size", "64000", "--load-size", "64000"]
    assert cli.main(argv) == 2
    assert "--crop-size: a training step" in one_line_error(capsys)
    assert not run.exists()  # nothing made before the check
