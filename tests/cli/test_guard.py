"""The dense-path guard: a run trained with full attention (locality none) does not take the dense
path over a large event in ``trackstudy predict`` and ``trackstudy bench latency``; one notice on
stderr names the options that keep full attention."""

import json

import pandas as pd
import pytest

from trackstudy.bench import latency as bench
from trackstudy.cli import main
from trackstudy.data.io import read_event
from trackstudy.inference import DENSE_MAX_HITS, SPARSE_PATH, SparsePathWarning, guard_dense, predict_event
from trackstudy.training.checkpoint import save_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NONE = {"method": "none", "params": {}, "vertex_scan": False}
N_PIXEL = 2783  # pixel hits of the real reduced event


@pytest.fixture(scope="module")
def full_attention_run(tmp_path_factory):
    """A run trained with full attention (locality none, dense backend), like the 10-50-track runs."""
    out = tmp_path_factory.mktemp("run_none")
    model = bench.preset_model("tiny", backend="dense", device="cpu")
    save_model(out, model, {"model": {"family": "contrastive", "preset": "tiny", "backend": "dense"},
                            "locality": NONE, "data": {"train": {"pixel_only": True}}})
    return out


def test_guard_dense_decision():
    assert DENSE_MAX_HITS >= 5000  # the 10-50-track events (a few thousand hits) stay dense
    loc, backend, notice = guard_dense(48006, None, "dense")
    assert (loc["method"], backend) == SPARSE_PATH
    assert "--locality none --backend dense" in notice and "--max-dense-hits" in notice and "\n" not in notice
    # below the threshold, with clustering, with lsh or with the guard off: unchanged
    for args in ((100, NONE, "dense"), (48006, {"method": "dbscan"}, "dense"), (48006, NONE, "lsh")):
        loc, backend, notice = guard_dense(*args)
        assert notice is None and backend == args[2] and loc["method"] == args[1]["method"]
    assert guard_dense(48006, NONE, "dense", None)[2] is None


def test_predict_event_switches_with_a_warning(mini_dir):
    hits = read_event(mini_dir, parts=("hits",)).hits
    model = bench.preset_model("tiny", backend="dense", device="cpu")
    with pytest.warns(SparsePathWarning, match="running --locality grid --backend packed"):
        sub, t = predict_event(model, hits, locality=NONE, pixel_only=True, max_dense_hits=1000)
    grid, _ = predict_event(model, hits, locality={"method": "grid"}, backend="packed", pixel_only=True)
    pd.testing.assert_frame_equal(sub, grid)  # the sparse path is exactly grid + packed
    seen = []
    predict_event(model, hits, locality=NONE, pixel_only=True, max_dense_hits=1000, notify=seen.append)
    assert len(seen) == 1 and seen[0].startswith("event 0: 2783 hits > 1000")
    predict_event(model, hits, locality=NONE, pixel_only=True, max_dense_hits=None, notify=seen.append)
    assert len(seen) == 1  # guard off: dense, no notice


def test_predict_cli_notice_and_override(full_attention_run, mini_dir, tmp_path, capsys):
    out = tmp_path / "sub.csv"
    args = ["predict", "--run", str(full_attention_run), "--data", str(mini_dir), "--out", str(out), "--quiet"]
    assert main([*args, "--max-dense-hits", "1000"]) == 0
    cap = capsys.readouterr()
    notices = [line for line in cap.err.splitlines() if "notice" in line]
    assert len(notices) == 1 and notices[0].startswith("trackstudy predict: notice: event 1: 2783 hits > 1000")
    assert "--locality" in notices[0] and "--backend" in notices[0]
    # naming --locality / --backend keeps full attention, without a notice
    assert main([*args, "--max-dense-hits", "1000", "--force", "--locality", "none", "--backend", "dense"]) == 0
    assert "notice" not in capsys.readouterr().err
    # the default threshold leaves this small event dense
    assert main([*args, "--force"]) == 0
    assert "notice" not in capsys.readouterr().err


def test_bench_latency_cli_notice(full_attention_run, mini_dir, capsys):
    args = ["bench", "latency", "--run", str(full_attention_run), "--data", str(mini_dir), "--events", "2",
            "--warmup", "1", "--no-memory", "--json"]
    assert main([*args, "--max-dense-hits", "1000"]) == 0
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert out["backend"] == "packed" and out["n_hits"] == N_PIXEL and "2783 hits > 1000" in out["sparse_path"]
    assert len([line for line in cap.err.splitlines() if "notice" in line]) == 1
    assert main([*args, "--max-dense-hits", "1000", "--backend", "dense"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["backend"] == "dense" and "notice" not in cap.err


@pytest.mark.parametrize("command", ["predict", "bench"])
def test_bad_threshold_is_one_line(command, full_attention_run, mini_dir, tmp_path, capsys):
    args = (["predict", "--out", str(tmp_path / "s.csv")] if command == "predict" else ["bench", "latency"])
    rc = main([*args, "--run", str(full_attention_run), "--data", str(mini_dir), "--max-dense-hits", "0"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--max-dense-hits" in err and len(err.splitlines()) == 1


def test_predict_bad_locality_is_one_line(full_attention_run, mini_dir, tmp_path, capsys):
    rc = main(["predict", "--run", str(full_attention_run), "--data", str(mini_dir), "--out",
               str(tmp_path / "s.csv"), "--locality", "kmeans"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--locality 'kmeans'" in err and len(err.splitlines()) == 1
