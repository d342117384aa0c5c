"""jaxstyle.executables: compiled step programs stored on disk and read back without tracing."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from conftest import smooth_image

import jaxstyle
from jaxstyle import executables, optim
from jaxstyle.losses import prepare_targets


class LowerSpy:
    """Stands in for a jitted program in `optim` and counts its lowerings (JAX's in-process
    caches hide retracing from its monitoring events, so misses are counted here)."""

    def __init__(self, jitted):
        self.jitted, self.__wrapped__, self.lowered = jitted, jitted.__wrapped__, 0

    def lower(self, *args, **kwargs):
        self.lowered += 1
        return self.jitted.lower(*args, **kwargs)


def spy_on_programs(monkeypatch):
    spies = {name: LowerSpy(getattr(optim, name)) for name in ("init_state_at_content",
                                                                 "run_chunk")}
    for name, spy in spies.items():
        monkeypatch.setattr(optim, name, spy)
    monkeypatch.setattr(executables, "_COMPILED", {})  # as in a new process
    return spies


@pytest.fixture
def store(tmp_path, monkeypatch):
    """The store on in tmp_path, with an empty in-process program cache (a 'new process')."""
    monkeypatch.setattr(executables, "_COMPILED", {})
    executables.enable(tmp_path / "programs")
    yield tmp_path / "programs"
    executables.disable()


@pytest.fixture(scope="module")
def problem(weights):
    content, style = smooth_image(30, 32, 40), smooth_image(31, 40, 32)
    config = jaxstyle.StyleConfig(iterations=3, tv_weight=1e-3)
    spec, targets = prepare_targets(weights, content, [style], config, with_content=False)
    return dict(params=weights.params, targets=targets, lw=config.loss_weights, image=content,
                spec=spec, optim=optim.OptimSpec.from_config(config))


def _compile(p):
    return optim.compile_programs(p["params"], p["targets"], p["lw"], p["image"],
                                  spec=p["spec"], optim=p["optim"], at_content=True)


def _run(p, init_fn, chunk_fn):
    targets, state = init_fn(p["params"], p["targets"], p["lw"], p["image"])
    state, history = chunk_fn(p["params"], targets, p["lw"], state, np.int32(3))
    return np.asarray(history[:3]), np.asarray(state.image)


def test_second_compile_reads_the_store_without_tracing(store, problem, monkeypatch):
    init_fn, chunk_fn, _ = _compile(problem)
    entries = sorted(store.glob("*" + executables.SUFFIX))
    assert len(entries) == 2  # init_at_content and chunk
    expected = _run(problem, init_fn, chunk_fn)

    spies = spy_on_programs(monkeypatch)
    init_fn2, chunk_fn2, seconds = _compile(problem)
    assert [spy.lowered for spy in spies.values()] == [0, 0]
    assert init_fn2 is not init_fn and seconds > 0.0
    history, image = _run(problem, init_fn2, chunk_fn2)
    np.testing.assert_array_equal(history, expected[0])
    np.testing.assert_array_equal(image, expected[1])
    assert sorted(store.glob("*" + executables.SUFFIX)) == entries  # a hit writes nothing


def test_stored_chunk_still_donates_the_state(store, problem, monkeypatch):
    _compile(problem)
    spies = spy_on_programs(monkeypatch)
    init_fn, chunk_fn, _ = _compile(problem)
    assert spies["run_chunk"].lowered == 0  # the stored one
    p = problem
    targets, state = init_fn(p["params"], p["targets"], p["lw"], p["image"])
    chunk_fn(p["params"], targets, p["lw"], state, np.int32(1))
    assert state.image.is_deleted()  # Progress.image() relies on this


def test_a_corrupt_entry_is_recompiled_and_rewritten(store, problem, monkeypatch):
    _, _, _ = _compile(problem)
    for entry in store.glob("*" + executables.SUFFIX):
        entry.write_bytes(b"not a pickle")
    spies = spy_on_programs(monkeypatch)
    init_fn, chunk_fn, _ = _compile(problem)
    assert [spy.lowered for spy in spies.values()] == [1, 1]
    history, _ = _run(problem, init_fn, chunk_fn)
    assert np.isfinite(history).all()
    for entry in store.glob("*" + executables.SUFFIX):
        assert executables.load(entry.name[:-len(executables.SUFFIX)]) is not None


def test_cache_switched_off_turns_the_store_off(tmp_path, problem, monkeypatch):
    """--no-compile-cache (enabled=False) and JAXSTYLE_NO_COMPILE_CACHE switch the store off
    too: a store that was on writes nothing more."""
    from jaxstyle import runtime

    for off in (dict(enabled=False), dict(env=True)):
        monkeypatch.setattr(executables, "_COMPILED", {})
        executables.enable(tmp_path / "programs")
        if off.get("env"):
            monkeypatch.setenv(runtime.NO_CACHE_ENV, "1")
            assert runtime.enable_compile_cache(tmp_path / "xla") is None
        else:
            assert runtime.enable_compile_cache(tmp_path / "xla", enabled=False) is None
        _compile(problem)
        assert executables.directory() is None
        assert not list(tmp_path.rglob("*"))


def test_key_names_everything_that_shapes_the_program(problem):
    p = problem
    args = (p["params"], p["targets"], p["lw"], p["image"])
    static = dict(spec=p["spec"], optim=p["optim"])
    key = executables.program_key(optim.init_state, static, args)
    assert key == executables.program_key(optim.init_state, dict(static), args)
    other_image = np.zeros((32, 48, 3), np.float32)
    adam = optim.OptimSpec(name="adam")
    for other in [
        executables.program_key(optim.init_state_at_content, static, args),   # function
        executables.program_key(optim.init_state, {**static, "optim": adam}, args),  # static
        executables.program_key(optim.init_state, static, (*args[:3], other_image)),  # shape
        executables.program_key(optim.init_state, static,
                                (*args[:3], p["image"].astype(np.float16))),  # dtype
    ]:
        assert other is not None and other != key
    env = executables._environment()
    assert executables.source_digest() in env and jax.__version__ in env


def test_functions_without_a_stable_name_are_not_stored(problem):
    assert executables.program_key(jax.jit(lambda x: x), {}, (np.zeros(3),)) is None

    def local(x):
        return x

    assert executables.program_key(jax.jit(local), {}, (np.zeros(3),)) is None


def test_source_digest_follows_the_files(tmp_path, monkeypatch):
    digest = executables.source_digest()
    assert len(digest) == 64
    copy = tmp_path / "jaxstyle"
    copy.mkdir()
    for f in (executables.__file__, optim.__file__):
        shutil.copy(f, copy)
    code = textwrap.dedent("""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("ex", sys.argv[1])
        ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)
        print(ex.source_digest())
    """)

    def digest_of(folder):
        out = subprocess.run([sys.executable, "-c", code, str(folder / "executables.py")],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()

    before = digest_of(copy)
    (copy / "optim.py").write_text((copy / "optim.py").read_text() + "\n# edited\n")
    assert digest_of(copy) != before


SECOND_PROCESS = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    import jaxstyle
    from jaxstyle import runtime

    runtime.enable_compile_cache(sys.argv[1])
    names = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, d, **kw: names.append((event.rsplit("/", 1)[-1], str(kw.get("fun_name")))))
    rng = np.random.default_rng(0)
    content, style = rng.random((32, 32, 3), np.float32), rng.random((32, 32, 3), np.float32)
    result = jaxstyle.stylize(content, style, weights=jaxstyle.random_weights(0),
                              config=jaxstyle.StyleConfig(iterations=2))
    print(json.dumps({"events": names, "total": result.history["total"].tolist()}))
""")


def test_a_second_process_steps_without_tracing_the_step_programs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAXSTYLE_NO_COMPILE_CACHE"}
    env["JAX_PLATFORMS"] = "cpu"

    def run():
        out = subprocess.run([sys.executable, "-c", SECOND_PROCESS, str(tmp_path / "xla")],
                             env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    def names(run, event):
        return {name for e, name in run["events"] if e == event}

    # The first process traced and compiled the targets, init and step programs; the second
    # did neither.
    programs = {"compute_targets", "init_at_content", "chunk"}
    assert programs <= names(first, "jaxpr_trace_duration")
    assert {f"jit({p})" for p in programs} <= names(first, "backend_compile_duration")
    assert not (programs | {"_loss_vector"}) & names(second, "jaxpr_trace_duration")
    assert not {f"jit({p})" for p in programs} & names(second, "backend_compile_duration")
    assert second["total"] == first["total"]
    assert len(list((tmp_path / "xla" / "jaxstyle-programs").iterdir())) == 3


TWO_DEVICES = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import jaxstyle
    from jaxstyle import executables
    from jaxstyle.losses import LossSpec, compute_targets

    executables.enable(sys.argv[1])
    traced = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, d, **kw: traced.append(str(kw.get("fun_name")))
        if event.endswith("jaxpr_trace_duration") else None)
    second = jax.devices()[1]
    params = jax.device_put(jaxstyle.random_weights(0).params, second)
    image = jax.device_put(np.random.default_rng(0).random((32, 32, 3), np.float32), second)
    blend = jax.device_put(np.ones(1, np.float32), second)
    spec = LossSpec.from_config(jaxstyle.StyleConfig(), "caffe")
    fn, _ = executables.aot_compile(compute_targets, dict(spec=spec, with_content=True),
                                    params, image, [image], blend)
    gram = fn(params, image, [image], blend).grams["relu1_1"]
    # A program over both devices is left to JAX's cache.
    x = jax.device_put(np.arange(8.0, dtype=np.float32),
                       NamedSharding(Mesh(jax.devices(), ("d",)), P("d")))
    sharded = jax.jit(jnp.sin).lower(x).compile()
    print(json.dumps({"traced": "compute_targets" in traced,
                      "device": [d.id for d in gram.devices()],
                      "value": float(gram[0, 0]),
                      "sharded_saved": executables.save("sharded", sharded)}))
""")


def test_single_device_programs_come_back_on_their_device(tmp_path):
    """With two devices, a program compiled for the second is read back for the second (by
    default PJRT would load it for all of them, and the call would fail)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")

    def run():
        out = subprocess.run([sys.executable, "-c", TWO_DEVICES, str(tmp_path)], env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    assert first["device"] == second["device"] == [1]
    assert second["value"] == first["value"]
    assert first["traced"] and not second["traced"]  # read back, not compiled
    assert first["sharded_saved"] is False
    assert len(list(tmp_path.glob("*" + executables.SUFFIX))) == 1
