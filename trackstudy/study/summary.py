"""``reports/summary.json``: the study's headline numbers, written by notebooks 05 and 07.

Notebook 05 writes ``data`` and ``models`` (every model and baseline on the held-out events of
the training kind), notebook 07 writes ``headline``, ``full_event`` and ``real_vs_sim``; each
keeps the other's keys. ``reports/index.html`` shows them (:mod:`trackstudy.study.reports`).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from trackstudy.config import REPORTS_DIR, json_safe, resolve_path
from trackstudy.data.io import atomic_write_bytes
from trackstudy.study.runs import run_dir


def write_summary(evaluations: dict, *, models: list[str], run_prefix: str, data: str | os.PathLike,
                  path: str | os.PathLike = REPORTS_DIR / "summary.json") -> Path:
    """``summary.json``: per model (baselines and trained models) the headline metrics on the
    held-out events (TrackML score, DM efficiency, fake and duplicate rates) and, for trained
    models, training time, steps, device and parameter count from the run's summary."""
    entries = {}
    trained = {m: run_dir(run_prefix, m) for m in models}
    for name, ev in evaluations.items():
        s = ev.summary
        entry = {k: s.get(k) for k in ("trackml_score", "dm_efficiency", "perfect_efficiency", "lhc_efficiency",
                                       "fake_rate", "duplicate_rate", "n_events")}
        model = next((m for m, folder in trained.items() if name == folder.name), None)
        if model is not None:
            run_summary = json.loads((trained[model] / "summary.json").read_text())
            entry.update({"kind": "trained", "family": model, "run": str(trained[model]),
                          **{k: run_summary.get(k) for k in ("train_seconds", "steps", "device", "n_params",
                                                             "preset", "backend")}})
        else:
            entry["kind"] = "baseline"
        entries[name] = entry
    # the full-event section (notebook 07: "headline", "full_event", "real_vs_sim") is kept
    return _update_summary(path, {"data": str(data), "models": entries})


def _update_summary(path: str | os.PathLike, entries: dict) -> Path:
    """Write ``entries`` (and the time) into the summary file at ``path``, keeping its other keys:
    notebooks 05 and 07 each own their part of it. Atomic."""
    path = resolve_path(path)
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc.update({**entries, "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, (json.dumps(json_safe(doc), indent=1, allow_nan=False) + "\n").encode(), force=True)


#: Metrics of each model in the full-event section of ``summary.json``.
FULL_EVENT_KEYS = ("trackml_score", "dm_efficiency", "perfect_efficiency", "lhc_efficiency", "fake_rate",
                   "duplicate_rate", "barrel_dm_efficiency", "endcap_dm_efficiency", "barrel_fake_rate",
                   "endcap_fake_rate", "n_particles", "n_events")


def _metrics(ev) -> dict:
    return {k: ev.summary.get(k) for k in FULL_EVENT_KEYS}


def write_full_event_summary(evaluations: dict, *, run: str | os.PathLike, headline_pileup: float,
                             real_vs_sim=None, path: str | os.PathLike = REPORTS_DIR / "summary.json") -> Path:
    """Add the full-event results to ``summary.json``, keeping what notebook 05 wrote there.

    evaluations: ``{pileup: {name: Evaluation}}`` on held-out full pixel events; the entry whose name
    is the run folder's is the trained model. ``headline``: that model at ``headline_pileup`` (the
    study's headline number), with its training time, steps, device and parameter count;
    ``full_event``: every model at every pile-up; ``real_vs_sim``: rows of
    :func:`trackstudy.study.realsim.comparison_table` (a DataFrame or a list of dicts)."""
    run = Path(run)
    doc: dict = {}
    run_summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    train_info = {k: run_summary.get(k) for k in ("train_seconds", "steps", "device", "n_params", "preset",
                                                  "backend", "locality")}
    full = {}
    for pileup, evs in evaluations.items():
        full[f"mu{float(pileup):g}"] = {name: {**_metrics(ev), "kind": "trained" if name == run.name else "baseline"}
                                        for name, ev in evs.items()}
    doc["full_event"] = full
    key = f"mu{float(headline_pileup):g}"
    if run.name in full.get(key, {}):
        doc["headline"] = {"model": run.name, "run": str(run), "pileup": float(headline_pileup),
                           "data": "held-out simulated pixel events", **full[key][run.name], **train_info}
    if real_vs_sim is not None:
        rows = real_vs_sim.to_dict(orient="records") if hasattr(real_vs_sim, "to_dict") else list(real_vs_sim)
        doc["real_vs_sim"] = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                              for r in rows]
    return _update_summary(path, doc)


__all__ = ["FULL_EVENT_KEYS", "write_full_event_summary", "write_summary"]
