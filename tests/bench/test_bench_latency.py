"""trackstudy.bench.latency and ``trackstudy bench latency`` (plus the lazy ``trackstudy bench`` CLI)."""

import json
import subprocess
import sys

import pytest

from trackstudy import study
from trackstudy.bench import latency as bench
from trackstudy.cli import main
from trackstudy.data.io import read_event
from trackstudy.errors import ConfigError, DataError
from trackstudy.training.checkpoint import save_model

DBSCAN = {"method": "dbscan", "params": {}, "vertex_scan": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory in the shared contract's layout (untrained tiny contrastive model)."""
    out = tmp_path_factory.mktemp("run")
    model = bench.preset_model("tiny", backend="packed", device="cpu")
    save_model(out, model, {"model": {"family": "contrastive", "preset": "tiny", "backend": "packed"},
                            "locality": DBSCAN, "data": {"train": {"pixel_only": True}}})
    return out


def test_measure_latency_stats_summary_and_paper(mini_dir):
    events = bench.load_events(mini_dir)
    assert [e for e, _ in events] == [1] and "hit_id" in events[0][1].columns
    model = bench.preset_model("tiny", device="cpu")
    res = bench.measure_latency(model, events, locality=DBSCAN, pixel_only=True, n_runs=3, warmup=1)
    assert len(res.timings) == 3 and set(res.timings["event_id"]) == {1}
    s = res.summary()
    assert set(s["stages"]) == set(bench.STAGES) and s["runs"] == 3 and s["events"] == 1
    assert s["total_seconds"] > 0 and s["n_hits"] == 2783 and s["device"].startswith("cpu")
    assert s["total_p90_seconds"] >= s["total_seconds"]
    assert s["peak_mb"] is None or s["peak_mb"] >= 0
    assert s["process_peak_mb"] is None or s["process_peak_mb"] > 10
    json.dumps(s)
    stats = res.stats()
    assert list(stats["stage"]) == [*bench.STAGES, "total"]
    assert stats["share"].iloc[-1] == pytest.approx(1.0)
    cmp = bench.compare_with_paper(res)
    paper = dict(zip(cmp["component"], cmp["paper ms (H100)"]))
    assert paper == {"hit clustering & mask building": 6.0, "transformer encoder forward": 20.0,
                     "track candidate formation": 47.0, "total": 73.0}
    ours = cmp[[c for c in cmp.columns if c.startswith("ours ms")][0]]
    assert (ours > 0).all()
    # per run the stages partition the total (medians of parts need not add up to the median total)
    stage_sum = res.timings[[s for s in bench.STAGES if s != "total"]].sum(axis=1)
    assert (stage_sum <= res.timings["total"] * 1.01).all()
    assert "median ms" in bench.format_result(res)
    assert list(bench.paper_table()["paper_ms"]) == [6.0, 20.0, 47.0, 73.0]


def test_measure_latency_cycles_events_and_bad_counts(mini_dir):
    hits = read_event(mini_dir, parts=("hits",)).hits
    events = [(10, hits.iloc[:300]), (11, hits.iloc[300:700])]
    model = bench.preset_model("tiny", device="cpu")
    res = bench.measure_latency(model, events, locality=None, pixel_only=False, n_runs=3, warmup=0, memory=False)
    assert list(res.timings["event_id"]) == [10, 11, 10] and res.peak_mb is None
    assert list(res.timings["n_hits"]) == [300, 400, 300]
    with pytest.raises(ConfigError, match="--events"):
        bench.measure_latency(model, events, n_runs=0)
    with pytest.raises(ConfigError, match="--warmup"):
        bench.measure_latency(model, events, warmup=-1)
    with pytest.raises(DataError, match="no events"):
        bench.measure_latency(model, [])


def test_load_events_prefix_and_errors(mini_dir, tmp_path):
    (eid, hits), = bench.load_events(mini_dir / "event000000001")
    assert eid == 1 and len(hits) == 5527
    with pytest.raises(DataError, match="no TrackML events"):
        bench.load_events(tmp_path)


def test_run_settings_and_latency_model(run_dir):
    assert study.run_settings({}) == (None, True)
    assert study.run_settings({"locality": DBSCAN, "data": {"train": {"pixel_only": False}}}) == (DBSCAN, False)
    model, cfg, how = study.latency_model(str(run_dir), device="cpu")
    assert "trained run" in how and cfg["locality"] == DBSCAN and not model.training
    model, cfg, how = study.latency_model("", study_run=run_dir, device="cpu")
    assert "notebook 03" in how
    model, cfg, how = study.latency_model("", study_run=run_dir.parent / "missing", preset="tiny", family="enc_cla",
                                          backend="dense", device="cpu")
    assert "untrained enc_cla" in how and model.encoder_cfg.attention == "dense"
    assert cfg["locality"]["method"] == "dbscan" and cfg["data"]["train"]["pixel_only"] is True
    with pytest.raises(ConfigError, match="train_config"):
        study.latency_model("", train_config="params/does_not_exist.yaml")


def test_cli_json_with_run(run_dir, mini_dir, capsys):
    rc = main(["bench", "latency", "--run", str(run_dir), "--data", str(mini_dir), "--events", "2", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("stages", "total_seconds", "peak_mb", "n_hits", "device", "stages_p90", "total_p90_seconds"):
        assert key in out
    assert set(out["stages"]) == set(bench.STAGES) and out["n_hits"] == 2783 and out["runs"] == 2
    assert out["backend"] == "packed" and "trained run" in out["model"]


def test_cli_locality_override(run_dir, mini_dir, capsys):
    # the run clusters with DBSCAN; --locality none times it with full attention over the event
    rc = main(["bench", "latency", "--run", str(run_dir), "--data", str(mini_dir), "--events", "1", "--warmup", "0",
               "--no-memory", "--locality", "none", "--backend", "dense", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == "dense" and out["n_hits"] == 2783


def test_cli_locality_params(run_dir, mini_dir, capsys):
    rc = main(["bench", "latency", "--run", str(run_dir), "--data", str(mini_dir), "--events", "1", "--warmup", "0",
               "--no-memory", "--locality", "grid", "--locality-param", "cell_u=20", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["locality"]["method"] == "grid" and out["locality"]["params"] == {"cell_u": "20"}


def test_cli_barrel_views(run_dir, mini_dir, capsys):
    rc = main(["bench", "latency", "--run", str(run_dir), "--data", str(mini_dir), "--events", "1", "--warmup", "0",
               "--no-memory", "--barrel-views=-10,0,10", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["locality"]["barrel_views"] == [-10.0, 0.0, 10.0] and out["n_hits"] == 2783
    assert out["locality"]["view_frame"] is False
    rc = main(["bench", "latency", "--run", str(run_dir), "--data", str(mini_dir), "--events", "1", "--warmup", "0",
               "--no-memory", "--barrel-views=-10,0,10", "--view-frame", "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["locality"]["view_frame"] is True


def test_cli_text_with_preset(mini_dir, capsys):
    rc = main(["bench", "latency", "--preset", "tiny", "--data", str(mini_dir), "--events", "1", "--warmup", "0",
               "--no-memory", "--backend", "lsh", "--threads", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "track_formation" in out and "paper ms (H100)" in out and "backend lsh" in out


@pytest.mark.parametrize("args, message", [
    (["--preset", "tiny", "--data", "DATA", "--events", "0"], "--events must be >= 1"),
    (["--preset", "huge", "--data", "DATA"], "--preset 'huge'"),
    (["--preset", "tiny", "--family", "gnn", "--data", "DATA"], "--family 'gnn'"),
    (["--preset", "tiny", "--data", "/nonexistent/folder"], "/nonexistent/folder"),
    (["--run", "/nonexistent/run", "--data", "DATA"], "run directory not found"),
    (["--preset", "tiny", "--data", "DATA", "--threads", "0"], "--threads"),
    (["--preset", "tiny", "--data", "DATA", "--locality", "bogus"], "bogus"),
    (["--preset", "tiny", "--data", "DATA", "--locality-param", "eps"], "expected NAME=VALUE"),
    (["--preset", "tiny", "--data", "DATA", "--locality-param", "radius=3"], "radius"),
    (["--preset", "tiny", "--data", "DATA", "--locality", "none", "--locality-param", "eps=3"], "locality.params"),
    (["--preset", "tiny", "--data", "DATA", "--barrel-views", "1,x"], "--barrel-views '1,x'"),
    (["--preset", "tiny", "--data", "DATA", "--locality", "none", "--barrel-views", "1"], "method is 'none'"),
])
def test_cli_errors_one_line(args, message, mini_dir, capsys):
    args = [str(mini_dir) if a == "DATA" else a for a in args]
    assert main(["bench", "latency", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "latency", "--data", "x"])  # neither --run nor --preset
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["bench", "latency", "-h"])
    assert exc.value.code == 0 and "--run" in capsys.readouterr().out


def test_bench_parser_is_lazy_and_attention_still_works(capsys):
    code = ("import sys; from trackstudy.cli import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules, 'building the parser imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert main(["bench", "attention", "--hits", "200", "--backends", "dense,packed", "--repeats", "1",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["backend"] for r in rows] == ["dense", "packed"]
    assert main(["bench", "attention", "--hits", "0"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["bench", "nope"])
    assert exc.value.code == 2


def test_latency_model_trains_the_smoke_config(tmp_path):
    model, cfg, how = study.latency_model("", train_config="params/train_smoke.yaml", train_dir=tmp_path / "run",
                                          device="cpu")
    assert "trained here" in how and (tmp_path / "run" / "model.pt").is_file()
    locality, pixel_only = study.run_settings(cfg)
    assert locality["method"] == cfg["locality"]["method"] and pixel_only is True


def test_cli_latency_defaults_match_the_benchmark():
    """The CLI repeats a few defaults so that building its parser does not import torch."""
    from trackstudy.cli.bench import LATENCY_FAMILY, benchmark_parser

    assert LATENCY_FAMILY == bench.DEFAULT_FAMILY
    assert benchmark_parser("latency").parse_args(["--preset", "tiny", "--data", "x"]).family == bench.DEFAULT_FAMILY


def test_cli_track_quality(run_dir, mini_dir, tmp_path, capsys):
    # a run with a track-quality scorer is timed with it (its threshold in the report), or without
    import shutil

    import numpy as np

    from trackstudy.postprocessing.quality import FEATURES, TrackQuality

    run = shutil.copytree(run_dir, tmp_path / "run")
    TrackQuality(mean=np.zeros(len(FEATURES)), scale=np.ones(len(FEATURES)), weights=[np.ones((len(FEATURES), 1))],
                 biases=[[0.0]], threshold=0.25).save(run / "track_quality.npz")
    args = ["bench", "latency", "--run", str(run), "--data", str(mini_dir), "--events", "1", "--warmup", "0",
            "--no-memory", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["track_quality"] == {"threshold": 0.25}
    assert main([*args, "--no-quality"]) == 0
    assert json.loads(capsys.readouterr().out)["track_quality"] is None
