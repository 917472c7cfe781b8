"""trackstudy.bench.attention and ``trackstudy bench attention``."""

import json

import numpy as np
import pytest
import torch

from trackstudy.bench import attention as bench
from trackstudy.cli import main
from trackstudy.errors import ConfigError
from trackstudy.models.attention import attend

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cluster_sizes_sum_mean_and_noise():
    rng = np.random.default_rng(0)
    sizes = bench.cluster_sizes(20000, 50, rng, noise_fraction=0.1)
    assert sizes.sum() == 20000
    assert (sizes == 1).sum() >= 2000
    big = sizes[sizes > 1]
    assert 35 < big.mean() < 65 and big.max() <= 400
    with pytest.raises(ConfigError, match="--cluster-size"):
        bench.cluster_sizes(100, 1, rng)
    with pytest.raises(ConfigError, match="--hits"):
        bench.cluster_sizes(0, 10, rng)


def test_make_inputs_shapes_padding_and_shuffled_clusters():
    inp = bench.make_inputs(300, 20, batch=3, n_heads=2, head_dim=8, seed=1)
    assert inp.q.shape == (3, 2, 300, 8)
    assert inp.pad_mask[0].all() and inp.pad_mask.sum(1).min() >= 210
    assert (inp.labels[~inp.pad_mask] == -1).all() and (inp.labels[inp.pad_mask] >= 0).all()
    lab = inp.labels[0]
    assert (lab[1:] != lab[:-1]).float().mean() > 0.5  # clusters are not contiguous in input order
    again = bench.make_inputs(300, 20, batch=3, n_heads=2, head_dim=8, seed=1)
    assert torch.equal(inp.q, again.q) and torch.equal(inp.labels, again.labels)


def test_reference_matches_dense_with_row_chunking():
    inp = bench.make_inputs(200, 16, batch=2, n_heads=2, head_dim=8, seed=2)
    rows, ref = bench.reference_attention(inp, max_elements=2 * 200 * 7)  # 7 rows per chunk
    dense, _ = attend(inp.q, inp.k, inp.v, inp.context(), "dense")
    B, H, T, hs = inp.q.shape
    got = dense.transpose(1, 2).reshape(B * T, H, hs)[rows].double()
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    assert rows.numel() == int(inp.pad_mask.sum())


def test_dense_memory_estimate_and_oom_skip(monkeypatch):
    # mask 1 byte + two float32 score tensors per head, per (query, key) pair
    assert bench.dense_memory_estimate(1, 4, 55000) == 55000 ** 2 * 33
    inp = bench.make_inputs(100, 10, n_heads=2, head_dim=8)
    monkeypatch.setattr(bench, "available_memory", lambda device: 1000)
    res = bench.measure_backend("dense", inp, lsh=bench.LSHConfig(), repeats=1)
    assert res.seconds is None and res.status.startswith("skipped: out of memory")
    res = bench.measure_backend("packed", inp, lsh=bench.LSHConfig(), repeats=1)
    assert res.status == "ok" and res.seconds > 0


def test_cpu_peak_memory_sees_torch_allocations():
    with bench.PeakMemory(torch.device("cpu")) as peak:
        x = torch.ones(64 * 2 ** 20 // 4)  # 64 MiB, touched
        del x
    if peak.mb is None:
        pytest.skip("no /proc/self/clear_refs on this system")
    assert 60 <= peak.mb < 200


def test_cli_json_exact_backends_agree(capsys):
    status = main(["bench", "attention", "--hits", "400", "--cluster-size", "24", "--batch", "2", "--heads", "2",
                   "--head-dim", "16", "--repeats", "1", "--backends", "dense,packed,explicit,lsh", "--json"])
    assert status == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["backend"] for r in records] == ["dense", "packed", "explicit", "lsh"]
    for r in records:
        assert {"backend", "seconds", "peak_mb", "max_abs_diff"} <= set(r)
        assert r["status"] == "ok" and r["seconds"] > 0
        if r["backend"] != "lsh":
            assert r["max_abs_diff"] < 1e-4
    lsh = records[-1]
    assert lsh["exact"] is False and lsh["max_abs_diff"] > 1e-3  # a different (bucket) mask


@pytest.mark.slow
def test_cli_table_with_flex(capsys):
    assert main(["bench", "attention", "--hits", "600", "--repeats", "1", "--backends", "dense,flex"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith(("dense", "flex"))]
    assert len(lines) == 2 and all(ln.rstrip().endswith("ok") for ln in lines)


def test_cli_bad_input_is_one_line_exit_2(capsys):
    assert main(["bench", "attention", "--hits", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--hits must be positive" in err
    assert main(["bench", "attention", "--hits", "50", "--backends", "dense,flash"]) == 2
    assert "unknown backend 'flash'" in capsys.readouterr().err
    assert main(["bench", "attention", "--hits", "50", "--lsh-bucket-width", "0"]) == 2
    assert "bucket_width" in capsys.readouterr().err


def test_cli_on_the_real_mini_event_uses_locality_clusters(mini_dir, capsys):
    status = main(["bench", "attention", "--event", str(mini_dir), "--backends", "dense,packed", "--heads", "2",
                   "--head-dim", "16", "--repeats", "1"])
    assert status == 0
    out = capsys.readouterr().out
    assert "2783 hits in" in out  # the mini event's pixel hits
    rows = [ln.split() for ln in out.splitlines() if ln.startswith(("dense", "packed"))]
    assert len(rows) == 2 and all(float(r[4]) < 1e-4 for r in rows)


def test_cli_event_and_hits_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "attention", "--hits", "10", "--event", "x"])
    assert "not allowed with argument" in capsys.readouterr().err
