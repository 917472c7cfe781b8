"""``trackstudy export``: a run's model as ONNX, checked with onnxruntime on the real reduced event."""

import json

import pytest

from trackstudy.bench import latency as bench
from trackstudy.cli import main
from trackstudy.data.datasets import real_trackml_dir
from trackstudy.models import export
from trackstudy.training.checkpoint import save_model

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(None in (export.onnx, export.onnxscript, export.onnxruntime),
                                 reason="onnx, onnxscript or onnxruntime not installed (pip install -e .[export])")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    model = bench.preset_model("tiny", backend="packed", device="cpu")
    save_model(out, model, {"model": {"family": "contrastive", "preset": "tiny", "backend": "packed"},
                            "locality": {"method": "grid", "params": {}, "vertex_scan": False},
                            "data": {"train": {"pixel_only": True}}})
    return out


def test_export_packed_with_check(run_dir, mini_dir, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", "--run", str(run_dir), "--out", str(out), "--check", str(mini_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["n_hits"] == 2783 and result["mode"] == "packed" and result["bins"] == 8
    assert max(result["max_abs_diff"].values()) < 1e-4 and result["clusters"] > 100
    meta = export.read_metadata(out)
    assert json.loads(meta["locality"])["method"] == "grid" and meta["pixel_only"] == "true"
    assert json.loads(meta["outputs"]) == ["embedding"]
    # an existing file needs --force; the refusal is one line naming it
    assert main(["export", "--run", str(run_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.onnx" in err and "--force" in err


def test_export_dense_and_tolerance(run_dir, mini_dir, tmp_path, capsys):
    out = tmp_path / "dense.onnx"
    args = ["export", "--run", str(run_dir), "--out", str(out), "--mode", "dense", "--check", str(mini_dir)]
    assert main(args) == 0
    assert "max |onnxruntime - torch|" in capsys.readouterr().out
    # an impossible tolerance fails the check in one line (the file stays written: it is the export)
    assert main([*args, "--force", "--tolerance", "1e-30"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "differs from torch" in err and "--tolerance" in err


@pytest.mark.parametrize("extra, message", [
    (["--bins", "0"], "--bins 0"),
    (["--mode", "dense", "--bins", "3"], "--bins has no effect with --mode dense"),
    (["--tolerance", "-1"], "--tolerance -1"),
])
def test_bad_options_one_line(extra, message, run_dir, tmp_path, capsys):
    rc = main(["export", "--run", str(run_dir), "--out", str(tmp_path / "m.onnx"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


def test_missing_onnxruntime_is_one_line(run_dir, mini_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export, "onnxruntime", None)
    rc = main(["export", "--run", str(run_dir), "--out", str(tmp_path / "m.onnx"), "--check", str(mini_dir)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "pip install -e .[export]" in err and len(err.splitlines()) == 1


def test_full_attention_check_over_a_large_event_is_refused(tmp_path, capsys):
    run = tmp_path / "run_none"
    model = bench.preset_model("tiny", backend="dense", device="cpu")
    save_model(run, model, {"model": {"family": "contrastive", "preset": "tiny", "backend": "dense"},
                            "locality": {"method": "none"}, "data": {"train": {"pixel_only": True}}})
    rc = main(["export", "--run", str(run), "--out", str(tmp_path / "m.onnx"), "--check", str(real_trackml_dir("full"))])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "48006 hits" in err and "locality none" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()
