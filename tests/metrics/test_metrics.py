"""Tracking metrics: hand-computed cases, an independent per-track reference on random and
adversarial submissions, submission validation, regions."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest

from trackstudy.data.io import read_event, select_volumes
from trackstudy.errors import ConfigError, DataError
from trackstudy.metrics import (
    evaluate_event,
    match_tracks,
    read_submission,
    track_parameters,
    trackml_score,
    validate_submission,
    write_submission,
)

# ---------------------------------------------------------------------------------------------
# Independent reference: a slow, literal per-track loop over the definitions.


def reference(sub: pd.DataFrame, truth: pd.DataFrame, particles: pd.DataFrame,
              pt_min=0.9, min_hits=3, eta_max=4.0):
    pid_of = dict(zip(truth.hit_id.tolist(), truth.particle_id.tolist()))
    w_of = dict(zip(truth.hit_id.tolist(), truth.weight.astype(float).tolist()))
    p_nhits = Counter(truth.particle_id.tolist())
    total_w = sum(w_of.values())
    tracks = defaultdict(list)
    for h, t in zip(sub.hit_id.tolist(), sub.track_id.tolist()):
        if t >= 0:
            tracks[t].append(h)
    score = 0.0
    dm_particles, lhc_particles, perfect_particles = set(), set(), set()
    n_cand = n_fake = 0
    major50 = Counter()
    for hits in tracks.values():
        counts = Counter(pid_of[h] for h in hits)
        best = max(counts.values())
        major = min(p for p, c in counts.items() if c == best)  # ties: smallest particle id
        n_major = counts[major]
        good = n_major / len(hits) > 0.5 and n_major / p_nhits[major] > 0.5
        if good:
            score += sum(w_of[h] for h in hits if pid_of[h] == major)
        if good and major != 0:
            dm_particles.add(major)
        if n_major / len(hits) > 0.75 and major != 0 and len(hits) >= min_hits:
            lhc_particles.add(major)
        if n_major == len(hits) == p_nhits[major] and major != 0:
            perfect_particles.add(major)
        if len(hits) >= min_hits:
            n_cand += 1
            n_fake += not (good and major != 0)
            if n_major / len(hits) > 0.5 and major != 0:
                major50[major] += 1
    rec = []
    for row in particles.itertuples():
        ptv = float(np.hypot(row.px, row.py))
        eta = float(np.arcsinh(row.pz / ptv)) if ptv > 0 else np.inf
        if ptv > pt_min and p_nhits.get(row.particle_id, 0) >= min_hits and abs(eta) < eta_max:
            rec.append(row.particle_id)
    nan = float("nan")
    matched = [p for p in rec if major50[p] > 0]
    return {
        "trackml_score": score / total_w,
        "dm_efficiency": sum(p in dm_particles for p in rec) / len(rec) if rec else nan,
        "lhc_efficiency": sum(p in lhc_particles for p in rec) / len(rec) if rec else nan,
        "perfect_efficiency": sum(p in perfect_particles for p in rec) / len(rec) if rec else nan,
        "fake_rate": n_fake / n_cand if n_cand else nan,
        "duplicate_rate": sum(major50[p] - 1 for p in matched) / len(matched) if matched else nan,
    }


def assert_same(a: dict, b: dict):
    for k, v in b.items():
        if np.isnan(v):
            assert np.isnan(a[k]), k
        else:
            assert a[k] == pytest.approx(v, abs=1e-9), k


# ---------------------------------------------------------------------------------------------
# A small synthetic event


def toy_event(rng, n_particles=40, noise=30):
    rows, parts = [], []
    hit = 1
    for i in range(n_particles):
        pid = 1000 + 7 * i
        n = int(rng.integers(1, 9))
        ptv = float(rng.uniform(0.3, 5.0))
        phi = float(rng.uniform(-np.pi, np.pi))
        eta = float(rng.uniform(-4.5, 4.5))
        parts.append((pid, 0.0, 0.0, float(rng.normal(0, 50)), ptv * np.cos(phi), ptv * np.sin(phi),
                      ptv * np.sinh(eta), 1, n))
        for j in range(n):
            r = 30.0 + 20 * j
            rows.append((hit, pid, r * np.cos(phi), r * np.sin(phi), r * np.sinh(eta), float(rng.uniform(0, 1))))
            hit += 1
    for _ in range(noise):
        rows.append((hit, 0, *rng.normal(0, 300, 3), 0.0))
        hit += 1
    truth = pd.DataFrame(rows, columns=["hit_id", "particle_id", "tx", "ty", "tz", "weight"])
    truth["particle_id"] = truth["particle_id"].astype(np.int64)
    particles = pd.DataFrame(parts, columns=["particle_id", "vx", "vy", "vz", "px", "py", "pz", "q", "nhits"])
    return truth, particles


def adversarial_submissions(truth, rng):
    """Random and adversarial submissions over a truth table."""
    n = len(truth)
    pid = truth.particle_id.to_numpy()
    hid = truth.hit_id.to_numpy()
    subs = {}
    subs["truth"] = pd.DataFrame({"hit_id": hid, "track_id": pid})
    subs["random"] = pd.DataFrame({"hit_id": hid, "track_id": rng.integers(0, max(n // 4, 1), n)})
    # shuffled truth at 30 %
    t = pid.copy()
    mask = rng.random(n) < 0.3
    t[mask] = rng.choice(np.unique(pid), mask.sum())
    subs["shuffle"] = pd.DataFrame({"hit_id": hid, "track_id": t})
    # unassigned hits: drop 40 % of rows, mark 10 % negative
    keep = rng.random(n) > 0.4
    t = pid.copy()
    t[rng.random(n) < 0.1] = -1
    subs["unassigned"] = pd.DataFrame({"hit_id": hid[keep], "track_id": t[keep]})
    # every hit its own track (one-hit tracks)
    subs["singletons"] = pd.DataFrame({"hit_id": hid, "track_id": np.arange(n)})
    # ties: pair particles two-by-two into the same track
    uniq = np.unique(pid[pid != 0])
    pair_of = {p: i // 2 for i, p in enumerate(uniq)}
    subs["ties"] = pd.DataFrame({"hit_id": hid, "track_id": [pair_of.get(p, 10**6) for p in pid]})
    # noise-only tracks plus noise merged into real tracks
    t = pid.copy()
    noise = np.flatnonzero(pid == 0)
    t[noise[: len(noise) // 2]] = 5  # noise joins the track of... nobody (pid 5 does not exist): noise-only
    t[noise[len(noise) // 2:]] = rng.choice(uniq, len(noise) - len(noise) // 2)
    subs["noise"] = pd.DataFrame({"hit_id": hid, "track_id": t})
    # split each particle into halves (duplicates at single majority)
    t = pid * 2 + (rng.random(n) < 0.5)
    subs["split"] = pd.DataFrame({"hit_id": hid, "track_id": t})
    # everything in one track
    subs["one_track"] = pd.DataFrame({"hit_id": hid, "track_id": np.zeros(n, dtype=np.int64)})
    # empty submission
    subs["empty"] = pd.DataFrame({"hit_id": np.zeros(0, dtype=np.int64), "track_id": np.zeros(0, dtype=np.int64)})
    return subs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_on_toy_events(seed):
    rng = np.random.default_rng(seed)
    truth, particles = toy_event(rng)
    for name, sub in adversarial_submissions(truth, rng).items():
        got = evaluate_event(sub, truth, particles, pt_min=0.9)
        assert_same(got, reference(sub, truth, particles)), name
        assert trackml_score(sub, truth) == pytest.approx(got["trackml_score"], abs=1e-12)


def test_matches_reference_on_real_mini_event(mini_dir):
    ev = select_volumes(read_event(mini_dir))
    rng = np.random.default_rng(7)
    for name, sub in adversarial_submissions(ev.truth, rng).items():
        got = evaluate_event(sub, ev.truth, ev.particles, hits=ev.hits)
        ref = reference(sub, ev.truth, ev.particles)
        assert_same(got, ref)
        if name == "truth":
            assert got["trackml_score"] == pytest.approx(1.0, abs=1e-9)
            assert got["dm_efficiency"] == got["perfect_efficiency"] == 1.0
            assert got["n_particles"] == 63  # data/real/README.trackml.md (mini)


# ---------------------------------------------------------------------------------------------
# Hand-computed cases

def hand_event():
    # particle 1: hits 1-4 (w .1 each); particle 2: hits 5-7 (w .2); particle 3: hits 8-9 (w .05);
    # noise: hits 10-11 (w 0). Total weight = .4 + .6 + .1 = 1.1
    truth = pd.DataFrame({
        "hit_id": np.arange(1, 12),
        "particle_id": np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 0, 0], dtype=np.int64),
        "weight": [.1, .1, .1, .1, .2, .2, .2, .05, .05, 0, 0],
        "tx": [40.0] * 11, "ty": [0.0] * 11, "tz": [0, 0, 0, 0, 0, 0, 0, 700, 700, 0, 0],
    })
    particles = pd.DataFrame({
        "particle_id": np.array([1, 2, 3], dtype=np.int64),
        "vx": 0.0, "vy": 0.0, "vz": 0.0, "px": [2.0, 1.0, 0.5], "py": 0.0, "pz": 0.0, "q": 1, "nhits": [4, 3, 2],
    })
    return truth, particles


def test_hand_computed_score_and_efficiencies():
    truth, particles = hand_event()
    # track A = {1,2,3,10}: majority p1 3/4 (>.5) and 3/4 of p1 -> good, weight .3; purity .75 (not > .75: no LHC)
    # track B = {4}: p1, 1/4 of p1 -> not good; 100 % pure but one hit < min_hits: no LHC match
    # track C = {5,6,7,8}: p2 3/4, 3/3 -> good, weight .6; LHC (3/4 is not > .75) -> no
    # track D = {9,11}: tie p3 / noise -> majority noise (smaller id), 1 of 2 -> not good
    sub = pd.DataFrame({"hit_id": [1, 2, 3, 10, 4, 5, 6, 7, 8, 9, 11],
                        "track_id": [0, 0, 0, 0, 1, 2, 2, 2, 2, 3, 3]})
    got = evaluate_event(sub, truth, particles, pt_min=0.9, min_hits=3)
    assert got["trackml_score"] == pytest.approx(0.9 / 1.1, abs=1e-12)
    # reconstructable: p1 (pt 2, 4 hits), p2 (pt 1, 3 hits); p3 has pt .5 and 2 hits
    assert got["n_particles"] == 2
    assert got["dm_efficiency"] == 1.0
    assert got["lhc_efficiency"] == 0.0
    assert got["perfect_efficiency"] == 0.0
    # candidates (>= 3 hits): A and C, both DM -> no fakes
    assert got["n_tracks"] == 2 and got["fake_rate"] == 0.0
    assert got["duplicate_rate"] == 0.0
    # pT > 1 GeV: only p1
    assert got["n_particles_pt1"] == 1 and got["dm_efficiency_pt1"] == 1.0
    m = match_tracks(sub, truth, particles)
    d = m.tracks.set_index("track_id")
    assert d.loc[3, "major_particle_id"] == 0  # tie goes to the smallest particle id
    assert d.loc[0, "major_weight"] == pytest.approx(0.3)

    # a perfect, LHC-pure track for p2 and a fake made of noise + p3 + p1 leftovers
    sub2 = pd.DataFrame({"hit_id": [5, 6, 7, 1, 2, 3, 4, 8, 9, 10, 11],
                         "track_id": [0, 0, 0, 1, 1, 1, 5, 5, 5, 5, 5]})
    got2 = evaluate_event(sub2, truth, particles)
    assert got2["perfect_efficiency"] == 0.5  # p2 perfect, p1 missing hit 4
    assert got2["lhc_efficiency"] == 1.0  # both tracks 100 % pure
    assert got2["trackml_score"] == pytest.approx((0.6 + 0.3) / 1.1)
    assert got2["n_tracks"] == 3 and got2["fake_rate"] == pytest.approx(1 / 3)


def test_duplicates_and_unassigned():
    truth, particles = hand_event()
    # p1 split in two 2-hit tracks (min_hits 2): both 100 % pure -> one duplicate; neither holds > 50 % of p1
    sub = pd.DataFrame({"hit_id": [1, 2, 3, 4, 5, 6, 7], "track_id": [0, 0, 1, 1, 2, 2, -1]})
    got = evaluate_event(sub, truth, particles, min_hits=2)
    assert got["dm_efficiency"] == 0.5  # p2: 2 of 3 hits; p1 half-half: no DM
    assert got["duplicate_rate"] == pytest.approx(1.0 / 2)  # p1 -> 2 tracks (1 duplicate), p2 -> 1 track
    assert got["n_hits_assigned"] == 6  # hit 7 negative, hits 8-11 missing
    assert got["fake_rate"] == pytest.approx(2 / 3)


def test_regions_from_volumes_and_positions(mini_dir):
    ev = read_event(mini_dir)
    sub = pd.DataFrame({"hit_id": ev.truth.hit_id, "track_id": ev.truth.particle_id})
    a = match_tracks(sub, ev.truth, ev.particles, hits=ev.hits).particles
    b = match_tracks(sub, ev.truth, ev.particles).particles  # geometry rule from tx, ty, tz
    assert (a.region == b.region).all()
    assert set(a.region) == {"barrel", "endcap", "none"}
    got = evaluate_event(sub, ev.truth, ev.particles, hits=ev.hits)
    assert got["barrel_n_particles"] + got["endcap_n_particles"] == got["n_particles"]
    truth, particles = hand_event()
    m = match_tracks(pd.DataFrame({"hit_id": [8, 9], "track_id": [0, 0]}), truth, particles)
    assert m.particles.set_index("particle_id").region.to_dict() == {1: "barrel", 2: "barrel", 3: "endcap"}
    assert m.tracks.region.tolist() == ["endcap"]


def test_track_parameters_recover_helix():
    # hits of a unit-charge 1.5 GeV track on a circle through the origin, dz/dr = sinh(0.8)
    pt, eta = 1.5, 0.8
    R = pt / (0.299792458 * 2.0) * 1000.0
    r = np.array([32.0, 72.0, 116.0, 172.0])
    a = 2 * np.arcsin(r / (2 * R))  # turning angle
    x, y = R * np.sin(a), R * (1 - np.cos(a))
    z = 10.0 + r * np.sinh(eta)
    truth = pd.DataFrame({"hit_id": np.arange(1, 5), "particle_id": np.ones(4, dtype=np.int64), "weight": 0.25,
                          "tx": x, "ty": y, "tz": z})
    m = match_tracks(pd.DataFrame({"hit_id": [1, 2, 3, 4], "track_id": [3] * 4}), truth, None)
    tp = track_parameters(m)
    assert tp.pt.iloc[0] == pytest.approx(pt, rel=1e-6)
    assert tp.eta.iloc[0] == pytest.approx(eta, abs=5e-3)


def test_bad_cuts_are_config_errors():
    truth, particles = hand_event()
    sub = pd.DataFrame({"hit_id": [1], "track_id": [1]})
    with pytest.raises(ConfigError, match="min_hits"):
        evaluate_event(sub, truth, particles, min_hits=0)
    with pytest.raises(ConfigError, match="pt_min"):
        evaluate_event(sub, truth, particles, pt_min=float("nan"))


# ---------------------------------------------------------------------------------------------
# Submission validation


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"hit_id": [1, 2]}), "missing column track_id"),
    (pd.DataFrame({"hit_id": [1, 2], "track_id": [1, 1.5]}), "column track_id, row 1: 1.5 is not an integer"),
    (pd.DataFrame({"hit_id": [1, 2], "track_id": ["a", "1"]}), "column track_id, row 0: 'a' is not an integer"),
    (pd.DataFrame({"hit_id": [1, 2], "track_id": [1, np.nan]}), "column track_id, row 1: missing value"),
    (pd.DataFrame({"hit_id": [1, 1], "track_id": [1, 2]}), "column hit_id, row 1: duplicate hit_id 1"),
    (pd.DataFrame({"hit_id": [1, 99], "track_id": [1, 2]}), "column hit_id, row 1: hit 99 is not a hit"),
])
def test_validate_submission_errors(frame, message):
    truth, _ = hand_event()
    with pytest.raises(DataError, match=message) as exc:
        validate_submission(frame, truth, source="sub.csv")
    assert str(exc.value).startswith("sub.csv: ") and "\n" not in str(exc.value)


def test_validate_accepts_integer_floats_and_partial():
    truth, _ = hand_event()
    out = validate_submission(pd.DataFrame({"hit_id": [3.0, 1.0], "track_id": [2.0, 7.0]}), truth)
    assert out.dtypes.tolist() == [np.int64, np.int64] and out.track_id.tolist() == [2, 7]


def test_read_write_submission_roundtrip(tmp_path):
    sub = pd.DataFrame({"event_id": [1, 1], "hit_id": [1, 2], "track_id": [5, 6]})
    path = write_submission(sub, tmp_path / "s.csv")
    with pytest.raises(FileExistsError):
        write_submission(sub, path)
    back = read_submission(path)
    assert back.equals(sub.astype(np.int64))
    (tmp_path / "bad.csv").write_text("event_id,hit_id,track_id\n1,1,2\n1,2,x\n")
    with pytest.raises(DataError, match=r"bad.csv: column track_id, row 1: 'x' is not an integer"):
        read_submission(tmp_path / "bad.csv")


def test_regions_unknown_without_volumes_or_positions():
    truth, particles = hand_event()
    truth = truth.drop(columns=["tx", "ty", "tz"])
    sub = pd.DataFrame({"hit_id": [1, 2, 3, 4], "track_id": [0] * 4})
    got = evaluate_event(sub, truth, particles)
    assert got["dm_efficiency"] == 0.5 and got["barrel_n_particles"] == 0 and np.isnan(got["barrel_dm_efficiency"])
    m = match_tracks(sub, truth, particles)
    assert set(m.particles.region) == {"unknown"} and m.tracks.region.tolist() == ["unknown"]
