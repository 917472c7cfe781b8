"""Graph construction by metric learning, the array side: the radius graph on hand-built points,
the orientation and layer filter, negative sampling, the tuned radius and config errors."""

from __future__ import annotations

import numpy as np
import pytest

from trackstudy.errors import ConfigError
from trackstudy.graphs.layers import layer_pairs
from trackstudy.graphs.metric import MetricConfig, orient_pairs, radius_pairs, sample_negatives, tune_radius
from trackstudy.graphs.module_map import GraphBuilder, GraphConfig


def _set(i, j):
    return set(zip(np.asarray(i).tolist(), np.asarray(j).tolist()))


def test_radius_pairs_on_hand_built_points():
    # a chain 0-1-2 at spacing 1, a pair 3-4 at distance 0.5, a lone point 5, on a line
    pts = np.array([[0.0, 0], [1, 0], [2, 0], [10, 0], [10.5, 0], [20, 0]])
    assert _set(*radius_pairs(pts, 1.0, k_max=5)) == {(0, 1), (1, 2), (3, 4)}
    assert _set(*radius_pairs(pts, 2.0, k_max=5)) == {(0, 1), (0, 2), (1, 2), (3, 4)}
    assert _set(*radius_pairs(pts, 0.4, k_max=5)) == set()
    # k_max = 1: each point's single nearest; 0 -> 1, 1 -> 0 or 2 (tie), 2 -> 1: (1, 2) kept by 2 anyway
    assert _set(*radius_pairs(pts, 2.0, k_max=1)) == {(0, 1), (1, 2), (3, 4)}
    i, j = radius_pairs(pts, 2.0, k_max=5)
    assert i.dtype == j.dtype == np.int64 and (i < j).all()


def test_radius_pairs_edge_cases():
    assert _set(*radius_pairs(np.zeros((1, 3)), 1.0, 4)) == set()
    # identical points are within any radius; more requested neighbours than points
    assert _set(*radius_pairs(np.zeros((3, 2)), 0.1, 10)) == {(0, 1), (0, 2), (1, 2)}


def test_orient_pairs_follows_layer_pairs_and_distance():
    pairs = np.array([[0, 1], [1, 2], [3, 3]])
    layer = np.array([0, 1, 2, 3, 3, 5])
    d2 = np.array([1.0, 4.0, 9.0, 30.0, 20.0, 50.0])
    i = np.array([0, 1, 2, 3, 0])
    j = np.array([1, 2, 1, 4, 5])
    src, dst = orient_pairs(i, j, layer, d2, pairs)
    # (0,1) layer pair 0->1; (1,2) 1->2; (2,1) flipped to 1->2; same layer 3: nearer hit (4) first; 0-5: dropped
    assert list(zip(src.tolist(), dst.tolist())) == [(0, 1), (1, 2), (1, 2), (4, 3)]
    src, dst = orient_pairs(i, j, layer, d2, None)  # no filter: every pair, by distance from the origin
    assert list(zip(src.tolist(), dst.tolist())) == [(0, 1), (1, 2), (1, 2), (4, 3), (0, 5)]


def test_sample_negatives_never_pairs_one_particle():
    pid = np.array([0, 0, 1, 1, 1, 2, 2, 3])
    neg = sample_negatives(pid, 2000, np.random.default_rng(0))
    assert len(neg) > 1000
    a, b = neg[:, 0], neg[:, 1]
    assert ((pid[a] != pid[b]) | (pid[a] == 0)).all() and (a != b).all()
    assert ((pid[a] == 0) & (pid[b] == 0)).any()  # two noise hits are a negative pair


def test_tune_radius_is_the_quantile():
    d = np.arange(1, 101) / 100.0
    r = tune_radius(d, 0.9)
    assert r == pytest.approx(np.quantile(d, 0.9), rel=1e-5)
    assert (d <= r).mean() >= 0.9
    with pytest.raises(ConfigError, match="model.graph.metric.radius"):
        tune_radius(np.zeros(0), 0.9)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.graph.method"):
        GraphConfig.from_dict({"method": "knn"})
    with pytest.raises(ConfigError, match="unknown config key 'model.graph.metric.dim'"):
        GraphConfig.from_dict({"method": "metric", "metric": {"dim": 8}})
    with pytest.raises(ConfigError, match="model.graph.metric.margin"):
        GraphConfig.from_dict({"method": "metric", "metric": {"margin": 0.0}})
    with pytest.raises(ConfigError, match="model.graph.metric.emb_dim"):
        GraphConfig.from_dict({"method": "metric", "metric": {"emb_dim": 0}})
    with pytest.raises(ConfigError, match="model.graph.metric.radius"):
        MetricConfig(radius=3.0)
    with pytest.raises(ConfigError, match="model.graph.metric: given but model.graph.method is 'windows'"):
        GraphConfig.from_dict({"metric": {"emb_dim": 8}})
    with pytest.raises(ConfigError, match="model.graph.module_map"):
        GraphConfig.from_dict({"method": "metric", "module_map": True})
    with pytest.raises(ConfigError, match="model.graph.metric: expected a mapping"):
        GraphConfig.from_dict({"method": "metric", "metric": 3})


def test_windows_stays_the_default():
    cfg = GraphConfig.from_dict({})
    assert cfg.method == "windows" and "metric" not in cfg.to_dict()
    m = GraphConfig.from_dict({"method": "metric", "metric": {"emb_dim": 12}})
    assert m.metric.emb_dim == 12 and m.to_dict()["metric"]["emb_dim"] == 12


def test_layer_pairs_only_builder_round_trips():
    b = GraphBuilder.layer_pairs_only({"skip": False})
    np.testing.assert_array_equal(b.pairs, layer_pairs(skip=False))
    assert np.isinf(b.windows).all() and not len(b.module_pairs)
    c = GraphBuilder.from_arrays(b.to_arrays())
    np.testing.assert_array_equal(c.pairs, b.pairs)
