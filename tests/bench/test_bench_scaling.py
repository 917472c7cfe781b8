"""trackstudy.bench.scaling, ``trackstudy bench scaling`` and trackstudy.plots.scaling."""

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

from trackstudy.bench import scaling as bench
from trackstudy.cli import main
from trackstudy.errors import ConfigError

matplotlib.use("Agg")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def result():
    return bench.run_scaling((300, 600), ("dense", "packed", "lsh"), preset="tiny", repeats=1, warmup=1,
                             sim_events=1)


def test_fit_slope_and_extrapolate():
    n = np.array([1e3, 4e3, 16e3])
    assert bench.fit_slope(n, 3e-9 * n ** 2) == pytest.approx(2.0)
    assert bench.fit_slope(n, 5e-6 * n) == pytest.approx(1.0)
    assert bench.fit_slope([1000], [1.0]) is None
    assert bench.fit_slope([1000, 2000], [0.0, 1.0]) is None  # non-positive points are dropped
    assert bench.extrapolate([1000, 2000], [1.0, 4.0], 4000, 1.0) == pytest.approx(16.0)
    assert bench.extrapolate([1000], [1.0], 3000, 2.0) == pytest.approx(9.0)
    assert bench.extrapolate([1000, 2000], [1.0, 1.0], 4000, 2.0) == pytest.approx(2.0)  # slope >= 1
    assert bench.extrapolate([], [], 4000, 2.0) is None


def test_make_inputs_exact_count_and_concatenation():
    a = bench.make_inputs(1500, hits_at_200=55000.0, seed=3)
    assert len(a.hits) == 1500 and a.labels.shape == (1500,) and (a.labels >= 0).all()
    assert a.hits["hit_id"].is_unique and a.mu == pytest.approx(200 * 1500 / 55000)
    b = bench.make_inputs(1500, hits_at_200=55000.0, seed=3)
    assert np.array_equal(a.labels, b.labels) and a.hits.equals(b.hits)
    # a huge hits_at_200 makes every event too small: events are concatenated, clusters kept apart
    c = bench.make_inputs(2000, hits_at_200=1e7, seed=1)
    assert c.n_events > 1 and len(c.hits) == 2000
    d = c.describe()
    assert d["n_hits"] == 2000 and d["n_clusters"] >= 2 and 0 < d["attention_reduction"] < 1
    assert 0 < d["block_fraction"] <= 1
    with pytest.raises(ConfigError, match="--hits"):
        bench.make_inputs(0, 55000.0)


def test_simulator_throughput_line():
    s = bench.simulator_throughput(mu=5.0, n_events=1, seed=2)
    assert s["events_per_second"] > 0 and s["hits_per_event"] > 0 and s["mu"] == 5.0
    with pytest.raises(ConfigError, match="--sim-events"):
        bench.simulator_throughput(n_events=0)


def test_run_scaling_results_slopes_speedups(result):
    r = result.results
    assert list(r["backend"]) == ["dense", "packed", "lsh"] * 2 and list(r["n_hits"]) == [300] * 3 + [600] * 3
    assert (r["status"] == "ok").all() and (r["seconds"] > 0).all() and (r["mask_seconds"] >= 0).all()
    assert np.allclose(r["total_seconds"], r["seconds"] + r["mask_seconds"])
    assert (r["cpu_seconds"] > 0).all()  # process CPU time of the forward
    assert r["peak_mb"].notna().all()
    assert list(result.inputs["n_hits"]) == [300, 600] and result.simulator["mu"] == 200.0
    slopes = result.slopes()
    assert list(slopes["backend"]) == ["dense", "packed", "lsh"] and (slopes["points"] == 2).all()
    sp = result.speedups()
    assert set(sp["backend"]) == {"packed", "lsh"} and not sp["reference_extrapolated"].any()
    s = result.summary()
    json.dumps(s)
    assert s["preset"] == "tiny" and len(s["results"]) == 6 and "events_per_second" in s["simulator"]
    text = bench.format_result(result)
    assert "pixel-only events/s at mu = 200" in text and "slopes" in text


def test_oom_and_timeout_are_reported_not_run(monkeypatch):
    monkeypatch.setattr(bench, "DENSE_BYTES_PER_PAIR", 1e12)
    res = bench.run_scaling((200, 400), ("dense", "packed"), preset="tiny", repeats=1, warmup=0,
                            max_seconds=1e-9, sim_events=1, memory=False)
    status = dict(zip(zip(res.results["backend"], res.results["n_hits"]), res.results["status"]))
    assert status[("dense", 200)].startswith("skipped: needs ~")
    assert status[("packed", 200)] == "ok"  # nothing known yet: run, then too slow
    assert status[("packed", 400)].startswith("timeout")
    assert res.results["peak_mb"].isna().all()
    sp = res.speedups()  # dense never ran: no reference to compare with
    assert len(sp) == 1 and sp["speedup"].isna().all()


def test_speedup_against_extrapolated_dense():
    rows = [("dense", 1000, 1.0, 100.0, "ok"), ("dense", 2000, 4.0, 400.0, "ok"),
            ("dense", 4000, None, None, "skipped: needs ~9 GB"), ("packed", 4000, 0.5, 16.0, "ok")]
    df = pd.DataFrame(rows, columns=["backend", "n_hits", "seconds", "peak_mb", "status"])
    df["total_seconds"] = df["seconds"]
    res = bench.ScalingResult(df, pd.DataFrame(), {}, "cpu", "tiny", 0)
    sp = res.speedups()
    row = sp[sp["n_hits"] == 4000].iloc[0]
    assert row["speedup"] == pytest.approx(32.0) and row["memory_ratio"] == pytest.approx(0.01)
    assert bool(row["reference_extrapolated"])


def test_cli_json(capsys):
    rc = main(["bench", "scaling", "--hits", "250", "--backends", "packed,lsh", "--preset", "tiny", "--repeats", "1",
               "--sim-events", "1", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert {"device", "results", "slopes", "speedups", "inputs", "simulator"} <= set(out)
    assert [r["backend"] for r in out["results"]] == ["packed", "lsh"]


def test_cli_defaults_are_the_library_defaults():
    from trackstudy.cli.bench import SCALING_BACKENDS, SCALING_HITS, benchmark_parser

    assert SCALING_HITS == bench.DEFAULT_HITS and SCALING_BACKENDS == bench.DEFAULT_BACKENDS
    args = benchmark_parser("scaling").parse_args([])
    assert args.hits == ",".join(map(str, bench.DEFAULT_HITS)) and args.backends == ",".join(bench.DEFAULT_BACKENDS)


@pytest.mark.parametrize("args, message", [
    (["--hits", "a,b"], "--hits 'a,b'"),
    (["--hits", "0"], "--hits"),
    (["--backends", "dense,warp"], "unknown backend 'warp'"),
    (["--backends", "explicit"], "unknown backend 'explicit'"),
    (["--repeats", "0"], "--repeats"),
    (["--max-seconds", "0"], "--max-seconds"),
    (["--preset", "huge"], "--preset 'huge'"),
])
def test_cli_errors(args, message, capsys):
    assert main(["bench", "scaling", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_plots(result):
    import matplotlib.pyplot as plt

    from trackstudy.bench.latency import PAPER_TABLE1
    from trackstudy.plots.scaling import plot_scaling, plot_scaling_plotly, plot_stage_shares

    ax = plot_scaling(result.results, metric="seconds", device=result.device)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lab.startswith("dense (slope") for lab in labels) and ax.get_xscale() == "log"
    assert result.device in ax.get_title()
    ax = plot_scaling(result.results, metric="peak_mb")
    assert ax.get_yscale() == "log"
    fig = plot_scaling_plotly(result.results, metric="total_seconds", device="cpu")
    assert len(fig.data) == 3 and fig.layout.xaxis.type == "log"
    with pytest.raises(ConfigError, match="metric"):
        plot_scaling(result.results, metric="speed")
    with pytest.raises(ConfigError, match="missing column"):
        plot_scaling(result.results.drop(columns="status"))
    cmp = pd.DataFrame({"component": [r[0] for r in PAPER_TABLE1["rows"]], "ours ms (cpu (1 threads))": [1, 2, 3, 6],
                        "ours_share": [1 / 6, 2 / 6, 3 / 6, 1.0], "paper_share": [6 / 73, 20 / 73, 47 / 73, 1.0]})
    ax = plot_stage_shares(cmp)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ours (cpu (1 threads))", "paper (H100)"]
    with pytest.raises(ConfigError, match="compare_with_paper"):
        plot_stage_shares(cmp.drop(columns="paper_share"))
    plt.close("all")
