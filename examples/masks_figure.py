"""The README's masks figure: the cat, its left-half mask, the two styles and the result of
`--style-masks` (Hubble field on the left, stripes on the right), as one labelled sheet.

    python examples/masks_figure.py WEIGHTS OUT.png [--size 256] [--iterations 200]
        [--optimizer adam] [--content-weight 0.1]

WEIGHTS is any file `jaxstyle.load_vgg19` reads; the committed figure was made with random
weights (`jaxstyle.random_weights(0)` saved as .npz), which is why it shows no real style.
"""

import argparse
from pathlib import Path

import numpy as np

import jaxstyle

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("weights")
    p.add_argument("out")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--content-weight", type=float, default=0.1)
    args = p.parse_args()
    content = jaxstyle.load_image(HERE / "chelsea.jpg")
    styles = [jaxstyle.load_image(HERE / n) for n in ("hubble_deep_field.jpg", "stripes.png")]
    masks = [jaxstyle.load_image(HERE / f"chelsea_{s}_mask.png") for s in ("left", "right")]
    result = jaxstyle.stylize(content, styles, weights=jaxstyle.load_vgg19(args.weights),
                              style_masks=[m[..., 0] for m in masks],
                              config=jaxstyle.StyleConfig(
                                  image_size=args.size, iterations=args.iterations,
                                  optimizer=args.optimizer, content_weight=args.content_weight,
                                  learning_rate=0.05 if args.optimizer == "adam" else 0.02))
    # The mask on mid gray, so its white half shows against the white sheet.
    mask = 0.1 + 0.8 * masks[0]
    cells = [content, mask, styles[0], styles[1], result.image]
    labels = ["content", "mask (white: style 1)", "style 1", "style 2", "result"]
    sheet = jaxstyle.contact_sheet([cells], row_labels=[""], col_labels=labels,
                                   max_cell_side=args.size,
                                   title=f"--style-masks, {result.steps} {args.optimizer} "
                                         f"steps, weights: {Path(args.weights).name}")
    jaxstyle.save_image(args.out, np.asarray(sheet))
    print(f"wrote {args.out} (loss {result.best_loss:.4g})")


if __name__ == "__main__":
    main()
