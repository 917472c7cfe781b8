"""Baselines: truth / random / shuffle on the real mini event, the helix unrolling on a hand-made
helix, DBSCAN labels against scikit-learn, the merge rule, parameters and the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score

from trackstudy.baselines import (
    HelixDBSCANParams,
    baseline_submission,
    load_baseline_params,
    run_baseline,
    unrolled_features,
)
from trackstudy.baselines.dbscan_helix import cluster_quality, dbscan_labels, merge_step
from trackstudy.cli import main
from trackstudy.data.io import read_event, select_volumes
from trackstudy.errors import ConfigError
from trackstudy.metrics import evaluate_event, read_submission, trackml_score


@pytest.fixture(scope="module")
def mini(mini_dir):
    return select_volumes(read_event(mini_dir))


def test_truth_baseline_is_perfect(mini):
    sub = run_baseline("truth", mini)
    assert sub.track_id.min() >= 0 and len(sub) == len(mini.hits)
    got = evaluate_event(sub, mini.truth, mini.particles, hits=mini.hits)
    assert got["trackml_score"] == pytest.approx(1.0, abs=1e-9)
    assert got["dm_efficiency"] == got["perfect_efficiency"] == 1.0
    assert got["fake_rate"] == 0.0 and got["duplicate_rate"] == 0.0  # noise hits are one-hit tracks


def test_random_and_shuffle(mini):
    r1 = run_baseline("random", mini, {"mean_hits": 8}, seed=1)
    r2 = run_baseline("random", mini, {"mean_hits": 8}, seed=1)
    assert r1.equals(r2) and r1.track_id.nunique() <= round(len(mini.hits) / 8)
    assert trackml_score(r1, mini.truth) < 0.02
    assert trackml_score(run_baseline("shuffle", mini, {"rate": 0.0}), mini.truth) == pytest.approx(1.0)
    scores = [trackml_score(run_baseline("shuffle", mini, {"rate": r}, seed=0), mini.truth) for r in (0.05, 0.3, 0.9)]
    assert 1.0 > scores[0] > scores[1] > scores[2]
    assert scores[0] > 0.85  # 5 % of hits moved: most tracks keep both majorities
    with pytest.raises(ConfigError, match="rate"):
        run_baseline("shuffle", mini, {"rate": 1.5})
    with pytest.raises(ConfigError, match="unknown baseline"):
        run_baseline("magic", mini)


def test_unrolling_collapses_a_helix():
    # a unit-charge helix from (0, 0, z0): phi(r) = phi0 + asin(k r), z = z0 + cot(theta) * s
    k, phi0, z0, cot = 4e-4, 0.7, 23.0, 1.3
    r = np.array([32.0, 72.0, 116.0, 172.0])
    turn = np.arcsin(k * r)
    x, y = r * np.cos(phi0 + turn), r * np.sin(phi0 + turn)
    z = z0 + cot * turn / k
    f = unrolled_features(x, y, z, k, z0, eta_weight=1.0)
    assert np.allclose(f[:, 0], np.cos(phi0)) and np.allclose(f[:, 1], np.sin(phi0))
    assert np.allclose(f[:, 2], np.arcsinh(cot))
    g = unrolled_features(x, y, z, -k, 0.0, eta_weight=1.0)  # wrong charge and vertex: spread out
    assert np.ptp(np.arctan2(g[:, 1], g[:, 0])) > 0.1 and np.ptp(g[:, 2]) > 0.1


def test_dbscan_labels_match_sklearn():
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(c, 0.01, (50, 3)) for c in rng.uniform(-1, 1, (20, 3))] +
                         [rng.uniform(-1, 1, (300, 3))])
    ours = dbscan_labels(pts, 0.03)
    ref = DBSCAN(eps=0.03, min_samples=1).fit(pts).labels_
    assert adjusted_rand_score(ref, ours) == 1.0
    assert (dbscan_labels(pts, 0.03, min_samples=4) == DBSCAN(eps=0.03, min_samples=4).fit(pts).labels_).all()


def test_merge_rule_by_hand():
    layer = np.array([0, 1, 2, 3, 0, 1])
    # current: hits 0-1 together (2 layers), the rest alone; new: hits 0-3 (4 layers) and 4-5 (2 layers)
    cur = np.array([0, 0, 1, 2, 3, 4])
    new = np.array([0, 0, 0, 0, 1, 1])
    q = cluster_quality(cur, layer, max_hits=10, double_hit_penalty=0.5)
    assert q.tolist() == [2, 2, 1, 1, 1, 1]
    out, _ = merge_step(cur, new, layer, max_hits=10)
    assert len(set(out[:4])) == 1 and out[4] == out[5] and out[0] != out[4]
    # a merged cluster with every layer doubled loses against separate tracks
    q2 = cluster_quality(np.zeros(6, dtype=int), np.array([0, 0, 1, 1, 2, 2]), 10, 1.0)
    assert (q2 == 0).all()
    # clusters over max_hits are never adopted
    assert (merge_step(cur, new, layer, max_hits=3)[0][:4] == cur[:4]).all()


def test_dbscan_helix_on_real_mini_event_coarse_scan(mini):
    params = {**load_baseline_params()["dbscan-helix"], "n_curvature": 21, "z0_range": [-100.0, 100.0, 10.0]}
    sub = run_baseline("dbscan-helix", mini, params)
    assert sub.track_id.min() >= 0 and sub.hit_id.is_unique and len(sub) == len(mini.hits)
    assert sub.track_id.max() == sub.track_id.nunique() - 1  # the two passes' tracks numbered densely
    one_pass = run_baseline("dbscan-helix", mini, {**params, "n_passes": 1})
    assert one_pass.track_id.nunique() != sub.track_id.nunique()
    got = evaluate_event(sub, mini.truth, mini.particles, hits=mini.hits)
    # measured: score 0.556, DM efficiency 0.714, fake rate 0.118 on this real 5 %-density event
    assert got["trackml_score"] > 0.45 and got["dm_efficiency"] > 0.6


@pytest.mark.slow
def test_dbscan_helix_on_real_mini_event_yaml_params(mini):
    sub = run_baseline("dbscan-helix", mini, load_baseline_params()["dbscan-helix"])
    got = evaluate_event(sub, mini.truth, mini.particles, hits=mini.hits)
    # measured with params/baselines.yaml: score 0.726, DM efficiency 0.905, fake rate 0.066
    assert got["trackml_score"] > 0.65 and got["dm_efficiency"] > 0.85 and got["fake_rate"] < 0.2


def test_params_checked():
    with pytest.raises(ConfigError, match="unknown parameter"):
        HelixDBSCANParams.from_dict({"epsilon": 1})
    with pytest.raises(ConfigError, match="eps"):
        HelixDBSCANParams(eps=0)
    with pytest.raises(ConfigError, match="z0_values"):
        HelixDBSCANParams(z0_values=())
    with pytest.raises(ConfigError, match="n_passes"):
        HelixDBSCANParams(n_passes=0)
    assert HelixDBSCANParams.from_dict({"z0_range": [-10, 10, 5]}).z0_values == (-10.0, -5.0, 0.0, 5.0, 10.0)
    with pytest.raises(ConfigError, match="not both"):
        HelixDBSCANParams.from_dict({"z0_range": [-10, 10, 5], "z0_values": [0.0]})
    with pytest.raises(ConfigError, match="step > 0"):
        HelixDBSCANParams.from_dict({"z0_range": [-10, 10, 0]})
    ks = HelixDBSCANParams(pt_min=1.0, n_curvature=5).curvatures()
    assert ks[0] == 0 and np.isclose(np.abs(ks).max(), 0.299792458 * 2 / 2000)


def test_load_params_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("dbscan:\n  eps: 1\n")
    with pytest.raises(ConfigError, match="unknown method section"):
        load_baseline_params(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("random: [1, 2]\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_baseline_params(tmp_path / "b.yaml")
    with pytest.raises(ConfigError, match="parameter file not found"):
        load_baseline_params(tmp_path / "c.yaml")


def test_baseline_cli_end_to_end(mini_dir, tmp_path, capsys):
    from trackstudy.baselines import METHODS
    from trackstudy.cli import baseline as cli_baseline

    assert sorted(cli_baseline.METHODS) == sorted(METHODS)
    out = tmp_path / "truth.csv"
    assert main(["baseline", "--method", "truth", "--data", str(mini_dir), "--out", str(out),
                 "--volumes", "pixel"]) == 0
    sub = read_submission(out)
    assert set(sub.columns) == {"event_id", "hit_id", "track_id"} and (sub.event_id == 1).all()
    assert len(sub) == 2783
    assert main(["baseline", "--method", "truth", "--data", str(mini_dir), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(mini_dir), "--submission", str(out), "--volumes", "pixel", "--json"]) == 0
    assert '"trackml_score": 1.0' in capsys.readouterr().out
    assert main(["baseline", "--method", "random", "--data", str(mini_dir), "--out", str(out), "--rate", "0.1",
                 "--force"]) == 2
    assert "--rate applies to --method shuffle" in capsys.readouterr().err


def test_baseline_submission_multi_event(mini):
    sub = baseline_submission("random", [mini, mini], {"mean_hits": 5}, seed=3)
    assert sub.event_id.tolist().count(1) == 2 * len(mini.hits)
    a, b = sub.iloc[: len(mini.hits)], sub.iloc[len(mini.hits):]
    assert not np.array_equal(a.track_id.to_numpy(), b.track_id.to_numpy())  # seed + i per event
    assert isinstance(sub, pd.DataFrame)
