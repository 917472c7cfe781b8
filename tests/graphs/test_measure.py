"""Measuring a graph builder (efficiency, purity, sizes) and the ``trackstudy doublets`` command."""

from __future__ import annotations

import json

import pytest

from trackstudy.cli import main
from trackstudy.data.io import iter_events, write_event
from trackstudy.data.simulate import SimulationConfig, simulate_event
from trackstudy.graphs.measure import doublet_report, summarize_report
from trackstudy.graphs.module_map import GraphBuilder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("doublet_events")
    for s in (5, 6, 7):
        write_event(simulate_event(SimulationConfig(pileup=10, pixel_only=True), rng=s, event_id=1000 + s), out)
    return out


def test_report_on_the_fitted_event_finds_every_true_doublet(folder):
    events = list(iter_events(folder))
    b = GraphBuilder.fit(events[:1], {"efficiency": 1.0, "margin": 1.01, "min_pair_doublets": 1})
    rep = doublet_report(b, events[:1])
    assert rep["found_pt"].iloc[0] == rep["true_pt"].iloc[0] > 0
    s = summarize_report(rep)
    assert s["efficiency"] == 1.0 and 0 < s["purity"] <= 1 and s["doublets_per_event"] >= rep["true_pt"].iloc[0]


def test_cli_json_and_errors(folder, capsys):
    assert main(["doublets", str(folder), "--fit-events", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["events"] == 1 and set(out) >= {"doublets_per_event", "hits_per_event", "efficiency", "purity",
                                               "seconds"}
    assert main(["doublets", str(folder), "--fit-events", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--fit-events 3" in err[0]
    assert main(["doublets", str(folder / "nope")]) == 2
    assert "no such data folder" in capsys.readouterr().err
