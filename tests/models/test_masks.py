"""trackstudy.models.masks: cluster permutation, BlockMask, packing."""

import numpy as np
import pytest
import torch

from trackstudy.errors import ConfigError, DataError
from trackstudy.models import masks

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_batch(seed=0, lengths=(150, 97, 40), n_clusters=12):
    g = torch.Generator().manual_seed(seed)
    return masks.batch_labels([torch.randint(0, n_clusters, (n,), generator=g) * 7 + 3 for n in lengths])


def test_batch_labels_pads_with_minus_one():
    labels, pad = masks.batch_labels([np.array([4, 4, 1]), np.array([2])])
    assert labels.tolist() == [[4, 4, 1], [2, -1, -1]]
    assert pad.tolist() == [[True, True, True], [True, False, False]]
    labels, pad = masks.batch_labels([np.array([0])], length=3)
    assert labels.tolist() == [[0, -1, -1]]
    with pytest.raises(ConfigError, match="shorter than the longest event"):
        masks.batch_labels([np.arange(5)], length=3)
    with pytest.raises(DataError, match="must be integers"):
        masks.batch_labels([np.array([0.5, 1.0])])
    with pytest.raises(DataError, match="no events"):
        masks.batch_labels([])


def test_check_labels_rejects_negative_label_on_real_hit():
    labels = torch.tensor([[0, -1, 2]])
    with pytest.raises(DataError, match="real hit 1 of event 0 has negative label -1"):
        masks.check_labels(labels)
    out, pad = masks.check_labels(labels, torch.tensor([[True, False, True]]))
    assert out.tolist() == [[0, -1, 2]]
    with pytest.raises(DataError, match="differs from labels shape"):
        masks.check_labels(labels, torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(DataError, match="must be integers"):
        masks.check_labels(torch.zeros(1, 3))


def test_cluster_mask_hand_case():
    # event 0: hits 0,2 in cluster 7, hit 1 alone; event 1: one real hit, two padding
    labels = torch.tensor([[7, 5, 7], [1, 0, 0]])
    pad = torch.tensor([[True, True, True], [True, False, False]])
    m = masks.cluster_mask(labels, pad)
    assert m[0].tolist() == [[True, False, True], [False, True, False], [True, False, True]]
    # padding attends only to itself, real hits never to padding
    assert m[1].tolist() == [[True, False, False], [False, True, False], [False, False, True]]


def test_cluster_order_is_a_stable_sort_with_padding_last():
    labels = torch.tensor([[3, 1, 3, 1, 2, 0]])
    pad = torch.tensor([[True, True, True, True, True, False]])
    order = masks.cluster_order(labels, pad)
    assert order.perm.tolist() == [[1, 3, 4, 0, 2, 5]]
    assert order.sorted_labels.tolist() == [[1, 1, 2, 3, 3, -1]]
    x = torch.arange(6)[None] * 10
    assert torch.equal(x.gather(1, order.perm).gather(1, order.inverse), x)


def test_cluster_order_random_batch_consistent():
    labels, pad = _random_batch()
    order = masks.cluster_order(labels, pad)
    assert torch.equal(labels.gather(1, order.perm), order.sorted_labels)
    for b in range(labels.shape[0]):
        s = order.sorted_labels[b]
        n = int(pad[b].sum())
        assert torch.all(s[:n][1:] >= s[:n][:-1]) and torch.all(s[n:] == -1)


def test_bin_capacity_ladder():
    sizes = torch.tensor([1, 2, 8, 9, 10, 16, 17, 100])
    caps = masks.bin_capacity(sizes, growth=1.25, multiple=8)
    # 9 -> 8*1.25 = 10 -> 16; 17 -> 8*1.25^4 = 19.5 -> 24; 100 -> 8*1.25^12 = 116.4 -> 120
    assert caps.tolist() == [1, 2, 8, 16, 16, 16, 24, 120]
    with pytest.raises(ConfigError, match="growth"):
        masks.bin_capacity(sizes, growth=1.0)


@pytest.mark.parametrize("max_bin_elements", [2 ** 24, 300])
def test_pack_clusters_covers_every_position_once_with_one_cluster_per_row(max_bin_elements):
    labels, pad = _random_batch(lengths=(150, 97, 40, 1))
    B, T = labels.shape
    pk = masks.pack_clusters(labels, pad, max_bin_elements=max_bin_elements)
    flat_lab, flat_pad = labels.reshape(-1), pad.reshape(-1)
    seen = torch.cat([pk.singles] + [b.index[b.valid] for b in pk.bins])
    assert sorted(seen.tolist()) == list(range(B * T))
    for b in pk.bins:
        assert b.capacity * b.capacity * b.index.shape[0] <= max(max_bin_elements, b.capacity ** 2)
        for row, ok in zip(b.index, b.valid):
            hits = row[ok]
            assert flat_pad[hits].all()
            assert len(set((hits // T).tolist())) == 1 and len(set(flat_lab[hits].tolist())) == 1
            # the row holds the whole cluster
            ev, lab = int(hits[0] // T), int(flat_lab[hits[0]])
            assert hits.numel() == int(((labels[ev] == lab) & pad[ev]).sum())
            assert 2 <= hits.numel() <= b.capacity
    # singles: padding and singleton clusters only
    for i in pk.singles.tolist():
        if flat_pad[i]:
            ev = i // T
            assert int(((labels[ev] == flat_lab[i]) & pad[ev]).sum()) == 1
    assert torch.equal(seen[pk.gather_back], torch.arange(B * T))


def test_pack_clusters_padding_waste_is_bounded():
    rng = np.random.default_rng(1)
    sizes = rng.integers(2, 300, size=100)
    labels = torch.from_numpy(np.repeat(np.arange(sizes.size), sizes))[None]
    pk = masks.pack_clusters(labels, growth=1.25)
    real = int(sizes.sum())
    assert pk.padded_slots <= 0.25 * real + 8 * sizes.size
    assert pk.attention_pairs < real ** 2 / 20  # far from dense


def _sorted_two_clusters():
    # 256 hits: cluster 0 = first 128, cluster 1 = last 128, then 128 padding slots
    lab = torch.cat([torch.zeros(128), torch.ones(128), -torch.ones(128)]).long()[None]
    return lab


def test_block_mask_density_hand_case_and_cache():
    lab = _sorted_two_clusters()
    bm = masks.block_mask_for_sorted(lab, 128, compile=False)
    # 3 x 3 tiles: the two cluster tiles and the (diagonal-only) padding tile are computed
    assert masks.block_mask_density(bm) == pytest.approx(3 / 9)
    assert masks.block_mask_for_sorted(lab.clone(), 128, compile=False) is bm
    masks.clear_block_mask_cache()
    assert masks.block_mask_for_sorted(lab, 128, compile=False) is not bm
    with pytest.raises(ConfigError, match="not a multiple"):
        masks.block_mask_for_sorted(lab[:, :200], 128, compile=False)


def test_block_mask_matches_dense_mask_elementwise():
    labels, pad = _random_batch(lengths=(200, 120))
    order = masks.cluster_order(labels, pad)
    T = masks.padded_length(labels.shape[1])
    s = torch.nn.functional.pad(order.sorted_labels, (0, T - labels.shape[1]), value=-1)
    bm = masks.block_mask_for_sorted(s, compile=False)
    idx = torch.arange(T)
    got = bm.mask_mod(torch.arange(2)[:, None, None], 0, idx[None, :, None], idx[None, None, :])
    want = masks.cluster_mask(s, s >= 0)
    assert torch.equal(got, want)


def test_block_mask_density_agrees_with_measures_block_fraction():
    measures = pytest.importorskip("trackstudy.locality.measures")
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 120, size=30)
    labels = np.repeat(np.arange(sizes.size), sizes)
    rng.shuffle(labels)
    n = labels.size
    order = masks.cluster_order(torch.from_numpy(labels)[None])
    T = masks.padded_length(n)
    s = torch.nn.functional.pad(order.sorted_labels, (0, T - n), value=-1)
    bm = masks.block_mask_for_sorted(s, compile=False)
    assert T == -(-n // 128) * 128  # the padding tail only fills the last tile
    assert masks.block_mask_density(bm) == pytest.approx(measures.block_fraction(labels, 128))


def test_pack_clusters_does_not_depend_on_label_values():
    # labels are only compared for equality: huge ids (e.g. hashed) pack exactly like small ones
    labels, pad = _random_batch(lengths=(150, 97, 40))
    huge = torch.where(pad, labels * (2 ** 40) + 5, labels)
    a, b = masks.pack_clusters(labels, pad), masks.pack_clusters(huge, pad)
    assert torch.equal(a.singles, b.singles) and len(a.bins) == len(b.bins)
    for x, y in zip(a.bins, b.bins):
        assert torch.equal(x.index, y.index) and torch.equal(x.valid, y.valid)
