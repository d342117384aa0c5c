"""The terminal side of long commands: progress bars and Ctrl-C.

`Bar` shows progress to a person (a tqdm bar when stderr is a terminal, plain lines every N
steps otherwise, e.g. in a log); `InterruptFlag` turns Ctrl-C into a flag that the run's
callback reads between compiled chunks, so the command can write its best result and exit
130. Used by every `jaxstyle` command that runs for long.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

PROG = "jaxstyle"
EXIT_INTERRUPTED = 130


class Bar:
    """Progress for a person: a tqdm bar when stderr is a terminal, else a line every
    `print_every` steps (and one when a download starts)."""

    def __init__(self, quiet: bool, *, unit: str, desc: str, total: int | None = None,
                 print_every: int = 0) -> None:
        self.quiet, self.unit, self.desc, self.total = quiet, unit, desc, total
        self.print_every, self.bar, self.started, self.last = print_every, None, False, -1

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def _start(self, total: int | None) -> None:
        self.started = True
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=self.unit, unit_scale=self.unit == "B",
                            desc=self.desc, file=sys.stderr, dynamic_ncols=True,
                            leave=self.unit != "B")
        elif self.unit == "B":
            print(f"downloading {self.desc}", file=sys.stderr, flush=True)

    def bytes(self, done: int, total: int | None) -> None:
        if not self.quiet:
            if not self.started:
                self._start(total)
            if self.bar is not None:
                self.bar.update(done - self.bar.n)

    def update(self, done: int, text: str = "", desc: str = "") -> None:
        """`done` of `total` units, with `text` after the bar (or on the line)."""
        if self.quiet:
            return
        if not self.started:
            self._start(self.total)
        if self.bar is not None:
            self.bar.set_description_str(desc, refresh=False)
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(done - self.bar.n)
        elif self.print_every and done != self.last and (
                done % self.print_every == 0 or done == self.total):
            self.last = done
            print(f"{self.unit} {done}/{self.total}  {text}".rstrip(), file=sys.stderr,
                  flush=True)

    def steps(self, progress) -> None:
        """A style transfer's `Progress`: steps done, objective evaluations, the losses, the
        stage."""
        self.update(progress.step, _losses_text(progress),
                    f"{progress.stage + 1}/{progress.num_stages}"
                    if progress.num_stages > 1 else "")


def _losses_text(progress) -> str:
    """"evals E  total ...  content ...": E the evaluations (summed over the settings of a
    sweep, whose losses show as a range)."""
    losses = progress.shown_losses()
    evaluations = getattr(progress, "evaluations", None)
    evals = "" if evaluations is None else f"evals {int(sum(evaluations))}  "
    if len(losses["total"]) == 1:
        return evals + "  ".join(f"{name} {v[0]:.4g}" for name, v in losses.items())
    return (f"{evals}{len(losses['total'])} settings, total {min(losses['total']):.4g} .. "
            f"{max(losses['total']):.4g}")


STOP_MESSAGE = ("stopping after the current chunk, then writing the best image so far "
                "(Ctrl-C again quits without saving)")


class InterruptFlag:
    """Ctrl-C (and any other of `signals`, e.g. SIGTERM) sets a flag that the progress
    callback reads between compiled chunks: a KeyboardInterrupt raised inside a running JAX
    call crashed or hung the process in 2 of 6 trials, the flag stopped cleanly in 8 of 8.
    A second signal exits at once (130). `message` says what happens next."""

    def __init__(self, quiet: bool, *, signals: tuple[int, ...] = (signal.SIGINT,),
                 message: str = STOP_MESSAGE) -> None:
        self.event, self.quiet, self.previous = threading.Event(), quiet, {}
        self.signals, self.message = signals, message

    def __enter__(self) -> InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame) -> None:
        if self.event.is_set():
            os.write(2, f"{PROG}: interrupted again, exiting without saving\n".encode())
            os._exit(EXIT_INTERRUPTED)
        self.event.set()
        if not self.quiet:  # os.write: print() inside a handler can raise "reentrant call"
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            os.write(2, f"\n{PROG}: {name}: {self.message}\n".encode())

    def is_set(self) -> bool:
        return self.event.is_set()
