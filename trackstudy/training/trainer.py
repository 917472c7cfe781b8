"""The training loop: ``train(config, out_dir)`` -> summary dict, writing a run directory.

One run, in order (:meth:`Trainer.fit`):

1. resolve and validate the config, check ``out_dir`` (a different run there is refused unless
   ``resume``), write ``config.yaml``;
2. data: simulate or read the train / val events, turn them into cached per-hit tensors, fit
   the road binning (EncCla, JM) on the training hits;
3. model: family / preset / backend from the config (``flex`` trains with the exact ``packed``
   backend on CPU, where FlexAttention has no backward), AdamW (no weight decay on biases and
   norms), warm-up + cosine (or plateau) learning rate, gradient clipping, bf16 autocast on CUDA,
   optional torch.compile, DistributedDataParallel under torchrun; ``model.input: codes``: the
   frozen hit tokenizer of ``model.tokenizer`` turns each hit into its code, the model's only input;
4. optimisation steps on batches of several events (padded, padding masked), validation loss
   every ``eval_every`` steps with early stopping after ``patience`` evaluations without
   improvement, a checkpoint every ``checkpoint_every`` steps and at the end, ``max_minutes``
   as a wall-clock cap; Ctrl-C writes a checkpoint and says how to resume;
5. end: restore the best validation weights, tune the track formation on validation events,
   evaluate them, write ``model.pt`` and ``summary.json``.

Resuming (``resume=True``) reloads model, optimiser, scheduler, step, RNG states and the data
position from ``checkpoints/last.pt``; the batch order is a function of (seed, epoch) only, so the
result equals that of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trackstudy.config import json_safe, resolve_path
from trackstudy.data.io import atomic_write_bytes
from trackstudy.device import autocast_context, describe_device, quiet_torch_compile, synchronize
from trackstudy.errors import ConfigError, DataError
from trackstudy.metrics import evaluate_event, evaluate_events
from trackstudy.models.attention import get_backend
from trackstudy.models.encoder import EncoderConfig
from trackstudy.models.features import FeatureConfig
from trackstudy.models.heads import build_model, make_context
from trackstudy.models.roads import RoadBinning
from trackstudy.models.vqvae import HitTokenizer
from trackstudy.postprocessing.track_formation import (
    form_tracks,
    model_params,
    params_record,
    tune_track_formation,
)
from trackstudy.training import data as tdata
from trackstudy.training import ddp
from trackstudy.training.checkpoint import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    MODEL_FILE,
    check_run_folder,
    checkpoint_path,
    load_checkpoint,
    load_run,
    model_config,
    model_state_dict,
    save_checkpoint,
    save_model,
    torch_save_atomic,
)
from trackstudy.training.pretrained import init_encoder, load_tokenizer
from trackstudy.training.run_config import (
    RESUMABLE_CHANGES,
    base_track_params,
    dump_yaml,
    load_yaml,
    resolve_config,
)

SUMMARY_FILE = "summary.json"
STEP_LOG = "log_steps.csv"
VAL_LOG = "log_val.csv"
EPOCH_LOG = "log_epochs.csv"
BEST_CHECKPOINT = "best.pt"
#: pT threshold (GeV) of the reconstructable particles in the validation metrics (the DM efficiency definition).
PT_MIN = 0.9

__all__ = ["Trainer", "training_backend"]


def training_backend(requested: str, device: torch.device) -> tuple[str, str | None]:
    """The attention backend used for training on ``device`` and a notice when it differs:
    FlexAttention has no backward outside CUDA, so ``flex`` trains with ``packed`` there (exact: the
    same block-diagonal attention)."""
    if not get_backend(requested, "model.backend").cpu_backward and device.type != "cuda":
        return "packed", (f"model.backend {requested!r}: no backward pass on {device.type}; "
                          "training with the exact 'packed' backend instead (same cluster-masked attention)")
    return requested, None


def _lr_lambda(cfg_train: dict, clock: dict | None = None):
    """Learning-rate factor of step s: linear warm-up, then cosine down to min_lr (or constant).

    With ``train.schedule_by_time`` and a ``max_minutes`` cap, the cosine runs over whichever comes
    first, the steps or the time budget (``clock["seconds"]`` is the training time so far), so a
    run cut by the clock still ends at min_lr.
    """
    warmup, steps = int(cfg_train["warmup_steps"]), int(cfg_train["steps"])
    floor = cfg_train["min_lr"] / cfg_train["lr"]
    schedule = cfg_train["schedule"]
    budget = cfg_train["max_minutes"] * 60.0 if cfg_train["schedule_by_time"] else 0.0

    def factor(s: int) -> float:
        if warmup and s < warmup:
            return (s + 1) / warmup
        if schedule != "cosine":
            return 1.0
        progress = (s - warmup) / max(1, steps - warmup)
        if budget > 0 and clock is not None:
            progress = max(progress, clock["seconds"] / budget)
        progress = min(1.0, progress)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _rng_state() -> dict:
    keys, pos, has_gauss, cached = np.random.get_state()[1:]
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _CsvLog:
    """Append-only CSV log; on resume, rows after the checkpoint's step are dropped first."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled, self.fields = path, enabled, None
        if enabled and path.is_file():
            with open(path, newline="") as f:
                header = next(csv.reader(f), None)
            self.fields = header or None

    def truncate_after(self, step: int) -> None:
        """Keep rows with step <= ``step`` (rows written after the last checkpoint are replayed)."""
        if not (self.enabled and self.path.is_file()):
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if int(float(r["step"])) <= step]
        if len(keep) != len(rows):
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=self.fields)
            w.writeheader()
            w.writerows(keep)
            atomic_write_bytes(self.path, buf.getvalue().encode(), force=True)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        new = self.fields is None or not self.path.is_file()
        if new:
            self.fields = list(row)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: _fmt(row.get(k, "")) for k in self.fields})


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.7g}"
    return v


class _StopRequest:
    """Turns SIGINT into a flag checked between steps, so a checkpoint is always consistent;
    a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: finishing the current step, then writing a checkpoint (Ctrl-C again to abort now)",
              file=sys.stderr)

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


class Trainer:
    """One training run into ``out_dir`` (see the module docstring); :meth:`fit` runs it.

    on_step(step, row) is called after every optimisation step with the logged row (notebooks
    use it for live curves; raising KeyboardInterrupt there stops the run like Ctrl-C).
    After :meth:`fit`, ``model`` is the trained TrackModel (unwrapped) and ``summary`` its summary.
    """

    def __init__(self, config: dict | str | os.PathLike, out_dir: str | os.PathLike, *, resume: bool = False,
                 progress: bool = True, on_step: Callable[[int, dict], None] | None = None):
        self.cfg = resolve_config(config)
        self.out = resolve_path(out_dir)
        self.resume = bool(resume)
        self.progress = progress
        self.on_step = on_step
        self.notices: list[str] = []
        self.changed: list[str] = []  # config keys that differ from the run in out_dir (resume)
        self._val_event_cache: dict = {}  # validation events read for scoring, by index
        self.model = None
        self.summary: dict = {}

    # ----------------------------------------------------------------------------- helpers
    def _notice(self, msg: str) -> None:
        self.notices.append(msg)
        if self.dist.is_main:
            print(f"trackstudy train: {msg}", file=sys.stderr)

    def _check_out_dir(self) -> dict | None:
        """Validate ``out_dir`` against the config; returns the checkpoint to resume from, if any."""
        self.changed, ckpt = check_run_folder(self.out, self.cfg, resume=self.resume,
                                              old_config=lambda f: resolve_config(load_yaml(f)), run_files=(MODEL_FILE,),
                                              kind="training", resumable=RESUMABLE_CHANGES, notice=self._notice)
        return load_checkpoint(ckpt) if ckpt is not None else None

    def _load_data(self, train: bool = True) -> None:
        cfg, info = self.cfg, self.dist
        self.feature_cfg = self._input_features()
        self.locality = cfg["locality"] if cfg["locality"]["method"] != "none" else None
        root = tdata.data_root(cfg["data"]["root"])
        d = cfg["data"]

        def load(spec, build):
            return tdata.load_dataset(spec, feature_cfg=self.feature_cfg, locality=self.locality, root=root,
                                      use_cache=d["cache"], progress=self.progress and info.is_main, build=build)

        # rank 0 simulates and caches first; the others then read the cache
        self.online = None
        if not train:  # re-tuning a finished run: the validation events are all it needs
            self.val, self.train_set = load(d["val"], True), None
            return
        if info.is_main:
            self.val = load(d["val"], True)
            if not d["online"]:
                self.train_set = load(d["train"], True)
        ddp.barrier(info)
        if not info.is_main:
            self.val = load(d["val"], not d["cache"])
            if not d["online"]:
                self.train_set = load(d["train"], not d["cache"])
        if d["online"]:
            self.online = tdata.OnlineEvents(d["train"], feature_cfg=self.feature_cfg, locality=self.locality)
            self._online_epoch, self._online_samples = None, None
            self.train_set = None
        if len(self.val) == 0:
            raise DataError("data.val: no validation events")

    def _input_features(self) -> FeatureConfig:
        """The hits' features: ``model.features``, or (``model.input: codes``) those of the tokenizer of
        ``model.tokenizer``, which is read here (``self.tokenizer``) and goes into the model."""
        m = self.cfg["model"]
        self.tokenizer = None
        if m["input"] != "codes":
            return FeatureConfig(**m["features"])
        if self.model is not None and self.model.tokenizer is not None:  # re-tuning a finished run
            return self.model.feature_cfg
        try:
            tok, _ = load_tokenizer(m["tokenizer"])
        except DataError as exc:
            raise DataError(f"model.tokenizer: {exc}") from None
        if not isinstance(tok, HitTokenizer):
            raise ConfigError(f"model.tokenizer: {m['tokenizer']} holds a tokenizer of {tok.tokens}; a hit-token model "
                              "reads the codes of a hit tokenizer (pretrained with data.tokens: hits)")
        self.tokenizer = tok
        return tok.feature_cfg

    def _make_units(self) -> None:
        """The training sequences: the training events, or (``data.sequences: cluster``) every
        locality cluster of them with at least ``data.min_cluster_hits`` hits."""
        if self.train_set is None:
            self.train_units = None
            return
        d = self.cfg["data"]
        if d["sequences"] == "cluster":
            self.train_units = tdata.cluster_samples(self.train_set.samples, d["min_cluster_hits"])
            if self.dist.is_main and self.progress:
                sizes = np.array([len(u["x"]) for u in self.train_units])
                print(f"trackstudy train: {len(sizes):,} locality clusters of {len(self.train_set)} events as "
                      f"training sequences ({sizes.min()}-{sizes.max()} hits, median {int(np.median(sizes))})",
                      file=sys.stderr)
        else:
            self.train_units = self.train_set.samples

    def _train_lengths(self):
        """Hits of each training sequence (for length bucketing); None for online data, whose events
        are only simulated when their batch comes."""
        tr = self.cfg["train"]
        if self.train_units is None or not (tr["length_buckets"] or tr["batch_hits"]):
            return None
        return np.array([len(s["x"]) for s in self.train_units])  # once per epoch: negligible

    def _train_sample(self, epoch: int, index: int) -> dict:
        """Training sample ``index``; online data are simulated when first needed in an epoch (each
        DDP rank simulates only the events of its own batches)."""
        if self.online is None:
            sample = self.train_units[index]
        else:
            if self._online_epoch != epoch:
                self._online_samples, self._online_epoch = {}, epoch
            if index not in self._online_samples:
                sample = self.online.sample(epoch, index)
                self._prepare_samples([sample])
                self._online_samples[index] = sample
            sample = self._online_samples[index]
        if self.cfg["data"]["augment"]:
            # a function of (seed, epoch, index): a resumed run sees the same transformed events
            rng = np.random.default_rng([int(self.cfg["train"]["seed"]), 7, int(epoch), int(index)])
            sample = tdata.augment_sample(sample, rng, feature_cfg=self.feature_cfg, locality=self.locality,
                                          binning=self.binning,
                                          noise=self.cfg["model"]["head"].get("noise", "class"),
                                          recluster=self.cfg["data"]["sequences"] != "cluster")
        return sample

    def _prepare_samples(self, samples: list[dict]) -> None:
        if self.binning is not None:
            tdata.add_class_targets(samples, self.binning, noise=self.cfg["model"]["head"].get("noise", "class"))

    def _build_model(self, ckpt: dict | None) -> None:
        m, tr = self.cfg["model"], self.cfg["train"]

        self.binning = None
        if m["family"] in ("enc_cla", "jm"):
            if ckpt is not None and ckpt["model_config"].get("binning") is not None:
                self.binning = RoadBinning.from_state(ckpt["model_config"]["binning"])
            else:
                fit_on = self.train_set.samples if self.online is None else self.online.epoch_samples(0)
                b = m["binning"]
                self.binning = tdata.fit_binning(fit_on, b["n_phi"], b["n_theta"], b["n_p"])
        if self.train_set is not None:
            self._prepare_samples(self.train_set.samples)
        self._prepare_samples(self.val.samples)
        self.attention_backend, notice = training_backend(m["backend"], self.device)
        if notice:
            self._notice(notice)
        torch.manual_seed(tr["seed"])
        enc = EncoderConfig.preset(m["preset"], n_features=self.feature_cfg.n_features, attention=self.attention_backend,
                                   **m["encoder"])
        model = build_model(m["family"], enc, feature_cfg=self.feature_cfg, binning=self.binning,
                            tokenizer=self.tokenizer, **m["head"])
        if m["init_from"] and ckpt is None:  # a resumed run's checkpoint holds the weights already
            info = init_encoder(model, m["init_from"], where="model.init_from")
            self._notice(f"encoder initialised from {info['file']} (pretraining step {info['step']})")
        model.track_params = base_track_params(m["family"], self.cfg["tune"]["base"], model.head_cfg)
        self.model = model.to(self.device)
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": tr["weight_decay"]},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=tr["lr"],
                                           betas=(0.9, 0.95), fused=False)
        self.clock = {"seconds": 0.0}  # training seconds so far, read by a time-based schedule
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(tr, self.clock))
        self.plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=tr["plateau_factor"],
                                                                   patience=tr["plateau_patience"])
                        if tr["schedule"] == "plateau" else None)
        self.net = model
        if tr["compile"]:
            with quiet_torch_compile():
                self.net = torch.compile(model, dynamic=True)
        if self.dist.enabled:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # ----------------------------------------------------------------------------- state
    def _state(self) -> dict:
        return {"model": model_state_dict(self.model), "optimizer": self.optimizer.state_dict(),
                "scheduler": {"lambda": self.scheduler.state_dict(),
                              "plateau": self.plateau.state_dict() if self.plateau is not None else None},
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "best_val_loss": self.best_val_loss, "best_step": self.best_step, "bad_evals": self.bad_evals,
                "train_seconds": self.train_seconds, "epoch_loss": list(self.epoch_loss),
                "stopped": self.stopped, "rng": _rng_state(), "config": self.cfg,
                "model_config": model_config(self.model), "world_size": self.dist.world_size,
                "backend": self.attention_backend}

    def _restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"]["lambda"])
        # a changed train.steps (allowed on resume) must reach the schedule
        self.scheduler.lr_lambdas = [_lr_lambda(self.cfg["train"], self.clock) for _ in self.optimizer.param_groups]
        if self.plateau is not None and ckpt["scheduler"].get("plateau") is not None:
            self.plateau.load_state_dict(ckpt["scheduler"]["plateau"])
        for key in ("step", "epoch", "batch_in_epoch", "best_val_loss", "best_step", "bad_evals", "train_seconds",
                    "stopped"):
            setattr(self, key, ckpt[key])
        self.epoch_loss = list(ckpt.get("epoch_loss", [0.0, 0]))
        self.clock["seconds"] = self.train_seconds
        if self.stopped in ("steps",) and self.step < self.cfg["train"]["steps"]:
            self.stopped = ""  # more steps were asked for
        if self.stopped == "time_limit":
            self.stopped = ""  # the budget counts all sessions; _loop stops at once if it is spent
        _set_rng_state(ckpt["rng"])
        if ckpt.get("world_size", 1) != self.dist.world_size:
            self._notice(f"checkpoint written with {ckpt.get('world_size', 1)} process(es), resuming with "
                         f"{self.dist.world_size}: the batch order changes from here on")

    def _save_checkpoint(self) -> None:
        if self.dist.is_main:
            save_checkpoint(checkpoint_path(self.out), self._state())

    # ----------------------------------------------------------------------------- steps
    def _forward_loss(self, batch: dict):
        with autocast_context(self.device), self._compile_warnings():
            out = self.net(batch["x"], make_context(batch))
            return self.model.loss(out, batch)

    @contextlib.contextmanager
    def _compile_warnings(self):
        """With torch.compile, silence a torch-internal warning raised while dynamo traces the model
        (tests turn warnings into errors)."""
        if not self.cfg["train"]["compile"]:
            yield
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"The \.grad attribute of a Tensor that is not a leaf",
                                    category=UserWarning)
            yield

    def _train_step(self, idx) -> dict:
        t0 = time.perf_counter()
        batch = tdata.make_batch([self._train_sample(self.epoch, int(i)) for i in idx], self.device)
        self.net.train()
        loss, parts = self._forward_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg["train"]["clip_grad"]
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip if clip > 0 else float("inf"))
        self.optimizer.step()
        self.clock["seconds"] = self.train_seconds + (time.perf_counter() - t0)
        if self.plateau is None or self.step < self.cfg["train"]["warmup_steps"]:
            self.scheduler.step()
        row = {k: float(v) for k, v in parts.items()}
        row["loss"] = float(loss.detach())
        row["grad_norm"] = float(norm)
        row["n_hits"] = int(batch["pad_mask"].sum())
        return row

    @torch.no_grad()
    def validation_loss(self) -> dict:
        """Mean loss (and loss parts) over the validation events, all ranks together."""
        self.net.eval()
        bs = self.cfg["train"]["eval_batch_size"]
        mine = list(range(self.dist.rank, len(self.val), self.dist.world_size))
        sums: dict[str, float] = {}
        n = 0
        for i in range(0, len(mine), bs):
            idx = mine[i:i + bs]
            batch = tdata.make_batch([self.val.samples[j] for j in idx], self.device)
            with autocast_context(self.device):
                out = self.model(batch["x"], make_context(batch))
                loss, parts = self.model.loss(out, batch)
            parts = {**{k: float(v) for k, v in parts.items()}, "loss": float(loss)}
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
            n += len(idx)
        keys = sorted(sums) if sums else ["loss"]
        keys_all = keys
        totals = ddp.all_reduce([sums.get(k, 0.0) for k in keys_all] + [n], self.dist, self.device)
        count = max(totals[-1], 1)
        return {f"val_{k}": v / count for k, v in zip(keys_all, totals[:-1])}

    def _evaluate(self) -> dict:
        res = self.validation_loss()
        val = res["val_loss"]
        improved = val < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_step, self.bad_evals = val, self.step, 0
            if self.dist.is_main and self.cfg["train"]["restore_best"]:
                torch_save_atomic({"model": model_state_dict(self.model), "step": self.step, "val_loss": val},
                                  self.out / CHECKPOINT_DIR / BEST_CHECKPOINT)
        else:
            self.bad_evals += 1
        if self.plateau is not None and self.step >= self.cfg["train"]["warmup_steps"]:
            self.plateau.step(val)
        row = {"step": self.step, "epoch": self.epoch, **res, "best_val_loss": self.best_val_loss,
               "lr": self.optimizer.param_groups[0]["lr"], "train_seconds": self.train_seconds}
        n_tracks = self.cfg["train"]["eval_tracks"]
        if n_tracks and self.dist.is_main:
            # the curve users watch: tracks formed with the current track parameters, scored
            t0 = time.perf_counter()
            m = self._validation_metrics(n_tracks)
            row.update({f"val_{k}": m.get(k) for k in ("trackml_score", "dm_efficiency", "fake_rate",
                                                       "duplicate_rate", "barrel_dm_efficiency",
                                                       "endcap_dm_efficiency")})
            row["val_tracks_seconds"] = time.perf_counter() - t0
        self.val_log.write(row)
        patience = self.cfg["train"]["patience"]
        if patience and self.bad_evals >= patience:
            self.stopped = "early_stopping"
        return row

    # ----------------------------------------------------------------------------- fit
    def fit(self) -> dict:
        """Run (or resume) the training and the end-of-training tuning; returns the summary
        (rank 0; other ranks return a short dict)."""
        self.dist, self.device = ddp.init_distributed(self.cfg["train"]["device"])
        threads = torch.get_num_threads()
        if self.cfg["train"]["num_threads"]:
            torch.set_num_threads(self.cfg["train"]["num_threads"])
        if self.cfg["train"]["flush_denormal"]:
            torch.set_flush_denormal(True)
        try:
            return self._fit()
        finally:
            torch.set_num_threads(threads)
            if self.cfg["train"]["flush_denormal"]:
                torch.set_flush_denormal(False)
            ddp.cleanup(self.dist)

    def _fit(self) -> dict:
        cfg, info = self.cfg, self.dist
        tr = cfg["train"]
        ckpt = self._check_out_dir()
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.out / CONFIG_FILE, dump_yaml(cfg).encode(), force=True)
        if ckpt is not None and (self.out / MODEL_FILE).is_file() and (self.out / SUMMARY_FILE).is_file():
            done = (ckpt["stopped"] == "early_stopping"
                    or (ckpt["stopped"] == "steps" and ckpt["step"] >= tr["steps"])
                    or (ckpt["stopped"] == "time_limit" and ckpt["train_seconds"] >= tr["max_minutes"] * 60.0))
            if done:
                self.model, _ = load_run(self.out, self.device)
                self.summary = json.loads((self.out / SUMMARY_FILE).read_text())
                retune = [k for k in self.changed if k.startswith("tune.")]
                if retune and info.is_main:
                    self._notice(f"{self.out}: training already complete at step {ckpt['step']}; re-tuning the "
                                 f"track formation ({', '.join(retune)} changed)")
                    return self._retune()
                self._notice(f"{self.out}: training already complete at step {ckpt['step']} ({ckpt['stopped']}); "
                             "nothing to resume")
                return self.summary
        _seed_everything(tr["seed"])
        self._load_data()
        self._build_model(ckpt)
        self._make_units()
        self.step = self.epoch = self.batch_in_epoch = self.bad_evals = 0
        self.best_val_loss, self.best_step, self.train_seconds = float("inf"), -1, 0.0
        self.stopped, self.epoch_loss = "", [0.0, 0]
        self.step_log = _CsvLog(self.out / STEP_LOG, info.is_main)
        self.val_log = _CsvLog(self.out / VAL_LOG, info.is_main)
        self.epoch_log = _CsvLog(self.out / EPOCH_LOG, info.is_main)
        if ckpt is not None:
            self._restore(ckpt)
            for log in (self.step_log, self.val_log, self.epoch_log):
                log.truncate_after(self.step)
            if info.is_main:
                print(f"trackstudy train: resuming {self.out} from step {self.step}", file=sys.stderr)
        else:  # a fresh start: logs and best weights of an earlier attempt at this config go
            stale = [log.path for log in (self.step_log, self.val_log, self.epoch_log)]
            for path in [*stale, self.out / CHECKPOINT_DIR / BEST_CHECKPOINT]:
                if info.is_main and path.exists():
                    path.unlink()
            for log in (self.step_log, self.val_log, self.epoch_log):
                log.fields = None
        if info.is_main and self.progress:
            print(f"trackstudy train: {cfg['model']['family']} ({cfg['model']['preset']}, "
                  f"{self.model.encoder.num_parameters():,} encoder parameters) on {describe_device(self.device)}, "
                  f"attention {self.attention_backend}, {info.world_size} process(es)", file=sys.stderr)
        self._loop()
        return self._finish()

    def _loop(self) -> None:
        from tqdm.auto import tqdm

        tr, info = self.cfg["train"], self.dist
        steps = tr["steps"]
        max_s = tr["max_minutes"] * 60.0
        n_train = len(self.train_units) if self.train_units is not None else len(self.online)
        bar = tqdm(total=steps, initial=self.step, desc="train", unit="step",
                   disable=not (self.progress and info.is_main), dynamic_ncols=True)
        if max_s > 0 and self.train_seconds >= max_s and not self.stopped:
            self.stopped = "time_limit"  # a resumed run whose time budget is already spent
        interrupted, consistent = False, True
        self._pending_snapshots: list[float] = []
        with _StopRequest() as stop:
            try:
                while self.step < steps and not self.stopped:
                    batches = tdata.epoch_batches(n_train, tr["batch_size"], tr["seed"], self.epoch, info.rank,
                                                  info.world_size, lengths=self._train_lengths(),
                                                  length_buckets=tr["length_buckets"], batch_hits=tr["batch_hits"])
                    while self.batch_in_epoch < len(batches) and self.step < steps and not self.stopped:
                        t0 = time.perf_counter()
                        consistent = False
                        row = self._train_step(batches[self.batch_in_epoch])
                        synchronize(self.device)
                        dt = time.perf_counter() - t0
                        self.step += 1
                        self.batch_in_epoch += 1
                        consistent = True
                        if info.enabled:  # log the mean over ranks
                            row["loss"] = ddp.all_reduce([row["loss"]], info, self.device)[0] / info.world_size
                        for m in tr["snapshot_minutes"]:  # checkpoints at fixed training times
                            if self.train_seconds < m * 60.0 <= self.train_seconds + dt and info.is_main:
                                self._pending_snapshots.append(m)
                        self.train_seconds += dt
                        self.epoch_loss[0] += row["loss"]
                        self.epoch_loss[1] += 1
                        row = {"step": self.step, "epoch": self.epoch,
                               "lr": self.optimizer.param_groups[0]["lr"], **row, "seconds": dt}
                        self.step_log.write(row)
                        if self.batch_in_epoch == len(batches):
                            self.epoch_log.write({"epoch": self.epoch, "step": self.step,
                                                  "loss": self.epoch_loss[0] / max(1, self.epoch_loss[1]),
                                                  "train_seconds": self.train_seconds})
                            self.epoch_loss = [0.0, 0]
                        if self.step % tr["eval_every"] == 0 or self.step == steps:
                            val = self._evaluate()
                            bar.set_postfix(loss=f"{row['loss']:.4f}", val=f"{val['val_loss']:.4f}")
                        elif self.step % 10 == 0:
                            bar.set_postfix(loss=f"{row['loss']:.4f}")
                        bar.update(1)
                        flags = [float(stop.requested), float(max_s > 0 and self.train_seconds >= max_s)]
                        flags = ddp.all_reduce(flags, info, self.device, op="max")
                        if flags[1] and not self.stopped and self.step < steps:
                            self.stopped = "time_limit"
                            self._notice(f"train.max_minutes={tr['max_minutes']} reached at step {self.step}")
                        if self.stopped and self.best_step != self.step and self.step % tr["eval_every"]:
                            self._evaluate()  # the final weights get a validation loss too
                        if self.step % tr["checkpoint_every"] == 0:
                            self._save_checkpoint()
                        while self._pending_snapshots:
                            m = self._pending_snapshots.pop(0)
                            torch_save_atomic(self._state(), self.out / CHECKPOINT_DIR / f"at_{m:g}min.pt")
                        if self.on_step is not None:
                            self.on_step(self.step, row)
                        if flags[0]:
                            raise KeyboardInterrupt
                    if self.batch_in_epoch >= len(batches):
                        self.epoch += 1
                        self.batch_in_epoch = 0
            except KeyboardInterrupt:
                interrupted = True
            finally:
                bar.close()
        if interrupted:
            resume_cmd = f"trackstudy train --config {self.out / CONFIG_FILE} --out {self.out} --resume"
            if consistent:
                self._save_checkpoint()
                what = f"interrupted at step {self.step}; checkpoint written to {checkpoint_path(self.out)}"
            else:  # aborted inside a step: the parameters may be half-updated, keep the last checkpoint
                what = f"aborted during step {self.step + 1}; the last periodic checkpoint is kept"
            if info.is_main:
                print(f"trackstudy train: {what}. Resume with: {resume_cmd}", file=sys.stderr)
            raise KeyboardInterrupt
        if not self.stopped:
            self.stopped = "steps"
        self._save_checkpoint()

    # ----------------------------------------------------------------------------- end of training
    def _finish(self) -> dict:
        info = self.dist
        ddp_info = None
        if info.enabled:
            ddp_info = {"world_size": info.world_size, "backend": info.comm_backend,
                        "max_param_diff": ddp.max_param_difference(self.model, info)}
        best_file = self.out / CHECKPOINT_DIR / BEST_CHECKPOINT
        last_state = self._state() if info.is_main else None  # the last weights: what a resume continues
        restored = False
        if self.cfg["train"]["restore_best"] and info.is_main and best_file.is_file() and self.best_step >= 0 \
                and self.best_step != self.step:
            best = torch.load(best_file, map_location="cpu", weights_only=True)
            self.model.load_state_dict(best["model"])
            restored = True
        if not info.is_main:
            ddp.barrier(info)
            return {"rank": info.rank, "step": self.step, "ddp": ddp_info}
        tune_table = self._tune()
        metrics = self._validation_metrics()
        path = save_model(self.out, self.model, self.cfg, step=self.step)
        last_state["model_config"] = model_config(self.model)  # the tuned track params, for load_run
        save_checkpoint(checkpoint_path(self.out), last_state)
        m = self.cfg["model"]
        summary = {
            "family": m["family"], "preset": m["preset"], "backend": self.attention_backend, "backend_requested": m["backend"],
            "locality": self.cfg["locality"], "device": describe_device(self.device),
            "n_params": sum(p.numel() for p in self.model.parameters()),
            "steps": self.step, "epochs": self.epoch + (self.batch_in_epoch > 0), "stopped": self.stopped,
            "train_seconds": self.train_seconds, "best_val_loss": self.best_val_loss, "best_step": self.best_step,
            "restored_best": restored,
            "track_params": params_record(model_params(self.model)),
            "tune": {"metric": self.cfg["tune"]["metric"], "n_events": len(self._tune_indices()),
                     "top": tune_table.head(5).to_dict(orient="records") if tune_table is not None else []},
            "validation": metrics,
            "data": {"train": (self._describe_train() if self.train_set is not None
                               else {"online": True, "n_events_per_epoch": len(self.online)}),
                     "val": self.val.describe(), "pixel_only": self.cfg["data"]["train"]["pixel_only"]},
            "world_size": info.world_size, "ddp": ddp_info, "notices": self.notices,
            "torch": torch.__version__, "model_file": str(path),
        }
        summary = json_safe(summary)
        atomic_write_bytes(self.out / SUMMARY_FILE, json.dumps(summary, indent=1).encode(), force=True)
        self.summary = summary
        ddp.barrier(info)
        return summary

    def _describe_train(self) -> dict:
        out = self.train_set.describe()
        out["sequences"] = self.cfg["data"]["sequences"]
        if self.cfg["data"]["sequences"] == "cluster":
            sizes = [len(u["x"]) for u in self.train_units]
            out.update({"n_sequences": len(sizes), "mean_sequence_hits": float(np.mean(sizes)),
                        "max_sequence_hits": int(max(sizes))})
        return out

    def _retune(self) -> dict:
        """A finished run whose ``tune`` section changed: tune the track formation again on the
        validation events with the trained weights, then rewrite ``model.pt`` and the summary."""
        self._load_data(train=False)
        tune_table = self._tune()
        metrics = self._validation_metrics()
        path = save_model(self.out, self.model, self.cfg, step=self.summary.get("steps", 0))
        self.summary.update({
            "track_params": params_record(model_params(self.model)),
            "tune": {"metric": self.cfg["tune"]["metric"], "n_events": len(self._tune_indices()),
                     "top": tune_table.head(5).to_dict(orient="records") if tune_table is not None else []},
            "validation": metrics, "model_file": str(path),
            "notices": list(self.summary.get("notices", [])) + self.notices})
        self.summary = json_safe(self.summary)
        atomic_write_bytes(self.out / SUMMARY_FILE, json.dumps(self.summary, indent=1).encode(), force=True)
        return self.summary

    def _val_events(self, idx) -> list:
        """The validation events (hits, truth, particles) of ``idx``, read from disk once: the
        validation curve scores them at every evaluation."""
        cache = self._val_event_cache
        missing = [i for i in idx if i not in cache]
        cache.update(zip(missing, self.val.read_events(missing)))
        return [cache[i] for i in idx]

    def _tune_indices(self) -> list[int]:
        return list(range(min(self.cfg["tune"]["n_events"], len(self.val))))

    @torch.no_grad()
    def event_outputs(self, indices) -> list[dict]:
        """Per-event model outputs (padding removed) of validation samples."""
        self.model.eval()
        out = []
        for i in indices:
            s = self.val.samples[i]
            batch = tdata.make_batch([s], self.device)
            with autocast_context(self.device):
                o = self.model(batch["x"], make_context(batch))
            out.append({k: v.float() for k, v in self.model.event_outputs(o, 0, batch["pad_mask"]).items()})
        return out

    def _tune(self):
        idx = self._tune_indices()
        if not idx:
            return None
        events = self._val_events(idx)
        outs = self.event_outputs(idx)
        tune_events = [{"outputs": o, "hit_ids": self.val.samples[i]["hit_id"], "truth": ev.truth,
                        "particles": ev.particles, "event_id": ev.event_id,
                        "cluster": self.val.samples[i].get("cluster"), "xyz": self.val.samples[i].get("xyz")}
                       for i, o, ev in zip(idx, outs, events)]
        metric = self.cfg["tune"]["metric"]
        family = self.cfg["model"]["family"]
        base = base_track_params(family, self.cfg["tune"]["base"], self.model.head_cfg)
        best, best_value, tables = None, -np.inf, []
        for g in self.cfg["tune"]["grid"]:
            if self.locality is None and "split_by_cluster" in g:  # no clusters to split by
                g = {**g, "split_by_cluster": [v for v in g["split_by_cluster"] if not v] or [False]}
            params, table = tune_track_formation(tune_events, g, base=base, metric=metric, pt_min=PT_MIN,
                                                 evaluate=_evaluate_with_combined)
            tables.append(table)
            value = float(table[metric].iloc[0])
            if np.isfinite(value) and value > best_value:
                best, best_value = params, value
        if best is not None:
            self.model.track_params = best
        table = pd.concat(tables, ignore_index=True).sort_values(metric, ascending=False, kind="stable")
        if self.progress:
            print(f"trackstudy train: tuned track formation on {len(idx)} validation events: {metric} "
                  f"{best_value:.4f} with {params_record(model_params(self.model))}", file=sys.stderr)
        return table.reset_index(drop=True)

    def _validation_metrics(self, n_events: int | None = None) -> dict:
        """Headline metrics of the model with its current track parameters on the first
        ``n_events`` validation events (all by default)."""
        idx = list(range(len(self.val) if n_events is None else min(n_events, len(self.val))))
        outs = self.event_outputs(idx)
        subs = [form_tracks(o, self.val.samples[i]["hit_id"], event_id=self.val.event_ids[i],
                            cluster=self.val.samples[i].get("cluster"), params=model_params(self.model),
                            xyz=self.val.samples[i].get("xyz"))
                for i, o in zip(idx, outs)]
        result = evaluate_events(pd.concat(subs, ignore_index=True), self._val_events(idx), pt_min=PT_MIN)
        return {k: v for k, v in result.summary.items()}


def _evaluate_with_combined(submission, truth, particles, pt_min: float = PT_MIN) -> dict:
    """evaluate_event plus ``score_and_dm``: the mean of the TrackML score and the DM efficiency
    (tuning on the score alone favours dropping 3-hit particles, which weigh 0 in it), and
    ``dm_minus_fake``: DM efficiency - fake rate."""
    res = evaluate_event(submission, truth, particles, pt_min=pt_min)
    res["score_and_dm"] = 0.5 * (res["trackml_score"] + res["dm_efficiency"])
    # fakes cost as much as misses (the DM efficiency alone never sees the fakes, nor does the score)
    res["dm_minus_fake"] = res["dm_efficiency"] - res["fake_rate"]
    return res
