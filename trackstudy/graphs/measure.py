"""How good a graph builder is on events with truth: doublets and hits per event, the edge
efficiency (true doublets of particles with pT > pt_min that are built), the purity (built
doublets that are true doublets of any particle) and the seconds per event (wall and CPU: on a
shared machine the wall time includes waiting for a core). Any builder with ``build(hits,
geometry) -> (src, dst)``: the windows of :class:`GraphBuilder` or a metric-learning builder."""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import pandas as pd

from trackstudy.data.io import select_volumes
from trackstudy.errors import DataError
from trackstudy.graphs.doublets import hit_geometry, true_doublets
from trackstudy.graphs.module_map import GraphBuilder

__all__ = ["doublet_report", "summarize_report"]


def doublet_report(builder: GraphBuilder, events: Iterable, *, pt_min: float = 0.9) -> pd.DataFrame:
    """One row per event: event_id, hits, doublets, true_pt (true doublets of pT > pt_min), found_pt,
    true_edges (built doublets that are true), seconds and cpu_seconds (building only)."""
    rows = []
    for ev in events:
        if ev.truth is None or ev.particles is None:
            raise DataError(f"event {ev.event_id}: measuring doublets needs truth and particles")
        ev = select_volumes(ev)
        g = hit_geometry(ev.hits, source=f"event {ev.event_id} hits")
        t0, c0 = time.perf_counter(), time.process_time()
        src, dst = builder.build(ev.hits, g)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        td = true_doublets(ev.hits, ev.truth, ev.particles, layer=g["layer"], source=f"event {ev.event_id}")
        n = len(ev.hits)
        built = np.sort(src * n + dst)
        true = td["src"].to_numpy() * n + td["dst"].to_numpy()
        hi = true[td["pt"].to_numpy() > pt_min]
        rows.append({"event_id": int(ev.event_id), "hits": n, "doublets": len(built), "true_pt": len(hi),
                     "found_pt": int(np.isin(hi, built).sum()), "true_edges": int(np.isin(built, true).sum()),
                     "seconds": seconds, "cpu_seconds": cpu_seconds})
    if not rows:
        raise DataError("doublet_report: no events")
    return pd.DataFrame(rows)


def summarize_report(report: pd.DataFrame) -> dict:
    """Means per event and the pooled efficiency and purity of a :func:`doublet_report`."""
    return {"events": len(report), "doublets_per_event": float(report["doublets"].mean()),
            "hits_per_event": float(report["hits"].mean()),
            "efficiency": float(report["found_pt"].sum() / max(report["true_pt"].sum(), 1)),
            "purity": float(report["true_edges"].sum() / max(report["doublets"].sum(), 1)),
            "seconds": float(report["seconds"].mean()), "cpu_seconds": float(report["cpu_seconds"].mean())}
