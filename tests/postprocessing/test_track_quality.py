"""trackstudy.postprocessing.quality: candidate features, DM labels, the scorer and the selection,
on cases worked out by hand."""

import math

import numpy as np
import pytest

from trackstudy.errors import ConfigError, DataError
from trackstudy.kinematics import C_LIGHT
from trackstudy.postprocessing.quality import (
    FEATURES,
    TrackQuality,
    candidate_features,
    candidate_labels,
    fit_track_quality,
    select_candidates,
)

F = {name: i for i, name in enumerate(FEATURES)}


def test_straight_radial_track_features():
    # three barrel hits on the x axis at r = 30, 70, 115 mm, z = 10 + 0.5 r: a line in (r, z) with
    # z0 = 10, cot(theta) = 0.5 -> |eta| = asinh(2); collinear in x-y: no circle (-1)
    r = np.array([30.0, 70.0, 115.0])
    f = candidate_features([0, 0, 0], r, np.zeros(3), 10 + 0.5 * r, [8, 8, 8], [2, 4, 6], view_z=[7.5],
                           vertices=[0.0, 7.5, 15.0])[0]
    assert f[F["nhits"]] == 3 and f[F["layers"]] == 3 and f[F["shared"]] == 0
    assert f[F["rz_rms"]] == pytest.approx(0, abs=1e-9) and f[F["dz0"]] == pytest.approx(2.5)
    assert f[F["home"]] == 1  # z0 = 10 is nearest the view at 7.5
    assert f[F["xy_rms"]] == f[F["d0"]] == f[F["log_pt"]] == -1
    assert f[F["rmin"]] == 30 and f[F["rspan"]] == 85 and f[F["barrel"]] == 1
    assert f[F["abs_eta"]] == pytest.approx(math.asinh(2.0))


def test_circle_through_the_beam_line_gives_its_pt():
    # hits on the circle of radius 1000 mm centred at (0, 1000), which passes through the origin:
    # pT = 0.3 B R = 0.2998 * 2 T * 1 m = 0.5996 GeV, d0 = 0, no residual; two hits share a layer
    phi = np.array([0.03, 0.06, 0.10, 0.15])
    x, y = 1000 * np.sin(phi), 1000 - 1000 * np.cos(phi)
    z = np.array([5.0, 10.0, 20.0, 30.0])
    f = candidate_features([0, 0, 0, 0], x, y, z, [8, 8, 9, 9], [2, 2, 4, 6])[0]
    assert f[F["layers"]] == 3 and f[F["shared"]] == 1 and f[F["barrel"]] == 0.5
    assert f[F["xy_rms"]] == pytest.approx(0, abs=1e-6) and f[F["d0"]] == pytest.approx(0, abs=1e-6)
    assert f[F["log_pt"]] == pytest.approx(math.log(C_LIGHT * 2.0), rel=1e-6)
    assert f[F["home"]] == 1  # one view at z = 0 by default: the nearest


def test_features_of_several_candidates_and_bad_input():
    f = candidate_features([1, 0, 1], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [8, 8, 8], [2, 4, 6])
    assert f.shape == (2, len(FEATURES)) and list(f[:, F["nhits"]]) == [1, 2]
    assert candidate_features([], [], [], [], [], []).shape == (0, len(FEATURES))
    with pytest.raises(DataError, match="one value per row"):
        candidate_features([0, 0], [1.0], [0.0], [0.0], [8], [2])
    with pytest.raises(DataError, match="view_z"):
        candidate_features([0, 1], [1.0, 2.0], [0.0, 0.0], [0.0, 0.0], [8, 8], [2, 4], view_z=[0.0])


def test_labels_are_the_double_majority_rule():
    # candidate 0: particle 5 holds 3 of 3 hits and 3 of its 4: DM; candidate 1: 5 and 9 one hit
    # each (no > 50% majority); candidate 2: noise alone (never DM); candidate 3: particle 7 holds
    # 2 of the 3 hits of the candidate, but only 2 of its own 5: not DM
    track = [0, 0, 0, 1, 1, 2, 3, 3, 3]
    pid = [5, 5, 5, 5, 9, 0, 7, 7, 9]
    good = candidate_labels(track, pid, {5: 4, 9: 2, 0: 1, 7: 5})
    assert good.tolist() == [True, False, False, False]
    # without counts: particle totals from the rows (each hit in one candidate)
    assert candidate_labels([0, 0, 1], [3, 3, 4]).tolist() == [True, True]
    with pytest.raises(DataError):
        candidate_labels([0, 1], [3])


def test_selection_best_first_with_free_hits():
    # A = hits 0,1,2 (0.9), B = 2,3,4 (0.8), C = 4,5 (0.3): A first; B finds 2 of 3 hits free
    # (>= 2 and more than half) and takes 3, 4; C is under the threshold: hit 5 alone
    rows = [0, 1, 2, 2, 3, 4, 4, 5]
    track = [0, 0, 0, 1, 1, 1, 2, 2]
    labels, claimed = select_candidates(6, rows, track, [0.9, 0.8, 0.3], 0.5)
    assert labels.tolist() == [0, 0, 0, 1, 1, 2] and claimed.tolist() == [0, 0, 0, 1, 1, -1]
    # at threshold 0.2 C finds one free hit (5): fewer than min_free, not taken
    labels, claimed = select_candidates(6, rows, track, [0.9, 0.8, 0.3], 0.2)
    assert claimed.tolist() == [0, 0, 0, 1, 1, -1]
    # B first: it takes 2, 3, 4; A keeps 0, 1 (2 of 3 free); C keeps 5 only: not taken
    labels, _ = select_candidates(6, rows, track, [0.7, 0.8, 0.3], 0.0)
    assert labels.tolist() == [1, 1, 0, 0, 0, 2]
    with pytest.raises(DataError, match="score"):
        select_candidates(6, rows, track, [0.9], 0.5)
    with pytest.raises(DataError, match="rows"):
        select_candidates(3, rows, track, [0.9, 0.8, 0.3], 0.5)
    with pytest.raises(ConfigError, match="min_free"):
        select_candidates(6, rows, track, [0.9, 0.8, 0.3], 0.5, min_free=0)


def _linear_scorer(threshold=0.5):
    # one layer: the logit is nhits - 3
    w = np.zeros((len(FEATURES), 1))
    w[F["nhits"], 0] = 1.0
    return TrackQuality(mean=np.zeros(len(FEATURES)), scale=np.ones(len(FEATURES)), weights=[w], biases=[[-3.0]],
                        threshold=threshold)


def test_scorer_forward_save_and_load(tmp_path):
    q = _linear_scorer(0.7)
    feats = np.zeros((3, len(FEATURES)))
    feats[:, F["nhits"]] = [2, 3, 5]
    expected = 1 / (1 + np.exp(-np.array([-1.0, 0.0, 2.0])))
    assert np.allclose(q.score(feats), expected)
    path = q.save(tmp_path / "q.npz")
    back = TrackQuality.load(path)
    assert back.threshold == 0.7 and np.allclose(back.score(feats), expected) and back.view_frame is None
    for frame in (True, False, "both"):  # the views' frame it was fitted in travels with it
        q.view_frame = frame
        assert TrackQuality.load(q.save(tmp_path / "q.npz")).view_frame is frame
    with pytest.raises(DataError, match="features must be"):
        q.score(np.zeros((2, 3)))


def test_bad_scorer_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match="no such track-quality file"):
        TrackQuality.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(DataError, match="bad.npz"):
        TrackQuality.load(bad)
    obj = tmp_path / "obj.npz"
    np.savez(obj, mean=np.array([object()], dtype=object))  # would need pickle to read: refused
    with pytest.raises(DataError, match="obj.npz"):
        TrackQuality.load(obj)
    with pytest.raises(DataError, match="width"):
        TrackQuality(mean=np.zeros(len(FEATURES)), scale=np.ones(len(FEATURES)), weights=[np.zeros((3, 1))],
                     biases=[[0.0]])
    with pytest.raises(ConfigError, match="threshold"):
        _linear_scorer(1.5)


def test_fit_learns_a_rule_it_can_see():
    # good iff 4 or more hits and a small line residual: the perceptron finds it
    rng = np.random.default_rng(0)
    n = 4000
    feats = rng.normal(size=(n, len(FEATURES)))
    feats[:, F["nhits"]] = rng.integers(2, 9, n)
    feats[:, F["rz_rms"]] = rng.exponential(0.5, n)
    good = (feats[:, F["nhits"]] >= 4) & (feats[:, F["rz_rms"]] < 0.5)
    q = fit_track_quality(feats[:3000], good[:3000], hidden=(16,))
    acc = ((q.score(feats[3000:]) >= 0.5) == good[3000:]).mean()
    assert good.mean() < 0.5 and acc > 0.9  # a constant guess is right for fewer than 55%
    with pytest.raises(DataError, match="both good and fake"):
        fit_track_quality(feats, np.ones(n, dtype=bool))


def test_variants_are_stored_and_applied(tmp_path):
    from trackstudy.postprocessing.quality import apply_variants
    from trackstudy.postprocessing.track_formation import EmbeddingTrackParams

    q = _linear_scorer()
    q.variants = [{"eps": 0.15, "min_track_pt": 0.0}, {"eps": 0.3, "min_track_pt": 0.0}]
    back = TrackQuality.load(q.save(tmp_path / "q.npz"))
    assert back.variants == q.variants
    base = EmbeddingTrackParams(eps=0.25, min_track_pt=0.4)
    got = apply_variants(base, back.variants)
    assert [(p.eps, p.min_track_pt) for p in got] == [(0.15, 0.0), (0.3, 0.0)] and got[0].max_hits == base.max_hits
    assert apply_variants(base, []) == [base]
    with pytest.raises(ConfigError, match="no parameter 'epsilon'"):
        apply_variants(base, [{"epsilon": 0.1}])
    with pytest.raises(ConfigError, match="variants"):
        TrackQuality(mean=q.mean, scale=q.scale, weights=q.weights, biases=q.biases, variants={"eps": 0.1})
