"""Track building from scored edges, on hand graphs."""

from __future__ import annotations

import numpy as np
import pytest

from trackstudy.errors import ConfigError, DataError
from trackstudy.postprocessing.gnn_tracks import GNNTrackParams, pooled_candidates, selected_edges, tracks_from_edges

# 0 -> 1 -> 2 and 3 -> 4 -> 5 are two tracks; 2 -> 3 (0.6) is a wrong link; 1 -> 6 (0.55) is a
# second branch at hit 1; 7 and 8 are joined by one low-score edge
SRC = np.array([0, 1, 3, 4, 2, 1, 7])
DST = np.array([1, 2, 4, 5, 3, 6, 8])
SCORE = np.array([0.9, 0.8, 0.95, 0.9, 0.6, 0.55, 0.2])


def _groups(labels):
    out = {}
    for i, lab in enumerate(labels):
        out.setdefault(int(lab) if lab >= 0 else -1 - i, []).append(i)
    return sorted(sorted(v) for v in out.values())


def test_connected_components_by_hand():
    labels = tracks_from_edges(9, SRC, DST, SCORE, GNNTrackParams(threshold=0.5, min_hits=1))
    assert _groups(labels) == [[0, 1, 2, 3, 4, 5, 6], [7], [8]]
    labels = tracks_from_edges(9, SRC, DST, SCORE, GNNTrackParams(threshold=0.7, min_hits=1))
    assert _groups(labels) == [[0, 1, 2], [3, 4, 5], [6], [7], [8]]


def test_min_hits_makes_one_hit_tracks():
    labels = tracks_from_edges(9, SRC, DST, SCORE, GNNTrackParams(threshold=0.1, min_hits=3))
    assert labels[7] == -1 and labels[8] == -1 and labels[0] >= 0


def test_walk_cuts_branches_that_are_no_ends_best():
    # 0 -> 2 (0.9) and 1 -> 3 (0.8) are two tracks; 0 -> 3 (0.6) is neither 0's best successor nor
    # 3's best predecessor: the walk cuts it, the components keep it
    src, dst, score = np.array([0, 1, 0]), np.array([2, 3, 3]), np.array([0.9, 0.8, 0.6])
    walk = tracks_from_edges(4, src, dst, score, GNNTrackParams(threshold=0.5, method="walk", min_hits=1))
    comp = tracks_from_edges(4, src, dst, score, GNNTrackParams(threshold=0.5, min_hits=1))
    assert _groups(walk) == [[0, 2], [1, 3]] and _groups(comp) == [[0, 1, 2, 3]]
    # the edges track building joins hits with (what the miss reasons read)
    assert selected_edges(src, dst, score, GNNTrackParams(threshold=0.5, method="walk")).tolist() == [True, True, False]
    assert selected_edges(src, dst, score, GNNTrackParams(threshold=0.7)).tolist() == [True, True, False]
    assert selected_edges(src, dst, score, GNNTrackParams(threshold=0.5)).tolist() == [True, True, True]
    # an overlap hit: 0 -> {1, 2} (two hits on the next layer) -> 3: every edge is some end's best
    src, dst, score = np.array([0, 0, 1, 2]), np.array([1, 2, 3, 3]), np.array([0.9, 0.8, 0.9, 0.7])
    walk = tracks_from_edges(4, src, dst, score, GNNTrackParams(threshold=0.5, method="walk", min_hits=1))
    assert _groups(walk) == [[0, 1, 2, 3]]
    # on the hand graph, 1 -> 6 is the only edge into 6: kept
    labels = tracks_from_edges(9, SRC, DST, SCORE, GNNTrackParams(threshold=0.5, method="walk", min_hits=1))
    assert _groups(labels) == [[0, 1, 2, 3, 4, 5, 6], [7], [8]]


def test_walk_follows_second_best_branches_above_branch():
    # 0 -> 1 (0.95) and 2 -> 3 (0.97) are each end's best; 0 -> 3 (0.93) is second-best at both
    # ends: cut by the plain walk, followed once branch <= 0.93
    src, dst, score = np.array([0, 0, 2]), np.array([1, 3, 3]), np.array([0.95, 0.93, 0.97])
    def walk(branch):
        return _groups(tracks_from_edges(4, src, dst, score, GNNTrackParams(threshold=0.5, method="walk",
                                                                             min_hits=1, branch=branch)))
    assert walk(0.0) == walk(0.94) == [[0, 1], [2, 3]]
    assert walk(0.93) == [[0, 1, 2, 3]]
    # a third-best edge is never followed: 0 -> 3 (0.97) is third of 0's successors (after 0.99, 0.98)
    # and third of 3's predecessors (after 0.999, 0.998)
    src, dst = np.array([0, 0, 0, 4, 5]), np.array([1, 2, 3, 3, 3])
    score = np.array([0.99, 0.98, 0.97, 0.999, 0.998])
    labels = tracks_from_edges(6, src, dst, score, GNNTrackParams(threshold=0.5, method="walk", min_hits=1,
                                                                  branch=0.9))
    assert _groups(labels) == [[0, 1, 2], [3, 4, 5]]


def test_join_mends_a_split_track_end_to_end():
    # 0 -> 1 -> 2 -> 3 with its middle edge below the threshold (0.4); 1 -> 4 (0.35) offers 1 a
    # worse continuation; 5 -> 6 (0.9) with 5 -> 7 (0.45): 5 already goes on, 7 stays alone
    src, dst = np.array([0, 1, 2, 1, 5, 5]), np.array([1, 2, 3, 4, 6, 7])
    score = np.array([0.9, 0.4, 0.9, 0.35, 0.9, 0.45])

    def groups(**kw):
        return _groups(tracks_from_edges(8, src, dst, score, GNNTrackParams(threshold=0.5, min_hits=1, **kw)))

    assert groups() == [[0, 1], [2, 3], [4], [5, 6], [7]]
    assert groups(join=0.3) == [[0, 1, 2, 3], [4], [5, 6], [7]]
    assert groups(join=0.42) == groups()  # the split edge scores below join
    assert groups(join=0.3, method="walk") == [[0, 1, 2, 3], [4], [5, 6], [7]]
    with pytest.raises(ConfigError, match=r"GNNTrackParams.join: must be in \[0, 1\] \(0: no joining\), got 1.5"):
        GNNTrackParams(threshold=0.5, join=1.5)


def test_errors():
    with pytest.raises(DataError, match="edge end outside the 3 hits"):
        tracks_from_edges(3, np.array([0]), np.array([3]), np.array([0.9]))
    with pytest.raises(DataError, match="1 sources, 1 targets and 2 scores"):
        tracks_from_edges(3, np.array([0]), np.array([1]), np.array([0.9, 0.1]))
    with pytest.raises(ConfigError, match="GNNTrackParams.branch: must be in"):
        GNNTrackParams(branch=1.5)
    with pytest.raises(ConfigError, match="GNNTrackParams.method: 'dbscan' unknown"):
        GNNTrackParams(method="dbscan")
    with pytest.raises(ConfigError, match="track_params \\(gnn\\): unknown field 'k'"):
        GNNTrackParams.from_record({"kind": "gnn", "k": 3})
    assert GNNTrackParams.from_record(GNNTrackParams(threshold=0.7).record()) == GNNTrackParams(threshold=0.7)


def test_min_pt_drops_candidates_of_low_curvature_pt():
    # two 3-hit chains: curvature 1e-4 / mm (6 GeV) and 2e-3 / mm (0.3 GeV)
    src, dst = np.array([0, 1, 3, 4]), np.array([1, 2, 4, 5])
    curv = np.array([1e-4, -1e-4, 2e-3, 2e-3])
    labels = tracks_from_edges(6, src, dst, np.ones(4), GNNTrackParams(min_pt=0.5), curvature=curv)
    assert _groups(labels) == [[0, 1, 2], [3], [4], [5]]
    with pytest.raises(DataError, match="min_pt > 0 needs the curvature"):
        tracks_from_edges(6, src, dst, np.ones(4), GNNTrackParams(min_pt=0.5))


def test_pooled_candidates_keep_each_labelling_apart():
    # two labellings of 5 hits: (0 1 | 2 3, hit 4 alone) and (0 1 2, hits 3 and 4 alone)
    rows, track = pooled_candidates([np.array([0, 0, 1, 1, -1]), np.array([-1, -1, -1, -1, -1]),
                                     np.array([5, 5, 5, -1, -1])])
    assert rows.tolist() == [0, 1, 2, 3, 0, 1, 2]
    # the first labelling's 0 and 1, the second's 5 shifted by the first's two labels and the empty one's none
    assert track.tolist() == [0, 0, 1, 1, 7, 7, 7]
    rows, track = pooled_candidates([])
    assert rows.shape == track.shape == (0,)
