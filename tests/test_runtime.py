"""jaxstyle.runtime: the persistent compilation cache and XLA CPU flags, in fresh processes.

Both act on process-wide state that JAX reads once (the cache directory, XLA_FLAGS), so each
check runs a small script in its own interpreter with its own temporary cache directory.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from jaxstyle import files, runtime

# Compiles one small program and reports what the persistent cache did: JAX records the event
# "/jax/compilation_cache/cache_hits" when an executable is read back from disk.
CACHE_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp
    from jax import monitoring
    from jaxstyle import runtime

    events = []
    monitoring.register_event_listener(lambda event, **kw: events.append(event))
    arg = sys.argv[1]
    first = runtime.enable_compile_cache(None if arg == "-" else arg)
    again = runtime.enable_compile_cache(None if arg == "-" else arg)
    f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum(axis=0))
    out = f(jnp.ones((8, 8), jnp.float32))
    print(json.dumps({
        "dir": None if first is None else str(first),
        "again": None if again is None else str(again),
        "config_dir": jax.config.jax_compilation_cache_dir,
        "hits": events.count("/jax/compilation_cache/cache_hits"),
        "value": float(out[0]),
    }))
""")


def _run(script: str, *args: str, env_extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in (runtime.NO_CACHE_ENV, files.HOME_ENV, "XLA_FLAGS",
                        "JAX_COMPILATION_CACHE_DIR")}
    env["JAX_PLATFORMS"] = "cpu"
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _files(path) -> list:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def test_second_process_reads_the_cache(tmp_path):
    cache = tmp_path / "xla"
    first = _run(CACHE_SCRIPT, str(cache))
    assert first["dir"] == str(cache) == first["again"] == first["config_dir"]
    assert first["hits"] == 0
    written = _files(cache)
    assert written, "the first process wrote no cache entry"
    second = _run(CACHE_SCRIPT, str(cache))
    assert second["hits"] >= 1
    assert second["value"] == first["value"]
    assert sorted(_files(cache)) == sorted(written)  # a hit adds no entry


def test_default_dir_follows_jaxstyle_home(tmp_path):
    out = _run(CACHE_SCRIPT, "-", env_extra={files.HOME_ENV: str(tmp_path)})
    assert out["dir"] == str(tmp_path / "xla")
    assert _files(tmp_path / "xla")


def test_env_opt_out_writes_nothing(tmp_path):
    out = _run(CACHE_SCRIPT, "-", env_extra={files.HOME_ENV: str(tmp_path),
                                             runtime.NO_CACHE_ENV: "1"})
    assert out["dir"] is None and out["config_dir"] is None and out["hits"] == 0
    assert not _files(tmp_path)


def test_enabled_false_is_off(monkeypatch, tmp_path):
    monkeypatch.delenv(runtime.NO_CACHE_ENV, raising=False)
    assert runtime.enable_compile_cache(tmp_path / "x", enabled=False) is None
    assert not (tmp_path / "x").exists()


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(files.HOME_ENV, str(tmp_path / "home"))
    assert runtime.default_cache_dir() == tmp_path / "home" / "xla"
    monkeypatch.delenv(files.HOME_ENV)
    import platformdirs

    assert runtime.default_cache_dir().parent == type(tmp_path)(
        platformdirs.user_cache_dir("jaxstyle"))


FLAGS_SCRIPT = textwrap.dedent("""
    import json, os
    from jaxstyle import runtime
    a = runtime.set_xla_cpu_flags()
    b = runtime.set_xla_cpu_flags()
    import jax.numpy as jnp
    total = float(jnp.arange(4.0).sum())
    try:
        runtime.set_xla_cpu_flags()
        late = "no error"
    except RuntimeError as e:
        late = str(e)
    print(json.dumps({"a": a, "b": b, "env": os.environ["XLA_FLAGS"], "late": late,
                      "total": total}))
""")


@pytest.mark.parametrize("user_flags", ["", "--xla_force_host_platform_device_count=2",
                                        "--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_DEFAULT"])
def test_cpu_flags_keep_user_flags(user_flags):
    out = _run(FLAGS_SCRIPT, env_extra={"XLA_FLAGS": user_flags} if user_flags else None)
    assert out["a"] == out["b"] == out["env"]  # idempotent
    tokens = out["env"].split()
    for flag in user_flags.split():
        assert flag in tokens  # the user's flags are kept, and win
    names = [t.split("=")[0] for t in tokens]
    assert len(names) == len(set(names))
    assert "--xla_cpu_scheduler_type" in names
    assert "before the first JAX computation" in out["late"]
    assert out["total"] == 6.0


def test_unknown_flags_are_left_out(monkeypatch):
    """XLA aborts the process on an unknown flag, so only flags found in jaxlib are added."""
    monkeypatch.setattr(runtime, "_VERIFIED_JAXLIB", ())
    runtime.xla_knows_flag.cache_clear()
    try:
        assert all(runtime.xla_knows_flag(f) for f in runtime.CPU_FLAGS + runtime.CPU_TRAIN_FLAGS)
        assert not runtime.xla_knows_flag("--xla_cpu_no_such_flag=1")
        assert not runtime.xla_knows_flag(
            "--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_NO_SUCH_VALUE")
    finally:
        runtime.xla_knows_flag.cache_clear()


def test_set_flags_skips_unknown_flag_and_process_survives():
    script = FLAGS_SCRIPT.replace("a = runtime.set_xla_cpu_flags()",
                                  "a = runtime.set_xla_cpu_flags(runtime.CPU_FLAGS + "
                                  "('--xla_cpu_no_such_flag=1',))", 1)
    assert script != FLAGS_SCRIPT
    out = _run(script)
    assert "no_such_flag" not in out["env"] and out["total"] == 6.0
