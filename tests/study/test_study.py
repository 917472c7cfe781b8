"""trackstudy.study: the flat notebook parameters -> run configs, folders and the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trackstudy import study
from trackstudy.config import RUNS_DIR
from trackstudy.errors import ConfigError
from trackstudy.metrics.evaluate import Evaluation
from trackstudy.study import runs as study_runs


def test_parse_models():
    assert study.parse_models("contrastive") == ["contrastive"]
    assert study.parse_models(" enc_cla, jm ,") == ["enc_cla", "jm"]
    assert study.parse_models("contrastive,gnn") == ["contrastive", "gnn"]  # every family of models.heads
    with pytest.raises(ConfigError, match="'hept' is not a model family"):
        study.parse_models("contrastive,hept")
    with pytest.raises(ConfigError, match="twice"):
        study.parse_models("jm,jm")
    with pytest.raises(ConfigError, match="got nothing"):
        study.parse_models(" , ")


def test_first_transformer():
    assert study.first_transformer(["gnn", "jm", "contrastive"]) == "jm"
    with pytest.raises(ConfigError, match="gnn holds no transformer"):
        study.first_transformer(["gnn"])


def test_training_config_family_keyed_grid(tmp_path):
    """A base config shared by several families names each family's grid; a family it does not
    name gets its default grid; a grid key that is not the family's parameter is refused before training."""
    from trackstudy.postprocessing.gnn_tracks import GNN_TUNE_GRID

    base = tmp_path / "base.yaml"
    base.write_text("tune: {grid: {contrastive: {k: [4, 8], threshold: 0.9}}}\n")
    assert study.training_config("contrastive", base_config=str(base))["tune"]["grid"] == [{"k": [4, 8], "threshold": [0.9]}]
    assert study.training_config("gnn", base_config=str(base))["tune"]["grid"] == GNN_TUNE_GRID
    base.write_text("tune: {grid: {k: [4, 8]}}\n")
    with pytest.raises(ConfigError, match="tune.grid: 'k' is not a track-formation parameter of gnn; valid: threshold"):
        study.training_config("gnn", base_config=str(base))


def test_run_dir():
    assert study.run_dir("study", "jm") == RUNS_DIR / "study_jm"
    for bad in ("", "../x", ".hidden"):
        with pytest.raises(ConfigError, match="run_prefix"):
            study.run_dir(bad, "jm")


def test_training_config_base_and_overrides(tmp_path):
    base = tmp_path / "enc_reg_base.yaml"
    base.write_text("model: {preset: small, backend: dense}\ntrain: {steps: 77, lr: 0.01}\n"
                    "data: {train: {n_events: 5, pileup: 200}}\n")
    cfg = study.training_config("enc_reg", base_config=str(tmp_path / "{model}_base.yaml"), backend="packed",
                                train_pileup=20.0, tracks="10:50", n_train_events=9, n_val_events=3, train_seed=4)
    assert cfg["model"]["family"] == "enc_reg"
    assert cfg["model"]["preset"] == "small"        # empty parameter: the base config's value
    assert cfg["model"]["backend"] == "packed"      # given: replaces it
    assert cfg["train"]["steps"] == 77 and cfg["train"]["lr"] == 0.01
    # the data parameters always apply (the held-out events are simulated from them)
    assert cfg["data"]["train"]["n_events"] == 9 and cfg["data"]["train"]["pileup"] == 20.0
    assert cfg["data"]["train"]["seed"] == 4 and cfg["data"]["val"]["seed"] == 5
    assert cfg["data"]["val"]["tracks"] == "10:50" and cfg["tune"]["n_events"] == 3
    whole = study.training_config("contrastive", tracks="", n_val_events=2)
    assert whole["data"]["train"]["tracks"] is None


def test_training_config_errors(tmp_path):
    with pytest.raises(ConfigError):
        study.training_config("contrastive", base_config=str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="backend"):
        study.training_config("contrastive", backend="sparse")


def test_write_summary(tmp_path, monkeypatch):
    monkeypatch.setattr(study_runs, "RUNS_DIR", tmp_path)
    run = tmp_path / "t_contrastive"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"train_seconds": 12.5, "steps": 30, "device": "cpu",
                                                  "n_params": 1000, "preset": "tiny", "backend": "packed"}))
    headline = {"trackml_score": 0.9, "dm_efficiency": 0.95, "perfect_efficiency": 0.8, "lhc_efficiency": 0.96,
                "fake_rate": 0.01, "duplicate_rate": 0.02, "n_events": 2}
    evs = {"truth": Evaluation(None, None, None, {**headline, "trackml_score": 1.0}, "truth"),
           "t_contrastive": Evaluation(None, None, None, headline, "t_contrastive")}
    path = study.write_summary(evs, models=["contrastive"], run_prefix="t", data="d", path=tmp_path / "s.json")
    doc = json.loads(path.read_text())
    assert doc["models"]["truth"]["kind"] == "baseline" and doc["models"]["truth"]["trackml_score"] == 1.0
    trained = doc["models"]["t_contrastive"]
    assert trained["kind"] == "trained" and trained["train_seconds"] == 12.5 and trained["device"] == "cpu"
    assert trained["dm_efficiency"] == 0.95 and trained["fake_rate"] == 0.01
    # an undefined metric (no track matched: no duplicate rate) is null, so strict JSON readers load the file
    evs["truth"] = Evaluation(None, None, None, {**headline, "duplicate_rate": float("nan")}, "truth")
    path = study.write_summary(evs, models=["contrastive"], run_prefix="t", data="d", path=tmp_path / "s.json")
    assert "NaN" not in path.read_text() and json.loads(path.read_text())["models"]["truth"]["duplicate_rate"] is None


def test_train_models_reuses_a_run_only_on_the_same_data(tmp_path, monkeypatch, capsys):
    """A finished run is reused when its config matches and it was trained on the folders the
    config means today; a run on other data (e.g. an older simulator's dataset) is retrained."""

    from trackstudy.data.datasets import dataset_name
    from trackstudy.training.run_config import dump_yaml

    monkeypatch.setattr(study_runs, "RUNS_DIR", tmp_path / "runs")
    calls = []

    def fake_train(cfg, folder, resume=False, progress=True):
        calls.append(folder.name)
        folder.mkdir(parents=True, exist_ok=resume)
        (folder / "config.yaml").write_text(dump_yaml(cfg))
        (folder / "model.pt").write_bytes(b"weights")
        root = tmp_path / "data"
        data = {part: {"dir": str(root / "sim" / dataset_name(s["pileup"], s["n_events"], s["seed"], s["pixel_only"],
                                                              s["tracks"]))}
                for part, s in cfg["data"].items() if part in ("train", "val")}
        summary = {"family": cfg["model"]["family"], "data": data}
        (folder / "summary.json").write_text(json.dumps(summary))
        return summary

    monkeypatch.setattr(study_runs, "train", fake_train)
    real_config = study.training_config

    def config(model, **kw):
        cfg = real_config(model, tracks="10:50", n_train_events=3, n_val_events=2, train_seed=4)
        cfg["data"]["root"] = str(tmp_path / "data")
        return cfg

    monkeypatch.setattr(study_runs, "training_config", config)
    first = study.train_models(["contrastive"], "t")
    assert calls == ["t_contrastive"] and "reused" not in first["contrastive"]
    again = study.train_models(["contrastive"], "t")
    assert calls == ["t_contrastive"] and again["contrastive"]["reused"] is True
    # the run says it trained on a dataset of another simulator version
    summary_file = tmp_path / "runs" / "t_contrastive" / "summary.json"
    summary = json.loads(summary_file.read_text())
    summary["data"]["train"]["dir"] = summary["data"]["train"]["dir"].rsplit("-v", 1)[0] + "-v1"
    summary_file.write_text(json.dumps(summary))
    retrained = study.train_models(["contrastive"], "t")
    assert calls == ["t_contrastive", "t_contrastive"] and "reused" not in retrained["contrastive"]
    assert "-v1, the config now means" in capsys.readouterr().out
    old = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("t_contrastive.old-")]
    assert len(old) == 1 and (old[0] / "model.pt").is_file()  # kept aside, not deleted
    # a project moved elsewhere keeps its runs: only the folder names are compared
    summary = json.loads(summary_file.read_text())
    summary["data"]["train"]["dir"] = "/elsewhere/sim/" + Path(summary["data"]["train"]["dir"]).name
    summary_file.write_text(json.dumps(summary))
    assert study.train_models(["contrastive"], "t")["contrastive"]["reused"] is True
    study.train_models(["contrastive"], "t", retrain=True)
    assert calls == ["t_contrastive"] * 3
    # a stale first model does not make the study retrain the models after it
    study.train_models(["enc_reg"], "t")
    summary = json.loads(summary_file.read_text())
    summary["data"]["val"]["dir"] += "-old"
    summary_file.write_text(json.dumps(summary))
    both = study.train_models(["contrastive", "enc_reg"], "t")
    assert calls == ["t_contrastive"] * 3 + ["t_enc_reg", "t_contrastive"] and both["enc_reg"]["reused"] is True
    # a config that differs in settings training never reads: the run is resumed (it takes them), not
    # retrained; any other difference is an error naming retrain
    (folder := tmp_path / "runs" / "t_enc_reg").joinpath("config.yaml").write_text(
        (folder / "config.yaml").read_text().replace("view_frame: false", "view_frame: true"))
    assert study.train_models(["enc_reg"], "t")["enc_reg"]["reused"] is True
    assert calls[-1] == "t_enc_reg" and "locality.view_frame changed (not read by training)" in capsys.readouterr().out
    (folder / "config.yaml").write_text((folder / "config.yaml").read_text().replace("seed: 4", "seed: 5"))
    with pytest.raises(ConfigError, match="set retrain=True"):
        study.train_models(["enc_reg"], "t")
