"""trackstudy.study.pretraining: token counts, the tokenizer report, reuse of a pretraining run and
a tiny label-efficiency curve (both arms, one labelled-set size, scored on held-out events)."""

from __future__ import annotations

import json

import pytest
import yaml

from trackstudy.config import PARAMS_DIR
from trackstudy.data.datasets import ensure_simulated
from trackstudy.errors import ConfigError
from trackstudy.postprocessing.track_formation import EmbeddingTrackParams
from trackstudy.study import pretraining as sp
from trackstudy.study.heldout import score_run
from trackstudy.training.pretrain import load_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study_pretrain")
    out = tmp / "pre"
    s = sp.pretrain_run(PARAMS_DIR / "bench" / "pretrain_smoke.yaml", out, data__root=str(tmp / "data"),
                        train__steps=4, tokenizer__steps=10, train__device="cpu")
    return tmp, out, s


def test_parse_counts():
    assert sp.parse_counts("10, 30") == [10, 30] and sp.parse_counts([5]) == [5] and sp.parse_counts(7) == [7]
    with pytest.raises(ConfigError, match="n_labelled"):
        sp.parse_counts("ten")
    with pytest.raises(ConfigError, match="n_labelled"):
        sp.parse_counts("0")


def test_pretrain_run_is_reused(pretrained):
    tmp, out, s = pretrained
    assert s["steps"] == 4 and "reused" not in s
    again = sp.pretrain_run(PARAMS_DIR / "bench" / "pretrain_smoke.yaml", out, data__root=str(tmp / "data"),
                            train__steps=4, tokenizer__steps=10, train__device="cpu")
    assert again["reused"] and again["steps"] == 4
    with pytest.raises(ConfigError, match="section__key"):
        sp.pretrain_run(PARAMS_DIR / "bench" / "pretrain_smoke.yaml", out, trainsteps=3)


def test_token_counts_and_tokenizer_report(pretrained, mini_dir):
    _, out, _ = pretrained
    tok, _ = load_tokenizer(out)
    table = sp.token_counts("0,5", n_events=1, seed=3, tokenizer=tok)
    assert list(table["pileup"]) == [0.0, 5.0]
    assert (table["tokens"] > 0).all() and table["tokens"].iloc[1] > table["tokens"].iloc[0]
    assert (table["codes_used"] <= 64).all()
    with pytest.raises(ConfigError, match="pileups"):
        sp.token_counts("-1")
    measures, hits, counts = sp.tokenizer_report(out, mini_dir, max_hits=500)
    assert measures["n_hits"] == len(hits) == counts.sum() == 500 and len(counts) == 64
    assert {"x_true", "x_decoded", "phi_true", "phi_decoded", "code"} <= set(hits)
    assert measures["used"] == int((counts > 0).sum())


def test_label_efficiency_tiny(pretrained, monkeypatch):
    tmp, out, _ = pretrained
    monkeypatch.setattr(sp, "RUNS_DIR", tmp / "runs")
    held = ensure_simulated(2, 20.0, 4321, pixel_only=True, tracks="10:50", out_dir=tmp / "held", progress=False)
    kwargs = dict(n_labelled="2", base_config=str(PARAMS_DIR / "train_smoke.yaml"), run_prefix="le", steps=2,
                  n_val_events=1, train_seed=77, train_pileup=20.0, device="cpu")
    # the trainer reads its data under data/ unless the base config says otherwise: point it at tmp
    base = tmp / "base.yaml"
    cfg = yaml.safe_load((PARAMS_DIR / "train_smoke.yaml").read_text())
    cfg["data"]["root"] = str(tmp / "data")
    cfg["tune"] = {"n_events": 1, "grid": {"k": [4]}}
    base.write_text(yaml.safe_dump(cfg))
    kwargs["base_config"] = str(base)
    table = sp.label_efficiency(out, held, **kwargs)
    assert list(table["init"]) == ["scratch", "pretrained"] and list(table["n_labelled"]) == [2, 2]
    assert table["dm_efficiency"].between(0, 1).all() and (table["steps"] == 2).all()
    assert (table["n_eval_events"] == 2).all()
    # the same runs at one fixed operating point: the config's tune.base formation, not the tuned one
    assert table["dm_efficiency_base"].between(0, 1).all() and table["fake_rate_base"].between(0, 1).all()
    run = tmp / "runs" / "le_n2_scratch"
    report, sub = score_run(run, held, device="cpu", formation="base")
    assert report["tag"] == "heldout_base" and report["formation"] == "base"
    assert (run / "heldout_base.csv").is_file() and report["dm_efficiency"] == table["dm_efficiency_base"].iloc[0]
    tuned = json.loads((run / "summary.json").read_text())["track_params"]
    assert tuned["k"] == 4 and EmbeddingTrackParams().k == 8  # tuned to the grid's k; the base keeps 8
    with pytest.raises(ConfigError, match="formation: expected one of tuned, base, got 'best'"):
        score_run(run, held, device="cpu", formation="best")
    # finished runs are reused
    again = sp.label_efficiency(out, held, **kwargs)
    assert list(again["dm_efficiency"]) == list(table["dm_efficiency"])
    with pytest.raises(ConfigError, match="no pretrained.pt"):
        sp.label_efficiency(tmp / "nothing", held, **kwargs)
    with pytest.raises(ConfigError, match="inits"):
        sp.label_efficiency(out, held, inits=("warm",), **kwargs)


def test_code_sharing_by_hand(tmp_path):
    import pandas as pd

    from trackstudy.models.features import FeatureConfig
    from trackstudy.models.vqvae import DoubletTokenizer, VQConfig

    class OneCodePerSide:
        """A tokenizer whose codes are known: 0 for x < 0, 1 for x >= 0."""

        tokens = "hits"
        feature_cfg = FeatureConfig(names=("x",))

        def encode(self, x):
            return (x[:, 0] >= 0).long()

    # hits 1, 2 (particle 11) and 3 (noise) at x < 0; hits 4, 5 (particle 12) at x > 0
    hits = pd.DataFrame({"hit_id": [1, 2, 3, 4, 5], "x": [-50.0, -60.0, -70.0, 40.0, 50.0],
                         "y": [1.0, 2.0, 3.0, 4.0, 5.0], "z": [0.0, 1.0, 2.0, 3.0, 4.0],
                         "volume_id": [8] * 5, "layer_id": [2, 4, 6, 2, 4], "module_id": [1] * 5})
    truth = pd.DataFrame({"hit_id": [1, 2, 3, 4, 5], "particle_id": [11, 11, 0, 12, 12],
                          "tx": hits["x"], "ty": hits["y"], "tz": hits["z"], "tpx": [1.0] * 5, "tpy": [0.0] * 5,
                          "tpz": [0.0] * 5, "weight": [0.2] * 5})
    particles = pd.DataFrame({"particle_id": [11, 12], "vx": [0.0] * 2, "vy": [0.0] * 2, "vz": [0.0] * 2,
                              "px": [1.0] * 2, "py": [0.0] * 2, "pz": [0.0] * 2, "q": [1, -1], "nhits": [2, 2]})
    hits.to_csv(tmp_path / "event000000001-hits.csv", index=False)
    truth.to_csv(tmp_path / "event000000001-truth.csv", index=False)
    particles.to_csv(tmp_path / "event000000001-particles.csv", index=False)
    row = sp.code_sharing(OneCodePerSide(), tmp_path, n_events=1).iloc[0]
    assert (row["hits"], row["codes_used"]) == (5, 2) and row["hits_per_code"] == 2.5
    assert row["shared"] == 0.5  # hits 1, 2 share their code with the noise hit 3; hits 4, 5 share none
    with pytest.raises(ConfigError, match="needs a hit tokenizer"):
        sp.code_sharing(DoubletTokenizer(VQConfig(n_features=20)), tmp_path)
