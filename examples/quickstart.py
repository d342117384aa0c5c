"""The library's quick start, offline: the README's first Python example, runnable as is.

    python examples/quickstart.py -o out.png            # random VGG19 weights, offline
    python examples/quickstart.py -o out.png --real     # the pretrained weights (downloaded once)

Random weights exercise every step of the pipeline but do not stylize anything meaningful;
`--real` uses `jaxstyle.load_vgg19()`, the published VGG19 (80 MB, cached after the first
download).
"""

import argparse
import sys
from pathlib import Path

import jaxstyle

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", default="out.png")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--real", action="store_true", help="the pretrained VGG19 weights")
    args = p.parse_args(argv)

    content = jaxstyle.load_image(HERE / "chelsea.jpg")            # (H, W, 3) RGB in [0, 1]
    style = jaxstyle.load_image(HERE / "hubble_deep_field.jpg")
    weights = jaxstyle.load_vgg19() if args.real else jaxstyle.random_weights(0)
    config = jaxstyle.StyleConfig(image_size=args.image_size, iterations=args.iterations)
    result = jaxstyle.stylize(content, style, weights=weights, config=config)
    jaxstyle.save_image(args.output, result.image)
    print(f"wrote {args.output}: {result.image.shape[1]}x{result.image.shape[0]}, "
          f"loss {result.best_loss:.4g} after {result.steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
