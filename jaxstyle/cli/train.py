"""`jaxstyle train-sanet` and `jaxstyle train-adain`: the training commands.

    jaxstyle train-sanet --content-dir coco/ --style-dir wikiart/ --vgg vgg_normalised.pth \\
        --out runs/sanet [--steps 160000 --batch-size 5 ...]
    jaxstyle train-sanet ... --out runs/sanet --resume          # after Ctrl-C, SIGTERM, a crash
    jaxstyle train-adain ... --init-from decoder.pth            # fine-tune released weights

`run(args)`: every check that needs no heavy work first (options, folders, the run directory,
the weight files; one line and exit 1 or 2 on a problem), then JAX (and `jax.distributed` for
several hosts), then `trainer.train` with a progress bar. Ctrl-C or SIGTERM: the run
checkpoints and exits 130; --resume continues it.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path

from jaxstyle import files
from jaxstyle.arbitrary.models import DEFAULT_BATCH, KINDS, MULTIPLE
from jaxstyle.arbitrary.train_config import TrainConfig
from jaxstyle.cli import live
from jaxstyle.cli.arbitrary import PAPERS
from jaxstyle.cli.console import Bar, InterruptFlag
from jaxstyle.cli.options import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STATUS,
    UsageError,
    add_command,
    add_serve_options,
    numbers,
)
from jaxstyle.image import list_images

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
_STOP = ("stopping after the current step, then writing a checkpoint (resume with --resume; "
         "a second signal quits without saving)")


def add_parsers(sub) -> dict[str, argparse.ArgumentParser]:
    """The `train-sanet` and `train-adain` commands."""
    parsers = {}
    for kind in KINDS:
        name = f"train-{kind}"
        parsers[name] = p = add_command(
            sub, name, run, epilog=_EPILOG + "\n\n" + EXIT_STATUS,
            description=f"Train {PAPERS[kind]}: its decoder"
                        f"{' and Transform' if kind == 'sanet' else ''} on folders of content "
                        "and style\nimages, the normalised VGG19 encoder frozen. Defaults: the "
                        "reference recipe.")
        _add_options(p, kind)
    return parsers


def _add_options(p: argparse.ArgumentParser, kind: str) -> None:
    # Parsed only: TrainConfig checks every value (and the error names the option).
    count = positive = numbers(int, many=False)
    rate = numbers(many=False)
    g = p.add_argument_group("data and output")
    g.add_argument("--content-dir", metavar="DIR", required=True, type=Path,
                   help="content images (searched recursively), e.g. MS-COCO train2014")
    g.add_argument("--style-dir", metavar="DIR", required=True, type=Path,
                   help="style images (searched recursively), e.g. WikiArt")
    g.add_argument("--vgg", metavar="FILE", type=Path,
                   help="the encoder, vgg_normalised.pth (default $JAXSTYLE_ARBITRARY_WEIGHTS/"
                        "vgg_normalised.pth)")
    g.add_argument("--out", metavar="RUN", required=True, type=Path,
                   help=f"run directory: log.jsonl, samples_<step>.png, checkpoints/, "
                        f"{kind}.npz (the trained model)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in RUN from its newest checkpoint")
    g.add_argument("--init-from", metavar="FILE[,FILE]", type=lambda t: t.split(","),
                   help="start from these weights (fine-tuning): a jaxstyle model .npz, or the "
                        "released " + ("DECODER.pth,TRANSFORMER.pth" if kind == "sanet" else
                                       "decoder .pth") + " (default: fresh, from --seed)")
    g = p.add_argument_group("recipe")
    batch = DEFAULT_BATCH[kind]
    for flag, kw, what in (
            ("--steps", dict(type=positive), f"training steps (default {_DEFAULTS['steps']})"),
            ("--batch-size", dict(type=positive), f"images per step over all devices and "
                                                  f"hosts (default {batch})"),
            ("--learning-rate", dict(type=rate), f"Adam's initial step size (default "
                                                 f"{_DEFAULTS['learning_rate']:g})"),
            ("--lr-decay", dict(type=rate),
             f"lr / (1 + decay * step) (default {_DEFAULTS['lr_decay']:g})"),
            ("--load-size", dict(type=positive), f"smaller side images are resized to "
                                                 f"(default {_DEFAULTS['load_size']})"),
            ("--crop-size", dict(type=positive), f"side of the random square crops (default "
                                                 f"{_DEFAULTS['crop_size']}; a multiple of "
                                                 f"{MULTIPLE[kind]})"),
            ("--seed", dict(type=count), "data order, crops, fresh weights (default 0)")):
        g.add_argument(flag, metavar="N" if "size" in flag or flag in ("--steps", "--seed")
                       else "X", **kw, help=what)
    g.add_argument("--noise-weight", metavar="W", type=rate,
                   help="MCCNet's illumination term (Deng et al., AAAI 2021; they used "
                        "3000): noisy content must decode as the clean one, steadier on "
                        "video (default 0: off)")
    g.add_argument("--bf16", action="store_true",
                   help="bfloat16 arithmetic (GPU/TPU); float32 weights, optimizer and losses")
    g = p.add_argument_group("progress and checkpoints")
    for flag, default, what in (
            ("--log-every", "log_every", "steps between log lines and progress updates"),
            ("--checkpoint-every", "checkpoint_every", "steps between checkpoints, 0 = only "
                                                       "when stopped and at the end"),
            ("--keep-checkpoints", "keep_checkpoints", "checkpoints kept, the newest"),
            ("--sample-every", "sample_every", "steps between sample sheets, 0 = none"),
            ("--samples", "samples", "contents and styles on a sample sheet")):
        g.add_argument(flag, metavar="N", type=count, help=f"{what} (default "
                                                           f"{_DEFAULTS[default]})")
    g.add_argument("--quiet", action="store_true", help="no progress and no final message")
    g.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    g = p.add_argument_group("devices and hosts")
    g.add_argument("--data-threads", metavar="N", type=count,
                   help="threads reading images ahead (default 0: one per core, at most 16)")
    g.add_argument("--device", choices=("cpu", "gpu", "tpu"),
                   help="train on this platform's devices (default: JAX's choice)")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="several hosts: process 0's address (with --num-processes, "
                        "--process-id)")
    g.add_argument("--num-processes", metavar="N", type=numbers(int, many=False, minimum=1),
                   help="several hosts: count")
    g.add_argument("--process-id", metavar="I", type=numbers(int, many=False, minimum=0),
                   help="several hosts: this one's id")
    g.add_argument("--distributed", action="store_true",
                   help="several hosts, found by jax.distributed.initialize() (SLURM, Open MPI, "
                        "TPU pods, Kubernetes)")
    g.add_argument("--no-compile-cache", action="store_true",
                   help="do not use the persistent compilation cache")
    g.add_argument("--memory-limit", metavar="GiB", type=numbers(many=False),
                   help="memory a device's share of the step may use (default: the "
                        "available memory less a margin)")
    add_serve_options(p.add_argument_group(
        "live page", "the losses, images per second and the newest sample sheet (several "
                     "hosts: process 0 serves)"))


_EPILOG = """\
Several devices: the batch is split over all of them (--batch-size a multiple of their count).
Several hosts: run the same command on each, with --coordinator HOST:PORT --num-processes N
--process-id I (or --distributed), the same folders and --out on a shared file system.

Ctrl-C or SIGTERM: the run writes a checkpoint and exits 130; a loss that became non-finite
exits 1."""


def run(args: argparse.Namespace) -> int:
    """Run train-sanet / train-adain; the exit status (errors raise, as jaxstyle.cli wants)."""
    kind = args.command.removeprefix("train-")
    fields = {name: getattr(args, name) for name in _DEFAULTS
              if getattr(args, name, None) is not None}
    config = TrainConfig(kind=kind, **fields,
                         compute_dtype="bfloat16" if args.bf16 else "float32")
    hosts = _hosts(args)
    view = live.View(args, kind="train", title=f"train-{kind} -> {args.out}",
                     download_name="samples.png", serve=args.process_id in (None, 0),
                     stop_message=_STOP)
    with view:
        result, quiet = _train(args, kind, config, hosts, view)
        return _report(result, args.out, quiet)


def _train(args, kind: str, config: TrainConfig, hosts, view: live.View):
    """Check the data and the run directory, start JAX (and the hosts), train; (the
    result, whether this process stays quiet)."""
    from jaxstyle import runtime
    from jaxstyle.arbitrary import trainer
    from jaxstyle.arbitrary.weights import read_encoder

    view.phase("loading", "listing the images, reading the encoder")
    content = list_images(args.content_dir, "--content-dir")
    style = list_images(args.style_dir, "--style-dir")
    _check_run_dir(args.out, args.resume, config.steps, create=False)
    encoder = read_encoder(kind, args.vgg)
    init = _init(kind, args.init_from)

    if not runtime.backends_initialized():
        runtime.set_xla_cpu_flags(runtime.CPU_TRAIN_FLAGS)
    if hosts is not None:
        _initialize_hosts(*hosts)
    import jax

    devices = jax.devices(args.device) if args.device else jax.devices()
    runtime.enable_compile_cache(enabled=not args.no_compile_cache)
    mesh = trainer.step.batch_mesh(devices)
    trainer.step.check_batch(config.batch, mesh)
    trainer.step.check_memory(config, mesh, args.memory_limit)
    _check_run_dir(args.out, args.resume, config.steps, create=True)  # checked: now create
    view.describe(settings={"config": dataclasses.asdict(config), "batch": config.batch,
                            "content_dir": str(args.content_dir), "content_files": len(content),
                            "style_dir": str(args.style_dir), "style_files": len(style),
                            "out": str(args.out), "resume": args.resume},
                  devices=devices)
    view.phase("compiling")
    quiet = args.quiet or jax.process_index() != 0
    flag = InterruptFlag(quiet, signals=(signal.SIGINT, signal.SIGTERM), message=_STOP)
    with Bar(quiet, unit="step", desc=f"train-{kind}", total=config.steps,
             print_every=config.log_every) as bar, flag:
        def progress(p) -> None:
            rate = "" if p.images_per_s is None else f"  {p.images_per_s:.3g} img/s"
            bar.update(p.step, "  ".join(f"{k} {v:.4g}" for k, v in p.losses.items()) + rate)
            view.train_progress(p, _samples(args.out, p.step, config.sample_every))

        result = trainer.train(config, args.out, content=content, style=style, encoder=encoder,
                               init=init, resume=args.resume, callback=progress,
                               should_stop=lambda: flag.is_set() or view.stopped,
                               devices=devices)
    if view.live is not None:
        final = _samples(args.out, result.step, config.sample_every, final=True)
        if final is not None:
            view.live.set_image_file(final, step=result.step)
    done = {"completed": "done", "interrupted": "interrupted"}.get(result.status, "failed")
    view.finish(done, f"{result.status} at step {result.step}",
                exit_code={"done": EXIT_OK, "interrupted": EXIT_INTERRUPTED}.get(done, 1),
                outputs=[str(result.model)] if result.model else None)
    return result, quiet


def _samples(out: Path, step: int, every: int, final: bool = False) -> Path | None:
    """The newest sample sheet written by step `step` (the trainer writes one every
    `every` steps after the progress call of that step, and one at the end)."""
    if not every:
        return None
    candidates = [step] if final else []
    candidates += [step - step % every, step - step % every - every]
    return next((out / f"samples_{s}.png" for s in candidates
                 if s > 0 and (out / f"samples_{s}.png").is_file()), None)


def _report(result, out: Path, quiet: bool) -> int:
    if result.skipped and not quiet:
        path, why = result.skipped_examples[0] if result.skipped_examples else ("?", "?")
        print(f"jaxstyle: warning: skipped {result.skipped} unreadable image reads, e.g. "
              f"{path}: {why}", file=sys.stderr)
    if result.status == "nonfinite":
        raise files.InputError(
            f"the loss became non-finite at step {result.step}; the newest checkpoint is step "
            f"{result.checkpoint} (try a lower --learning-rate, or --bf16 off)")
    if result.status == "interrupted":
        if not quiet:
            print(f"jaxstyle: interrupted at step {result.step}; checkpoint written, continue with "
                  "--resume", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    if not quiet:
        total = result.losses["total"] if result.losses else float("nan")
        print(f"wrote {result.model} ({result.step} steps, loss {total:.4g}; log "
              f"{out / 'log.jsonl'})")
    return EXIT_OK


def _hosts(args) -> tuple | None:
    """(coordinator, processes, id) for jax.distributed.initialize, () for auto-detection,
    None for one host; UsageError for an incomplete set."""
    given = [args.coordinator, args.num_processes, args.process_id]
    if all(v is None for v in given):
        return () if args.distributed else None
    if any(v is None for v in given):
        raise UsageError("several hosts need --coordinator, --num-processes and --process-id "
                         "together (or --distributed alone)")
    if args.process_id >= args.num_processes:
        raise UsageError(f"--process-id {args.process_id} must be below --num-processes "
                         f"{args.num_processes}")
    return tuple(given)


def _initialize_hosts(*hosts) -> None:
    """jax.distributed.initialize, with gloo for CPU collectives (the CPU backend has none
    of its own across processes; GPU/TPU ignore the setting)."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if hosts:
        coordinator, count, index = hosts
        jax.distributed.initialize(coordinator, num_processes=count, process_id=index)
    else:
        jax.distributed.initialize()


def _check_run_dir(out: Path, resume: bool, total_steps: int, create: bool) -> None:
    """The run directory can be written (`create`: made now, else its nearest existing parent
    checked), and holds checkpoints exactly when resuming, the newest before step
    `total_steps` (else there is nothing to train)."""
    if out.exists() and not out.is_dir():
        raise files.InputError(f"--out {out}: exists and is not a directory")
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise files.InputError(f"--out {out}: {files.os_error_problem(out, err)}") from None
    existing = next(p for p in (out, *out.parents) if p.exists())
    problem = files.target_problem(existing / "log.jsonl")
    if problem:
        raise files.InputError(f"--out {out}: {problem}")
    steps = sorted(int(p.name) for p in (out / "checkpoints").glob("*") if p.name.isdigit())
    if resume and not steps:
        raise files.InputError(f"--resume: {out} holds no checkpoint")
    if not resume and steps:
        raise UsageError(f"--out {out} holds checkpoints up to step {steps[-1]}: pass --resume "
                         "to continue that run, or choose another --out")
    if resume and steps[-1] >= total_steps:
        raise UsageError(f"--resume: {out} is at step {steps[-1]}, --steps is {total_steps}: "
                         "nothing to train (raise --steps to continue)")


def _init(kind: str, sources: list[str] | None):
    """The trainable params from --init-from (None: fresh): a model .npz of `kind`, or the
    released decoder (and SANet Transform) files."""
    from jaxstyle.arbitrary.released import read_released
    from jaxstyle.arbitrary.weights import PARTS, read_model

    if sources is None:
        return None
    if len(sources) == 1 and sources[0].lower().endswith(".npz"):
        found, params = read_model(sources[0])
        if found != kind:
            article = "an" if found == "adain" else "a"
            raise files.WeightsError(f"--init-from {sources[0]}: {article} {found} model, not "
                                     f"{kind}")
        return {part: params[part] for part in PARTS[kind] if part != "encoder"}
    layouts = ("decoder", "transformer")[:1 + (kind == "sanet")]
    if len(sources) != len(layouts) or any(s.lower().endswith(".npz") for s in sources):
        raise UsageError("--init-from: give a jaxstyle model .npz or the released " + (
            "DECODER.pth,TRANSFORMER.pth" if kind == "sanet" else "decoder .pth") +
            f", got {','.join(sources)}")
    params = {"decoder": read_released(sources[0], "decoder")}
    if kind == "sanet":
        params["transform"] = read_released(sources[1], "transformer")
    return params
