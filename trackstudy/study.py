"""The study that notebooks 03-06 run together: which models, trained on which data, evaluated where.

The notebooks share one flat parameter file (``params/smoke.yaml``, ``params/full.yaml``);
this module turns those flat parameters into the objects the notebooks need, so each
notebook stays a few calls long and all of them agree on names and folders:

    model         "contrastive" or a comma-separated list, e.g. "contrastive,enc_cla,enc_reg,jm"
    run_prefix    runs/<run_prefix>_<model>/ holds each trained model (trackstudy.training)
    train_pileup, tracks, pixel_only, n_train_events, n_val_events, train_seed
                  the simulated training / validation data (``tracks`` "10:50" as in the
                  TrackFormers papers, "" for whole events)
    eval_events, eval_seed
                  held-out events of the same kind, never seen in training or tuning

``reports/summary.json`` (:func:`write_summary`) holds the headline numbers per model.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from trackstudy.config import REPORTS_DIR, RUNS_DIR, resolve_path
from trackstudy.data.io import atomic_write_bytes
from trackstudy.errors import ConfigError

FAMILIES = ("enc_cla", "enc_reg", "jm", "contrastive")


def parse_models(model: str) -> list[str]:
    """``"contrastive, enc_cla"`` -> ``["contrastive", "enc_cla"]``, each checked against the families."""
    names = [m.strip() for m in str(model).split(",") if m.strip()]
    if not names:
        raise ConfigError("model: expected a model family or a comma-separated list of them, got nothing")
    for name in names:
        if name not in FAMILIES:
            raise ConfigError(f"model: {name!r} is not a model family; choose from {', '.join(FAMILIES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"model: {model!r} names a family twice")
    return names


def run_dir(run_prefix: str, model: str) -> Path:
    """The folder of one trained model of the study: ``runs/<run_prefix>_<model>``."""
    if not run_prefix or "/" in run_prefix or run_prefix.startswith("."):
        raise ConfigError(f"run_prefix={run_prefix!r}: expected a plain folder-name prefix such as 'study'")
    return RUNS_DIR / f"{run_prefix}_{model}"


def _tracks(tracks) -> str | None:
    return None if tracks in (None, "", "none", "all") else str(tracks)


def _given(value) -> bool:
    return value not in (None, "", 0, 0.0)


def training_config(model: str, *, base_config: str = "", preset: str = "", backend: str = "", locality: str = "",
                    steps: int = 0, batch_size: int = 0, lr: float = 0.0, max_minutes: float = 0.0,
                    train_pileup: float = 0.0, tracks: str = "10:50", pixel_only: bool = True,
                    n_train_events: int = 32, n_val_events: int = 8, train_seed: int = 11,
                    device: str = "auto") -> dict:
    """The run config (trackstudy.training's schema) of one model of the study.

    ``base_config``: a YAML run config (e.g. ``params/train_smoke.yaml``, or
    ``params/bench/{model}_10-50.yaml`` where ``{model}`` is replaced by the family); empty: the
    trainer's defaults. The model, optimisation and locality parameters replace the base
    config's values when given (empty string or 0 keeps the base config's); the data parameters
    (pile-up, tracks, pixel_only, event counts, seed) always apply, because the held-out events
    of notebooks 04 and 05 are simulated from the same ones. Track formation is tuned on all the
    validation events. Validation and defaults: :func:`trackstudy.training.config.resolve_config`.
    """
    from trackstudy.training.config import load_yaml, resolve_config

    cfg = load_yaml(resolve_path(base_config.replace("{model}", model))) if base_config else {}
    cfg.setdefault("model", {})["family"] = model
    for section, key, value in (("model", "preset", preset), ("model", "backend", backend),
                                ("locality", "method", locality), ("train", "steps", steps),
                                ("train", "batch_size", batch_size), ("train", "lr", lr),
                                ("train", "max_minutes", max_minutes), ("train", "device", device)):
        if _given(value):
            cfg.setdefault(section, {})[key] = value
    data = cfg.setdefault("data", {})
    common = {"pileup": float(train_pileup), "tracks": _tracks(tracks), "pixel_only": bool(pixel_only), "dir": ""}
    data["train"] = {**data.get("train", {}), **common, "n_events": int(n_train_events), "seed": int(train_seed)}
    data["val"] = {**data.get("val", {}), **common, "n_events": int(n_val_events), "seed": int(train_seed) + 1}
    cfg.setdefault("tune", {})["n_events"] = int(n_val_events)
    return resolve_config(cfg)


def eval_dataset(*, train_pileup: float = 0.0, tracks: str = "10:50", pixel_only: bool = True,
                 eval_events: int = 4, eval_seed: int = 1001, data_dir: str = "", progress: bool = False) -> Path:
    """The held-out evaluation events: ``data_dir`` when given, else simulated events of the
    training kind with their own seed (made once under ``data/sim/``)."""
    from trackstudy.data.datasets import resolve_data

    return resolve_data(data_dir, n_events=int(eval_events), pileup=float(train_pileup), seed=int(eval_seed),
                        pixel_only=bool(pixel_only), tracks=_tracks(tracks), progress=progress)


def train_models(models: list[str], run_prefix: str, *, retrain: bool = False, progress: bool = True,
                 **config_kwargs) -> dict[str, dict]:
    """Train each model of the study into ``runs/<run_prefix>_<model>`` and return their summaries.

    A run whose folder already holds a finished model with the same config is reused (its
    summary is read back), unless it was trained on other data than the config now means (e.g. a
    dataset of an older simulator version): then it is retrained; one with a checkpoint but no
    final model is resumed; ``retrain`` starts over in a fresh folder (the old one is renamed
    aside, never deleted).
    """
    from trackstudy.training import train
    from trackstudy.training.config import resolve_config

    out = {}
    for model in models:
        cfg = training_config(model, **config_kwargs)
        folder = run_dir(run_prefix, model)
        summary_file = folder / "summary.json"
        fresh = retrain
        if not retrain and summary_file.is_file() and (folder / "model.pt").is_file():
            if resolve_config(folder / "config.yaml") != cfg:
                raise ConfigError(f"{folder}: holds a model trained with another config; set retrain=True "
                                  f"(the old run is kept as {folder.name}.old-DATE) or choose another run_prefix")
            summary = json.loads(summary_file.read_text())
            stale = _stale_data(summary, cfg)
            if not stale:
                out[model] = {**summary, "reused": True}
                continue
            # same config, other data underneath (a dataset of an older simulator version):
            # the model the config asks for is not this one; keep it aside and train anew
            print(f"{folder.name}: trained on {stale[0]}, the config now means {stale[1]}; "
                  f"retraining (the old run is kept as {folder.name}.old-DATE)", flush=True)
            fresh = True
        if folder.exists() and fresh:
            folder.rename(_aside(folder))
        resume = (folder / "checkpoints" / "last.pt").is_file()
        out[model] = train(cfg, folder, resume=resume, progress=progress)
    return out


def _aside(folder: Path) -> Path:
    """A free name beside ``folder`` to keep an old run under: ``<name>.old-DATE`` (``-2``, ... when
    two runs are set aside within the same second)."""
    base = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    aside, n = base, 1
    while aside.exists():
        n += 1
        aside = base.with_name(f"{base.name}-{n}")
    return aside


def _stale_data(summary: dict, cfg: dict) -> tuple[str, str] | None:
    """(trained on, now meant) when a finished run's training or validation data folder is not
    the one its config resolves to today, else None. Folder names are compared (a simulated
    dataset's name carries its settings and the simulator version), so a project moved to
    another path keeps its runs. Runs whose summary does not record its data are taken as
    they are."""
    from trackstudy.training.data import data_root, spec_folder

    recorded = summary.get("data") or {}
    for part in ("train", "val"):
        if not isinstance(recorded.get(part), dict) or "dir" not in recorded[part]:
            continue
        now = spec_folder(cfg["data"][part], data_root(cfg["data"]["root"]))
        if Path(recorded[part]["dir"]).name != now.name:
            return recorded[part]["dir"], str(now)
    return None


def predict_runs(models: list[str], run_prefix: str, data: str | os.PathLike, *, device: str = "auto",
                 progress: bool = False) -> dict[str, Path]:
    """Kaggle submissions of each trained model on the events of ``data``, written as
    ``runs/<run_prefix>_<model>/submission_<data folder name>.csv``. Returns the files."""
    from trackstudy.inference import predict_events
    from trackstudy.metrics.submission import write_submission
    from trackstudy.training.checkpoint import load_run

    data = Path(data)
    files = {}
    for model in models:
        folder = run_dir(run_prefix, model)
        net, run_config = load_run(folder, device)
        sub, _ = predict_events(net, data, locality=run_config["locality"],
                                pixel_only=run_config["data"]["train"]["pixel_only"], progress=progress)
        files[model] = write_submission(sub, folder / f"submission_{data.name}.csv", force=True)
    return files


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
    return atomic_write_bytes(path, (json.dumps(doc, indent=1, default=float) + "\n").encode(), force=True)


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
    :func:`trackstudy.realsim.comparison_table` (a DataFrame or a list of dicts)."""
    import math

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


__all__ = ["FAMILIES", "FULL_EVENT_KEYS", "eval_dataset", "parse_models", "predict_runs", "run_dir", "train_models",
           "training_config", "write_full_event_summary", "write_summary"]
