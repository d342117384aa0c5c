"""From the command line's parsed options to the run's configuration: `config_and_grid`.

The options' `dest`s are `StyleConfig` field names, so the fields given pass straight on;
what is checked here is what only the command line has: option combinations (--init sanet
with --sanet-model, --scale-iterations with explicit --scales, --learning-rate with Adam,
--batch-size and --ratio with sweeps), its own output size default and the weight lists
that make a sweep's grid.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from jaxstyle.cli_options import UsageError, usage
from jaxstyle.config import INITS, StyleConfig

DEFAULT_IMAGE_SIZE = 512  # the CLI's output size (the library's default: the content's own)
DEFAULTS = {f.name: f.default for f in dataclasses.fields(StyleConfig)}


def config_and_grid(args: argparse.Namespace):
    """(StyleConfig, WeightGrid or None for one setting) from the parsed options."""
    from jaxstyle.grids import loss_weight_grid, ratio_weights

    fields = {f: getattr(args, f) for f in DEFAULTS if getattr(args, f, None) is not None}
    lists = {f: fields.pop(f) for f in ("content_weight", "style_weight", "tv_weight")
             if f in fields}
    fields.update({f: v[0] for f, v in lists.items() if len(v) == 1})
    if (args.init == "sanet") != (args.sanet_model is not None):
        raise UsageError("--init sanet and --sanet-model go together")
    if args.init == "sanet":
        fields["init"] = "content"  # the start image is data: the SANet result, made later
    elif args.init is not None:
        if args.init not in INITS and not os.path.exists(args.init):
            raise UsageError(f"--init: {args.init!r} is neither one of {', '.join(INITS)} nor "
                             "an existing image file")
        fields["init"] = args.init if args.init in INITS else "content"  # a path: loaded later
    if args.scale_iterations is not None and not isinstance(args.scales, (list, tuple)):
        raise UsageError("--scale-iterations needs --scales PX,... (one count per size; with "
                         "the auto ladder every size runs --iterations)")
    if fields.get("scales") == "none":
        fields["scales"] = None  # one stage (None in args means: not given)
    if args.scales in (None, "auto", "none") and args.image_size is None:
        fields["image_size"] = DEFAULT_IMAGE_SIZE
    if args.style_masks is not None and len(args.style_masks) != len(args.styles):
        raise UsageError(f"--style-masks: {len(args.style_masks)} mask(s) for "
                         f"{len(args.styles)} style image(s): give one per style image")
    if args.learning_rate is not None and fields.get("optimizer", DEFAULTS["optimizer"]) != "adam":
        raise UsageError("--learning-rate is the Adam step size: use it with --optimizer adam")
    config = usage(StyleConfig, **fields)
    if args.ratio is None and all(len(v) == 1 for v in lists.values()):
        if args.batch_size is not None:
            raise UsageError("--batch-size is for sweeps: give a comma list of weights or --ratio")
        return config, None
    if args.ratio is None:
        return config, usage(loss_weight_grid, **{f.split("_")[0]: lists.get(f, (DEFAULTS[f],))
                                                   for f in DEFAULTS if f.endswith("_weight")})
    fixed = [f for f in ("content_weight", "style_weight") if f in lists]
    if len(fixed) == 2 or any(len(lists[f]) > 1 for f in fixed):
        raise UsageError("--ratio sets alpha/beta: give at most one of --content-weight and "
                         "--style-weight, with one value")
    return config, usage(ratio_weights, args.ratio, tv=lists.get("tv_weight", (0.0,)),
                          **{f: lists[f][0] for f in fixed})
