"""The graph builder: windows learned from truth, the module map, storing and errors."""

from __future__ import annotations

import numpy as np
import pytest

from trackstudy.data.io import select_volumes
from trackstudy.data.simulate import SimulationConfig, simulate_event
from trackstudy.errors import ConfigError, DataError
from trackstudy.graphs.doublets import hit_geometry, true_doublets
from trackstudy.graphs.module_map import GraphBuilder, GraphConfig, build_graph, module_keys


@pytest.fixture(scope="module")
def events():
    return [select_volumes(simulate_event(SimulationConfig(pileup=10, pixel_only=True), rng=s, event_id=s))
            for s in (3, 4)]


def _codes(src, dst, n):
    return np.asarray(src) * n + np.asarray(dst)


def test_module_map_learned_on_one_event_reproduces_its_true_edges(events):
    ev = events[0]
    b = GraphBuilder.fit([ev], {"module_map": True, "efficiency": 1.0, "margin": 1.01, "min_pair_doublets": 1})
    src, dst = b.build(ev.hits)
    td = true_doublets(ev.hits, ev.truth, ev.particles)
    hi = td[td["pt"] > 0.9]
    assert len(hi) > 20
    n = len(ev.hits)
    assert np.isin(_codes(hi["src"], hi["dst"], n), _codes(src, dst, n)).all()
    # every kept doublet sits on a module pair of the map
    keys = module_keys(ev.hits, hit_geometry(ev.hits)["layer"])
    assert np.isin((keys[src] << 32) | keys[dst], b.module_pairs).all()
    assert len(b.module_pairs) == len(np.unique((keys[hi["src"].to_numpy()] << 32) | keys[hi["dst"].to_numpy()]))


def test_windows_keep_the_requested_fraction_and_cut_the_rest(events):
    b = GraphBuilder.fit(events, {"efficiency": 0.99, "margin": 1.0, "min_pair_doublets": 1})
    ev = events[0]
    src, dst = b.build(ev.hits)
    td = true_doublets(ev.hits, ev.truth, ev.particles)
    hi = td[td["pt"] > 0.9]
    n = len(ev.hits)
    found = np.isin(_codes(hi["src"], hi["dst"], n), _codes(src, dst, n)).mean()
    assert found >= 0.95
    assert len(src) < 0.05 * n * n  # far fewer than all pairs
    layer = hit_geometry(ev.hits)["layer"]
    assert set(zip(layer[src].tolist(), layer[dst].tolist())) <= {tuple(p) for p in b.pairs.tolist()}


def test_store_and_reload(events, tmp_path):
    b = GraphBuilder.fit(events, {"module_map": True})
    path = b.save(tmp_path / "graph.npz")
    c = GraphBuilder.load(path)
    assert c.config == b.config
    for k, v in b.to_arrays().items():
        np.testing.assert_array_equal(c.to_arrays()[k], v)
    g = build_graph(c, events[1].hits)
    assert g["x"].shape == (len(events[1].hits), 6) and g["edge_attr"].shape == (g["edge_index"].shape[1], 8)


def test_errors_name_the_parameter_or_file(events, tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'model.graph.eff'"):
        GraphConfig.from_dict({"eff": 0.9})
    with pytest.raises(ConfigError, match="model.graph.efficiency: must be in"):
        GraphConfig(efficiency=1.5)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(DataError, match="bad.npz: not a readable .npz"):
        GraphBuilder.load(bad)
    with pytest.raises(DataError, match="module_id' is missing"):
        GraphBuilder.fit([(events[0].hits.drop(columns="module_id"), events[0].truth, events[0].particles)],
                         {"module_map": True})
