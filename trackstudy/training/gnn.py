"""Training of the edge families: doublet graphs -> edge model -> tuned track building.

The edge models (:data:`trackstudy.models.heads.EDGE_FAMILIES`) score the doublets of a graph: the
interaction network (``model.family: gnn``, ``model.gnn``) and the encoder over doublet tokens
(``model.family: doublet``, ``model.doublet`` with the encoder's ``model.preset``, ``model.encoder``
and ``model.backend``; ``flex`` trains with the exact ``packed`` off CUDA). They share everything
below but the model's construction.

``trackstudy.training.train`` hands a run config of an edge family to :func:`train_gnn`;
the run folder has the layout of every run (``config.yaml``, ``checkpoints/last.pt``, ``model.pt``,
``log_steps.csv``, ``log_val.csv``, ``summary.json``) plus, for ``model.graph.method: windows``,
``graph.npz`` (the fitted graph builder: layer pairs, windows, module map; also inside ``model.pt``
as buffers). One run, in order:

1. data: the ``data.train`` / ``data.val`` events (simulated on first use), pixel hits only;
2. the graph builder: ``windows``, fitted on the training events' truth (``model.graph``);
   ``metric``, the hit embedding trained on them within its own budget, its radius tuned on the
   validation events (:mod:`trackstudy.training.metric_embedding`), then a checkpoint at step 0 so
   that a resumed run does not train it again. Every event's graph is built once and labelled
   (true doublets: consecutive hits of one particle); with ``model.graph.filter``, the edge filter
   is trained on these graphs in its own budget, its threshold tuned on the validation graphs, the
   candidates below it dropped (:mod:`trackstudy.training.edge_filter`; a checkpoint at step 0 again);
3. AdamW over ``train.batch_size`` graphs per step (concatenated; with ``data.augment`` each one
   rotated about the beam axis and mirrored y -> -y at random, in feature space:
   :func:`trackstudy.graphs.doublets.transform_features`), warm-up + cosine learning rate
   (over the time budget with ``train.schedule_by_time``), gradient clipping, ``max_minutes`` cap;
   validation loss and edge efficiency / purity every ``eval_every`` steps, the best weights kept;
4. the track building (threshold, method) tuned on ``tune.n_events`` validation events, the
   validation metrics, ``model.pt`` and ``summary.json``.

Resuming (``resume=True``) reloads model, optimiser, step, epoch position and RNG states from
``checkpoints/last.pt``; the batch order is a function of (seed, epoch), so a resumed run takes the
same batches as an uninterrupted one. Runs on one process (no DDP for this family).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from trackstudy.config import json_safe, resolve_path
from trackstudy.data.io import atomic_write_bytes, iter_events, select_volumes
from trackstudy.device import describe_device, resolve_device
from trackstudy.errors import ConfigError, DataError
from trackstudy.graphs.doublets import transform_features, true_doublets
from trackstudy.graphs.edge_filter import FilterConfig
from trackstudy.graphs.module_map import GraphBuilder, GraphConfig, build_graph
from trackstudy.metrics import evaluate_events
from trackstudy.models.doublet import DoubletConfig, DoubletTransformer, encoder_features
from trackstudy.models.encoder import EncoderConfig
from trackstudy.models.gnn import (
    EdgeModel,
    FilteredGraphBuilder,
    GNNConfig,
    InteractionNetwork,
    edge_loss,
    gnn_from_config,
)
from trackstudy.models.heads import EDGE_FAMILIES
from trackstudy.models.metric_embedding import MetricGraphBuilder
from trackstudy.postprocessing.gnn_tracks import GNNTrackParams, tracks_from_edges
from trackstudy.postprocessing.track_formation import labels_to_track_ids, submission

# the hit-token trainer's logs, schedule, RNG and metric helpers; imported as a module because
# training.run.train hands GNN configs to this module; it reuses the trainer's schedule, logs and checkpoints
from trackstudy.training import trainer as _trainer
from trackstudy.training.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    check_run_folder,
    checkpoint_path,
    load_checkpoint,
    model_state_dict,
    save_checkpoint,
    save_model,
)
from trackstudy.training.data import data_root, dataset_folder
from trackstudy.training.edge_filter import fit_filter, prune_sample
from trackstudy.training.metric_embedding import fit_embedding
from trackstudy.training.pretrained import init_doublet
from trackstudy.training.run_config import base_track_params, dump_yaml, load_yaml, resolve_config

__all__ = ["GRAPH_FILE", "graph_sample", "train_gnn"]

GRAPH_FILE = "graph.npz"
#: parameter-name prefixes of the graph stages trained before the edge model (and fixed while it trains)
_GRAPH_STAGES = ("embedding.", "edge_filter.")


def graph_sample(builder: GraphBuilder | MetricGraphBuilder, event) -> dict:
    """One event's graph with its labels: tensors x, edge_index, edge_attr, y (true doublet), pt
    (particle pT of true doublets), and the event's pixel hits, truth and particles."""
    ev = select_volumes(event)
    g = build_graph(builder, ev.hits, source=f"event {ev.event_id} hits")
    src, dst = g["edge_index"]
    td = true_doublets(ev.hits, ev.truth, ev.particles, layer=g["geometry"]["layer"], source=f"event {ev.event_id}")
    n = len(ev.hits)
    true_code = td["src"].to_numpy() * n + td["dst"].to_numpy()
    order = np.argsort(true_code)
    code = src * n + dst
    pos = np.clip(np.searchsorted(true_code[order], code), 0, max(len(order) - 1, 0))
    y = (true_code[order][pos] == code) if len(order) else np.zeros(len(code), bool)
    pt = np.where(y, td["pt"].to_numpy()[order][pos] if len(order) else 0.0, 0.0)
    hi = td["pt"].to_numpy() > _trainer.PT_MIN
    found = np.isin(true_code[hi], code[y]) if hi.any() else np.zeros(0, bool)
    return {"x": torch.from_numpy(g["x"]), "edge_index": torch.from_numpy(g["edge_index"]),
            "edge_attr": torch.from_numpy(g["edge_attr"]), "y": torch.from_numpy(y.astype(np.float32)),
            "pt": torch.from_numpy(pt.astype(np.float32)), "curvature": g["curvature"], "event": ev,
            "stats": {"n_hits": n, "n_edges": len(code), "n_true": int(y.sum()), "n_true_pt": int(hi.sum()),
                      "n_found_pt": int(found.sum())}}


def augment_graph(sample: dict, rng: np.random.Generator) -> dict:
    """A copy of a graph sample as if its event were rotated about the beam axis by a uniform angle
    and mirrored y -> -y with probability 1/2 (the features only: the edges, labels and pT stay)."""
    x, e = transform_features(sample["x"], sample["edge_attr"], rng.uniform(-np.pi, np.pi), bool(rng.random() < 0.5))
    return {**sample, "x": x, "edge_attr": e}


def _batch(samples: list[dict], device) -> dict:
    """Graphs concatenated into one (node indices offset)."""
    offs = np.cumsum([0] + [s["x"].shape[0] for s in samples[:-1]])
    return {"x": torch.cat([s["x"] for s in samples]).to(device),
            "edge_index": torch.cat([s["edge_index"] + int(o) for s, o in zip(samples, offs)], dim=1).to(device),
            "edge_batch": torch.cat([torch.full((s["edge_index"].shape[1],), i) for i, s in enumerate(samples)]).to(device),
            "node_batch": torch.cat([torch.full((s["x"].shape[0],), i) for i, s in enumerate(samples)]).to(device),
            "edge_attr": torch.cat([s["edge_attr"] for s in samples]).to(device),
            "y": torch.cat([s["y"] for s in samples]).to(device), "pt": torch.cat([s["pt"] for s in samples]).to(device)}


def _graph_stats(samples: list[dict]) -> dict:
    s = pd.DataFrame([x["stats"] for x in samples])
    return {"events": len(s), "hits_per_event": float(s["n_hits"].mean()), "edges_per_event": float(s["n_edges"].mean()),
            "edge_efficiency_pt": float(s["n_found_pt"].sum() / max(s["n_true_pt"].sum(), 1)),
            "edge_purity": float(s["n_true"].sum() / max(s["n_edges"].sum(), 1))}


def _event_tracks(sample: dict, scores: np.ndarray, params: GNNTrackParams) -> pd.DataFrame:
    ev = sample["event"]
    ei = sample["edge_index"].numpy()
    labels = tracks_from_edges(len(ev.hits), ei[0], ei[1], scores, params, curvature=sample["curvature"])
    return submission(ev.event_id, ev.hits["hit_id"].to_numpy(), labels_to_track_ids(labels))


class _GNNRun:
    def __init__(self, config, out_dir, *, resume: bool, progress: bool, on_step=None):
        self.cfg = resolve_config(config)
        self.family = self.cfg["model"]["family"]
        if self.family not in EDGE_FAMILIES:
            raise ConfigError(f"model.family: {self.family!r}; the GNN trainer trains {' and '.join(EDGE_FAMILIES)} runs")
        self.out = resolve_path(out_dir)
        self.resume, self.progress, self.on_step = bool(resume), progress, on_step

    def _notice(self, msg: str) -> None:
        print(f"trackstudy train: {msg}", file=sys.stderr)

    def _check_out_dir(self) -> dict | None:
        _, ckpt = check_run_folder(self.out, self.cfg, resume=self.resume,
                                   old_config=lambda f: resolve_config(load_yaml(f)), run_files=(MODEL_FILE,),
                                   kind="training", resumable=_trainer.RESUMABLE_CHANGES, notice=self._notice)
        return load_checkpoint(ckpt) if ckpt is not None else None

    def _events(self, spec: dict) -> list:
        folder = dataset_folder(spec, data_root(self.cfg["data"]["root"]), progress=self.progress)
        n = int(spec["n_events"]) or None
        events = list(iter_events(folder, n_events=n))
        if not events:
            raise DataError(f"{folder}: no events")
        if events[0].truth is None or events[0].particles is None:
            raise DataError(f"{folder}: the GNN trains on events with truth and particles")
        return [select_volumes(e) for e in events]

    def _new_model(self, builder: GraphBuilder | None, embedding=None) -> EdgeModel:
        """The run's edge model (fresh weights) holding ``builder`` (and, for metric-learning
        graphs of the gnn family, the trained hit ``embedding``)."""
        m = self.cfg["model"]
        if self.family == "gnn":
            return InteractionNetwork(self.gnn_cfg, builder, embedding=embedding)
        enc = EncoderConfig.preset(m["preset"], n_features=len(encoder_features(self.gnn_cfg)), attention=self.backend,
                                   **m["encoder"])
        return DoubletTransformer(enc, self.gnn_cfg, builder)

    def _logits(self, b: dict) -> torch.Tensor:
        if self.family == "gnn":
            return self.model(b["x"], b["edge_index"], b["edge_attr"], b["edge_batch"])
        return self.model(b["x"], b["edge_index"], b["edge_attr"], b["edge_batch"], node_batch=b["node_batch"])

    def _scores(self, samples: list[dict]) -> list[np.ndarray]:
        self.model.eval()
        out = []
        with torch.no_grad():
            for s in samples:
                b = _batch([s], self.device)
                out.append(torch.sigmoid(self._logits(b)).cpu().numpy())
        self.model.train()
        return out

    def _validate(self, n_tracks: int = 0) -> dict:
        """Validation loss, edge efficiency and purity at score 0.5; with ``n_tracks``, also the DM
        efficiency and fake rate of the first n_tracks validation events with the ``tune.base``
        track building (the validation curve)."""
        out = self._edge_metrics()
        if n_tracks:
            params = base_track_params("gnn", self.cfg["tune"]["base"])
            events = self.val[:n_tracks]
            sub = pd.concat([_event_tracks(s, sc, params) for s, sc in zip(events, self._scores(events))],
                            ignore_index=True)
            res = evaluate_events(sub, [s["event"] for s in events], pt_min=_trainer.PT_MIN).summary
            out.update(val_dm_efficiency=res["dm_efficiency"], val_fake_rate=res["fake_rate"])
        return out

    def _edge_metrics(self) -> dict:
        self.model.eval()
        losses, tp, fp, fn = [], 0, 0, 0
        with torch.no_grad():
            for s in self.val:
                b = _batch([s], self.device)
                logits = self._logits(b)
                losses.append(float(edge_loss(logits, b["y"], b["pt"], self.gnn_cfg)))
                pred, y = logits > 0, b["y"] > 0.5
                tp += int((pred & y).sum())
                fp += int((pred & ~y).sum())
                fn += int((~pred & y).sum())
        self.model.train()
        return {"val_loss": float(np.mean(losses)), "val_edge_efficiency": tp / max(tp + fn, 1),
                "val_edge_purity": tp / max(tp + fp, 1)}

    def _tune(self) -> tuple[GNNTrackParams, list[dict]]:
        tu = self.cfg["tune"]
        base = base_track_params("gnn", tu["base"])
        events = self.val[: tu["n_events"]] if tu["n_events"] else []
        if not events:
            return base, []
        scores = self._scores(events)
        rows, best, best_v = [], base, -math.inf
        for grid in tu["grid"]:
            keys = list(grid)
            for values in itertools.product(*(grid[k] for k in keys)):
                try:
                    params = replace(base, **dict(zip(keys, values)))
                except (TypeError, ConfigError) as exc:
                    raise ConfigError(f"tune.grid: {exc}") from None
                vals = [_trainer._evaluate_with_combined(_event_tracks(s, sc, params), s["event"].truth, s["event"].particles)
                        [tu["metric"]] for s, sc in zip(events, scores)]
                v = float(np.nanmean(vals))
                rows.append({**dict(zip(keys, values)), tu["metric"]: v})
                if v > best_v:
                    best, best_v = params, v
        return best, rows

    def _preset(self) -> str:
        """What the summary calls the model's size: iterations x width of a GNN, the encoder preset
        (and cluster size) of a doublet model."""
        if self.family == "gnn":
            return f"in{self.gnn_cfg.n_iterations}x{self.gnn_cfg.hidden}"
        return (self.cfg["model"]["preset"] + ("" if self.gnn_cfg.tokens == "doublets" else ", hit tokens")
                + (f", tiles of {self.gnn_cfg.cluster_size}" if self.gnn_cfg.cluster_size else ""))

    def fit(self) -> dict:
        cfg = self.cfg
        m, tr = cfg["model"], cfg["train"]
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError(f"model.family {self.family}: trains on one process (no DistributedDataParallel); run "
                              "trackstudy train without torchrun")
        ckpt = self._check_out_dir()
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.out / CONFIG_FILE, dump_yaml(cfg).encode(), force=True)
        if tr["num_threads"]:
            torch.set_num_threads(int(tr["num_threads"]))
        self.device = resolve_device(tr["device"])
        _trainer._seed_everything(int(tr["seed"]))
        # the model's config (also the loss weights) and attention backend
        self.gnn_cfg = GNNConfig.from_dict(m["gnn"]) if self.family == "gnn" else DoubletConfig.from_dict(m["doublet"])
        self.backend, notice = (("graph", None) if self.family == "gnn" else _trainer.training_backend(m["backend"], self.device))
        if notice:
            self._notice(notice)
        train_events = self._events(cfg["data"]["train"])
        val_events = self._events(cfg["data"]["val"])
        graph_cfg = GraphConfig.from_dict(m["graph"])
        t_graph = time.perf_counter()
        embedding, embedding_info, edge_filter, filter_info = None, {}, None, {}
        if ckpt is not None:
            mc = ckpt["model_config"]
            probe = gnn_from_config(mc) if self.family == "gnn" else self._new_model(None)
            if self.family != "gnn" and mc.get("filter") is not None:
                probe.set_filter(FilterConfig.from_dict(mc["filter"]))
            probe.load_state_dict(ckpt["model"])
            base, embedding, edge_filter = probe.base_builder, getattr(probe, "embedding", None), probe.edge_filter
            embedding_info = dict(ckpt.get("embedding_info") or {})
            filter_info = dict(ckpt.get("filter_info") or {})
        elif graph_cfg.method == "metric":
            embedding, embedding_info = fit_embedding(train_events, val_events, graph_cfg, seed=int(tr["seed"]),
                                                      device=self.device, progress=self.progress)
            t_graph = time.perf_counter()  # graph_seconds: building, not the embedding's training
            base = MetricGraphBuilder(embedding, GraphBuilder.layer_pairs_only(graph_cfg))
        else:
            base = GraphBuilder.fit(train_events, graph_cfg)
        if embedding is None:
            base.save(self.out / GRAPH_FILE)
        # a resumed run's graphs go through its trained filter; a new run's are filtered once it is trained
        builder = base if edge_filter is None else FilteredGraphBuilder(base, edge_filter)
        bar = tqdm(total=len(train_events) + len(val_events), desc="graphs", unit="event", disable=not self.progress)
        self.train, self.val = [], []
        for dest, events in ((self.train, train_events), (self.val, val_events)):
            for ev in events:
                dest.append(graph_sample(builder, ev))
                bar.update()
        bar.close()
        graph_seconds = time.perf_counter() - t_graph
        if ckpt is None and graph_cfg.filter is not None:  # stage 2 of the graph: the edge filter
            edge_filter, filter_info = fit_filter(self.train, self.val, graph_cfg.filter, self.gnn_cfg,
                                                  pt_min=graph_cfg.pt_min, seed=int(tr["seed"]), device=self.device,
                                                  progress=self.progress)
            t_prune = time.perf_counter()
            self.train, self.val = ([prune_sample(s, edge_filter.keep(s["x"], s["edge_index"], s["edge_attr"]),
                                                  _trainer.PT_MIN) for s in samples] for samples in (self.train, self.val))
            graph_seconds += time.perf_counter() - t_prune
            builder = FilteredGraphBuilder(base, edge_filter)
        self.model = self._new_model(base.layers if embedding is not None else base, embedding)
        self.model.set_filter(edge_filter)
        init_info = None
        if m["init_from"] and ckpt is None:  # a resumed run's checkpoint holds the weights already
            init_info = init_doublet(self.model, m["init_from"], where="model.init_from")
            self._notice(f"encoder{' and token MLP' if init_info['token_mlp'] else ''} initialised from "
                         f"{init_info['file']} (pretraining step {init_info['step']})"
                         + ("" if init_info["token_mlp"] else f"; token MLP fresh (token_hidden "
                            f"{init_info['token_hidden']} there, {self.gnn_cfg.token_hidden} here)"))
        self.model = self.model.to(self.device)
        # a metric-learning embedding and an edge filter are trained first and fixed: the optimiser gets the edge model only
        opt = torch.optim.AdamW([p for name, p in self.model.named_parameters() if not name.startswith(_GRAPH_STAGES)],
                                lr=tr["lr"], weight_decay=tr["weight_decay"])
        clock = {"seconds": 0.0}
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _trainer._lr_lambda(tr, clock))
        step, epoch, pos, best_loss, best_state = 0, 0, 0, math.inf, None
        steps_log, val_log = _trainer._CsvLog(self.out / _trainer.STEP_LOG, True), _trainer._CsvLog(self.out / _trainer.VAL_LOG, True)
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            step, epoch, pos = int(ckpt["step"]), int(ckpt["epoch"]), int(ckpt["pos"])
            clock["seconds"] = float(ckpt["train_seconds"])
            best_loss = float(ckpt["best_loss"])
            best_state = ckpt.get("best_state") or None
            _trainer._set_rng_state(ckpt["rng"])
            steps_log.truncate_after(step)
            val_log.truncate_after(step)
        elif self.out.is_dir():
            for f in (_trainer.STEP_LOG, _trainer.VAL_LOG):
                (self.out / f).unlink(missing_ok=True)

        def save(path=None):
            save_checkpoint(path or checkpoint_path(self.out), {
                "model": model_state_dict(self.model), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "step": step, "epoch": epoch, "pos": pos, "train_seconds": clock["seconds"], "best_loss": best_loss,
                "best_state": best_state or {}, "rng": _trainer._rng_state(), "model_config": self.model.config_dict(),
                "config": cfg, "embedding_info": embedding_info, "filter_info": filter_info})

        if ckpt is None and (embedding is not None or edge_filter is not None):
            save()  # the trained embedding / filter: a resumed run starts from here, not from their training

        bs, n = int(tr["batch_size"]), len(self.train)
        budget = tr["max_minutes"] * 60.0
        stopped = "steps"
        if self.progress:
            print(f"trackstudy train: {self.family} ({self._preset()}, attention {self.backend}) on "
                  f"{describe_device(self.device)}: {n} training graphs, "
                  f"{_graph_stats(self.train)['edges_per_event']:.0f} edges per event", file=sys.stderr)
        bar = tqdm(total=tr["steps"], initial=step, desc="train", unit="step", disable=not self.progress)
        self.model.train()
        try:
            while step < tr["steps"]:
                if budget and clock["seconds"] >= budget:
                    stopped = "max_minutes"
                    break
                perm = np.random.default_rng([int(tr["seed"]), epoch]).permutation(n)
                if pos >= n:
                    epoch, pos = epoch + 1, 0
                    continue
                idx = perm[pos:pos + bs]
                t0 = time.perf_counter()
                samples = [self.train[i] for i in idx]
                if cfg["data"]["augment"]:  # the draw is a function of (seed, step): a resumed run draws the same
                    rng = np.random.default_rng([int(tr["seed"]), step, 1])
                    samples = [augment_graph(sm, rng) for sm in samples]
                b = _batch(samples, self.device)
                logits = self._logits(b)
                loss = edge_loss(logits, b["y"], b["pt"], self.gnn_cfg)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if tr["clip_grad"]:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), tr["clip_grad"])
                opt.step()
                sched.step()
                pos += len(idx)
                step += 1
                dt = time.perf_counter() - t0
                snaps = [m for m in tr["snapshot_minutes"] if clock["seconds"] < m * 60.0 <= clock["seconds"] + dt]
                clock["seconds"] += dt
                row = {"step": step, "epoch": epoch, "loss": float(loss.detach()), "lr": opt.param_groups[0]["lr"],
                       "seconds": clock["seconds"]}
                steps_log.write(row)
                if self.on_step is not None:
                    self.on_step(step, row)
                bar.update()
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                for m_ in snaps:  # checkpoints at fixed training times (held-out numbers over time)
                    save(checkpoint_path(self.out).parent / f"at_{m_:g}min.pt")
                if step % tr["eval_every"] == 0 or step == tr["steps"]:
                    v = self._validate(tr["eval_tracks"])
                    val_log.write({"step": step, "seconds": clock["seconds"], **v})
                    if v["val_loss"] < best_loss:
                        best_loss, best_state = v["val_loss"], model_state_dict(self.model)
                if step % tr["checkpoint_every"] == 0:
                    save()
        except KeyboardInterrupt:
            save()
            bar.close()
            print(f"trackstudy train: interrupted at step {step}; checkpoint written, continue with --resume",
                  file=sys.stderr)
            raise
        bar.close()
        v = self._validate()
        val_log.write({"step": step, "seconds": clock["seconds"], **v})
        if v["val_loss"] < best_loss:
            best_loss, best_state = v["val_loss"], model_state_dict(self.model)
        save()
        if tr["restore_best"] and best_state:
            self.model.load_state_dict(best_state)
        t_tune = time.perf_counter()
        params, table = self._tune()
        self.model.track_params = params
        tune_seconds = time.perf_counter() - t_tune
        scores = self._scores(self.val)
        sub = pd.concat([_event_tracks(s, sc, params) for s, sc in zip(self.val, scores)], ignore_index=True)
        validation = evaluate_events(sub, [s["event"] for s in self.val], pt_min=_trainer.PT_MIN).summary
        model_file = save_model(self.out, self.model, cfg, step=step)
        summary = {
            "family": self.family, "preset": self._preset(), "backend": self.backend,
            "backend_requested": m["backend"] if self.family != "gnn" else "graph",
            "device": describe_device(self.device), "steps": step, "epochs": epoch, "stopped": stopped,
            "train_seconds": clock["seconds"], "graph_seconds": graph_seconds, "tune_seconds": tune_seconds,
            "embedding_seconds": embedding_info.get("seconds") if embedding is not None else None,
            "best_val_loss": best_loss if math.isfinite(best_loss) else None,
            "n_params": sum(p.numel() for name, p in self.model.named_parameters() if not name.startswith(_GRAPH_STAGES)),
            "graph": {"train": _graph_stats(self.train), "val": _graph_stats(self.val),
                      "builder": {**builder.config.to_dict(), "layer_pairs": len(builder.pairs),
                                  "module_pairs": len(builder.module_pairs)}},
            "edge_classification": v, "track_params": params.record(), "tuning": table,
            "validation": {"n_events": len(self.val), **{k: validation.get(k) for k in validation}},
            "model_file": str(model_file), "init_from": init_info,
        }
        if embedding is not None:
            summary["graph"]["embedding"] = {**embedding_info, "radius": base.radius,
                                             "n_params": sum(p.numel() for p in embedding.parameters())}
        if edge_filter is not None:
            summary["graph"]["filter"] = {**filter_info, "n_params": sum(p.numel() for p in edge_filter.parameters())}
        atomic_write_bytes(self.out / _trainer.SUMMARY_FILE, json.dumps(json_safe(summary), indent=1).encode(), force=True)
        return summary


def train_gnn(config: dict | str | os.PathLike, out_dir: str | os.PathLike, *, resume: bool = False,
              progress: bool = True, on_step=None) -> dict:
    """Train a GNN run (``model.family: gnn``) into ``out_dir``; returns the summary (also in
    ``out_dir/summary.json``). See the module docstring."""
    run = _GNNRun(config, out_dir, resume=resume, progress=progress, on_step=on_step)
    flush = run.cfg["train"]["flush_denormal"]  # subnormals as 0 on the CPU (the default state is off)
    if flush:
        torch.set_flush_denormal(True)
    try:
        return run.fit()
    finally:
        if flush:
            torch.set_flush_denormal(False)
