"""Masked-token pretraining without truth: ``pretrain(config, out_dir)`` -> summary, writing a run folder.

The CMS proposal's BERT-style pretraining on hit tokens (:mod:`trackstudy.models.masked`), in two stages:

1. the tokenizer (when ``mask.target`` is ``codes`` or ``both``): a VQ-VAE over the tokens' features
   (:mod:`trackstudy.models.vqvae`: a ``HitTokenizer``, or a ``DoubletTokenizer`` for doublet
   tokens), trained on batches of ``tokenizer.batch_hits`` random tokens of the training events,
   written to ``tokenizer.pt`` with its codebook usage, perplexity, dead codes and reconstruction
   errors in detector units (mm, rad, ...) on the validation tokens;
2. the masked-hit model: the shared encoder of the chosen preset and backend learns to predict
   the hidden features and/or the VQ codes of 15% of the tokens (80% masked, 10% replaced, 10%
   kept), resumable like ``trackstudy train``.

Data need hits only (no truth, no particles): simulated events (``data.train``, simulated on
demand as for training) and the real sets of ``data/real`` named in ``data.real`` (``mini``,
``full``, ``pix1gev``, ``barrel20``). ``data.sequences: cluster`` makes each locality cluster a
sequence (needed for full events: ~50,000 pixel hits). Validation: the masked loss, code
accuracy and azimuth error of ``data.val`` with a fixed corruption.

A run folder holds ``config.yaml``, ``tokenizer.pt``, ``checkpoints/last.pt`` (model, optimiser,
scheduler, step, RNG states: ``resume=True`` reaches the same weights as an uninterrupted run;
the corruption of step s is drawn from (seed, s) alone), ``pretrained.pt`` (the final weights:
what ``trackstudy train --init-from`` reads, :mod:`trackstudy.training.pretrained`),
``log_steps.csv``, ``log_val.csv`` and ``summary.json``. Every file is written atomically and
loads with ``weights_only=True``.

Doublet tokens (``data.tokens: doublets``; default ``hits``). Each event becomes its candidate
doublets, those the doublet-token model (``model.family: doublet``) would score: a windows graph
builder (:mod:`trackstudy.graphs`, its settings in ``model.graph`` as in a run config) is fitted on
the truth of simulated events (``data.graph_fit``, a dataset spec; ``n_events: 0``, the default,
takes the ``data.train`` events), written to ``graph.npz``, and applied to the hits alone of every
pretraining event, so real events (``data.real``) serve as well. A sample's ``x`` is the 20 token
features of :data:`~trackstudy.models.doublet.TOKEN_FEATURES`, its ``cluster`` the attention tiles
of ``model.doublet.cluster_size`` (:func:`~trackstudy.models.doublet.doublet_clusters`; 0: one per
event; ``data.sequences: cluster`` makes each tile a sequence), its ``eta`` / ``phi`` the doublets'
midpoints. The masked model adds the doublet model's token MLP (``model.doublet.token_hidden``),
keeps each masked doublet's position (its hits' r, z, eta, layer, and dr, dz, deta, z0) and
predicts its hidden features (azimuths, dphi, curvature) by MSE (``mask.target: features``), its
code of the doublet tokenizer by cross-entropy (``codes``), or both (``both``). Pixel hits only. ``trackstudy train --init-from`` then starts a
``doublet`` model's encoder and token MLP from it (:mod:`trackstudy.training.pretrained`).

One process (no torchrun / DDP); bf16 autocast on CUDA.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from trackstudy.config import PIXEL_VOLUMES, json_safe, resolve_path
from trackstudy.data.datasets import REAL_SETS, real_trackml_dir
from trackstudy.data.io import atomic_write_bytes, find_events, read_event, select_volumes
from trackstudy.device import autocast_context, describe_device, resolve_device
from trackstudy.errors import ConfigError, DataError
from trackstudy.graphs.module_map import GraphBuilder, GraphConfig, build_graph
from trackstudy.models.attention import TRAIN_BACKENDS
from trackstudy.models.doublet import TOKEN_FEATURES, DoubletConfig, doublet_clusters, doublet_position, doublet_tokens
from trackstudy.models.encoder import PRESETS, EncoderConfig
from trackstudy.models.features import FeatureConfig
from trackstudy.models.heads import make_context
from trackstudy.models.masked import TOKENS, MaskConfig, MaskedHitModel
from trackstudy.models.vqvae import Tokenizer, VQConfig, codebook_stats, make_tokenizer
from trackstudy.training import data as tdata
from trackstudy.training.checkpoint import (
    CONFIG_FILE,
    check_run_folder,
    checkpoint_path,
    load_checkpoint,
    model_state_dict,
    save_checkpoint,
    torch_save_atomic,
)
from trackstudy.training.pretrained import PRETRAINED_FILE, TOKENIZER_FILE, load_tokenizer
from trackstudy.training.run_config import (
    _DATASET_DEFAULTS,
    LOCALITY_METHODS,
    SEQUENCES,
    _check_dataset,
    _merge,
    dump_yaml,
    load_yaml,
    set_value,
)
from trackstudy.training.targets import make_sample
from trackstudy.training.trainer import (
    _CsvLog,
    _lr_lambda,
    _rng_state,
    _seed_everything,
    _set_rng_state,
    _StopRequest,
    training_backend,
)

SUMMARY_FILE = "summary.json"
STEP_LOG = "log_steps.csv"
VAL_LOG = "log_val.csv"
#: The fitted doublet builder of a ``data.tokens: doublets`` run.
DOUBLET_GRAPH_FILE = "graph.npz"

#: Every key of a pretraining config with its default value.
PRETRAIN_DEFAULTS: dict = {
    "model": {"preset": "small", "backend": "dense", "encoder": {}, "features": {},
              "doublet": {},  # data.tokens doublets: DoubletConfig fields (token_hidden, cluster_size)
              "graph": {}},  # data.tokens doublets: GraphConfig fields of the windows builder
    "locality": {"method": "none", "params": {}, "vertex_scan": False},
    "mask": {"rate": 0.15, "replace_mask": 0.8, "replace_random": 0.1, "visible": [], "target": "both",
             "code_weight": 1.0, "feature_weight": 1.0},
    "tokenizer": {"codebook_size": 512, "code_dim": 16, "hidden": 64, "commitment": 0.25, "ema_decay": 0.99,
                  "dead_after": 20, "kmeans_init": True, "kmeans_iters": 10, "steps": 1500, "batch_hits": 4096,
                  "lr": 2e-3, "val_hits": 20000},
    "data": {
        "train": dict(_DATASET_DEFAULTS),
        "tokens": "hits",  # or doublets: the candidate doublets of a graph builder (see the module docstring)
        "graph_fit": {**_DATASET_DEFAULTS, "n_events": 0},  # doublets: simulated events whose truth fits the
                                                            # builder (n_events 0: those of data.train)
        "real": [],  # real sets of data/real used as well (hits only): mini, full, pix1gev, barrel20
        "val": {**_DATASET_DEFAULTS, "n_events": 20, "seed": 1},
        "root": "",
        "sequences": "event",
        "min_cluster_hits": 2,
        "max_hits": 20000,  # a longer sequence is refused (dense attention over it would not fit)
    },
    "train": {"steps": 1000, "batch_size": 4, "length_buckets": 0, "batch_hits": 0, "lr": 1e-3, "min_lr": 1e-5,
              "weight_decay": 0.01, "warmup_steps": 50, "schedule": "cosine", "schedule_by_time": False,
              "clip_grad": 1.0, "eval_every": 100, "checkpoint_every": 200, "seed": 0, "device": "auto",
              "max_minutes": 0.0, "num_threads": 0, "eval_batch_size": 8},
}
#: Keys that may change when resuming (how long and where the run goes, not what it computed).
RESUMABLE_CHANGES = ("train.steps", "train.max_minutes", "train.checkpoint_every", "train.device", "train.num_threads")
_FREE = {"model.encoder", "model.features", "locality.params"}

__all__ = ["DOUBLET_GRAPH_FILE", "PRETRAIN_DEFAULTS", "PRETRAINED_FILE", "Pretrainer", "TOKENIZER_FILE",
           "doublet_samples", "fit_doublet_builder", "load_tokenizer",
           "masked_accuracy_curve", "pretrain", "resolve_pretrain_config", "set_pretrain_value", "tokenizer_measures",
           "train_tokenizer", "unlabelled_samples", "uses_simulated", "vq_cfg"]


def resolve_pretrain_config(config: dict | str | os.PathLike | None) -> dict:
    """A complete, validated pretraining config from a mapping or a YAML file (missing keys ->
    :data:`PRETRAIN_DEFAULTS`); ConfigError names ``section.key`` and what was expected."""
    if isinstance(config, (str, os.PathLike)):
        config = load_yaml(config)
    cfg = _merge(PRETRAIN_DEFAULTS, config or {}, "")
    m, d, tr = cfg["model"], cfg["data"], cfg["train"]
    for section, key, choices in (("model", "preset", tuple(PRESETS)), ("model", "backend", TRAIN_BACKENDS),
                                  ("locality", "method", LOCALITY_METHODS), ("data", "sequences", SEQUENCES),
                                  ("data", "tokens", TOKENS), ("train", "schedule", ("cosine", "constant"))):
        if cfg[section][key] not in choices:
            raise ConfigError(f"{section}.{key}: {cfg[section][key]!r} unknown; choose from {', '.join(choices)}")
    for key in ("encoder", "features", "doublet", "graph"):
        if not isinstance(m[key], dict):
            raise ConfigError(f"model.{key}: expected a mapping, got {m[key]!r}")
    if "attention" in m["encoder"]:
        raise ConfigError("model.encoder.attention: set the attention backend with model.backend")
    if m["encoder"].get("geo_bias"):  # at load, not at the first forward
        raise ConfigError("model.encoder.geo_bias: an option of the track models of the hit-token families; the "
                          "pretraining encoders attach no hit geometry (remove it)")
    doublets = d["tokens"] == "doublets"
    try:
        feats = FeatureConfig(**m["features"])
        EncoderConfig.preset(m["preset"], n_features=len(TOKEN_FEATURES) if doublets else feats.n_features,
                             **m["encoder"])
    except TypeError as exc:
        raise ConfigError(f"model: {exc}") from None
    mask_cfg = MaskConfig.from_dict(cfg["mask"])
    if doublets:
        _check_doublet_config(cfg, mask_cfg)
    else:
        for key in ("doublet", "graph"):
            if m[key]:
                raise ConfigError(f"model.{key}: given but data.tokens is 'hits' (set data.tokens: doublets)")
        mask_cfg.visible_features(feats)
    vq_cfg(cfg, len(TOKEN_FEATURES) if doublets else feats.n_features)
    if d["sequences"] == "cluster" and cfg["locality"]["method"] == "none" and not doublets:
        raise ConfigError("data.sequences: 'cluster' makes each locality cluster a sequence; set locality.method")
    if cfg["locality"]["method"] == "none" and cfg["locality"]["params"]:
        raise ConfigError(f"locality.params: given {sorted(cfg['locality']['params'])} but locality.method is 'none'")
    if not isinstance(d["real"], list) or any(r not in REAL_SETS for r in d["real"]):
        raise ConfigError(f"data.real: expected a list of real sets from {', '.join(REAL_SETS)}, got {d['real']!r}")
    if uses_simulated(cfg):
        _check_dataset(d["train"], "data.train")
    _check_dataset(d["val"], "data.val")
    for key in ("min_cluster_hits", "max_hits"):
        if d[key] < 1:
            raise ConfigError(f"data.{key}: must be >= 1, got {d[key]}")
    for key in ("steps", "batch_size", "eval_every", "checkpoint_every", "lr", "eval_batch_size"):
        if tr[key] <= 0:
            raise ConfigError(f"train.{key}: must be > 0, got {tr[key]!r}")
    for key in ("min_lr", "weight_decay", "warmup_steps", "clip_grad", "max_minutes", "num_threads",
                "length_buckets", "batch_hits"):
        if tr[key] < 0:
            raise ConfigError(f"train.{key}: must be >= 0, got {tr[key]!r}")
    if tr["schedule_by_time"] and not tr["max_minutes"]:
        raise ConfigError("train.schedule_by_time: needs a time budget, train.max_minutes > 0")
    t = cfg["tokenizer"]
    for key in ("batch_hits", "lr", "val_hits"):
        if t[key] <= 0:
            raise ConfigError(f"tokenizer.{key}: must be > 0, got {t[key]!r}")
    if t["steps"] < 0 or (t["steps"] == 0 and mask_cfg.target != "features"):
        raise ConfigError(f"tokenizer.steps: must be >= 1 when mask.target is {mask_cfg.target!r} (the codes "
                          f"come from the tokenizer), got {t['steps']}")
    return cfg


def _check_doublet_config(cfg: dict, mask_cfg: MaskConfig) -> None:
    """The settings of ``data.tokens: doublets`` (ConfigError names the key)."""
    m, d = cfg["model"], cfg["data"]
    if m["features"]:
        raise ConfigError(f"model.features: given {sorted(m['features'])} but doublet tokens have fixed features "
                          f"({', '.join(TOKEN_FEATURES)}); remove model.features")
    if cfg["locality"]["method"] != "none":
        raise ConfigError("locality.method: doublet tokens attend within the tiles of model.doublet.cluster_size; "
                          "set locality.method: none")
    dcfg = DoubletConfig.from_dict(m["doublet"])
    if dcfg.tokens != "doublets":
        raise ConfigError(f"model.doublet.tokens: {dcfg.tokens!r}; data.tokens: doublets pretrains "
                          "doublet-token encoders; remove model.doublet.tokens")
    gcfg = GraphConfig.from_dict(m["graph"])
    if gcfg.method != "windows":
        raise ConfigError(f"model.graph.method: {gcfg.method!r}; doublet pretraining builds the windows graphs of "
                          "the doublet family (method: windows)")
    if d["sequences"] == "cluster" and not dcfg.cluster_size:
        raise ConfigError("data.sequences: 'cluster' makes each attention tile a sequence; set "
                          "model.doublet.cluster_size > 0")
    g = d["graph_fit"]
    if g["n_events"] or g["dir"]:
        _check_dataset(g, "data.graph_fit")
    elif not uses_simulated(cfg):
        raise ConfigError("data.graph_fit: the doublet builder is fitted on simulated events with truth and "
                          "data.train reads none; set data.graph_fit.n_events (and its pileup, seed, tracks)")


def uses_simulated(cfg: dict) -> bool:
    """Whether a pretraining config reads ``data.train`` (not when it names real sets and
    ``data.train.n_events`` is 0 without a ``dir``)."""
    t = cfg["data"]["train"]
    return not (cfg["data"]["real"] and t["n_events"] == 0 and not t["dir"])


def vq_cfg(cfg: dict, n_features: int) -> VQConfig:
    """The tokenizer's :class:`VQConfig` of a resolved pretraining config."""
    keep = {k: v for k, v in cfg["tokenizer"].items() if k not in ("steps", "batch_hits", "lr", "val_hits")}
    return VQConfig(n_features=n_features, **keep)


def set_pretrain_value(cfg: dict, assignment: str) -> dict:
    """``--set section.key=value`` for a pretraining config (sections: model, locality, mask,
    tokenizer, data, train)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected section.key=value, e.g. train.steps=100")
    section = assignment.split("=", 1)[0].strip().split(".")[0]
    if section in ("mask", "tokenizer"):
        tmp = {"model": cfg.get(section, {})}
        set_value(tmp, "model" + assignment[len(section):])
        cfg[section] = tmp["model"]
        return cfg
    if section not in PRETRAIN_DEFAULTS:
        raise ConfigError(f"--set {assignment}: unknown section {section!r}; valid sections: "
                          f"{', '.join(PRETRAIN_DEFAULTS)}")
    return set_value(cfg, assignment)


# ----------------------------------------------------------------------------------------- data
def _event_files(folder: str | os.PathLike, n_events: int = 0) -> list:
    """``(event_id, prefix)`` of the first ``n_events`` events of ``folder`` (0: all); DataError if none."""
    events = find_events(resolve_path(folder))
    if not events:
        raise DataError(f"{folder}: no TrackML events (event<N>-hits.csv or .csv.gz) in this folder")
    return events[:n_events] if n_events else events


def unlabelled_samples(folder: str | os.PathLike, *, n_events: int = 0, feature_cfg: FeatureConfig,
                       locality: dict | None, pixel_only: bool = True, progress: bool = False) -> list[dict]:
    """Per-hit samples (features ``x``, ``hit_id``, ``eta``, ``phi``, ``cluster`` with a locality
    method) of the events of ``folder``, read from the hits files alone: no truth needed."""
    events = _event_files(folder, n_events)
    out = []
    for eid, prefix in tqdm(events, desc=f"read {Path(folder).name}", unit="event", disable=not progress):
        ev = read_event(prefix, eid, parts=("hits",))
        if pixel_only:
            ev = select_volumes(ev, PIXEL_VOLUMES)
        hits = ev.hits.reset_index(drop=True)
        if len(hits) == 0:
            continue
        out.append(make_sample(hits, feature_cfg=feature_cfg, cluster=tdata.locality_labels(hits, locality),
                               with_targets=False, source=f"{prefix.name}-hits"))
    return out


def fit_doublet_builder(folder: str | os.PathLike, graph_cfg: GraphConfig | dict | None, *, n_events: int = 0,
                        progress: bool = False) -> GraphBuilder:
    """The windows graph builder fitted on the truth of the (simulated) events of ``folder``
    (pixel hits; the first ``n_events``, 0: all)."""
    events = _event_files(folder, n_events)

    def read():
        for eid, prefix in tqdm(events, desc="fit doublet builder", unit="event", disable=not progress):
            ev = select_volumes(read_event(prefix, eid), PIXEL_VOLUMES)
            if ev.truth is None or ev.particles is None:
                raise DataError(f"{prefix}: the doublet builder is fitted on events with truth and particles "
                                "(data.graph_fit: simulated events)")
            yield ev

    return GraphBuilder.fit(read(), graph_cfg)


def doublet_samples(folder: str | os.PathLike, builder: GraphBuilder, *, n_events: int = 0, cluster_size: int = 0,
                    progress: bool = False) -> list[dict]:
    """Per-doublet samples of the events of ``folder``, from their pixel hits alone (no truth): ``x``
    (E, 20) the token features (:data:`~trackstudy.models.doublet.TOKEN_FEATURES`) of the builder's
    candidate doublets, ``cluster`` (E,) their attention tiles of ``cluster_size``, ``eta`` / ``phi``
    their midpoints. Events without a doublet are left out."""
    events = _event_files(folder, n_events)
    out = []
    for eid, prefix in tqdm(events, desc=f"doublets {Path(folder).name}", unit="event", disable=not progress):
        hits = select_volumes(read_event(prefix, eid, parts=("hits",)), PIXEL_VOLUMES).hits.reset_index(drop=True)
        if len(hits) == 0:
            continue
        g = build_graph(builder, hits, source=f"{prefix.name}-hits")
        if g["edge_index"].shape[1] == 0:
            continue
        x, ei = torch.from_numpy(g["x"]), torch.from_numpy(g["edge_index"])
        eta, phi = doublet_position(x, ei)
        out.append({"x": doublet_tokens(x, ei, torch.from_numpy(g["edge_attr"])).numpy(),
                    "eta": eta.numpy().astype(np.float32), "phi": phi.numpy().astype(np.float32),
                    "cluster": doublet_clusters(eta, phi, None, cluster_size).numpy(),
                    "source": f"{prefix.name}-hits"})
    return out


def _sequences(samples: list[dict], cfg: dict, where: str) -> list[dict]:
    d = cfg["data"]
    if d["sequences"] == "cluster":
        samples = tdata.cluster_samples(samples, d["min_cluster_hits"])
    longest = max((len(s["x"]) for s in samples), default=0)
    what = "doublets" if d["tokens"] == "doublets" else "hits"
    if longest > d["max_hits"]:
        raise ConfigError(f"{where}: a sequence of {longest} {what} exceeds data.max_hits={d['max_hits']} "
                          + ("(set model.doublet.cluster_size with data.sequences: cluster)" if what == "doublets"
                             else "(use data.sequences: cluster with a locality.method for full events)"))
    if not samples:
        raise DataError(f"{where}: no {what} to pretrain on")
    return samples


# ----------------------------------------------------------------------------------------- tokenizer
def train_tokenizer(x: torch.Tensor, config: VQConfig, feature_cfg: FeatureConfig | None = None, *, steps: int,
                    batch_hits: int, lr: float, seed: int = 0, x_val: torch.Tensor | None = None,
                    progress: bool = False, log: list | None = None, tokens: str = "hits") -> tuple[Tokenizer, dict]:
    """A tokenizer of ``tokens`` (:class:`~trackstudy.models.vqvae.HitTokenizer` over ``feature_cfg``,
    or :class:`~trackstudy.models.vqvae.DoubletTokenizer`) trained on the tokens x (N, F) for
    ``steps`` steps of ``batch_hits`` random tokens (Adam; the first batch, which k-means
    initialises the codebook on, holds at least 8 tokens per code), and its measures on ``x_val``
    (default: x): codebook usage, perplexity, dead codes, reconstruction errors in detector units.
    ``log`` collects one dict per step."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    tok = make_tokenizer(config, tokens, feature_cfg if tokens == "hits" else None)
    opt = torch.optim.Adam(tok.parameters(), lr=lr)
    tok.train()
    for step in tqdm(range(steps), desc="tokenizer", unit="step", disable=not progress):
        idx = torch.randint(len(x), (min(batch_hits, len(x)) if step else min(max(batch_hits, 8 * config.codebook_size),
                                                                                 len(x)),), generator=g)
        out = tok(x[idx], g)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        if log is not None:
            log.append({"step": step + 1, "loss": float(out["loss"].detach()), "mse": out["mse"],
                        "commitment": out["commitment"], "used": int(out["codes"].unique().numel())})
    return tok.eval(), tokenizer_measures(tok, x if x_val is None else x_val)


@torch.no_grad()
def tokenizer_measures(tok: Tokenizer, x: torch.Tensor) -> dict:
    """Codebook usage, perplexity, dead codes and reconstruction errors in detector units
    (:meth:`~trackstudy.models.vqvae.Tokenizer.reconstruction_errors`) of ``tok`` on tokens x (N, F)."""
    tok.eval()
    codes = tok.encode(x)
    decoded = tok.decode(codes)
    return {**codebook_stats(codes.numpy(), tok.config.codebook_size), "tokens": tok.tokens,
            "recon_mse": float(((decoded - x) ** 2).mean()),
            **tok.reconstruction_errors(x.numpy(), decoded.numpy())}


# ----------------------------------------------------------------------------------------- the run
class Pretrainer:
    """One pretraining run into ``out_dir``; :meth:`fit` runs (or resumes) it and returns the summary.
    ``on_step(step, row)`` is called after every step (raising KeyboardInterrupt there stops the run
    like Ctrl-C: a checkpoint is written)."""

    def __init__(self, config, out_dir, *, resume: bool = False, progress: bool = True, on_step=None):
        self.cfg = resolve_pretrain_config(config)
        self.out = resolve_path(out_dir)
        self.resume = bool(resume)
        self.progress = progress
        self.on_step = on_step
        self.notices: list[str] = []

    def _notice(self, msg: str) -> None:
        self.notices.append(msg)
        print(f"trackstudy pretrain: {msg}", file=sys.stderr)

    def _check_out_dir(self) -> dict | None:
        _, ckpt = check_run_folder(self.out, self.cfg, resume=self.resume,
                                   old_config=lambda f: resolve_pretrain_config(load_yaml(f)),
                                   run_files=(PRETRAINED_FILE,), kind="pretraining", resumable=RESUMABLE_CHANGES,
                                   notice=self._notice)
        return load_checkpoint(ckpt) if ckpt is not None else None

    def _load_data(self) -> None:
        cfg = self.cfg
        d, m = cfg["data"], cfg["model"]
        self.feature_cfg = FeatureConfig(**m["features"])
        self.locality = cfg["locality"] if cfg["locality"]["method"] != "none" else None
        root = tdata.data_root(d["root"])
        self.builder, self.graph_fit = None, None
        if d["tokens"] == "doublets":
            fit = d["graph_fit"] if d["graph_fit"]["n_events"] or d["graph_fit"]["dir"] else d["train"]
            folder = tdata.dataset_folder(fit, root, progress=self.progress)
            self.builder = fit_doublet_builder(folder, m["graph"], n_events=fit["n_events"], progress=self.progress)
            self.builder.save(self.out / DOUBLET_GRAPH_FILE)
            self.graph_fit = str(folder)
            cluster_size = DoubletConfig.from_dict(m["doublet"]).cluster_size

        def samples(folder, n_events, pixel_only):
            if self.builder is not None:
                return doublet_samples(folder, self.builder, n_events=n_events, cluster_size=cluster_size,
                                       progress=self.progress)
            return unlabelled_samples(folder, n_events=n_events, feature_cfg=self.feature_cfg, locality=self.locality,
                                      pixel_only=pixel_only, progress=self.progress)

        train, sources = [], []
        if uses_simulated(cfg):
            folder = tdata.dataset_folder(d["train"], root, progress=self.progress)
            train += samples(folder, d["train"]["n_events"], d["train"]["pixel_only"])
            sources.append(str(folder))
        for name in d["real"]:
            folder = real_trackml_dir(name)
            train += samples(folder, 0, d["train"]["pixel_only"])
            sources.append(str(folder))
        val_folder = tdata.dataset_folder(d["val"], root, progress=self.progress)
        val = samples(val_folder, d["val"]["n_events"], d["val"]["pixel_only"])
        self.events_hits = [len(s["x"]) for s in train]  # tokens per event (hits, or doublets)
        self.train_units = _sequences(train, cfg, "data.train")
        self.val_units = _sequences(val, cfg, "data.val")
        self.sources = sources + [str(val_folder)]

    def _tokenizer(self) -> None:
        """Train the tokenizer (stage 1) or read it back from the run folder."""
        self.tokenizer, self.tokenizer_measures = None, {}
        if self.cfg["mask"]["target"] == "features":
            return
        path = self.out / TOKENIZER_FILE
        if path.is_file():
            self.tokenizer, self.tokenizer_measures = load_tokenizer(path)
            return
        t = self.cfg["tokenizer"]
        x = torch.from_numpy(np.concatenate([u["x"] for u in self.train_units]))
        x_val = torch.from_numpy(np.concatenate([u["x"] for u in self.val_units]))
        g = torch.Generator().manual_seed(int(self.cfg["train"]["seed"]))
        x_val = x_val[torch.randperm(len(x_val), generator=g)[: t["val_hits"]]]
        log: list = []
        t0 = time.perf_counter()
        tokens = self.cfg["data"]["tokens"]
        n_features = len(TOKEN_FEATURES) if tokens == "doublets" else self.feature_cfg.n_features
        tok, measures = train_tokenizer(x, vq_cfg(self.cfg, n_features), self.feature_cfg,
                                        steps=t["steps"], batch_hits=t["batch_hits"], lr=t["lr"],
                                        seed=int(self.cfg["train"]["seed"]), x_val=x_val, progress=self.progress,
                                        log=log, tokens=tokens)
        measures["seconds"] = time.perf_counter() - t0
        self.tokenizer, self.tokenizer_measures = tok, measures
        buf = pd.DataFrame(log).to_csv(index=False).encode()
        atomic_write_bytes(self.out / "log_tokenizer.csv", buf, force=True)
        torch_save_atomic({"config": tok.config_dict(), "state_dict": model_state_dict(tok),
                           "measures": json_safe(measures)}, path)

    def _build_model(self) -> None:
        m, tr = self.cfg["model"], self.cfg["train"]
        self.backend, notice = training_backend(m["backend"], self.device)
        if notice:
            self._notice(notice)
        torch.manual_seed(tr["seed"])
        tokens = self.cfg["data"]["tokens"]
        enc = EncoderConfig.preset(m["preset"], n_features=len(TOKEN_FEATURES) if tokens == "doublets"
                                   else self.feature_cfg.n_features, attention=self.backend, **m["encoder"])
        n_codes = 0
        if self.tokenizer is not None:
            self.tokenizer.to(self.device)
            n_codes = self.tokenizer.config.codebook_size
        self.model = MaskedHitModel(enc, self.feature_cfg, MaskConfig.from_dict(self.cfg["mask"]), n_codes, tokens=tokens,
                                    token_hidden=DoubletConfig.from_dict(m["doublet"]).token_hidden).to(self.device)
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": tr["weight_decay"]},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=tr["lr"], betas=(0.9, 0.95))
        self.clock = {"seconds": 0.0}
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(tr, self.clock))

    def _state(self) -> dict:
        return {"model": model_state_dict(self.model), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.step, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "train_seconds": self.train_seconds,
                "best_val_loss": self.best_val_loss, "stopped": self.stopped, "rng": _rng_state(),
                "config": self.cfg, "model_config": self.model.config_dict()}

    def _restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scheduler.lr_lambdas = [_lr_lambda(self.cfg["train"], self.clock) for _ in self.optimizer.param_groups]
        for key in ("step", "epoch", "batch_in_epoch", "train_seconds", "best_val_loss", "stopped"):
            setattr(self, key, ckpt[key])
        self.clock["seconds"] = self.train_seconds
        if self.stopped in ("steps", "time_limit"):
            self.stopped = ""
        _set_rng_state(ckpt["rng"])

    def _batch(self, units: list[dict], idx, generator: torch.Generator) -> tuple[dict, tuple]:
        batch = tdata.make_batch([units[int(i)] for i in idx], self.device)
        x_in, selected, mask_token = self.model.corrupt(batch["x"], batch["pad_mask"], generator)
        codes = self.tokenizer.encode(batch["x"]) if self.tokenizer is not None else None
        return batch, (x_in, selected, mask_token, codes)

    def _corruption_generator(self, *key) -> torch.Generator:
        # the corruption of a step is a function of (seed, step) alone: a resumed run redraws it
        seed = int(self.cfg["train"]["seed"])
        for k in key:
            seed = seed * 1_000_003 + int(k)
        return torch.Generator(device=self.device).manual_seed(seed % 2**62)

    def _step(self, idx) -> dict:
        self.model.train()
        g = self._corruption_generator(1, self.step)
        batch, (x_in, selected, mask_token, codes) = self._batch(self.train_units, idx, g)
        with autocast_context(self.device):
            out = self.model(x_in, make_context(batch), mask_token)
            loss, parts = self.model.loss(out, batch["x"], selected, codes)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg["train"]["clip_grad"]
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip if clip > 0 else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        return {**parts, "grad_norm": float(norm), "n_hits": int(batch["pad_mask"].sum())}

    @torch.no_grad()
    def validate(self) -> dict:
        """Masked loss, code accuracy and azimuth error on the validation sequences (fixed corruption)."""
        self.model.eval()
        bs = self.cfg["train"]["eval_batch_size"]
        g = self._corruption_generator(2)
        sums, n = {}, 0.0
        for i in range(0, len(self.val_units), bs):
            batch, (x_in, selected, mask_token, codes) = self._batch(self.val_units, range(i, min(i + bs, len(self.val_units))), g)
            with autocast_context(self.device):
                out = self.model(x_in, make_context(batch), mask_token)
                _, parts = self.model.loss(out, batch["x"], selected, codes)
            w = parts.pop("n_selected")
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * w
            n += w
        return {f"val_{k}": v / max(n, 1.0) for k, v in sums.items()}

    def fit(self) -> dict:
        threads = torch.get_num_threads()
        if self.cfg["train"]["num_threads"]:
            torch.set_num_threads(self.cfg["train"]["num_threads"])
        try:
            return self._fit()
        finally:
            torch.set_num_threads(threads)

    def _fit(self) -> dict:
        cfg, tr = self.cfg, self.cfg["train"]
        ckpt = self._check_out_dir()
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.out / CONFIG_FILE, dump_yaml(cfg).encode(), force=True)
        self.device = resolve_device(tr["device"])
        _seed_everything(tr["seed"])
        self._load_data()
        self._tokenizer()
        self._build_model()
        self.step = self.epoch = self.batch_in_epoch = 0
        self.train_seconds, self.best_val_loss, self.stopped = 0.0, float("inf"), ""
        self.step_log = _CsvLog(self.out / STEP_LOG, True)
        self.val_log = _CsvLog(self.out / VAL_LOG, True)
        if ckpt is not None:
            self._restore(ckpt)
            for log in (self.step_log, self.val_log):
                log.truncate_after(self.step)
            print(f"trackstudy pretrain: resuming {self.out} from step {self.step}", file=sys.stderr)
        else:
            for log in (self.step_log, self.val_log):
                if log.path.exists():
                    log.path.unlink()
                log.fields = None
        if self.progress:
            print(f"trackstudy pretrain: masked {cfg['data']['tokens']}, target {cfg['mask']['target']} ({cfg['model']['preset']}, "
                  f"{self.model.encoder.num_parameters():,} encoder parameters) on {describe_device(self.device)}, "
                  f"attention {self.backend}, {len(self.train_units):,} sequences", file=sys.stderr)
        self._loop()
        return self._finish()

    def _loop(self) -> None:
        tr = self.cfg["train"]
        steps, max_s = tr["steps"], tr["max_minutes"] * 60.0
        lengths = np.array([len(u["x"]) for u in self.train_units])
        bar = tqdm(total=steps, initial=self.step, desc="pretrain", unit="step", disable=not self.progress,
                   dynamic_ncols=True)
        consistent, interrupted = True, False
        with _StopRequest() as stop:
            try:
                while self.step < steps and not self.stopped:
                    if max_s > 0 and self.train_seconds >= max_s:
                        self.stopped = "time_limit"
                        break
                    batches = tdata.epoch_batches(len(self.train_units), tr["batch_size"], tr["seed"], self.epoch,
                                                  lengths=lengths, length_buckets=tr["length_buckets"],
                                                  batch_hits=tr["batch_hits"])
                    while self.batch_in_epoch < len(batches) and self.step < steps:
                        t0 = time.perf_counter()
                        consistent = False
                        row = self._step(batches[self.batch_in_epoch])
                        dt = time.perf_counter() - t0
                        self.step += 1
                        self.batch_in_epoch += 1
                        self.train_seconds += dt
                        self.clock["seconds"] = self.train_seconds
                        consistent = True
                        self.step_log.write({"step": self.step, "epoch": self.epoch,
                                             "lr": self.optimizer.param_groups[0]["lr"], **row, "seconds": dt})
                        if self.step % tr["eval_every"] == 0 or self.step == steps:
                            val = self.validate()
                            self.best_val_loss = min(self.best_val_loss, val["val_loss"])
                            self.val_log.write({"step": self.step, **val, "train_seconds": self.train_seconds})
                            bar.set_postfix(loss=f"{row['loss']:.3f}", val=f"{val['val_loss']:.3f}")
                        bar.update(1)
                        if self.step % tr["checkpoint_every"] == 0:
                            save_checkpoint(checkpoint_path(self.out), self._state())
                        if self.on_step is not None:
                            self.on_step(self.step, row)
                        if stop.requested:
                            raise KeyboardInterrupt
                        if max_s > 0 and self.train_seconds >= max_s:
                            self.stopped = "time_limit"
                            self._notice(f"train.max_minutes={tr['max_minutes']} reached at step {self.step}")
                            break
                    if self.batch_in_epoch >= len(batches):
                        self.epoch += 1
                        self.batch_in_epoch = 0
            except KeyboardInterrupt:
                interrupted = True
            finally:
                bar.close()
        if interrupted:
            if consistent:
                save_checkpoint(checkpoint_path(self.out), self._state())
            print(f"trackstudy pretrain: interrupted at step {self.step}; resume with: trackstudy pretrain --config "
                  f"{self.out / CONFIG_FILE} --out {self.out} --resume", file=sys.stderr)
            raise KeyboardInterrupt
        self.stopped = self.stopped or "steps"
        save_checkpoint(checkpoint_path(self.out), self._state())

    def _finish(self) -> dict:
        if self.step % self.cfg["train"]["eval_every"] and self.step != self.cfg["train"]["steps"]:
            val = self.validate()
            self.val_log.write({"step": self.step, **val, "train_seconds": self.train_seconds})
        else:
            val = self.validate()
        torch_save_atomic({"model_config": self.model.config_dict(), "state_dict": model_state_dict(self.model),
                           "step": self.step}, self.out / PRETRAINED_FILE)
        summary = json_safe({
            "kind": "masked_hits", "tokens": self.cfg["data"]["tokens"], "preset": self.cfg["model"]["preset"],
            "backend": self.backend,
            "target": self.cfg["mask"]["target"], "device": describe_device(self.device),
            "n_params": sum(p.numel() for p in self.model.parameters()),
            "encoder_params": self.model.encoder.num_parameters(),
            "steps": self.step, "epochs": self.epoch + (self.batch_in_epoch > 0), "stopped": self.stopped,
            "train_seconds": self.train_seconds, "validation": val, "best_val_loss": self.best_val_loss,
            "tokenizer": self.tokenizer_measures,
            "data": {"sources": self.sources, "n_events": len(self.events_hits),
                     "n_hits": int(sum(self.events_hits)) if self.builder is None else None, "n_tokens": int(sum(self.events_hits)),
                     "n_sequences": len(self.train_units), "graph_fit": self.graph_fit,
                     "n_val_sequences": len(self.val_units)},
            "notices": self.notices, "torch": torch.__version__, "model_file": str(self.out / PRETRAINED_FILE)})
        atomic_write_bytes(self.out / SUMMARY_FILE, json.dumps(summary, indent=1).encode(), force=True)
        self.summary = summary
        return summary


def pretrain(config, out_dir, *, resume: bool = False, progress: bool = True, on_step=None) -> dict:
    """Pretrain an encoder with the masked-token objective as ``config`` (mapping or YAML path)
    describes, into ``out_dir``; returns the summary (also ``out_dir/summary.json``). See :class:`Pretrainer`."""
    return Pretrainer(copy.deepcopy(config) if isinstance(config, dict) else config, out_dir, resume=resume,
                      progress=progress, on_step=on_step).fit()


def masked_accuracy_curve(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The validation log of a pretraining run (step, val_loss, val_code_accuracy, val_phi_error_rad, ...)."""
    path = resolve_path(run_dir) / VAL_LOG
    if not path.is_file():
        raise DataError(f"{path}: no validation log (pretrain first)")
    return pd.read_csv(path)

