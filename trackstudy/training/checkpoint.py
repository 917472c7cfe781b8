"""Saving and loading trained runs (the shared run-directory contract).

A run directory ``runs/NAME/`` holds::

    config.yaml            the resolved training config
    checkpoints/last.pt    full training state (see :func:`save_checkpoint`)
    model.pt               the final model: {"model_config", "state_dict", "run_config", "step"}
    log_steps.csv, log_val.csv, summary.json

Every file is written atomically (temporary file + rename) and every ``.pt`` file holds only
tensors and plain containers, so it loads with ``torch.load(..., weights_only=True)``.

Public API::

    save_model(run_dir, model, run_config, step=0) -> Path        # writes run_dir/model.pt
    load_run(run_dir, device="auto", backend=None) -> (model in eval mode on device, run_config)
    save_checkpoint(path, state) -> Path;  load_checkpoint(path) -> dict
    unwrap_model(model) -> TrackModel      # strips DistributedDataParallel / torch.compile wrappers
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn as nn
import yaml

from trackstudy.config import resolve_path
from trackstudy.data.io import atomic_write_bytes
from trackstudy.device import resolve_device
from trackstudy.errors import ConfigError, DataError
from trackstudy.models.gnn import EdgeModel
from trackstudy.models.heads import TrackModel, model_from_config
from trackstudy.postprocessing.gnn_tracks import GNNTrackParams
from trackstudy.postprocessing.quality import QUALITY_FILE, TrackQuality
from trackstudy.postprocessing.track_formation import model_params, params_from_record, params_record
from trackstudy.training.run_config import diff_keys

MODEL_FILE = "model.pt"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
CONFIG_FILE = "config.yaml"

__all__ = ["CHECKPOINT_DIR", "check_run_folder", "CONFIG_FILE", "LAST_CHECKPOINT", "MODEL_FILE", "checkpoint_path", "load_checkpoint",
           "load_run", "model_config", "model_state_dict", "save_checkpoint", "save_model", "torch_save_atomic", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel (``.module``) and torch.compile (``._orig_mod``)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def model_state_dict(model: nn.Module) -> dict:
    """State dict of the unwrapped model, tensors detached and moved to the CPU (device-neutral files)."""
    return {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}


def torch_save_atomic(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` through a temporary file + rename (overwrites)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue(), force=True)


def check_run_folder(out: Path, cfg: dict, *, resume: bool, old_config: Callable[[Path], dict],
                     run_files: Sequence[str], kind: str, resumable: Sequence[str],
                     notice: Callable[[str], None]) -> tuple[list[str], Path | None]:
    """Check the run folder ``out`` before a run with config ``cfg`` starts in it (training,
    GNN training and pretraining alike); returns ``(changed config keys, checkpoint to resume or
    None)``.

    A new or empty folder starts a run. A folder with a run in it (its ``config.yaml``, read back by
    ``old_config``; a checkpoint or one of ``run_files``) is only continued with ``resume``, and
    only if no key outside ``resumable`` changed; ``kind`` ("training", "pretraining") names the
    run in errors. Never modifies the folder; ConfigError names it and what to do."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder (--out)")
    contents = [p for p in out.iterdir() if not p.name.startswith(".")] if out.is_dir() else []
    if not contents:
        if resume:
            notice(f"--resume: {out} holds no run yet; starting from step 0")
        return [], None
    if not (out / CONFIG_FILE).is_file():
        raise ConfigError(f"{out}: folder is not empty and holds no {CONFIG_FILE}; it is not a {kind} run "
                          "(choose an empty or new --out folder)")
    changed = diff_keys(old_config(out / CONFIG_FILE), cfg)
    has_run = checkpoint_path(out).is_file() or any((out / f).is_file() for f in run_files)
    if not resume:
        if changed:
            raise ConfigError(f"{out}: holds a run with a different config (differs in {', '.join(changed)}); "
                              "choose another --out folder, or delete this one")
        if has_run:
            raise ConfigError(f"{out}: holds a {kind} run with this config; continue it with --resume "
                              "(resume=True) or choose another --out folder")
        return changed, None
    fixed = [k for k in changed if k not in resumable]
    if fixed:
        raise ConfigError(f"{out}: cannot resume with a different config: {', '.join(fixed)} changed "
                          f"(only {', '.join(resumable)} may change when resuming)")
    if changed:
        notice(f"resuming with changed {', '.join(changed)}")
    if not checkpoint_path(out).is_file():
        notice(f"--resume: no checkpoint in {out / CHECKPOINT_DIR}; starting from step 0")
        return changed, None
    return changed, checkpoint_path(out)


def checkpoint_path(run_dir: str | os.PathLike) -> Path:
    """``run_dir/checkpoints/last.pt``."""
    return Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write a training-state dict (model/optimiser/scheduler state dicts, step, epoch, RNG
    states, configs; tensors and plain containers only) atomically."""
    return torch_save_atomic(state, path)


def _torch_load(path: Path, what: str) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    expected = ("a file written by trackstudy train: a torch file holding a dict with model_config and "
                + ("state_dict" if what == "model file" else "model, step"))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__})") from None
    except Exception:  # noqa: BLE001 - a truncated or foreign file; torch's own text (and advice) is not for users
        raise DataError(f"{path}: cannot load {what}: not a trackstudy {what} (expected {expected})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a trackstudy {what} (it holds a {type(obj).__name__}; expected {expected})")
    return obj


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A training-state dict written by :func:`save_checkpoint` (tensors on the CPU)."""
    state = _torch_load(Path(path), "training checkpoint")
    for key in ("model", "model_config", "step"):
        if key not in state:
            raise DataError(f"{path}: training checkpoint has no {key!r} entry")
    return state


def model_config(model: nn.Module) -> dict:
    """What a run stores to rebuild ``model``: the network's config and, under ``track_params``,
    the track-formation parameters it was tuned with (its family's defaults when untuned)."""
    inner = unwrap_model(model)
    if isinstance(inner, EdgeModel):
        return {**inner.config_dict(), "track_params": (inner.track_params or GNNTrackParams()).record()}
    return {**inner.config_dict(), "track_params": params_record(model_params(inner))}


def save_model(run_dir: str | os.PathLike, model: nn.Module, run_config: dict, step: int = 0) -> Path:
    """Write ``run_dir/model.pt`` = {"model_config", "state_dict", "run_config", "step"} atomically
    (the model may be wrapped in DDP / torch.compile). Returns the path."""
    inner = unwrap_model(model)
    if not isinstance(inner, (TrackModel, EdgeModel)):
        raise ConfigError(f"save_model: expected a TrackModel or an EdgeModel (gnn, doublet), got {type(inner).__name__}")
    obj = {"model_config": model_config(inner), "state_dict": model_state_dict(inner),
           "run_config": dict(run_config or {}), "step": int(step)}
    return torch_save_atomic(obj, Path(run_dir) / MODEL_FILE)


def _read_run_config(run_dir: Path) -> dict:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return {}
    with open(path) as f:
        cfg = yaml.safe_load(f)
    return cfg if isinstance(cfg, dict) else {}


def _first_mismatch(exc: Exception) -> str:
    """The first problem of a load_state_dict error, in one line (torch lists them all over many lines)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith(("size mismatch", "Missing key", "Unexpected key")):
            return " ".join(ln.split())[:300]
    return " ".join((lines[-1] if lines else type(exc).__name__).split())[:300]


def load_run(run_dir: str | os.PathLike, device: str | torch.device = "auto", *,
             backend: str | None = None) -> tuple[TrackModel, dict]:
    """The trained model of ``run_dir`` (eval mode, on ``device``) and its run config.

    Reads ``model.pt``; a run without one (interrupted before the end) falls back to
    ``checkpoints/last.pt``. ``backend`` replaces the encoder's default attention backend (e.g.
    "flex" on CUDA for a model trained with "packed" on the CPU: the backends are exact, so the
    weights are the same function). Raises DataError naming the file when nothing loadable is there.
    """
    run_dir = resolve_path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run directory not found")
    model_file = run_dir / MODEL_FILE
    if model_file.is_file():
        obj = _torch_load(model_file, "model file")
        for key in ("model_config", "state_dict"):
            if key not in obj:
                raise DataError(f"{model_file}: model file has no {key!r} entry")
        model_cfg, state_dict = obj["model_config"], obj["state_dict"]
        run_config = obj.get("run_config") or _read_run_config(run_dir)
    elif checkpoint_path(run_dir).is_file():
        obj = load_checkpoint(checkpoint_path(run_dir))
        model_cfg, state_dict = obj["model_config"], obj["model"]
        run_config = obj.get("config") or _read_run_config(run_dir)
    else:
        raise DataError(f"{run_dir}: neither {MODEL_FILE} nor {CHECKPOINT_DIR}/{LAST_CHECKPOINT} found "
                        "(train first: trackstudy train --config FILE.yaml --out RUN_DIR)")
    source = model_file if model_file.is_file() else checkpoint_path(run_dir)
    try:
        model_cfg = dict(model_cfg)
        if backend is not None:
            model_cfg["encoder"] = {**model_cfg["encoder"], "attention": backend}
        model = model_from_config(model_cfg)
        if model_cfg.get("track_params") is not None:
            record = model_cfg["track_params"]
            model.track_params = (GNNTrackParams.from_record(record) if record.get("kind") == "gnn"
                                  else params_from_record(record))
    except ConfigError as exc:
        raise DataError(f"{source}: its model_config is not valid ({exc})") from None
    except (TypeError, ValueError, KeyError, AttributeError):
        raise DataError(f"{source}: not a trackstudy model file (its model_config is not a trackstudy model "
                        f"configuration)") from None
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise DataError(f"{source}: its weights do not match its model config ({_first_mismatch(exc)})") from None
    quality_file = run_dir / QUALITY_FILE
    if quality_file.is_file():  # the run's track-quality scorer (plain arrays: nothing is executed)
        model.track_quality = TrackQuality.load(quality_file)
    dev = resolve_device(device)
    return model.to(dev).eval(), dict(run_config)
