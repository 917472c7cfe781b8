"""``trackstudy bench latency``: per-stage inference time of the whole pipeline, event by event.

For a trained run (``--run runs/NAME``, loaded with :func:`trackstudy.training.checkpoint.load_run`)
or an untrained model of a preset (``--preset small``: latency does not depend on the weights,
only track formation's work does a little), every event of ``--data`` goes through
:func:`trackstudy.inference.predict_event`: projection + clustering, input features, mask
building, encoder forward, track formation. ``--warmup`` untimed runs come first (they compile
FlexAttention and the BlockMask builder, fill caches); then ``--events`` timed runs, cycling over
the events of the folder when it holds fewer (the real full-size sample has one event). The
content-keyed BlockMask cache is cleared before every run, so every run builds its masks.

Reported: median and 90th percentile of every stage and of the total, the share of each stage
in the total, the hits through the network, and the peak memory of one more run measured after
the timed ones (on CUDA ``max_memory_allocated``; on the CPU the resident-set high-water mark,
see :class:`trackstudy.bench.attention.PeakMemory`, which pins glibc's mmap threshold and so
slows the CPU allocator: the timed runs therefore come first). ``peak_mb`` is the growth during
the run, ``process_peak_mb`` the whole process at its peak (Python, torch, the loaded event).

The seed papers' numbers (FlexAttention tracking paper, Table 1, NVIDIA H100) are in
:data:`PAPER_TABLE1`; :func:`compare_with_paper` puts a measurement next to them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from trackstudy.bench.attention import PeakMemory
from trackstudy.config import resolve_path
from trackstudy.data.datasets import real_trackml_dir
from trackstudy.data.io import find_events, read_event
from trackstudy.device import describe_device, resolve_device
from trackstudy.errors import ConfigError, DataError
from trackstudy.inference import DENSE_MAX_HITS, SPARSE_PATH, check_locality, predict_event
from trackstudy.models.heads import build_model
from trackstudy.models.masks import clear_block_mask_cache
from trackstudy.postprocessing.gnn_tracks import GNN_STAGES

#: Stages of :func:`trackstudy.inference.predict_event` (kept in step with trackstudy.inference.STAGES;
#: repeated here so that building the CLI parser does not import torch).
STAGES = ("clustering", "features", "masks", "encoder", "track_formation")
#: The model alone, hits already on the device as tensors: the attention metadata and the forward.
MODEL_STAGES = ("masks", "encoder")
GNN_MODEL_STAGES = ("edge_classification",)

#: Table 1 of the FlexAttention tracking paper (per-event inference time on an NVIDIA H100; the
#: clustering runs as parallel DBSCAN on 36 CPU cores), in milliseconds; the TrackFormers Part 2
#: paper (section 3.1) splits the first row into clustering 6 ms and block-mask creation 2 ms.
PAPER_TABLE1 = {
    "source": "FlexAttention contrastive tracking paper, Table 1 (section 4.2); TrackFormers Part 2, section 3.1 "
              "(see docs/references.md)",
    "device": "NVIDIA H100 (clustering: DBSCAN on 36 CPU cores)",
    "rows": [
        ("hit clustering & mask building", ("clustering", "features", "masks"), 6.0),
        ("transformer encoder forward", ("encoder",), 20.0),
        ("track candidate formation", ("track_formation",), 47.0),
        ("total", ("total",), 73.0),
    ],
}

#: Default model family of ``--preset`` runs: the FlexAttention paper's contrastive model.
DEFAULT_FAMILY = "contrastive"
#: Road classes of an untrained EncCla/JM preset model (the seeds used ~1,800 at 10-50 tracks).
DEFAULT_N_CLASSES = 1800


# --------------------------------------------------------------------------------------------
# memory


def _status_mb(field_name: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure_peak(fn, device) -> tuple[float | None, float | None]:
    """Run ``fn()`` once; returns ``(growth MB, whole-process peak MB)`` during the call (CUDA:
    allocated device memory; CPU: resident set; None where it cannot be measured)."""

    with PeakMemory(device) as peak:
        fn()
    if device.type == "cuda":
        return peak.mb, torch.cuda.max_memory_allocated(device) / 2 ** 20
    if device.type == "cpu":
        return peak.mb, _status_mb("VmHWM")  # reset to the RSS at entry by PeakMemory (clear_refs)
    return peak.mb, None


# --------------------------------------------------------------------------------------------
# inputs


def load_events(path: str | os.PathLike, n_events: int | None = None) -> list[tuple[int, pd.DataFrame]]:
    """``(event_id, hits)`` of the first ``n_events`` events of a folder, or of one event given as
    a prefix or file; only the hits are read (no truth needed). ``"mini"`` and ``"full"`` name the
    real TrackML samples shipped beside the project (the full one: event 1001, 93,680 hits)."""
    p = real_trackml_dir(str(path)) if str(path) in ("mini", "full") else resolve_path(path)
    if p.is_dir():
        found = find_events(p)
        if not found:
            raise DataError(f"{p}: no TrackML events (event<N>-hits.csv[.gz]) in this folder")
        prefixes = [prefix for _, prefix in found[: n_events or None]]
    else:
        prefixes = [p]
    out = []
    for prefix in prefixes:
        ev = read_event(prefix, parts=("hits",))
        out.append((int(ev.event_id), ev.hits))
    return out


def preset_model(preset: str = "small", *, family: str = DEFAULT_FAMILY, backend: str | None = None,
                 device="auto", seed: int = 0):
    """An untrained model of ``family`` with the encoder ``preset`` (weights seeded) in eval mode
    on ``device``; backend default: flex on CUDA, packed elsewhere (FlexAttention on the CPU is
    compiled for the CPU and slower than packing there)."""

    dev = resolve_device(device)
    backend = backend or ("flex" if dev.type == "cuda" else "packed")
    kwargs = {"n_classes": DEFAULT_N_CLASSES} if family in ("enc_cla", "jm") else {}
    torch.manual_seed(seed)
    model = build_model(family, preset, encoder_overrides={"attention": backend}, **kwargs)
    return model.to(dev).eval()


# --------------------------------------------------------------------------------------------
# measurement


@dataclass
class LatencyResult:
    """Per-run timings (one row per timed run: event_id, the stages, total, n_hits; seconds) and
    the memory of one extra run."""

    timings: pd.DataFrame
    device: str
    backend: str
    warmup: int
    peak_mb: float | None = None
    process_peak_mb: float | None = None
    info: dict = field(default_factory=dict)

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages the model ran: :data:`STAGES`, or those of a GNN run (graph construction, edge
        classification, track building)."""
        return GNN_STAGES if set(GNN_STAGES) <= set(self.timings.columns) else STAGES

    def stats(self) -> pd.DataFrame:
        """Per stage (and total): median and 90th percentile in ms, and the stage's share of the sum
        of the stage medians (medians do not add up exactly to the median total)."""
        cols = [*self.stages, "total"]
        t = self.timings[cols] * 1e3
        med, p90 = t.median(), t.quantile(0.9)
        share = med / med[list(self.stages)].sum()
        share["total"] = 1.0
        return pd.DataFrame({"stage": cols, "median_ms": med.to_numpy(), "p90_ms": p90.to_numpy(),
                             "share": share.to_numpy()})

    def summary(self) -> dict:
        """The JSON of ``--json``: stages (name -> median s), stages_p90, total_seconds,
        total_p90_seconds, peak_mb, process_peak_mb, n_hits, device, and the run's description."""
        t = self.timings
        extra = {"end_to_end": {"median_s": float(t["total"].median()), "p90_s": float(t["total"].quantile(0.9)),
                                "p90_over_median": float(t["total"].quantile(0.9) / t["total"].median())}}
        # the network on hits already on the device: masks + encoder, or a GNN's edge classification
        model_stages = GNN_MODEL_STAGES if self.stages == GNN_STAGES else MODEL_STAGES
        if set(model_stages) <= set(t.columns):
            model_only = t[list(model_stages)].sum(axis=1)
            extra["model_only"] = {"median_s": float(model_only.median()), "p90_s": float(model_only.quantile(0.9)),
                                   "stages": list(model_stages)}
        if "cpu_seconds" in t.columns:
            extra["cpu_seconds"] = {"median_s": float(t["cpu_seconds"].median()),
                                    "p90_s": float(t["cpu_seconds"].quantile(0.9))}
        return {
            **extra,
            "stages": {s: float(t[s].median()) for s in self.stages},
            "stages_p90": {s: float(t[s].quantile(0.9)) for s in self.stages},
            "total_seconds": float(t["total"].median()),
            "total_p90_seconds": float(t["total"].quantile(0.9)),
            "peak_mb": self.peak_mb,
            "process_peak_mb": self.process_peak_mb,
            "n_hits": int(t["n_hits"].median()),
            "device": self.device,
            "backend": self.backend,
            "runs": int(len(t)),
            "events": int(t["event_id"].nunique()),
            "warmup": self.warmup,
            **self.info,
        }

    def headline(self) -> str:
        """Two lines: device, backend, runs, hits; peak memory."""
        s = self.summary()

        def mb(x):
            return "n/a" if x is None else f"{x:.0f} MB"

        return (f"latency on {s['device']}, backend {s['backend']}: {s['runs']} timed runs over {s['events']} "
                f"event(s) after {s['warmup']} warm-up, {s['n_hits']} hits through the network\n"
                f"peak memory: {mb(s['peak_mb'])} during one run, {mb(s['process_peak_mb'])} whole process")


def measure_latency(model, events, *, locality=None, pixel_only: bool = True, device=None, backend: str | None = None,
                    n_runs: int = 5, warmup: int = 1, memory: bool = True, progress: bool = False,
                    max_dense_hits: int | None = DENSE_MAX_HITS, notify=None, compiled=None) -> LatencyResult:
    """Time the inference pipeline (see the module docstring).

    events: list of ``(event_id, hits)`` (see :func:`load_events`) or of hits DataFrames; the
    ``n_runs`` timed runs cycle over them after ``warmup`` untimed runs on the first one.
    max_dense_hits, notify: the dense-path guard of :func:`trackstudy.inference.predict_event`;
    when it switches paths, ``backend`` and ``info["sparse_path"]`` of the result say so.
    compiled: a :class:`trackstudy.models.compiled.BucketedModel` of ``model`` for the encoder stage.
    """

    if n_runs < 1:
        raise ConfigError(f"--events must be >= 1, got {n_runs}")
    if warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {warmup}")
    events = [(i, e) if isinstance(e, pd.DataFrame) else (int(e[0]), e[1]) for i, e in enumerate(events)]
    if not events:
        raise DataError("measure_latency: no events given")
    loc = check_locality(locality)
    try:
        model_dev = next(model.parameters()).device
    except StopIteration:
        model_dev = torch.device("cpu")
    dev = model_dev if device is None else resolve_device(device)
    model.to(dev)
    backend = backend or getattr(getattr(model, "encoder_cfg", None), "attention", "graph")  # a GNN has none
    notices = []

    def noticed(message):
        if message not in notices:
            notices.append(message)
            if notify is not None:
                notify(message)

    def run(event_id, hits):
        clear_block_mask_cache()  # every run builds its own masks
        cpu0 = time.process_time()
        sub, t = predict_event(model, hits, locality=loc, event_id=event_id, device=dev, pixel_only=pixel_only,
                               backend=backend, max_dense_hits=max_dense_hits, notify=noticed, compiled=compiled)
        return sub, {**t, "cpu_seconds": time.process_time() - cpu0}

    for _ in tqdm(range(warmup), desc="warm-up", disable=not progress):
        run(*events[0])
    rows = []
    for i in tqdm(range(n_runs), desc="latency", unit="run", disable=not progress):
        event_id, hits = events[i % len(events)]
        _, t = run(event_id, hits)
        rows.append({"event_id": event_id, **t})
    peak = process_peak = None
    if memory:
        peak, process_peak = measure_peak(lambda: run(*events[0]), dev)
    info = {"threads": torch.get_num_threads() if dev.type == "cpu" else None}
    if notices:
        info["sparse_path"] = notices[0]
        backend = SPARSE_PATH[1]
    return LatencyResult(pd.DataFrame(rows), describe_device(dev), backend, warmup, peak, process_peak, info=info)


def paper_table() -> pd.DataFrame:
    """The seed paper's Table 1 (ms) as a DataFrame (component, paper_ms)."""
    return pd.DataFrame([(name, ms) for name, _, ms in PAPER_TABLE1["rows"]], columns=["component", "paper_ms"])


def compare_with_paper(result: LatencyResult) -> pd.DataFrame:
    """Our stage medians summed into the paper's Table 1 rows, next to the paper's numbers (ms),
    with each row's share (of the sum of our stage medians; of the paper's total) and the devices
    in the column names."""
    med = result.timings.median(numeric_only=True) * 1e3
    rows = []
    paper_total = PAPER_TABLE1["rows"][-1][2]
    ours_sum = float(sum(med[s] for s in STAGES))
    for name, stages, ms in PAPER_TABLE1["rows"]:
        ours = float(sum(med[s] for s in stages))
        rows.append({"component": name, "stages here": " + ".join(stages), "ours_ms": ours,
                     "ours_share": 1.0 if stages == ("total",) else ours / ours_sum, "paper_ms": ms,
                     "paper_share": ms / paper_total})
    df = pd.DataFrame(rows)
    return df.rename(columns={"ours_ms": f"ours ms ({result.device})", "paper_ms": "paper ms (H100)"})


def format_result(result: LatencyResult) -> str:
    """Plain-text table of :meth:`LatencyResult.stats` between the headline's two lines."""
    head, memory = result.headline().splitlines()
    lines = [head, f"{'stage':<20} {'median ms':>10} {'p90 ms':>10} {'share':>7}"]
    for r in result.stats().itertuples():
        lines.append(f"{r.stage:<20} {r.median_ms:10.1f} {r.p90_ms:10.1f} {r.share:7.1%}")
    lines += _totals(result)
    return "\n".join([*lines, memory])


def _totals(result: LatencyResult) -> list[str]:
    """Lines of the end-to-end, model-only and CPU-time medians and 90th percentiles (ms)."""
    s = result.summary()
    rows = [("end to end", s["end_to_end"], f"events in memory -> submission; p90 / median "
                                            f"{s['end_to_end']['p90_over_median']:.2f}")]
    if "model_only" in s:
        rows.append(("model only", s["model_only"], "hits on the device: " + " + ".join(s["model_only"]["stages"])))
    if "cpu_seconds" in s:
        rows.append(("CPU time", s["cpu_seconds"], "process CPU seconds per run, all threads"))
    return [f"{name:<16} {v['median_s'] * 1e3:10.1f} {v['p90_s'] * 1e3:10.1f}   ({what})" for name, v, what in rows]


__all__ = ["DEFAULT_FAMILY", "MODEL_STAGES", "PAPER_TABLE1", "STAGES", "LatencyResult", "compare_with_paper", "format_result",
           "load_events", "measure_latency", "measure_peak", "paper_table", "preset_model"]
