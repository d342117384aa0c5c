"""The training loop: folders of images -> sharded steps -> log, samples, checkpoints, model.

    config = TrainConfig("sanet", steps=160_000)
    result = train(config, "runs/sanet", content=files_c, style=files_s, encoder=vgg)

Every host runs the same call (several hosts: after `jax.distributed.initialize`). Per step:
this host's rows of batch `step` (`data.TrainBatches`, read ahead on threads) are assembled
into the global batch, and `step.compiled_step` updates the replicated state. The host keeps
one step queued on the devices (it waits for step k - 1 after dispatching step k), so the
next batch is prepared while the devices compute.

What lands in the run directory (the primary host writes all but the checkpoints):
- config.json: the settings and the data (file counts and digests);
- log.jsonl: one line per logged step (every `log_every` and the last): {"step", "total",
  each part, "lr", "images_per_s", "skipped"}: the losses of that step, images per second
  over the steps since the previous line (the first step, which compiles, left out: null
  when nothing else is in the interval), and the reads of unreadable files skipped so far
  (a bad file counts each time its turn comes round). A resumed run first drops the lines
  after its checkpoint, so the log reads as one run. Time spent writing checkpoints and
  samples is not counted in images_per_s;
- samples_<step>.png every `sample_every` steps and at the end: the first `samples` content
  and style images (centre crops), each content stylized with each style by the current
  weights, as a contact sheet;
- checkpoints/<step>/ every `checkpoint_every` steps, when stopped, and at the end
  (`checkpoints`), the newest `keep_checkpoints` kept;
- <kind>.npz at the end: the decoder (and Transform) as a jaxstyle model
  (`weights.save_model`), for `load_sanet(model=..., vgg=...)` / `load_adain`.

Stopping: `should_stop()` is polled after every step (one host) or every STOP_SYNC steps
(several hosts, which agree on it, so that all stop at the same step); when true, the state
is checkpointed and the result says "interrupted"; `resume=True` continues from the latest
checkpoint with the same losses, step for step, as a run that was never stopped. A
non-finite loss at a logged step stops the run ("nonfinite"; nothing more is saved).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxstyle import files
from jaxstyle.arbitrary import checkpoints, data, step
from jaxstyle.arbitrary.losses import WEIGHTS
from jaxstyle.arbitrary.train_config import TrainConfig
from jaxstyle.arbitrary.weights import save_model

STOP_SYNC = 10  # steps between the hosts' agreements on stopping (several hosts)
_EXAMPLE_SKIPS = 5  # unreadable files named in the result


@dataclasses.dataclass(frozen=True)
class Progress:
    """What the callback gets at each logged step."""

    step: int  # steps done
    total_steps: int
    losses: dict[str, float]  # "total" and each part, at this step
    lr: float  # the learning rate this step used
    images_per_s: float | None  # since the previous logged step (None: nothing to time)
    skipped: int  # reads of unreadable files skipped so far, over all hosts


@dataclasses.dataclass(frozen=True)
class TrainResult:
    status: str  # "completed", "interrupted" or "nonfinite"
    step: int  # steps done
    losses: dict[str, float] | None  # at the last logged step
    model: Path | None  # the exported model (completed runs)
    checkpoint: int | None  # the newest checkpoint's step
    skipped: int  # reads of unreadable files skipped, over all hosts
    skipped_examples: tuple[tuple[str, str], ...]  # some of them (this host's): (path, why)


def train(config: TrainConfig, run_dir: str | Path, *, content: tuple[str, ...],
          style: tuple[str, ...], encoder: Any, init: Any = None, resume: bool = False,
          callback: Callable[[Progress], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          devices: list[jax.Device] | None = None) -> TrainResult:
    """Train `config.kind` on the image files `content` and `style` (module docstring).

    encoder: the frozen encoder's params (`released.read_released(vgg, "vgg")`); init: the
    trainable params to start from ({"decoder"[, "transform"]}, e.g. released weights for
    fine-tuning), default a fresh initialization from the seed; resume: continue from the
    newest checkpoint in run_dir (InputError if there is none or it was made on other data
    or settings; without resume, a run_dir with checkpoints is refused). devices: the mesh
    (default every device of every host). Raises ValueError for a batch that does not split
    over the devices and hosts.
    """
    run_dir = Path(run_dir)
    mesh = step.batch_mesh(devices)
    step.check_batch(config.batch, mesh)
    primary = jax.process_index() == 0
    spec = data.DataSpec(tuple(content), tuple(style), config.batch, config.load_size,
                         config.crop_size, config.seed)
    identity = {"kind": config.kind, "batch_size": config.batch, "load_size": config.load_size,
                "crop_size": config.crop_size, "seed": config.seed,
                "content_files": len(content), "content_digest": checkpoints.digest(content),
                "style_files": len(style), "style_digest": checkpoints.digest(style)}
    run_dir.mkdir(parents=True, exist_ok=True)
    manager = checkpoints.open_manager(run_dir / "checkpoints", config.keep_checkpoints)
    try:
        trainable = init if init is not None else step.init_params(config.kind, config.seed)
        state = step.put_replicated(step.init_state(trainable, config), mesh)
        skipped_before = 0
        if resume:
            restored = checkpoints.restore(manager, state)
            if restored is None:
                raise files.InputError(f"{run_dir}: no checkpoint to resume from")
            state, meta = restored
            checkpoints.check_meta(meta, identity, str(run_dir))
            skipped_before = int(meta.get("skipped", 0))
        elif manager.latest_step() is not None:
            raise files.InputError(f"{run_dir} holds checkpoints of another run: resume it or "
                                   "choose a new run directory")
        start = int(jax.device_get(state.step))
        log = run_dir / "log.jsonl"
        if primary:
            _keep_log_until(log, start)
            files.write_json(run_dir / "config.json", {**dataclasses.asdict(config),
                                                       "batch_size": config.batch,
                                                       **identity}, sort_keys=True)
        loop = _Loop(config, mesh, run_dir, log, manager, identity, skipped_before,
                     spec if primary and config.sample_every else None, encoder)
        return loop.run(state, spec, start, callback, should_stop)
    finally:
        manager.wait_until_finished()
        manager.close()


class _Loop:
    """The host loop of `train` (its state: counters, timers, the last metrics)."""

    def __init__(self, config, mesh, run_dir, log, manager, identity, skipped_before,
                 sample_spec, encoder):
        self.config, self.mesh, self.run_dir, self.log = config, mesh, run_dir, log
        self.manager, self.identity, self.skipped_before = manager, identity, skipped_before
        self.encoder_host = jax.tree.map(lambda a: np.asarray(a, np.float32), encoder)
        self.encoder = step.put_replicated(self.encoder_host, mesh)
        self.skipped_here, self.examples, self.losses = 0, [], None
        self.saved: int | None = manager.latest_step()
        self.samples = None
        if sample_spec is not None:
            n, load, crop = config.samples, config.load_size, config.crop_size
            self.samples = (data.sample_images(sample_spec.content, n, load, crop),
                            data.sample_images(sample_spec.style, n, load, crop))

    def run(self, state, spec, start, callback, should_stop) -> TrainResult:
        config = self.config
        fn = step.compiled_step(self.mesh, config)
        source = data.TrainBatches(spec, config.steps, process_index=jax.process_index(),
                                   process_count=jax.process_count())
        status, previous, timer = "completed", None, None
        threads = config.data_threads or data.default_threads()
        with data.iterate(source, start, threads=threads, buffer=2 * threads) as batches:
            for done in range(start + 1, config.steps + 1):
                batch = next(batches)
                self.skipped_here += len(batch["skipped"])
                self.examples += list(batch["skipped"][:_EXAMPLE_SKIPS - len(self.examples)])
                state, metrics = fn(state, self.encoder, step.put_batch(batch["content"],
                                                                        self.mesh),
                                    step.put_batch(batch["style"], self.mesh))
                if previous is not None:  # keep one step queued, not the whole run
                    jax.block_until_ready(previous)
                previous = metrics["total"]
                if timer is None:  # the first step compiles: time from its end
                    jax.block_until_ready(metrics)
                    timer = (time.perf_counter(), done)
                if done % config.log_every == 0 or done == config.steps:
                    timer = self._log(done, metrics, timer, callback)
                    if not math.isfinite(self.losses["total"]):
                        status = "nonfinite"
                        break
                side_work = False
                if config.checkpoint_every and done % config.checkpoint_every == 0:
                    side_work = self._checkpoint(state, done)
                if self.samples is not None and (done % config.sample_every == 0 or
                                                 done == config.steps):
                    self._write_samples(state, done)
                    side_work = True
                if side_work:  # images/s counts training steps only
                    timer = (time.perf_counter(), done)
                if done < config.steps and self._stop(should_stop, done):
                    status = "interrupted"
                    break
        done = int(jax.device_get(state.step))
        model = None
        if status != "nonfinite":
            self._checkpoint(state, done)
        if status == "completed" and jax.process_index() == 0:
            model = save_model(step.to_host(state.params), self.run_dir / f"{config.kind}.npz",
                               config.kind)
        return TrainResult(status, done, self.losses, model, self.saved,
                           self._skipped(), tuple(self.examples))

    def _log(self, done, metrics, timer, callback):
        """Fetch the step's metrics, write the log line, call back; the new timer."""
        host = {k: float(v) for k, v in step.to_host(metrics).items()}
        now = time.perf_counter()
        images = (done - timer[1]) * self.config.batch
        rate = images / (now - timer[0]) if images else None
        lr = host.pop("lr")
        self.losses = host
        skipped = self._skipped()
        if jax.process_index() == 0:
            names = ("total", *WEIGHTS[self.config.kind])
            line = {"step": done, **{k: files.json_number(host[k]) for k in names},
                    "lr": lr, "images_per_s": rate, "skipped": skipped}
            with open(self.log, "a") as fh:
                fh.write(json.dumps(line, allow_nan=False) + "\n")
        if callback is not None:
            callback(Progress(done, self.config.steps, host, lr, rate, skipped))
        return now, done

    def _checkpoint(self, state, done) -> bool:
        """Checkpoint step `done` unless it is already; whether it did."""
        if self.saved == done:
            return False
        meta = {**self.identity, "next_batch": done, "skipped": self._skipped()}
        checkpoints.save(self.manager, state, meta)
        self.saved = done
        return True

    def _write_samples(self, state, done):
        from jaxstyle.arbitrary.stylize import stylize_adain, stylize_sanet
        from jaxstyle.image import save_image
        from jaxstyle.sheet import contact_sheet

        (contents, c_names), (styles, s_names) = self.samples
        params = {**step.to_host(state.params), "encoder": self.encoder_host}
        stylize = stylize_sanet if self.config.kind == "sanet" else stylize_adain
        out = [stylize(params, contents, s) for s in styles]  # [style][content]
        rows = [[None, *styles]] + [[c, *(o[i] for o in out)] for i, c in enumerate(contents)]
        sheet = contact_sheet(rows, row_labels=["", *c_names], col_labels=["", *s_names],
                              title=f"{self.config.kind}, step {done}")
        save_image(self.run_dir / f"samples_{done}.png", sheet)

    def _stop(self, should_stop, done) -> bool:
        local = bool(should_stop is not None and should_stop())
        if jax.process_count() == 1:
            return local
        if done % STOP_SYNC:
            return False
        from jax.experimental import multihost_utils

        return bool(np.any(multihost_utils.process_allgather(np.int32(local))))

    def _skipped(self) -> int:
        """Reads of unreadable files skipped so far over all hosts (a collective on several hosts:
        called at the same steps on every host)."""
        here = self.skipped_here
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            here = int(np.sum(multihost_utils.process_allgather(np.int64(here))))
        return self.skipped_before + here


def _keep_log_until(log: Path, step_done: int) -> None:
    """Drop the lines of `log` after step `step_done` (a resumed run logs them again), and
    any torn last line; atomically. No file: nothing to do."""
    if not log.exists():
        return
    kept = []
    for line in log.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step_done:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    text = "".join(line + "\n" for line in kept)
    files.atomic_write(log, lambda fh: fh.write(text.encode()))
