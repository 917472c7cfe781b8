"""Models and baselines scored on the same held-out events (the efficiency notebook, 05): compute the training-free baselines on
the evaluation data (trackstudy.study.eval_dataset finds or simulates it), pick up every model
submission the study produced, and evaluate them all the same way."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from trackstudy.baselines import baseline_submission, load_baseline_params
from trackstudy.config import RUNS_DIR
from trackstudy.data.io import iter_events, parse_volumes
from trackstudy.errors import TrackstudyError
from trackstudy.metrics.evaluate import Evaluation, evaluate_events, evaluate_submission_file


def resolve_volumes(text: str | None):
    """The ``volumes`` parameter of the notebooks: see :func:`trackstudy.data.io.parse_volumes`."""
    return parse_volumes(text, "volumes")


def find_submissions(runs_dir: str | os.PathLike | None = "", pattern: str = "*/submission*.csv*") -> list[Path]:
    """Submission files under ``runs_dir`` (default ``runs/``) matching a glob pattern, sorted."""
    folder = Path(runs_dir) if runs_dir not in (None, "") else RUNS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(pattern) if p.is_file())


def collect_evaluations(data_dir: str | os.PathLike, *, baselines: str | list[str] = "truth,random,dbscan-helix",
                        runs_dir: str | os.PathLike | None = "", submissions_glob: str = "*/submission*.csv*",
                        n_events: int | None = None, pt_min: float = 0.9, min_hits: int = 3,
                        volumes: str | tuple | None = "pixel", baseline_params: dict | None = None,
                        baseline_overrides: dict | None = None, seed: int = 0,
                        progress: bool = False) -> tuple[dict[str, Evaluation], pd.DataFrame]:
    """Evaluate the baselines (computed now on ``data_dir``) and every submission file found
    under ``runs_dir`` with ``submissions_glob``.

    A model's name is its run folder (``runs/<name>/submission.csv``). Submissions that do not
    fit the data (other events, unknown hit ids) are skipped and listed with the reason;
    ``hit_coverage`` is the fraction of evaluated hits each submission assigns (a submission
    made on other data with the same event and hit ids shows up there, not as an error: ids
    are all a submission carries).
    baseline_params: per-method parameters (default ``params/baselines.yaml``);
    baseline_overrides: per-method values laid over them (e.g. a coarser DBSCAN scan for a
    smoke run). Returns ``({name: Evaluation}, sources)``, sources being one row per candidate:
    model, source, status, hit_coverage.
    """
    vols = resolve_volumes(volumes) if isinstance(volumes, (str, type(None))) else tuple(volumes)
    names = [b.strip() for b in baselines.split(",")] if isinstance(baselines, str) else list(baselines)
    names = [b for b in names if b]
    params = load_baseline_params() if baseline_params is None else dict(baseline_params)
    for method, over in (baseline_overrides or {}).items():
        base = dict(params.get(method, {}))
        if {"z0_range", "z0_values"} & set(over):  # one vertex-scan spelling replaces the other
            base.pop("z0_range", None)
            base.pop("z0_values", None)
        params[method] = {**base, **over}
    events = list(iter_events(data_dir, n_events=n_events))
    out: dict[str, Evaluation] = {}
    rows = []
    for name in names:
        sub = baseline_submission(name, events, params.get(name, {}), seed=seed, volumes=vols, progress=progress)
        out[name] = evaluate_events(sub, events, pt_min=pt_min, min_hits=min_hits, volumes=vols, name=name,
                                    source=f"baseline {name}")
        rows.append({"model": name, "source": f"baseline (computed on {data_dir})", "status": "ok",
                     "hit_coverage": _coverage(out[name])})
    for path in find_submissions(runs_dir, submissions_glob):
        name = path.parent.name if path.name.startswith("submission") else path.name.split(".")[0]
        if name in out:
            name = f"{name} ({path.name})"
        try:
            out[name] = evaluate_submission_file(path, data_dir, n_events=n_events, pt_min=pt_min, min_hits=min_hits,
                                                 volumes=vols, name=name)
            rows.append({"model": name, "source": str(path), "status": "ok", "hit_coverage": _coverage(out[name])})
        except TrackstudyError as exc:
            rows.append({"model": name, "source": str(path), "status": f"skipped: {exc}", "hit_coverage": np.nan})
    return out, pd.DataFrame(rows, columns=["model", "source", "status", "hit_coverage"])


def _coverage(ev: Evaluation) -> float:
    """Fraction of the evaluated hits that the submission assigns to a track. A submission made
    on another dataset with the same event and hit ids would pass validation; a low coverage
    is the visible hint."""
    s = ev.summary
    return s.get("n_hits_assigned", 0) / s["n_hits"] if s.get("n_hits") else float("nan")
