"""``trackstudy inspect``: the real reduced event, JSON keys, errors with exit status 2."""

from __future__ import annotations

import json

from trackstudy.cli import main


def test_inspect_mini_json(mini_dir, capsys):
    assert main(["inspect", str(mini_dir), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["event_id"] == 1
    assert row["n_hits"] == 5527 and row["n_particles"] == 548
    assert row["n_pixel_hits"] == 2783
    assert row["n_reconstructable_pixel"] == 63  # pT > 0.9 GeV, >= 3 pixel hits: data/real/README.trackml.md
    assert abs(row["noise_fraction"] - 0.15) < 0.005
    for key in ("event_id", "n_hits", "n_pixel_hits", "n_particles", "noise_fraction", "n_reconstructable"):
        assert key in row
    assert sum(row["hits_per_volume"].values()) == 5527
    assert row["hits_per_layer"]["8:2"] == 404


def test_inspect_table(mini_dir, capsys):
    assert main(["inspect", str(mini_dir / "event000000001-hits.csv.gz")]) == 0
    out = capsys.readouterr().out
    assert "5527" in out and "548" in out and "hits per volume and layer" in out


def test_inspect_errors_are_one_line(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file or folder" in err
    (tmp_path / "event000000001-hits.csv").write_text("hit_id,x\n1,2\n")
    assert main(["inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing columns" in err and "Traceback" not in err
