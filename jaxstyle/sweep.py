"""`sweep`: K loss-weight settings stylized by one compiled program.

    grid = jaxstyle.loss_weight_grid(content=[1, 5], style=[1e2, 1e3, 1e4])   # K = 6
    result = jaxstyle.sweep(content, style, weights=w, loss_weights=grid)
    result.images            # (K, H, W, 3) float32 RGB in [0, 1]
    result.contact_sheet()   # rows x cols labelled grid (the alpha/beta grid of Fig. 3)

How it runs. The per-setting step loop is `jaxstyle.optim.chunk` (the same one `stylize`
uses); the sweep maps it over the K settings and their optimizer states, with the params
and the targets (content features, style Grams: computed once) shared, never mapped:

    program(params, targets, lw[K], state[K], n) =
        shard_map over devices D (K/D settings each, no collectives)
          lax.map over the local settings in batches of B, each batch `jax.vmap`ped
            optim.chunk(params, targets, lw, state, n)

B (`batch_size`) is how many settings a device computes at once: B = 1 runs its settings
one after another inside the program (no vmap), B >= K/D is one vmap. K is padded to a
multiple of D by repeating the last setting; the padding is dropped from the results. The
whole sweep is one compiled chunk program (plus a small one for the initial states), called
every `callback_every` steps; loss weights are traced, so a new grid of the same K does not
recompile.

Which B. Memory and speed decide. A vmapped zoom line search (optimizer "lbfgs") runs both
branches of its conds and loops until the slowest member is done, so the default B for it
is 1: settings in sequence, each with its own unbatched line search. "adam" and
"lbfgs-nols" default to the largest B that fits in memory (`auto_batch_size`). Measured on
the shared 2-core CPU (64 px, K = 4 settings, 20 iterations, seconds of steps without
compilation, two repetitions, load average 7.5-10):
    zoom L-BFGS, 4 separate `stylize` runs          77.4   51.6
    zoom L-BFGS, sequential in one program (B = 1)  101.4  73.0
    zoom L-BFGS, one vmap (B = 4)                   451.2  164.5   (2.3-4.5x sequential)
    line-search-free L-BFGS, one vmap (B = 4)       68.1   36.0
Sequential against separate, interleaved A/B (10 iterations, 4 repetitions, load 6.9-9.5):
26.9-32.1 s against 28.7-42.5 s (medians 29.0 and 32.4): the same cost. The
line-search-free optimizer's best losses were within 0.5% of zoom L-BFGS's after 20
iterations at about half the time: pass `optimizer="lbfgs-nols"` for fast sweeps.
vmap (B = 4) against sequential (B = 1), 10 iterations, 4 interleaved repetitions (load
9.4-14): Adam 8.6-14.3 s against 14.9-32.6 s (1.6-2.3x faster), line-search-free L-BFGS
12.0-19.5 s against 12.9-21.0 s (about equal, within the noise of that load). So for these
two optimizers the batch was not slower on this CPU; on accelerators it is expected to be
where the throughput comes from (not measured: no GPU so far).

Several devices. All local devices (or `devices=`) form a 1-D `jax.sharding.Mesh` with axis
"settings"; the K axis of the loss weights and states is sharded over it with
`jax.shard_map` (`check_vma=False`: optax's line search uses `lax.cond`), params and targets
are replicated. The same code runs on one device (a mesh of one). On CPU, test with
`XLA_FLAGS=--xla_force_host_platform_device_count=4`.

Multi-host (several machines, each with local devices): start every process with the same
arguments and call, before anything else touches JAX,

    jax.distributed.initialize(coordinator_address="host0:1234", num_processes=N,
                               process_id=i)   # on CPU also: jax.config.update(
                                               #   "jax_cpu_collectives_implementation", "gloo")

then `sweep(..., devices=jax.devices())`: the mesh spans every process's devices, each
process feeds its own shards (`jax.make_array_from_callback`) and the results are gathered
to every process (`multihost_utils.process_allgather`). Only process 0 should write files.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxstyle import executables, files, optim
from jaxstyle.config import LossWeights, StyleConfig
from jaxstyle.image import as_content_and_styles, contact_sheet, save_image
from jaxstyle.losses import prepare_targets
from jaxstyle.stylize import check_run_arguments, initial_image
from jaxstyle.vgg import VGGWeights

AXIS = "settings"
FIELDS = LossWeights._fields  # ("content", "style", "tv")
_SYMBOL = {"content": "alpha", "style": "beta", "tv": "gamma"}


# --------------------------------------------------------------------------- labels


def format_weight(x: float) -> str:
    """Short, file-name-safe text for a weight: 1, 5, 0.5, 100, 1e3, 1.5e4, 8e-4, 0."""
    x = float(x)
    if x == 0:
        return "0"
    if 0.01 <= abs(x) < 1000:
        return f"{x:.4g}"
    mantissa, exponent = f"{x:.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def setting_label(content: float, style: float, tv: float) -> str:
    """The name of one setting, used in file names: "c1_s1e3_tv0"."""
    return f"c{format_weight(content)}_s{format_weight(style)}_tv{format_weight(tv)}"


@dataclasses.dataclass(frozen=True)
class WeightGrid:
    """K loss-weight settings laid out as a rows x cols grid (K = rows * cols, row-major).

    loss_weights: `LossWeights` of (K,) float32 numpy arrays.
    row_labels, col_labels: text for the contact sheet's rows and columns.
    row_title, col_title: what varies along the rows / columns ("" when nothing does).
    """

    loss_weights: LossWeights
    row_labels: tuple[str, ...]
    col_labels: tuple[str, ...]
    row_title: str = ""
    col_title: str = ""

    def __post_init__(self) -> None:
        k = _num_settings(self.loss_weights)
        if len(self.row_labels) * len(self.col_labels) != k:
            raise ValueError(f"{len(self.row_labels)} x {len(self.col_labels)} grid labels for "
                             f"{k} settings")

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.row_labels), len(self.col_labels)

    @property
    def labels(self) -> tuple[str, ...]:
        """Per-setting names for files ("c1_s1e3_tv0"), in setting order."""
        return tuple(setting_label(*w) for w in zip(*self.loss_weights, strict=True))

    @classmethod
    def row(cls, loss_weights: LossWeights) -> WeightGrid:
        """Any K settings as one row, each column labelled with its three weights."""
        lw = _as_numpy_weights(loss_weights)
        cols = tuple(f"{_SYMBOL['content']}={format_weight(c)}\n{_SYMBOL['style']}="
                     f"{format_weight(s)}\n{_SYMBOL['tv']}={format_weight(t)}"
                     for c, s, t in zip(*lw, strict=True))
        return cls(lw, ("",), cols)


def loss_weight_grid(
    *,
    content: float | Sequence[float] = 1.0,
    style: float | Sequence[float] = 1e3,
    tv: float | Sequence[float] = 0.0,
) -> WeightGrid:
    """The Cartesian product of the given alpha (content), beta (style), gamma (TV) values.

    K = len(content) * len(style) * len(tv) settings, ordered with content slowest and tv
    fastest. Layout: the columns are the last swept weight in the order (content, style, tv)
    with style preferred (the paper's Fig. 3 varies beta along a row); the rows are the
    product of the other swept weights. Nothing swept: one cell.
    """
    values = {name: _value_list(v, name) for name, v in
              (("content", content), ("style", style), ("tv", tv))}
    swept = [name for name in FIELDS if len(values[name]) > 1]
    col_axis = "style" if "style" in swept else (swept[-1] if swept else None)
    row_axes = [name for name in swept if name != col_axis]
    combos = list(itertools.product(*(values[name] for name in FIELDS)))
    arrays = [np.array([c[i] for c in combos], np.float32) for i in range(3)]
    lw = LossWeights(*arrays)
    # Settings in row-major order of (row axes..., column axis): reorder the product.
    row_values = list(itertools.product(*(values[name] for name in row_axes)))
    col_values = values[col_axis] if col_axis else (None,)
    order = []
    for rv in row_values:
        for cv in col_values:
            fixed = dict(zip(row_axes, rv, strict=True))
            if col_axis:
                fixed[col_axis] = cv
            order.append(next(i for i, c in enumerate(combos)
                              if all(c[FIELDS.index(n)] == v for n, v in fixed.items())))
    lw = LossWeights(*(a[order] for a in lw))
    row_labels = tuple(" ".join(f"{_SYMBOL[n]}={format_weight(v)}"
                                for n, v in zip(row_axes, rv, strict=True)) for rv in row_values)
    col_labels = tuple(f"{_SYMBOL[col_axis]}={format_weight(v)}" if col_axis else ""
                       for v in col_values)
    return WeightGrid(lw, row_labels, col_labels, row_title=" ".join(row_axes),
                      col_title=col_axis or "")


def ratio_weights(
    ratios: Sequence[float],
    *,
    content_weight: float | None = None,
    style_weight: float | None = None,
    tv: float | Sequence[float] = 0.0,
) -> WeightGrid:
    """Settings with the given alpha/beta ratios (the paper's Fig. 3: 1e-3, 8e-4, 5e-3, 5e-4).

    Fix one of the two: style_weight=beta gives alpha = ratio * beta; otherwise
    content_weight=alpha (default 1) gives beta = alpha / ratio. Columns are the ratios in the
    given order; several tv values make rows.
    """
    if content_weight is not None and style_weight is not None:
        raise ValueError("give content_weight or style_weight, not both: the ratio sets the other")
    r = _value_list(ratios, "ratio")
    if any(v <= 0 for v in r):
        raise ValueError(f"alpha/beta ratios must be > 0, got {list(r)}")
    tvs = _value_list(tv, "tv")
    if style_weight is not None:
        pairs = [(v * float(style_weight), float(style_weight)) for v in r]
    else:
        alpha = 1.0 if content_weight is None else float(content_weight)
        pairs = [(alpha, alpha / v) for v in r]
    settings = [(a, b, t) for t in tvs for a, b in pairs]
    lw = LossWeights.of(*zip(*settings, strict=True))
    lw = LossWeights(*(np.asarray(a) for a in lw))
    row_labels = tuple(f"{_SYMBOL['tv']}={format_weight(t)}" for t in tvs) if len(tvs) > 1 \
        else ("",)
    col_labels = tuple(f"alpha/beta={format_weight(v)}" for v in r)
    return WeightGrid(lw, row_labels, col_labels, row_title="tv" if len(tvs) > 1 else "",
                      col_title="alpha/beta")


def _value_list(v: float | Sequence[float], name: str) -> tuple[float, ...]:
    values = tuple(float(x) for x in np.atleast_1d(np.asarray(v, np.float64)))
    if not values:
        raise ValueError(f"{name}: no values given")
    if not all(np.isfinite(x) and x >= 0 for x in values):
        raise ValueError(f"{name} values must be finite and >= 0, got {list(values)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} values repeat: {list(values)}")
    return values


def _as_numpy_weights(lw: LossWeights) -> LossWeights:
    arrays = np.broadcast_arrays(*(np.asarray(v, np.float32) for v in lw))
    if arrays[0].ndim != 1 or arrays[0].shape[0] == 0:
        raise ValueError("sweep loss weights must be (K,) arrays with K >= 1, got shape "
                         f"{arrays[0].shape}")
    for name, a in zip(FIELDS, arrays, strict=True):
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError(f"{name} weights must be finite and >= 0, got {a.tolist()}")
    return LossWeights(*(np.ascontiguousarray(a) for a in arrays))


def _num_settings(lw: LossWeights) -> int:
    return int(np.shape(lw.content)[0])


# --------------------------------------------------------------------------- batching


def pad_settings(tree: Any, multiple: int) -> tuple[Any, int]:
    """Pad the leading (K) axis of every leaf to a multiple of `multiple` by repeating the
    last entry (a valid setting, so padding never makes NaNs). Returns (padded, K)."""
    leaves = jax.tree.leaves(tree)
    k = int(np.shape(leaves[0])[0])
    pad = -k % multiple
    if pad == 0:
        return tree, k
    return jax.tree.map(
        lambda a: np.concatenate([np.asarray(a), np.repeat(np.asarray(a)[-1:], pad, 0)]),
        tree), k


def map_settings(f: Callable[..., Any], xs: Any, batch_size: int) -> Any:
    """`f` over the leading axis of the pytree `xs`, B = `batch_size` at a time.

    B = 1 or K = 1: `lax.map` (a scan; one setting at a time, unbatched, so a zoom line
    search keeps its real conds and loops; XLA drops the loop of a scan of one). B >= K: one
    `jax.vmap`. Otherwise `lax.map(batch_size=B)`: a scan over vmapped batches of B, the
    remainder K mod B as one more vmap. (A vmap even of one setting turns the line search's
    conds into selects that run both branches: K = 1 zoom L-BFGS at 128 px took 2.28 s for 5
    steps vmapped against 1.33 s unbatched.)
    """
    k = int(jax.tree.leaves(xs)[0].shape[0])
    if min(batch_size, k) == 1:
        return jax.lax.map(lambda x: f(*x), xs)
    if batch_size >= k:
        return jax.vmap(lambda x: f(*x))(xs)
    return jax.lax.map(lambda x: f(*x), xs, batch_size=batch_size)


# --------------------------------------------------------------------------- memory

# Memory model of the chunk program, measured with `compiled.memory_analysis()` (XLA temp
# bytes) on CPU at 64-512 px for B = 1..4 settings in flight (K = 4):
#     bytes = params + 2 * K_local * state_bytes + FIXED_BYTES + B * setting_bytes(H, W)
# (the states are arguments, and lax.map stacks a copy). setting_bytes, per setting in
# flight = the slope in B: Adam 1750-1980 B/px (128-512 px), line-search-free L-BFGS
# 1390-1570 B/px; a vmapped zoom L-BFGS 110 MB + 3560 B/px (it also batches its line
# search's loop state). The fixed part was 52-56 MB at 64-128 px.
WORK_BYTES_PER_PIXEL = {"adam": 2000, "lbfgs-nols": 2000, "lbfgs": 3600}
WORK_BYTES_PER_SETTING = {"adam": 0, "lbfgs-nols": 0, "lbfgs": 110 * 2**20}
FIXED_BYTES = 64 * 2**20
# Share of the free memory a sweep plans to use: CPU RAM is shared with the OS and other
# processes; accelerators report their own pool.
CPU_MEMORY_FRACTION = 0.5
ACCELERATOR_MEMORY_FRACTION = 0.8


def state_bytes(height: int, width: int, optimizer: str, memory_size: int = 10) -> int:
    """Bytes of one setting's optimizer state: the images it carries (iterate, gradient, best
    iterate: 3) plus optax's (L-BFGS: 2 * memory_size + 2 images for its s/y history, the
    update and the line search's gradient; Adam: 2 moments), each H * W * 3 float32.
    (Measured: 4 states at 256 px, Adam 15.7 MB = 5 images each, L-BFGS 81.8 MB = 26.)"""
    image = height * width * 3 * 4
    extra = 2 * memory_size + 3 if optimizer.startswith("lbfgs") else 2
    return (3 + extra) * image


def setting_bytes(height: int, width: int, optimizer: str = "adam") -> int:
    """Working memory of one setting in flight (activations and gradients of the VGG pass,
    optimizer temporaries): WORK_BYTES_PER_PIXEL * H * W (+ WORK_BYTES_PER_SETTING)."""
    return (WORK_BYTES_PER_PIXEL[optimizer] * height * width
            + WORK_BYTES_PER_SETTING[optimizer])


def free_memory_bytes(device: jax.Device) -> int | None:
    """Free memory of `device` in bytes: the allocator's limit minus what is in use on an
    accelerator (`device.memory_stats()`), MemAvailable of /proc/meminfo (or sysconf) on CPU
    divided among the local CPU devices (they share the RAM). None if unknown."""
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without stats raise various errors
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    available = _host_available_bytes()
    if available is None:
        return None
    if device.platform == "cpu":
        available //= max(1, len(jax.local_devices(backend="cpu")))
    return available


def _host_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def auto_batch_size(
    k_local: int,
    height: int,
    width: int,
    optimizer: str,
    device: jax.Device,
    *,
    memory_size: int = 10,
    params_bytes: int = 0,
) -> int:
    """Settings computed at once per device when `batch_size` is not given.

    Zoom L-BFGS ("lbfgs"): 1, its settings in sequence. Measured on the 2-core CPU (64 px, 20
    iterations, K = 4; module docstring): one vmap over the 4 cost several times the
    sequential program, which ran about as fast as 4 separate `stylize` runs.
    "adam", "lbfgs-nols": the largest B <= k_local with (memory model above)
        params_bytes + 2 k_local state_bytes + FIXED_BYTES + B setting_bytes
            <= fraction * free memory,
    at least 1 (then it may not fit at all; XLA says so when it fails to allocate).
    """
    if optimizer == "lbfgs":
        return 1
    free = free_memory_bytes(device)
    if free is None:
        return k_local
    fraction = CPU_MEMORY_FRACTION if device.platform == "cpu" else ACCELERATOR_MEMORY_FRACTION
    budget = (fraction * free - params_bytes - FIXED_BYTES
              - 2 * k_local * state_bytes(height, width, optimizer, memory_size))
    return int(max(1, min(k_local, budget // setting_bytes(height, width, optimizer))))


# --------------------------------------------------------------------------- devices


def settings_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis "settings" over `devices` (default: every local device)."""
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("no devices given")
    return Mesh(np.array(devices), (AXIS,))


def _put(tree: Any, sharding: NamedSharding) -> Any:
    """Place host or device arrays with `sharding`; multi-host: each process its shards."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(a):
        host = np.asarray(a)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(one, tree)


def _fetch(tree: Any) -> Any:
    """Device arrays (possibly spread over processes) to host numpy arrays."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    return jax.tree.map(lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)),
                        tree)


@functools.lru_cache(maxsize=16)
def _programs(mesh: Mesh, spec: Any, opt: optim.OptimSpec, batch: int, max_steps: int):
    """(init, chunk): jitted shard_map programs over the settings axis of `mesh`."""

    def local_init(params, targets, lws, image0):
        def one(lw):
            return optim.init(params, targets, lw, image0, spec=spec, optim=opt)

        return map_settings(lambda *lw: one(LossWeights(*lw)), tuple(lws), batch)

    def local_chunk(params, targets, lws, states, n_steps):
        def one(c, s, t, state):
            return optim.chunk(params, targets, LossWeights(c, s, t), state, n_steps,
                               spec=spec, optim=opt, max_steps=max_steps)

        return map_settings(one, (*lws, states), batch)

    shard = functools.partial(jax.shard_map, mesh=mesh, check_vma=False)
    init = jax.jit(shard(local_init, in_specs=(P(), P(), P(AXIS), P()), out_specs=P(AXIS)))
    chunk = jax.jit(shard(local_chunk, in_specs=(P(), P(), P(AXIS), P(AXIS), P()),
                          out_specs=(P(AXIS), P(AXIS))),
                    donate_argnums=(3,))
    return init, chunk


# --------------------------------------------------------------------------- sweep


class SweepProgress:
    """What a sweep callback sees after each compiled chunk.

    step, total_steps: steps done (by every setting still finite) and planned.
    losses: {"total", "content", "style", "tv"}: (K,) float arrays, latest step.
    best_losses: (K,) lowest finite weighted totals so far.
    images(): (K, H, W, 3) float32 best images so far, clipped, fetched on demand.
    state: the device `optim.StepState` of all K_padded settings, sharded over the mesh
    (leading axis K padded to a multiple of the device count).
    images() and state are valid only during the callback: the next chunk reuses the buffers.
    """

    def __init__(self, step: int, total_steps: int, losses: dict[str, np.ndarray],
                 best_losses: np.ndarray, state: optim.StepState, k: int) -> None:
        self.step = step
        self.total_steps = total_steps
        self.losses = losses
        self.best_losses = best_losses
        self.state = state
        self._k = k

    def images(self) -> np.ndarray:
        if self.state.best_image.is_deleted():
            raise RuntimeError("SweepProgress.images() can only be called during the callback")
        return np.clip(_fetch(self.state.best_image)[:self._k], 0.0, 1.0)

    def __repr__(self) -> str:
        return (f"SweepProgress(step={self.step}, total_steps={self.total_steps}, "
                f"best_losses={self.best_losses})")


SweepCallback = Callable[[SweepProgress], "bool | None"]


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The outcome of `sweep` for K settings (padding removed).

    images:       (K, H, W, 3) float32 RGB in [0, 1], each setting's best iterate, clipped.
    loss_weights: `LossWeights` of (K,) float32 numpy arrays, the settings.
    labels:       K names for files, "c1_s1e3_tv0".
    grid:         the `WeightGrid` layout (rows x cols = K) for the contact sheet.
    histories:    {"total", "content", "style", "tv"}: (K, steps) float32; entry [i, t] =
                  losses of setting i after step t + 1 (unweighted parts, weighted total);
                  NaN after a setting stopped on a non-finite loss.
    best_losses:  (K,) weighted totals of the best iterates; best_steps: (K,) their steps.
    initial_losses: {name: (K,)} losses of the initial image.
    nonfinite:    (K,) bool, settings stopped by a NaN/inf loss or gradient (their image is
                  the best finite iterate).
    steps:        steps run.
    stopped:      None, "interrupted" (the callback returned False) or "nonfinite" (every
                  setting hit a non-finite loss).
    timings:      {"targets_s", "compile_s", "steps_s", "total_s"} seconds, as in `Result`.
    batch_size:   settings computed at once per device; devices: mesh size; config.
    """

    images: np.ndarray
    loss_weights: LossWeights
    labels: tuple[str, ...]
    grid: WeightGrid
    histories: dict[str, np.ndarray]
    best_losses: np.ndarray
    best_steps: np.ndarray
    initial_losses: dict[str, np.ndarray]
    nonfinite: np.ndarray
    steps: int
    stopped: str | None
    timings: dict[str, float]
    batch_size: int
    devices: int
    config: StyleConfig

    def __len__(self) -> int:
        return self.images.shape[0]

    def contact_sheet(self, *, title: str | None = None,
                      max_cell_side: int | None = None) -> np.ndarray:
        """The labelled rows x cols sheet of the images (`jaxstyle.image.contact_sheet`)."""
        rows, cols = self.grid.shape
        cells = [[self.images[r * cols + c] for c in range(cols)] for r in range(rows)]
        return contact_sheet(cells, row_labels=self.grid.row_labels,
                             col_labels=self.grid.col_labels, title=title,
                             max_cell_side=max_cell_side)

    def manifest(self) -> dict[str, Any]:
        """JSON-ready summary: per setting its weights, label and losses; timings."""
        settings = []
        for i, label in enumerate(self.labels):
            settings.append({
                "label": label,
                "content_weight": float(self.loss_weights.content[i]),
                "style_weight": float(self.loss_weights.style[i]),
                "tv_weight": float(self.loss_weights.tv[i]),
                "row": i // self.grid.shape[1],
                "col": i % self.grid.shape[1],
                "best_loss": files.json_number(self.best_losses[i]),
                "best_step": int(self.best_steps[i]),
                "final_losses": {k: files.json_number(v[i, -1]) if v.shape[1] else None
                                 for k, v in self.histories.items()},
                "nonfinite": bool(self.nonfinite[i]),
            })
        return {
            "settings": settings,
            "grid": {"rows": list(self.grid.row_labels), "cols": list(self.grid.col_labels),
                     "row_title": self.grid.row_title, "col_title": self.grid.col_title},
            "steps": self.steps,
            "stopped": self.stopped,
            "batch_size": self.batch_size,
            "devices": self.devices,
            "optimizer": self.config.optimizer,
            "timings": dict(self.timings),
        }


def sweep_paths(output: str | os.PathLike, labels: Sequence[str]) -> dict[str, Any]:
    """Where `save_sweep` writes, for an output path OUT.png: the contact sheet at OUT.png,
    setting i at OUT_<label_i>.png (e.g. OUT_c1_s1e3_tv0.png), the manifest at OUT.json."""
    out = Path(output)
    return {
        "sheet": out,
        "images": [out.with_name(f"{out.stem}_{label}{out.suffix}") for label in labels],
        "manifest": out.with_suffix(".json"),
    }


def save_sweep(
    result: SweepResult,
    output: str | os.PathLike,
    *,
    manifest_path: str | os.PathLike | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    metadata: dict[str, str] | Callable[[int | None], dict[str, str]] | None = None,
    title: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a sweep's images, its labelled contact sheet and a JSON manifest (atomically).

    Paths from `sweep_paths(output, result.labels)`; manifest_path overrides OUT.json.
    transform (e.g. colour preservation) is applied to every image before it is written.
    metadata: text chunks for every file (a dict), or metadata(i) for setting i's image and
    metadata(None) for the sheet (a callable). extra entries are added to the manifest.
    Returns the manifest: `SweepResult.manifest()` plus "files" (the sheet, each setting's
    "file") and `extra`.
    """
    paths = sweep_paths(output, result.labels)
    manifest_file = Path(manifest_path) if manifest_path is not None else paths["manifest"]
    images = [np.asarray(transform(im) if transform else im, np.float32)
              for im in result.images]
    meta = metadata if callable(metadata) else (lambda i: metadata)
    for i, (path, im) in enumerate(zip(paths["images"], images, strict=True)):
        save_image(path, im, metadata=meta(i))
    shown = dataclasses.replace(result, images=np.stack(images))
    save_image(paths["sheet"], shown.contact_sheet(title=title), metadata=meta(None))
    manifest = result.manifest()
    for entry, path in zip(manifest["settings"], paths["images"], strict=True):
        entry["file"] = str(path)
    manifest["files"] = {"sheet": str(paths["sheet"]), "manifest": str(manifest_file)}
    manifest.update(extra or {})
    files.write_json(manifest_file, manifest)
    return manifest


def sweep(
    content: Any,
    styles: Any,
    *,
    weights: VGGWeights,
    config: StyleConfig | None = None,
    loss_weights: LossWeights | WeightGrid,
    batch_size: int | None = None,
    callback: SweepCallback | None = None,
    callback_every: int = 10,
    devices: Sequence[jax.Device] | None = None,
) -> SweepResult:
    """Stylize `content` with `styles` under K loss-weight settings in one compiled program.

    loss_weights: a `WeightGrid` (`loss_weight_grid`, `ratio_weights`) or a `LossWeights` of
    (K,) arrays (broadcast among the three). Setting i minimizes
    alpha_i L_c + beta_i L_s + gamma_i TV exactly as `stylize(..., loss_weights=setting i)`
    does (same config, init, optimizer and step loop; vmapped float32 L-BFGS may drift from
    the single run by rounding: the team's shared FINDINGS.md).
    batch_size: settings computed at once per device (see the module docstring); None picks
    `auto_batch_size` (1 for zoom L-BFGS, what fits in memory otherwise).
    devices: the devices whose mesh shards the K axis (default every local device).
    callback(progress: SweepProgress) every `callback_every` steps and at the end; returning
    False stops early (SweepResult.stopped = "interrupted", images = best so far).
    """
    t_start = time.perf_counter()
    config = check_run_arguments(config, callback_every, "sweep")
    grid = loss_weights if isinstance(loss_weights, WeightGrid) else WeightGrid.row(loss_weights)
    lw_host = _as_numpy_weights(grid.loss_weights)
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    content, style_list = as_content_and_styles(content, styles)
    image0 = initial_image(config, content, style_list)

    mesh = settings_mesh(devices)
    n_dev = mesh.devices.size
    lw_padded, k = pad_settings(lw_host, n_dev)
    k_local = _num_settings(lw_padded) // n_dev
    opt = optim.OptimSpec.from_config(config)
    if batch_size is None:
        params_bytes = sum(a.nbytes for a in jax.tree.leaves(weights.params))
        batch = auto_batch_size(k_local, *content.shape[:2], opt.name, mesh.devices.flat[0],
                                memory_size=opt.memory_size, params_bytes=params_bytes)
    else:
        batch = min(int(batch_size), k_local)

    # Dispatched, not awaited: the programs compile while the devices compute the targets
    # (in one process; with several, _put fetches the targets to the host first).
    spec, targets = prepare_targets(weights, content, style_list, config)
    replicated = NamedSharding(mesh, P())
    params, targets, image0 = _put((weights.params, targets, image0), replicated)
    lws = _put(lw_padded, NamedSharding(mesh, P(AXIS)))

    init_jit, chunk_jit = _programs(mesh, spec, opt, batch, optim.MAX_CHUNK_STEPS)
    n0 = np.int32(0)
    init_fn, init_s = executables.aot_compile(init_jit, {}, params, targets, lws, image0)
    state_shape = executables.output_shapes(init_fn)  # sharded over the settings axis
    chunk_fn, chunk_s = executables.aot_compile(chunk_jit, {}, params, targets, lws,
                                                state_shape, n0)
    jax.block_until_ready(targets)
    t_compiled = time.perf_counter()

    state = init_fn(params, targets, lws, image0)
    initial = _fetch(state.losses)[:k]
    total = config.iterations

    def notify(state: optim.StepState, done: int) -> bool | None:
        return callback(_sweep_progress(state, done, total, k))

    # A setting that goes non-finite freezes while the others go on; padded settings (copies)
    # do not count. Fewer than n steps run only when every setting went non-finite.
    loop = optim.drive(
        lambda state, n: chunk_fn(params, targets, lws, state, n), state, total,
        steps_run=lambda state: int(_fetch(state.step).max()),
        alive=lambda state: bool(_fetch(state.ok)[:k].any()),
        take=lambda history, ran: _fetch(history)[:k, :ran],
        notify=None if callback is None else notify, callback_every=callback_every)
    state, rows, done = loop.state, loop.history, loop.steps
    ok = _fetch(state.ok)
    stopped = ("nonfinite" if not ok[:k].any()
               else "interrupted" if loop.interrupted else None)
    best_image, best_loss, best_step = _fetch((state.best_image, state.best_loss,
                                              state.best_step))
    t_end = time.perf_counter()

    hist = (np.concatenate(rows, axis=1) if rows
            else np.zeros((k, 0, len(optim.LOSS_NAMES)), np.float32))
    return SweepResult(
        images=np.clip(best_image[:k].astype(np.float32), 0.0, 1.0),
        loss_weights=lw_host,
        labels=grid.labels,
        grid=grid,
        histories={name: hist[:, :, j].copy() for j, name in enumerate(optim.LOSS_NAMES)},
        best_losses=best_loss[:k].astype(np.float64),
        best_steps=best_step[:k].astype(np.int64),
        initial_losses={name: initial[:, j].astype(np.float64)
                        for j, name in enumerate(optim.LOSS_NAMES)},
        nonfinite=~ok[:k],
        steps=done,
        stopped=stopped,
        timings={
            "targets_s": t_compiled - t_start - init_s - chunk_s,
            "compile_s": init_s + chunk_s,
            "steps_s": t_end - t_compiled,
            "total_s": t_end - t_start,
        },
        batch_size=batch,
        devices=n_dev,
        config=config,
    )


def _sweep_progress(state: optim.StepState, done: int, total: int, k: int) -> SweepProgress:
    losses, best = _fetch((state.losses, state.best_loss))
    return SweepProgress(
        done, total, {name: losses[:k, j] for j, name in enumerate(optim.LOSS_NAMES)},
        best[:k], state, k)


__all__ = [
    "SweepProgress",
    "SweepResult",
    "WeightGrid",
    "auto_batch_size",
    "format_weight",
    "free_memory_bytes",
    "loss_weight_grid",
    "map_settings",
    "pad_settings",
    "ratio_weights",
    "settings_mesh",
    "setting_label",
    "sweep",
]
