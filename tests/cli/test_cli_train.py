"""``trackstudy train`` -> ``predict`` -> ``evaluate`` end to end on the smoke config, and one-line errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from trackstudy.cli import main
from trackstudy.config import PARAMS_DIR
from trackstudy.training import resolve_config
from trackstudy.training.data import dataset_folder

SMOKE = PARAMS_DIR / "train_smoke.yaml"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained by the CLI from params/train_smoke.yaml, shortened, with its data in a temp folder."""
    tmp = tmp_path_factory.mktemp("cli_train")
    root = tmp / "data"
    args = ["train", "--config", str(SMOKE), "--out", str(tmp / "run"), "--quiet", "--json",
            "--set", f"data.root={root}", "--set", "train.steps=8", "--set", "train.device=cpu",
            "--set", "train.num_threads=1"]
    return tmp, root, args


def test_train_predict_evaluate(trained, capsys):
    tmp, root, args = trained
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 8 and summary["family"] == "contrastive"
    assert summary["locality"]["method"] == "dbscan"
    run = tmp / "run"
    assert (run / "model.pt").is_file() and (run / "summary.json").is_file()

    cfg = resolve_config(SMOKE)
    val_dir = dataset_folder({**cfg["data"]["val"]}, root, progress=False)
    out = tmp / "sub.csv"
    assert main(["predict", "--run", str(run), "--data", str(val_dir), "--out", str(out), "--quiet",
                 "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    for stage in ("clustering", "encoder", "track_formation", "total"):
        assert stage in text
    sub = pd.read_csv(out)
    assert list(sub.columns) == ["event_id", "hit_id", "track_id"] and sub["event_id"].nunique() == 4

    # barrel views: every barrel hit once per view, the rows counted
    assert main(["predict", "--run", str(run), "--data", str(val_dir), "--out", str(tmp / "views.csv"), "--quiet",
                 "--events", "1", "--barrel-views=-10,0,10"]) == 0
    assert "barrel views from z = -10, 0, 10 mm:" in capsys.readouterr().out
    assert main(["predict", "--run", str(run), "--data", str(val_dir), "--out", str(tmp / "frame.csv"), "--quiet",
                 "--events", "1", "--barrel-views=-10,0,10", "--view-frame"]) == 0
    assert "rows, each in its view's frame" in capsys.readouterr().out
    assert len(pd.read_csv(tmp / "views.csv")) == len(sub[sub["event_id"] == sub["event_id"].iloc[0]])

    # no overwrite without --force; with it, fine
    assert main(["predict", "--run", str(run), "--data", str(val_dir), "--out", str(out), "--quiet"]) == 2
    assert "exists (use --force" in capsys.readouterr().err
    assert main(["predict", "--run", str(run), "--data", str(val_dir), "--out", str(out), "--quiet", "--force",
                 "--events", "1"]) == 0
    capsys.readouterr()

    assert main(["evaluate", "--data", str(val_dir), "--submission", str(out), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["n_events"] == 1 and 0.0 <= ev["trackml_score"] <= 1.0

    # the same run again: refused (already trained) with a hint; --resume: nothing left to do
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 8


@pytest.mark.parametrize("command", ["train", "predict"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "--out" in capsys.readouterr().out


def test_train_config_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--config", str(SMOKE), "--out", str(tmp_path / "r"), "--set", "train.stesp=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    # the error is in the --set, not in the file
    assert "--set train.stesp=3: unknown config key 'train.stesp'; valid keys in train: steps" in err
    assert main(["train", "--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "r")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["train", "--config", str(SMOKE), "--out", str(tmp_path / "r"), "--set", "train.steps"]) == 2
    assert "expected section.key=value" in capsys.readouterr().err


def test_predict_errors(tmp_path, mini_dir, capsys):
    assert main(["predict", "--run", str(tmp_path / "norun"), "--data", str(mini_dir),
                 "--out", str(tmp_path / "s.csv")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert main(["predict", "--run", str(tmp_path), "--data", str(tmp_path / "nodata"),
                 "--out", str(tmp_path / "s.csv")]) == 2
    assert "no such data folder" in capsys.readouterr().err
    assert main(["predict", "--run", str(tmp_path), "--data", str(mini_dir), "--out", str(tmp_path / "s.csv"),
                 "--events", "0"]) == 2
    assert "--events 0: must be >= 1" in capsys.readouterr().err
    assert main(["predict", "--run", str(tmp_path), "--data", str(mini_dir), "--out", str(tmp_path / "s.csv"),
                 "--barrel-views", "0,zero"]) == 2
    assert "--barrel-views '0,zero': expected vertex z values in mm" in capsys.readouterr().err
