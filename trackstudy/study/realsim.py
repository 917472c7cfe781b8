"""Real vs simulated: a trained model (and the DBSCAN-helix baseline) on a real TrackML set with
truth and on simulated counterparts cut the same way (:data:`trackstudy.data.cuts.LIKE`).

For each set (``data/real/pix1gev``, ``barrel20``, ``mini``; see ``data/real/README.md``) the real
event is read and N events are simulated at pile-up ``pileup`` with ``seed``, each cut like the
set. Both sides get the challenge's weights recomputed on their hits (barrel20's own weights follow
hepqpr-qallse's rule instead), so the TrackML score means the same on both. The model runs through
:func:`trackstudy.inference.predict_events` with the run's locality method; a pixel-only model is
evaluated on the pixel hits (barrel20: volume 8, mini: 7, 8, 9). :func:`compare` returns, per
method, the real numbers, the simulated mean and sd, and the gap (simulated - real);
:func:`comparison_table` puts several sets in one DataFrame; :func:`table` writes Markdown.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from trackstudy.baselines import baseline_submission, load_baseline_params
from trackstudy.config import PIXEL_VOLUMES
from trackstudy.data.cuts import LIKE, cut_event
from trackstudy.data.datasets import real_trackml_dir
from trackstudy.data.io import read_event
from trackstudy.data.simulate import SIMULATOR_VERSION, SimulationConfig, event_rngs, simulate_event
from trackstudy.inference import predict_events
from trackstudy.metrics.evaluate import evaluate_events

SETS = ("pix1gev", "barrel20", "mini")
#: Columns of the table: summary key -> printed name.
METRICS = {"trackml_score": "TrackML score", "dm_efficiency": "DM efficiency", "fake_rate": "fake rate",
           "duplicate_rate": "duplicate rate", "n_hits": "hits / event",
           "n_particles": "reconstructable particles / event"}


def real_event(name: str):
    """The real set, with the challenge's weights recomputed on its hits (nothing else cut)."""
    ev = read_event(real_trackml_dir(name))
    weights_phase = LIKE[name].weights_phase
    return cut_event(ev, weights="recompute", weights_phase=weights_phase)


def simulated_events(name: str, n: int, pileup: float, seed: int) -> list:
    """``n`` simulated events cut like the real set ``name``; event i depends only on (seed, i)."""
    cuts = LIKE[name]
    pixel_only = cuts.volumes is not None and set(cuts.volumes) <= set(PIXEL_VOLUMES)
    config = SimulationConfig(pileup=float(pileup), pixel_only=pixel_only)
    out = []
    for i, rng in enumerate(event_rngs(seed, n)):
        out.append(cut_event(simulate_event(config, rng, event_id=i), cuts, rng=rng))
    return out


def eval_volumes(name: str, pixel_only: bool):
    """Volumes the metrics use: the pixel hits for a pixel-only model, everything otherwise."""
    return PIXEL_VOLUMES if pixel_only and name != "pix1gev" else None


def per_event_numbers(sub: pd.DataFrame, events: list, volumes) -> pd.DataFrame:
    ev = evaluate_events(sub, events, volumes=volumes)
    return ev.per_event[[k for k in METRICS if k in ev.per_event.columns]]


def compare(name: str, *, model=None, run_config=None, n_sim: int = 3, pileup: float = 200.0, seed: int = 20261201,
            baseline: bool = True, device: str = "auto", progress: bool = False,
            baseline_overrides: dict | None = None) -> dict:
    """Metrics of the model (and the baseline) on the real set and on its simulated counterparts:
    ``{method: {"real": {...}, "sim_mean": {...}, "sim_sd": {...}, "gap": {...}}}`` plus the set's facts.
    baseline_overrides: DBSCAN-helix parameters laid over ``params/baselines.yaml`` (e.g. a coarser scan)."""
    real = [real_event(name)]
    t0 = time.perf_counter()
    sims = simulated_events(name, n_sim, pileup, seed)
    sim_seconds = time.perf_counter() - t0
    pixel_only = bool((((run_config or {}).get("data") or {}).get("train") or {}).get("pixel_only", False))
    volumes = eval_volumes(name, pixel_only)
    methods = {}
    if model is not None:
        loc = run_config.get("locality")

        def run_model(events):
            sub, _ = predict_events(model, events, locality=loc, pixel_only=pixel_only, device=device,
                                    progress=progress)
            return sub
        methods["model"] = run_model
    if baseline:
        params = {**load_baseline_params().get("dbscan-helix", {}), **(baseline_overrides or {})}
        if baseline_overrides and {"z0_range", "z0_values"} & set(baseline_overrides):
            params.pop("z0_values" if "z0_range" in baseline_overrides else "z0_range", None)

        def run_baseline(events):
            return baseline_submission("dbscan-helix", events, params, volumes=volumes)
        methods["dbscan-helix"] = run_baseline
    out = {"set": name, "n_sim": n_sim, "pileup": pileup, "seed": seed, "simulator_version": SIMULATOR_VERSION,
           "eval_volumes": list(volumes) if volumes is not None else None, "cuts": LIKE[name].as_dict(),
           "simulate_seconds": sim_seconds, "methods": {}}
    for method, fn in methods.items():
        r = per_event_numbers(fn(real), real, volumes).iloc[0]
        s = per_event_numbers(fn(sims), sims, volumes)
        mean, sd = s.mean(), s.std(ddof=1) if len(s) > 1 else s.mean() * np.nan
        out["methods"][method] = {
            "real": {k: _num(r[k]) for k in s.columns},
            "sim_mean": {k: _num(mean[k]) for k in s.columns},
            "sim_sd": {k: _num(sd[k]) for k in s.columns},
            "gap": {k: _num(mean[k] - r[k]) for k in s.columns},
        }
    return out


def _num(x) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x


def _fmt(x, key) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if key.startswith("n_") else f"{x:.3f}"


def table(result: dict) -> str:
    """The result of :func:`compare` as a Markdown table (one row per method and metric)."""
    lines = [f"set {result['set']}: real vs {result['n_sim']} simulated events (mu = {result['pileup']:g}, seed "
             f"{result['seed']}, simulator version {result['simulator_version']}), evaluated on "
             f"{'volumes ' + ','.join(map(str, result['eval_volumes'])) if result['eval_volumes'] else 'all hits'}",
             "", "| method | metric | real | simulated (mean ± sd) | gap (sim - real) |", "|---|---|---|---|---|"]
    for method, m in result["methods"].items():
        for key, label in METRICS.items():
            if key not in m["real"]:
                continue
            sd = m["sim_sd"][key]
            sim = _fmt(m["sim_mean"][key], key) + (f" ± {_fmt(sd, key)}" if sd is not None else "")
            gap = m["gap"][key]
            gap_text = "-" if gap is None else (f"{gap:+,.0f}" if key.startswith("n_") else f"{gap:+.3f}")
            lines.append(f"| {method} | {label} | {_fmt(m['real'][key], key)} | {sim} | {gap_text} |")
    if result["set"] == "pix1gev":
        lines.append("\n(pix1gev: the real particle momenta are estimates from the hits; every particle has "
                     "pT > 1 GeV)")
    return "\n".join(lines)



def comparison_table(results: list[dict], keys=("dm_efficiency", "fake_rate", "trackml_score")) -> pd.DataFrame:
    """One row per (set, method) of :func:`compare` results: real, simulated mean and gap of ``keys``."""
    rows = []
    for res in results:
        for method, m in res["methods"].items():
            row = {"set": res["set"], "method": method}
            for k in keys:
                row[f"{k}_real"] = m["real"].get(k)
                row[f"{k}_sim"] = m["sim_mean"].get(k)
                row[f"{k}_gap"] = m["gap"].get(k)
            rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["METRICS", "SETS", "compare", "comparison_table", "eval_volumes", "real_event", "simulated_events",
           "table"]
