"""Every attention backend on the same clustered inputs (measured by ``trackstudy bench attention``,
whose options are parsed in :mod:`trackstudy.cli.bench`).

For each backend: the forward time (median over repeats after warm-up, with the backend's
per-batch metadata -- BlockMask, packing, LSH plan -- already built, as every layer after the
first sees it), the time to build that metadata on a fresh batch, the peak memory of one
fresh call (metadata + forward), and the largest absolute difference from the reference:
cluster-masked attention computed explicitly in float64, query rows in chunks so that it
never needs the (T, T) matrix at once (for large T a random subset of query rows is checked,
see ``reference_rows``).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above the allocation before the
call. On CPU tracemalloc does not see torch's allocations, so the process's resident-set
high-water mark is used instead (Linux: VmHWM after resetting it through
/proc/self/clear_refs), minus the resident size before the call; glibc's mmap threshold is
pinned at 128 kB so that freed tensors go back to the OS and a call cannot hide its memory
in pages left over by a previous one. Elsewhere the CPU peak is reported as null.

Inputs: random q, k, v with log-normal cluster sizes around ``--cluster-size`` (plus 5 %
singleton "noise" clusters), hits in random order; or, with ``--event``, the pixel hits of a
real TrackML event clustered by the locality step (``cluster_xyz``, DBSCAN).

Dense and explicit attention need O(T^2) memory: when the estimate exceeds the available
memory they are reported as skipped (out of memory) instead of being attempted.
"""

from __future__ import annotations

import ctypes
import gc
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from trackstudy.config import PIXEL_VOLUMES
from trackstudy.data.io import read_event, select_volumes
from trackstudy.device import resolve_device, synchronize
from trackstudy.errors import ConfigError
from trackstudy.locality.clustering import cluster_xyz
from trackstudy.models import masks
from trackstudy.models.attention import BACKENDS, EXACT_BACKENDS, AttentionContext, attend
from trackstudy.models.lsh import LSHConfig

#: Backends whose memory grows as T^2 (checked against the available memory before running).
QUADRATIC_BACKENDS = ("dense", "explicit")


# --------------------------------------------------------------------------------------------
# inputs


def cluster_sizes(n_hits: int, mean_size: float, rng: np.random.Generator, *, noise_fraction: float = 0.05,
                  sigma: float = 0.8, max_factor: float = 8.0) -> np.ndarray:
    """Cluster sizes summing to ``n_hits``, shaped like DBSCAN clusters of projected pixel hits:
    a fraction ``noise_fraction`` of singletons (DBSCAN noise), the rest log-normal with mean
    ``mean_size`` and log-width ``sigma``, clipped to [2, max_factor * mean_size]."""
    if n_hits < 1:
        raise ConfigError(f"--hits must be positive, got {n_hits}")
    if mean_size < 2:
        raise ConfigError(f"--cluster-size must be at least 2, got {mean_size}")
    n_noise = int(round(noise_fraction * n_hits))
    remaining = n_hits - n_noise
    mu = math.log(mean_size) - sigma ** 2 / 2  # mean of the log-normal = mean_size
    sizes: list[int] = []
    while remaining > 0:
        draw = np.clip(np.rint(rng.lognormal(mu, sigma, size=64)), 2, max(2, max_factor * mean_size)).astype(int)
        for s in draw:
            s = int(min(s, remaining))
            sizes.append(s)
            remaining -= s
            if remaining == 0:
                break
    return np.asarray(sizes + [1] * n_noise, dtype=np.int64)


@dataclass
class AttentionInputs:
    q: torch.Tensor  # (B, H, T, hs)
    k: torch.Tensor
    v: torch.Tensor
    labels: torch.Tensor  # (B, T) int64, -1 at padding
    pad_mask: torch.Tensor  # (B, T) bool
    eta: torch.Tensor  # (B, T)
    phi: torch.Tensor  # (B, T)

    def context(self, **kwargs) -> AttentionContext:
        """A fresh context (nothing cached) over these inputs."""
        return AttentionContext(self.pad_mask, self.labels, self.eta, self.phi, **kwargs)


def make_inputs(n_hits: int, cluster_size: float = 64.0, *, batch: int = 1, n_heads: int = 4, head_dim: int = 48,
                seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                noise_fraction: float = 0.05) -> AttentionInputs:
    """Random q, k, v with a realistic cluster structure. Event 0 has ``n_hits`` hits, the
    others 70-100 % of that (padding). Hits arrive in random order (clusters not contiguous);
    each cluster sits around a random (eta, phi) centre with a spread of 0.02, so that LSH
    sees the same locality as the clustering."""
    rng = np.random.default_rng(seed)
    lengths = [n_hits] + [int(rng.integers(int(0.7 * n_hits) or 1, n_hits + 1)) for _ in range(batch - 1)]
    T = max(lengths)
    labels = np.full((batch, T), -1, dtype=np.int64)
    eta = np.zeros((batch, T), dtype=np.float32)
    phi = np.zeros((batch, T), dtype=np.float32)
    for b, n in enumerate(lengths):
        sizes = cluster_sizes(n, cluster_size, rng, noise_fraction=noise_fraction)
        lab = np.repeat(np.arange(sizes.size), sizes)
        centre_eta = rng.uniform(-4.0, 4.0, sizes.size)[lab]
        centre_phi = rng.uniform(-np.pi, np.pi, sizes.size)[lab]
        order = rng.permutation(n)
        labels[b, :n] = lab[order]
        eta[b, :n] = (centre_eta + rng.normal(0, 0.02, n))[order]
        phi[b, :n] = np.angle(np.exp(1j * (centre_phi + rng.normal(0, 0.02, n))))[order]
    qkv = rng.standard_normal((3, batch, n_heads, T, head_dim), dtype=np.float32)
    dev = resolve_device(device)
    q, k, v = (torch.from_numpy(a).to(device=dev, dtype=dtype) for a in qkv)
    labels_t = torch.from_numpy(labels).to(dev)
    return AttentionInputs(q, k, v, labels_t, labels_t >= 0, torch.from_numpy(eta).to(dev),
                           torch.from_numpy(phi).to(dev))


def make_event_inputs(path, *, method: str = "dbscan", n_heads: int = 4, head_dim: int = 48, seed: int = 0,
                      device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> AttentionInputs:
    """Random q, k, v over the pixel hits (volumes 7, 8, 9) of a real TrackML event, with the
    cluster labels of the locality step (``trackstudy.locality.clustering.cluster_xyz``) and
    the hits' own eta, phi: the cluster structure the encoder meets in practice."""
    event = select_volumes(read_event(path, parts=("hits",)), PIXEL_VOLUMES)
    hits = event.hits
    if len(hits) == 0:
        raise ConfigError(f"--event {path}: no pixel hits (volumes {PIXEL_VOLUMES})")
    x, y, z = (hits[c].to_numpy(np.float64) for c in ("x", "y", "z"))
    labels = np.asarray(cluster_xyz(x, y, z, method), dtype=np.int64)
    r = np.hypot(x, y)
    eta = np.arcsinh(z / np.maximum(r, 1e-3)).astype(np.float32)
    phi = np.arctan2(y, x).astype(np.float32)
    n = labels.size
    rng = np.random.default_rng(seed)
    qkv = rng.standard_normal((3, 1, n_heads, n, head_dim), dtype=np.float32)
    dev = resolve_device(device)
    q, k, v = (torch.from_numpy(a).to(device=dev, dtype=dtype) for a in qkv)
    labels_t = torch.from_numpy(labels)[None].to(dev)
    return AttentionInputs(q, k, v, labels_t, torch.ones_like(labels_t, dtype=torch.bool),
                           torch.from_numpy(eta)[None].to(dev), torch.from_numpy(phi)[None].to(dev))


def describe_clusters(inputs: AttentionInputs) -> str:
    """One line: number of hits, clusters, mean and largest cluster size, singletons."""
    sizes = []
    for b in range(inputs.labels.shape[0]):
        lab = inputs.labels[b][inputs.pad_mask[b]]
        sizes.append(torch.unique(lab, return_counts=True)[1])
    sizes = torch.cat(sizes)
    return (f"{int(inputs.pad_mask.sum())} hits in {sizes.numel()} clusters (mean size "
            f"{float(sizes.double().mean()):.1f}, largest {int(sizes.max())}, {int((sizes == 1).sum())} singletons)")


# --------------------------------------------------------------------------------------------
# reference and measurements


def reference_attention(inputs: AttentionInputs, rows: torch.Tensor | None = None, max_elements: int = 2 ** 25
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster-masked attention in float64 for the query positions ``rows`` (flat indices into
    B*T; default all real hits). Returns ``(rows, out (len(rows), H, hs))``. Memory
    O(max_elements), never O(T^2)."""
    q, k, v = (t.to(torch.float64) for t in (inputs.q, inputs.k, inputs.v))
    B, H, T, hs = q.shape
    if rows is None:
        rows = inputs.pad_mask.reshape(-1).nonzero().squeeze(1)
    out = torch.empty((rows.numel(), H, hs), dtype=torch.float64, device=q.device)
    labels = inputs.labels
    scale = 1.0 / math.sqrt(hs)
    chunk = max(1, max_elements // (H * T))
    for b in range(B):
        sel = ((rows // T) == b).nonzero().squeeze(1)
        real_k = inputs.pad_mask[b]
        for s in range(0, sel.numel(), chunk):
            part = sel[s:s + chunk]
            t = rows[part] % T
            scores = torch.einsum("hqd,hkd->hqk", q[b][:, t], k[b]) * scale  # (H, rows, T)
            allowed = (labels[b, t][:, None] == labels[b][None, :]) & real_k[None, :]
            scores = scores.masked_fill(~allowed[None], float("-inf"))
            out[part] = torch.einsum("hqk,hkd->qhd", torch.softmax(scores, dim=-1), v[b])
    return rows, out


def dense_memory_estimate(batch: int, n_heads: int, seq_len: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes the dense/explicit backends need beyond their inputs: the (B, 1, T, T) boolean
    mask plus two (B, H, T, T) score-sized tensors (scores and their softmax)."""
    item = torch.empty((), dtype=dtype).element_size()
    return batch * seq_len ** 2 * (1 + 2 * n_heads * max(item, 4))


def available_memory(device: torch.device) -> int | None:
    """Free bytes on ``device`` (CUDA: free device memory; CPU: MemAvailable), None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


_malloc_pinned = False


def _pin_malloc() -> None:
    """Make glibc return every freed block >= 128 kB to the OS (see the module docstring)."""
    global _malloc_pinned
    if _malloc_pinned:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD; setting it disables the dynamic threshold
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass
    _malloc_pinned = True


class PeakMemory:
    """Peak memory (MB) of the code run inside the ``with`` block on ``device``; ``.mb`` is
    None where it cannot be measured."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mb: float | None = None

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        elif self.device.type == "cpu":
            _pin_malloc()
            try:
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            except (OSError, AttributeError):
                pass
            try:
                with open("/proc/self/clear_refs", "w") as fh:
                    fh.write("5")  # reset the VmHWM high-water mark
                self._base = _status_kb("VmRSS")
            except OSError:
                self._base = None
        else:
            self._base = None
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            synchronize(self.device)
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2 ** 20
        elif self._base is not None:
            try:
                self.mb = max(0, _status_kb("VmHWM") - self._base) / 1024
            except OSError:
                self.mb = None
        return False


@dataclass
class BenchResult:
    backend: str
    seconds: float | None  # median forward time, metadata cached
    peak_mb: float | None
    max_abs_diff: float | None  # against the float64 cluster-masked reference
    setup_seconds: float | None = None  # building the backend's metadata on a fresh batch
    exact: bool = True
    status: str = "ok"


def _run_backend(name: str, inputs: AttentionInputs, ctx: AttentionContext, lsh: LSHConfig):
    out, _ = attend(inputs.q, inputs.k, inputs.v, ctx, name, lsh=lsh)
    return out


def _prepare(name: str, ctx: AttentionContext, lsh: LSHConfig) -> None:
    """Build (and cache in ctx) the metadata ``name`` reads."""
    if name in QUADRATIC_BACKENDS:
        ctx.dense_mask()
    elif name == "flex":
        ctx.flex_layout()
    elif name == "packed":
        ctx.packing()
    elif name == "lsh":
        ctx.lsh_plan(lsh)


def measure_backend(name: str, inputs: AttentionInputs, *, lsh: LSHConfig, repeats: int = 5, warmup: int = 1,
                    reference: tuple[torch.Tensor, torch.Tensor] | None = None) -> BenchResult:
    """Time, peak memory and error of one backend (forward only, under no_grad)."""
    device = inputs.q.device
    B, H, T, hs = inputs.q.shape
    if name in QUADRATIC_BACKENDS:
        need = dense_memory_estimate(B, H, T, inputs.q.dtype)
        free = available_memory(device)
        if free is not None and need > 0.8 * free:
            return BenchResult(name, None, None, None, None, exact=True,
                               status=f"skipped: out of memory (needs ~{need / 2 ** 30:.1f} GiB, "
                                      f"{free / 2 ** 30:.1f} GiB available)")
    with torch.no_grad():
        ctx = inputs.context()
        for _ in range(max(1, warmup)):  # compiles flex / create_block_mask on first use
            _run_backend(name, inputs, ctx, lsh)
        synchronize(device)
        masks.clear_block_mask_cache()
        fresh = inputs.context()
        t0 = time.perf_counter()
        _prepare(name, fresh, lsh)
        synchronize(device)
        setup = time.perf_counter() - t0
        del fresh
        masks.clear_block_mask_cache()
        fresh = inputs.context()
        with PeakMemory(device) as peak:
            out = _run_backend(name, inputs, fresh, lsh)
            del fresh
        times = []
        for _ in range(max(1, repeats)):
            synchronize(device)
            t0 = time.perf_counter()
            _run_backend(name, inputs, ctx, lsh)
            synchronize(device)
            times.append(time.perf_counter() - t0)
    diff = None
    if reference is not None:
        rows, ref = reference
        got = out.transpose(1, 2).reshape(B * T, H, hs)[rows].to(torch.float64)
        diff = float((got - ref).abs().max())
    return BenchResult(name, float(np.median(times)), peak.mb, diff, setup, exact=name in EXACT_BACKENDS)


def check_options(backends, **positive) -> None:
    """ConfigError for an unknown backend or a non-positive count (before any work is done)."""
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ConfigError(f"--backends: unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}")
    if not backends:
        raise ConfigError("--backends: no backend given")
    for name, value in positive.items():
        if value < 1:
            raise ConfigError(f"--{name.replace('n_', '').replace('_', '-')} must be positive, got {value}")


def run_attention_benchmark(n_hits: int | None, cluster_size: float = 64.0, *, backends=BACKENDS, batch: int = 1,
                            n_heads: int = 4, head_dim: int = 48, repeats: int = 5, warmup: int = 1, seed: int = 0,
                            device: str = "auto", reference_rows: int | None = None,
                            lsh: LSHConfig | None = None, progress: bool = False,
                            inputs: AttentionInputs | None = None) -> list[BenchResult]:
    """Run ``backends`` on the same inputs (``inputs``, or :func:`make_inputs` with ``n_hits``
    and ``cluster_size``); returns one result each. ``reference_rows``: number of random real
    query rows checked against the float64 reference (None: all of them up to 16384 real
    hits, 4096 sampled beyond)."""
    check_options(backends, repeats=repeats, batch=batch, n_heads=n_heads, head_dim=head_dim)
    dev = resolve_device(device)
    lsh = lsh or LSHConfig()
    if inputs is None:
        inputs = make_inputs(n_hits, cluster_size, batch=batch, n_heads=n_heads, head_dim=head_dim, seed=seed,
                             device=dev)
    real = inputs.pad_mask.reshape(-1).nonzero().squeeze(1)
    if reference_rows is None:
        reference_rows = real.numel() if real.numel() <= 16384 else 4096
    if reference_rows < real.numel():
        pick = np.random.default_rng(seed + 1).choice(real.numel(), size=reference_rows, replace=False)
        rows = real[torch.from_numpy(np.sort(pick)).to(real.device)]
    else:
        rows = real
    reference = reference_attention(inputs, rows)
    results = []
    for name in backends:
        if progress:
            print(f"  {name} ...", file=sys.stderr, flush=True)
        results.append(measure_backend(name, inputs, lsh=lsh, repeats=repeats, warmup=warmup, reference=reference))
    return results


def format_results(results: list[BenchResult]) -> str:
    """A plain-text table of the results."""
    lines = [f"{'backend':<9} {'forward s':>10} {'setup s':>9} {'peak MB':>9} {'max |diff|':>11}  status"]

    def num(x, fmt):
        width = int(fmt.split(".")[0])
        return "-".rjust(width) if x is None else format(x, fmt)

    for r in results:
        status = r.status if r.exact or r.status != "ok" else "ok (approximate: LSH buckets, not clusters)"
        lines.append(f"{r.backend:<9} {num(r.seconds, '10.4f')} {num(r.setup_seconds, '9.4f')} "
                     f"{num(r.peak_mb, '9.1f')} {num(r.max_abs_diff, '11.2e')}  {status}")
    return "\n".join(lines)


def check_input_memory(n_hits: int, batch: int, heads: int, head_dim: int, device: torch.device) -> None:
    """ConfigError when q, k and v alone would take more than half the free memory of ``device``."""
    need = 3 * batch * heads * n_hits * head_dim * 4
    free = available_memory(device)
    if free is not None and need > free // 2:
        raise ConfigError(f"--hits {n_hits} x --batch {batch} x --heads {heads} x --head-dim {head_dim}: the inputs "
                          f"alone need {need / 2**30:.1f} GiB, more than half the free memory of {device} "
                          f"({free / 2**30:.1f} GiB)")
