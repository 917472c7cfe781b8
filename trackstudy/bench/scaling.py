"""Encoder forward time and memory of every attention backend versus hits (measured by
``trackstudy bench scaling``, whose options are parsed in :mod:`trackstudy.cli.bench`).

Inputs are realistic: for each hit count N, pixel-only events are simulated
(:mod:`trackstudy.data.simulate`) at the pile-up whose mean occupancy gives N hits
(mu = 200 N / <pixel hits at mu = 200>), clustered with the locality step's DBSCAN
(:func:`trackstudy.locality.clustering.cluster_xyz`), and brought to exactly N hits: another
event at the pile-up of the missing hits is concatenated while there are too few (its clusters
kept apart), and a random subset is dropped when there are too many. The encoder sees the real
per-hit features and cluster labels of those hits.

Per backend and hit count, the whole encoder of the ``--preset`` (untrained, eval mode,
no_grad; bfloat16 autocast on CUDA) is run:

* ``mask_seconds``: building the backend's per-event metadata on a fresh AttentionContext
  (dense mask, FlexAttention BlockMask with its cache cleared, cluster packing, LSH plan);
* ``seconds``: the median forward over ``--repeats`` after ``--warmup`` (metadata cached, as in
  every layer after the first); ``total_seconds`` = the two together; ``cpu_seconds``: the median
  process CPU time of that forward (all threads; on a shared machine the number to compare);
* ``peak_mb``: peak memory of one fresh call (metadata + forward), measured in a second pass
  after every timing (on the CPU :class:`trackstudy.bench.attention.PeakMemory` pins glibc's
  mmap threshold, which slows the CPU allocator: timings would suffer).

A backend is not run where it would not fit or not finish: dense attention needs memory growing
as N^2 (estimated from :data:`DENSE_BYTES_PER_PAIR`), reported as ``skipped: needs ~X GB``; a
forward predicted (log-log extrapolation of the backend's smaller hit counts) or measured to take
longer than ``--max-seconds`` is reported as ``timeout``. Log-log slopes of time and memory per
backend are fitted over the measured points (2 = quadratic, 1 = linear). One line also gives the
simulator's throughput (pixel-only events per second at mu = 200).
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from trackstudy.bench.attention import PeakMemory, available_memory
from trackstudy.data.simulate import SimulationConfig, event_rngs, simulate_event
from trackstudy.device import autocast_context, describe_device, resolve_device, synchronize
from trackstudy.errors import ConfigError
from trackstudy.inference import build_masks, hit_angles
from trackstudy.locality.clustering import cluster_xyz
from trackstudy.locality.measures import attention_reduction, block_fraction, cluster_sizes
from trackstudy.models.attention import BACKENDS, AttentionContext
from trackstudy.models.encoder import Encoder, EncoderConfig
from trackstudy.models.features import FeatureConfig, hit_features
from trackstudy.models.masks import clear_block_mask_cache

DEFAULT_HITS = (1000, 4000, 16000, 55000)
DEFAULT_BACKENDS = ("dense", "flex", "packed", "lsh")
#: Bytes per (query, key) pair the dense backend needs during an encoder forward: the boolean
#: cluster mask (1) kept for every layer, SDPA's float copy of it (4), and the temporaries of
#: building it. Measured on the CPU with the small preset: 4.8-5.0 at 16k-55k hits (14.5 GB at
#: 55k), up to 6.2 at 4k; 6 keeps a margin, as the estimate decides whether dense is attempted.
DENSE_BYTES_PER_PAIR = 6.0
#: Pile-up of the simulator throughput line.
SIM_MU = 200.0


# --------------------------------------------------------------------------------------------
# inputs


def simulator_throughput(mu: float = SIM_MU, n_events: int = 3, *, seed: int = 0,
                         pixel_only: bool = True) -> dict:
    """Events per second of :func:`trackstudy.data.simulate.simulate_event` at pile-up ``mu``
    (after one untimed event that fills the geometry caches and compiles the propagator), and
    the mean number of hits per event."""
    if n_events < 1:
        raise ConfigError(f"--sim-events must be >= 1, got {n_events}")
    config = SimulationConfig(pileup=float(mu), pixel_only=pixel_only)
    rngs = event_rngs(seed, n_events + 1)
    simulate_event(config, rngs[0])
    t0 = time.perf_counter()
    hits = [len(simulate_event(config, rng, event_id=i).hits) for i, rng in enumerate(rngs[1:])]
    dt = time.perf_counter() - t0
    return {"mu": float(mu), "pixel_only": pixel_only, "events": n_events, "seconds": dt,
            "events_per_second": n_events / dt, "hits_per_event": float(np.mean(hits))}


@dataclass
class ScalingInputs:
    """N hits with their features, cluster labels and (eta, phi), from simulated events."""
    n_hits: int
    mu: float  # pile-up of the simulated events
    n_events: int  # events concatenated
    hits: pd.DataFrame  # x, y, z, hit_id (subsampled)
    labels: np.ndarray  # (N,) int64 DBSCAN cluster labels (clusters of different events kept apart)

    def describe(self) -> dict:
        """Cluster statistics: clusters, mean / largest size, attention reduction sum(s^2)/N^2 and
        the fraction of 128 x 128 blocks a FlexAttention BlockMask computes."""
        sizes = cluster_sizes(self.labels)
        return {"n_hits": self.n_hits, "mu": self.mu, "events": self.n_events, "n_clusters": int(len(sizes)),
                "mean_cluster_size": float(sizes.mean()), "max_cluster_size": int(sizes.max()),
                "attention_reduction": float(attention_reduction(self.labels)),
                "block_fraction": float(block_fraction(self.labels, 128))}


def make_inputs(n_hits: int, hits_at_200: float, *, seed: int = 0, method: str = "dbscan") -> ScalingInputs:
    """Exactly ``n_hits`` pixel hits of events simulated at the matching pile-up (see the module
    docstring), clustered with ``method``. ``hits_at_200``: mean pixel hits per event at mu = 200."""
    if n_hits < 1:
        raise ConfigError(f"--hits: hit counts must be positive, got {n_hits}")
    if hits_at_200 <= 0:
        raise ConfigError(f"hits_at_200 must be positive, got {hits_at_200}")
    ss = np.random.SeedSequence([int(seed), int(n_hits)])
    rng = np.random.default_rng(ss)
    mu = min(1000.0, SIM_MU * n_hits / hits_at_200)
    parts, labels, have, offset, n_events = [], [], 0, 0, 0
    while have < n_hits:
        need_mu = min(1000.0, SIM_MU * (n_hits - have) / hits_at_200)
        ev = simulate_event(SimulationConfig(pileup=need_mu, pixel_only=True), rng, event_id=n_events)
        n_events += 1
        if len(ev.hits) == 0:
            continue
        h = ev.hits[["hit_id", "x", "y", "z"]]
        lab = np.asarray(cluster_xyz(*(h[c].to_numpy(np.float64) for c in ("x", "y", "z")), method), dtype=np.int64)
        parts.append(h)
        labels.append(lab + offset)
        offset += int(lab.max()) + 1
        have += len(h)
        if n_events > 100:
            raise ConfigError(f"make_inputs: could not reach {n_hits} hits in 100 simulated events")
    hits = pd.concat(parts, ignore_index=True)
    lab = np.concatenate(labels)
    keep = np.sort(rng.choice(len(hits), size=n_hits, replace=False))
    hits = hits.iloc[keep].reset_index(drop=True)
    hits["hit_id"] = np.arange(1, n_hits + 1)
    return ScalingInputs(n_hits, float(mu), n_events, hits, lab[keep])


# --------------------------------------------------------------------------------------------
# measurement


def fit_slope(n, y) -> float | None:
    """Slope b of log y = a + b log n over the points with y > 0 (None with fewer than 2)."""
    n, y = np.asarray(n, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y) & (y > 0) & (n > 0)
    if ok.sum() < 2 or np.unique(n[ok]).size < 2:
        return None
    return float(np.polyfit(np.log(n[ok]), np.log(y[ok]), 1)[0])


def extrapolate(n, y, n_new: float, default_slope: float) -> float | None:
    """y at ``n_new`` from the last two positive points on log-log axes (one point: with
    ``default_slope``; the slope is never taken below 1); None without points."""
    pts = [(a, b) for a, b in zip(n, y) if b is not None and b > 0]
    if not pts:
        return None
    if len(pts) == 1:
        slope = default_slope
    else:
        (n0, y0), (n1, y1) = pts[-2], pts[-1]
        slope = math.log(y1 / y0) / math.log(n1 / n0) if n1 != n0 else default_slope
    slope = max(1.0, slope)
    n_last, y_last = pts[-1]
    return y_last * (n_new / n_last) ** slope


class EncoderRunner:
    """The encoder of a preset on one device, run on :class:`ScalingInputs` with any backend."""
    def __init__(self, preset: str = "small", device="auto", seed: int = 0):
        self.device = resolve_device(device)
        self.features = FeatureConfig()
        torch.manual_seed(seed)
        self.config = EncoderConfig.preset(preset, n_features=self.features.n_features)
        self.encoder = Encoder(self.config).to(self.device).eval()

    def tensors(self, inputs: ScalingInputs) -> dict:
        eta, phi = hit_angles(inputs.hits)
        dev = self.device
        return {"x": torch.from_numpy(hit_features(inputs.hits, self.features))[None].to(dev),
                "labels": torch.from_numpy(inputs.labels)[None].to(dev),
                "eta": torch.from_numpy(eta)[None].to(dev), "phi": torch.from_numpy(phi)[None].to(dev)}

    def context(self, t: dict):
        clear_block_mask_cache()
        pad = torch.ones(t["labels"].shape, dtype=torch.bool, device=self.device)
        return AttentionContext(pad, t["labels"], t["eta"], t["phi"])

    def masks(self, ctx, backend: str) -> None:
        build_masks(ctx, backend, self.config.lsh)

    def forward(self, t: dict, ctx, backend: str):
        with torch.no_grad(), autocast_context(self.device):
            return self.encoder(t["x"], ctx, backend=backend)

    def time_backend(self, t: dict, backend: str, *, repeats: int = 3,
                     warmup: int = 1) -> tuple[float, float, float]:
        """(median forward seconds with metadata cached, seconds to build the metadata fresh,
        median process CPU seconds of a forward: all threads, and independent of other load)."""
        for _ in range(warmup):  # compiles flex / the BlockMask builder on first use
            ctx = self.context(t)
            self.masks(ctx, backend)
            self.forward(t, ctx, backend)
            del ctx
        ctx = self.context(t)
        synchronize(self.device)
        t0 = time.perf_counter()
        self.masks(ctx, backend)
        synchronize(self.device)
        mask_s = time.perf_counter() - t0
        times, cpu = [], []
        for _ in range(max(1, repeats)):
            synchronize(self.device)
            t0, c0 = time.perf_counter(), time.process_time()
            self.forward(t, ctx, backend)
            synchronize(self.device)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return float(np.median(times)), mask_s, float(np.median(cpu))

    def peak_mb(self, t: dict, backend: str) -> float | None:
        """Peak memory (MB) of one fresh call: metadata + forward."""
        gc.collect()
        with PeakMemory(self.device) as peak:
            ctx = self.context(t)
            self.masks(ctx, backend)
            out = self.forward(t, ctx, backend)
            del out, ctx
        return peak.mb


@dataclass
class ScalingResult:
    results: pd.DataFrame  # backend, n_hits, seconds, mask_seconds, total_seconds, cpu_seconds, peak_mb, status
    inputs: pd.DataFrame  # per hit count: mu, events, clusters, attention reduction, block fraction
    simulator: dict
    device: str
    preset: str
    n_params: int
    info: dict = field(default_factory=dict)

    def slopes(self) -> pd.DataFrame:
        """Per backend: log-log slope of forward time, of time with metadata, and of peak memory."""
        rows = []
        for backend, g in self.results.groupby("backend", sort=False):
            ok = g[g["status"] == "ok"]
            rows.append({"backend": backend, "points": int(len(ok)),
                         "time_slope": fit_slope(ok["n_hits"], ok["seconds"]),
                         "total_time_slope": fit_slope(ok["n_hits"], ok["total_seconds"]),
                         "memory_slope": fit_slope(ok["n_hits"], ok["peak_mb"].astype(float))})
        return pd.DataFrame(rows)

    def speedups(self, reference: str = "dense") -> pd.DataFrame:
        """At every hit count: each backend's forward time and memory relative to ``reference``
        (reference time / backend time, backend memory / reference memory). Where the reference
        did not run, its value is extrapolated from its own fit (column ``reference_extrapolated``)."""
        ref = self.results[(self.results["backend"] == reference) & (self.results["status"] == "ok")]
        rows = []
        for n, g in self.results.groupby("n_hits"):
            r = ref[ref["n_hits"] == n]
            if len(r):
                t_ref, m_ref, extrapolated = float(r["seconds"].iloc[0]), r["peak_mb"].iloc[0], False
            else:
                t_ref = extrapolate(ref["n_hits"].tolist(), ref["seconds"].tolist(), n, 2.0)
                m_ref = extrapolate(ref["n_hits"].tolist(), ref["peak_mb"].tolist(), n, 2.0)
                extrapolated = True
            for row in g.itertuples():
                if row.backend == reference or row.status != "ok":
                    continue
                rows.append({"n_hits": n, "backend": row.backend,
                             "speedup": None if t_ref is None else t_ref / row.seconds,
                             "memory_ratio": (None if (m_ref is None or row.peak_mb is None or not m_ref)
                                              else row.peak_mb / m_ref),
                             "reference_extrapolated": extrapolated})
        return pd.DataFrame(rows)

    def summary(self) -> dict:
        """The JSON of ``--json``."""
        def clean(records):
            return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                    for r in records]

        return {"device": self.device, "preset": self.preset, "n_params": self.n_params,
                "results": clean(self.results.to_dict("records")),
                "slopes": clean(self.slopes().to_dict("records")),
                "speedups": clean(self.speedups().to_dict("records")),
                "inputs": clean(self.inputs.to_dict("records")),
                "simulator": self.simulator, **self.info}


def check_options(hits, backends, *, repeats: int, warmup: int, max_seconds: float) -> None:
    """ConfigError for an unknown backend or a bad count, before any work."""
    if not hits:
        raise ConfigError("--hits: no hit count given")
    bad = [n for n in hits if n < 1]
    if bad:
        raise ConfigError(f"--hits: hit counts must be positive, got {bad[0]}")
    if not backends:
        raise ConfigError("--backends: no backend given")
    unknown = [b for b in backends if b not in BACKENDS or b == "explicit"]
    if unknown:
        raise ConfigError(f"--backends: unknown backend {unknown[0]!r}; choose from {', '.join(DEFAULT_BACKENDS)}")
    if repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {warmup}")
    if max_seconds <= 0:
        raise ConfigError(f"--max-seconds must be > 0, got {max_seconds}")


def run_scaling(hits=DEFAULT_HITS, backends=DEFAULT_BACKENDS, *, preset: str = "small", repeats: int = 3,
                warmup: int = 1, max_seconds: float = 120.0, device="auto", seed: int = 0, sim_events: int = 3,
                memory: bool = True, progress: bool = False) -> ScalingResult:
    """Measure every backend at every hit count (see the module docstring)."""
    hits = sorted({int(n) for n in hits})
    backends = tuple(backends)
    check_options(hits, backends, repeats=repeats, warmup=warmup, max_seconds=max_seconds)
    runner = EncoderRunner(preset, device, seed)
    sim = simulator_throughput(SIM_MU, sim_events, seed=seed)
    rows, inputs_rows, tensors = [], [], {}
    timed_out: dict[str, str] = {}
    bar = tqdm(total=len(hits) * len(backends), desc="scaling", unit="run", disable=not progress)
    for n in hits:
        inp = make_inputs(n, sim["hits_per_event"], seed=seed)
        inputs_rows.append(inp.describe())
        t = runner.tensors(inp)
        for backend in backends:
            bar.set_postfix_str(f"{backend} @ {n}")
            row = {"backend": backend, "n_hits": n, "seconds": None, "mask_seconds": None, "total_seconds": None,
                   "cpu_seconds": None, "peak_mb": None, "status": "ok"}
            done = [r for r in rows if r["backend"] == backend and r["status"] == "ok"]
            predicted = extrapolate([r["n_hits"] for r in done], [r["total_seconds"] for r in done], n,
                                    2.0 if backend == "dense" else 1.0)
            free = available_memory(runner.device)
            need = DENSE_BYTES_PER_PAIR * n ** 2 if backend == "dense" else None
            if backend in timed_out:
                row["status"] = timed_out[backend]
            elif need is not None and free is not None and need > 0.8 * free:
                row["status"] = f"skipped: needs ~{need / 1e9:.1f} GB ({free / 1e9:.1f} GB available)"
            elif predicted is not None and predicted > max_seconds:
                row["status"] = f"timeout: predicted ~{predicted:.0f} s > --max-seconds {max_seconds:g}"
            else:
                fwd, mask_s, cpu_s = runner.time_backend(t, backend, repeats=repeats, warmup=warmup)
                row.update(seconds=fwd, mask_seconds=mask_s, total_seconds=fwd + mask_s, cpu_seconds=cpu_s)
                if fwd + mask_s > max_seconds:
                    timed_out[backend] = f"timeout: {fwd + mask_s:.0f} s at {n} hits > --max-seconds {max_seconds:g}"
            rows.append(row)
            bar.update()
        tensors[n] = t
    bar.close()
    if memory:  # second pass: PeakMemory slows the CPU allocator for the rest of the process
        for row in tqdm(rows, desc="memory", disable=not progress):
            if row["status"] == "ok":
                row["peak_mb"] = runner.peak_mb(tensors[row["n_hits"]], row["backend"])
    return ScalingResult(pd.DataFrame(rows), pd.DataFrame(inputs_rows), sim, describe_device(runner.device), preset,
                         runner.encoder.num_parameters(),
                         info={"repeats": repeats, "warmup": warmup, "max_seconds": max_seconds,
                               "threads": torch.get_num_threads() if runner.device.type == "cpu" else None})


def format_result(result: ScalingResult) -> str:
    """Plain-text tables: per (hit count, backend) times, memory and status; slopes; speed-ups."""
    def num(x, fmt):
        return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)

    sim = result.simulator
    lines = [f"encoder scaling on {result.device}: preset {result.preset!r} ({result.n_params:,} parameters), "
             f"forward = median of {result.info.get('repeats')} after {result.info.get('warmup')} warm-up",
             f"simulator: {sim['events_per_second']:.2f} pixel-only events/s at mu = {sim['mu']:g} "
             f"({sim['hits_per_event']:.0f} hits per event, {sim['events']} events)", "",
             f"{'hits':>7} {'mu':>6} {'clusters':>8} {'reduction':>10} {'blocks':>8}"]
    for r in result.inputs.itertuples():
        lines.append(f"{r.n_hits:7d} {r.mu:6.1f} {r.n_clusters:8d} {r.attention_reduction:10.5f} "
                     f"{r.block_fraction:8.4f}")
    lines += ["", f"{'backend':<8} {'hits':>7} {'forward s':>10} {'masks s':>9} {'peak MB':>9}  status"]
    for r in result.results.itertuples():
        lines.append(f"{r.backend:<8} {r.n_hits:7d} {num(r.seconds, '10.4f'):>10} {num(r.mask_seconds, '9.4f'):>9} "
                     f"{num(r.peak_mb, '9.1f'):>9}  {r.status}")
    lines += ["", "log-log slopes (2 = quadratic, 1 = linear):"]
    for r in result.slopes().itertuples():
        lines.append(f"  {r.backend:<8} time {num(r.time_slope, '.2f')}  time+masks {num(r.total_time_slope, '.2f')}  "
                     f"memory {num(r.memory_slope, '.2f')}  ({r.points} points)")
    sp = result.speedups()
    if len(sp):
        lines += ["", "against dense (forward time; memory growth of one call):"]
        for r in sp.itertuples():
            note = " (dense extrapolated from its fit)" if r.reference_extrapolated else ""
            lines.append(f"  {r.n_hits:7d} hits  {r.backend:<8} {num(r.speedup, '.1f')}x faster, "
                         f"memory {num(r.memory_ratio, '.4f')} of dense{note}")
    return "\n".join(lines)


__all__ = ["DEFAULT_BACKENDS", "DEFAULT_HITS", "DENSE_BYTES_PER_PAIR", "EncoderRunner", "ScalingInputs",
           "ScalingResult", "check_options", "extrapolate", "fit_slope", "format_result", "make_inputs",
           "run_scaling", "simulator_throughput"]
