"""The hit embedding of metric-learning graphs: the hinge loss on a hand-computed case, unit
vectors, the builder it makes, and the GNN holding it (state dict round trip; windows models unchanged)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trackstudy.data.io import select_volumes
from trackstudy.data.simulate import SimulationConfig, simulate_event
from trackstudy.graphs.doublets import hit_geometry, node_features
from trackstudy.graphs.metric import MetricConfig, orient_pairs, radius_pairs
from trackstudy.graphs.module_map import GraphBuilder, build_graph
from trackstudy.models.gnn import GNNConfig, InteractionNetwork, gnn_from_config
from trackstudy.models.metric_embedding import HitEmbedding, MetricGraphBuilder, hinge_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def event():
    return select_volumes(simulate_event(SimulationConfig(pileup=10, pixel_only=True), rng=5, event_id=5))


def test_hinge_loss_hand_computed():
    emb = torch.tensor([[0.0, 0.0], [0.3, 0.4], [0.05, 0.0], [1.0, 0.0]], requires_grad=True)
    pos = torch.tensor([[0, 1]])
    neg = torch.tensor([[0, 2], [0, 3]])
    # positives: d^2 = 0.25; negatives: max(0, 0.1 - 0.05)^2 = 0.0025 and 0 -> mean 0.00125
    loss = hinge_loss(emb, pos, neg, margin=0.1)
    assert float(loss.detach()) == pytest.approx(0.25 + 0.00125)
    assert float(hinge_loss(emb, pos, neg, margin=0.1, pos_weight=2.0).detach()) == pytest.approx(0.5 + 0.00125)
    assert float(hinge_loss(emb, pos[:0], neg, margin=0.1).detach()) == pytest.approx(0.00125)
    assert float(hinge_loss(emb, pos, neg[:0], margin=0.1).detach()) == pytest.approx(0.25)
    # identical embeddings in a negative pair: finite gradients
    same = torch.zeros(2, 3, requires_grad=True)
    hinge_loss(same, pos[:0], torch.tensor([[0, 1]]), margin=0.1).backward()
    assert torch.isfinite(same.grad).all()
    loss.backward()
    assert torch.isfinite(emb.grad).all()


def test_embedding_is_on_the_unit_sphere():
    m = HitEmbedding(MetricConfig(emb_dim=5, hidden=16, layers=2, radius=0.3))
    e = m.embed(np.random.default_rng(0).normal(size=(50, 6)))
    assert e.shape == (50, 5)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-6)
    assert float(m.radius) == 0.3


def test_builder_is_radius_pairs_oriented_and_filtered(event):
    torch.manual_seed(0)
    emb = HitEmbedding(MetricConfig(emb_dim=4, hidden=16, layers=2, radius=0.3, k_max=8))
    layers = GraphBuilder.layer_pairs_only({})
    b = MetricGraphBuilder(emb, layers)
    assert b.config.method == "metric" and b.radius == pytest.approx(0.3)
    g = hit_geometry(event.hits)
    src, dst = b.build(event.hits)
    i, j = radius_pairs(emb.embed(node_features(g)), 0.3, 8)
    esrc, edst = orient_pairs(i, j, g["layer"], g["r"] ** 2 + g["z"] ** 2, layers.pairs)
    np.testing.assert_array_equal(src, esrc)
    np.testing.assert_array_equal(dst, edst)
    assert len(src) > 0
    allowed = {tuple(p) for p in layers.pairs.tolist()}
    assert set(zip(g["layer"][src].tolist(), g["layer"][dst].tolist())) <= allowed
    graph = build_graph(b, event.hits)  # the GNN's graph function takes either builder
    assert graph["edge_index"].shape == (2, len(src)) and graph["edge_attr"].shape == (len(src), 8)


def test_gnn_keeps_the_embedding_through_its_state_dict(event):
    torch.manual_seed(1)
    layers = GraphBuilder.layer_pairs_only({})
    model = InteractionNetwork(GNNConfig(hidden=8, n_iterations=1), layers,
                               embedding=MetricConfig(emb_dim=4, hidden=16, layers=2, k_max=8))
    model.embedding.radius.fill_(0.25)
    fresh = gnn_from_config(model.config_dict())
    fresh.load_state_dict(model.state_dict())
    assert isinstance(fresh.builder, MetricGraphBuilder) and fresh.builder.radius == 0.25
    for a, b in zip(fresh.builder.build(event.hits), model.builder.build(event.hits)):
        np.testing.assert_array_equal(a, b)


def test_windows_models_have_no_embedding():
    model = InteractionNetwork(GNNConfig(hidden=8, n_iterations=1), GraphBuilder.layer_pairs_only({}))
    assert model.embedding is None and "metric" not in model.config_dict()
    assert not any(k.startswith("embedding.") for k in model.state_dict())
    fresh = gnn_from_config(model.config_dict())
    fresh.load_state_dict(model.state_dict())  # a windows model.pt loads as before
    assert isinstance(fresh.builder, GraphBuilder)
