"""Tokens and pretraining, as a study: what notebook 08 and ``scripts/bench_pretraining.py`` run.

    token_counts        hit tokens (pixel hits) per event against pile-up, and the tokenizer's codes used
    pretrain_run        a pretraining run (``trackstudy pretrain``), reused when finished with the same config
    tokenizer_report    codebook usage, perplexity, dead codes and reconstruction errors (mm, rad) on events
    label_efficiency    the label-efficiency curve: DM efficiency on held-out events against the number of
                        labelled training events, fine-tuned from the pretrained encoder and from scratch, with
                        the same fine-tuning budget (``max_minutes`` and ``steps``) for both

The labelled runs are ``runs/<run_prefix>_n<N>_<init>`` (init: ``scratch`` or ``pretrained``);
each is scored on the same held-out events by :func:`trackstudy.study.heldout.score_run`.
"""

from __future__ import annotations

import json
import os
import time
from copy import deepcopy
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trackstudy.config import PIXEL_VOLUMES, RUNS_DIR, resolve_path
from trackstudy.data.datasets import ensure_simulated
from trackstudy.data.io import iter_events, select_volumes
from trackstudy.errors import ConfigError, DataError
from trackstudy.models.features import hit_features
from trackstudy.models.vqvae import detector_units
from trackstudy.study.heldout import score_run
from trackstudy.study.runs import training_config
from trackstudy.training.checkpoint import MODEL_FILE
from trackstudy.training.pretrain import (
    PRETRAINED_FILE,
    load_tokenizer,
    pretrain,
    resolve_pretrain_config,
    tokenizer_measures,
    unlabelled_samples,
)
from trackstudy.training.run import train
from trackstudy.training.run_config import resolve_config

__all__ = ["INITS", "code_sharing", "label_efficiency", "parse_counts", "pretrain_run", "token_counts",
           "tokenizer_report"]

#: The two arms of the label-efficiency curve.
INITS = ("scratch", "pretrained")


def parse_counts(text, what: str = "n_labelled") -> list[int]:
    """``"10,30"`` (or a list, or one int) -> [10, 30]; ConfigError names ``what``."""
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    try:
        out = [int(str(v).strip()) for v in items if str(v).strip()]
    except ValueError:
        raise ConfigError(f"{what}: expected comma-separated integers such as '10,30', got {text!r}") from None
    if not out or min(out) < 1:
        raise ConfigError(f"{what}: expected integers >= 1, got {text!r}")
    return out


def token_counts(pileups, *, n_events: int = 1, seed: int = 1, tokenizer=None, progress: bool = False) -> pd.DataFrame:
    """Hit tokens per simulated event (pixel volumes) at each pile-up of ``pileups`` ("20,200" or a
    list): one row per event with ``pileup``, ``event_id``, ``tokens`` and, with a tokenizer (a
    :class:`~trackstudy.models.vqvae.HitTokenizer`), ``codes_used`` (distinct codes among them)."""
    values = [float(p) for p in (pileups if isinstance(pileups, (list, tuple)) else str(pileups).split(","))
              if str(p).strip()]
    if not values or min(values) < 0:
        raise ConfigError(f"pileups: expected comma-separated pile-ups >= 0, got {pileups!r}")
    rows = []
    for mu in values:
        folder = ensure_simulated(int(n_events), mu, int(seed), pixel_only=True, progress=progress)
        for ev in iter_events(folder, n_events=int(n_events)):
            hits = select_volumes(ev, PIXEL_VOLUMES).hits
            row = {"pileup": mu, "event_id": ev.event_id, "tokens": len(hits)}
            if tokenizer is not None:
                x = hit_features(hits, tokenizer.feature_cfg)
                row["codes_used"] = int(np.unique(tokenizer.encode(torch.from_numpy(x)).numpy()).size)
            rows.append(row)
    return pd.DataFrame(rows)


def code_sharing(tokenizer, data: str | os.PathLike, *, n_events: int = 20) -> pd.DataFrame:
    """How far one hit's code tells the hits of an event apart: for each of the first ``n_events``
    simulated events of ``data`` (pixel hits, truth read), ``hits``, ``codes_used`` (distinct codes),
    ``hits_per_code`` (mean over the used codes) and ``shared`` (the fraction of the hits of particles
    whose code some hit of another particle, or a noise hit, of the same event also has), with the
    hit :class:`~trackstudy.models.vqvae.HitTokenizer` ``tokenizer``. Events without truth: DataError."""
    if getattr(tokenizer, "tokens", "") != "hits":
        raise ConfigError("code_sharing: needs a hit tokenizer (pretrained with data.tokens: hits)")
    rows = []
    for ev in iter_events(resolve_path(data), n_events=int(n_events)):
        ev = select_volumes(ev, PIXEL_VOLUMES)
        if ev.truth is None:
            raise DataError(f"{data}: event {ev.event_id} has no truth (code_sharing needs particle ids)")
        hits = ev.hits.reset_index(drop=True)
        pid = hits[["hit_id"]].merge(ev.truth[["hit_id", "particle_id"]], on="hit_id", how="left")["particle_id"]
        pid = pid.fillna(0).to_numpy(np.int64)
        codes = tokenizer.encode(torch.from_numpy(hit_features(hits, tokenizer.feature_cfg))).numpy()
        per_code = pd.DataFrame({"code": codes, "pid": pid}).groupby("code")["pid"].nunique()
        shared = per_code.reindex(codes).to_numpy() > 1
        real = pid > 0
        rows.append({"event_id": ev.event_id, "hits": len(hits), "codes_used": int(per_code.size),
                     "hits_per_code": len(hits) / max(int(per_code.size), 1),
                     "shared": float(shared[real].mean()) if real.any() else float("nan")})
    return pd.DataFrame(rows)


def pretrain_run(config: str | os.PathLike | dict, out: str | os.PathLike, *, steps: int = 0, minutes: float = 0.0,
                 tokenizer_steps: int = 0, progress: bool = False, **overrides) -> dict:
    """The summary of the pretraining run in ``out`` for ``config`` (YAML path or mapping) with
    ``steps``, ``minutes`` (train.max_minutes) and ``tokenizer_steps`` replaced when > 0 and any
    ``section__key=value`` ``overrides`` (e.g. ``data__root="..."``): read back when it finished
    with the same config, resumed when it has a checkpoint, else run."""
    cfg = deepcopy(config) if isinstance(config, dict) else resolve_pretrain_config(resolve_path(config))
    for key, value in (("train__steps", steps), ("train__max_minutes", minutes), ("tokenizer__steps", tokenizer_steps)):
        if value:
            overrides.setdefault(key, value)
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if not name:
            raise ConfigError(f"pretrain_run: override {key!r} must look like section__key")
        cfg.setdefault(section, {})[name] = value
    cfg = resolve_pretrain_config(cfg)
    out = resolve_path(out)
    summary = out / "summary.json"
    if summary.is_file() and (out / PRETRAINED_FILE).is_file():
        if resolve_pretrain_config(out / "config.yaml") == cfg:
            done = json.loads(summary.read_text())
            if done.get("steps", 0) >= cfg["train"]["steps"] or done.get("stopped") == "time_limit":
                return {**done, "reused": True}
    resume = (out / "checkpoints" / "last.pt").is_file()
    return pretrain(cfg, out, resume=resume, progress=progress)


def tokenizer_report(run: str | os.PathLike, data: str | os.PathLike, *, n_events: int = 1,
                     max_hits: int = 20000, seed: int = 0) -> tuple[dict, pd.DataFrame, np.ndarray]:
    """The tokenizer of pretraining run ``run`` on the hits of the first ``n_events`` events of
    ``data`` (at most ``max_hits`` random hits): its measures (codebook usage, perplexity, dead codes,
    reconstruction errors in mm and rad), a table of hits with true and decoded x, y, z (mm) and phi
    (rad), and the count of hits per code (codebook_size,)."""
    tok, _ = load_tokenizer(run)
    if tok.tokens != "hits":
        raise ConfigError(f"{run}: its tokenizer is one of {tok.tokens}; tokenizer_report reads hit tokenizers (the "
                          "run's summary.json holds a doublet tokenizer's measures)")
    samples = unlabelled_samples(resolve_path(data), n_events=n_events, feature_cfg=tok.feature_cfg, locality=None)
    x = np.concatenate([s["x"] for s in samples])
    if len(x) > max_hits:
        x = x[np.random.default_rng(seed).choice(len(x), max_hits, replace=False)]
    xt = torch.from_numpy(x)
    measures = tokenizer_measures(tok, xt)
    codes = tok.encode(xt)
    decoded = tok.decode(codes).numpy()
    a, b = detector_units(x, tok.feature_cfg), detector_units(decoded, tok.feature_cfg)
    table = pd.DataFrame({**{f"{k}_true": v for k, v in a.items()}, **{f"{k}_decoded": v for k, v in b.items()},
                          "code": codes.numpy()})
    return measures, table, np.bincount(codes.numpy(), minlength=tok.config.codebook_size)


def label_efficiency(pretrain_dir: str | os.PathLike, eval_data: str | os.PathLike, *, n_labelled="10,30",
                     base_config: str = "params/train_smoke.yaml", run_prefix: str = "labeleff",
                     max_minutes: float = 0.0, steps: int = 0, n_val_events: int = 4, train_seed: int = 500,
                     train_pileup: float = 200.0, tracks: str = "10:50", device: str = "auto",
                     inits=INITS, progress: bool = False) -> pd.DataFrame:
    """The label-efficiency curve: for each N of ``n_labelled``, a model of ``base_config`` trained on
    N labelled simulated events (seed ``train_seed``; ``n_val_events`` labelled validation events tune
    the track formation, the same for every run), once from scratch and once from the encoder of
    ``pretrain_dir``, with the same budget (``max_minutes`` and ``steps``; 0 keeps the base config's),
    then scored on the held-out events of ``eval_data``. One row per run: ``n_labelled``, ``init``,
    DM efficiency, TrackML score and fake rate with the run's tuned track formation and (``*_base``)
    with the config's ``tune.base`` one, the same fixed operating point for every run (each run's
    tuning settles at its own, which moves DM efficiency and fake rate together), steps, training
    seconds and the run folder. Finished runs
    with the same config are reused."""
    counts = parse_counts(n_labelled)
    for init in inits:
        if init not in INITS:
            raise ConfigError(f"inits: {init!r} unknown; choose from {', '.join(INITS)}")
    pretrain_dir = resolve_path(pretrain_dir)
    if "pretrained" in inits and not (pretrain_dir / PRETRAINED_FILE).is_file():
        raise ConfigError(f"{pretrain_dir}: no {PRETRAINED_FILE} (pretrain first: trackstudy pretrain)")
    rows = []
    for n in counts:
        for init in inits:
            cfg = training_config("contrastive", base_config=base_config, steps=steps, max_minutes=max_minutes,
                                  train_pileup=train_pileup, tracks=tracks, n_train_events=n,
                                  n_val_events=n_val_events, train_seed=train_seed, device=device)
            cfg["model"]["init_from"] = str(pretrain_dir) if init == "pretrained" else ""
            cfg = resolve_config(cfg)
            folder = RUNS_DIR / f"{run_prefix}_n{n}_{init}"
            t0 = time.perf_counter()
            summary = _train_or_reuse(cfg, folder, progress)
            report, _ = score_run(folder, eval_data, device=device)
            base, _ = score_run(folder, eval_data, device=device, formation="base")
            rows.append({"n_labelled": n, "init": init, "dm_efficiency": report["dm_efficiency"],
                         "trackml_score": report["trackml_score"], "fake_rate": report["fake_rate"],
                         **{f"{k}_base": base[k] for k in ("dm_efficiency", "trackml_score", "fake_rate")},
                         "n_eval_events": report["n_events"], "n_particles": report.get("n_particles"),
                         "steps": summary.get("steps"),
                         "train_seconds": summary.get("train_seconds"),
                         "wall_seconds": time.perf_counter() - t0, "run": str(folder)})
    return pd.DataFrame(rows)


def _train_or_reuse(cfg: dict, folder: Path, progress: bool) -> dict:
    summary = folder / "summary.json"
    if summary.is_file() and (folder / MODEL_FILE).is_file() and resolve_config(folder / "config.yaml") == cfg:
        return json.loads(summary.read_text())
    if folder.exists() and not (folder / "checkpoints" / "last.pt").is_file():
        if any(folder.iterdir()):
            raise ConfigError(f"{folder}: holds something other than this run; choose another run_prefix")
    resume = (folder / "checkpoints" / "last.pt").is_file()
    return train(cfg, folder, resume=resume, progress=progress)
