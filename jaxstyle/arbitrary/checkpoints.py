"""Training checkpoints through orbax: the state and the run's bookkeeping, the last K kept.

    manager = open_manager(run / "checkpoints", keep=3)
    save(manager, state, meta)                    # step = state.step
    state, meta = restore(manager, like=state)    # the latest step (None if there is none)

A checkpoint is one orbax step directory `<step>/` with two items:
- "state": the `TrainState` (step, trainable params, Adam's state) as orbax's standard
  array checkpoint; restored with the shardings of `like` (replicated over the run's mesh,
  on any number of hosts);
- "meta": JSON: the data position (`next_batch`, the step the data resumes at: the batches
  are a pure function of it, `jaxstyle.arbitrary.data`), what the run trains on (kind, batch,
  sizes, seed, a digest of each file list) so that a resume on other data is refused, and
  the counters that must continue (unreadable files skipped).
orbax writes each step into a temporary directory and renames it when complete (atomic: a
killed run leaves the previous checkpoints and at most a temporary directory, which the next
manager removes), deletes all but the newest `keep`, and coordinates the hosts (each writes
its shards; the arrays here are replicated, so the primary host writes them). Saving is
asynchronous: the arrays are copied off the device, then written while training goes on;
`manager.wait_until_finished()` before exiting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxstyle.files import InputError

ITEMS = ("state", "meta")


def open_manager(directory: str | Path, keep: int, *, asynchronous: bool = True
                 ) -> ocp.CheckpointManager:
    """An orbax CheckpointManager over `directory` (created), keeping the newest `keep`."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=asynchronous)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options, item_names=ITEMS)


def save(manager: ocp.CheckpointManager, state: Any, meta: dict[str, Any]) -> int:
    """Checkpoint `state` and `meta` as step int(state.step) (asynchronously); the step."""
    step = int(jax.device_get(state.step))
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               meta=ocp.args.JsonSave(meta)), force=True)
    return step


def restore(manager: ocp.CheckpointManager, like: Any, step: int | None = None
            ) -> tuple[Any, dict[str, Any]] | None:
    """(state, meta) of `step` (default the latest), the arrays shaped and sharded as in
    `like` (a state or its `jax.eval_shape`, with shardings); None if there is none."""
    step = manager.latest_step() if step is None else step
    if step is None:
        return None
    target = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), like)
    out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                        meta=ocp.args.JsonRestore()))
    return out.state, dict(out.meta)


def digest(paths: Sequence[str]) -> str:
    """A short digest of a file list (names only, in order): a resume on other data shows."""
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]


def check_meta(meta: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    """InputError naming the differences between a checkpoint's `meta` and this run's
    `expected` (the keys of `expected` only)."""
    diffs = [f"{k} {meta.get(k)!r} -> {v!r}" for k, v in expected.items() if meta.get(k) != v]
    if diffs:
        raise InputError(f"{where}: the checkpoint was made with other settings ("
                         + "; ".join(diffs) + "); resume with the same ones or start a new "
                         "run directory")
