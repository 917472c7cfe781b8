"""trackstudy.postprocessing.views: one partition from the candidates of several vertex views,
on cases worked out by hand."""

import numpy as np
import pytest

from trackstudy.errors import ConfigError, DataError
from trackstudy.postprocessing.views import line_fits, resolve_views


def test_line_fit_by_hand():
    # z = -2 + 0.5 r exactly; a second candidate with residuals +1, -2, +1 around z = 10 + 0 r
    track = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    r = np.array([30.0, 70.0, 110.0, 30.0, 70.0, 110.0, 50.0, 52.0])
    z = np.array([13.0, 33.0, 53.0, 11.0, 8.0, 11.0, 0.0, 1.0])
    z0, slope, rms = line_fits(track, r, z)
    assert z0[0] == pytest.approx(-2.0) and slope[0] == pytest.approx(0.5) and rms[0] == pytest.approx(0.0, abs=1e-9)
    assert z0[1] == pytest.approx(10.0) and slope[1] == pytest.approx(0.0, abs=1e-12)
    assert rms[1] == pytest.approx(np.sqrt((1 + 4 + 1) / 3))
    # two hits 2 mm apart in r: no lever arm, no fit
    assert np.isnan(z0[2]) and np.isnan(slope[2]) and rms[2] == 0.0


def _event():
    # hits 0-3: a track from z0 = 10 mm (z = 10 + 0.5 r); hits 4, 5: one from z0 = 0 (z = r)
    r = np.array([30.0, 70.0, 110.0, 150.0, 40.0, 80.0])
    z = np.array([25.0, 45.0, 65.0, 85.0, 40.0, 80.0])
    return r, z


def test_each_track_from_its_home_view():
    r, z = _event()
    # view 0 (z = 0) split the first track in two; view 1 (z = 10) has it whole; both have the second
    rows = np.array([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5])
    track = np.array([0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4])
    view = np.array([0] * 6 + [1] * 6)
    labels, chosen = resolve_views(6, rows, track, view, [0.0, 10.0], r, z)
    assert len(np.unique(labels[:4])) == 1 and len(np.unique(labels[4:])) == 1 and labels[0] != labels[4]
    assert chosen.tolist() == [1, 1, 1, 1, 0, 0]


def test_a_candidate_needs_most_of_its_hits_free():
    r, z = _event()
    # view 1 holds the whole first track; view 0 has hits 3, 4, 5 together. That candidate's line
    # through (r, z) = (150, 85), (40, 40), (80, 80): mean (90, 68.33), slope 2300 / 6200 = 0.371,
    # z0 = 34.9 mm, nearest view 1: not at home in view 0, so it comes after the 4-hit track
    rows = np.array([0, 1, 2, 3, 3, 4, 5])
    track = np.array([0, 0, 0, 0, 1, 1, 1])
    view = np.array([1, 1, 1, 1, 0, 0, 0])
    # (residuals -5.6, -9.8, +15.4 mm: an RMS of 11.0 mm, so without the RMS cut)
    labels, chosen = resolve_views(6, rows, track, view, [0.0, 10.0], r, z, max_rms=np.inf, min_hits_away=1)
    # the 4-hit track first; then 2 of the 3 hits of the other are free: more than half, so taken
    assert len(np.unique(labels[:4])) == 1 and labels[4] == labels[5] != labels[0]
    assert chosen.tolist() == [1, 1, 1, 1, 0, 0]
    # with min_free 3 the two free hits stay alone
    labels, chosen = resolve_views(6, rows, track, view, [0.0, 10.0], r, z, min_free=3, max_rms=np.inf,
                                   min_hits_away=1)
    assert labels[4] != labels[5] and chosen.tolist() == [1, 1, 1, 1, -1, -1]
    # with the RMS cut (1 mm), or with the away cut (3 hits away from its home view, 4 needed),
    # the mixed candidate is not taken at all
    for kwargs in ({"min_hits_away": 1}, {"max_rms": np.inf}, {}):
        labels, chosen = resolve_views(6, rows, track, view, [0.0, 10.0], r, z, **kwargs)
        assert labels[4] != labels[5] and chosen.tolist() == [1, 1, 1, 1, -1, -1]


def test_larger_candidates_first_then_home():
    r, z = _event()
    # view 1 (home of the first track): hits 0, 1, 2; view 0: hits 0-3 with hit 4 (40, 40) joined.
    # That one's line: z0 = 15.2 mm, nearest view 1, so not at home in view 0, but larger: taken first
    rows = np.array([0, 1, 2, 0, 1, 2, 3, 4])
    track = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    view = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    labels, chosen = resolve_views(6, rows, track, view, [0.0, 10.0], r, z, max_rms=np.inf)
    assert len(np.unique(labels[:5])) == 1 and chosen.tolist() == [0, 0, 0, 0, 0, -1]


def test_one_hit_of_three_free_is_not_enough():
    r, z = _event()
    rows = np.array([0, 1, 2, 3, 2, 3, 4])
    track = np.array([0, 0, 0, 0, 1, 1, 1])
    view = np.array([1, 1, 1, 1, 0, 0, 0])
    labels, chosen = resolve_views(6, rows, track, view, [0.0, 10.0], r, z)
    assert chosen.tolist() == [1, 1, 1, 1, -1, -1]
    assert len(np.unique(labels)) == 3  # the track, and hits 4 and 5 alone
    assert np.array_equal(np.unique(labels), np.arange(3))


def test_bad_inputs():
    r, z = _event()
    with pytest.raises(DataError, match="different lengths"):
        resolve_views(6, [0, 1], [0], [0, 0], [0.0], r, z)
    with pytest.raises(DataError, match="index the 6 hits"):
        resolve_views(6, [0, 6], [0, 0], [0, 0], [0.0], r, z)
    with pytest.raises(DataError, match="a view among"):
        resolve_views(6, [0, 1], [0, 0], [0, 1], [0.0], r, z)
    with pytest.raises(DataError, match="one value per hit"):
        resolve_views(6, [0, 1], [0, 0], [0, 0], [0.0], r[:3], z)
    with pytest.raises(ConfigError, match="min_free"):
        resolve_views(6, [0, 1], [0, 0], [0, 0], [0.0], r, z, min_free=0)
    with pytest.raises(ConfigError, match="max_rms"):
        resolve_views(6, [0, 1], [0, 0], [0, 0], [0.0], r, z, max_rms=0.0)
