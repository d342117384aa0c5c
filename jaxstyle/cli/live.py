"""`--serve [HOST:]PORT` for a long command: its live page, from the command's side.

A command adds the options with `options.add_serve_options(group)` and, in `run(args)`:

    view = live.View(args, kind="stylize", title="cat.jpg -> out.png")  # binds the port now
    with view:                                   # the page is up; closed at the end
        view.describe(settings=..., devices=...)  # once known
        view.phase("compiling")
        ... callback: view.progress(p); return not (flag.is_set() or view.stopped)
        view.finish("done", exit_code=0, images=result.images, outputs=[...])

Without --serve every method does nothing, so the command's code has one path. The port
is bound when the View is made: a port in use is a one-line error before any work. A
run's failure ends the page with its one-line message.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from jaxstyle import files
from jaxstyle.cli.options import PROG
from jaxstyle.web.address import Address

CLOSE_GRACE_S = 2.0  # pages get this long to take the final image before the process ends


class View:
    """The live page of one command's run, or nothing when --serve is not given."""

    def __init__(self, args: argparse.Namespace, *, kind: str, title: str,
                 download_name: str = "jaxstyle.png", serve: bool = True,
                 stop_message: str = "stopping after the current chunk, then writing the "
                                     "result so far") -> None:
        self.live = self.server = None
        self.stop_message = stop_message
        self.quiet = getattr(args, "quiet", False)
        address: Address | None = getattr(args, "serve", None)
        if address is None and getattr(args, "open_browser", False):
            address = Address("127.0.0.1", 0)
        if address is None or not serve:
            return
        try:
            from jaxstyle.web import address as addresses
            from jaxstyle.web.live import Live
            from jaxstyle.web.server import Server
            from jaxstyle.web.view import live_app
        except ImportError as err:
            raise files.InputError(f"--serve needs the web extra: pip install 'jaxstyle[web]' "
                                   f"({err})") from None
        try:
            sock = addresses.bind(address)
        except OSError as err:
            raise files.InputError(f"--serve: {err}") from None
        self.live = Live(kind=kind, title=title, download_name=download_name)
        self.live.on_stop(self._stopping)
        self.url = addresses.url(address, sock)
        self.server = Server(live_app(self.live, address), sock)
        self.address, self.open_browser = address, args.open_browser

    # --------------------------------------------------------------------- lifetime

    def __enter__(self) -> View:
        if self.server is not None:
            self.server.start()
            where = " (every interface: anyone who reaches this machine can watch and stop " \
                    "the run)" if self.address.everywhere else ""
            print(f"{PROG}: watch the run at {self.url}{where}", file=sys.stderr, flush=True)
            if self.open_browser:
                threading.Thread(target=_open, args=(self.url,), daemon=True).start()
        return self

    def __exit__(self, kind, err, tb) -> None:
        if self.live is None:
            return
        if err is not None:
            status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            self.live.finish(status, " ".join(str(err).split()) or type(err).__name__)
        self.server.close(CLOSE_GRACE_S, lambda: self.live.watchers)

    # ---------------------------------------------------------------- what it shows

    def describe(self, *, settings: dict[str, Any] | None = None,
                 devices: Sequence[Any] | None = None, cells: Any = None,
                 compose: Callable | None = None) -> None:
        """What the page shows besides the progress: the settings, the devices, several
        images' cells (a sweep's `jaxstyle.WeightGrid`: its cells, and its contact sheet
        for Download; or a `jaxstyle.web.live.Cells` with `compose` for Download)."""
        if self.live is None:
            return
        from jaxstyle.web import device
        from jaxstyle.web.live import Cells
        from jaxstyle.web.server import SITE

        if settings is not None:
            self.live.settings = settings
        if devices:
            self.live.device = device.describe(devices)
            self.server.app[SITE].memory.devices = list(devices)
        if cells is not None:
            grid = not isinstance(cells, Cells)
            self.live.cells = Cells.of_grid(cells) if grid else cells
            self.live.compose = compose or (cells.sheet if grid else None)
        self.live.refresh()

    def phase(self, status: str, message: str | None = None) -> None:
        if self.live is not None:
            self.live.phase(status, message)

    def update(self, step: int, total: int | None, losses: dict[str, float], **kwargs) -> None:
        """A progress point (`jaxstyle.web.live.Live.update`: images=a function giving
        them, called only while a page watches)."""
        if self.live is not None:
            self.live.update(step, total, losses, **kwargs)

    def progress(self, progress) -> None:
        if self.live is not None:
            self.live.progress(progress)

    def train_progress(self, progress, samples=None) -> None:
        if self.live is not None:
            self.live.train_progress(progress, samples)

    def finish(self, status: str, message: str | None = None, **kwargs) -> None:
        if self.live is not None:
            self.live.finish(status, message, **kwargs)

    @property
    def stopped(self) -> bool:
        """Whether Stop was pressed on the page."""
        return self.live is not None and self.live.stopped

    def callback_every(self, every: int, platform: str) -> int:
        """The run's callback interval: on a CPU, with a page, every step (a step there
        takes far longer than the host round trip a callback costs), else `every`."""
        return 1 if self.live is not None and platform == "cpu" else every

    def _stopping(self) -> None:
        if not self.quiet:
            print(f"\n{PROG}: Stop pressed on the page: {self.stop_message}", file=sys.stderr,
                  flush=True)


def _open(url: str) -> None:
    import webbrowser

    if not webbrowser.open(url):
        print(f"{PROG}: could not open a browser here; open {url} yourself", file=sys.stderr)
