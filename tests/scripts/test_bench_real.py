"""scripts/bench_real.py: a model and the baseline on a real set and its simulated counterparts."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from trackstudy.models.heads import build_model
from trackstudy.training.checkpoint import save_model

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_real.py"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _script():
    spec = importlib.util.spec_from_file_location("bench_real", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """An untrained tiny pixel-only contrastive model saved as a run (the metrics need no training)."""
    torch.manual_seed(0)
    model = build_model("contrastive", "tiny", encoder_overrides={"attention": "packed"}).eval()
    run = tmp_path_factory.mktemp("run")
    save_model(run, model, {"locality": {"method": "dbscan", "params": {}, "vertex_scan": False},
                            "data": {"train": {"pixel_only": True}}}, step=1)
    return run


@pytest.mark.slow
def test_bench_real_barrel20_model_and_baseline(tiny_run, tmp_path, capsys):
    out = tmp_path / "res.json"
    assert _script().main(["--run", str(tiny_run), "--set", "barrel20", "--sim-events", "2", "--pileup", "20",
                           "--device", "cpu", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| model | TrackML score |" in text and "| dbscan-helix | DM efficiency |" in text
    res = json.loads(out.read_text())
    assert res["set"] == "barrel20" and res["eval_volumes"] == [7, 8, 9] and res["n_sim"] == 2
    for method in ("model", "dbscan-helix"):
        m = res["methods"][method]
        # the real barrel20 pixel hits: volume 8 only (4,906 hits); the gap is simulated minus real
        assert m["real"]["n_hits"] == 4906
        assert m["gap"]["trackml_score"] == pytest.approx(m["sim_mean"]["trackml_score"] - m["real"]["trackml_score"])
        assert 0.0 <= m["real"]["dm_efficiency"] <= 1.0 and m["sim_sd"]["n_hits"] is not None


def test_bench_real_errors(tiny_run, capsys):
    main = _script().main
    assert main(["--run", str(tiny_run), "--set", "barrel30"]) == 2
    assert "--set 'barrel30': expected one of pix1gev, barrel20, mini or all" in capsys.readouterr().err
    assert main(["--set", "mini", "--no-baseline"]) == 2
    assert "nothing to run" in capsys.readouterr().err
    assert main(["--run", str(tiny_run.parent / "missing"), "--set", "mini"]) == 2
    assert "run directory not found" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_real_with_barrel_views(tiny_run, tmp_path, capsys):
    out = tmp_path / "views.json"
    assert _script().main(["--run", str(tiny_run), "--set", "pix1gev", "--sim-events", "1", "--pileup", "20",
                           "--device", "cpu", "--no-baseline", "--barrel-views=-10,0,10", "--view-frame",
                           "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["barrel_views"] == [-10.0, 0.0, 10.0] and 0.0 <= res["methods"]["model"]["real"]["dm_efficiency"] <= 1.0
    assert res["view_frame"] is True
    main = _script().main
    for option in (["--barrel-views", "0"], ["--view-frame"]):
        assert main(["--set", "mini", *option]) == 2
        assert "give --run" in capsys.readouterr().err
    assert main(["--run", str(tiny_run), "--set", "mini", "--barrel-views", "0,0"]) == 2
    assert "must differ" in capsys.readouterr().err
