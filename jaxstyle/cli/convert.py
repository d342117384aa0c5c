"""`jaxstyle convert`: weights into a checked jaxstyle .npz.

    jaxstyle convert SRC DEST.npz                  VGG19 (Keras .h5, torchvision .pth)
    jaxstyle convert sanet|adain DEST.npz --vgg ... --decoder ... [--transformer ...]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from jaxstyle.arbitrary.models import KINDS
from jaxstyle.cli.options import EXIT_OK, EXIT_STATUS, UsageError, add_command, check_output


def add_parsers(sub) -> dict[str, argparse.ArgumentParser]:
    """The `convert` command."""
    c = add_command(sub, "convert", run, epilog=EXIT_STATUS, description=(
        "Convert weights into a jaxstyle .npz, checking every key and shape: VGG19 (Keras .h5,\n"
        "torchvision .pth), or the released SANet / AdaIN files as one model."))
    c.add_argument("source", metavar="SRC",
                   help="VGG19 weight file to read, or sanet / adain: the released files "
                        "named by --vgg, --decoder, --transformer")
    c.add_argument("dest", metavar="DEST.npz", type=Path, help="the .npz to write (atomically)")
    c.add_argument("--vgg", metavar="FILE", help="sanet/adain: vgg_normalised.pth")
    c.add_argument("--decoder", metavar="FILE", help="sanet/adain: the decoder file")
    c.add_argument("--transformer", metavar="FILE", help="sanet: transformer_iter_500000.pth")
    c.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return {"convert": c}


def run(args: argparse.Namespace) -> int:
    from jaxstyle.arbitrary import convert as convert_model
    from jaxstyle.weights import convert_weights

    if args.dest.suffix.lower() != ".npz":
        raise UsageError(f"convert: DEST must end in .npz, got {args.dest}")
    model = args.source in KINDS and not os.path.exists(args.source)
    parts = {"--vgg": args.vgg, "--decoder": args.decoder, "--transformer": args.transformer}
    if not model and any(parts.values()):
        raise UsageError("convert: --vgg, --decoder and --transformer are for sanet / adain")
    if args.source == "adain" and args.transformer:
        raise UsageError("convert adain: AdaIN has no Transform (--transformer is for sanet)")
    if not model and Path(args.source).exists() and \
            Path(args.source).resolve() == args.dest.resolve():
        raise UsageError("convert: SRC and DEST are the same file")
    check_output(args.dest, [args.vgg, args.decoder, args.transformer])
    if model:
        written = convert_model(args.source, args.dest, vgg=args.vgg, decoder=args.decoder,
                                transformer=args.transformer)
    else:
        written = convert_weights(Path(args.source), args.dest)
    print(f"wrote {written}")
    return EXIT_OK
