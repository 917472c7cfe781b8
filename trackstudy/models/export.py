"""ONNX export of a track model (encoder + head) with the cluster attention, checked with onnxruntime.

The exported graph is the model's forward pass on one event of N hits (no batch axis, no
padding hits); the host computes the input features and the locality clusters, as inference
does, and gives the clusters in one of two forms (``mode``):

``packed``  the packed-cluster attention of the ``packed`` backend: the clusters are sorted by size
            and cut into ``n_bins`` bins (:func:`pack_for_export`); bin i is an index ``bin{i}_index``
            (K_i, C_i) int64 of hit rows (padding slots: any row) with ``bin{i}_valid`` (K_i, C_i)
            bool (True = a real hit of the cluster; at least one per row), and ``gather`` (N,) int64
            is the position of each hit's row in the concatenation of the bins' flattened slots.
            Attention memory is sum_i K_i * C_i^2 per head, never N^2.
``dense``   one (N, N) mask from ``labels`` (N,) int64, True where the labels agree (all zeros:
            full attention over the event). O(N^2): small events only.

Inputs ``x`` (N, F) float32 are the run's features (:func:`trackstudy.models.features.hit_features`,
names and scales in the model's metadata). Outputs are the family's per-hit outputs without the
batch axis: contrastive ``embedding`` (N, E) (and ``filter`` (N,) logits with a hit filter), enc_cla
``logits`` (N, n_outputs), enc_reg ``params`` (N, 4) and ``latent`` (N, L), jm all three. The
contract, with an example, is in docs/onnx.md.

The graph comes from ``torch.onnx.export(..., dynamo=True)`` (torch.export; the TorchScript exporter
is deprecated since torch 2.9) with dynamic N, K_i and C_i; the file holds the metadata
(:func:`metadata`). :func:`check_onnx` runs it in onnxruntime on the CPU against the torch model's
``packed`` (or ``dense``) forward. onnx, onnxscript and onnxruntime are the optional extra ``export``
(``pip install -e .[export]``); without them this module imports and :func:`export_onnx` /
:func:`check_onnx` raise ConfigError naming the missing package.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from trackstudy.data.io import atomic_write_bytes
from trackstudy.errors import ConfigError, DataError
from trackstudy.models.attention import AttentionContext
from trackstudy.models.heads import TOKEN_FAMILIES, TrackModel
from trackstudy.models.roads import REG_TARGETS

try:  # the optional extra `export`
    import onnx
except ImportError:  # pragma: no cover - depends on the environment
    onnx = None
try:
    import onnxruntime
except ImportError:  # pragma: no cover - depends on the environment
    onnxruntime = None
try:  # torch.onnx.export(dynamo=True) translates the graph with it
    import onnxscript
except ImportError:  # pragma: no cover - depends on the environment
    onnxscript = None

#: Export modes (see the module docstring).
MODES = ("packed", "dense")
#: Bins of the packed mode: clusters of similar size share a bin (fewer bins: more padding; on real
#: event 1001 onnxruntime took 1.07 s of CPU with 8 bins, 1.34-1.44 s with 4, see docs/results.md).
DEFAULT_BINS = 8
#: Largest |onnxruntime - torch| accepted by :func:`check_onnx` (float32 on the CPU; measured
#: differences are ~1e-6 on real event 1001, see docs/results.md).
TOLERANCE = 1e-4


def require(package: str):
    """The optional package ``package`` (onnx, onnxscript or onnxruntime), or ConfigError saying how to
    install it."""
    module = {"onnx": onnx, "onnxscript": onnxscript, "onnxruntime": onnxruntime}[package]
    if module is None:
        raise ConfigError(f"ONNX export needs the package {package!r}: pip install -e .[export] "
                          f"(onnx, onnxscript, onnxruntime)")
    return module


# --------------------------------------------------------------------------------------------
# the clusters as the graph's inputs


def _bin_edges(sizes: np.ndarray, counts: np.ndarray, n_bins: int) -> np.ndarray:
    """Cut the sorted distinct cluster ``sizes`` (with ``counts`` clusters each) into at most
    ``n_bins`` contiguous groups minimising the attention work sum(clusters * capacity^2), a group's
    capacity being its largest size (dynamic programming); returns each group's last index."""
    U = len(sizes)
    cum = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)])
    sq = sizes.astype(np.float64) ** 2
    best = cum[1:] * sq  # one group: sizes[0..j]
    back = []
    for _ in range(1, min(n_bins, U)):
        new, arg = best.copy(), np.full(U, -1, dtype=np.int64)  # -1: fewer groups
        for j in range(1, U):
            i = np.arange(1, j + 1)  # the last group is sizes[i..j]
            c = best[i - 1] + (cum[j + 1] - cum[i]) * sq[j]
            k = int(np.argmin(c))
            if c[k] < new[j]:
                new[j], arg[j] = c[k], i[k]
        best = new
        back.append(arg)
    ends, j, level = [], U - 1, len(back)
    while j >= 0:
        i = back[level - 1][j] if level else 0
        level -= 1
        if i < 0:
            continue
        ends.append(j)
        j = i - 1
    return np.array(sorted(ends), dtype=np.int64)


def pack_for_export(labels, n_bins: int = DEFAULT_BINS) -> dict[str, np.ndarray]:
    """The packed-mode cluster inputs of an event with cluster ``labels`` (N,) (any integers):
    ``bin{i}_index`` (K_i, C_i) int64, ``bin{i}_valid`` (K_i, C_i) bool for i < n_bins, ``gather``
    (N,) int64. Every bin holds at least one row (an unused bin: one row of one slot on hit 0)."""
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    if n_bins < 1:
        raise ConfigError(f"export bins: must be >= 1, got {n_bins}")
    N = len(labels)
    if N == 0:
        raise DataError("pack_for_export: no hits")
    _, cid, csize = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.argsort(cid.reshape(-1), kind="stable")  # hits grouped by cluster
    starts = np.concatenate([[0], np.cumsum(csize)[:-1]])
    sizes, counts = np.unique(csize, return_counts=True)
    caps = sizes[_bin_edges(sizes, counts, n_bins)]  # ascending capacities, one per used bin
    group = np.searchsorted(caps, csize)  # each cluster's bin
    out, gather, offset = {}, np.empty(N, dtype=np.int64), 0
    for b in range(n_bins):
        in_bin = np.flatnonzero(group == b)
        if len(in_bin) == 0:
            out[f"bin{b}_index"] = np.zeros((1, 1), dtype=np.int64)
            out[f"bin{b}_valid"] = np.ones((1, 1), dtype=bool)
            offset += 1
            continue
        slot = np.arange(int(caps[b]))
        valid = slot[None, :] < csize[in_bin][:, None]  # (K, C)
        pos = np.where(valid, starts[in_bin][:, None] + slot[None, :], starts[in_bin][:, None])
        index = order[pos]  # padding slots repeat the cluster's first hit
        out[f"bin{b}_index"], out[f"bin{b}_valid"] = index.astype(np.int64), valid
        flat = np.flatnonzero(valid.reshape(-1))
        gather[index.reshape(-1)[flat]] = offset + flat
        offset += valid.size
    out["gather"] = gather
    return out


def input_names(mode: str, n_bins: int = DEFAULT_BINS) -> list[str]:
    """The graph's input names, in order."""
    _check_mode(mode)
    if mode == "dense":
        return ["x", "labels"]
    return ["x", *(f"bin{b}_{k}" for b in range(n_bins) for k in ("index", "valid")), "gather"]


def output_names(model: TrackModel) -> list[str]:
    """The graph's output names, in order (the family's outputs)."""
    if model.family == "contrastive":
        return ["embedding"] + (["filter"] if model.hit_filter is not None else [])
    return {"enc_cla": ["logits"], "enc_reg": ["params", "latent"], "jm": ["params", "latent", "logits"]}[model.family]


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"export mode {mode!r}: choose from {', '.join(MODES)}")


# --------------------------------------------------------------------------------------------
# the exportable forward pass


def _attention(q, k, v, clusters, mode: str):
    """Cluster attention of q, k, v (N, H, hs): explicit softmax, float32 scores."""
    N, H, hs = q.shape
    scale = 1.0 / math.sqrt(hs)
    if mode == "dense":
        (labels,) = clusters
        mask = labels[:, None] == labels[None, :]  # (N, N), True = may attend
        s = torch.einsum("nhd,mhd->hnm", q, k) * scale  # (H, N, N)
        s = s.masked_fill(~mask[None], float("-inf"))
        return torch.einsum("hnm,mhd->nhd", torch.softmax(s, dim=-1), v)
    *bins, gather = clusters
    outs = []
    for index, valid in zip(bins[0::2], bins[1::2]):
        K, C = index.shape
        qb, kb, vb = (t[index].transpose(1, 2) for t in (q, k, v))  # (K, H, C, hs)
        s = (qb @ kb.transpose(-2, -1)) * scale  # (K, H, C, C)
        s = s.masked_fill(~valid[:, None, None, :], float("-inf"))
        ob = torch.softmax(s, dim=-1) @ vb  # (K, H, C, hs)
        outs.append(ob.transpose(1, 2).reshape(K * C, H, hs))
    return torch.cat(outs)[gather]  # (N, H, hs)


def _encode(encoder, x, clusters, mode: str):
    """The :class:`~trackstudy.models.encoder.Encoder` forward on (N, F) inputs (eval mode)."""
    h = encoder.input_proj(x)  # (N, C)
    for block in encoder.blocks:
        attn = block.attn
        N, C = h.shape
        q, k, v = attn.c_attn(block.ln_1(h)).split(C, dim=1)
        q, k, v = (t.reshape(N, attn.n_heads, C // attn.n_heads) for t in (q, k, v))  # (N, nh, hs)
        h = h + attn.c_proj(_attention(q, k, v, clusters, mode).reshape(N, C))
        h = h + block.mlp(block.ln_2(h))
    return encoder.ln_f(h)


class ExportModel(nn.Module):
    """A :class:`~trackstudy.models.heads.TrackModel` as ``forward(x, *clusters) -> outputs`` on one
    event (inputs and outputs as in the module docstring); shares the model's weights."""

    def __init__(self, model: TrackModel, mode: str = "packed"):
        super().__init__()
        _check_mode(mode)
        if model.encoder_cfg.geo_bias:  # _encode below has no geometric channels: refuse, never export another function
            raise ConfigError("ONNX export: models with the geometric attention bias (model.encoder.geo_bias) "
                              "are not exportable yet; run them with trackstudy predict")
        self.model, self.mode = model, mode

    def forward(self, x, *clusters):
        m = self.model
        h = _encode(m.encoder, x, clusters, self.mode)
        if m.family == "contrastive":
            out = (m.projection(h),)
            return out + ((m.hit_filter(h)[:, 0],) if m.hit_filter is not None else ())
        if m.family == "enc_cla":
            return (m.classifier(h),)
        y = m.regressor(h)
        params, latent = y[:, : len(REG_TARGETS)], y[:, len(REG_TARGETS):]
        if m.family == "enc_reg":
            return params, latent
        h = _encode(m.cla_encoder, torch.cat([x, y], dim=1), clusters, self.mode)
        return params, latent, m.classifier(h)


def example_inputs(model: TrackModel, mode: str = "packed", n_bins: int = DEFAULT_BINS,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of a synthetic event to trace the graph with: every bin with >= 2 clusters of
    >= 2 hits, no two dynamic sizes equal (so that torch.export keeps each size symbolic)."""
    rng = np.random.default_rng(seed)
    sizes = np.concatenate([np.full(2 + b, 3 + 2 * b) for b in range(n_bins)])  # bin b: 2+b clusters of 3+2b
    labels = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(labels)
    x = rng.standard_normal((len(labels), model.encoder_cfg.n_features)).astype(np.float32)
    clusters = {"labels": labels.astype(np.int64)} if mode == "dense" else pack_for_export(labels, n_bins)
    return {"x": x, **clusters}


def metadata(model: TrackModel, mode: str, n_bins: int, extra: dict | None = None) -> dict[str, str]:
    """String metadata stored in the ONNX file: format, mode, bins, inputs, outputs, features (JSON)."""
    return {"trackstudy_format": "1", "mode": mode, "bins": str(n_bins if mode == "packed" else 0),
            "family": model.family, "inputs": json.dumps(input_names(mode, n_bins)),
            "outputs": json.dumps(output_names(model)), "features": json.dumps(model.feature_cfg.to_dict()),
            **{k: v if isinstance(v, str) else json.dumps(v) for k, v in (extra or {}).items()}}


@contextlib.contextmanager
def _quiet_export():
    """torch.onnx's progress lines, log warnings and Python warnings stay out of the user's terminal."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(model: TrackModel, path: str | os.PathLike, *, mode: str = "packed", n_bins: int = DEFAULT_BINS,
                force: bool = False, extra_metadata: dict | None = None) -> Path:
    """Write ``model`` as an ONNX graph to ``path`` (atomically; an existing file only with
    ``force``); returns the path. Runs on the CPU (the model is copied there, float32)."""
    if not isinstance(model, TrackModel):
        raise ConfigError(f"export: ONNX graphs are written for the hit-token families ({', '.join(TOKEN_FAMILIES)}); "
                          f"a {getattr(model, 'family', type(model).__name__)} model is not exported")
    if model.tokenizer is not None:
        raise ConfigError("export: a model.input 'codes' model (its tokenizer's codes as input) is not exported; "
                          "the ONNX graph takes hit features")
    require("onnx")
    require("onnxscript")
    _check_mode(mode)
    if n_bins < 1:
        raise ConfigError(f"export bins: must be >= 1, got {n_bins}")
    was_training = model.training
    cpu = model if next(model.parameters()).device.type == "cpu" else _cpu_copy(model)
    cpu.eval()
    wrapper = ExportModel(cpu, mode).eval()
    ex = example_inputs(cpu, mode, n_bins)
    names = input_names(mode, n_bins)
    args = tuple(torch.from_numpy(ex[n]) for n in names)
    n_hits = torch.export.Dim("n_hits", min=2)
    dims: list[dict] = [{0: n_hits}]
    if mode == "dense":
        dims.append({0: n_hits})
    else:
        for b in range(n_bins):
            k, c = torch.export.Dim(f"clusters{b}", min=1), torch.export.Dim(f"capacity{b}", min=1)
            dims += [{0: k, 1: c}, {0: k, 1: c}]
        dims.append({0: n_hits})
    try:
        with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), _quiet_export():
            tmp_file = Path(tmp) / "model.onnx"
            torch.onnx.export(wrapper, args, str(tmp_file), dynamo=True, input_names=names,
                              output_names=output_names(cpu), dynamic_shapes=(dims[0], tuple(dims[1:])), external_data=False,
                              verbose=False)
            proto = onnx.load(str(tmp_file))
    finally:
        model.train(was_training)
    for key, value in metadata(cpu, mode, n_bins, extra_metadata).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return atomic_write_bytes(path, proto.SerializeToString(), force=force)


def _cpu_copy(model: TrackModel) -> TrackModel:
    clone = type(model)(model.encoder_cfg, model.head_cfg, model.feature_cfg, model.binning, model.track_params)
    clone.load_state_dict({k: v.detach().float().cpu() for k, v in model.state_dict().items()})
    return clone


# --------------------------------------------------------------------------------------------
# the check against torch


def torch_outputs(model: TrackModel, x: np.ndarray, labels: np.ndarray | None, backend: str = "packed") -> dict:
    """The model's own forward (the inference path: AttentionContext, ``backend``) on one event,
    float32 numpy per output name (no batch axis)."""
    dev = next(model.parameters()).device
    xt = torch.as_tensor(x, dtype=torch.float32, device=dev)[None]
    if labels is not None:  # consecutive labels >= 0, as the attention masks want
        labels = np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1).astype(np.int64)
    lab = None if labels is None else torch.as_tensor(labels, device=dev)[None]
    ctx = AttentionContext(torch.ones(1, len(x), dtype=torch.bool, device=dev), lab)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(xt, ctx, backend=backend)
    finally:
        model.train(was_training)
    return {k: v[0].float().cpu().numpy() for k, v in out.items()}


def onnx_inputs(x: np.ndarray, labels: np.ndarray | None, mode: str, n_bins: int) -> dict[str, np.ndarray]:
    """The graph's inputs for features ``x`` (N, F) and cluster ``labels`` (N,) (None: one cluster)."""
    labels = np.zeros(len(x), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    clusters = {"labels": labels} if mode == "dense" else pack_for_export(labels, n_bins)
    return {"x": np.ascontiguousarray(x, dtype=np.float32), **clusters}


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of an exported file (:func:`metadata`)."""
    return {p.key: p.value for p in require("onnx").load(str(path), load_external_data=False).metadata_props}


def run_onnx(path: str | os.PathLike, inputs: dict[str, np.ndarray], threads: int | None = None) -> dict:
    """Run an exported file in onnxruntime on the CPU; outputs by name."""
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    return dict(zip(names, session.run(names, {k: v for k, v in inputs.items() if k in wanted})))


def check_onnx(path: str | os.PathLike, model: TrackModel, x: np.ndarray, labels: np.ndarray | None,
               threads: int | None = None) -> dict:
    """onnxruntime (CPU) against the torch model on one event (features ``x`` (N, F), cluster
    ``labels`` (N,) or None). Returns {"max_abs_diff": per output, "max_rel_diff", "n_hits",
    "mode", "bins", "tolerance", "ok"}: ok when every output is within :data:`TOLERANCE`."""
    meta = read_metadata(path)
    mode, n_bins = meta.get("mode", "packed"), int(meta.get("bins", DEFAULT_BINS))
    got = run_onnx(path, onnx_inputs(x, labels, mode, n_bins), threads)
    ref = torch_outputs(model, x, labels, backend="packed" if mode == "packed" else "dense")
    missing = sorted(set(ref) - set(got))
    if missing:
        raise DataError(f"{path}: the ONNX graph has no output {missing[0]!r} (outputs: {', '.join(got)})")
    diff = {k: float(np.abs(got[k] - ref[k]).max(initial=0.0)) for k in ref}
    rel = {k: diff[k] / max(float(np.abs(ref[k]).max(initial=0.0)), 1e-12) for k in ref}
    return {"max_abs_diff": diff, "max_rel_diff": rel, "n_hits": int(len(x)), "mode": mode,
            "bins": n_bins if mode == "packed" else 0, "tolerance": TOLERANCE,
            "ok": all(d <= TOLERANCE for d in diff.values())}


__all__ = ["DEFAULT_BINS", "MODES", "TOLERANCE", "ExportModel", "check_onnx", "example_inputs", "export_onnx",
           "input_names", "metadata", "onnx_inputs", "output_names", "pack_for_export", "read_metadata", "require",
           "run_onnx", "torch_outputs"]
