"""trackstudy.study.pretraining: token counts, the tokenizer report, reuse of a pretraining run and
a tiny label-efficiency curve (both arms, one labelled-set size, scored on held-out events)."""

from __future__ import annotations

import pytest
import yaml

from trackstudy.config import PARAMS_DIR
from trackstudy.data.datasets import ensure_simulated
from trackstudy.errors import ConfigError
from trackstudy.study import pretraining as sp
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
    # finished runs are reused
    again = sp.label_efficiency(out, held, **kwargs)
    assert list(again["dm_efficiency"]) == list(table["dm_efficiency"])
    with pytest.raises(ConfigError, match="no pretrained.pt"):
        sp.label_efficiency(tmp / "nothing", held, **kwargs)
    with pytest.raises(ConfigError, match="inits"):
        sp.label_efficiency(out, held, inits=("warm",), **kwargs)
