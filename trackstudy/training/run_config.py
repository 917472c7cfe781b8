"""The training run configuration: defaults, validation, ``--set`` overrides, YAML in and out.

A run config is a YAML mapping with five sections of flat keys (a few keys hold a mapping)::

    model:    family, preset, backend, encoder: {EncoderConfig fields}, head: {HeadConfig fields},
              binning: {n_phi, n_theta, n_p}, features: {FeatureConfig fields}, init_from,
              input (features|codes), tokenizer (input codes: a pretraining run's hit tokenizer),
              gnn: {GNNConfig fields} (family gnn), doublet: {DoubletConfig fields} (family doublet),
              graph: {GraphConfig fields} (the edge families gnn and doublet)
    locality: method (none|dbscan|window|density|grid), params: {...}, vertex_scan, barrel_views
    data:     train: {dir, n_events, pileup, seed, tracks, pixel_only}, val: {...}, online, root, cache,
              augment, sequences (event|cluster), min_cluster_hits
    train:    steps, batch_size, lr, min_lr, weight_decay, warmup_steps, schedule, clip_grad,
              eval_every, checkpoint_every, patience, seed, device, compile, max_minutes, ...
    tune:     n_events, metric, grid (one mapping param -> values, or a list of them), base (track-formation
              parameters before tuning, also those of the validation curve)

:func:`resolve_config` fills every missing key with :data:`DEFAULTS` and validates every key:
an unknown key is a ConfigError naming it and listing the valid ones, a value of the wrong type
or out of range is a ConfigError naming ``section.key`` and what was expected.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import fields, replace
from pathlib import Path

import yaml

from trackstudy.config import YamlLoader, read_yaml, resolve_path, yaml_problem
from trackstudy.data.simulate import parse_tracks
from trackstudy.device import DEVICE_CHOICES
from trackstudy.errors import ConfigError
from trackstudy.graphs.module_map import GraphConfig
from trackstudy.locality.clustering import METHODS, resolve_params
from trackstudy.locality.views import check_views
from trackstudy.metrics import HEADLINE_KEYS
from trackstudy.models.attention import TRAIN_BACKENDS
from trackstudy.models.doublet import DoubletConfig, encoder_features
from trackstudy.models.encoder import PRESETS, EncoderConfig
from trackstudy.models.features import FeatureConfig
from trackstudy.models.gnn import GNNConfig
from trackstudy.models.heads import CODE_FAMILIES, EDGE_FAMILIES, FAMILIES, GEOMETRY_FAMILIES, INPUTS, HeadConfig
from trackstudy.postprocessing.gnn_tracks import GNN_TUNE_GRID, GNNTrackParams
from trackstudy.postprocessing.track_formation import TUNE_GRIDS, default_params

#: Choices of the config's named fields, each defined beside what it names.
PRESET_NAMES = tuple(PRESETS)
LOCALITY_METHODS = ("none", *METHODS)
SCHEDULES = ("cosine", "constant", "plateau")
SEQUENCES = ("event", "cluster")

_DATASET_DEFAULTS = {"dir": "", "n_events": 100, "pileup": 200.0, "seed": 0, "tracks": None, "pixel_only": True}

#: Every key of a run config with its default value.
DEFAULTS: dict = {
    "model": {
        "family": "contrastive",
        "preset": "small",
        "backend": "dense",
        "encoder": {},
        "head": {},
        "binning": {"n_phi": 15, "n_theta": 15, "n_p": 4},
        "features": {},
        "gnn": {},  # family gnn: GNNConfig fields (trackstudy.models.gnn)
        "doublet": {},  # family doublet: DoubletConfig fields (trackstudy.models.doublet)
        "graph": {},  # families gnn, doublet: GraphConfig fields, how doublets are built (method windows or
                      # metric, the latter for gnn: trackstudy.graphs)
        "init_from": "",  # a pretraining run (trackstudy pretrain) whose encoder weights start this model
                          # (hit tokens: the hit-token families; data.tokens doublets: family doublet)
        "input": "features",  # or codes (family contrastive): each hit's VQ code of model.tokenizer is its only input
        "tokenizer": "",  # input codes: a pretraining run with a hit tokenizer (or its tokenizer.pt); the hits'
                          # features are the tokenizer's, so model.features stays empty
    },
    "locality": {"method": "none", "params": {}, "vertex_scan": False,
                 "barrel_views": [],  # vertex z (mm) of barrel views at inference (trackstudy.locality.views)
                 "view_frame": False},  # with views: barrel rows' z measured from their view's vertex;
                                        # both: every view in both frames, the candidates pooled
    "data": {
        "train": dict(_DATASET_DEFAULTS),
        "val": {**_DATASET_DEFAULTS, "n_events": 20, "seed": 1},
        "online": False,  # fresh simulated training events every epoch (data.train describes them)
        "root": "",  # folder of simulated datasets (sim/) and tensor caches (processed/); "" = data/
        "cache": True,
        "augment": False,  # random rotations about z and mirrors of the training events (detector symmetries)
        "sequences": "event",  # "cluster": every locality cluster of a training event is one training sequence
        "min_cluster_hits": 2,  # smaller clusters are not trained on (data.sequences: cluster)
    },
    "train": {
        "steps": 1000,
        "batch_size": 4,  # events per optimiser step (per process under DDP)
        "length_buckets": 0,  # > 1: batches of similar event sizes, sorted within runs of this many batches
        "batch_hits": 0,  # > 0: batches cut by padded hits (sequences x longest) instead of by batch_size alone
        "lr": 1e-3,
        "min_lr": 1e-5,  # end of the cosine schedule
        "weight_decay": 0.01,
        "warmup_steps": 50,
        "schedule": "cosine",
        "plateau_factor": 0.5,
        "plateau_patience": 2,
        "clip_grad": 1.0,  # max gradient norm (0 = no clipping)
        "eval_every": 100,
        "checkpoint_every": 200,
        "patience": 0,  # early stopping: evaluations without improvement (0 = never stop early)
        "seed": 0,
        "device": "auto",
        "compile": False,
        "max_minutes": 0.0,  # wall-clock cap of the optimisation loop (0 = none)
        "schedule_by_time": False,  # cosine over min(steps, max_minutes): annealed even when the clock stops it
        "restore_best": True,  # the final model holds the weights of the best validation loss
        "eval_batch_size": 8,
        "snapshot_minutes": [],  # also keep checkpoints/at_<M>min.pt when the training time passes M minutes
        "eval_tracks": 4,  # validation events whose tracks are formed and scored at every evaluation (0 = none)
        "num_threads": 0,  # CPU threads of torch (0 = torch's default); 1 is fastest on a busy, shared CPU
        "flush_denormal": False,  # CPU: subnormal floats computed as 0 (torch.set_flush_denormal) while training;
                                  # the sharp attention of a pretrained encoder made CPU steps 2x slower without
    },
    "tune": {
        "n_events": 20,  # validation events used to tune track formation (0 = skip tuning)
        "metric": "trackml_score",  # or dm_efficiency, ..., score_and_dm (mean of trackml_score and dm_efficiency),
        # dm_minus_fake (DM efficiency - fake rate: the full-event targets bound both)
        "grid": None,  # None: the family's default grid (track_formation.TUNE_GRIDS)
        "base": {},  # track-formation parameters before tuning (the validation curve uses them), e.g. {max_hits: 30}
    },
}

#: Keys training never reads: how a trained run is run (its barrel views and their frame). A
#: finished run takes new values without training again (``resume``, and the study's reused runs).
INFERENCE_CHANGES = ("locality.barrel_views", "locality.view_frame")
#: Keys that may differ between a checkpoint's config and the config given to ``resume``: they
#: change how long or how a run proceeds, not what it computes up to where it stopped.
RESUMABLE_CHANGES = (*INFERENCE_CHANGES, "train.steps", "train.max_minutes", "train.checkpoint_every", "train.device",
                     "train.compile", "train.patience", "train.num_threads", "train.eval_tracks", "train.snapshot_minutes",
                     "tune.n_events",
                     "tune.metric", "tune.grid", "tune.base")

# Mapping-valued keys whose inner keys are checked elsewhere (EncoderConfig, HeadConfig, ...).
_FREE_MAPPINGS = {"model.encoder", "model.head", "model.features", "model.gnn", "model.doublet", "model.graph",
                  "locality.params",
                  "tune.base"}


def _type_name(t) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string", dict: "a mapping",
            list: "a list"}.get(t, str(t))


#: Boolean keys that also take these words.
_WORDS_BESIDE_BOOL = {"locality.view_frame": ("both",)}


def _check_type(value, default, where: str):
    """``value`` coerced to the type of ``default`` (int -> float allowed), or ConfigError."""
    if default is None:
        return value
    t = type(default)
    if value is None and t is str:
        return ""
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if t is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, t) or (t is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {_type_name(t)}, got {value!r}")
    return value


def _merge(defaults: dict, given, where: str) -> dict:
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(given).__name__}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        name = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown config key {name!r}; valid keys{' in ' + where if where else ''}: "
                          f"{', '.join(defaults)}")
    out = {}
    for key, default in defaults.items():
        path = f"{where}.{key}" if where else key
        if key not in given:
            out[key] = copy.deepcopy(default)
        elif path in _FREE_MAPPINGS:
            value = given[key] if given[key] is not None else {}
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a mapping, got {value!r}")
            out[key] = copy.deepcopy(value)
        elif isinstance(default, dict):
            out[key] = _merge(default, given[key], path)
        elif given[key] in _WORDS_BESIDE_BOOL.get(path, ()):
            out[key] = given[key]
        else:
            out[key] = _check_type(given[key], default, path)
    return out


def _positive(cfg, path: str, allow_zero: bool = False):
    section, key = path.split(".", 1)
    node = cfg[section]
    for part in key.split(".")[:-1]:
        node = node[part]
    v = node[key.split(".")[-1]]
    if v < 0 or (v == 0 and not allow_zero):
        raise ConfigError(f"{path}: must be {'>= 0' if allow_zero else '> 0'}, got {v!r}")


def _choice(value, choices, path: str):
    if value not in choices:
        raise ConfigError(f"{path}: {value!r} unknown; choose from {', '.join(map(str, choices))}")


def _check_dataset(d: dict, where: str, online: bool = False) -> None:
    if d["n_events"] < 0 or (d["n_events"] == 0 and not d["dir"]):
        raise ConfigError(f"{where}.n_events: must be >= 1 for a simulated dataset (0 = all events of dir), "
                          f"got {d['n_events']}")
    if not 0 <= d["pileup"] <= 1000:
        raise ConfigError(f"{where}.pileup: must be in [0, 1000], got {d['pileup']}")
    if d["tracks"] is not None:
        if isinstance(d["tracks"], (list, tuple)) and len(d["tracks"]) == 2:
            d["tracks"] = f"{int(d['tracks'][0])}:{int(d['tracks'][1])}"
        if not isinstance(d["tracks"], str):
            raise ConfigError(f"{where}.tracks: expected 'MIN:MAX' (e.g. '10:50') or null, got {d['tracks']!r}")
        try:
            parse_tracks(d["tracks"])
        except ConfigError as exc:
            raise ConfigError(f"{where}.tracks: {exc}") from None
    if online and d["dir"]:
        raise ConfigError(f"{where}.dir: data.online simulates fresh events; leave dir empty")


def resolve_config(config: dict | str | os.PathLike | None) -> dict:
    """A complete, validated run config from a mapping or a YAML file (missing keys -> DEFAULTS).

    Model-level fields (encoder, head, features) are checked by building their dataclasses, and the
    locality parameters by the clustering module, so mistakes surface before any data is made.
    """
    if config is None:
        config = {}
    if isinstance(config, (str, os.PathLike)):
        config = load_yaml(config)
    cfg = _merge(DEFAULTS, config, "")
    m, loc, data, tr, tu = cfg["model"], cfg["locality"], cfg["data"], cfg["train"], cfg["tune"]
    _choice(m["family"], FAMILIES, "model.family")
    if m["family"] in EDGE_FAMILIES and m["family"] != "doublet" and m.get("init_from"):
        raise ConfigError(f"model.init_from: a pretrained encoder starts a hit-token model or a doublet-token model "
                          f"(model.family: doublet); model.family {m['family']} has none (remove init_from)")
    _check_input(m)
    _choice(m["preset"], PRESET_NAMES, "model.preset")
    _choice(m["backend"], TRAIN_BACKENDS, "model.backend")
    for k in ("n_phi", "n_theta", "n_p"):
        if m["binning"][k] < 1:
            raise ConfigError(f"model.binning.{k}: must be >= 1, got {m['binning'][k]}")
    _check_model_parts(m)
    _choice(loc["method"], LOCALITY_METHODS, "locality.method")
    if not isinstance(loc["vertex_scan"], (bool, str)):
        raise ConfigError("locality.vertex_scan: expected true/false or 'endcap'/'barrel'/'all', "
                          f"got {loc['vertex_scan']!r}")
    views = check_views(loc["barrel_views"])
    loc["barrel_views"] = [float(v) for v in views]
    if len(views) and loc["method"] == "none":
        raise ConfigError("locality.barrel_views: needs a locality method (the views are clusters of its own)")
    if len(views) and m["family"] in EDGE_FAMILIES:
        raise ConfigError(f"locality.barrel_views: model.family {m['family']} builds its own graph; the views are "
                          "for the hit-token families")
    if loc["method"] == "none":
        if loc["params"]:
            raise ConfigError(f"locality.params: given {sorted(loc['params'])} but locality.method is 'none'")
    else:
        try:
            resolve_params(loc["method"], dict(loc["params"]))
        except ConfigError as exc:
            raise ConfigError(f"locality.params: {exc}") from None
    _choice(data["sequences"], SEQUENCES, "data.sequences")
    if data["sequences"] == "cluster":
        if loc["method"] == "none":
            raise ConfigError("data.sequences: 'cluster' trains on locality clusters; set locality.method "
                              f"({', '.join(m for m in LOCALITY_METHODS if m != 'none')})")
        if data["online"]:
            raise ConfigError("data.sequences: 'cluster' needs a fixed training set; set data.online: false")
    if tr["batch_hits"] and data["online"]:
        raise ConfigError("train.batch_hits: cuts batches by the sizes of a fixed training set; "
                          "data.online simulates its events only when their batch comes (use batch_size)")
    if data["min_cluster_hits"] < 1:
        raise ConfigError(f"data.min_cluster_hits: must be >= 1, got {data['min_cluster_hits']}")
    _check_dataset(data["train"], "data.train", online=data["online"])
    _check_dataset(data["val"], "data.val")
    for key in ("steps", "batch_size", "eval_every", "checkpoint_every", "eval_batch_size"):
        _positive(cfg, f"train.{key}")
    for key in ("lr",):
        _positive(cfg, f"train.{key}")
    for key in ("min_lr", "weight_decay", "warmup_steps", "clip_grad", "patience", "max_minutes", "num_threads",
                "length_buckets", "eval_tracks", "batch_hits"):
        _positive(cfg, f"train.{key}", allow_zero=True)
    _choice(tr["schedule"], SCHEDULES, "train.schedule")
    snaps = tr["snapshot_minutes"]
    if not isinstance(snaps, list) or not all(isinstance(m, (int, float)) and not isinstance(m, bool) and m > 0
                                               for m in snaps):
        raise ConfigError(f"train.snapshot_minutes: expected a list of minutes > 0, e.g. [15, 30], got {snaps!r}")
    if tr["schedule_by_time"] and not tr["max_minutes"]:
        raise ConfigError("train.schedule_by_time: needs a time budget, train.max_minutes > 0")
    if not 0 < tr["plateau_factor"] < 1:
        raise ConfigError(f"train.plateau_factor: must be in (0, 1), got {tr['plateau_factor']}")

    if not (tr["device"] in DEVICE_CHOICES or tr["device"].startswith("cuda:")):
        raise ConfigError(f"train.device: {tr['device']!r} unknown; choose from {', '.join(DEVICE_CHOICES)} "
                          "or e.g. 'cuda:1'")
    _positive(cfg, "tune.n_events", allow_zero=True)

    _choice(tu["metric"], tuple(k for k in HEADLINE_KEYS if k not in ("fake_rate", "duplicate_rate"))
            + ("dm_efficiency_pt1", "score_and_dm", "dm_minus_fake"), "tune.metric")
    tu["grid"] = normalise_grid(tu["grid"], m["family"])
    base_track_params(m["family"], tu["base"])  # checked now, not after training
    return cfg


def _check_input(m: dict) -> None:
    """``model.input`` and ``model.tokenizer`` (the tokenizer file itself is read when training starts)."""
    _choice(m["input"], INPUTS, "model.input")
    if m["input"] == "features":
        if m["tokenizer"]:
            raise ConfigError(f"model.tokenizer: given ({m['tokenizer']!r}) but model.input is 'features'; set "
                              "model.input: codes to read its codes, or remove model.tokenizer")
        return
    if m["family"] not in CODE_FAMILIES:
        raise ConfigError(f"model.input: 'codes' is an option of model.family {', '.join(CODE_FAMILIES)}, "
                          f"not {m['family']!r}")
    if not isinstance(m["tokenizer"], str) or not m["tokenizer"]:
        raise ConfigError("model.tokenizer: model.input 'codes' needs a tokenizer: a pretraining run folder with a "
                          "hit tokenizer (trackstudy pretrain with mask.target codes or both) or its tokenizer.pt")
    if m["features"]:
        raise ConfigError(f"model.features: given {sorted(m['features'])} but model.input is 'codes': the hits' "
                          "features are those of model.tokenizer; remove model.features")
    if m["init_from"]:
        raise ConfigError("model.init_from: a pretrained encoder reads hit features, a model.input 'codes' model "
                          "reads code embeddings; remove one of them")


def _check_model_parts(m: dict) -> None:


    for name, cls, skip in (("encoder", EncoderConfig, ()), ("head", HeadConfig, ("family", "n_classes")),
                            ("features", FeatureConfig, ())):
        valid = [f.name for f in fields(cls) if f.name not in skip]
        unknown = sorted(set(m[name]) - set(valid))
        if unknown:
            raise ConfigError(f"unknown config key 'model.{name}.{unknown[0]}'; valid keys in model.{name}: "
                              f"{', '.join(valid)}")
    if "attention" in m["encoder"]:
        raise ConfigError("model.encoder.attention: set the attention backend with model.backend")
    for section, family in (("gnn", "gnn"), ("doublet", "doublet"), ("graph", EDGE_FAMILIES)):
        if m[section] and m["family"] not in family:
            raise ConfigError(f"model.{section}: given but model.family is {m['family']!r} (it configures "
                              f"{' and '.join(repr(f) for f in EDGE_FAMILIES if f in family)})")
    if m["family"] in EDGE_FAMILIES:
        graph = GraphConfig.from_dict(m["graph"])
        if graph.method == "metric" and m["family"] != "gnn":
            raise ConfigError(f"model.graph.method: 'metric' builds the graphs of the gnn family; a {m['family']} "
                              "model uses method 'windows'")
    if m["family"] == "gnn":
        GNNConfig.from_dict(m["gnn"])
    if m["encoder"].get("geo_bias") and m["family"] not in GEOMETRY_FAMILIES:  # at load, not at the first forward
        raise ConfigError(f"model.encoder.geo_bias: an option of the hit-token families ({', '.join(GEOMETRY_FAMILIES)}), "
                          f"not of {m['family']!r}")
    dcfg = DoubletConfig.from_dict(m["doublet"]) if m["family"] == "doublet" else None
    if dcfg is not None:
        if dcfg.tokens == "hits" and m.get("init_from"):
            raise ConfigError("model.init_from: a doublet model with model.doublet.tokens: hits has no pretraining "
                              "to start from (masked pretraining makes doublet-token encoders); remove init_from")
    try:
        feats = FeatureConfig(**m["features"])
        n_features = len(encoder_features(dcfg)) if dcfg is not None else feats.n_features
        EncoderConfig.preset(m["preset"], n_features=n_features, **m["encoder"])
        HeadConfig(family=m["family"], n_classes=1, **m["head"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model: {exc}") from None


def base_track_params(family: str, base: dict, head_cfg=None):
    """The family's track-formation parameters with the fields of ``tune.base`` replaced, over the
    model's own defaults (``head_cfg``: its HeadConfig, e.g. with a noise class). ConfigError names
    an unknown field."""
    default = GNNTrackParams() if family in EDGE_FAMILIES else default_params(family, head_cfg)
    valid = [f.name for f in fields(default)]
    unknown = sorted(set(base) - set(valid))
    if unknown:
        raise ConfigError(f"unknown config key 'tune.base.{unknown[0]}'; valid keys for {family}: {', '.join(valid)}")
    try:
        return replace(default, **base)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"tune.base: {exc}") from None


def normalise_grid(grid, family: str) -> list[dict]:
    """The tuning grid as a list of {param: [values]} (None -> the family's default grid).

    ``grid`` is one mapping parameter -> values, a list of them, or a mapping family -> grid (a base
    config shared by several families, e.g. the study's smoke config; a family it does not name
    gets its default grid). Every parameter must be a track-formation parameter of ``family``."""
    if isinstance(grid, dict) and grid and set(grid) <= set(FAMILIES):
        grid = grid.get(family)
    if grid is None:
        return copy.deepcopy(GNN_TUNE_GRID if family in EDGE_FAMILIES else TUNE_GRIDS[family])
    grids = grid if isinstance(grid, list) else [grid]
    valid = [f.name for f in fields(base_track_params(family, {}))]
    out = []
    for i, g in enumerate(grids):
        if not isinstance(g, dict) or not g:
            raise ConfigError(f"tune.grid[{i}]: expected a non-empty mapping parameter -> list of values, got {g!r}")
        unknown = sorted(set(map(str, g)) - set(valid))
        if unknown:
            raise ConfigError(f"tune.grid: {unknown[0]!r} is not a track-formation parameter of {family}; valid: "
                              f"{', '.join(valid)} (a grid for several families: tune.grid.<family>)")
        out.append({str(k): list(v) if isinstance(v, (list, tuple)) else [v] for k, v in g.items()})
    return out


def set_value(cfg: dict, assignment: str) -> dict:
    """Apply one ``section.key=value`` (or ``section.sub.key=value``) override; the value is YAML
    (``3``, ``0.5``, ``true``, ``null``, ``[1, 2]``, ``'10:50'``). Returns ``cfg`` (modified)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected section.key=value, e.g. train.steps=100")
    path, text = assignment.split("=", 1)
    keys = [k for k in path.strip().split(".") if k]
    if len(keys) < 2:
        raise ConfigError(f"--set {assignment!r}: the key must name a section and a key, e.g. train.steps")
    try:
        value = yaml.load(text, Loader=YamlLoader) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment}: the value is not valid YAML ({yaml_problem(exc)})") from None
    if keys[0] not in DEFAULTS:
        raise ConfigError(f"--set {path}: unknown section {keys[0]!r}; valid sections: {', '.join(DEFAULTS)}")
    node = cfg
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value
    return cfg


def load_yaml(path: str | os.PathLike) -> dict:
    """A run config's YAML mapping from ``path`` (relative paths from the project root when not found as given)."""
    p = Path(path)
    return read_yaml(p if p.exists() else resolve_path(path), what="config file",
                     expected="a mapping of sections (model, locality, data, train, tune)")


def dump_yaml(cfg: dict) -> str:
    """YAML text of a config (sections in the canonical order)."""
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=120)


def config_hash(obj) -> str:
    """Short stable hash of a JSON-able object (cache keys)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two configs."""
    out = []
    for k in sorted(set(a) | set(b)):
        path = f"{prefix}.{k}" if prefix else k
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict) and path not in ("tune.grid", "tune.base"):
            out += diff_keys(va, vb, path)
        elif va != vb:
            out.append(path)
    return out


__all__ = ["DEFAULTS", "FAMILIES", "INFERENCE_CHANGES", "LOCALITY_METHODS", "RESUMABLE_CHANGES", "SCHEDULES", "SEQUENCES",
           "TRAIN_BACKENDS", "base_track_params", "config_hash", "diff_keys", "dump_yaml", "load_yaml", "normalise_grid",
           "resolve_config", "set_value"]
