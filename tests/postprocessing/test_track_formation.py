import numpy as np
import pandas as pd
import pytest
import torch

from trackstudy.errors import ConfigError, DataError
from trackstudy.postprocessing.track_formation import (
    ClassTrackParams,
    EmbeddingTrackParams,
    ParamTrackParams,
    components_from_edges,
    dbscan_graph,
    form_tracks,
    labels_to_track_ids,
    tracks_from_classes,
    tracks_from_embeddings,
    tracks_from_params,
    tune_track_formation,
)


def _same_partition(track_ids, expected):
    """True when two labelings group the hits identically (ids themselves are arbitrary)."""
    a = pd.Series(np.asarray(track_ids)).groupby(np.asarray(expected)).nunique()
    b = pd.Series(np.asarray(expected)).groupby(np.asarray(track_ids)).nunique()
    return (a == 1).all() and (b == 1).all()


def _check_submission(sub, hit_ids, event_id):
    assert list(sub.columns) == ["event_id", "hit_id", "track_id"]
    assert all(sub[c].dtype == np.int64 for c in sub.columns)
    assert (sub.event_id == event_id).all()
    np.testing.assert_array_equal(sub.hit_id, hit_ids)
    assert sub.track_id.min() >= 0
    assert set(sub.track_id) == set(range(sub.track_id.nunique()))  # consecutive ids


def test_labels_to_track_ids_singletons():
    ids = labels_to_track_ids(np.array([5, -1, 5, 2, -1]))
    assert ids[0] == ids[2] and len({ids[1], ids[4], ids[0], ids[3]}) == 4


def test_classes_hand_case():
    hit_ids = np.array([10, 11, 12, 13, 14, 15])
    pred = np.array([3, 3, 1, 9, 9, 1])
    sub = tracks_from_classes(hit_ids, pred, event_id=7, params=ClassTrackParams(noise_class=9))
    _check_submission(sub, hit_ids, 7)
    # noise-class hits 13 and 14 become two singletons, not one track
    assert _same_partition(sub.track_id, [0, 0, 1, 2, 3, 1])
    # split by locality cluster
    sub = tracks_from_classes(hit_ids, pred, cluster=np.array([0, 1, 0, 0, 0, 0]),
                              params=ClassTrackParams(split_by_cluster=True))
    assert _same_partition(sub.track_id, [0, 1, 2, 3, 3, 2])


def test_classes_from_logits_min_prob():
    logits = np.array([[5.0, 0.0], [5.0, 0.0], [0.1, 0.0]])
    sub = tracks_from_classes([1, 2, 3], logits)
    assert sub.track_id.nunique() == 1
    # hit 3 has top probability ~0.52 < 0.9: alone
    sub = tracks_from_classes([1, 2, 3], logits, params=ClassTrackParams(min_prob=0.9))
    assert _same_partition(sub.track_id, [0, 0, 1])


def _embedding_event():
    # three tracks along three orthogonal directions (small perturbations), plus one isolated hit
    rng = np.random.default_rng(1)
    base = np.eye(4)
    truth = np.array([0] * 4 + [1] * 4 + [2] * 3 + [3])
    emb = base[truth] + 0.05 * rng.standard_normal((len(truth), 4))
    return np.arange(100, 100 + len(truth)), emb, truth


@pytest.mark.parametrize("params", [
    EmbeddingTrackParams(method="knn", k=3, threshold=0.9, per_cluster=False, device="cpu"),
    EmbeddingTrackParams(method="knn", k=3, threshold=0.9, mutual=True, per_cluster=False, device="cpu"),
    EmbeddingTrackParams(method="dbscan", eps=0.3, min_samples=2, per_cluster=False),
    EmbeddingTrackParams(method="hdbscan", min_cluster_size=3, min_samples=1, per_cluster=False),
])
def test_embeddings_hand_built(params):
    hit_ids, emb, truth = _embedding_event()
    sub = tracks_from_embeddings(hit_ids, emb, event_id=3, params=params)
    _check_submission(sub, hit_ids, 3)
    assert _same_partition(sub.track_id, truth)


def test_embeddings_knn_respects_locality_clusters():
    hit_ids, emb, truth = _embedding_event()
    # track 0 is split across locality clusters 0 (hits 0, 1) and 1 (hits 2, 3)
    cluster = np.array([0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4])
    sub = tracks_from_embeddings(hit_ids, emb, cluster=cluster,
                                 params=EmbeddingTrackParams(k=3, threshold=0.9, device="cpu"))
    assert _same_partition(sub.track_id, [0, 0, 5, 5, 1, 1, 1, 1, 2, 2, 2, 3])
    sub = tracks_from_embeddings(hit_ids, emb, cluster=cluster,
                                 params=EmbeddingTrackParams(method="dbscan", eps=0.3))
    assert _same_partition(sub.track_id, [0, 0, 5, 5, 1, 1, 1, 1, 2, 2, 2, 3])


def test_knn_threshold_drops_weak_edges():
    # two hits with cosine 0.5: an edge at threshold 0.4, none at 0.6
    emb = np.array([[1.0, 0.0], [0.5, np.sqrt(0.75)]])
    p = EmbeddingTrackParams(k=1, threshold=0.4, per_cluster=False, device="cpu")
    assert tracks_from_embeddings([1, 2], emb, params=p).track_id.nunique() == 1
    p = EmbeddingTrackParams(k=1, threshold=0.6, per_cluster=False, device="cpu")
    assert tracks_from_embeddings([1, 2], emb, params=p).track_id.nunique() == 2


def test_knn_blocks_match_global_search():
    # per-cluster search with one cluster == global search (exercises the padded blocks)
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((37, 8))
    hit_ids = np.arange(37)
    a = tracks_from_embeddings(hit_ids, emb, cluster=np.zeros(37, np.int64),
                               params=EmbeddingTrackParams(k=2, threshold=0.3, device="cpu"))
    b = tracks_from_embeddings(hit_ids, emb, params=EmbeddingTrackParams(k=2, threshold=0.3, per_cluster=False,
                                                                          device="cpu"))
    assert _same_partition(a.track_id, b.track_id)


def test_components_mutual():
    # 0->1, 1->0, 1->2 : weak components {0,1,2}; mutual only {0,1}, {2}
    src, dst = np.array([0, 1, 1]), np.array([1, 0, 2])
    assert _same_partition(components_from_edges(3, src, dst), [0, 0, 0])
    assert _same_partition(components_from_edges(3, src, dst, mutual=True), [0, 0, 1])


def test_params_dbscan_and_hdbscan():
    # (theta, sin phi, cos phi, q) of two tracks plus an outlier; noise gets its own track
    t1 = [1.0, 0.0, 1.0, 1.0]
    t2 = [2.0, 1.0, 0.0, -1.0]
    pred = np.array([t1, t1, t1, t2, t2, t2, [0.0, -1.0, 0.0, 1.0]]) + 0.001 * np.arange(7)[:, None]
    truth = [0, 0, 0, 1, 1, 1, 2]
    sub = tracks_from_params(np.arange(7), pred, params=ParamTrackParams(algorithm="dbscan", eps=0.05))
    _check_submission(sub, np.arange(7), 0)
    assert _same_partition(sub.track_id, truth)
    # HDBSCAN: five tracks of 10 hits and five scattered outliers, each outlier its own track
    rng = np.random.default_rng(0)
    centres = rng.uniform(-1, 1, (5, 4))
    pred = np.concatenate([np.repeat(centres, 10, 0) + 0.01 * rng.standard_normal((50, 4)),
                           rng.uniform(-3, 3, (5, 4))])
    truth = np.concatenate([np.repeat(np.arange(5), 10), 5 + np.arange(5)])
    sub = tracks_from_params(np.arange(55), pred, params=ParamTrackParams(min_cluster_size=3, min_samples=3))
    _check_submission(sub, np.arange(55), 0)
    assert _same_partition(sub.track_id, truth)
    # latent columns separate two tracks with identical parameters
    pred2 = np.array([t1] * 4)
    latent = np.array([[0.0], [0.0], [5.0], [5.0]])
    sub = tracks_from_params(np.arange(4), pred2, latent=latent,
                             params=ParamTrackParams(algorithm="dbscan", eps=0.1, use_latent=True))
    assert _same_partition(sub.track_id, [0, 0, 1, 1])


def test_form_tracks_dispatch_and_errors():
    hit_ids, emb, truth = _embedding_event()
    sub = form_tracks({"embedding": torch.as_tensor(emb)}, hit_ids,
                      params=EmbeddingTrackParams(k=3, threshold=0.9, per_cluster=False, device="cpu"))
    assert _same_partition(sub.track_id, truth)
    sub = form_tracks({"logits": np.eye(3)[truth % 3], "params": np.zeros((12, 4))}, hit_ids)
    assert sub.track_id.nunique() == 3
    with pytest.raises(ConfigError, match="no known output"):
        form_tracks({"foo": emb}, hit_ids)
    with pytest.raises(DataError, match="rows"):
        tracks_from_embeddings(hit_ids[:3], emb)
    with pytest.raises(DataError, match="NaN"):
        tracks_from_params([1], [[np.nan, 0, 0, 1]])
    with pytest.raises(ConfigError, match="method"):
        EmbeddingTrackParams(method="spectral")


def test_tune_picks_the_best_threshold():
    hit_ids, emb, truth = _embedding_event()
    truth_df = pd.DataFrame({"hit_id": hit_ids, "particle_id": truth + 1})

    def purity(sub, truth, particles, pt_min=0.9):  # 1 when the tracks are exactly the particles
        return {"score": float(_same_partition(sub.track_id, truth.particle_id))}

    events = [{"outputs": {"embedding": emb}, "hit_ids": hit_ids, "truth": truth_df, "particles": None}]
    best, table = tune_track_formation(events, {"threshold": [-1.0, 0.9]}, metric="score", evaluate=purity,
                                       base=EmbeddingTrackParams(k=3, per_cluster=False, device="cpu"))
    assert best.threshold == 0.9
    assert len(table) == 2 and table.loc[0, "score"] == 1.0 and "seconds_per_event" in table
    with pytest.raises(ConfigError, match="no parameter"):
        tune_track_formation(events, {"kk": [1]}, evaluate=purity)


def test_tune_with_real_metrics_on_truth_embeddings():
    from trackstudy.config import ROOT
    from trackstudy.data.io import read_event, select_volumes

    ev = select_volumes(read_event(ROOT / "data" / "real" / "mini"))
    truth = ev.truth
    # perfect embeddings: one-hot of the particle (noise hits random) -> DM efficiency 1 at high threshold
    rng = np.random.default_rng(0)
    codes = pd.factorize(truth.particle_id)[0]
    emb = np.eye(codes.max() + 1)[codes] + 1e-3 * rng.standard_normal((len(truth), codes.max() + 1))
    noise = truth.particle_id.to_numpy() == 0
    emb[noise] = rng.standard_normal((noise.sum(), emb.shape[1]))
    events = [{"outputs": {"embedding": emb}, "hit_ids": truth.hit_id.to_numpy(), "truth": truth,
               "particles": ev.particles, "event_id": ev.event_id}]
    best, table = tune_track_formation(events, {"threshold": [0.95, -1.0], "k": [3, 12]},
                                       base=EmbeddingTrackParams(per_cluster=False, device="cpu"))
    assert best.threshold == 0.95
    assert table.loc[0, "dm_efficiency"] == pytest.approx(1.0)
    assert table["dm_efficiency"].iloc[-1] < 0.5


def test_block_edges_candidate_path_equals_topk_path():
    from trackstudy.postprocessing.track_formation import _block_edges

    g = torch.Generator().manual_seed(0)
    sim = torch.rand(3, 10, 10, generator=g) * 2 - 1
    ok = torch.rand(3, 10, 10, generator=g) > 0.2
    # threshold 0.5: few candidates -> candidate path; the reference is the exact topk-then-threshold
    edges = set(zip(*(t.tolist() for t in _block_edges(sim, ok, 2, 0.5))))
    val, nb = sim.masked_fill(~ok, float("-inf")).topk(2, dim=-1)
    ref = {(a, b, int(nb[a, b, c])) for a, b, c in zip(*(val >= 0.5).nonzero(as_tuple=True))}
    ref = {(int(a), int(b), c) for a, b, c in ref}
    assert edges == ref and len(edges) > 0
    # threshold -1: every allowed pair is a candidate -> topk path, same definition
    edges = set(zip(*(t.tolist() for t in _block_edges(sim, ok, 1, -1.0))))
    val, nb = sim.masked_fill(~ok, float("-inf")).topk(1, dim=-1)
    ref = {(int(a), int(b), int(nb[a, b, c])) for a, b, c in zip(*(val >= -1.0).nonzero(as_tuple=True))}
    assert edges == ref


def test_dbscan_block_graph_matches_sklearn_on_vectors():
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((6, 8))
    emb = np.repeat(centres, 5, 0) + 0.2 * rng.standard_normal((30, 8))
    hit_ids = np.arange(30)
    for min_samples in (1, 2, 3):
        p = EmbeddingTrackParams(method="dbscan", eps=0.25, min_samples=min_samples, device="cpu")
        a = tracks_from_embeddings(hit_ids, emb, cluster=np.zeros(30, np.int64), params=p)  # sparse block graph
        b = tracks_from_embeddings(hit_ids, emb, params=EmbeddingTrackParams(
            method="dbscan", eps=0.25, min_samples=min_samples, per_cluster=False))  # sklearn on the vectors
        assert _same_partition(a.track_id, b.track_id)
        assert 1 < a.track_id.nunique() < 30


def test_dbscan_graph_hand_case():
    # edges 0-1, 1-2, 3-4; point 5 alone. Points within eps, themselves included: 2, 3, 2, 2, 2, 1.
    # min_samples 3: only 1 is core, 0 and 2 its border points, the rest noise; min_samples 2:
    # cores 0-1-2 and 3-4, 5 noise; min_samples 1: every point core, 5 a cluster of its own.
    src, dst = np.array([0, 1, 1, 2, 3, 4]), np.array([1, 0, 2, 1, 4, 3])
    assert dbscan_graph(6, src, dst, 3).tolist() == [0, 0, 0, -1, -1, -1]  # 0 and 2 border of core 1
    assert dbscan_graph(6, src, dst, 2).tolist() == [0, 0, 0, 1, 1, -1]
    assert dbscan_graph(6, src, dst, 1).tolist() == [0, 0, 0, 1, 1, 2]
    assert dbscan_graph(3, np.zeros(0, int), np.zeros(0, int), 2).tolist() == [-1, -1, -1]


@pytest.mark.parametrize("seed", range(6))
def test_dbscan_graph_equals_scikit_learn(seed):
    """Same labels, in the same order, as scikit-learn's DBSCAN on the same eps-graph, border
    points between two clusters included."""
    from sklearn.cluster import DBSCAN

    rng = np.random.default_rng(seed)
    n, eps = 300, 0.3
    pts = rng.uniform(0, 4, (n, 2))
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    src, dst = np.nonzero((d <= eps) & ~np.eye(n, dtype=bool))
    for min_samples in (1, 2, 3, 5, 8):
        ref = DBSCAN(eps=eps, min_samples=min_samples).fit(pts).labels_
        assert dbscan_graph(n, src, dst, min_samples).tolist() == ref.tolist(), min_samples


def test_params_within_locality_clusters():
    # identical parameters in two locality clusters are two tracks, never one
    rng = np.random.default_rng(0)
    centres = rng.uniform(-1, 1, (3, 4))
    one = np.repeat(centres, 6, 0) + 0.005 * rng.standard_normal((18, 4))
    pred = np.concatenate([one, one + 0.001])
    cluster = np.repeat([4, 9], 18)
    truth = np.concatenate([np.repeat(np.arange(3), 6), 3 + np.repeat(np.arange(3), 6)])
    for p in (ParamTrackParams(algorithm="dbscan", eps=0.05, split_by_cluster=True),
              ParamTrackParams(algorithm="hdbscan", min_cluster_size=3, split_by_cluster=True)):
        sub = tracks_from_params(np.arange(36), pred, cluster=cluster, params=p)
        _check_submission(sub, np.arange(36), 0)
        assert _same_partition(sub.track_id, truth), p.algorithm
    # the block radius graph gives DBSCAN's answer on the raw vectors when there is one cluster
    a = tracks_from_params(np.arange(18), one, cluster=np.zeros(18, np.int64),
                           params=ParamTrackParams(algorithm="dbscan", eps=0.02, split_by_cluster=True))
    b = tracks_from_params(np.arange(18), one, params=ParamTrackParams(algorithm="dbscan", eps=0.02))
    assert _same_partition(a.track_id, b.track_id)
    with pytest.raises(ConfigError, match="cluster labels"):
        tracks_from_params(np.arange(18), one, params=ParamTrackParams(split_by_cluster=True))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_track_formation_matches_cpu():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((300, 16)).astype(np.float32)
    cluster = rng.integers(0, 7, 300)
    for method in ("knn", "dbscan"):
        kw = dict(method=method, k=3, threshold=0.2, eps=1.0)
        a, b = (tracks_from_embeddings(np.arange(300), emb, cluster=cluster,
                                       params=EmbeddingTrackParams(device=dev, **kw)) for dev in ("cpu", "cuda"))
        assert _same_partition(a.track_id, b.track_id)


def test_hdbscan_on_a_cluster_smaller_than_min_samples_gives_noise_not_an_error():
    from trackstudy.postprocessing.track_formation import _sk_cluster

    pts = np.random.default_rng(0).normal(size=(3, 4))
    labels = _sk_cluster(pts, "hdbscan", eps=0.1, min_samples=5, min_cluster_size=2)
    assert labels.tolist() == [-1, -1, -1]
