"""`jaxstyle sanet|adain`: arbitrary style in one forward pass.

    jaxstyle sanet CONTENT STYLE [STYLE ...] -o OUT.png --vgg vgg_normalised.pth \\
        --decoder decoder_iter_500000.pth --transformer transformer_iter_500000.pth
    jaxstyle adain CONTENT STYLE [STYLE ...] -o OUT.png --vgg vgg_normalised.pth \\
        --decoder decoder.pth

CONTENT is an image, a comma list of images or a directory of images; with several, -o names
a directory and each output is named after its content. Contents of the same size after
--image-size go through one compiled program in batches. A comma list on --alpha writes each
result (OUT_a<alpha>.png) and OUT as the labelled contact sheet of them, one program for all
alphas.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from jaxstyle import __version__, files
from jaxstyle.arbitrary.models import KINDS
from jaxstyle.cli.console import Bar, InterruptFlag
from jaxstyle.cli.options import (
    DEFAULT_IMAGE_SIZE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STATUS,
    PROG,
    UsageError,
    add_command,
    add_runtime_options,
    check_output,
    numbers,
    start_jax,
)
from jaxstyle.grids import format_weight
from jaxstyle.image import list_images, load_image, resize_to, save_image, scale_shape
from jaxstyle.sheet import contact_sheet

PAPERS = {"sanet": "SANet (Park and Lee, CVPR 2019)",
          "adain": "AdaIN (Huang and Belongie, ICCV 2017)"}


def add_parsers(sub) -> dict[str, argparse.ArgumentParser]:
    """The `sanet` and `adain` commands."""
    parsers = {}
    for kind in KINDS:
        p = add_command(sub, kind, run, epilog=EXIT_STATUS, description=(
            f"{PAPERS[kind]}: stylize CONTENT with STYLE in one forward pass,\n"
            "from the released weights (where each file is published: "
            "jaxstyle.arbitrary.weights)."))
        p.add_argument("content", metavar="CONTENT",
                       help="content image, comma list of images, or a directory")
        p.add_argument("styles", metavar="STYLE", nargs="+", help="style image file(s)")
        p.add_argument("-o", "--output", metavar="OUT", required=True, type=Path,
                       help="output image (one content) or directory (several)")
        add_model_options(p, kind)
        g = p.add_argument_group("style")
        g.add_argument("--alpha", metavar="A,...", type=numbers(),
                       help="content-style trade-off in [0, 1] (default 1: all style); a "
                            "comma list writes each and a contact sheet")
        g.add_argument("--style-blend-weights", metavar="B,...", type=numbers(),
                       help="one per style image, normalized to sum 1 (default equal)")
        g.add_argument("--preserve-colors", action="store_true",
                       help="recolour the styles to each content's colour statistics first")
        g.add_argument("--image-size", metavar="PX", type=numbers(int, many=False, minimum=1),
                       default=DEFAULT_IMAGE_SIZE,
                       help=f"longest side of each output (default {DEFAULT_IMAGE_SIZE}); the "
                            "content is scaled up or down to it")
        add_size_options(g, "contents")
        add_runtime_options(p.add_argument_group("output and runtime"),
                            json_help="write a JSON summary: inputs, outputs, timings, device")
        parsers[kind] = p
    return parsers


# The option groups of the feed-forward engines, shared with `jaxstyle video`.


def add_model_options(p: argparse.ArgumentParser, kind: str | None) -> None:
    """The "weights" group: --vgg, --decoder, --transformer (SANet; kind None: both
    engines), --model."""
    g = p.add_argument_group("weights" if kind else "sanet and adain weights")
    g.add_argument("--vgg", metavar="FILE", help="vgg_normalised.pth (the encoder)")
    g.add_argument("--decoder", metavar="FILE",
                   help={"sanet": "decoder_iter_500000.pth",
                         "adain": "decoder.pth or iter_1000000.pth"}.get(
                       kind, "SANet's decoder_iter_500000.pth or AdaIN's decoder.pth"))
    if kind in ("sanet", None):
        g.add_argument("--transformer", metavar="FILE",
                       help="transformer_iter_500000.pth" + ("" if kind else " (SANet)"))
    g.add_argument("--model", metavar="FILE.npz",
                   help="a jaxstyle model (jaxstyle convert, or training's output) "
                        "instead of the separate files; --vgg then names the encoder "
                        "when the model has none")


def add_size_options(g, what: str) -> None:
    """--style-size and --batch-size (`what` goes through the network per call)."""
    g.add_argument("--style-size", metavar="PX", type=numbers(int, many=False, minimum=1),
                   help="longest side of each style image (default: --image-size)")
    g.add_argument("--batch-size", metavar="N", type=numbers(int, many=False, minimum=1),
                   default=8, help=f"{what} per compiled call (default 8)")


def contents_of(text: str) -> list[Path]:
    """The content files CONTENT names: a file, a comma list, or a directory's images
    (sorted); InputError for a missing path or a directory without images."""
    found: list[Path] = []
    for path in (Path(t) for t in text.split(",") if t):
        if path.is_dir():
            found += map(Path, list_images(path, "CONTENT", recursive=False))
        elif path.exists():
            found.append(path)
        else:
            raise files.InputError(f"{path}: no such file or directory")
    return found


def load_model(kind: str, args: argparse.Namespace):
    """The params of `kind` from --model / --vgg / --decoder / --transformer (and
    $JAXSTYLE_ARBITRARY_WEIGHTS for the parts not given)."""
    from jaxstyle.arbitrary import load_adain, load_sanet

    if kind == "sanet":
        return load_sanet(vgg=args.vgg, decoder=args.decoder,
                          transformer=getattr(args, "transformer", None), model=args.model)
    return load_adain(vgg=args.vgg, decoder=args.decoder, model=args.model)


def run(args: argparse.Namespace) -> int:
    """Load, stylize every content (batched by size), write images (and sheets) and JSON."""
    from jaxstyle import arbitrary

    t_start = time.perf_counter()
    kind = args.command
    contents = contents_of(args.content)
    several = len(contents) > 1 or Path(args.content).is_dir()
    # Without --alpha the library's default (all style); a list runs every alpha in one call.
    alphas = None if args.alpha is None else list(args.alpha)
    out = args.output
    if several:
        if out.suffix:
            raise UsageError(f"-o/--output: {len(contents)} contents need a directory, got "
                             f"{out}")
        out.mkdir(parents=True, exist_ok=True)
        targets = [out / f"{c.stem}.png" for c in contents]
    else:
        targets = [out]
    for target in targets:
        check_output(target, [*contents, *args.styles])
    device = start_jax(args)

    style_side = args.style_size or args.image_size
    styles = [load_image(s) for s in args.styles]
    style_shapes = [scale_shape(s.shape[:2], style_side) for s in styles]
    images = [load_image(path) for path in contents]
    shapes = [scale_shape(image.shape[:2], args.image_size) for image in images]
    # Sized before any resizing or loading of the model: an absurd size is refused at once.
    largest = max(shapes, key=lambda hw: hw[0] * hw[1])
    arbitrary.check_memory(kind, largest, style_shapes,
                           batch=min(args.batch_size, shapes.count(largest)),
                           alphas=len(alphas or [None]), memory_limit=args.memory_limit,
                           styles_follow=args.style_size is None)
    styles = [resize_to(s, hw) for s, hw in zip(styles, style_shapes, strict=True)]
    params = load_model(kind, args)
    stylize = arbitrary.stylize_sanet if kind == "sanet" else arbitrary.stylize_adain
    codes = None if args.preserve_colors else arbitrary.encode_styles(params, styles)
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, (image, shape) in enumerate(zip(images, shapes, strict=True)):
        images[i] = resize_to(image, shape)
        by_shape.setdefault(shape, []).append(i)
    settings = {"jaxstyle": __version__, "model": kind, "styles": args.styles,
                "alpha": alphas, "style_blend_weights": args.style_blend_weights,
                "preserve_colors": args.preserve_colors, "image_size": args.image_size,
                "style_size": style_side, "vgg": args.vgg, "decoder": args.decoder,
                "transformer": getattr(args, "transformer", None), "weights_model": args.model}
    written, done, t0 = [], 0, time.perf_counter()
    flag = InterruptFlag(args.quiet)
    with Bar(args.quiet, total=len(contents), unit="image", desc=kind, print_every=1) as bar, \
            flag:
        for indices in by_shape.values():
            for start in range(0, len(indices), args.batch_size):
                if flag.is_set():
                    break
                chunk = indices[start:start + args.batch_size]
                batch = np.stack([images[i] for i in chunk])
                result = stylize(params, batch, styles if codes is None else codes,
                                 **({} if alphas is None else {"alpha": alphas}),
                                 style_blend_weights=args.style_blend_weights,
                                 preserve_colors=args.preserve_colors,
                                 memory_limit=args.memory_limit)
                if alphas is None:
                    result = result[None]  # one (default) alpha: the same layout
                for j, i in enumerate(chunk):
                    written += _write(targets[i], result[:, j], alphas, contents[i], settings)
                done += len(chunk)
                bar.update(done, f"{contents[chunk[-1]].name}")
    stylize_s = time.perf_counter() - t0
    if args.json is not None:
        files.write_json(args.json, {
            "status": "interrupted" if flag.is_set() else "completed",
            "settings": settings, "contents": [str(c) for c in contents],
            "outputs": [str(p) for p in written],
            "timings": {"stylize_s": stylize_s, "total_s": time.perf_counter() - t_start,
                        "per_image_s": stylize_s / max(1, len(contents))},
            "device": {"platform": device.platform, "kind": device.device_kind},
        }, sort_keys=True)
    if flag.is_set():
        print(f"{PROG}: interrupted; wrote {len(written)} file(s)", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not args.quiet:
        print(f"wrote {len(written)} file(s) ({targets[0]}{', ...' if len(written) > 1 else ''}"
              f"; {time.perf_counter() - t_start:.1f} s)")
    return EXIT_OK


def _write(target: Path, results: np.ndarray, alphas, content: Path,
           settings: dict) -> list[Path]:
    """Write one content's result(s): the image, or per alpha OUT_a<alpha> and OUT as the
    labelled contact sheet. Returns the paths written."""
    meta = {"jaxstyle": json.dumps({**settings, "content": str(content)}, sort_keys=True)}
    if alphas is None or len(alphas) == 1:
        save_image(target, results[0], metadata=meta)
        return [target]
    paths = []
    for alpha, image in zip(alphas, results, strict=True):
        path = target.with_name(f"{target.stem}_a{format_weight(alpha)}{target.suffix}")
        save_image(path, image, metadata=meta)
        paths.append(path)
    sheet = contact_sheet([list(results)], row_labels=[""],
                          col_labels=[f"alpha={format_weight(a)}" for a in alphas],
                          title=f"{content.name}: {settings['model']}")
    save_image(target, sheet, metadata=meta)
    return [*paths, target]
