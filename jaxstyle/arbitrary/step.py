"""The training state, the optimizer and the one jitted train step, sharded over a mesh.

    mesh = batch_mesh()                                   # every device of every host
    state = init_state(trainable, config)                 # step 0, Adam moments at zero
    step = compiled_step(mesh, config)
    state, metrics = step(state, encoder, content, style) # uint8 (B, S, S, 3) batches

State: `TrainState(step, params, opt_state)`, params the trainable parts {"decoder"[,
"transform"]} in float32 (the master weights, whatever the compute dtype); the frozen encoder
is a separate argument of the step, never in the state, the optimizer or a checkpoint.

Optimizer: Adam (optax defaults: b1 0.9, b2 0.999, eps 1e-8, as torch.optim.Adam) with the
reference's decay, lr(k) = learning_rate / (1 + lr_decay * k) for the k-th update, k = 0, 1 ...

Step: the batches arrive as uint8 and become float32 x / 255 on the device (a quarter of the
bytes to transfer); loss and gradients of `losses.LOSSES[kind]` with respect to the trainable
params; one Adam update. Metrics: "total", each part of the loss and "lr", float32 scalars.

Sharding: a 1-D mesh over the devices, axis "batch"; the batch (B, ...) is split over it,
params, optimizer state and metrics are replicated. The loss is a mean over the whole batch,
so XLA sums the per-device partial gradients (an all-reduce) and every device applies the
same update: the result is the one-device result, up to the order of the sums. B must be a
multiple of the device count. Several hosts: every host runs the same step on the global
arrays; `put_batch` assembles the global batch from each host's rows.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxstyle import memory, runtime
from jaxstyle.arbitrary.losses import LOSSES, noise_sample
from jaxstyle.arbitrary.train_config import TrainConfig
from jaxstyle.files import SettingError

AXIS = "batch"
NOISE_SEED = 20210202  # MCCNet's noise: key(NOISE_SEED) folded with the step number


class TrainState(NamedTuple):
    """step: int32 scalar, updates done; params: the trainable parts; opt_state: Adam's."""

    step: Any
    params: Any
    opt_state: Any


def schedule(config: TrainConfig) -> optax.Schedule:
    """k -> learning_rate / (1 + lr_decay * k), the reference's adjust_learning_rate."""
    return lambda k: config.learning_rate / (1.0 + config.lr_decay * k)


def optimizer(config: TrainConfig) -> optax.GradientTransformation:
    return optax.adam(schedule(config))


def init_params(kind: str, seed: int = 0) -> dict[str, Any]:
    """Fresh trainable params {"decoder"[, "transform"]} as the reference code starts them:
    PyTorch's default nn.Conv2d initialization, kernel and bias each U(-b, b) with
    b = 1 / sqrt(fan_in), fan_in = kh kw Cin (kaiming_uniform with a = sqrt(5)). Flax's
    LeCun-normal kernels are sqrt(3) times larger per layer, which over the decoder's 9
    convolutions put the first losses 1000x higher and made the first steps jump.
    Seeded by `seed` (NumPy), as host float32 arrays."""
    from jaxstyle.arbitrary.weights import param_shapes

    rng = np.random.default_rng([seed, 7])

    def init(tree):
        if "kernel" in tree:
            kh, kw, cin, _ = tree["kernel"]
            bound = 1.0 / np.sqrt(kh * kw * cin)
            return {k: rng.uniform(-bound, bound, tree[k]).astype(np.float32)
                    for k in ("kernel", "bias")}
        return {name: init(sub) for name, sub in sorted(tree.items())}

    return init(param_shapes(kind, encoder=False))


def init_state(params: dict[str, Any], config: TrainConfig) -> TrainState:
    """Step 0: float32 copies of the trainable params, Adam's moments at zero."""
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    return TrainState(jnp.int32(0), params, optimizer(config).init(params))


def train_step(state: TrainState, encoder: Any, content: jax.Array, style: jax.Array, *,
               config: TrainConfig) -> tuple[TrainState, dict[str, jax.Array]]:
    """One Adam step on a batch (module docstring): uint8 (B, S, S, 3) content and style
    -> (the next state, {"total", parts ..., "lr"})."""
    dtype = jnp.dtype(config.compute_dtype)
    c, s = (x.astype(jnp.float32) / 255.0 for x in (content, style))
    extra = {}
    if config.noise_weight > 0:  # MCCNet's term; its noise seeded by the step number
        key = jax.random.fold_in(jax.random.key(NOISE_SEED), state.step)
        extra = {"noise": noise_sample(key, c.shape), "noise_weight": config.noise_weight}

    def loss(params):
        return LOSSES[config.kind]({**params, "encoder": encoder}, c, s, compute_dtype=dtype,
                                   **extra)

    (total, parts), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
    updates, opt_state = optimizer(config).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"total": total, **parts, "lr": jnp.float32(schedule(config)(state.step))}
    return TrainState(state.step + 1, params, opt_state), metrics


def batch_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh, axis "batch", over `devices` (default every device of every host)."""
    return Mesh(np.array(jax.devices() if devices is None else devices), (AXIS,))


def compiled_step(mesh: Mesh, config: TrainConfig):
    """`train_step` jitted over `mesh`: state and encoder replicated, batches split on their
    first axis; the state is donated (updated in place). Cached per (mesh, the fields the
    step reads: `TrainConfig.step_key`)."""
    return _compiled_step(mesh, config.step_key())


@functools.lru_cache(maxsize=8)
def _compiled_step(mesh: Mesh, config: TrainConfig):
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
    return jax.jit(functools.partial(train_step, config=config),
                   in_shardings=(replicated, replicated, split, split),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))


def put_replicated(tree: Any, mesh: Mesh) -> Any:
    """Host arrays (the same on every host) as arrays replicated over `mesh`."""
    return runtime.put(tree, NamedSharding(mesh, P()))


def put_batch(local: np.ndarray, mesh: Mesh) -> jax.Array:
    """This host's rows (B / hosts, ...) -> the global (B, ...) batch split over `mesh`."""
    return jax.make_array_from_process_local_data(NamedSharding(mesh, P(AXIS)), local)


def to_host(tree: Any) -> Any:
    """Replicated arrays -> host NumPy arrays (this host's copy; no communication)."""
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)


def check_batch(batch_size: int, mesh: Mesh) -> None:
    """SettingError unless the batch splits evenly over the mesh's devices and the hosts."""
    devices, hosts = mesh.devices.size, jax.process_count()
    if batch_size % devices or batch_size % hosts:
        raise SettingError(f"batch size {batch_size} does not split over {devices} devices "
                           f"({hosts} hosts): use a multiple of {np.lcm(devices, hosts)}",
                           "batch_size")


# The training step's memory (`check_memory`), from XLA's memory analysis of the compiled
# step on the CPU (2026-12-07, batches of 2 and 4 at 64 and 128 px crops): bytes of
# temporaries per pixel of each image in a device's share of the batch, which grow linearly
# in it (activations and gradients of the encoder and decoder; SANet's three transforms and
# decodes per image), and what the process adds besides (the XLA runtime, compiling, the
# data pipeline's read-ahead).
BYTES_PER_PIXEL = {"sanet": 14_600, "adain": 3_700}
FIXED_BYTES = 400 * 2**20


def check_memory(config: TrainConfig, mesh: Mesh, memory_limit: float | None = None) -> None:
    """SettingError (naming crop_size) before any work when a device's share of the step
    cannot fit: the params, the Adam moments of the trainable ones and the frozen encoder,
    plus BYTES_PER_PIXEL of each image's crop (`memory.check`)."""
    from jaxstyle.arbitrary.weights import param_shapes

    def size(tree) -> int:
        return 4 * sum(int(np.prod(s)) for s in jax.tree.leaves(
            tree, is_leaf=lambda x: isinstance(x, tuple)))

    shapes = param_shapes(config.kind)
    fixed = FIXED_BYTES + size(shapes["encoder"]) + 3 * size(
        {k: v for k, v in shapes.items() if k != "encoder"})
    per_device = -(-config.batch // mesh.devices.size)

    def bytes_at(crop: int) -> int:
        return int(fixed + per_device * crop * crop * BYTES_PER_PIXEL[config.kind])

    device = mesh.devices.flat[0]
    plan = memory.plan(bytes_at(config.crop_size), device, memory_limit)
    memory.check(plan, f"a training step of {per_device} {config.crop_size} px crop(s) per "
                       "device", bytes_at, config.crop_size, device, name="crop_size")
