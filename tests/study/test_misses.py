"""Why particles are missed: a hand-made event where each particle is lost (or found) for a known
reason, the radius of each track-formation method, and a trained run end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from trackstudy.data.io import read_event
from trackstudy.errors import ConfigError, DataError
from trackstudy.inference import predict_events
from trackstudy.metrics.matching import match_tracks
from trackstudy.models.heads import build_model
from trackstudy.postprocessing.track_formation import EmbeddingTrackParams
from trackstudy.study.misses import (
    EDGE_REASONS,
    REASONS,
    captured_misses,
    edge_miss_reasons,
    event_misses,
    miss_reasons,
    miss_stages,
    neighbour_radius,
    summarize_misses,
)


def hand_event():
    """Particles 1-5 with 4 barrel hits each (pT 2 GeV), particle 6 below the pT cut, 4 noise hits.

    1: one cluster, one embedding point, its own track                      -> found
    2: hits in clusters 0, 0, 1, 2 (at most 2 of 4 together)                 -> locality
    3: one cluster, four orthogonal embeddings                               -> embedding
    4: together, but its track holds the 4 noise hits too (purity 4 / 8)     -> merged
    5: together, its track cut to 2 hits (the other 2 alone)                 -> track formation
    """
    pid = np.repeat([1, 2, 3, 4, 5, 6, 0], 4)
    hit_id = np.arange(1, len(pid) + 1)
    cluster = np.zeros(len(pid), np.int64)
    cluster[4:8] = [0, 0, 1, 2]
    emb = np.zeros((len(pid), 12))
    point = {1: 6, 2: 7, 3: 0, 4: 8, 5: 9, 6: 10, 0: 11}
    for i, p in enumerate(pid):
        emb[i, point[p]] = 1.0
    emb[8:12, 0:4] = np.eye(4)  # particle 3 apart
    track = np.arange(100, 100 + len(pid))  # every hit alone ...
    track[0:4] = 1  # ... but particle 1's hits
    track[np.r_[12:16, 24:28]] = 4  # particle 4 with the noise
    track[16:18] = 5  # two hits of particle 5
    hits = pd.DataFrame({"hit_id": hit_id, "x": 50.0 + hit_id, "y": 0.0, "z": 0.0, "volume_id": 8})
    truth = pd.DataFrame({"hit_id": hit_id, "particle_id": pid, "weight": 1.0 / len(pid)})
    parts = pd.DataFrame({"particle_id": np.arange(1, 7), "px": [2.0] * 5 + [0.5], "py": 0.0, "pz": 0.0, "q": 1,
                          "vx": 0.0, "vy": 0.0, "vz": 0.0, "nhits": 4})
    sub = pd.DataFrame({"event_id": 0, "hit_id": hit_id, "track_id": track})
    return hits, truth, parts, sub, emb, cluster


def test_each_particle_lost_where_it_was_lost():
    hits, truth, parts, sub, emb, cluster = hand_event()
    m = match_tracks(sub, truth, parts, hits=hits)
    table = miss_reasons(m, hits["hit_id"], emb, cluster, 0.3)
    assert dict(zip(table["particle_id"], table["reason"])) == {
        1: "found", 2: "locality", 3: "embedding", 4: "merged", 5: "track formation"}
    assert set(table["region"]) == {"barrel"}
    summary = summarize_misses(table).set_index("region")
    assert list(summary.index) == ["all", "barrel"] and summary.loc["all", "n"] == 5
    for r in REASONS:
        assert summary.loc["all", r] == pytest.approx(0.2)
    # without clusters particle 2 is together: its hits share one embedding point, each alone -> track formation
    table = miss_reasons(m, hits["hit_id"], emb, None, 0.3)
    assert table.set_index("particle_id").loc[2, "reason"] == "track formation"
    with pytest.raises(DataError, match="embedding has shape"):
        miss_reasons(m, hits["hit_id"], emb[:3], cluster, 0.3)


def chain(first: int, pairs=((0, 1), (1, 2), (2, 3))) -> list[tuple[int, int]]:
    return [(first + a, first + b) for a, b in pairs]


def test_edge_model_misses_at_each_graph_stage():
    """The same event through an edge model's stages: particle 2 (rows 4-7) has one candidate doublet
    (2 of 4 hits joined), particle 3's chain (rows 8-11) is cut in two by the filter, particle 5's
    (rows 16-19) by the edge classification; particle 4's hits are joined (its track took the
    noise)."""
    hits, truth, parts, sub, _, _ = hand_event()
    m = match_tracks(sub, truth, parts, hits=hits)
    graph = chain(0) + [(4, 5)] + chain(8) + chain(12) + chain(16)
    filt = chain(0) + [(8, 9), (10, 11)] + chain(12) + chain(16)
    kept = chain(0) + chain(12) + [(12, 24), (24, 25)] + [(16, 17)]
    edges = {"graph": np.array(graph).T, "filter": np.array(filt).T, "edge classification": np.array(kept).T}
    table = edge_miss_reasons(m, hits["hit_id"], edges)
    assert dict(zip(table["particle_id"], table["reason"])) == {
        1: "found", 2: "graph", 3: "filter", 4: "merged", 5: "edge classification"}
    summary = summarize_misses(table).set_index("region")
    assert list(summary.columns) == ["n", *EDGE_REASONS] and summary.loc["all", "filter"] == pytest.approx(0.2)
    # a table where nothing was lost says nothing of its stages: the caller names them
    found = table[table["reason"] == "found"]
    assert list(summarize_misses(found, EDGE_REASONS).columns) == ["region", "n", *EDGE_REASONS]
    # without a filter stage particle 3 is lost where its edges went: at the edge classification
    no_filter = edge_miss_reasons(m, hits["hit_id"], {k: v for k, v in edges.items() if k != "filter"})
    assert no_filter.set_index("particle_id").loc[3, "reason"] == "edge classification"
    with pytest.raises(DataError, match="expected 'graph'"):
        edge_miss_reasons(m, hits["hit_id"], {"graph": edges["graph"]})
    with pytest.raises(DataError, match="the 'filter' edges must be"):
        edge_miss_reasons(m, hits["hit_id"], {**edges, "filter": np.array([[0], [99]])})


def test_neighbour_radius():
    assert neighbour_radius(EmbeddingTrackParams(method="dbscan", eps=0.25)) == 0.25
    # cos 0.82 <-> |u - v| = sqrt(2 - 1.64) = 0.6
    assert neighbour_radius(EmbeddingTrackParams(method="knn", threshold=0.82)) == pytest.approx(0.6)
    with pytest.raises(ConfigError, match="'hdbscan' has no fixed neighbour radius"):
        neighbour_radius(EmbeddingTrackParams(method="hdbscan"))


def test_a_model_on_a_real_event(mini_dir, one_torch_thread):
    """The whole path on the real reduced event: predict_event's capture, matching, reasons; an
    untrained tiny model (its embeddings are noise: nothing is found, the reasons still add up)."""
    torch.manual_seed(0)
    model = build_model("contrastive", "tiny", encoder_overrides={"attention": "packed"}).eval()
    model.track_params = EmbeddingTrackParams(method="dbscan", eps=0.3, min_samples=2)
    event = read_event(mini_dir)
    table = event_misses(model, event, locality={"method": "dbscan", "params": {}, "vertex_scan": False})
    assert len(table) > 10 and set(table["reason"]) <= set(REASONS)
    assert (table["pt"] > 0.9).all() and (table["nhits"] >= 3).all()
    summary = summarize_misses(table).set_index("region")
    assert summary.loc["all", list(REASONS)].sum() == pytest.approx(1.0)
    # the same reasons from what a predict_events run kept (no second run of the model)
    captures = {}
    sub, _ = predict_events(model, [event], locality={"method": "dbscan", "params": {}, "vertex_scan": False},
                            pixel_only=True, captures=captures, progress=False)
    assert list(captures) == [event.event_id]
    pd.testing.assert_frame_equal(captured_misses(model, event, sub, captures[event.event_id]), table)
    assert miss_stages(model) == REASONS and miss_stages(build_model("enc_reg", "tiny")) is None
    with pytest.raises(ConfigError, match="a contrastive run .* or an edge model's is needed, got 'enc_reg'"):
        event_misses(build_model("enc_reg", "tiny"), event, locality=None)
