"""Cluster-level training: locality clusters as training sequences, cluster-relative features,
the hit filter, and full-event track formation (size cap, cross-cluster merge, filter).

The central check: a cluster run alone gives the per-hit outputs it gets inside its full event
with the packed (and, where it runs, flex) backend, so a model trained on clusters is run on full
events unchanged."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest
import torch

from trackstudy.errors import ConfigError, DataError
from trackstudy.models.features import FeatureConfig, feature_array
from trackstudy.models.heads import build_model, make_context
from trackstudy.postprocessing import track_formation
from trackstudy.training import data as tdata
from trackstudy.training import run_config as tconfig
from trackstudy.training import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLUSTER_FEATURES = FeatureConfig(names=("x", "y", "z", "r", "sin_phi", "cos_phi", "eta", "dphi_cl", "deta_cl"))
LOCALITY = {"method": "dbscan", "params": {}, "vertex_scan": False}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("trackstudy_cluster_data")


def cluster_config(root, **sections) -> dict:
    cfg = {
        "model": {"family": "contrastive", "preset": "tiny", "backend": "packed",
                  "head": {"pt_min": 0.0, "filter_weight": 1.0, "filter_pt": 0.5},
                  "features": {"names": list(CLUSTER_FEATURES.names)}},
        "locality": LOCALITY,
        "data": {"train": {"n_events": 2, "pileup": 5, "seed": 0, "pixel_only": True},
                 "val": {"n_events": 2, "pileup": 5, "seed": 1, "pixel_only": True}, "root": str(root),
                 "sequences": "cluster", "augment": True},
        "train": {"steps": 6, "batch_size": 4, "lr": 3e-3, "warmup_steps": 2, "eval_every": 3, "checkpoint_every": 3,
                  "device": "cpu", "num_threads": 1, "length_buckets": 2, "eval_tracks": 1},
        "tune": {"n_events": 1, "grid": {"k": [4], "threshold": [0.5, 0.9], "min_filter": [0.0, 0.5],
                                         "max_hits": [30]}},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


# ------------------------------------------------------------------------------------ features

def test_cluster_features_worked_by_hand():
    # two clusters; cluster 0: hits at phi = 0.1 and 0.3 (centre 0.2), eta 0 and 1 (centre 0.5);
    # cluster 1: one hit across the phi = pi seam from its partner: phi = pi - 0.05 and -pi + 0.15,
    # circular centre pi + 0.05 (= -pi + 0.05), so the offsets are -0.1 and +0.1, not +-pi.
    r = 100.0
    phis = np.array([0.1, 0.3, np.pi - 0.05, -np.pi + 0.15])
    etas = np.array([0.0, 1.0, 0.0, 0.0])
    x, y, z = r * np.cos(phis), r * np.sin(phis), r * np.sinh(etas)
    cfg = FeatureConfig(names=("dphi_cl", "deta_cl"), local_scale=0.1)
    f = feature_array(x, y, z, cfg, cluster=np.array([0, 0, 1, 1]))
    assert np.allclose(f[:, 0], [-1.0, 1.0, -1.0, 1.0], atol=1e-5)
    assert np.allclose(f[:, 1], [-5.0, 5.0, 0.0, 0.0], atol=1e-5)
    with pytest.raises(ConfigError, match="need cluster labels"):
        feature_array(x, y, z, cfg)
    with pytest.raises(DataError, match="< 0"):
        feature_array(x, y, z, cfg, cluster=np.array([0, -1, 1, 1]))


# ------------------------------------------------------------------------------------ data

def _event_samples(data_root, n=1):
    cfg = tconfig.resolve_config(cluster_config(data_root))
    ds = tdata.load_dataset(cfg["data"]["val"], feature_cfg=CLUSTER_FEATURES, locality=LOCALITY, root=data_root,
                            progress=False)
    return ds.samples[:n]


def test_cluster_samples_partition_the_event(data_root):
    (s,) = _event_samples(data_root)
    units = tdata.cluster_samples([s], min_hits=1)
    assert sum(len(u["x"]) for u in units) == len(s["x"])
    assert len(units) == len(np.unique(s["cluster"]))
    hits = np.concatenate([u["hit_id"] for u in units])
    assert np.array_equal(np.sort(hits), np.sort(s["hit_id"]))
    for u in units:
        assert (u["cluster"] == 0).all() and len(np.unique(u["cluster_label"])) == 1
        rows = np.isin(s["hit_id"], u["hit_id"])
        assert (s["cluster"][rows] == u["cluster_label"][0]).all()
    big = tdata.cluster_samples([s], min_hits=5)
    assert all(len(u["x"]) >= 5 for u in big) and len(big) < len(units)
    with pytest.raises(ConfigError, match="locality"):
        tdata.cluster_samples([{k: v for k, v in s.items() if k != "cluster"}])


def test_augmented_cluster_keeps_its_label_and_recomputes_features(data_root):
    (s,) = _event_samples(data_root)
    u = max(tdata.cluster_samples([s]), key=lambda u: len(u["x"]))
    a = tdata.augment_sample(u, np.random.default_rng(3), feature_cfg=CLUSTER_FEATURES, locality=LOCALITY,
                             recluster=False)
    assert (a["cluster"] == 0).all()
    assert np.allclose(a["x"], feature_array(*a["xyz"].T, CLUSTER_FEATURES, a["cluster"]), atol=1e-5)
    # cluster offsets only move by the mirrors (sign flips), never by the rotation
    assert np.allclose(np.abs(a["x"][:, -2:]), np.abs(u["x"][:, -2:]), atol=1e-4)


@pytest.mark.parametrize("backend", ["packed", "dense"])
def test_full_event_forward_equals_per_cluster_forward(data_root, backend):
    (s,) = _event_samples(data_root)
    torch.manual_seed(0)
    model = build_model("contrastive", "tiny", feature_cfg=CLUSTER_FEATURES, filter_weight=1.0).eval()
    full = tdata.make_batch([s])
    with torch.no_grad():
        out_full = model(full["x"], make_context(full), backend=backend)
        units = tdata.cluster_samples([s], min_hits=1)
        batch = tdata.make_batch(units)
        out_units = model(batch["x"], make_context(batch), backend=backend)
    pos = {h: i for i, h in enumerate(s["hit_id"])}
    for key in ("embedding", "filter"):
        per_cluster = torch.cat([out_units[key][b][batch["pad_mask"][b]] for b in range(len(units))])
        order = [pos[h] for u in units for h in u["hit_id"]]
        assert torch.allclose(per_cluster, out_full[key][0][order], atol=1e-5), key


@pytest.mark.slow
def test_full_event_flex_forward_equals_per_cluster_forward(data_root):
    (s,) = _event_samples(data_root)
    torch.manual_seed(0)
    model = build_model("contrastive", "tiny", feature_cfg=CLUSTER_FEATURES).eval()
    full = tdata.make_batch([s])
    units = tdata.cluster_samples([s], min_hits=1)
    batch = tdata.make_batch(units)
    with torch.no_grad():
        flex = model(full["x"], make_context(full), backend="flex")["embedding"][0]
        per = model(batch["x"], make_context(batch), backend="packed")["embedding"]
    pos = {h: i for i, h in enumerate(s["hit_id"])}
    per_cluster = torch.cat([per[b][batch["pad_mask"][b]] for b in range(len(units))])
    assert torch.allclose(per_cluster, flex[[pos[h] for u in units for h in u["hit_id"]]], atol=1e-4)


# ------------------------------------------------------------------------------------ training

def test_cluster_training_run(data_root, tmp_path):
    summary = train(cluster_config(data_root), tmp_path / "run", progress=False)
    tr = summary["data"]["train"]
    assert tr["sequences"] == "cluster" and tr["n_sequences"] > tr["n_events"]
    assert tr["max_sequence_hits"] <= tr["max_hits"]
    with open(tmp_path / "run" / "log_val.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["val_dm_efficiency"] != "" and r["val_fake_rate"] != "" for r in rows)
    assert 0.0 <= float(rows[-1]["val_dm_efficiency"]) <= 1.0
    with open(tmp_path / "run" / "log_steps.csv", newline="") as f:
        steps = list(csv.DictReader(f))
    assert "filter_bce" in steps[0]
    assert summary["track_params"]["max_hits"] == 30


def test_cluster_config_errors():
    with pytest.raises(ConfigError, match="locality.method"):
        tconfig.resolve_config({"data": {"sequences": "cluster"}})
    with pytest.raises(ConfigError, match="data.sequences"):
        tconfig.resolve_config({"data": {"sequences": "hits"}})
    with pytest.raises(ConfigError, match="online"):
        tconfig.resolve_config({"data": {"sequences": "cluster", "online": True}, "locality": {"method": "grid"}})
    with pytest.raises(ConfigError, match="min_cluster_hits"):
        tconfig.resolve_config({"data": {"min_cluster_hits": 0}})


# ------------------------------------------------------------------------------------ track formation

def _two_tracks_embedding():
    # hits 0-3: one direction (track A), hits 4-7: another (track B), all in cluster 0
    e = np.zeros((8, 4), dtype=np.float32)
    e[:4, 0] = 1.0
    e[4:, 1] = 1.0
    e[:, 2] = np.linspace(0, 0.05, 8)  # tiny spread: every pair within a track has cosine > 0.99
    return e


def test_max_hits_splits_oversized_tracks():
    e = _two_tracks_embedding()
    e[4:, 0] = 0.9  # B leans towards A: cos(A, B) ~ 0.67, above the 0.5 threshold
    p = track_formation.EmbeddingTrackParams(k=7, threshold=0.5)
    assert track_formation.tracks_from_embeddings(np.arange(8), e, params=p)["track_id"].nunique() == 1  # one 8-hit blob
    sub = track_formation.tracks_from_embeddings(np.arange(8), e, params=track_formation.EmbeddingTrackParams(k=7, threshold=0.5, max_hits=4))
    t = sub["track_id"].to_numpy()
    assert len(set(t[:4])) == 1 and len(set(t[4:])) == 1 and t[0] != t[4]  # split at the weak A-B edges
    # a cap nothing fits in: the hits end up as one-hit tracks, never in a track above the cap
    sub = track_formation.tracks_from_embeddings(np.arange(8), e, params=track_formation.EmbeddingTrackParams(k=7, threshold=0.5, max_hits=1))
    assert sub["track_id"].nunique() == 8


def test_merge_joins_one_particle_cut_by_the_clustering():
    e = _two_tracks_embedding()
    cluster = np.array([0, 0, 1, 1, 2, 2, 2, 2])  # track A cut in two by the locality clustering
    p = track_formation.EmbeddingTrackParams(k=3, threshold=0.9)
    t = track_formation.tracks_from_embeddings(np.arange(8), e, cluster=cluster, params=p)["track_id"].to_numpy()
    assert t[0] != t[2]
    pm = track_formation.EmbeddingTrackParams(k=3, threshold=0.9, merge_threshold=0.95)
    t = track_formation.tracks_from_embeddings(np.arange(8), e, cluster=cluster, params=pm)["track_id"].to_numpy()
    assert t[0] == t[1] == t[2] == t[3] and t[4] != t[0]
    capped = track_formation.EmbeddingTrackParams(k=3, threshold=0.9, merge_threshold=0.95, max_hits=3)
    t = track_formation.tracks_from_embeddings(np.arange(8), e, cluster=cluster, params=capped)["track_id"].to_numpy()
    assert t[0] != t[2]  # 2 + 2 hits > max_hits: not merged


def test_min_filter_dissolves_low_probability_tracks():
    e = _two_tracks_embedding()
    logit = np.array([3.0] * 4 + [-3.0] * 4)  # A: p = 0.95, B: p = 0.05
    p = track_formation.EmbeddingTrackParams(k=3, threshold=0.9, min_filter=0.5)
    t = track_formation.tracks_from_embeddings(np.arange(8), e, params=p, hit_filter=logit)["track_id"].to_numpy()
    assert len(set(t[:4])) == 1 and len(set(t[4:])) == 4
    out = track_formation.form_tracks({"embedding": torch.from_numpy(e), "filter": torch.from_numpy(logit)}, np.arange(8),
                         params=p)
    assert np.array_equal(out["track_id"].to_numpy(), t)
    with pytest.raises(ConfigError, match="hit-filter"):
        track_formation.tracks_from_embeddings(np.arange(8), e, params=p)
    with pytest.raises(ConfigError, match="min_filter"):
        track_formation.EmbeddingTrackParams(min_filter=1.5)


def test_track_params_with_new_fields_roundtrip(tmp_path):
    from trackstudy.training.checkpoint import load_run, save_model

    model = build_model("contrastive", "tiny", feature_cfg=CLUSTER_FEATURES, filter_weight=0.5,
                        track_params=track_formation.EmbeddingTrackParams(max_hits=25, merge_threshold=0.97, min_filter=0.4))
    save_model(tmp_path, model, {})
    again, _ = load_run(tmp_path, "cpu")
    assert again.track_params == model.track_params and again.head_cfg.filter_weight == 0.5
    assert again.feature_cfg == CLUSTER_FEATURES
    assert pd.api.types.is_integer_dtype(pd.Series([again.track_params.max_hits]))


def test_epoch_batches_by_hit_budget():
    lengths = np.array([2, 3, 500, 4, 480, 2, 6, 30, 40, 2, 3, 700, 5, 8, 9, 10])
    a = tdata.epoch_batches(16, 8, seed=1, epoch=0, lengths=lengths, length_buckets=4, batch_hits=1000)
    b = tdata.epoch_batches(16, 8, seed=1, epoch=0, lengths=lengths, length_buckets=4, batch_hits=1000)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]  # deterministic in (seed, epoch)
    assert sorted(np.concatenate(a).tolist()) == list(range(16))  # every sequence once
    for batch in a:  # within budget (a lone sequence above it stays alone) and the count cap
        assert len(batch) <= 8
        assert len(batch) == 1 or len(batch) * lengths[batch].max() <= 1000
    # worked out: 500, 480 and 700 cannot share a batch (2 x 500 = 1,000 fits, 2 x 700 does not)
    big = [b for b in a if lengths[b].max() >= 480]
    assert sum(len(b) for b in big) == 3 and all(len(b) <= 2 for b in big)
    # DDP: the ranks get the same number of batches and disjoint sequences
    r0 = tdata.epoch_batches(16, 8, seed=1, epoch=0, rank=0, world_size=2, lengths=lengths, batch_hits=500)
    r1 = tdata.epoch_batches(16, 8, seed=1, epoch=0, rank=1, world_size=2, lengths=lengths, batch_hits=500)
    assert len(r0) == len(r1)
    with pytest.raises(ConfigError, match="length"):
        tdata.epoch_batches(16, 8, seed=1, epoch=0, batch_hits=1000)
    with pytest.raises(ConfigError, match="batch_hits"):
        tconfig.resolve_config({"train": {"batch_hits": 100}, "data": {"online": True}})


def test_tune_base_sets_the_track_parameters_before_tuning(data_root, tmp_path):
    cfg = cluster_config(data_root, tune={"n_events": 0, "base": {"k": 6, "threshold": 0.7, "max_hits": 25}},
                         train={"steps": 2, "eval_every": 2, "checkpoint_every": 2, "device": "cpu",
                                "num_threads": 1, "eval_tracks": 1})
    summary = train(cfg, tmp_path / "run", progress=False)
    tp = summary["track_params"]
    assert (tp["k"], tp["threshold"], tp["max_hits"]) == (6, 0.7, 25)  # no tuning: the base is kept
    with pytest.raises(ConfigError, match="tune.base.kk"):
        tconfig.resolve_config({"tune": {"base": {"kk": 3}}})
    with pytest.raises(ConfigError, match="max_hits"):
        tconfig.resolve_config({"tune": {"base": {"max_hits": -1}}})


def test_resume_of_a_finished_run_with_a_new_tuning_grid_retunes(data_root, tmp_path):
    cfg = cluster_config(data_root, train={"steps": 2, "eval_every": 2, "checkpoint_every": 2, "device": "cpu",
                                           "num_threads": 1, "eval_tracks": 0})
    first = train(cfg, tmp_path / "run", progress=False)
    steps_log = (tmp_path / "run" / "log_steps.csv").read_text()
    cfg["tune"]["grid"] = {"k": [3], "threshold": [0.42], "max_hits": [12]}
    again = train(cfg, tmp_path / "run", resume=True, progress=False)
    assert again["steps"] == first["steps"] == 2
    assert (again["track_params"]["threshold"], again["track_params"]["max_hits"]) == (0.42, 12)
    assert (tmp_path / "run" / "log_steps.csv").read_text() == steps_log  # no training step was taken
    from trackstudy.training import load_run

    model, _ = load_run(tmp_path / "run", "cpu")
    assert model.track_params.threshold == 0.42


def test_min_track_pt_dissolves_low_pt_tracks_worked_by_hand():
    # track A: 4 hits on the circle through the origin of radius 5,000 mm (pT = 0.29979 * 2 T * 5 m = 2.9979 GeV);
    # track B: 4 hits on one of radius 500 mm (0.3 GeV). With min_track_pt 0.5 GeV only B is dissolved.
    from trackstudy.kinematics import origin_circle_pt

    def arc(radius, phi0):
        t = np.array([0.01, 0.02, 0.03, 0.04]) * (5000.0 / radius)
        cx, cy = radius * np.cos(phi0), radius * np.sin(phi0)
        return np.stack([cx - radius * np.cos(phi0 - t), cy - radius * np.sin(phi0 - t), np.zeros(4)], axis=1)

    xyz = np.concatenate([arc(5000.0, 0.3), arc(500.0, 2.0)])
    assert np.allclose(origin_circle_pt(np.repeat([0, 1], 4), xyz[:, 0], xyz[:, 1]), [2.9979, 0.29979], rtol=1e-4)
    e = _two_tracks_embedding()
    p = track_formation.EmbeddingTrackParams(k=3, threshold=0.9, min_track_pt=0.5)
    t = track_formation.tracks_from_embeddings(np.arange(8), e, params=p, xyz=xyz)["track_id"].to_numpy()
    assert len(set(t[:4])) == 1 and len(set(t[4:])) == 4
    out = track_formation.form_tracks({"embedding": torch.from_numpy(e)}, np.arange(8), params=p, xyz=xyz)
    assert np.array_equal(out["track_id"].to_numpy(), t)
    with pytest.raises(ConfigError, match="hit positions"):
        track_formation.tracks_from_embeddings(np.arange(8), e, params=p)
    with pytest.raises(ConfigError, match="min_track_pt"):
        track_formation.EmbeddingTrackParams(min_track_pt=-1.0)


def test_max_hits_caps_dbscan_tracks_too():
    e = _two_tracks_embedding()
    e[4:, 0] = 0.9  # the two tracks within eps of each other: DBSCAN makes one 8-hit track
    base = dict(method="dbscan", eps=0.9, min_samples=1)
    assert track_formation.tracks_from_embeddings(np.arange(8), e, params=track_formation.EmbeddingTrackParams(**base))["track_id"].nunique() == 1
    sub = track_formation.tracks_from_embeddings(np.arange(8), e, params=track_formation.EmbeddingTrackParams(**base, max_hits=4))
    t = sub["track_id"].to_numpy()
    assert len(set(t[:4])) == 1 and len(set(t[4:])) == 1 and t[0] != t[4]
