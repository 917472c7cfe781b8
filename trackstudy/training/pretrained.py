"""A pretraining run's encoder as the starting point of a track model (``trackstudy train --init-from``).

A pretraining run (:mod:`trackstudy.training.pretrain`) writes ``pretrained.pt`` =
{"model_config", "state_dict", "step"} of its :class:`~trackstudy.models.masked.MaskedHitModel`
(or, while it runs, ``checkpoints/last.pt``). :func:`init_encoder` copies the weights of its
encoder into a track model's (first) encoder, exactly; the heads keep their fresh weights. The
encoder must have the same shapes (preset and ``model.encoder`` fields) and the same input
features (list and scales: otherwise the weights would read other numbers); the attention
backend may differ (the backends compute the same function). Any difference is one ConfigError
naming the option and the first differing tensor or field.

Doublet tokens: a pretraining run with ``data.tokens: doublets`` starts a ``model.family: doublet``
model (:func:`init_doublet`): its encoder exactly (the token features are the doublet model's, so
the input projection fits), and its token MLP too when ``model.doublet.token_hidden`` is the
pretraining's (otherwise the token MLP starts fresh and the returned info says so); the classifier
starts fresh. A run pretrained on one kind of token refuses a model of the other (ConfigError
naming both). :func:`check_init_from` checks a run config's ``model`` section against a run.

The run's tokenizer (``tokenizer.pt``, written when ``mask.target`` asks for codes) is read back by
:func:`load_tokenizer`: by the pretraining itself on resume, and by a ``model.input: codes`` track
model, whose only input is each hit's code.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from trackstudy.config import resolve_path
from trackstudy.errors import ConfigError, DataError
from trackstudy.models.doublet import TOKEN_FEATURES
from trackstudy.models.encoder import Encoder, EncoderConfig
from trackstudy.models.features import FeatureConfig
from trackstudy.models.vqvae import Tokenizer, tokenizer_from_config
from trackstudy.training.checkpoint import _torch_load, checkpoint_path

PRETRAINED_FILE = "pretrained.pt"
#: The VQ-VAE tokenizer of a pretraining run.
TOKENIZER_FILE = "tokenizer.pt"
#: EncoderConfig fields that change what the weights compute without changing their shapes.
_SAME_FUNCTION = ("n_heads", "activation", "norm_eps")

__all__ = ["PRETRAINED_FILE", "TOKENIZER_FILE", "check_compatible", "check_init_from", "encoder_state", "init_doublet", "init_encoder",
           "load_pretrained", "load_tokenizer"]


def load_pretrained(run_dir: str | os.PathLike) -> tuple[Path, dict]:
    """(file, {"model_config", "state_dict", "step"}) of a pretraining run: its ``pretrained.pt``, or
    its last checkpoint while it is unfinished. DataError names the folder or the file."""
    run_dir = resolve_path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: pretraining run not found (--init-from / model.init_from)")
    file = run_dir / PRETRAINED_FILE
    if file.is_file():
        obj = _torch_load(file, "model file")
        state = obj.get("state_dict")
    elif checkpoint_path(run_dir).is_file():
        file = checkpoint_path(run_dir)
        obj = _torch_load(file, "training checkpoint")
        state = obj.get("model")
    else:
        raise DataError(f"{run_dir}: neither {PRETRAINED_FILE} nor checkpoints/last.pt found (not a pretraining "
                        "run: trackstudy pretrain --config FILE.yaml --out RUN_DIR)")
    cfg = obj.get("model_config")
    if not isinstance(cfg, dict) or cfg.get("kind") != "masked_hits" or not isinstance(state, dict):
        raise DataError(f"{file}: not a pretraining run's file (expected the model_config and weights of a "
                        "masked-hit model written by trackstudy pretrain)")
    return file, {"model_config": cfg, "state_dict": state, "step": int(obj.get("step", 0))}


def encoder_state(state_dict: dict) -> dict:
    """The encoder's entries of a masked-hit model's state dict (prefix ``encoder.`` removed)."""
    return {k[len("encoder."):]: v for k, v in state_dict.items() if k.startswith("encoder.")}


def check_compatible(run_dir: str | os.PathLike, encoder_cfg: EncoderConfig, feature_cfg: FeatureConfig | None,
                     where: str = "--init-from", *, tokens: str = "hits") -> tuple[Path, dict]:
    """(file, pretrained object) of ``run_dir`` when its encoder fits an encoder of ``encoder_cfg``
    reading ``feature_cfg`` (hit tokens) or the doublet token features (``tokens="doublets"``,
    feature_cfg unused); else ConfigError naming ``where``, the file and the first difference."""
    file, obj = load_pretrained(run_dir)
    try:
        pre_enc = EncoderConfig.from_dict(obj["model_config"]["encoder"])
        pre_feat = FeatureConfig.from_dict(obj["model_config"]["features"])
    except (ConfigError, KeyError, TypeError) as exc:
        raise DataError(f"{file}: its model_config is not valid ({exc})") from None
    pre_tokens = obj["model_config"].get("tokens", "hits")
    if pre_tokens != tokens:
        family = "a doublet-token model (model.family: doublet)" if tokens == "doublets" else "a hit-token model"
        raise ConfigError(f"{where} {file}: data.tokens differs: pretrained on {pre_tokens} tokens, this is {family} "
                          f"reading {tokens}; pretrain with data.tokens: {tokens}")
    if tokens == "doublets":
        pre_names = list(obj["model_config"].get("token_features") or [])
        if pre_names != list(TOKEN_FEATURES):
            raise ConfigError(f"{where} {file}: token features differ: pretrained on {pre_names}, this model reads "
                              f"{list(TOKEN_FEATURES)}")
    elif pre_feat != feature_cfg:
        f = feature_cfg
        raise ConfigError(f"{where} {file}: pretrained on features {list(pre_feat.names)} (scales {pre_feat.xy_scale:g}, "
                          f"{pre_feat.z_scale:g}, {pre_feat.eta_scale:g}), this model uses {list(f.names)} (scales "
                          f"{f.xy_scale:g}, {f.z_scale:g}, {f.eta_scale:g}); set model.features as in the pretraining")
    state = encoder_state(obj["state_dict"])
    with torch.device("meta"):
        own = Encoder(encoder_cfg).state_dict()
    for key in sorted(set(own) | set(state)):
        a, b = state.get(key), own.get(key)
        if a is None or b is None or tuple(a.shape) != tuple(b.shape):
            raise ConfigError(f"{where} {file}: encoder shapes differ: {key} is {_shape(a)} in the pretrained encoder "
                              f"(d_model={pre_enc.d_model}, n_layers={pre_enc.n_layers}, d_ff={pre_enc.d_ff}), "
                              f"{_shape(b)} in this model (d_model={encoder_cfg.d_model}, n_layers={encoder_cfg.n_layers}, "
                              f"d_ff={encoder_cfg.d_ff}); use the pretraining's model.preset and model.encoder")
    for name in _SAME_FUNCTION:
        if getattr(pre_enc, name) != getattr(encoder_cfg, name):
            raise ConfigError(f"{where} {file}: the pretrained encoder has {name}={getattr(pre_enc, name)!r}, this "
                              f"model {getattr(encoder_cfg, name)!r} (set model.encoder.{name} as in the pretraining)")
    return file, obj


def _shape(t) -> str:
    return "absent" if t is None else str(tuple(t.shape))


def check_init_from(model_section: dict, run_dir: str | os.PathLike, where: str = "--init-from") -> tuple[Path, dict]:
    """:func:`check_compatible` for the ``model`` section of a run config (family, preset, encoder,
    features): a doublet model against doublet tokens, a hit-token model against hit tokens."""
    m = model_section
    if m.get("family") == "doublet":
        enc = EncoderConfig.preset(m["preset"], n_features=len(TOKEN_FEATURES), **m.get("encoder", {}))
        return check_compatible(run_dir, enc, None, where, tokens="doublets")
    feats = FeatureConfig(**m.get("features", {}))
    enc = EncoderConfig.preset(m["preset"], n_features=feats.n_features, **m.get("encoder", {}))
    return check_compatible(run_dir, enc, feats, where)


def init_doublet(model: nn.Module, run_dir: str | os.PathLike, where: str = "--init-from") -> dict:
    """Load a doublet-token pretraining run into a :class:`~trackstudy.models.doublet.DoubletTransformer`:
    its encoder exactly, its token MLP when the shapes match (``model.doublet.token_hidden`` as in
    the pretraining). Returns {"file", "step", "token_mlp": loaded or not}. ConfigError (naming
    ``where`` and what differs) as :func:`check_compatible`."""
    file, obj = check_compatible(run_dir, model.encoder.config, None, where, tokens="doublets")
    model.encoder.load_state_dict(encoder_state(obj["state_dict"]))
    mlp_state = {k[len("token_mlp."):]: v for k, v in obj["state_dict"].items() if k.startswith("token_mlp.")}
    own = model.token_mlp.state_dict()
    fits = bool(mlp_state) and mlp_state.keys() == own.keys() and all(
        tuple(mlp_state[k].shape) == tuple(own[k].shape) for k in own)
    if fits:
        model.token_mlp.load_state_dict(mlp_state)
    return {"file": str(file), "step": obj["step"], "token_mlp": fits,
            "token_hidden": int(obj["model_config"].get("token_hidden") or 0)}


def init_encoder(model: nn.Module, run_dir: str | os.PathLike, where: str = "--init-from") -> dict:
    """Load the pretrained encoder of ``run_dir`` into ``model.encoder`` (a TrackModel's first
    encoder), exactly. Returns {"file", "step"}. ConfigError (naming ``where``) when shapes, fields
    that change the function or the input features differ; DataError when the run is unreadable."""
    file, obj = check_compatible(run_dir, model.encoder.config, model.feature_cfg, where)
    model.encoder.load_state_dict(encoder_state(obj["state_dict"]))
    return {"file": str(file), "step": obj["step"]}


def load_tokenizer(path: str | os.PathLike) -> tuple[Tokenizer, dict]:
    """(tokenizer in eval mode, its measures) from a ``tokenizer.pt`` (a file or a pretraining run
    folder): a :class:`~trackstudy.models.vqvae.HitTokenizer` or a
    :class:`~trackstudy.models.vqvae.DoubletTokenizer`, as the file says."""
    path = resolve_path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise DataError(f"{path}: tokenizer not found (written by trackstudy pretrain when mask.target is codes "
                        "or both)")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or "config" not in obj or "state_dict" not in obj:
        raise DataError(f"{path}: not a tokenizer file (expected a dict with config and state_dict)")
    tok = tokenizer_from_config(obj["config"])
    tok.load_state_dict(obj["state_dict"])
    return tok.eval(), dict(obj.get("measures") or {})
