"""SANet and AdaIN training steps in PyTorch, as the reference training code writes them
(GlebSBrykin/SANET train.py, naoto0804/pytorch-AdaIN net.py and train.py): the training
benchmark's baseline and the loss tests' second reference.

The networks are benchmarks/torch_arbitrary.py's (the reference modules, built from state
dicts in the released layouts); the loss is the reference Net.forward, call by call: the
encoder on the content and on the style, T(c, s), T(c, c), T(s, s) and the decoder each as
a separate call, the decoded images encoded again, the terms of docs/arbitrary.md; Adam (torch's
defaults but the learning rate) on the decoder (and Transform), lr / (1 + decay * step) set
before each step. Inputs NCHW RGB in [0, 1]. Imports torch and NumPy only (no jax).

    python benchmarks/torch_train.py --kind sanet --size 256 --batch 5 --weights W.npz
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_arbitrary import (  # noqa: E402
    Model,
    adain,
    calc_mean_std,
    load_parts,
    mean_variance_norm,
)

WEIGHTS = {"sanet": {"content": 1.0, "style": 3.0, "identity1": 50.0, "identity2": 1.0},
           "adain": {"content": 1.0, "style": 10.0}}


def style_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The reference calc_style_loss: mse of the means plus mse of the stds."""
    ma, sa = calc_mean_std(a)
    mb, sb = calc_mean_std(b)
    return F.mse_loss(ma, mb) + F.mse_loss(sa, sb)


class TrainModel:
    """The reference Net of one kind (`loss`) and its Adam step (`step`)."""

    def __init__(self, kind: str, vgg_state, decoder_state, transformer_state=None, *,
                 lr: float = 1e-4, lr_decay: float = 5e-5, dtype=torch.float32):
        self.kind, self.lr, self.lr_decay, self.iteration = kind, lr, lr_decay, 0
        self.model = Model(kind, vgg_state, decoder_state, transformer_state).to(dtype=dtype)
        for enc in self.model.enc:
            enc.requires_grad_(False)
        self.trainable = list(self.model.decoder.parameters())
        if self.model.transform is not None:
            self.model.transform.train()
            self.trainable += list(self.model.transform.parameters())
        self.model.decoder.train()
        self.optimizer = torch.optim.Adam(self.trainable, lr=lr)

    def loss(self, content: torch.Tensor, style: torch.Tensor):
        """(total, {part: tensor}) of NCHW batches, as the reference Net.forward."""
        m = self.model
        fc, fs = m.features(content), m.features(style)
        if self.kind == "adain":
            t = adain(fc[-1], fs[-1])
            g = m.features(m.decoder(t))
            parts = {"content": F.mse_loss(g[-1], t),
                     "style": sum(style_loss(g[i], fs[i]) for i in range(4))}
        else:
            ics = m.decoder(m.transform(fc[3], fs[3], fc[4], fs[4]))
            g = m.features(ics)
            icc = m.decoder(m.transform(fc[3], fc[3], fc[4], fc[4]))
            iss = m.decoder(m.transform(fs[3], fs[3], fs[4], fs[4]))
            fcc, fss = m.features(icc), m.features(iss)
            parts = {
                "content": sum(F.mse_loss(mean_variance_norm(g[i]), mean_variance_norm(fc[i]))
                               for i in (3, 4)),
                "style": sum(style_loss(g[i], fs[i]) for i in range(5)),
                "identity1": F.mse_loss(icc, content) + F.mse_loss(iss, style),
                "identity2": sum(F.mse_loss(fcc[i], fc[i]) + F.mse_loss(fss[i], fs[i])
                                 for i in range(5)),
            }
        total = sum(WEIGHTS[self.kind][k] * v for k, v in parts.items())
        return total, parts

    def step(self, content: torch.Tensor, style: torch.Tensor) -> dict[str, float]:
        """One training step: lr for this iteration, backward, Adam. Returns the losses."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr / (1.0 + self.lr_decay * self.iteration)
        self.optimizer.zero_grad(set_to_none=True)
        total, parts = self.loss(content, style)
        total.backward()
        self.optimizer.step()
        self.iteration += 1
        return {"total": float(total), **{k: float(v) for k, v in parts.items()}}


def benchmark(kind: str, weights_npz: str, size: int, *, batch: int, steps: int,
              threads: int, channels_last: bool, images: str | None) -> dict:
    """Seconds per training step (after one untimed first step) and images per second."""
    torch.set_num_threads(threads)
    parts = load_parts(weights_npz)
    trainer = TrainModel(kind, parts["vgg"], parts["decoder"], parts["transformer"] or None)
    if images:
        with np.load(images) as f:
            content, style = f["content"], f["style"]
    else:
        rng = np.random.default_rng(0)
        content, style = (rng.random((batch, size, size, 3), dtype=np.float32) for _ in "cs")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        trainer.model.to(memory_format=torch.channels_last)
    c, s = (torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).contiguous(
        memory_format=fmt) for a in (content, style))
    t0 = time.perf_counter()
    first = trainer.step(c, s)
    first_s = time.perf_counter() - t0
    times, cpu, losses = [], [], [first["total"]]
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(trainer.step(c, s)["total"])
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"framework": "torch", "kind": kind, "size": size, "batch": batch,
            "threads": threads, "channels_last": channels_last, "first_s": first_s,
            "step_s": times, "step_cpu_s": cpu, "losses": losses,
            "images_per_s": batch / statistics.median(times), "torch": torch.__version__}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kind", choices=("sanet", "adain"), default="sanet")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="timed steps after the first")
    p.add_argument("--weights", required=True,
                   help="npz of released-layout arrays: vgg/<key>, decoder/<key>, "
                        "transformer/<key>")
    p.add_argument("--images", help="npz with 'content' and 'style' (B, H, W, 3) float32")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--channels-last", action="store_true")
    args = p.parse_args(argv)
    result = benchmark(args.kind, args.weights, args.size, batch=args.batch, steps=args.steps,
                       threads=args.threads, channels_last=args.channels_last,
                       images=args.images)
    print("BENCH_JSON " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
