"""SANet and AdaIN in PyTorch, module for module as the reference code builds them
(naoto0804/pytorch-AdaIN net.py and test.py, GlebSBrykin/SANET Eval.py): the benchmark's
baseline, and the tests' second reference for jaxstyle.arbitrary.

Built from state dicts in the released files' layouts ({key: NumPy OIHW array}), inputs
NCHW RGB in [0, 1]. `stylize` adds what jaxstyle adds around the reference networks, so the
two compute the same thing: reflection padding of the content to a multiple of 16 (SANet) or
8 (AdaIN), at least twice that, split evenly, and the output cropped back and clipped; the
alpha mix and style weights of docs/arbitrary.md. Imports torch and NumPy only (no jax).

    python benchmarks/torch_arbitrary.py --kind sanet --size 512   # timings as JSON
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
from torch import nn

EPS = 1e-5
# Convolution channels of the normalised VGG19's 16 3x3 layers (conv5_2 .. conv5_4 unused).
_VGG_WIDTHS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))
_MULTIPLE = {"sanet": 16, "adain": 8}


def vgg() -> nn.Sequential:
    """The 53-module normalised VGG19: conv 1x1, then per conv ReflectionPad2d(1), Conv 3x3,
    ReLU, with ceil-mode 2x2 max pooling between blocks (modules 7, 14, 27, 40)."""
    layers: list[nn.Module] = [nn.Conv2d(3, 3, (1, 1))]
    cin = 3
    for b, (width, depth) in enumerate(_VGG_WIDTHS):
        if b:
            layers.append(nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True))
        for _ in range(depth):
            layers += [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(cin, width, (3, 3)), nn.ReLU()]
            cin = width
    return nn.Sequential(*layers)


# The reference code's slices of `vgg()`: input -> relu1_1 -> relu2_1 -> ... -> relu5_1.
VGG_SLICES = ((0, 4), (4, 11), (11, 18), (18, 31), (31, 44))


def decoder() -> nn.Sequential:
    """The 29-module decoder: ReflectionPad2d(1), Conv 3x3, ReLU per conv (none after the
    last), nearest x2 upsampling at modules 3, 16 and 23."""
    plan = [(512, 256), "up", (256, 256), (256, 256), (256, 256), (256, 128), "up",
            (128, 128), (128, 64), "up", (64, 64), (64, 3)]
    layers: list[nn.Module] = []
    for k, item in enumerate(plan):
        if item == "up":
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            continue
        layers += [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(*item, (3, 3))]
        if k < len(plan) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def calc_mean_std(feat: torch.Tensor, eps: float = EPS):
    n, c = feat.shape[:2]
    var = feat.reshape(n, c, -1).var(dim=2) + eps  # unbiased, as the reference
    return feat.reshape(n, c, -1).mean(dim=2).reshape(n, c, 1, 1), var.sqrt().reshape(n, c, 1, 1)


def mean_variance_norm(feat: torch.Tensor) -> torch.Tensor:
    mean, std = calc_mean_std(feat)
    return (feat - mean) / std


def adain(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    s_mean, s_std = calc_mean_std(style)
    return mean_variance_norm(content) * s_std + s_mean


class SANet(nn.Module):
    def __init__(self, planes: int = 512):
        super().__init__()
        self.f = nn.Conv2d(planes, planes, (1, 1))
        self.g = nn.Conv2d(planes, planes, (1, 1))
        self.h = nn.Conv2d(planes, planes, (1, 1))
        self.out_conv = nn.Conv2d(planes, planes, (1, 1))

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        f = self.f(mean_variance_norm(content))
        g = self.g(mean_variance_norm(style))
        h = self.h(style)
        b, c, hc, wc = f.shape
        f = f.reshape(b, c, hc * wc).permute(0, 2, 1)
        s = torch.softmax(torch.bmm(f, g.reshape(b, c, -1)), dim=-1)
        o = torch.bmm(h.reshape(b, c, -1), s.permute(0, 2, 1)).reshape(b, c, hc, wc)
        return self.out_conv(o) + content


class Transform(nn.Module):
    def __init__(self, planes: int = 512):
        super().__init__()
        self.sanet4_1 = SANet(planes)
        self.sanet5_1 = SANet(planes)
        self.upsample5_1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.merge_conv_pad = nn.ReflectionPad2d((1, 1, 1, 1))
        self.merge_conv = nn.Conv2d(planes, planes, (3, 3))

    def forward(self, c41, s41, c51, s51):
        return self.merge_conv(self.merge_conv_pad(
            self.sanet4_1(c41, s41) + self.upsample5_1(self.sanet5_1(c51, s51))))


def load(module: nn.Module, arrays: dict[str, np.ndarray]) -> nn.Module:
    """`module` with the state dict `arrays` (strict, tensors taken over: the module may be
    built on the "meta" device, skipping the random init), in eval mode."""
    module.load_state_dict({k: torch.from_numpy(np.array(v, np.float32)) for k, v in
                            arrays.items()}, strict=True, assign=True)
    return module.eval()


class Model:
    """The reference networks of one kind, from released-layout state dicts."""

    def __init__(self, kind: str, vgg_state, decoder_state, transformer_state=None):
        self.kind = kind
        # The modules up to the deepest layer used (relu5_1 / relu4_1); the rest of the file's
        # layers (conv5_2 .. conv5_4, and conv4_2 on for AdaIN) are left out, as unused.
        end = VGG_SLICES[4 if kind == "sanet" else 3][1]
        with torch.device("meta"):  # no random init: every tensor comes from the state dicts
            net, dec = vgg()[:end], decoder()
            transform = Transform() if kind == "sanet" else None
        net = load(net, {k: v for k, v in vgg_state.items() if int(k.split(".")[0]) < end})
        self.enc = [net[a:b] for a, b in VGG_SLICES if b <= end]
        self.decoder = load(dec, decoder_state)
        self.transform = load(transform, transformer_state) if transform is not None else None

    def to(self, **kwargs) -> Model:
        for m in [*self.enc, self.decoder] + ([self.transform] if self.transform else []):
            m.to(**kwargs)
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[relu1_1, ..., deepest] of NCHW images."""
        out = []
        for enc in self.enc:
            x = enc(x)
            out.append(x)
        return out

    def encode_style(self, style: torch.Tensor):
        """The style's features the transfer needs: SANet (relu4_1, relu5_1), AdaIN relu4_1."""
        feats = self.features(style)
        return tuple(feats[3:5]) if self.kind == "sanet" else (feats[3],)

    def stylize(self, content: torch.Tensor, styles: list, *, alpha: float = 1.0,
                weights=None) -> torch.Tensor:
        """NCHW contents [0, 1] and encoded styles (`encode_style`) -> NCHW in [0, 1]."""
        weights = [1.0 / len(styles)] * len(styles) if weights is None else weights
        _, _, h, w = content.shape
        (top, bottom), (left, right) = padding(h, self.kind), padding(w, self.kind)
        x = F.pad(content, (left, right, top, bottom), mode="reflect")
        feats = self.features(x)
        if self.kind == "sanet":
            c41, c51 = feats[3], feats[4]
            t = sum(wi * self.transform(c41, s[0], c51, s[1])
                    for wi, s in zip(weights, styles, strict=True))
            if alpha != 1.0:
                t = alpha * t + (1 - alpha) * self.transform(c41, c41, c51, c51)
        else:
            c41 = feats[3]
            t = sum(wi * adain(c41, s[0]) for wi, s in zip(weights, styles, strict=True))
            t = alpha * t + (1 - alpha) * c41
        out = self.decoder(t)[:, :, top:top + h, left:left + w]
        return out.clamp(0, 1)


def padding(size: int, kind: str) -> tuple[int, int]:
    m = _MULTIPLE[kind]
    total = max(-(-size // m) * m, 2 * m) - size
    return total // 2, total - total // 2


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def load_parts(weights_npz: str) -> dict[str, dict[str, np.ndarray]]:
    """{"vgg", "decoder", "transformer"}: each a released-layout state dict ({} if absent)
    from the benchmark's .npz of "<part>/<key>" arrays."""
    with np.load(weights_npz) as f:
        return {p: {k.split("/", 1)[1]: f[k] for k in f.files if k.startswith(p + "/")}
                for p in ("vgg", "decoder", "transformer")}


def benchmark(kind: str, weights_npz: str, size: int, *, repeats: int, batch: int,
              threads: int, channels_last: bool, images: str | None) -> dict:
    """Seconds per image (style encoding included and excluded) and batched throughput."""
    torch.set_num_threads(threads)
    parts = load_parts(weights_npz)
    model = Model(kind, parts["vgg"], parts["decoder"], parts["transformer"] or None)
    if images:
        with np.load(images) as f:
            content, style = f["content"], f["style"]
    else:
        rng = np.random.default_rng(0)
        content, style = (rng.random((size, size, 3), dtype=np.float32) for _ in range(2))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model.to(memory_format=torch.channels_last)
    nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].to(  # noqa: E731
        memory_format=fmt)
    c, s = nchw(content), nchw(style)
    cb = c.expand(batch, -1, -1, -1).contiguous(memory_format=fmt)

    def full():
        return model.stylize(c, [model.encode_style(s)])

    code = model.encode_style(s)
    rows = {"with_style_s": [], "without_style_s": [], "batch_s": [], "with_style_cpu_s": []}
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = full()
        first = time.perf_counter() - t0
        for _ in range(repeats):
            for key, fn in (("with_style_s", full),
                            ("without_style_s", lambda: model.stylize(c, [code])),
                            ("batch_s", (lambda: model.stylize(cb, [code])) if batch > 1
                             else None)):
                if fn is None:
                    continue
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                rows[key].append(time.perf_counter() - t0)
                if key == "with_style_s":
                    rows["with_style_cpu_s"].append(time.process_time() - c0)
    result = {
        "framework": "torch", "kind": kind, "size": size, "threads": threads,
        "channels_last": channels_last, "batch": batch, "first_s": first,
        "with_style_s": rows["with_style_s"], "without_style_s": rows["without_style_s"],
        "batch_s": rows["batch_s"], "with_style_cpu_s": rows["with_style_cpu_s"],
        "peak_rss_bytes": peak_rss_bytes(),
        "output_mean": float(out.mean()), "torch": torch.__version__,
    }
    for key in ("with_style_s", "without_style_s"):
        result[key[:-2] + "_median_s"] = statistics.median(rows[key])
    if rows["batch_s"]:
        result["batch_images_per_s"] = batch / statistics.median(rows["batch_s"])
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kind", choices=("sanet", "adain"), default="sanet")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--weights", required=True,
                   help="npz of released-layout arrays: vgg/<key>, decoder/<key>, "
                        "transformer/<key>")
    p.add_argument("--images", help="npz with 'content' and 'style' (H, W, 3) float32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--channels-last", action="store_true")
    args = p.parse_args(argv)
    result = benchmark(args.kind, args.weights, args.size, repeats=args.repeats,
                       batch=args.batch, threads=args.threads,
                       channels_last=args.channels_last, images=args.images)
    print("BENCH_JSON " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
