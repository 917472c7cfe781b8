"""``trackstudy locality`` in-process."""

import json
import shutil
from pathlib import Path

import pytest

from trackstudy.cli import main
from trackstudy.cli.locality import parse_params
from trackstudy.errors import ConfigError

DATA = Path(__file__).resolve().parents[2] / "data" / "real" / "mini"


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("method", ["dbscan", "window", "density", "grid"])
def test_json_output(capsys, method):
    d = _json(capsys, ["locality", str(DATA), "--method", method, "--json"])
    for region in ("barrel", "endcap", "all"):
        for key in ("reconstructible_ratio", "cluster_dm_efficiency", "n_clusters", "n_tracks",
                    "attention_reduction"):
            assert d[region][key] is not None, (region, key)
        assert 0 <= d[region]["reconstructible_ratio"] <= 1
    assert d["all"]["n_tracks"] == 63
    assert 0 < d["block_sparsity"] < 1 and d["seconds"] > 0
    assert d["method"] == method and d["n_events"] == 1


def test_params_change_the_result(capsys):
    small = _json(capsys, ["locality", str(DATA), "--method", "grid", "--param", "cell_u=2", "--no-dm", "--json"])
    big = _json(capsys, ["locality", str(DATA), "--method", "grid", "--param", "cell_u=50",
                         "--param", "barrel_cell_v=2000", "--no-dm", "--json"])
    assert small["params"] == {"cell_u": "2"}
    assert big["barrel"]["n_clusters"] < small["barrel"]["n_clusters"]
    assert big["barrel"]["attention_reduction"] > small["barrel"]["attention_reduction"]
    assert "cluster_dm_efficiency" not in small["all"]


def test_text_output(capsys):
    assert main(["locality", str(DATA / "event000000001-hits.csv.gz"), "--method", "density"]) == 0
    out = capsys.readouterr().out
    assert "reconstructible ratio" in out and "attention reduction" in out and "block sparsity" in out


def test_several_events_give_means(tmp_path, capsys):
    for eid in ("000000001", "000000002"):
        for part in ("hits", "truth", "particles"):
            shutil.copy(DATA / f"event000000001-{part}.csv.gz", tmp_path / f"event{eid}-{part}.csv.gz")
    one = _json(capsys, ["locality", str(DATA), "--method", "grid", "--json", "--no-dm"])
    two = _json(capsys, ["locality", str(tmp_path), "--method", "grid", "--json", "--no-dm"])
    assert two["n_events"] == 2 and two["event_ids"] == [1, 2]
    assert two["barrel"]["reconstructible_ratio"] == pytest.approx(one["barrel"]["reconstructible_ratio"])
    lim = _json(capsys, ["locality", str(tmp_path), "--n-events", "1", "--method", "grid", "--json", "--no-dm"])
    assert lim["n_events"] == 1


def test_hits_only_event(tmp_path, capsys):
    shutil.copy(DATA / "event000000001-hits.csv.gz", tmp_path)
    d = _json(capsys, ["locality", str(tmp_path), "--method", "grid", "--json"])
    assert d["all"]["reconstructible_ratio"] is None and d["all"]["n_clusters"] > 0
    assert main(["locality", str(tmp_path), "--method", "grid"]) == 0
    assert "no truth" in capsys.readouterr().out


def test_all_volumes(capsys):
    pix = _json(capsys, ["locality", str(DATA), "--method", "grid", "--json", "--no-dm"])
    allv = _json(capsys, ["locality", str(DATA), "--method", "grid", "--all-volumes", "--json", "--no-dm"])
    assert pix["all"]["n_hits"] == 2783 and allv["all"]["n_hits"] == 5527


@pytest.mark.parametrize("argv, message", [
    (["--param", "epsilon=3"], "unknown dbscan parameter 'epsilon'"),
    (["--param", "eps"], "expected NAME=VALUE"),
    (["--param", "eps=-1"], "positive"),
    (["--radius", "0"], "radius"),
])
def test_bad_input_exits_2(capsys, argv, message):
    assert main(["locality", str(DATA), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_path_exits_2(tmp_path, capsys):
    assert main(["locality", str(tmp_path / "nothing")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_parse_params():
    assert parse_params(["a=1", " b = x "]) == {"a": "1", "b": "x"}
    with pytest.raises(ConfigError):
        parse_params(["=1"])


def test_vertex_scan_option(capsys):
    plain = _json(capsys, ["locality", str(DATA), "--json", "--no-dm"])
    barrel = _json(capsys, ["locality", str(DATA), "--vertex-scan", "barrel", "--json", "--no-dm"])
    endcap = _json(capsys, ["locality", str(DATA), "--json", "--no-dm", "--vertex-scan"])
    # the real mini event has a wide luminous region: refining the barrel from each cluster's
    # vertex z joins track fragments
    assert barrel["barrel"]["reconstructible_ratio"] > plain["barrel"]["reconstructible_ratio"]
    assert endcap["barrel"] == plain["barrel"]


def test_event_without_pixel_hits_exits_2(tmp_path, capsys):
    import pandas as pd

    hits = pd.read_csv(DATA / "event000000001-hits.csv.gz")
    hits[~hits["volume_id"].isin([7, 8, 9])].to_csv(tmp_path / "event000000005-hits.csv", index=False)
    assert main(["locality", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no hits in the selection" in err and "7, 8, 9" in err
    assert main(["locality", str(tmp_path), "--all-volumes", "--method", "grid", "--json"]) == 0


def test_view_frame_option_takes_the_three_values_of_the_config_key(capsys):
    import argparse

    from trackstudy.cli.locality import add_view_frame_option

    p = argparse.ArgumentParser(prog="x")
    add_view_frame_option(p, "default: the run's")
    assert p.parse_args([]).view_frame is False
    assert p.parse_args(["--view-frame"]).view_frame is True
    assert p.parse_args(["--view-frame", "both"]).view_frame == "both"
    with pytest.raises(SystemExit):
        p.parse_args(["--view-frame", "one"])
    assert "--view-frame: invalid choice: 'one'" in capsys.readouterr().err
    assert "both frames, their candidates pooled; default: the run's" in " ".join(p.format_help().split())
