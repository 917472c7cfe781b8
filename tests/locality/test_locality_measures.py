"""Locality measurements on hand-computed cases and on the real reduced event."""

import numpy as np
import pandas as pd
import pytest

from trackstudy.config import REAL_DATA_DIR
from trackstudy.data.io import read_event
from trackstudy.errors import ConfigError, DataError
from trackstudy.locality.measures import (
    attention_reduction,
    block_fraction,
    cluster_sizes,
    mean_results,
    measure_locality,
    particle_containment,
    reconstructible_ratio,
)
from trackstudy.locality.projection import BARREL, ENDCAP_POS
from trackstudy.locality.scan import best, best_params, compare_methods, scan


def _block_fraction_dense(labels, block_size):
    """Reference: build the N x N same-cluster mask after a stable sort and look at every block."""
    s = np.sort(labels, kind="stable")
    mask = s[:, None] == s[None, :]
    n = len(s)
    nb = -(-n // block_size)
    count = 0
    for i in range(nb):
        for j in range(nb):
            count += mask[i * block_size:(i + 1) * block_size, j * block_size:(j + 1) * block_size].any()
    return count / nb**2


def test_attention_reduction_hand_case():
    # sizes 2, 1, 1 of 4 hits: (4 + 1 + 1) / 16
    assert attention_reduction([0, 0, 1, 2]) == pytest.approx(6 / 16)
    assert attention_reduction([3, 3, 3]) == 1.0
    assert attention_reduction(np.arange(10)) == pytest.approx(0.1)
    assert cluster_sizes([5, 5, 0]).tolist() == [1, 2]  # empty labels skipped


def test_block_fraction_hand_case():
    # sorted [0 0 | 0 1 | 1 2] with blocks of 2: cluster 0 covers blocks 0-1, cluster 1 blocks 1-2,
    # cluster 2 block 2 -> pairs (0,0) (0,1) (1,0) (1,1) (1,2) (2,1) (2,2) = 7 of 9
    assert block_fraction([2, 1, 0, 1, 0, 0], block_size=2) == pytest.approx(7 / 9)
    assert block_fraction(np.arange(256), 128) == pytest.approx(0.5)  # singletons: the diagonal
    assert block_fraction(np.zeros(300, dtype=int), 128) == 1.0


def test_block_fraction_matches_dense_reference():
    rng = np.random.default_rng(7)
    for n, k, bs in [(1000, 40, 128), (777, 300, 64), (130, 3, 128), (513, 513, 16)]:
        labels = rng.integers(0, k, n)
        assert block_fraction(labels, bs) == pytest.approx(_block_fraction_dense(labels, bs))


def test_label_errors():
    with pytest.raises(ConfigError, match=">= 0"):
        attention_reduction([0, -1])
    with pytest.raises(ConfigError, match="integers"):
        block_fraction(np.array([0.5, 1.0]))
    with pytest.raises(ConfigError, match="block_size"):
        block_fraction([0, 1], block_size=0)


def _hand_particles():
    # A: pT 1.0, 4 hits, best cluster holds 2 (50%) -> reconstructible, not contained
    # B: pT 2.0, 3 hits all in cluster 3 -> contained
    # C: pT 0.5 -> not selected; D: pT 1.5 but 2 hits -> not selected
    # E: pT 1.0, 3 hits in 3 clusters -> not reconstructible
    particles = pd.DataFrame({"particle_id": np.array([11, 12, 13, 14, 15], dtype=np.int64),
                              "px": [1.0, 2.0, 0.5, 1.5, 0.6], "py": [0.0, 0.0, 0.0, 0.0, 0.8]})
    pid = np.array([11, 11, 11, 11, 12, 12, 12, 13, 13, 13, 14, 14, 15, 15, 15, 0], dtype=np.int64)
    lab = np.array([0, 0, 1, 2, 3, 3, 3, 4, 4, 4, 5, 5, 6, 7, 8, 9])
    return particles, pid, lab


def test_particle_containment_hand_case():
    particles, pid, lab = _hand_particles()
    t = particle_containment(lab, pid, particles).set_index("particle_id")
    assert t.loc[11, "fraction"] == 0.5 and t.loc[11, "reconstructible"] and not t.loc[11, "contained"]
    assert t.loc[12, "contained"] and t.loc[12, "selected"]
    assert not t.loc[13, "selected"] and not t.loc[14, "selected"]
    assert t.loc[15, "fraction"] == pytest.approx(1 / 3) and not t.loc[15, "reconstructible"]
    assert t.loc[15, "pt"] == pytest.approx(1.0)
    assert 0 not in t.index  # noise is no particle
    assert reconstructible_ratio(lab, pid, particles) == pytest.approx(2 / 3)


def test_particle_region_is_the_majority_surface():
    particles, pid, lab = _hand_particles()
    surface = np.full(len(pid), BARREL)
    surface[[0, 1, 2]] = ENDCAP_POS      # A: 3 of 4 hits on the endcap
    surface[[4]] = ENDCAP_POS            # B: 1 of 3
    surface[[12]] = ENDCAP_POS           # E: 1 of 3
    t = particle_containment(lab, pid, particles, surface=surface).set_index("particle_id")
    assert t.loc[11, "region"] == "endcap" and t.loc[12, "region"] == "barrel"
    assert reconstructible_ratio(lab, pid, particles, surface=surface, region="endcap") == 1.0
    assert reconstructible_ratio(lab, pid, particles, surface=surface, region="barrel") == 0.5
    # a 2-2 tie goes to the barrel
    surface2 = np.full(len(pid), BARREL)
    surface2[[0, 1]] = ENDCAP_POS
    t2 = particle_containment(lab, pid, particles, surface=surface2).set_index("particle_id")
    assert t2.loc[11, "region"] == "barrel"


def test_containment_errors():
    particles, pid, lab = _hand_particles()
    with pytest.raises(DataError, match="16 cluster labels for 3"):
        particle_containment(lab, pid[:3], particles)
    with pytest.raises(DataError, match="int64"):
        particle_containment(lab, pid.astype(float), particles)
    with pytest.raises(DataError, match="not in the particles table"):
        particle_containment(lab, pid, particles[particles.particle_id != 12])


@pytest.fixture(scope="module")
def mini():
    return read_event(REAL_DATA_DIR / "mini")


def test_measure_on_real_mini_event(mini):
    res = measure_locality(mini, "dbscan")
    d = res.to_dict()
    # 63 particles with pT > 0.9 GeV and >= 3 pixel hits in the real mini event (data/real/README.trackml.md)
    assert d["all"]["n_tracks"] == 63
    assert d["barrel"]["n_tracks"] + d["endcap"]["n_tracks"] == 63
    assert d["all"]["n_hits"] == 2783
    assert d["barrel"]["n_hits"] + d["endcap"]["n_hits"] == 2783
    for region in ("barrel", "endcap", "all"):
        r = d[region]
        assert 0 <= r["contained_fraction"] <= r["reconstructible_ratio"] <= 1
        assert 0 <= r["cluster_dm_efficiency"] <= 1
        assert 0 < r["attention_reduction"] < 1 and 0 < r["block_fraction"] <= 1
    assert d["block_sparsity"] == pytest.approx(1 - d["block_fraction"])
    assert d["seconds"] > 0
    assert len(res.labels) == 2783 and res.labels.min() == 0


def test_single_cluster_keeps_every_track(mini):
    # one cluster per surface: a track is contained exactly when all its hits lie on one surface
    from trackstudy.data.io import select_volumes

    res = measure_locality(mini, "grid", params={"cell_u": 1e6, "cell_v": 1e6, "offset_v": 0.5}, dm=False)
    assert res.regions["barrel"]["n_clusters"] == 1 and res.regions["endcap"]["n_clusters"] == 2
    assert res.regions["barrel"]["attention_reduction"] == 1.0
    sel = select_volumes(mini)
    pid = sel.truth.set_index("hit_id").loc[sel.hits["hit_id"], "particle_id"].to_numpy()
    n_surf = pd.Series(res.projection.surface[pid != 0]).groupby(pid[pid != 0]).nunique()
    t = res.particles[res.particles["selected"]].set_index("particle_id")
    assert (t["contained"] == (n_surf.loc[t.index] == 1)).all()
    assert res.regions["all"]["contained_fraction"] == pytest.approx((n_surf.loc[t.index] == 1).mean())


def test_measure_without_truth(mini):
    from dataclasses import replace

    res = measure_locality(replace(mini, truth=None, particles=None), "grid")
    d = res.to_dict()
    assert d["all"]["reconstructible_ratio"] is None and d["all"]["n_tracks"] is None
    assert d["all"]["n_clusters"] > 0


def test_mean_results(mini):
    a = measure_locality(mini, "density", dm=False)
    m = mean_results([a, a])
    assert m["n_events"] == 2
    assert m["barrel"]["reconstructible_ratio"] == pytest.approx(a.regions["barrel"]["reconstructible_ratio"])


def test_scan_and_best(mini):
    df = scan(mini, "grid", {"cell_u": [5.0, 20.0], "barrel_cell_v": [50.0, 1e6]}, max_reduction=0.01,
              progress=False)
    assert len(df) == 8 and set(df["region"]) == {"barrel", "endcap"}
    # bigger cells keep more tracks and cost more attention
    b = df[df["region"] == "barrel"].set_index(["cell_u", "barrel_cell_v"])
    assert b.loc[(20.0, 1e6), "reconstructible_ratio"] >= b.loc[(5.0, 50.0), "reconstructible_ratio"]
    assert b.loc[(20.0, 1e6), "attention_reduction"] > b.loc[(5.0, 50.0), "attention_reduction"]
    top = best(df)
    for _, row in top.iterrows():
        feas = df[(df["region"] == row["region"]) & df["feasible"]]
        assert row["attention_reduction"] <= 0.01
        assert row["reconstructible_ratio"] == feas["reconstructible_ratio"].max()
    params = best_params(df)
    assert set(params) <= {"barrel_cell_u", "endcap_cell_u", "barrel_cell_v"}
    with pytest.raises(ConfigError):
        scan(mini, "grid", {"cell_size": [1.0]}, progress=False)


def test_compare_methods_table(mini):
    table = compare_methods(mini, ["grid", "density"], dm=False, progress=False)
    assert len(table) == 6
    assert set(table.columns) >= {"method", "region", "reconstructible_ratio", "n_clusters", "n_tracks",
                                  "attention_reduction"}


def test_plots_render(mini):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trackstudy.plots.locality import plot_cluster_sizes, plot_projection, plot_scan, plot_surfaces

    res = measure_locality(mini, "grid", dm=False)
    ax = plot_surfaces()
    assert len(ax.lines) == 4 + 14 + 3 + 2  # barrel layers, disks, cylinder + 2 planes, 2 boundaries
    fig = plot_projection(res.projection, res.particle_id, kind="particle")
    assert sum(len(t.x) for t in fig.data) == len(res.labels)
    fig = plot_projection(res.projection, res.labels, kind="cluster", max_points=500)
    assert sum(len(t.x) for t in fig.data) == 500
    plot_cluster_sizes({"grid": cluster_sizes(res.labels)})
    df = scan(mini, "grid", {"endcap_cell_u": [8.0, 16.0]}, progress=False)
    axes = plot_scan(df)
    assert len(axes) == 2
    plt.close("all")
