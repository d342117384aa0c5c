"""K settings on D devices: the compiled programs of a run, and how much fits in memory.

A run optimizes K loss-weight settings of one image at once (K = 1 for `stylize`). Its two
programs map the pure, unbatched functions of `jaxstyle.optim` over the settings, with the
params and the targets shared, never mapped:

    chunk(params, targets, lw[K], state[K], n) =
        shard_map over the mesh's D devices (K/D settings each, no collectives)
          map_settings over the local settings, B at a time
            optim.chunk(params, targets, lw, state, n)

B (the batch size) is how many settings a device computes at once: B = 1 runs them one after
another inside the program, B >= K/D is one `jax.vmap`. K is padded to a multiple of D by
repeating the last setting. B defaults to as many settings as fit in memory, measured by XLA's
own `memory_analysis()` of the compiled one-setting program (`fit_batch_size`), for every
optimizer that batches (`Optimizer.batches`); a zoom L-BFGS batch waits for its slowest
member's line search. Measurements: docs/benchmarks.md.

Several processes (multi-host): every process runs the same call with a mesh over
`jax.devices()`; `runtime.put` gives each process its own shards and `runtime.fetch` gathers
the results to every process (on CPU, `jax_cpu_collectives_implementation="gloo"`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxstyle import memory, optim, optimizers
from jaxstyle.losses import LossSpec, LossWeights, content_features
from jaxstyle.vgg import BLOCK_WIDTHS, LAYER_NAMES, layer_depth, param_shapes

AXIS = "settings"
# Where a run's first image comes from (a static choice of the init program):
#   "content"      the content image itself; its features are the content targets, computed
#                  in the same program as the first evaluation (XLA shares the forward pass)
#   "shared"       one (H, W, 3) image for every setting (noise, style, a given image)
#   "per_setting"  (K, H, W, 3) images, one per setting (a pyramid's later stages)
INIT_FROM = ("content", "shared", "per_setting")


def settings_mesh(devices: Sequence[jax.Device] | None = None, k: int | None = None) -> Mesh:
    """A 1-D mesh with axis "settings" over `devices` (default every local device). In one
    process, at most `k` devices: a device without a setting of its own would only compute
    a padding copy."""
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("no devices given")
    if k is not None and jax.process_count() == 1:
        devices = devices[:max(1, k)]
    return Mesh(np.array(devices), (AXIS,))


def pad_settings(tree: Any, multiple: int) -> tuple[Any, int]:
    """Pad the leading (K) axis of every leaf to a multiple of `multiple` by repeating the
    last entry (a valid setting, so padding never makes NaNs). Returns (padded, K)."""
    k = int(np.shape(jax.tree.leaves(tree)[0])[0])
    pad = -k % multiple
    if pad == 0:
        return tree, k
    return jax.tree.map(
        lambda a: np.concatenate([np.asarray(a), np.repeat(np.asarray(a)[-1:], pad, 0)]),
        tree), k


def map_settings(f: Callable[..., Any], xs: Any, batch_size: int) -> Any:
    """`f` over the leading axis of the pytree `xs`, B = `batch_size` at a time.

    K = 1: f once, unbatched (no loop: XLA can share work with code outside it). B = 1:
    `lax.map` (one setting at a time, unbatched, so a zoom line search keeps its real conds
    and loops). B >= K: one `jax.vmap`. Otherwise `lax.map(batch_size=B)`: a scan over
    vmapped batches of B (the remainder K mod B as one more vmap).
    """
    k = int(jax.tree.leaves(xs)[0].shape[0])
    if k == 1:
        out = f(*jax.tree.map(lambda a: a[0], xs))
        return jax.tree.map(lambda a: a[None], out)
    if batch_size == 1:
        return jax.lax.map(lambda x: f(*x), xs)
    if batch_size >= k:
        return jax.vmap(lambda x: f(*x))(xs)
    return jax.lax.map(lambda x: f(*x), xs, batch_size=batch_size)


@functools.lru_cache(maxsize=32)
def programs(mesh: Mesh, spec: LossSpec, opt: optimizers.Optimizer, batch: int, init_from: str,
             carry: bool = False, max_steps: int = optim.MAX_CHUNK_STEPS) -> tuple[Any, Any]:
    """(init, chunk): the jitted programs of a run over the settings axis of `mesh`.

    init(params, content, style, lw[K], image0, opt_state0) -> (targets, state[K], losses
        (K, 5)): the targets (`style`, the style targets of
        `losses.compute_targets(with_content=False)`, with the features of `content`), each
        setting's initial state (`optim.init`) at image0 (None for init_from "content",
        (H, W, 3) for "shared", (K, H, W, 3) for "per_setting") and its initial losses.
        opt_state0: with `carry`, each setting's optimizer state to go on from (K-batched),
        else None.
    chunk(params, targets, lw[K], state[K], n) -> (state[K], history (K, max_steps, 5)):
        `optim.chunk` per setting; the state is donated.
    Cached by their static arguments, so equal runs reuse the traced and compiled programs.
    """
    if init_from not in INIT_FROM:
        raise ValueError(f"init_from must be one of {INIT_FROM}, got {init_from!r}")

    def local_init(params, content, style, lws, image0, opt_state0):
        targets = style._replace(content=content_features(params, content, spec))

        def one(c, s, t, tau, *mapped):
            image = mapped[0] if init_from == "per_setting" else image0
            start = content if init_from == "content" else image
            return optim.init(params, targets, LossWeights(c, s, t, tau), start, spec=spec,
                              optim=opt, opt_state=mapped[-1] if carry else None)

        per_setting = ((image0,) if init_from == "per_setting" else ()) + (
            (opt_state0,) if carry else ())
        states = map_settings(one, (*lws, *per_setting), batch)
        # The initial losses again, as their own buffers: the states are donated to the first
        # chunk before the host reads them.
        return targets, states, states.losses

    def local_chunk(params, targets, lws, states, n_steps):
        def one(c, s, t, tau, state):
            return optim.chunk(params, targets, LossWeights(c, s, t, tau), state, n_steps,
                               spec=spec, optim=opt, max_steps=max_steps)

        return map_settings(one, (*lws, states), batch)

    image_spec = P(AXIS) if init_from == "per_setting" else P()
    # check_vma=False: optax's line search uses lax.cond, whose branches shard_map's
    # varying-axes check cannot type.
    shard = functools.partial(jax.shard_map, mesh=mesh, check_vma=False)
    init = jax.jit(shard(local_init, in_specs=(P(), P(), P(), P(AXIS), image_spec,
                                               P(AXIS) if carry else P()),
                         out_specs=(P(), P(AXIS), P(AXIS))))
    chunk = jax.jit(shard(local_chunk, in_specs=(P(), P(), P(AXIS), P(AXIS), P()),
                          out_specs=(P(AXIS), P(AXIS))),
                    donate_argnums=(3,))
    return init, chunk


# --------------------------------------------------------------------------- memory


# The run's memory model (`estimated_bytes`), calibrated against the peak resident memory of
# CLI runs on the CPU (benchmarks/memory.py; docs/benchmarks.md): what one value-and-gradient
# pass keeps per pixel, as a multiple of its activations' bytes; what the process adds
# besides (the XLA runtime, compiling, the params' host copy while they load).
ACTIVATION_FACTOR = 0.82
FIXED_BYTES = 730 * 2**20
# Host-side images at the last stage's size (content, its luminance, the start, the result,
# copies on their way to and from the device), float32 RGB: bytes per pixel.
HOST_BYTES_PER_PIXEL = 8 * 3 * 4


def activation_bytes_per_pixel(layers: Sequence[str]) -> float:
    """Bytes per input pixel of one value-and-gradient pass: the activation and its gradient,
    float32, of every convolution up to the deepest of `layers` (block b's maps have 4^(b-1)
    times fewer pixels)."""
    deepest = layer_depth(max(layers, key=layer_depth))
    return sum(2 * 4 * BLOCK_WIDTHS[int(name[4]) - 1] / 4 ** (int(name[4]) - 1)
               for name in LAYER_NAMES[: deepest + 1] if name.startswith("conv"))


def state_bytes_per_pixel(optimizer: optimizers.Optimizer) -> int:
    """Bytes per pixel of one setting's optimizer state and step state: float32 images
    (L-BFGS: 2 x memory pairs and 6 more; the others: 2 moments and 4 more)."""
    images = 2 * optimizer.memory_size + 6 if optimizer.uses_linesearch or \
        "lbfgs" in optimizer.name else 6
    return images * 3 * 4


def estimated_bytes(height: int, width: int, layers: Sequence[str],
                    optimizer: optimizers.Optimizer, *, settings: int = 1) -> int:
    """What a run at (height, width) with `settings` settings on one device adds to the
    process at its peak, made before anything is compiled or loaded, so that a size check
    costs nothing: the params, FIXED_BYTES, and per pixel the pass's activations
    (ACTIVATION_FACTOR x `activation_bytes_per_pixel`), each setting's state and the host's
    images. Held against measured peaks by benchmarks/memory.py and against XLA's own memory
    analysis by the tests."""
    params = 4 * sum(int(np.prod(s)) for layer in param_shapes().values()
                     for s in layer.values())
    per_pixel = (ACTIVATION_FACTOR * activation_bytes_per_pixel(layers)
                 + settings * state_bytes_per_pixel(optimizer) + HOST_BYTES_PER_PIXEL)
    return int(params + FIXED_BYTES + per_pixel * height * width)


def fit_batch_size(compile_one: Callable[[], Any], k_local: int, device: jax.Device,
                   optimizer: optimizers.Optimizer) -> tuple[int, Any | None]:
    """(B, the compiled one-setting program or None): how many settings a device computes
    at once when the caller does not say.

    One local setting, or an optimizer that does not batch (`Optimizer.batches`): 1.
    Otherwise the largest B <= k_local with
        arguments + outputs - aliased + B * temp  <=  memory.limit_bytes(device),
    where the sizes come from XLA's `memory_analysis()` of `compile_one()` (the chunk program
    compiled for B = 1; returned so the caller can run it when B is 1).
    """
    if k_local == 1 or not optimizer.batches:
        return 1, None
    compiled = compile_one()
    budget = memory.limit_bytes(device)
    stats = compiled.memory_analysis()
    if budget is None or stats is None:
        return k_local, compiled
    fixed = (stats.argument_size_in_bytes + stats.output_size_in_bytes
             - stats.alias_size_in_bytes)
    per_setting = max(1, stats.temp_size_in_bytes)
    return int(max(1, min(k_local, (budget - fixed) // per_setting))), compiled
