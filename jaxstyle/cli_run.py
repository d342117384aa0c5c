"""A command-line run, from validated options to written files (the CLI's other half).

`jaxstyle.cli` parses and validates the command line into a StyleConfig and `RunOptions`;
`run` checks every file before any heavy work, loads images and weights, calls `stylize`,
`stylize_pyramid` or `sweep` with progress (tqdm or plain lines), intermediate saves and
Ctrl-C handling, and writes the image(s) and the --json summary. Like `cli`, and unlike
the library, this module prints and writes the files the user named.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxstyle
from jaxstyle import __version__, files, runtime
from jaxstyle import image as image_io
from jaxstyle.config import StyleConfig
from jaxstyle.image import ImageError
from jaxstyle.pyramid import stage_iterations
from jaxstyle.sweep import save_sweep
from jaxstyle.sweep import sweep as run_sweep  # the package re-exports the function as .sweep
from jaxstyle.weights import WeightsError

PROG = "jaxstyle"
# Steps per compiled chunk at most: the CLI hears from the run (progress, saves, Ctrl-C)
# this often; print/save intervals are met exactly by using a divisor of them.
MAX_CALLBACK_EVERY = 10
# Library errors that mean a bad input file, an unwritable output or missing weights:
# one line, exit 1.
RUNTIME_ERRORS: tuple[type[Exception], ...] = (OSError, ImageError, WeightsError)

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class RunError(Exception):
    """The command line was fine but the run cannot go on: exit 1."""


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Everything besides the StyleConfig: files, sizes, intervals, runtime switches."""

    content: Path
    styles: tuple[Path, ...]
    output: Path
    init_path: Path | None
    image_size: int
    preserve_colors: str
    print_every: int
    save_every: int
    json_path: Path | None
    weights: str | None
    device: str | None
    compile_cache: bool
    quiet: bool
    sweep: Any = None  # a jaxstyle.WeightGrid when weight lists or --ratio make a sweep
    batch_size: int | None = None


# --------------------------------------------------------------------------- checks


def check_input_file(path: Path, what: str) -> None:
    """RunError unless `path` is an existing, readable regular file."""
    if not path.exists():
        raise RunError(f"{what} {path} not found")
    if not path.is_file():
        raise RunError(f"{what} {path} is not a file")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as err:
        raise RunError(f"{what} {path} cannot be read: {err.strerror or err}") from None


def check_file_writable(path: Path, what: str) -> None:
    """RunError unless a file can be created at `path` (before any long run)."""
    problem = files.target_problem(path)
    if problem:
        raise RunError(f"{what} {path}: {problem}")


def step_path(output: Path, step: int) -> Path:
    """Where the intermediate image of `step` goes: OUT_<step>.png next to OUT."""
    return output.with_name(f"{output.stem}_{step}{output.suffix}")


# --------------------------------------------------------------------------- device


def select_device(name: str | None):
    """The jax.Device to run on; selects the platform before JAX starts its backends.

    cpu/tpu: sets `jax_platforms` while the backends are not yet initialized, so JAX does
    not start (and preallocate) other accelerators. gpu: leaves discovery to JAX (the "gpu"
    alias would demand every GPU plugin) and picks its first GPU. RunError if unavailable.
    """
    if name is None:
        return jax.devices()[0]
    previous = jax.config.jax_platforms
    if name in ("cpu", "tpu") and not _backends_initialized():
        jax.config.update("jax_platforms", name)
    try:
        return jax.devices(name)[0]
    except (RuntimeError, AssertionError) as err:
        # Undo, so that a caller that goes on in this process (tests, notebooks) still works.
        if not _backends_initialized():
            jax.config.update("jax_platforms", previous)
        reason = " ".join(str(err).split()).split(" (set JAX_PLATFORMS")[0]
        reason = reason or type(err).__name__
        raise RunError(f"--device {name}: no {name} device available ({reason})") from None


def _backends_initialized() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # private API moved: assume a fresh process
        return False


# --------------------------------------------------------------------------- progress


class Reporter:
    """Progress for the user: a tqdm bar on a terminal, plain lines every N steps otherwise."""

    def __init__(self, total_steps: int, *, print_every: int, quiet: bool,
                 stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.print_every = print_every
        self.quiet = quiet
        self.total = total_steps
        self.bar = None
        self._last_printed = -1
        if not quiet and _isatty(self.stream):
            from tqdm import tqdm

            # "compiling" until the first chunk reports (the first compile takes seconds).
            self.bar = tqdm(total=total_steps, unit="step", file=self.stream,
                            dynamic_ncols=True, leave=True, desc="compiling")

    def update(self, step: int, losses: dict[str, float]) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            if self.bar.desc:
                self.bar.set_description_str("", refresh=False)
            self.bar.set_postfix_str(format_losses(losses, short=True), refresh=False)
            self.bar.update(max(0, step - self.bar.n))
            return
        due = self.print_every and (step % self.print_every == 0 or step == self.total)
        if due and step != self._last_printed:
            self._last_printed = step
            print(f"step {step}/{self.total}  {format_losses(losses)}", file=self.stream,
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_losses(losses: dict[str, float], short: bool = False) -> str:
    order = [k for k in ("total", "content", "style", "tv") if k in losses]
    order += [k for k in losses if k not in order]
    sep = " " if short else "  "
    return sep.join(f"{k} {losses[k]:.4g}" for k in order)


class DownloadProgress:
    """`load_vgg19`'s progress(done_bytes, total_or_None): a byte bar on a terminal, else one
    line when the (one-time) download starts."""

    def __init__(self, *, quiet: bool, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.bar = None
        self.started = False

    def __call__(self, done: int, total: int | None) -> None:
        if self.quiet:
            return
        if not self.started:
            self.started = True
            size = f" ({total / 1e6:.0f} MB)" if total else ""
            if _isatty(self.stream):
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="B", unit_scale=True, file=self.stream,
                                desc="VGG19 weights", leave=False)
            else:
                print(f"downloading the VGG19 weights{size}, once; later runs use the cache",
                      file=self.stream, flush=True)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# --------------------------------------------------------------------------- Ctrl-C


class InterruptFlag:
    """A SIGINT handler that only sets a flag (checked between compiled chunks).

    KeyboardInterrupt raised inside a running JAX call crashed or hung the process in 2 of 6
    trials (the team's shared FINDINGS.md, beside this repository); a flag checked by the
    progress callback stopped cleanly in 8 of 8.
    A second Ctrl-C exits at once (130) for a user who does not want to wait for the chunk.
    """

    def __init__(self, message: str | None = None) -> None:
        self.event = threading.Event()
        self.message = message
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum, frame) -> None:
        if self.event.is_set():
            os.write(2, b"jaxstyle: interrupted again, exiting without saving\n")
            os._exit(EXIT_INTERRUPTED)
        self.event.set()
        if self.message:
            # os.write, not print: a handler that prints while the interrupted code is
            # printing to the same stream raises "reentrant call".
            os.write(2, f"\n{PROG}: {self.message}\n".encode())

    def is_set(self) -> bool:
        return self.event.is_set()


def one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        name = f" {err.filename}" if err.filename else ""
        return f"{err.strerror}:{name}"
    return " ".join(str(err).split()) or type(err).__name__


def run(config: StyleConfig, opts: RunOptions) -> int:
    """Check every file, load, stylize with progress and Ctrl-C handling, write the outputs."""
    t_start = time.perf_counter()
    # Cheap checks first: a typo must not cost a weight load and a compile.
    check_input_file(opts.content, "content image")
    for k, style in enumerate(opts.styles):
        check_input_file(style, "style image" if len(opts.styles) == 1 else f"style image {k}")
    if opts.init_path is not None:
        check_input_file(opts.init_path, "init image")
    if opts.weights is not None:
        check_input_file(Path(opts.weights), "weights file")
    try:
        image_io.check_writable(opts.output)
    except ImageError as err:
        raise RunError(f"output {err}") from None
    if opts.json_path is not None:
        check_file_writable(opts.json_path, "--json")

    if not _backends_initialized():
        runtime.set_xla_cpu_flags()  # CPU memory: must precede the first JAX computation
    device = select_device(opts.device)
    # Off with --no-compile-cache or JAXSTYLE_NO_COMPILE_CACHE=1 (runtime reads the env).
    runtime.enable_compile_cache(enabled=opts.compile_cache)

    # Only for an explicit --device: jit caches are keyed on the default-device context, so
    # entering it needlessly would make a library call after main() (tests, notebooks)
    # recompile.
    context = jax.default_device(device) if opts.device else contextlib.nullcontext()
    with context:
        return _run_on_device(config, opts, device, t_start)


def _run_on_device(config: StyleConfig, opts: RunOptions, device, t_start: float) -> int:
    timings: dict[str, float] = {}

    # Images first (fast, and the likeliest bad input), then the weights.
    t0 = time.perf_counter()
    try:
        content = image_io.load_image(opts.content, max_side=opts.image_size)
        if config.scales:  # a pyramid ends at its last scale, up or down
            content = image_io.resize_to(content, image_io.scale_shape(content.shape,
                                                                        config.scales[-1]))
        styles = []
        for path in opts.styles:
            style = image_io.load_image(path)
            if not config.scales:  # a pyramid resizes the original styles at every stage
                size = image_io.style_size_for(content.shape, style.shape, config.style_scale)
                style = image_io.resize_to(style, size)
            styles.append(style)
        init_image = None
        if opts.init_path is not None:
            init_image = image_io.resize_to(image_io.load_image(opts.init_path),
                                            content.shape[:2])
    except RUNTIME_ERRORS as err:
        raise RunError(one_line(err)) from err
    timings["image_load_s"] = time.perf_counter() - t0

    # Colour preservation (Gatys et al. 2016, "Preserving Color in Neural Artistic Style
    # Transfer"): histogram recolours the styles before the run; luminance runs on luminance
    # images and puts the content's chroma back on every image written.
    run_content, run_styles = image_io.prepare_color_inputs(content, styles,
                                                            opts.preserve_colors)
    if init_image is not None:
        if opts.preserve_colors == "luminance":
            init_image = image_io.luminance_image(init_image)
        config = config.replace(init=np.asarray(init_image, np.float32))

    content_at = {content.shape[:2]: content}  # the content resized once per stage size

    def finish(img: np.ndarray) -> np.ndarray:
        """The image the user gets from an iterate (of any pyramid stage's size)."""
        img = np.asarray(img)
        if img.shape[:2] not in content_at:
            content_at[img.shape[:2]] = image_io.resize_to(content, img.shape[:2])
        return image_io.preserve_colors(img, content_at[img.shape[:2]], opts.preserve_colors)

    t0 = time.perf_counter()
    download = DownloadProgress(quiet=opts.quiet)
    try:
        weights = jaxstyle.load_vgg19(opts.weights, progress=download)
    except RUNTIME_ERRORS as err:
        raise RunError(one_line(err)) from err
    finally:
        download.close()
    timings["weight_load_s"] = time.perf_counter() - t0

    settings = run_settings(config, opts, weights, content.shape)
    metadata = {"jaxstyle": json.dumps(settings, sort_keys=True)}

    def save(path: Path, img: np.ndarray) -> None:
        try:
            image_io.save_image(path, img, metadata=metadata)
        except RUNTIME_ERRORS as err:
            raise RunError(one_line(err)) from err

    if opts.sweep is not None:
        return _run_sweep(config, opts, run_content, run_styles, weights, finish, settings,
                          metadata, timings, device, t_start)

    total_steps = sum(stage_iterations(config))  # config.iterations without --scales
    reporter = Reporter(total_steps, print_every=opts.print_every, quiet=opts.quiet)
    saved_steps: list[int] = []

    def callback(progress) -> bool:
        reporter.update(progress.step, progress.losses)
        if (opts.save_every and progress.step % opts.save_every == 0
                and 0 < progress.step < total_steps):
            path = step_path(opts.output, progress.step)
            save(path, finish(np.asarray(progress.image())))
            saved_steps.append(progress.step)
        return not flag.is_set()

    callback_every = math.gcd(MAX_CALLBACK_EVERY, opts.print_every, opts.save_every)
    flag = InterruptFlag(None if opts.quiet else
                         "Ctrl-C: stopping after the current chunk, then writing the best image "
                         "so far (Ctrl-C again quits without saving)")
    try:
        with flag:
            run = jaxstyle.stylize_pyramid if config.scales else jaxstyle.stylize
            result = run(run_content, run_styles, weights=weights, config=config,
                         callback=callback, callback_every=callback_every)
    finally:
        reporter.close()

    # Non-finite already at the initial image: no iterate is worth writing.
    nothing_to_save = result.stopped == "nonfinite" and result.steps == 0
    final = finish(np.asarray(result.image))
    if not nothing_to_save:
        save(opts.output, final)
    # The library's phases (targets_s, compile_s, steps_s) as they are; its total_s is the
    # stylize call, the CLI's total_s the whole command.
    timings.update({("stylize_s" if k == "total_s" else k): float(v)
                    for k, v in result.timings.items()})
    timings["total_s"] = time.perf_counter() - t_start

    status = result.stopped or "completed"
    if opts.json_path is not None:
        summary = run_summary(settings, result, timings, device, opts, saved_steps, status,
                              wrote_output=not nothing_to_save)
        files.write_json(opts.json_path, summary, sort_keys=True)

    steps_done = result.steps
    if result.stopped == "nonfinite":
        why = (result.message or "the loss became non-finite").rstrip(".")
        if nothing_to_save:
            parts = ", ".join(f"{k}={v:.4g}" for k, v in result.initial_losses.items())
            raise RunError(f"the loss is non-finite at the initial image ({parts}): check the "
                           "loss weights, the weights file and the input images. "
                           "Nothing written.")
        raise RunError(f"{why}. Wrote the best finite image (step {result.best_step}) to "
                       f"{opts.output}")
    if result.stopped == "interrupted":
        print(f"{PROG}: interrupted at step {steps_done}; wrote the best image so far "
              f"(step {result.best_step}) to {opts.output}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    if not opts.quiet:
        print(f"wrote {opts.output} ({final.shape[1]}x{final.shape[0]}, "
              f"{steps_done} steps, loss {result.best_loss:.4g}, "
              f"{timings['total_s']:.1f} s)")
    return EXIT_OK


def run_settings(config: StyleConfig, opts: RunOptions, weights, content_shape) -> dict:
    """The settings that made an image (PNG metadata and --json), JSON-serializable."""
    cfg = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "init" and not isinstance(value, str):
            value = str(opts.init_path)
        cfg[f.name] = list(value) if isinstance(value, tuple) else value
    return {
        "jaxstyle": __version__,
        "content": str(opts.content),
        "styles": [str(s) for s in opts.styles],
        "output": str(opts.output),
        "image_size": opts.image_size,
        "size_hw": [int(content_shape[0]), int(content_shape[1])],
        "preserve_colors": opts.preserve_colors,
        "weights": getattr(weights, "source", str(opts.weights)),
        "weights_convention": getattr(weights, "convention", None),
        "config": cfg,
    }


def run_summary(settings: dict, result, timings: dict, device, opts: RunOptions,
                saved_steps: list[int], status: str, wrote_output: bool = True) -> dict:
    """The --json document."""
    history = result.history
    # Non-finite values (a "nonfinite" run's last step) become null: JSON has no NaN.
    final_losses = {k: files.json_number(np.asarray(v)[-1]) for k, v in history.items() if len(v)}
    return {
        "status": status,
        "settings": settings,
        "output": str(opts.output) if wrote_output else None,
        "intermediate": [str(step_path(opts.output, s)) for s in saved_steps],
        "steps": int(result.steps),
        "message": result.message,
        "best_step": int(result.best_step),
        "best_loss": files.json_number(result.best_loss),
        "initial_losses": {k: files.json_number(v) for k, v in result.initial_losses.items()},
        "final_losses": final_losses,
        "timings": timings,
        "device": {"platform": device.platform, "kind": device.device_kind,
                   "count": jax.device_count(device.platform)},
        "jax": jax.__version__,
    }


def _run_sweep(config: StyleConfig, opts: RunOptions, content, styles, weights, finish,
               settings: dict, metadata: dict, timings: dict, device, t_start: float) -> int:
    """Run `jaxstyle.sweep` over opts.sweep; write the images, contact sheet and manifest."""
    grid = opts.sweep
    k = len(grid.labels)
    reporter = Reporter(config.iterations, print_every=opts.print_every, quiet=opts.quiet)

    def callback(progress) -> bool:
        total = progress.losses["total"]
        reporter.update(progress.step, {"settings": k, "total min": float(np.nanmin(total)),
                                        "max": float(np.nanmax(total))})
        return not flag.is_set()

    flag = InterruptFlag(None if opts.quiet else
                         "Ctrl-C: stopping after the current chunk, then writing the best "
                         "images so far (Ctrl-C again quits without saving)")
    try:
        with flag:
            result = run_sweep(
                content, styles, weights=weights, config=config, loss_weights=grid,
                batch_size=opts.batch_size, callback=callback,
                callback_every=math.gcd(MAX_CALLBACK_EVERY, opts.print_every))
    finally:
        reporter.close()
    if result.stopped == "nonfinite" and result.steps == 0:
        raise RunError("the loss is non-finite at the initial image for every setting: check "
                       "the loss weights, the weights file and the input images. Nothing "
                       "written.")
    timings.update({("sweep_s" if key == "total_s" else key): float(v)
                    for key, v in result.timings.items()})
    names = ", ".join(p.name for p in opts.styles)
    title = (f"{opts.content.name} in the style of {names}: {config.optimizer}, "
             f"{result.steps} steps")
    extra = {"status": result.stopped or "completed", "run": settings,
             "device": {"platform": device.platform, "kind": device.device_kind,
                        "count": result.devices}}

    def image_metadata(i: int | None) -> dict:
        """Each image carries its own weights; the sheet the shared settings and the grid."""
        if i is None:
            return {**metadata, "jaxstyle_sweep": json.dumps(result.manifest()["grid"])}
        run = json.loads(json.dumps(settings))
        run["config"].update(content_weight=float(result.loss_weights.content[i]),
                             style_weight=float(result.loss_weights.style[i]),
                             tv_weight=float(result.loss_weights.tv[i]))
        return {"jaxstyle": json.dumps(run, sort_keys=True)}

    # The whole command's phases (image and weight loading too), up to writing the files.
    timings["total_s"] = time.perf_counter() - t_start
    extra["timings"] = dict(timings)
    manifest = save_sweep(result, opts.output, manifest_path=opts.json_path,
                                       transform=finish, metadata=image_metadata, title=title,
                                       extra=extra)
    failed = [label for label, bad in zip(result.labels, result.nonfinite, strict=True) if bad]
    if failed:
        print(f"{PROG}: warning: loss became non-finite for {', '.join(failed)}; wrote their "
              "best finite images", file=sys.stderr, flush=True)
    if result.stopped == "interrupted":
        print(f"{PROG}: interrupted at step {result.steps}; wrote the best images so far, the "
              f"contact sheet {opts.output} and {manifest['files']['manifest']}",
              file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    if len(failed) == k:
        raise RunError("the loss became non-finite for every setting; wrote the best finite "
                       f"images and {opts.output}")
    if not opts.quiet:
        first = manifest["settings"][0]["file"]
        print(f"wrote {k} images ({first}, ...), the contact sheet {opts.output} and "
              f"{manifest['files']['manifest']} "
              f"({result.steps} steps, {timings['total_s']:.1f} s)")
    return EXIT_OK


