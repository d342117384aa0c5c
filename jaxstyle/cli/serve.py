"""`jaxstyle serve [HOST:]PORT`: the browser app (`jaxstyle.web.app`).

    jaxstyle serve 8000 --model sanet.npz --weights vgg19.npz --images photos/

Upload or pick a content and styles, preview the feed-forward model's result (--model),
refine it with the Gatys optimization or sweep the style weight, watch each run live, and
download the results, which the server keeps in its folder (--out) with their settings.
Runs go to the device one at a time, in the order asked for. Ctrl-C (or SIGTERM) lets the
run on the device write its result, then stops the server (exit 0).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from jaxstyle import files
from jaxstyle.cli.console import Bar, InterruptFlag
from jaxstyle.cli.options import (
    DEFAULT_IMAGE_SIZE,
    EXIT_OK,
    PROG,
    add_command,
    address,
    names,
    numbers,
    start_jax,
)
from jaxstyle.config import StyleConfig

_STOP = ("stopping: the run on the device (if any) writes its result, then the server ends "
         "(a second signal quits at once)")
EPILOG = """\
The server binds 127.0.0.1 unless a host is given (from another machine: ssh -L
8000:127.0.0.1:8000 HOST, then open http://localhost:8000/). 0.0.0.0 serves every interface:
anyone who reaches the machine can then use it.

exit status: 0 stopped by Ctrl-C or SIGTERM; 1 a missing file, a folder that cannot be
written, the port in use, weights unavailable; 2 usage error."""


def add_parsers(sub) -> dict[str, argparse.ArgumentParser]:
    p = add_command(sub, "serve", run, epilog=EPILOG, description=(
        "A page to stylize in the browser: upload or pick images, preview the SANet/AdaIN\n"
        "result, refine it with the Gatys optimization, sweep the style weight, download."))
    p.add_argument("address", metavar="[HOST:]PORT", type=address,
                   help="where to serve (e.g. 8000, or 0 for any free port)")
    g = p.add_argument_group("models and images")
    g.add_argument("--model", metavar="FILE.npz",
                   help="a SANet or AdaIN model (jaxstyle convert sanet|adain, or "
                        "train-sanet's output): previews, and Refine's start image")
    g.add_argument("--vgg", metavar="FILE",
                   help="the model's encoder (vgg_normalised.pth) when the model has none")
    g.add_argument("--weights", metavar="FILE",
                   help="VGG19 weights of the optimization (as jaxstyle --weights)")
    g.add_argument("--images", metavar="DIR", type=Path,
                   help="offer this folder's images on the page")
    g.add_argument("--out", metavar="DIR", type=Path, default=Path("jaxstyle-serve"),
                   help="the server's folder: results (result_<n>.png, with their "
                        "settings) and uploads/ (default ./jaxstyle-serve)")
    g.add_argument("--image-size", metavar="PX", type=numbers(int, many=False, minimum=16),
                   default=DEFAULT_IMAGE_SIZE,
                   help=f"the page's default output size (default {DEFAULT_IMAGE_SIZE})")
    g.add_argument("--content-layers", metavar="LAYERS", type=names,
                   help="every run's content layers (as jaxstyle --content-layers)")
    g.add_argument("--style-layers", metavar="LAYERS", type=names,
                   help="every run's style layers (as jaxstyle --style-layers)")
    g.add_argument("--max-upload", metavar="MB", type=numbers(many=False, minimum=1),
                   default=256, help="largest upload accepted (default 256 MB)")
    g = p.add_argument_group("runtime")
    g.add_argument("--device", choices=("cpu", "gpu", "tpu"),
                   help="run on this platform (default: JAX's choice)")
    g.add_argument("--no-compile-cache", action="store_true",
                   help="do not use the persistent compilation cache")
    g.add_argument("--open-browser", action="store_true",
                   help="open the page in this machine's browser")
    g.add_argument("--quiet", action="store_true", help="no messages but errors")
    g.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return {"serve": p}


def run(args: argparse.Namespace) -> int:
    """Check the folders, bind the port, load the weights, serve until Ctrl-C."""
    try:
        from jaxstyle.web import address as addresses
        from jaxstyle.web.app import Hub, serve_app
        from jaxstyle.web.gallery import Gallery
        from jaxstyle.web.inputs import Inputs
        from jaxstyle.web.jobs import Queue, Runner
        from jaxstyle.web.live import Audience
        from jaxstyle.web.server import Server
    except ImportError as err:
        raise files.InputError(f"jaxstyle serve needs the web extra: pip install "
                               f"'jaxstyle[web]' ({err})") from None
    out = args.out
    try:
        gallery = Gallery(out)
    except OSError as err:
        raise files.InputError(f"--out {out}: {files.os_error_problem(out, err)}") from None
    problem = files.target_problem(out / "result.png")
    if problem:
        raise files.InputError(f"--out {out}: {problem}")
    base = StyleConfig(image_size=args.image_size, **{
        name: getattr(args, name) for name in ("content_layers", "style_layers")
        if getattr(args, name) is not None})
    inputs = Inputs(out / "uploads", args.images, max_bytes=int(args.max_upload * 2**20))
    sock = addresses.bind(args.address)  # OSError: one line, exit 1, before any work
    url = addresses.url(args.address, sock)

    device = start_jax(args)
    import jaxstyle
    from jaxstyle.web import device as device_info

    with Bar(args.quiet, unit="B", desc="VGG19 weights (once; cached)") as bar:
        weights = jaxstyle.load_vgg19(args.weights, progress=bar.bytes)
    model = _model(args.model, args.vgg)
    flag = InterruptFlag(args.quiet, signals=(signal.SIGINT, signal.SIGTERM), message=_STOP)
    audience = Audience()
    server = None
    queue = Queue()
    runner = Runner(weights=weights, model=model, inputs=inputs, gallery=gallery,
                    audience=audience, device=device_info.describe([device]),
                    devices=[device], stop_all=flag.event)
    hub = Hub(inputs, gallery, queue, runner, audience, base)
    server = Server(serve_app(hub, args.address, [device]), sock)
    queue.notify = runner.notify = server.changes.poke
    with flag, server.start():
        if not args.quiet:
            where = " (every interface)" if args.address.everywhere else ""
            print(f"{PROG}: serving at {url}{where}; results go to {out}/ (Ctrl-C stops)",
                  file=sys.stderr, flush=True)
        if args.open_browser:
            import webbrowser

            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        while not flag.is_set():
            job = queue.take(0.25)
            if job is not None:
                runner.run(job)
                queue.done(job)
        server.close(1.0, lambda: audience.count)
    hub.previews.shutdown(wait=False, cancel_futures=True)
    waiting = len(queue.state()["waiting"])
    if not args.quiet:
        left = f"; {waiting} queued run(s) not started" if waiting else ""
        print(f"{PROG}: server stopped{left}", file=sys.stderr, flush=True)
    return EXIT_OK


def _model(path: str | None, vgg: str | None):
    """The feed-forward model's params (its kind read from the file), or None."""
    if path is None:
        return None
    from jaxstyle.arbitrary import load_adain, load_sanet, read_model

    kind, _ = read_model(path)
    load = load_sanet if kind == "sanet" else load_adain
    return load(model=path, vgg=vgg)
