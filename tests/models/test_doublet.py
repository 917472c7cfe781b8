"""The doublet-token transformer: shapes, the exact backends agree on the block-diagonal tiles,
token order does not matter, no attention across tiles or graphs, the tiling itself, the graph
builder in the state dict, config errors; the same with hit tokens (doublets scored from their
hits' encodings)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trackstudy.errors import ConfigError
from trackstudy.graphs.module_map import GraphBuilder, GraphConfig
from trackstudy.models.doublet import (
    HIT_TOKEN_FEATURES,
    TOKEN_FEATURES,
    DoubletConfig,
    DoubletTransformer,
    doublet_clusters,
    doublet_position,
)
from trackstudy.models.encoder import EncoderConfig
from trackstudy.models.heads import EDGE_FAMILIES, FAMILIES, TOKEN_FAMILIES, model_from_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_graph(n=40, e=200, seed=0):
    """Hits x (n, 6), e distinct doublets (no two share a midpoint), features (e, 8)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    pairs = torch.randperm(n * n, generator=g)
    ei = torch.stack([pairs // n, pairs % n])
    ei = ei[:, ei[0] < ei[1]][:, :e]  # (a, b) and (b, a) would share a midpoint
    ea = torch.randn(e, 8, generator=g)
    return x, ei, ea


def tiny(cluster_size=0, backend="dense", seed=0, tokens="doublets") -> DoubletTransformer:
    torch.manual_seed(seed)
    n_features = len(TOKEN_FEATURES if tokens == "doublets" else HIT_TOKEN_FEATURES)
    enc = EncoderConfig.preset("tiny", n_features=n_features, attention=backend)
    return DoubletTransformer(enc, DoubletConfig(token_hidden=16, cluster_size=cluster_size, tokens=tokens)).eval()


def test_families():
    assert "doublet" in EDGE_FAMILIES and "doublet" in FAMILIES and "doublet" not in TOKEN_FAMILIES


@pytest.mark.parametrize("backend", ["dense", "packed", "lsh"])
def test_forward_shape(backend):
    model = tiny(cluster_size=16, backend=backend)
    x, ei, ea = random_graph()
    with torch.no_grad():
        out = model(x, ei, ea)
        assert out.shape == (200,) and torch.isfinite(out).all()
        assert model(x, ei[:, :0], ea[:0]).shape == (0,)
    out = model.train()(x, ei, ea)
    out.sum().backward()  # differentiable with every trainable backend on the CPU
    assert model.classifier.weight.grad is not None


def test_dense_and_packed_agree_on_the_tiles():
    model = tiny(cluster_size=16)
    x, ei, ea = random_graph()
    with torch.no_grad():
        dense = model(x, ei, ea, backend="dense")
        packed = model(x, ei, ea, backend="packed")
        explicit = model(x, ei, ea, backend="explicit")
    torch.testing.assert_close(packed, dense, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(explicit, dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cluster_size", [0, 16])
def test_token_order_does_not_matter(cluster_size):
    model = tiny(cluster_size=cluster_size)
    x, ei, ea = random_graph()
    eta, phi = doublet_position(x, ei)
    labels = doublet_clusters(eta, phi, None, cluster_size)
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    # the permuted doublets fall into the same tiles (the same sets of doublets)
    permuted = doublet_clusters(eta[perm], phi[perm], None, cluster_size)
    same = labels[perm][:, None] == labels[perm][None, :]
    assert torch.equal(same, permuted[:, None] == permuted[None, :])
    with torch.no_grad():
        torch.testing.assert_close(model(x, ei[:, perm], ea[perm]), model(x, ei, ea)[perm], rtol=1e-5, atol=1e-5)


def test_no_attention_across_tiles():
    model = tiny(cluster_size=16)
    x, ei, ea = random_graph()
    labels = doublet_clusters(*doublet_position(x, ei), None, 16)
    ea2 = ea.clone()
    ea2[0] += 3.0  # doublet features only: the doublet stays in its tile
    with torch.no_grad():
        a, b = model(x, ei, ea), model(x, ei, ea2)
    changed = (a - b).abs() > 1e-6
    assert changed[0] and torch.equal(changed & (labels != labels[0]), torch.zeros_like(changed))
    assert (changed & (labels == labels[0])).sum() > 1  # the rest of the tile sees it


def test_no_attention_across_graphs():
    model = tiny(cluster_size=0)
    x1, ei1, ea1 = random_graph(seed=1)
    x2, ei2, ea2 = random_graph(seed=2, e=150)
    x = torch.cat([x1, x2])
    ei = torch.cat([ei1, ei2 + len(x1)], dim=1)
    ea = torch.cat([ea1, ea2])
    batch = torch.cat([torch.zeros(200, dtype=torch.int64), torch.ones(150, dtype=torch.int64)])
    with torch.no_grad():
        both = model(x, ei, ea, batch)
        torch.testing.assert_close(both[:200], model(x1, ei1, ea1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(both[200:], model(x2, ei2, ea2), rtol=1e-5, atol=1e-5)


def test_tiles_have_about_the_target_size():
    g = torch.Generator().manual_seed(0)
    eta, phi = torch.rand(5000, generator=g) * 8 - 4, torch.rand(5000, generator=g) * 6.28 - 3.14
    labels = doublet_clusters(eta, phi, None, 100)
    sizes = torch.bincount(labels)
    assert len(sizes) == 49 and sizes.min() >= 90 and sizes.max() <= 115
    # tiles are local: each holds a narrow eta range
    for c in range(3):
        assert float(eta[labels == c].max() - eta[labels == c].min()) < 1.5
    graph = torch.arange(5000) % 2
    labels = doublet_clusters(eta, phi, graph, 0)
    assert torch.equal(labels, graph)
    labels = doublet_clusters(eta, phi, graph, 100)
    assert not bool((labels[graph == 0][:, None] == labels[graph == 1][None, :]).any())


def test_state_dict_carries_the_graph_builder():
    b = GraphBuilder(np.array([[0, 1], [1, 2]]), np.ones((2, 4)), np.array([5, 7], dtype=np.int64),
                     GraphConfig(module_map=True))
    model = tiny()
    model.set_builder(b)
    clone = model_from_config(model.config_dict())
    assert isinstance(clone, DoubletTransformer) and clone.cfg == model.cfg
    clone.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(clone.builder.module_pairs, [5, 7])
    assert clone.builder.config == b.config


def test_config_errors():
    with pytest.raises(ConfigError, match="model.doublet.width"):
        DoubletConfig.from_dict({"width": 3})
    with pytest.raises(ConfigError, match="model.doublet.cluster_size"):
        DoubletConfig(cluster_size=-1)
    with pytest.raises(ConfigError, match="model.doublet.token_hidden"):
        DoubletConfig(token_hidden=0)
    with pytest.raises(ConfigError, match="n_features=20"):
        DoubletTransformer(EncoderConfig.preset("tiny"))


# ------------------------------------------------------------------------------ hit tokens


@pytest.mark.parametrize("backend", ["dense", "packed", "lsh"])
def test_hit_tokens_forward_shape(backend):
    model = tiny(cluster_size=8, backend=backend, tokens="hits")
    x, ei, ea = random_graph()
    with torch.no_grad():
        out = model(x, ei, ea)
        assert out.shape == (200,) and torch.isfinite(out).all()
        assert model(x, ei[:, :0], ea[:0]).shape == (0,)
    model.train()(x, ei, ea).sum().backward()
    assert all(p.grad is not None for p in model.encoder.parameters() if p.requires_grad)


def test_hit_tokens_exact_backends_agree_and_edge_order_does_not_matter():
    model = tiny(cluster_size=8, tokens="hits")
    x, ei, ea = random_graph()
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        dense = model(x, ei, ea, backend="dense")
        torch.testing.assert_close(model(x, ei, ea, backend="packed"), dense, rtol=1e-5, atol=1e-5)
        # a doublet's score depends on its hits and features, not on which other doublets are scored
        torch.testing.assert_close(model(x, ei[:, perm], ea[perm]), dense[perm], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(x, ei[:, :7], ea[:7]), dense[:7], rtol=1e-5, atol=1e-5)


def test_hit_tokens_attend_within_their_tile_only():
    model = tiny(cluster_size=8, tokens="hits")
    x, ei, ea = random_graph()
    tile = model.hit_tokens(x)[1].cluster_labels[0]
    x2 = x.clone()
    x2[0, 3] += 2.0  # hit 0's z: it stays in its (eta, phi) tile (eta is a feature of its own)
    with torch.no_grad():
        a, b = model(x, ei, ea), model(x2, ei, ea)
    changed = (a - b).abs() > 1e-6
    ends_in_tile = (tile[ei[0]] == tile[0]) | (tile[ei[1]] == tile[0])
    assert changed.any() and not bool((changed & ~ends_in_tile).any())
    # a doublet between two other hits of the tile changes too: they attended to hit 0
    others = (tile[ei[0]] == tile[0]) & (tile[ei[1]] == tile[0]) & (ei[0] != 0) & (ei[1] != 0)
    assert bool((changed & others).any())


def test_hit_tokens_no_attention_across_graphs():
    model = tiny(cluster_size=8, tokens="hits")
    x1, ei1, ea1 = random_graph(seed=1)
    x2, ei2, ea2 = random_graph(seed=2, e=150, n=30)
    x = torch.cat([x1, x2])
    ei = torch.cat([ei1, ei2 + len(x1)], dim=1)
    ea = torch.cat([ea1, ea2])
    edge_batch = torch.cat([torch.zeros(200, dtype=torch.int64), torch.ones(150, dtype=torch.int64)])
    node_batch = torch.cat([torch.zeros(40, dtype=torch.int64), torch.ones(30, dtype=torch.int64)])
    with torch.no_grad():
        both = model(x, ei, ea, edge_batch, node_batch=node_batch)
        torch.testing.assert_close(both[:200], model(x1, ei1, ea1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(both[200:], model(x2, ei2, ea2), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="node_batch"):
        model(x, ei, ea, edge_batch)


def _hits(eta, phi):
    eta, phi = torch.tensor(eta), torch.tensor(phi)
    x = torch.zeros(len(eta), 6)
    x[:, 1], x[:, 2], x[:, 4] = torch.sin(phi), torch.cos(phi), eta / 4.0  # sin_phi, cos_phi, eta / 4
    return x


def test_hit_token_offsets_from_the_tile_centre():
    """Worked out by hand: two tiles along phi, {0.1, 0.3} (centre 0.2, eta 0) and {2.0, 2.2}
    (centre 2.1, eta 1.5): offsets +-0.1 rad and +-0.5 in eta, i.e. +-1 and +-5 in units of 0.1;
    one tile across phi = +-pi, {3.1, -3.1}: centre pi, the offsets wrap to -+0.0416 rad."""
    model = tiny(cluster_size=2, tokens="hits")
    x = _hits([0.0, 0.0, 1.0, 2.0], [0.1, 0.3, 2.0, 2.2])
    tokens, ctx = model.hit_tokens(x)
    assert tokens.shape == (4, 8) and torch.equal(tokens[:, :6], x)
    assert ctx.cluster_labels[0].tolist() == [0, 0, 1, 1]
    torch.testing.assert_close(tokens[:, 6:], torch.tensor([[-1.0, 0.0], [1.0, 0.0], [-1.0, -5.0], [1.0, 5.0]]),
                               rtol=1e-4, atol=1e-4)
    tokens, _ = tiny(cluster_size=0, tokens="hits").hit_tokens(_hits([0.0, 0.4], [3.1, -3.1]))
    d = (3.1 - torch.pi) / 0.1
    torch.testing.assert_close(tokens[:, 6:], torch.tensor([[d, -2.0], [-d, 2.0]]), rtol=1e-4, atol=1e-4)
    far, _ = model.hit_tokens(_hits([0.0, 4.0], [0.0, 3.0]))  # one tile of two hits 3 rad apart: clipped
    assert far[:, 6:].abs().max() == 10.0


def test_hit_tokens_config_round_trip_and_errors():
    model = tiny(cluster_size=8, tokens="hits")
    clone = model_from_config(model.config_dict())
    assert clone.cfg.tokens == "hits"
    clone.load_state_dict(model.state_dict())
    x, ei, ea = random_graph()
    with torch.no_grad():
        torch.testing.assert_close(clone.eval()(x, ei, ea), model(x, ei, ea))
    with pytest.raises(ConfigError, match="model.doublet.tokens"):
        DoubletConfig(tokens="triplets")
    with pytest.raises(ConfigError, match="n_features=8"):
        DoubletTransformer(EncoderConfig.preset("tiny", n_features=len(TOKEN_FEATURES)), DoubletConfig(tokens="hits"))
