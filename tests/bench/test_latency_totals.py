"""``bench latency``: end-to-end and model-only medians and 90th percentiles, CPU time, next to
every key the JSON had before."""

import json

import pytest
import torch

from trackstudy.bench import latency as bench
from trackstudy.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: The keys of ``bench latency --json`` before end_to_end / model_only / cpu_seconds were added.
OLD_KEYS = {"stages", "stages_p90", "total_seconds", "total_p90_seconds", "peak_mb", "process_peak_mb", "n_hits",
            "device", "backend", "runs", "events", "warmup", "threads", "model", "n_params", "data", "locality",
            "bench_seconds"}


def test_json_keeps_every_key_and_adds_the_totals(mini_dir, capsys):
    rc = main(["bench", "latency", "--preset", "tiny", "--data", str(mini_dir), "--events", "3", "--warmup", "1",
               "--locality", "grid", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert OLD_KEYS <= set(out)
    e2e, model, cpu = out["end_to_end"], out["model_only"], out["cpu_seconds"]
    assert e2e["median_s"] == out["total_seconds"] and e2e["p90_s"] == out["total_p90_seconds"]
    assert e2e["p90_over_median"] == pytest.approx(e2e["p90_s"] / e2e["median_s"])
    assert model["stages"] == list(bench.MODEL_STAGES) and 0 < model["median_s"] <= model["p90_s"]
    assert model["median_s"] < e2e["median_s"] and cpu["median_s"] > 0
    assert out["peak_mb"] is not None and out["process_peak_mb"] > 0


def test_text_has_the_totals(mini_dir, capsys):
    rc = main(["bench", "latency", "--preset", "tiny", "--data", str(mini_dir), "--events", "2", "--warmup", "0",
               "--no-memory", "--locality", "grid"])
    assert rc == 0
    text = capsys.readouterr().out
    for line in ("end to end", "model only", "CPU time"):
        assert line in text


def test_compile_option(mini_dir, capsys, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(module) or module)  # no inductor here
    rc = main(["bench", "latency", "--preset", "tiny", "--data", str(mini_dir), "--events", "2", "--warmup", "1",
               "--no-memory", "--locality", "grid", "--compile", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["compiled"] is True and out["n_hits"] == 2783 and len(compiled) == 2 + 2 * 2  # input, head, 2 layers
