"""The interaction network: shapes, edge-order equivariance, the weighted loss by hand, the graph
builder carried in its state dict, config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trackstudy.errors import ConfigError
from trackstudy.graphs.module_map import GraphBuilder, GraphConfig
from trackstudy.models.gnn import GNNConfig, InteractionNetwork, edge_loss, gnn_from_config
from trackstudy.models.heads import model_from_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_graph(n=12, e=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    ei = torch.randint(0, n, (2, e), generator=g)
    ea = torch.randn(e, 8, generator=g)
    return x, ei, ea


def test_forward_shape_and_edge_order_equivariance():
    torch.manual_seed(0)
    model = InteractionNetwork(GNNConfig(hidden=8, n_iterations=3)).eval()
    x, ei, ea = random_graph()
    with torch.no_grad():
        out = model(x, ei, ea)
        assert out.shape == (30,)
        perm = torch.randperm(30)
        torch.testing.assert_close(model(x, ei[:, perm], ea[perm]), out[perm], rtol=1e-5, atol=1e-5)
        assert model(x, ei[:, :0], ea[:0]).shape == (0,)


def test_messages_pass_along_edges_only():
    torch.manual_seed(1)
    model = InteractionNetwork(GNNConfig(hidden=8, n_iterations=2)).eval()
    x, _, _ = random_graph(n=4)
    ei = torch.tensor([[0, 2], [1, 3]])  # two separate components
    ea = torch.zeros(2, 8)
    x2 = x.clone()
    x2[3] += 5.0  # changes the second component only
    with torch.no_grad():
        out, out2 = model(x, ei, ea), model(x2, ei, ea)
    assert out2[0] == pytest.approx(float(out[0]), abs=1e-6) and abs(float(out2[1] - out[1])) > 1e-4


def test_weighted_loss_by_hand():
    logits = torch.zeros(4)
    y = torch.tensor([1.0, 1.0, 0.0, 0.0])
    pt = torch.tensor([2.0, 0.5, 0.0, 0.0])
    ln2 = float(np.log(2.0))
    # logits 0: every edge costs ln 2, whatever the weights
    assert float(edge_loss(logits, y, pt, GNNConfig(pt_weight=3.0))) == pytest.approx(ln2)
    assert float(edge_loss(logits, y, pt, GNNConfig(pt_weight=3.0, balance=False))) == pytest.approx(ln2)
    # a wrong high-pT edge costs 3x a wrong low-pT one (balance off: weights 3, 1, 1, 1)
    logits = torch.tensor([-2.0, 0.0, 0.0, 0.0])
    bce = float(torch.nn.functional.softplus(torch.tensor(2.0)))
    expected = (3 * bce + 3 * ln2) / 6
    assert float(edge_loss(logits, y, pt, GNNConfig(pt_weight=3.0, balance=False))) == pytest.approx(expected)


def test_builder_travels_in_the_state_dict():
    b = GraphBuilder(np.array([[0, 1], [1, 2]]), np.ones((2, 4)), np.array([5, 7], dtype=np.int64),
                     GraphConfig(module_map=True))
    model = InteractionNetwork(GNNConfig(hidden=8, n_iterations=1), b)
    fresh = gnn_from_config(model.config_dict())
    fresh.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(fresh.builder.module_pairs, [5, 7])
    assert fresh.builder.config == b.config
    assert isinstance(model_from_config(model.config_dict()), InteractionNetwork)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="unknown config key 'model.gnn.width'"):
        GNNConfig.from_dict({"width": 3})
    with pytest.raises(ConfigError, match="model.gnn.n_iterations: must be >= 1"):
        GNNConfig(n_iterations=0)
