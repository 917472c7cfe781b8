"""trackstudy.models.export: the packed-cluster inputs, the exportable forward pass against the model's
own forward for every family, and the ONNX graph in onnxruntime."""

import itertools

import numpy as np
import pytest
import torch

from trackstudy.errors import ConfigError
from trackstudy.models import export
from trackstudy.models.heads import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")
needs_ort = pytest.mark.skipif(None in (export.onnx, export.onnxscript, export.onnxruntime),
                               reason="onnx, onnxscript or onnxruntime not installed (pip install -e .[export])")


def _labels(n=400, k=40, seed=0):
    return np.random.default_rng(seed).integers(0, k, n) * 7 - 3  # any integers, not consecutive


@pytest.mark.parametrize("n_bins", [1, 2, 4, 9])
def test_pack_for_export_covers_every_hit_once(n_bins):
    labels = _labels()
    p = export.pack_for_export(labels, n_bins)
    assert list(p) == export.input_names("packed", n_bins)[1:]
    flat_index, flat_valid = [], []
    for b in range(n_bins):
        index, valid = p[f"bin{b}_index"], p[f"bin{b}_valid"]
        assert index.dtype == np.int64 and valid.dtype == bool and index.shape == valid.shape
        assert valid.any(axis=1).all()  # no row without a real hit (its softmax would be NaN)
        for row, ok in zip(index, valid):  # one cluster per row
            assert len(set(labels[row[ok]])) == 1 and ok.sum() == (labels == labels[row[0]]).sum()
        flat_index.append(index.reshape(-1))
        flat_valid.append(valid.reshape(-1))
    flat_index, flat_valid = np.concatenate(flat_index), np.concatenate(flat_valid)
    # gather points every hit at a real slot holding that hit
    assert (flat_index[p["gather"]] == np.arange(len(labels))).all() and flat_valid[p["gather"]].all()
    assert np.sort(flat_index[flat_valid]).tolist() == list(range(len(labels)))


def test_bins_minimise_the_attention_work():
    sizes = np.array([1, 2, 3, 8, 9, 30])
    counts = np.array([50, 20, 10, 5, 5, 1])
    ends = export._bin_edges(sizes, counts, 3)

    def cost(ends):
        starts = [0, *(e + 1 for e in ends[:-1])]
        return sum(counts[s:e + 1].sum() * sizes[e] ** 2 for s, e in zip(starts, ends))

    brute = min(cost([*cut, 5]) for k in range(3) for cut in itertools.combinations(range(5), k))
    assert ends[-1] == 5 and cost(list(ends)) == brute


def test_bad_bins_and_mode():
    with pytest.raises(ConfigError, match="bins"):
        export.pack_for_export(_labels(), 0)
    with pytest.raises(ConfigError, match="export mode 'sparse'"):
        export.input_names("sparse")


def test_edge_models_are_not_exported(tmp_path):
    from trackstudy.models.gnn import InteractionNetwork

    with pytest.raises(ConfigError, match="a gnn model is not exported"):
        export.export_onnx(InteractionNetwork(), tmp_path / "gnn.onnx")


@pytest.mark.parametrize("family", ["contrastive", "enc_cla", "enc_reg", "jm"])
@pytest.mark.parametrize("mode", export.MODES)
def test_export_model_equals_the_model(family, mode):
    torch.manual_seed(1)
    kwargs = {"n_classes": 12} if family in ("enc_cla", "jm") else {}
    if family == "contrastive":
        kwargs["filter_weight"] = 1.0
    model = build_model(family, "tiny", **kwargs).eval()
    labels = _labels(300, 25)
    x = np.random.default_rng(2).standard_normal((300, model.encoder_cfg.n_features)).astype(np.float32)
    inputs = export.onnx_inputs(x, labels, mode, 3)
    with torch.no_grad():
        got = export.ExportModel(model, mode)(*(torch.from_numpy(inputs[n]) for n in export.input_names(mode, 3)))
    ref = export.torch_outputs(model, x, labels, backend="packed" if mode == "packed" else "dense")
    assert list(ref) == export.output_names(model)
    for name, g in zip(export.output_names(model), got):
        np.testing.assert_allclose(g.numpy(), ref[name], atol=1e-5, rtol=0)


@needs_ort
def test_onnx_graph_in_onnxruntime(tmp_path):
    torch.manual_seed(0)
    model = build_model("contrastive", "tiny", filter_weight=1.0).eval()
    path = export.export_onnx(model, tmp_path / "m.onnx", n_bins=3, extra_metadata={"run": "x"})
    meta = export.read_metadata(path)
    assert meta["mode"] == "packed" and meta["bins"] == "3" and meta["run"] == "x"
    rng = np.random.default_rng(3)
    for n, k in ((500, 60), (37, 30), (5, 1)):  # dynamic N, cluster counts and capacities; one cluster
        x = rng.standard_normal((n, model.encoder_cfg.n_features)).astype(np.float32)
        result = export.check_onnx(path, model, x, _labels(n, k, seed=n))
        assert result["ok"] and max(result["max_abs_diff"].values()) < 1e-5, result
    with pytest.raises(FileExistsError):
        export.export_onnx(model, path)
