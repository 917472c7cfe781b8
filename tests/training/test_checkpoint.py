"""Run-directory files: model.pt and checkpoints load with weights_only=True and rebuild the model."""

from __future__ import annotations

import pytest
import torch

from trackstudy.errors import ConfigError, DataError
from trackstudy.models.encoder import EncoderConfig
from trackstudy.models.heads import build_model
from trackstudy.models.roads import RoadBinning
from trackstudy.postprocessing.track_formation import ClassTrackParams, EmbeddingTrackParams
from trackstudy.training.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    load_run,
    model_config,
    save_checkpoint,
    save_model,
    unwrap_model,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _binning():
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"particle_id": rng.integers(1, 50, n), "px": rng.normal(size=n), "py": rng.normal(size=n),
                       "pz": rng.normal(size=n), "q": rng.choice([-1.0, 1.0], n)})
    return RoadBinning.fit(df, n_phi=3, n_theta=2, n_p=2)


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def test_save_model_load_run_roundtrip(tmp_path):
    torch.manual_seed(0)
    enc = EncoderConfig.preset("tiny", n_features=7, attention="packed")
    model = build_model("enc_cla", enc, binning=_binning(), cla_layers=1,
                        track_params=ClassTrackParams(noise_class=12, min_prob=0.3))
    run_config = {"model": {"family": "enc_cla"}, "locality": {"method": "dbscan", "params": {}}}
    path = save_model(tmp_path, model, run_config, step=7)
    assert path == tmp_path / "model.pt"
    obj = torch.load(path, weights_only=True)  # plain containers and tensors only
    assert set(obj) == {"model_config", "state_dict", "run_config", "step"} and obj["step"] == 7
    loaded, cfg = load_run(tmp_path, "cpu")
    assert cfg == run_config
    assert not loaded.training
    assert _same_weights(model, loaded)
    assert loaded.binning == model.binning
    assert loaded.track_params == ClassTrackParams(noise_class=12, min_prob=0.3)
    assert loaded.encoder_cfg.attention == "packed"
    dense, _ = load_run(tmp_path, "cpu", backend="dense")
    assert dense.encoder_cfg.attention == "dense" and _same_weights(model, dense)


def test_load_run_falls_back_to_checkpoint(tmp_path):
    torch.manual_seed(1)
    model = build_model("contrastive", "tiny", track_params=EmbeddingTrackParams(k=5, threshold=0.9))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(1, 10, 7)).get("embedding").sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 3,
             "model_config": model_config(model), "config": {"train": {"steps": 10}},
             "rng": {"torch": torch.get_rng_state(), "python": (3, tuple(range(625)), None)}}
    save_checkpoint(checkpoint_path(tmp_path), state)
    back = load_checkpoint(checkpoint_path(tmp_path))
    assert back["step"] == 3 and torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    assert back["optimizer"]["state"][0]["exp_avg"].shape == next(model.parameters()).shape
    loaded, cfg = load_run(tmp_path, "cpu")
    assert cfg == {"train": {"steps": 10}} and _same_weights(model, loaded)
    assert loaded.track_params.k == 5


def test_load_run_errors(tmp_path):
    with pytest.raises(DataError, match="run directory not found"):
        load_run(tmp_path / "nope")
    with pytest.raises(DataError, match="neither model.pt nor checkpoints/last.pt"):
        load_run(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="model.pt: cannot load model file"):
        load_run(tmp_path)
    torch.save({"state_dict": {}}, tmp_path / "model.pt")
    with pytest.raises(DataError, match="no 'model_config' entry"):
        load_run(tmp_path)


def test_load_run_rejects_mismatched_weights(tmp_path):
    model = build_model("contrastive", "tiny")
    save_model(tmp_path, model, {})
    obj = torch.load(tmp_path / "model.pt", weights_only=True)
    obj["model_config"]["encoder"]["n_layers"] = 3
    torch.save(obj, tmp_path / "model.pt")
    with pytest.raises(DataError, match="weights do not match"):
        load_run(tmp_path, "cpu")


def test_save_model_unwraps_and_checks_type(tmp_path):
    model = build_model("enc_reg", "tiny")

    class Wrapper(torch.nn.Module):  # stands in for torch.compile's OptimizedModule
        def __init__(self, m):
            super().__init__()
            self._orig_mod = m

    assert unwrap_model(Wrapper(model)) is model
    save_model(tmp_path, Wrapper(model), {})
    loaded, _ = load_run(tmp_path, "cpu")
    assert _same_weights(model, loaded)
    with pytest.raises(ConfigError, match="expected a TrackModel"):
        save_model(tmp_path, torch.nn.Linear(2, 2), {})
