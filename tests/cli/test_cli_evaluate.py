"""``trackstudy evaluate``: JSON keys and values on the real mini event, one-line errors (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from trackstudy.cli import main
from trackstudy.data.io import read_event


@pytest.fixture(scope="module")
def mini_truth(mini_dir):
    return read_event(mini_dir).truth


def write(tmp_path, df, name="sub.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_evaluate_truth_submission_json(mini_dir, mini_truth, tmp_path, capsys):
    sub = pd.DataFrame({"event_id": 1, "hit_id": mini_truth.hit_id, "track_id": mini_truth.particle_id})
    path = write(tmp_path, sub)
    assert main(["evaluate", "--data", str(mini_dir), "--submission", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("trackml_score", "dm_efficiency", "perfect_efficiency", "lhc_efficiency", "fake_rate",
                "duplicate_rate", "n_events", "per_event", "dm_efficiency_pt1", "barrel_dm_efficiency"):
        assert key in out
    assert out["n_events"] == 1 and len(out["per_event"]) == 1
    assert out["trackml_score"] == pytest.approx(1.0)
    assert out["dm_efficiency"] == 1.0 and out["duplicate_rate"] == 0.0
    assert out["per_event"][0]["event_id"] == 1


def test_evaluate_pixel_volumes_and_pt(mini_dir, mini_truth, tmp_path, capsys):
    # random submission over all hits; pixel-only evaluation reads the 2,783 pixel hits
    rng = np.random.default_rng(0)
    sub = pd.DataFrame({"event_id": 1, "hit_id": mini_truth.hit_id, "track_id": rng.integers(0, 500, len(mini_truth))})
    path = write(tmp_path, sub)
    # hits outside the selected volumes are dropped, not an error: same numbers as a pixel-only file
    assert main(["evaluate", "--data", str(mini_dir), "--submission", str(path), "--volumes", "pixel", "--json"]) == 0
    all_hits = json.loads(capsys.readouterr().out)
    hits = read_event(mini_dir).hits
    pixel = hits.hit_id[hits.volume_id.isin([7, 8, 9])]
    path = write(tmp_path, sub[sub.hit_id.isin(pixel)], "pix.csv")
    assert main(["evaluate", "--data", str(mini_dir), "--submission", str(path), "--volumes", "7,8,9",
                 "--pt-min", "1.0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["per_event"][0]["n_hits"] == 2783
    assert out["trackml_score"] < 0.05 and out["n_particles"] == out["n_particles_pt1"]
    assert main(["evaluate", "--data", str(mini_dir), "--submission", str(path), "--volumes", "pixel", "--json"]) == 0
    pix_only = json.loads(capsys.readouterr().out)
    assert pix_only["per_event"] == all_hits["per_event"]
    assert main(["evaluate", "--data", str(mini_dir), "--submission", str(path), "--volumes", "pixel"]) == 0
    text = capsys.readouterr().out
    assert "mean over 1 event(s)" in text and "trackml_score" in text
    bad = write(tmp_path, pd.DataFrame({"event_id": [1, 1], "hit_id": [6, 999999], "track_id": [1, 2]}), "bad.csv")
    assert main(["evaluate", "--data", str(mini_dir), "--submission", str(bad), "--volumes", "pixel"]) == 2
    assert "row 1: hit 999999 is not a hit of event 1" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ("event_id,hit_id\n1,1\n", "missing column track_id"),
    ("event_id,hit_id,track_id\n1,6,1\n1,999999,2\n", "row 1: hit 999999 is not a hit of event 1"),
    ("event_id,hit_id,track_id\n1,6,1\n1,6,2\n", "row 1: duplicate hit_id 6"),
    ("event_id,hit_id,track_id\n1,6,1\n1,9,2.5\n", "column track_id, row 1: 2.5 is not an integer"),
    ("event_id,hit_id,track_id\n1,6,1\n1,9,abc\n", "column track_id, row 1: 'abc' is not an integer"),
    ("event_id,hit_id,track_id\n1,6,1\n7,9,2\n", "event 7 is not in the data"),
    ("", "empty"),
])
def test_malformed_submissions_exit_2(mini_dir, tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["evaluate", "--data", str(mini_dir), "--submission", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and str(path) in err and "Traceback" not in err


def test_bad_options_exit_2(mini_dir, tmp_path, capsys):
    path = tmp_path / "s.csv"
    path.write_text("event_id,hit_id,track_id\n1,6,1\n")
    assert main(["evaluate", "--data", str(mini_dir), "--submission", str(path), "--min-hits", "0"]) == 2
    assert "--min-hits" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(mini_dir), "--submission", str(path), "--volumes", "x"]) == 2
    assert "--volumes" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tmp_path / "nope"), "--submission", str(path)]) == 2
    assert "no such folder" in capsys.readouterr().err
