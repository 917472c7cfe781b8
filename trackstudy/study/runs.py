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
import tempfile
import time
from pathlib import Path

from trackstudy.bench.latency import preset_model
from trackstudy.config import RUNS_DIR, resolve_path
from trackstudy.data.datasets import resolve_data
from trackstudy.errors import ConfigError
from trackstudy.inference import predict_events
from trackstudy.metrics.submission import write_submission
from trackstudy.models.heads import FAMILIES, TOKEN_FAMILIES
from trackstudy.training.checkpoint import load_run
from trackstudy.training.data import data_root, spec_folder
from trackstudy.training.run import train
from trackstudy.training.run_config import INFERENCE_CHANGES, diff_keys, load_yaml, resolve_config


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


def first_transformer(models: list[str]) -> str:
    """The first hit-token transformer among the study's models (what the attention maps inspect)."""
    for name in models:
        if name in TOKEN_FAMILIES:
            return name
    raise ConfigError(f"model: {', '.join(models)} holds no transformer (one of {', '.join(TOKEN_FAMILIES)}); "
                      "the attention maps inspect a transformer's attention")


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
    validation events. Validation and defaults: :func:`trackstudy.training.run_config.resolve_config`.
    """
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
    return resolve_data(data_dir, n_events=int(eval_events), pileup=float(train_pileup), seed=int(eval_seed),
                        pixel_only=bool(pixel_only), tracks=_tracks(tracks), progress=progress)


def train_models(models: list[str], run_prefix: str, *, retrain: bool = False, progress: bool = True,
                 **config_kwargs) -> dict[str, dict]:
    """Train each model of the study into ``runs/<run_prefix>_<model>`` and return their summaries.

    A run whose folder already holds a finished model with the same config is reused (its
    summary is read back; a config that differs only in settings training never reads,
    :data:`~trackstudy.training.run_config.INFERENCE_CHANGES`, is written into the run and the
    weights are kept), unless it was trained on other data than the config now means (e.g. a
    dataset of an older simulator version): then it is retrained; one with a checkpoint but no
    final model is resumed; ``retrain`` starts over in a fresh folder (the old one is renamed
    aside, never deleted).
    """
    out = {}
    for model in models:
        cfg = training_config(model, **config_kwargs)
        folder = run_dir(run_prefix, model)
        summary_file = folder / "summary.json"
        fresh = retrain
        if not retrain and summary_file.is_file() and (folder / "model.pt").is_file():
            changed = diff_keys(resolve_config(folder / "config.yaml"), cfg)
            if not set(changed) <= set(INFERENCE_CHANGES):
                raise ConfigError(f"{folder}: holds a model trained with another config; set retrain=True "
                                  f"(the old run is kept as {folder.name}.old-DATE) or choose another run_prefix")
            if changed:  # how the trained run is run: its config takes the new values, the weights stay
                print(f"{folder.name}: {', '.join(changed)} changed (not read by training); the run keeps its "
                      "weights and takes the new values", flush=True)
                train(cfg, folder, resume=True, progress=progress)
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
    data = Path(data)
    files = {}
    for model in models:
        folder = run_dir(run_prefix, model)
        net, run_config = load_run(folder, device)
        sub, _ = predict_events(net, data, locality=run_config["locality"],
                                pixel_only=run_config["data"]["train"]["pixel_only"], progress=progress)
        files[model] = write_submission(sub, folder / f"submission_{data.name}.csv", force=True)
    return files


def run_settings(run_config: dict | None) -> tuple[dict | None, bool]:
    """(locality section, pixel_only) of a run config; pixel_only defaults to True (the contract's
    default) when the config does not say."""
    run_config = run_config or {}
    locality = run_config.get("locality")
    data = run_config.get("data") or {}
    train = data.get("train") or {}
    return locality, bool(train.get("pixel_only", True))


def latency_model(run_dir: str | os.PathLike = "", *, study_run: str | os.PathLike | None = None,
                  train_config: str | os.PathLike | None = None, train_dir: str | os.PathLike | None = None,
                  preset: str = "small", family: str = "contrastive", backend: str | None = None, device="auto",
                  progress: bool = False):
    """The model a latency measurement runs, as ``(model, run_config, how)``; the first that applies:

    1. ``run_dir``: that trained run (``load_run``);
    2. ``study_run``: the study's run of notebook 03 (``runs/<run_prefix>_<model>``), if it holds a model;
    3. ``train_config``: a training config (e.g. params/train_smoke.yaml) trained here with
       :func:`trackstudy.training.train` into ``train_dir`` (default: a new temporary folder);
    4. an untrained ``family`` model of the encoder ``preset``, DBSCAN locality, pixel hits only.

    ``how`` says which, in words. Latency does not depend on the weights (track formation's work
    does a little: how many neighbours pass the similarity threshold).
    """
    def load(path, how):
        model, run_config = load_run(path, device=device, backend=backend)
        return model, run_config, how

    if run_dir:
        return load(run_dir, f"trained run {run_dir}")
    if study_run and any((resolve_path(study_run) / f).is_file() for f in ("model.pt", "checkpoints/last.pt")):
        return load(study_run, f"trained run {study_run} (notebook 03)")
    if train_config:
        cfg_path = resolve_path(train_config)
        if not cfg_path.is_file():
            raise ConfigError(f"train_config: {cfg_path} not found")
        train_dir = train_dir or tempfile.mkdtemp(prefix="trackstudy-latency-")
        train(cfg_path, train_dir, progress=progress)
        return load(train_dir, f"model trained here with {cfg_path.name} (in {train_dir})")
    model = preset_model(preset, family=family, backend=backend, device=device)
    run_config = {"model": {"family": family, "preset": preset, "backend": model.encoder_cfg.attention},
                  "locality": {"method": "dbscan", "params": {}, "vertex_scan": False},
                  "data": {"train": {"pixel_only": True}}}
    return model, run_config, f"untrained {family} model, preset {preset!r} (latency does not depend on the weights)"


__all__ = ["FAMILIES", "eval_dataset", "parse_models", "predict_runs", "run_dir", "train_models",
           "training_config", "latency_model", "run_settings"]
