"""The full-event section of summary.json (notebook 07) and its headline table on reports/index.html."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd

from trackstudy import study
from trackstudy.study.reports import summary_html, write_index


def _ev(dm, fake):
    return SimpleNamespace(summary={"trackml_score": 0.5, "dm_efficiency": dm, "fake_rate": fake,
                                    "barrel_dm_efficiency": dm - 0.1, "endcap_dm_efficiency": dm + 0.05,
                                    "n_events": 5})


def test_full_event_summary_keeps_the_other_models_and_sets_the_headline(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"data": "10-50", "models": {"study_contrastive": {"dm_efficiency": 0.99}}}))
    run = tmp_path / "study_fe_contrastive"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"train_seconds": 1200.0, "steps": 5000, "device": "cpu",
                                                  "n_params": 1234, "preset": "small"}))
    evaluations = {20.0: {run.name: _ev(0.9, 0.05)}, 200.0: {run.name: _ev(0.8, 0.1), "dbscan-helix": _ev(0.7, 0.4)}}
    real = pd.DataFrame([{"set": "pix1gev", "method": "model", "dm_efficiency_real": 0.6,
                          "dm_efficiency_sim": float("nan")}])
    study.write_full_event_summary(evaluations, run=run, headline_pileup=200.0, real_vs_sim=real, path=path)
    doc = json.loads(path.read_text())
    assert doc["models"] == {"study_contrastive": {"dm_efficiency": 0.99}}  # notebook 05's part is kept
    head = doc["headline"]
    assert head["model"] == run.name and head["pileup"] == 200.0 and head["dm_efficiency"] == 0.8
    assert head["train_seconds"] == 1200.0 and head["n_params"] == 1234
    assert set(doc["full_event"]) == {"mu20", "mu200"}
    assert doc["full_event"]["mu200"]["dbscan-helix"]["kind"] == "baseline"
    assert doc["real_vs_sim"][0]["dm_efficiency_sim"] is None  # NaN -> null: valid JSON
    page = summary_html(path)
    assert "Headline" in page and "80.0%" in page and "dbscan-helix" in page and "pix1gev" in page
    # notebook 05 rewriting its models keeps the headline
    study.write_summary({}, models=[], run_prefix="study", data="d", path=path)
    assert json.loads(path.read_text())["headline"]["model"] == run.name
    out = write_index([{"notebook": "07_full_event", "status": "ok", "error": None, "seconds": 1.0,
                        "parameters": {}, "html": None}], tmp_path, "params/full.yaml", "cpu")
    assert "Headline" in out.read_text()


def test_summary_html_without_a_summary_is_empty(tmp_path):
    assert summary_html(tmp_path / "missing.json") == ""
    (tmp_path / "bad.json").write_text("{not json")
    assert summary_html(tmp_path / "bad.json") == ""
