"""The jaxstyle objective, line for line, in PyTorch: the baseline bench.py compares against.

Same formulas as jaxstyle.losses, same layers (style relu1_1..relu5_1, content
relu4_2), same synthetic weights (jaxstyle.random_weights, HWIO -> OIHW), caffe preprocessing,
NCHW tensors in channels_last memory (PyTorch's fast CPU layout), weights frozen, the gradient
taken with respect to the image only:

    total = alpha * 1/2 sum (F - P)^2
          + beta  * sum_l w_l sum (G_l - A_l)^2 / (4 N_l^2 M_l^2)      G = F F^T, F (N, M)
          + gamma * sum (x[i+1,j] - x[i,j])^2 + (x[i,j+1] - x[i,j])^2

Used by bench.py (in a subprocess per size, so peak RSS is per size) and by tests/test_bench.py
(value and gradient equal jaxstyle's). Run alone:

    python benchmarks/torch_baseline.py --size 512 --steps 5 --threads 2 [--device cuda]

prints one JSON object (per-step times, median, peak RSS).
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # process start (near enough), for the time to the first step

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as tf  # noqa: E402

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(_ROOT, "benchmarks"))
from procmem import peak_rss_bytes  # noqa: E402

# VGG19's convolutions in forward order, with the pooling after each block's last one.
BLOCK_DEPTHS = (2, 2, 4, 4, 4)
CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _layer_sequence() -> list[str]:
    seq = []
    for b, depth in enumerate(BLOCK_DEPTHS, 1):
        for i in range(1, depth + 1):
            seq += [f"conv{b}_{i}", f"relu{b}_{i}"]
        seq.append(f"pool{b}")
    return seq


LAYER_SEQUENCE = _layer_sequence()


def torch_params(params, dtype=torch.float32) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """jaxstyle params {conv: {"kernel": HWIO, "bias": (C,)}} -> {conv: (OIHW kernel, bias)}."""
    out = {}
    for name, p in params.items():
        # [kH, kW, inC, outC] -> [outC, inC, kH, kW]
        k = torch.from_numpy(np.array(p["kernel"], np.float32).transpose(3, 2, 0, 1).copy())
        b = torch.from_numpy(np.array(p["bias"], np.float32))
        out[name] = (k.to(dtype).contiguous(memory_format=torch.channels_last), b.to(dtype))
    return out


class TorchObjective:
    """alpha L_c + beta L_s + gamma TV of one (H, W, 3) RGB [0, 1] image, in PyTorch."""

    def __init__(self, params, *, content_layers=CONTENT_LAYERS, style_layers=STYLE_LAYERS,
                 style_layer_weights=None, pooling: str = "max", device: str = "cpu"):
        self.device = torch.device(device)
        self.params = {name: (k.to(self.device), b.to(self.device))
                       for name, (k, b) in torch_params(params).items()}
        self.content_layers = tuple(content_layers)
        self.style_layers = tuple(style_layers)
        n = len(self.style_layers)
        w = style_layer_weights or (1.0,) * n
        self.style_layer_weights = tuple(float(v) / sum(w) for v in w)
        self.pooling = pooling
        wanted = set(self.content_layers + self.style_layers)
        self.last = max(LAYER_SEQUENCE.index(name) for name in wanted)
        self.targets = None

    @staticmethod
    def preprocess(image: torch.Tensor) -> torch.Tensor:
        """(H, W, 3) RGB [0, 1] -> (1, 3, H, W) caffe input (BGR, 0-255, minus the mean)."""
        mean = torch.tensor(CAFFE_MEAN_BGR, dtype=image.dtype, device=image.device)
        mean = mean.view(1, 3, 1, 1)
        x = image.flip(-1).permute(2, 0, 1)[None] * 255.0 - mean
        return x.contiguous(memory_format=torch.channels_last)

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """{layer: (1, C, h, w)} for the content and style layers, stopping at the deepest."""
        wanted = set(self.content_layers + self.style_layers)
        x, out = self.preprocess(image), {}
        for name in LAYER_SEQUENCE[: self.last + 1]:
            if name.startswith("conv"):
                k, b = self.params[name]
                x = tf.conv2d(x, k, b, padding=1)
            elif name.startswith("relu"):
                x = tf.relu(x)
            elif self.pooling == "max":
                x = tf.max_pool2d(x, 2, 2)
            else:
                x = tf.avg_pool2d(x, 2, 2)
            if name in wanted:
                out[name] = x
        return out

    @staticmethod
    def gram(f: torch.Tensor) -> torch.Tensor:
        """(1, N, h, w) -> G = F F^T, (N, N), F reshaped to (N, M = h*w)."""
        f = f.reshape(f.shape[1], -1)
        return f @ f.t()

    def set_targets(self, content: np.ndarray, styles: list[np.ndarray], blend=None) -> None:
        """P (content features) and A = sum_k b_k (M / M_k) G_k (blended, size-rescaled)."""
        blend = blend or (1.0,) * len(styles)
        blend = [float(b) / sum(blend) for b in blend]
        with torch.no_grad():
            cf = self.features(self.tensor(content))
            grams = {}
            for b, style in zip(blend, styles, strict=True):
                sf = self.features(self.tensor(style))
                for name in self.style_layers:
                    scale = (cf[name].shape[2] * cf[name].shape[3]) / (
                        sf[name].shape[2] * sf[name].shape[3])
                    g = b * scale * self.gram(sf[name])
                    grams[name] = g if name not in grams else grams[name] + g
        self.targets = ({n: cf[n] for n in self.content_layers}, grams)

    def tensor(self, image: np.ndarray) -> torch.Tensor:
        """An (H, W, 3) float32 image as a tensor on the objective's device."""
        return torch.from_numpy(np.asarray(image, np.float32)).to(self.device)

    def loss(self, image: torch.Tensor, alpha: float, beta: float, gamma: float):
        """(total, {"content", "style", "tv"}) as 0-d tensors."""
        content_t, grams_t = self.targets
        feats = self.features(image)
        l_c = sum(0.5 * torch.sum((feats[n] - content_t[n]) ** 2) for n in self.content_layers)
        l_s = 0.0
        for name, w in zip(self.style_layers, self.style_layer_weights, strict=True):
            f = feats[name]
            n, m = f.shape[1], f.shape[2] * f.shape[3]
            l_s = l_s + w * torch.sum((self.gram(f) - grams_t[name]) ** 2) / (4.0 * n**2 * m**2)
        dy = image[1:] - image[:-1]
        dx = image[:, 1:] - image[:, :-1]
        tv = torch.sum(dy * dy) + torch.sum(dx * dx)
        total = alpha * l_c + beta * l_s + gamma * tv
        return total, {"content": l_c, "style": l_s, "tv": tv}

    def value_and_grad(self, image: np.ndarray | torch.Tensor, alpha=1.0, beta=1e3, gamma=0.0):
        """(total as float, d total / d image as an (H, W, 3) float32 numpy array)."""
        x = self.tensor(np.array(image, np.float32)).requires_grad_(True)
        total, _ = self.loss(x, alpha, beta, gamma)
        total.backward()
        return float(total.detach()), x.grad.cpu().numpy()



def synthetic_problem(size: int, seed: int = 0):
    """Content and style noise images (size, size, 3) float32 in [0, 1], for a run without
    --images (bench.py passes the photos its JAX rows use)."""
    rng = np.random.default_rng(seed)
    content = rng.random((size, size, 3), dtype=np.float32)
    style = rng.random((size, size, 3), dtype=np.float32)
    return content, style


def load_npz_params(path: str) -> dict:
    """A jaxstyle-format .npz (flat "conv1_1/kernel" keys) -> {conv: {"kernel", "bias"}}."""
    params: dict = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            if key == "convention":  # jaxstyle's 0-d entry beside the arrays
                continue
            layer, leaf = key.split("/")
            params.setdefault(layer, {})[leaf] = data[key]
    return params


def run(size: int, steps: int, threads: int, weights_npz: str | None = None,
        seed: int = 0, device: str = "cpu", images_npz: str | None = None) -> dict:
    """Time `steps` value-and-gradient evaluations at (size, size) after one warm-up step.

    Weights come from `weights_npz` (written by bench.py from jaxstyle.random_weights, so this
    process never imports jax and its peak RSS is PyTorch's alone), or else from
    jaxstyle.random_weights(seed) directly. images_npz: "content" and "style" arrays
    (size, size, 3) (bench.py's photos), else `synthetic_problem`. device "cuda": on the GPU
    (bench.py's baseline for a jax GPU backend), each step timed up to a synchronize, peak
    memory from PyTorch's allocator.
    """
    t_start = time.perf_counter()
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"torch {torch.__version__} has no CUDA device here")
    cuda = device == "cuda"
    torch.set_num_threads(threads)
    if weights_npz:
        params = load_npz_params(weights_npz)
    else:
        sys.path.insert(0, _ROOT)
        import jaxstyle

        params = jaxstyle.random_weights(seed).params
    obj = TorchObjective(params, device=device)
    del params
    if images_npz:
        with np.load(images_npz, allow_pickle=False) as data:
            content, style = data["content"], data["style"]
    else:
        content, style = synthetic_problem(size, seed)
    obj.set_targets(content, [style])
    x = obj.tensor(content.copy()).requires_grad_(True)
    if cuda:
        torch.cuda.synchronize()
    # Ready to step: imports, weights and the targets' forward passes done (no compile here).
    ready = time.perf_counter() - _T0
    times, first = [], None
    for _ in range(steps + 1):
        t = time.perf_counter()
        x.grad = None
        total, _ = obj.loss(x, 1.0, 1e3, 0.0)
        total.backward()
        if cuda:
            torch.cuda.synchronize()
        if first is None:  # the first step pays oneDNN's one-time primitive setup
            first = time.perf_counter() - t
        else:
            times.append(time.perf_counter() - t)
    return {
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "size": size,
        "threads": torch.get_num_threads(),
        "ready_s": ready,
        "first_step_s": first,
        "step_times_s": times,
        "step_s": statistics.median(times),
        "loss": float(total.detach()),
        "peak_rss_bytes": peak_rss_bytes(),
        # bench.py's key for a device's peak, as jax workers report theirs
        "device_memory": ({"peak_bytes_in_use": torch.cuda.max_memory_allocated()} if cuda
                          else {}),
        "total_s": time.perf_counter() - t_start,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--weights-npz", default=None,
                        help="jaxstyle-format .npz of the weights (default: random_weights(0))")
    parser.add_argument("--images", default=None,
                        help=".npz of 'content' and 'style' (size, size, 3) (default: noise)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.size, args.steps, args.threads, args.weights_npz,
                         device=args.device, images_npz=args.images)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
