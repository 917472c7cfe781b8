"""trackstudy.study.heldout: held-out folders never reuse a run's seeds; DM efficiency binned by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from trackstudy.errors import ConfigError
from trackstudy.study.heldout import binned_dm, dm_by_cluster_size, dm_by_hits, dm_by_vertex_z, heldout_folder
from trackstudy.training.run_config import resolve_config


def _cfg(tmp_path):
    return resolve_config({"model": {"family": "contrastive", "preset": "tiny"},
                           "data": {"train": {"n_events": 2, "pileup": 5, "seed": 3},
                                    "val": {"n_events": 1, "pileup": 5, "seed": 4}, "root": str(tmp_path)}})


def test_heldout_folder_refuses_the_runs_own_seeds(tmp_path):
    cfg = _cfg(tmp_path)
    for seed in (3, 4):
        with pytest.raises(ConfigError, match=f"seed {seed}"):
            heldout_folder(cfg, 1, seed)


def test_binned_dm_counts_worked_by_hand():
    # four reconstructable particles: pT 0.8 and 1.2 GeV found, 1.3 missed, 5 GeV found;
    # one with 2 hits (not reconstructable) and one at |eta| 4.5 (outside) are left out
    particles = pd.DataFrame({
        "pt": [0.8, 1.2, 1.3, 5.0, 2.0, 2.0], "eta": [0.1, 0.2, -0.3, 1.5, 0.0, 4.5],
        "nhits": [5, 6, 4, 7, 2, 5], "dm_matched": [True, True, False, True, True, True]})
    rows = {(r["low"], r["high"]): r for r in binned_dm(particles)["pt"]}
    assert (rows[(0.75, 1.0)]["n_pass"], rows[(0.75, 1.0)]["n_total"]) == (1, 1)
    assert (rows[(1.0, 1.5)]["n_pass"], rows[(1.0, 1.5)]["n_total"]) == (1, 2)
    assert rows[(1.0, 1.5)]["eff"] == pytest.approx(0.5)
    assert (rows[(4.0, 6.0)]["n_pass"], rows[(4.0, 6.0)]["n_total"]) == (1, 1)
    assert sum(r["n_total"] for r in rows.values()) == 4
    # eta bins take pT > 0.9 GeV: 1.2 and 5.0 found, 1.3 missed; the 0.8 GeV particle is left out
    eta = binned_dm(particles)["eta"]
    assert sum(r["n_total"] for r in eta) == 3 and sum(r["n_pass"] for r in eta) == 2
    empty = [r for r in eta if r["n_total"] == 0]
    assert empty and all(r["eff"] is None for r in empty)  # NaN becomes None (JSON)


def test_dm_by_cluster_size_bins_particles_by_their_clusters_size(mini_dir):
    # the real mini event clustered with DBSCAN; a "particles" table where every reconstructable
    # particle counts as found: each region's bins must then hold DM efficiency 1 and their counts
    # must add up to the reconstructable particles of the region
    from trackstudy.data.io import read_event
    from trackstudy.metrics import match_tracks

    ev = read_event(mini_dir)
    sub = ev.truth[["hit_id", "particle_id"]].rename(columns={"particle_id": "track_id"})
    particles = match_tracks(sub, ev.truth, ev.particles, hits=ev.hits).particles.assign(event_id=int(ev.event_id))
    locality = {"method": "dbscan", "params": {}, "vertex_scan": False}
    rows = dm_by_cluster_size(mini_dir, locality, particles)
    from trackstudy.metrics import reconstructable

    reco = particles.loc[reconstructable(particles)]
    for region in ("barrel", "endcap"):
        got = [r for r in rows if r["region"] == region]
        assert sum(r["n"] for r in got) <= int((reco["region"] == region).sum())
        assert all(r["dm_efficiency"] == 1.0 for r in got if r["n"])
    assert sum(r["n"] for r in rows) > 0


def test_dm_by_hits_worked_by_hand():
    # barrel: 3 hits missed, 3 hits found, 4 found, 12 found; endcap: 8 missed; a 2-hit particle and
    # a 0.5 GeV one (not reconstructable) are left out
    particles = pd.DataFrame({
        "pt": [1.0, 2.0, 1.5, 3.0, 1.2, 5.0, 0.5], "eta": [1.8, -1.7, 0.3, 0.0, 2.5, 0.1, 0.0],
        "nhits": [3, 3, 4, 12, 8, 2, 4], "vz": [0.0] * 7,
        "region": ["barrel"] * 4 + ["endcap", "barrel", "barrel"],
        "dm_matched": [False, True, True, True, False, True, True]})
    rows = {(r["region"], r["low"]): r for r in dm_by_hits(particles)}
    assert (rows[("barrel", 3.0)]["n"], rows[("barrel", 3.0)]["dm_efficiency"]) == (2, 0.5)
    assert (rows[("barrel", 4.0)]["n"], rows[("barrel", 4.0)]["dm_efficiency"]) == (1, 1.0)
    assert (rows[("barrel", 10.0)]["n"], rows[("barrel", 10.0)]["high"]) == (1, float("inf"))
    assert (rows[("endcap", 7.0)]["n"], rows[("endcap", 7.0)]["dm_efficiency"]) == (1, 0.0)
    assert rows[("barrel", 5.0)]["dm_efficiency"] is None
    assert sum(r["n"] for r in rows.values()) == 5


def test_dm_by_vertex_z_worked_by_hand():
    # barrel: |vz| 1 mm found, -3 mm found, 5 mm missed, 20 mm missed; endcap: 7 mm found;
    # a 0.5 GeV particle (not reconstructable) is left out
    particles = pd.DataFrame({
        "pt": [1.0, 2.0, 1.5, 3.0, 1.2, 0.5], "eta": [0.1, -0.2, 0.3, 0.0, 2.5, 0.0],
        "nhits": [4, 5, 4, 5, 9, 4], "vz": [1.0, -3.0, 5.0, -20.0, 7.0, 1.0],
        "region": ["barrel"] * 4 + ["endcap", "barrel"],
        "dm_matched": [True, True, False, False, True, True]})
    rows = {(r["region"], r["low"]): r for r in dm_by_vertex_z(particles)}
    assert (rows[("barrel", 0.0)]["n"], rows[("barrel", 0.0)]["dm_efficiency"]) == (1, 1.0)
    assert (rows[("barrel", 2.0)]["n"], rows[("barrel", 2.0)]["dm_efficiency"]) == (1, 1.0)
    assert (rows[("barrel", 4.0)]["n"], rows[("barrel", 4.0)]["dm_efficiency"]) == (1, 0.0)
    assert (rows[("barrel", 14.0)]["n"], rows[("barrel", 14.0)]["dm_efficiency"]) == (1, 0.0)
    assert rows[("barrel", 6.0)]["n"] == 0 and rows[("barrel", 6.0)]["dm_efficiency"] is None
    assert (rows[("endcap", 6.0)]["n"], rows[("endcap", 6.0)]["dm_efficiency"]) == (1, 1.0)
    assert sum(r["n"] for r in rows.values()) == 5
