"""``trackstudy pretrain`` (help, a tiny run, resume) and ``trackstudy train --init-from``, with
one-line errors naming the option or the file."""

from __future__ import annotations

import json

import pytest

from trackstudy.cli import main
from trackstudy.config import PARAMS_DIR

SMOKE = PARAMS_DIR / "bench" / "pretrain_smoke.yaml"
TRAIN_SMOKE = PARAMS_DIR / "train_smoke.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    last = err[-1]
    assert last.startswith("trackstudy "), err
    for n in needles:
        assert n in last, last
    return last


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--config", "--out", "--resume", "--set", "--json"):
        assert option in out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--init-from" in capsys.readouterr().out


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli_pretrain")
    root = tmp / "data"
    args = ["pretrain", "--config", str(SMOKE), "--out", str(tmp / "run"), "--quiet", "--json",
            "--set", f"data.root={root}", "--set", "train.steps=4", "--set", "train.device=cpu",
            "--set", "tokenizer.steps=10"]
    assert main(args) == 0
    return tmp, root, args


def test_pretrain_then_fine_tune(pretrained, capsys):
    tmp, root, args = pretrained
    capsys.readouterr()
    # a finished run in --out without --resume is refused; with --resume and more steps it continues
    assert main(args) == 2
    _one_line_error(capsys, "--resume")
    assert main([*args, "--resume", "--set", "train.steps=6"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 6
    ft = ["train", "--config", str(TRAIN_SMOKE), "--out", str(tmp / "ft"), "--quiet",
          "--init-from", str(tmp / "run"), "--set", f"data.root={root}", "--set", "train.steps=2",
          "--set", "train.device=cpu", "--set", "tune.n_events=0"]
    assert main(ft) == 0
    captured = capsys.readouterr()
    summary = json.loads((tmp / "ft" / "summary.json").read_text())
    assert any("encoder initialised from" in n for n in summary["notices"])
    # the parameter count is printed
    assert f"(tiny, {summary['n_params']:,} parameters, packed)" in captured.out
    assert "model.init_from" not in captured.err


def test_init_from_errors(pretrained, tmp_path, capsys):
    tmp, root, _ = pretrained
    base = ["train", "--config", str(TRAIN_SMOKE), "--out", str(tmp_path / "ft"), "--set", f"data.root={root}"]
    assert main([*base, "--init-from", str(tmp_path / "missing")]) == 2
    _one_line_error(capsys, "missing", "pretraining run not found")
    assert main([*base, "--init-from", str(tmp / "run"), "--set", "model.preset=small",
                 "--set", "model.encoder={n_heads: 2}"]) == 2
    _one_line_error(capsys, "--init-from", "encoder shapes differ")
    assert main([*base, "--init-from", str(TRAIN_SMOKE.parent)]) == 2
    _one_line_error(capsys, "neither pretrained.pt nor checkpoints/last.pt")


def test_init_from_a_doublet_model(pretrained, tmp_path, capsys):
    # a hit-token pretraining run does not start the doublet-token model; a GNN has no encoder to start
    tmp, root, _ = pretrained
    doublet = ["train", "--config", str(PARAMS_DIR / "bench" / "doublet_10-50.yaml"), "--out", str(tmp_path / "ft")]
    assert main([*doublet, "--init-from", str(tmp / "run")]) == 2
    _one_line_error(capsys, "--init-from", "data.tokens differs: pretrained on hits tokens, this is a doublet-token model")
    gnn = ["train", "--config", str(PARAMS_DIR / "bench" / "gnn_10-50.yaml"), "--out", str(tmp_path / "ft")]
    assert main([*gnn, "--init-from", str(tmp / "run")]) == 2
    _one_line_error(capsys, "model.init_from", "gnn has none")


@pytest.mark.parametrize("extra, needles", [
    (["--set", "mask.rate=1.5"], ["--set mask.rate=1.5", "mask.rate"]),
    (["--set", "tokenizer.size=3"], ["tokenizer.size"]),
    (["--set", "nonsense"], ["--set", "section.key=value"]),
])
def test_bad_options_are_one_line(extra, needles, tmp_path, capsys):
    assert main(["pretrain", "--config", str(SMOKE), "--out", str(tmp_path / "r"), *extra]) == 2
    _one_line_error(capsys, *needles)


def test_bad_config_files_are_named(tmp_path, capsys):
    assert main(["pretrain", "--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("mask: {target: tokens}\n")
    assert main(["pretrain", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "bad.yaml", "mask.target")
    (tmp_path / "file").write_text("x")
    assert main(["pretrain", "--config", str(SMOKE), "--out", str(tmp_path / "file")]) == 2
    _one_line_error(capsys, "--out")
