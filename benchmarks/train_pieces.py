"""Where a training step's time goes: its pieces in jax and in PyTorch, side by side.

    python benchmarks/train_pieces.py --models sanet,adain --size 256 --batch 5 --json out.json
    python benchmarks/train_pieces.py --quick          # 32 px, batch 2: what the tests run

The pieces of one step of the reference recipe (B content + B style images, size x size;
SANet decodes and re-encodes 3B images: Ics, Icc, Iss; AdaIN B):
- encode: the frozen encoder to its deepest layer (relu5_1; AdaIN relu4_1) on the 2B inputs,
  no gradient;
- transform (SANet): the Transform's value and its params' gradient on 3B relu4_1/relu5_1
  maps, loss mean(T^2);
- decode: the decoder's value and the gradient for its params and its input on 3B (B)
  relu4_1 maps, loss mean(D^2);
- encode_grad: the frozen encoder's value and input gradient on 3B (B) images, loss the sum
  over its layers of mean(phi^2).
jax: each piece one `jax.jit` of `jaxstyle.arbitrary`'s functions; PyTorch: the reference
modules of tests/references/torch_arbitrary.py, eager, as tests/references/torch_train.py runs them.
Both frameworks run in this process on the same random weights (`random_params`, converted to
the released layouts for PyTorch) and inputs, alternating per round; a piece's time is its
best over --reps calls after a first untimed one (jax: compile). Piece times do not add up to
a step's exactly (a whole step is one XLA program), but a piece that is slower in jax than in
PyTorch is where the step loses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The PyTorch reference models and baselines (tests/references/), run as the PyTorch side.
REFERENCES = os.path.join(HERE, "..", "tests", "references")
sys.path.insert(0, os.path.dirname(HERE))  # this checkout's jaxstyle

import numpy as np  # noqa: E402

PIECES = ("encode", "transform", "decode", "encode_grad")


def _best(fn, reps: int) -> float:
    fn()  # jax: compile
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _inputs(kind: str, size: int, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """NHWC float32: 2B images in [0, 1] (encode), nB images (encode_grad), nB relu4_1 and
    relu5_1 maps in [0, 1] (decode, transform); n = 3 for SANet, 1 for AdaIN."""
    rng = np.random.default_rng(seed)
    n = (3 if kind == "sanet" else 1) * batch
    u = lambda *shape: rng.uniform(0, 1, shape).astype(np.float32)  # noqa: E731
    return {"pair": u(2 * batch, size, size, 3), "decoded": u(n, size, size, 3),
            "relu4_1": u(n, size // 8, size // 8, 512),
            "relu5_1": u(n, size // 16, size // 16, 512)}


def jax_pieces(kind: str, weights: str, inputs: dict, reps: int) -> dict[str, float]:
    import jax
    import jax.numpy as jnp

    from jaxstyle.arbitrary import sanet
    from jaxstyle.arbitrary.decoder import decode
    from jaxstyle.arbitrary.encoder import LAYERS, encode
    from jaxstyle.arbitrary.weights import read_model

    _, params = read_model(weights)
    params = jax.device_put(params)
    enc, dec = params["encoder"], params["decoder"]
    layers = LAYERS if kind == "sanet" else LAYERS[:4]
    x = {k: jax.device_put(v) for k, v in inputs.items()}
    run = lambda f, *a: jax.block_until_ready(f(*a))  # noqa: E731

    def squares(out):
        return sum(jnp.mean(jnp.square(v)) for v in out.values())

    fns = {
        "encode": (jax.jit(lambda e, im: encode(e, im, layers)), enc, x["pair"]),
        "decode": (jax.jit(jax.grad(lambda d, f: jnp.mean(jnp.square(decode(d, f))), (0, 1))),
                   dec, x["relu4_1"]),
        "encode_grad": (jax.jit(jax.grad(lambda im, e: squares(
            encode(jax.lax.stop_gradient(e), im, layers)))), x["decoded"], enc),
    }
    if kind == "sanet":
        def transform_loss(tp, c4, c5):
            code = sanet.style_code(tp, c4, c5)
            return jnp.mean(jnp.square(sanet.transform(tp, c4, c5, code)))

        fns["transform"] = (jax.jit(jax.grad(transform_loss)), params["transform"],
                            x["relu4_1"], x["relu5_1"])
    return {name: _best(lambda f=f, a=a: run(f, *a), reps)
            for name, (f, *a) in fns.items()}


def torch_pieces(kind: str, weights: str, inputs: dict, reps: int, threads: int
                 ) -> dict[str, float]:
    import torch
    from torch_arbitrary import Model, load_parts

    torch.set_num_threads(threads)
    parts = load_parts(weights)
    m = Model(kind, parts["vgg"], parts["decoder"], parts["transformer"] or None)
    for enc in m.enc:
        enc.requires_grad_(False)
    t = {k: torch.from_numpy(np.ascontiguousarray(v.transpose(0, 3, 1, 2)))
         for k, v in inputs.items()}

    def encode():
        with torch.no_grad():
            m.features(t["pair"])

    def decode():
        m.decoder.zero_grad(set_to_none=True)
        f = t["relu4_1"].clone().requires_grad_(True)
        m.decoder(f).square().mean().backward()

    def encode_grad():
        im = t["decoded"].clone().requires_grad_(True)
        sum(v.square().mean() for v in m.features(im)).backward()

    def transform():
        m.transform.zero_grad(set_to_none=True)
        c4, c5 = t["relu4_1"], t["relu5_1"]
        m.transform(c4, c4, c5, c5).square().mean().backward()

    fns = {"encode": encode, "decode": decode, "encode_grad": encode_grad}
    if kind == "sanet":
        fns["transform"] = transform
    return {name: _best(f, reps) for name, f in fns.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="sanet,adain")
    p.add_argument("--size", type=int, default=256, help="crop side (default 256)")
    p.add_argument("--batch", type=int, default=5, help="B (default 5)")
    p.add_argument("--reps", type=int, default=3, help="timed calls per piece (default 3)")
    p.add_argument("--rounds", type=int, default=1, help="alternating jax/PyTorch rounds")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch threads")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--quick", action="store_true", help="32 px, batch 2, 1 rep: a smoke test")
    p.add_argument("--json", help="write the measurements here")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.batch, args.reps, args.rounds = 32, 2, 1, 1
    from jaxstyle import runtime

    if not runtime.backends_initialized():
        runtime.set_xla_cpu_flags(runtime.CPU_TRAIN_FLAGS)  # as `jaxstyle train-*` does
    sys.path[:0] = [HERE, REFERENCES]
    import arbitrary_bench

    kinds = [k for k in args.models.split(",") if k]
    frameworks = ["jax"] + ([] if args.no_torch or not arbitrary_bench._has_torch()
                               else ["torch"])
    rows = []
    with tempfile.TemporaryDirectory() as work:
        paths = arbitrary_bench._prepare(work, kinds, [])
        for kind in kinds:
            inputs = _inputs(kind, args.size, args.batch)
            for r in range(args.rounds):
                for framework in frameworks if r % 2 == 0 else frameworks[::-1]:
                    if framework == "jax":
                        times = jax_pieces(kind, paths[kind], inputs, args.reps)
                    else:
                        times = torch_pieces(kind, paths[f"{kind}-torch"], inputs, args.reps,
                                             args.threads)
                    rows.append({"kind": kind, "framework": framework, "round": r,
                                 "seconds": times})
    summary = []
    for kind in kinds:
        for piece in PIECES:
            best = {fw: min((row["seconds"][piece] for row in rows if row["kind"] == kind
                             and row["framework"] == fw and piece in row["seconds"]),
                            default=None) for fw in frameworks}
            if best["jax"] is None:
                continue
            torch_s = best.get("torch")
            summary.append({"kind": kind, "piece": piece, "jax_s": best["jax"],
                            "torch_s": torch_s,
                            "jax_over_torch_time": best["jax"] / torch_s if torch_s else None})
            print(f"{kind:5s} {piece:11s} jax {best['jax']:7.3f} s" + (
                f"  PyTorch {torch_s:7.3f} s  jax/PyTorch time {best['jax'] / torch_s:.2f}"
                if torch_s else ""), flush=True)
    if args.json:
        settings = {k: getattr(args, k) for k in ("size", "batch", "reps", "rounds", "threads")}
        with open(args.json, "w") as f:
            json.dump({"settings": settings, "rows": rows, "summary": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
