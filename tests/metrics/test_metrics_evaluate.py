"""Multi-event evaluation, the summary table and the notebook-05 helpers (dataset, submissions
found under runs/, baselines on the fly)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from trackstudy.data.io import read_event
from trackstudy.errors import DataError
from trackstudy.metrics import evaluate_events, evaluate_submission_file, summary_table, write_submission
from trackstudy.study.evaluation import collect_evaluations, find_submissions, resolve_volumes


@pytest.fixture(scope="module")
def two_events(tmp_path_factory, mini_dir):
    """The mini event twice, as events 1 and 2."""
    out = tmp_path_factory.mktemp("two")
    for f in mini_dir.glob("event000000001-*"):
        if "cells" in f.name:
            continue
        shutil.copy(f, out / f.name)
        shutil.copy(f, out / f.name.replace("event000000001", "event000000002"))
    return out


def truth_sub(ev, event_id):
    return pd.DataFrame({"event_id": event_id, "hit_id": ev.truth.hit_id, "track_id": ev.truth.particle_id})


def test_evaluate_events_means_and_pooled_tables(two_events):
    ev1 = read_event(two_events, 1)
    ev2 = read_event(two_events, 2)
    rng = np.random.default_rng(0)
    bad = truth_sub(ev2, 2).assign(track_id=rng.integers(0, 300, len(ev2.truth)))
    sub = pd.concat([truth_sub(ev1, 1), bad], ignore_index=True)
    res = evaluate_events(sub, [ev1, ev2], volumes=None, name="half")
    assert res.per_event.event_id.tolist() == [1, 2]
    s1, s2 = res.per_event.trackml_score.tolist()
    assert s1 == pytest.approx(1.0) and s2 < 0.05
    assert res.summary["trackml_score"] == pytest.approx((s1 + s2) / 2)
    assert res.summary["n_events"] == 2
    assert res.summary["n_particles"] == 2 * res.per_event.n_particles.iloc[0]  # counts are summed
    assert set(res.particles.event_id) == {1, 2} and {"pt", "eta", "dm_matched"} <= set(res.particles.columns)
    assert {"pt", "eta", "phi"} <= set(res.tracks.columns)  # estimated track parameters
    table = summary_table([res])
    assert table.loc["half", "trackml_score"] == pytest.approx(res.summary["trackml_score"])


def test_evaluate_submission_file_subset_of_events(two_events, tmp_path):
    ev2 = read_event(two_events, 2)
    path = write_submission(truth_sub(ev2, 2), tmp_path / "model" / "submission.csv")
    res = evaluate_submission_file(path, two_events)
    assert res.name == "model" and res.per_event.event_id.tolist() == [2]
    with pytest.raises(DataError, match="event 2 is not in the data"):
        evaluate_submission_file(path, two_events, n_events=1)


def test_collect_evaluations_finds_submissions(two_events, tmp_path):
    runs = tmp_path / "runs"
    ev1 = read_event(two_events, 1)
    write_submission(truth_sub(ev1, 1), runs / "perfect_model" / "submission.csv")
    write_submission(truth_sub(ev1, 99), runs / "other_data" / "submission.csv")
    assert [p.parent.name for p in find_submissions(runs)] == ["other_data", "perfect_model"]
    evals, sources = collect_evaluations(two_events, baselines="truth,random", runs_dir=runs, volumes="all",
                                         n_events=1)
    assert list(evals) == ["truth", "random", "perfect_model"]
    assert evals["perfect_model"].summary["trackml_score"] == pytest.approx(1.0)
    status = dict(zip(sources.model, sources.status))
    assert status["perfect_model"] == "ok" and status["other_data"].startswith("skipped:")
    assert "event 99 is not in the data" in status["other_data"]
    cov = dict(zip(sources.model, sources.hit_coverage))
    assert cov["perfect_model"] == 1.0 and cov["truth"] == 1.0 and np.isnan(cov["other_data"])


def test_resolve_volumes():
    assert resolve_volumes("pixel") == (7, 8, 9) and resolve_volumes("") is None and resolve_volumes("8,9") == (8, 9)


def test_collect_evaluations_baseline_overrides(two_events, tmp_path):
    evals, sources = collect_evaluations(
        two_events, baselines=["dbscan-helix"], runs_dir=tmp_path / "no_runs", n_events=1, volumes="pixel",
        baseline_overrides={"dbscan-helix": {"n_curvature": 3, "z0_range": [-20.0, 20.0, 20.0]}})
    assert list(evals) == ["dbscan-helix"] and sources.status.tolist() == ["ok"]
    assert evals["dbscan-helix"].per_event.n_hits.tolist() == [2783]
    assert 0.0 < evals["dbscan-helix"].summary["trackml_score"] < 1.0
