"""trackstudy.models.compiled: events padded to size buckets compile a bounded number of graphs, and the
outputs equal the model's own forward."""

import numpy as np
import pandas as pd
import pytest
import torch

from trackstudy.bench.latency import measure_latency, preset_model
from trackstudy.data.io import read_event
from trackstudy.errors import ConfigError, DataError
from trackstudy.inference import predict_event
from trackstudy.models.attention import AttentionContext
from trackstudy.models.compiled import SIZE_BUCKETS, BucketedModel, bucket_size
from trackstudy.models.heads import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bucket_size():
    assert bucket_size(1) == 1024 and bucket_size(1024) == 1024 and bucket_size(1025) == 2048
    assert bucket_size(48006) == 65536 and bucket_size(SIZE_BUCKETS[-1] + 1) == 2 * SIZE_BUCKETS[-1]
    assert len(SIZE_BUCKETS) <= 8
    with pytest.raises(DataError):
        bucket_size(0)


@pytest.mark.parametrize("family, backend", [("contrastive", "packed"), ("enc_reg", "dense")])
def test_twenty_events_compile_a_bounded_number_of_times(family, backend):
    torch._dynamo.reset()
    compiles = []

    def counting_backend(gm, example_inputs):
        compiles.append(tuple(tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor)))
        return gm.forward

    torch.manual_seed(0)
    kwargs = {"filter_weight": 1.0} if family == "contrastive" else {}
    model = build_model(family, "tiny", encoder_overrides={"attention": backend}, **kwargs).eval()
    buckets = (256, 512, 1024)
    wrapped = BucketedModel(model, buckets=buckets, compile_backend=counting_backend)
    rng = np.random.default_rng(0)
    sizes = rng.integers(20, 1000, 20)
    seen = set()
    for n in sizes:
        x = torch.from_numpy(rng.standard_normal((1, n, model.encoder_cfg.n_features)).astype(np.float32))
        labels = torch.from_numpy(rng.integers(0, max(1, n // 30), n))[None]
        got = wrapped(x, labels)
        with torch.no_grad():
            ref = model(x, AttentionContext(cluster_labels=labels), backend=backend)
        assert set(got) == set(ref)
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], atol=1e-5, rtol=0)
        seen.add(bucket_size(int(n), buckets))
    # four roles (input, q/k/v, residual + MLP, head), shared by the layers, once per bucket reached
    assert len(seen) == 3 and len(seen) <= len(compiles) <= 4 * len(seen), compiles
    before = len(compiles)
    for n in rng.integers(20, 1000, 10):  # more events: nothing new to compile
        wrapped(torch.zeros(1, int(n), model.encoder_cfg.n_features), None)
    assert len(compiles) == before


def test_refused():
    with pytest.raises(ConfigError, match="one-encoder families"):
        BucketedModel(build_model("jm", "tiny", n_classes=5))
    model = build_model("contrastive", "tiny").eval()
    with pytest.raises(DataError, match=r"\(1, N, F\)"):
        BucketedModel(model, compile_backend="eager")(torch.zeros(2, 5, 7))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_inductor_compiles_once_per_bucket():
    torch._dynamo.reset()
    compiles = []
    inductor = torch._dynamo.lookup_backend("inductor")

    def counting_inductor(gm, example_inputs):
        compiles.append(1)
        return inductor(gm, example_inputs)

    torch.manual_seed(0)
    model = build_model("contrastive", "small", encoder_overrides={"attention": "packed"}).cuda().eval()
    wrapped = BucketedModel(model, compile_backend=counting_inductor)
    rng = np.random.default_rng(0)
    for n in rng.integers(500, 8000, 20):  # buckets 1024 .. 8192
        x = torch.randn(1, int(n), model.encoder_cfg.n_features, device="cuda")
        labels = torch.from_numpy(rng.integers(0, int(n) // 50, int(n)))[None].cuda()
        got = wrapped(x, labels)
        with torch.no_grad():
            ref = model(x, AttentionContext(cluster_labels=labels), backend="packed")
        torch.testing.assert_close(got["embedding"], ref["embedding"], atol=1e-4, rtol=1e-4)
    assert len(compiles) <= 4 * 4, len(compiles)


def test_inference_and_latency_with_the_bucketed_model(mini_dir):
    torch._dynamo.reset()
    compiles = []

    def counting_backend(gm, example_inputs):
        compiles.append(1)
        return gm.forward

    hits = read_event(mini_dir, parts=("hits",)).hits
    model = preset_model("tiny", device="cpu")
    wrapped = BucketedModel(model, compile_backend=counting_backend)
    loc = {"method": "grid", "params": {}, "vertex_scan": False}
    a, t = predict_event(model, hits, locality=loc, pixel_only=True, compiled=wrapped)
    b, _ = predict_event(model, hits, locality=loc, pixel_only=True)
    pd.testing.assert_frame_equal(a, b)
    assert t["n_hits"] == 2783
    result = measure_latency(model, [hits], locality=loc, n_runs=3, warmup=1, memory=False, compiled=wrapped)
    assert len(result.timings) == 3 and 0 < len(compiles) <= 4  # one bucket (4,096 hits): at most 4 graphs
