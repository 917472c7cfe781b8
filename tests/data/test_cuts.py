from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackstudy.data.cuts import (
    LIKE,
    EventCuts,
    cut_event,
    hits_per_particle_layer,
    one_hit_per_layer_mask,
    resolve_cuts,
)
from trackstudy.data.io import Event, coerce_table, read_event, validate_event
from trackstudy.data.weights import trackml_weights
from trackstudy.errors import ConfigError, DataError

REAL = Path(__file__).resolve().parents[2] / "data" / "real"
A, B, C, D = 11, 22, 33, 44


def hand_event() -> Event:
    """Four particles, two noise hits. A (pT 2 GeV): a double hit on pixel layer (8, 2), the inner one
    (r = 31) with the higher hit id; B (0.5 GeV): two pixel hits; C (1.5 GeV): one hit in the endcap
    volume 7; D (3 GeV): no hits."""
    rows = [  # hit_id, volume, layer, x, y, z, particle
        (1, 8, 2, 33.0, 0.0, 0.0, A),
        (2, 8, 2, 31.0, 0.0, 0.0, A),
        (3, 8, 4, 72.0, 0.0, 0.0, A),
        (4, 13, 2, 260.0, 0.0, 0.0, A),
        (5, 8, 2, 0.0, 32.0, 0.0, B),
        (6, 8, 4, 0.0, 72.0, 0.0, B),
        (7, 8, 2, -32.0, 0.0, 0.0, 0),
        (8, 13, 2, -260.0, 0.0, 0.0, 0),
        (9, 7, 2, 50.0, 0.0, -1500.0, C),
    ]
    a = np.array(rows, dtype=object)
    hits = coerce_table(pd.DataFrame({"hit_id": a[:, 0].astype(int), "x": a[:, 3].astype(float),
                                      "y": a[:, 4].astype(float), "z": a[:, 5].astype(float),
                                      "volume_id": a[:, 1].astype(int), "layer_id": a[:, 2].astype(int),
                                      "module_id": np.ones(len(a), int)}), "hits", "hand")
    truth = coerce_table(pd.DataFrame({"hit_id": hits["hit_id"], "particle_id": a[:, 6].astype(np.int64),
                                       "tx": hits["x"], "ty": hits["y"], "tz": hits["z"], "tpx": 1.0, "tpy": 0.0,
                                       "tpz": 0.0, "weight": np.full(len(a), 1.0 / len(a))}), "truth", "hand")
    particles = coerce_table(pd.DataFrame({"particle_id": np.array([A, B, C, D], np.int64), "vx": 0.0, "vy": 0.0,
                                           "vz": 0.0, "px": [2.0, 0.5, 1.5, 3.0], "py": 0.0, "pz": 0.0, "q": 1,
                                           "nhits": [4, 2, 1, 0]}), "particles", "hand")
    ev = Event(1, hits=hits, truth=truth, particles=particles)
    validate_event(ev)
    return ev


def ids(ev):
    return ev.hits["hit_id"].tolist()


def test_like_pix1gev_by_hand():
    # pixel volumes: hits 1-3, 5-7, 9; pT >= 1: drop B (5, 6); innermost of A on (8, 2): 2 (r 31 < 33);
    # no noise: drop 7 -> hits 2, 3, 9; particles A (2 hits), C (1); B and D (no hits) gone
    ev = cut_event(hand_event(), "pix1gev")
    assert ids(ev) == [2, 3, 9]
    assert ev.truth["hit_id"].tolist() == [2, 3, 9]
    assert dict(zip(ev.particles["particle_id"], ev.particles["nhits"])) == {A: 2, C: 1}
    validate_event(ev)


def test_first_rule_and_volumes_by_hand():
    # barrel volumes 8, 13, 17: drop 9; first hit id of A on (8, 2): 1; noise kept
    ev = cut_event(hand_event(), volumes=(8, 13, 17), one_hit_per_layer="first")
    assert ids(ev) == [1, 3, 4, 5, 6, 7, 8]
    assert dict(zip(ev.particles["particle_id"], ev.particles["nhits"])) == {A: 3, B: 2}
    # the same with True = "innermost"
    assert ids(cut_event(hand_event(), volumes=[8, 13, 17], one_hit_per_layer=True)) == [2, 3, 4, 5, 6, 7, 8]


def test_sampling_counts_by_hand():
    # barrel20: after volumes and doubles A and B have hits (C's only hit is in volume 7): floor(0.2 * 2) = 0
    # particles, floor(0.2 * 2) = 0 noise -> nothing left, an error naming the cuts
    with pytest.raises(DataError, match="no hits left.*particle_fraction=0.2"):
        cut_event(hand_event(), "barrel20", rng=0)
    # fraction 0.5: floor(0.5 * 3) = 1 of A, B, C with all its hits; floor(0.5 * 2) = 1 noise hit
    for seed in range(6):
        ev = cut_event(hand_event(), particle_fraction=0.5, noise=0.5, rng=seed)
        pid = ev.truth["particle_id"].to_numpy()
        assert len(np.unique(pid[pid != 0])) == 1 and (pid == 0).sum() == 1
        kept = int(np.unique(pid[pid != 0])[0])
        assert (pid == kept).sum() == {A: 4, B: 2, C: 1}[kept]  # all its hits
        assert ev.particles["particle_id"].tolist() == [kept]
    # same seed, same result
    assert ids(cut_event(hand_event(), particle_fraction=0.5, noise=0.5, rng=3)) == \
        ids(cut_event(hand_event(), particle_fraction=0.5, noise=0.5, rng=3))
    # noise False / True / 0.0
    assert 7 not in ids(cut_event(hand_event(), noise=False))
    assert ids(cut_event(hand_event(), noise=True)) == list(range(1, 10))
    assert ids(cut_event(hand_event(), noise=0.0, rng=0)) == [1, 2, 3, 4, 5, 6, 9]


def test_weights_recomputed_or_renormalised():
    ev = hand_event()
    # no cut, recompute: the challenge weights of the whole event (A has 4 hits, the others < 4 -> 0)
    full = cut_event(ev)
    assert np.allclose(full.truth["weight"], trackml_weights(ev.truth, ev.particles), atol=1e-7)
    assert full.truth["weight"].sum() == pytest.approx(1.0)
    assert (full.truth.loc[full.truth["particle_id"] != A, "weight"] == 0).all()
    assert full.particles["particle_id"].tolist() == [A, B, C, D]  # nothing cut: particles kept whole
    # drop A's double hit: 3 hits -> every weight 0 under the challenge scheme
    assert cut_event(ev, one_hit_per_layer="first").truth["weight"].sum() == 0
    # renormalise: the event's own weights (1/9 each) scaled to sum 1 over the 3 kept hits
    ren = cut_event(ev, "pix1gev", weights="renormalise")
    assert np.allclose(ren.truth["weight"], 1 / 3)


def test_one_hit_per_layer_mask_keeps_noise_and_separates_volumes():
    hits = pd.DataFrame({"hit_id": [1, 2, 3, 4, 5], "x": [10.0, 5.0, 1.0, 2.0, 3.0], "y": 0.0,
                         "volume_id": [7, 9, 7, 7, 7], "layer_id": [2, 2, 2, 2, 2]})
    pid = np.array([1, 1, 0, 0, 1])
    # particle 1 on (7, 2): hits 1 (r 10) and 5 (r 3); on (9, 2): hit 2; noise 3, 4 always kept
    assert one_hit_per_layer_mask(hits, pid, "innermost").tolist() == [False, True, True, True, True]
    assert one_hit_per_layer_mask(hits, pid, "first").tolist() == [True, True, True, True, False]


def test_real_sets_are_fixed_points_of_their_cuts():
    # barrel20 has no double hits and only barrel hits: its deterministic cuts change nothing
    b20 = read_event(REAL / "barrel20")
    same = cut_event(b20, volumes=(8, 13, 17), one_hit_per_layer="first", weights="renormalise")
    assert ids(same) == ids(b20)
    assert np.allclose(same.truth["weight"], b20.truth["weight"], atol=1e-9)
    pix = read_event(REAL / "pix1gev")
    same = cut_event(pix, volumes=(7, 8, 9), one_hit_per_layer="innermost", noise=False)
    assert ids(same) == ids(pix)
    # its weights follow the challenge scheme on its hits
    assert np.allclose(same.truth["weight"], pix.truth["weight"], atol=1e-7)
    assert (same.particles["nhits"].to_numpy() == pix.particles["nhits"].to_numpy()).all()


def test_real_mini_cut_like_each_set():
    mini = read_event(REAL / "mini", parts=("hits", "truth", "particles", "cells"))
    pix = cut_event(mini, "pix1gev")
    validate_event(pix)
    assert set(pix.hits["volume_id"]) <= {7, 8, 9}
    assert (pix.truth["particle_id"] != 0).all()
    assert (hits_per_particle_layer(pix)["n"] == 1).all()
    pt = np.hypot(pix.particles["px"], pix.particles["py"])
    assert (pt >= 1.0).all() and len(pix.particles) > 0
    assert set(pix.cells["hit_id"]) <= set(pix.hits["hit_id"])
    b = cut_event(mini, "barrel20", rng=1)
    validate_event(b)
    barrel = cut_event(mini, volumes=(8, 13, 17), one_hit_per_layer="first")
    n_part = barrel.truth.loc[barrel.truth["particle_id"] != 0, "particle_id"].nunique()
    n_noise = int((barrel.truth["particle_id"] == 0).sum())
    assert b.truth.loc[b.truth["particle_id"] != 0, "particle_id"].nunique() == int(0.2 * n_part)
    assert int((b.truth["particle_id"] == 0).sum()) == int(0.2 * n_noise)
    assert b.truth["weight"].sum() == pytest.approx(1.0, abs=1e-5)
    assert set(b.hits["hit_id"]) <= set(barrel.hits["hit_id"])


@pytest.mark.parametrize("kwargs, message", [
    ({"volumes": ["a"]}, "volumes=.*volume ids"),
    ({"volumes": []}, "volumes=.*one or more"),
    ({"min_pt": -1}, "min_pt=-1.*>= 0"),
    ({"min_pt": "x"}, "min_pt='x'"),
    ({"one_hit_per_layer": "last"}, "one_hit_per_layer='last'.*innermost, first"),
    ({"particle_fraction": 0.0}, r"particle_fraction=0.0.*\(0, 1\]"),
    ({"particle_fraction": 1.5}, "particle_fraction=1.5"),
    ({"noise": 2.0}, "noise=2.0.*fraction in"),
    ({"weights": "keep"}, "weights='keep'"),
])
def test_bad_cuts_name_the_field(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EventCuts(**kwargs)


def test_resolve_cuts_and_missing_parts():
    assert resolve_cuts("pix1gev") is LIKE["pix1gev"]
    assert resolve_cuts("barrel20", noise=False).noise is False
    with pytest.raises(ConfigError, match="like='nope'.*pix1gev, barrel20, mini"):
        resolve_cuts("nope")
    with pytest.raises(ConfigError, match="unknown cut.*colour"):
        resolve_cuts(None, colour=1)
    ev = hand_event()
    with pytest.raises(DataError, match="need the truth"):
        cut_event(Event(1, hits=ev.hits), noise=False)
    with pytest.raises(DataError, match="min_pt needs the particles"):
        cut_event(Event(1, hits=ev.hits, truth=ev.truth), min_pt=1.0)
    # volumes alone need no truth
    assert ids(cut_event(Event(1, hits=ev.hits), volumes=(7,))) == [9]


def test_layer_summary_and_hit_count_difference_by_hand():
    from trackstudy.data.compare import hit_count_difference, layer_summary

    s = layer_summary(hand_event())
    # (8, 2): hits 1, 2 (A), 5 (B), 7 (noise): 4 hits, 1 noise, 2 particles, A double -> rate 1/2, 3 / 2 per particle
    row = s.loc[(8, 2)]
    assert (row["hits"], row["noise"], row["particles"]) == (4, 1, 2)
    assert row["double_hit_rate"] == 0.5 and row["hits_per_particle"] == 1.5
    assert s.loc[(13, 2), "particles"] == 1 and s.loc[(13, 2), "noise"] == 1
    a = pd.DataFrame({"particle_id": [1, 2, 3, 4], "px": [2.0, 0.5, 1.5, 3.0], "py": 0.0, "nhits": [4, 2, 1, 0]})
    b = pd.DataFrame({"particle_id": [4, 3, 2, 1], "nhits": [0, 4, 2, 5]})
    # d = 4-5, 2-2, 1-4, 0-0 = -1, 0, -3, 0
    d = hit_count_difference(a, b)
    assert d["n"] == 4 and d["mean"] == -1.0 and d["mean_abs"] == 1.0
    assert d["equal"] == 0.5 and d["within_one"] == 0.75 and d["off_by_more_than_one"] == 0.25
    # pT >= 1 GeV: particles 1, 3, 4 -> -1, -3, 0; min_hits 1 drops particle 4
    assert hit_count_difference(a, b, pt_min=1.0, min_hits=1)["mean"] == -2.0
