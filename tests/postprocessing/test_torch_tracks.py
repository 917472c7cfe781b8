"""trackstudy.postprocessing.torch_tracks: kNN track formation in torch gives the submissions of the
CPU implementation on the same embeddings (synthetic events with every option, a model's outputs
on the real reduced event and on real event 1001)."""

import numpy as np
import pandas as pd
import pytest
import torch

from trackstudy.bench.latency import load_events, preset_model
from trackstudy.data.io import read_event
from trackstudy.errors import ConfigError
from trackstudy.inference import cluster_hits, predict_event, select_pixel_hits
from trackstudy.kinematics import origin_circle_pt
from trackstudy.models.attention import AttentionContext
from trackstudy.models.features import hit_features
from trackstudy.postprocessing.torch_tracks import (
    components_torch,
    device_track_formation,
    origin_circle_pt_torch,
    tracks_from_embeddings_torch,
)
from trackstudy.postprocessing.track_formation import (
    EmbeddingTrackParams,
    components_from_edges,
    tracks_from_embeddings,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
GRID = {"method": "grid", "params": {}, "vertex_scan": False}


def _event(n_tracks=60, hits_per_track=6, noise=40, dim=8, seed=0):
    """Embeddings of tracks (tight groups around random unit vectors) and noise, positions on circles
    through the origin (pT from a radius), locality clusters that cut some tracks in two."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_tracks, dim))
    rows, xyz, cluster, logit = [], [], [], []
    for t in range(n_tracks):
        m = hits_per_track + int(rng.integers(-2, 3))
        rows.append(centres[t] + 0.05 * rng.normal(size=(m, dim)))
        radius = rng.uniform(300, 5000)  # mm: pT 0.18 .. 3 GeV in 2 T
        phi0 = rng.uniform(0, 2 * np.pi)
        a = rng.uniform(0.01, 0.1, m)
        xyz.append(np.stack([radius * (np.cos(phi0) - np.cos(phi0 + a)), radius * (np.sin(phi0) - np.sin(phi0 + a)),
                             rng.normal(size=m)], 1))
        cut = t % 5 == 0
        cluster.append(np.where(cut & (np.arange(m) >= m // 2), 2 * (t // 4) + 1, 2 * (t // 4)))
        logit.append(np.full(m, rng.normal(1.0, 2.0)))
    rows.append(rng.normal(size=(noise, dim)))
    xyz.append(rng.normal(0, 100, size=(noise, 3)))
    cluster.append(rng.integers(0, 2 * (n_tracks // 4), noise))
    logit.append(rng.normal(-1.0, 2.0, noise))
    order = rng.permutation(sum(len(r) for r in rows))
    cat = [np.concatenate(a)[order] for a in (rows, xyz, cluster, logit)]
    return cat[0].astype(np.float32), cat[1], cat[2].astype(np.int64), cat[3]


def _compare(emb, params, cluster=None, hit_filter=None, xyz=None):
    hit_ids = np.arange(len(emb)) + 1
    cpu = tracks_from_embeddings(hit_ids, emb, event_id=3, cluster=cluster, params=params, hit_filter=hit_filter,
                                 xyz=xyz)
    dev = tracks_from_embeddings_torch(hit_ids, torch.from_numpy(emb), event_id=3, cluster=cluster, params=params,
                                       hit_filter=hit_filter, xyz=xyz)
    pd.testing.assert_frame_equal(dev, cpu)  # the same track ids, not only the same partition
    return cpu


def test_components_equal_scipy():
    rng = np.random.default_rng(1)
    for n, e in ((1, 0), (50, 0), (200, 150), (500, 700), (1000, 400)):
        src, dst = rng.integers(0, n, e), rng.integers(0, n, e)
        for mutual in (False, True):
            s2, d2 = (np.concatenate([src, dst[: e // 2]]), np.concatenate([dst, src[: e // 2]])) if mutual \
                else (src, dst)
            ref = components_from_edges(n, s2, d2, mutual=mutual)
            got = components_torch(n, torch.from_numpy(s2), torch.from_numpy(d2), mutual=mutual)
            np.testing.assert_array_equal(got.numpy(), ref)
    # a long chain: label propagation needs pointer jumping to finish in few rounds
    n = 5000
    perm = rng.permutation(n)
    got = components_torch(n, torch.from_numpy(perm[:-1]), torch.from_numpy(perm[1:]))
    assert (got == 0).all()


def test_origin_circle_pt():
    emb, xyz, cluster, _ = _event()
    ref = origin_circle_pt(cluster, xyz[:, 0], xyz[:, 1])
    got = origin_circle_pt_torch(torch.from_numpy(cluster), torch.from_numpy(xyz[:, 0]), torch.from_numpy(xyz[:, 1]),
                                 int(cluster.max()) + 1).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-9)


@pytest.mark.parametrize("params", [
    {},
    {"k": 4, "threshold": 0.9, "mutual": True},
    {"per_cluster": False},
    {"max_hits": 5},
    {"max_hits": 9, "merge_threshold": 0.8},
    {"min_filter": 0.5},
    {"min_track_pt": 0.6},
    {"k": 12, "threshold": 0.3, "max_hits": 10, "merge_threshold": 0.7, "min_filter": 0.3, "min_track_pt": 0.3},
])
def test_same_tracks_as_the_cpu(params):
    emb, xyz, cluster, logit = _event()
    p = EmbeddingTrackParams(**params)
    sub = _compare(emb, p, cluster=cluster, hit_filter=logit, xyz=xyz)
    assert sub["track_id"].nunique() < len(sub)  # tracks were formed


def test_without_clusters_and_edge_cases():
    emb, *_ = _event(n_tracks=10, noise=5)
    _compare(emb, EmbeddingTrackParams())
    _compare(emb[:1], EmbeddingTrackParams())  # one hit
    _compare(emb, EmbeddingTrackParams(threshold=0.9999))  # no edges: every hit alone
    with pytest.raises(ConfigError, match="method 'knn'"):
        tracks_from_embeddings_torch(np.arange(len(emb)), torch.from_numpy(emb),
                                     params=EmbeddingTrackParams(method="dbscan"))
    with pytest.raises(ConfigError, match="hit-filter"):
        tracks_from_embeddings_torch(np.arange(len(emb)), torch.from_numpy(emb),
                                     params=EmbeddingTrackParams(min_filter=0.5))
    assert device_track_formation({"embedding": 1}, None)
    assert not device_track_formation({"logits": 1}, None)
    assert not device_track_formation({"embedding": 1}, EmbeddingTrackParams(method="hdbscan"))


def _model_outputs(hits):
    model = preset_model("small", device="cpu")
    labels = cluster_hits(hits, GRID)
    x = torch.from_numpy(hit_features(hits, model.feature_cfg, cluster=labels))[None]
    with torch.no_grad():
        out = model(x, AttentionContext(cluster_labels=torch.from_numpy(labels)[None]), backend="packed")
    return out["embedding"][0].numpy(), labels


def test_real_mini_event(mini_dir):
    hits = read_event(mini_dir, parts=("hits",)).hits
    hits = hits[select_pixel_hits(hits)]
    emb, labels = _model_outputs(hits)
    xyz = hits[["x", "y", "z"]].to_numpy(np.float64)
    for params in ({}, {"threshold": 0.99, "max_hits": 12, "merge_threshold": 0.99, "min_track_pt": 0.3}):
        _compare(emb, EmbeddingTrackParams(**params), cluster=labels, xyz=xyz)


@pytest.mark.slow
def test_real_full_event():
    _, hits = load_events("full", 1)[0]
    hits = hits[select_pixel_hits(hits)]
    emb, labels = _model_outputs(hits)
    _compare(emb, EmbeddingTrackParams(threshold=0.995, max_hits=12, merge_threshold=0.995), cluster=labels,
             xyz=hits[["x", "y", "z"]].to_numpy(np.float64))


@pytest.mark.parametrize("locality", [GRID, None])
def test_inference_forms_tracks_on_the_device(locality, mini_dir):
    hits = read_event(mini_dir, parts=("hits",)).hits
    model = preset_model("tiny", device="cpu")
    model.track_params = EmbeddingTrackParams(threshold=0.95, max_hits=20, merge_threshold=0.95, min_track_pt=0.2)
    # the whole pipeline in torch (clustering, features, track formation) against the CPU stages
    a, _ = predict_event(model, hits, locality=locality, pixel_only=True, device_tracks=True, device_clustering=True)
    b, _ = predict_event(model, hits, locality=locality, pixel_only=True, device_tracks=False,
                         device_clustering=False)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == len(hits)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_same_tracks_as_the_cpu():
    emb, xyz, cluster, logit = _event(n_tracks=200)
    p = EmbeddingTrackParams(k=12, threshold=0.3, max_hits=10, merge_threshold=0.7, min_filter=0.3, device="cpu")
    hit_ids = np.arange(len(emb)) + 1
    cpu = tracks_from_embeddings(hit_ids, emb, cluster=cluster, params=p, hit_filter=logit, xyz=xyz)
    dev = tracks_from_embeddings_torch(hit_ids, torch.from_numpy(emb).cuda(), cluster=torch.from_numpy(cluster).cuda(),
                                       params=p, hit_filter=torch.from_numpy(logit).cuda(), xyz=xyz)
    pd.testing.assert_frame_equal(dev, cpu)
