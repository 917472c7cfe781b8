"""Malformed input to every command: exit status 2 (130 on an interrupt), exactly one line on
stderr, no traceback, no wrong answer and no pre-existing file changed."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackstudy.cli import main
from trackstudy.data.io import read_event

HITS = "event000000001-hits.csv.gz"
TRUTH = "event000000001-truth.csv.gz"
PARTICLES = "event000000001-particles.csv.gz"


# --------------------------------------------------------------------------------------------
# helpers


def cli(argv, capsys):
    """Run the CLI in-process; (status, stdout, stderr)."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        status = exc.code
    cap = capsys.readouterr()
    return status, cap.out, cap.err


def refused(argv, capsys, *words):
    """Assert exit 2 with exactly one stderr line (no traceback) holding every word; return it."""
    status, out, err = cli(argv, capsys)
    lines = err.strip().splitlines()
    assert status == 2, (status, out, err)
    assert "Traceback" not in err and len(lines) == 1, err
    for w in words:
        assert str(w) in lines[0], (w, lines[0])
    return lines[0]


def digest(folder: Path) -> dict:
    """Every file (and symlink target) under folder -> its content hash."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p)] = "link:" + os.readlink(p)
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture()
def data(mini_copy) -> Path:
    """A writable copy of the mini event (hits, truth, particles; cells removed for speed)."""
    for f in mini_copy.glob("*-cells.csv.gz"):
        f.unlink()
    return mini_copy


@pytest.fixture(scope="module")
def frames(mini_dir):
    ev = read_event(mini_dir)
    return ev.hits, ev.truth, ev.particles


def two_events(folder: Path) -> Path:
    """Add event 2 (a copy of event 1) to a folder holding event 1."""
    for f in list(folder.glob("event000000001-*")):
        shutil.copy(f, folder / f.name.replace("000000001", "000000002"))
    return folder


def write_csv(path: Path, df: pd.DataFrame) -> Path:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as f:
            df.to_csv(f, index=False)
    else:
        df.to_csv(path, index=False)
    return path


def truth_submission(truth, event_id=1) -> pd.DataFrame:
    return pd.DataFrame({"event_id": event_id, "hit_id": truth.hit_id, "track_id": truth.particle_id})


# --------------------------------------------------------------------------------------------
# 1. no tracebacks: counts, sizes, ids and paths checked before work


@pytest.mark.parametrize("argv", [
    ["inspect", "{D}", "--events", "0"],
    ["inspect", "{D}", "--events", "-1"],
    ["evaluate", "--data", "{D}", "--submission", "{D}/x.csv", "--events", "0"],
    ["baseline", "--method", "random", "--data", "{D}", "--out", "{T}/s.csv", "--events", "-3"],
    ["locality", "{D}", "--n-events", "0"],
    ["predict", "--run", "{T}", "--data", "{D}", "--out", "{T}/s.csv", "--events", "0"],
    ["simulate", "--out", "{T}/sim", "--events", "0"],
    ["simulate", "--out", "{T}/sim", "--events", "1000000000000"],
    ["simulate", "--out", "{T}/sim", "--seed", "-1"],
    ["simulate", "--out", "{T}/sim", "--first-event-id", "-5"],
    ["simulate", "--out", "{T}/sim", "--first-event-id", "99999999999999999999"],
    ["bench", "attention", "--hits", "-5"],
    ["bench", "attention", "--hits", "0"],
    ["bench", "attention", "--hits", "1000000000000"],
    ["bench", "attention", "--hits", "64", "--reference-rows", "-1"],
    ["bench", "attention", "--hits", "64", "--warmup", "-1"],
    ["bench", "attention", "--hits", "64", "--repeats", "0"],
    ["bench", "attention", "--hits", "64", "--heads", "100000000"],
    ["bench", "attention", "--hits", "64", "--threads", "0"],
    ["bench", "attention", "--hits", "64", "--cluster-size", "nan"],
    ["evaluate", "--data", "{D}", "--submission", "{D}/x.csv", "--pt-min", "-1"],
    ["evaluate", "--data", "{D}", "--submission", "{D}/x.csv", "--min-hits", "0"],
    ["evaluate", "--data", "{D}", "--submission", "{D}/x.csv", "--eta-max", "nan"],
    ["locality", "{D}", "--radius", "-1"],
    ["locality", "{D}", "--z-plane", "inf"],
    ["locality", "{D}", "--radius", "1e30"],
    ["baseline", "--method", "random", "--data", "{D}", "--out", "{T}/s.csv", "--seed", "-1"],
    ["baseline", "--method", "shuffle", "--data", "{D}", "--out", "{T}/s.csv", "--rate", "1.5"],
])
def test_counts_and_sizes_checked(argv, data, tmp_path, capsys):
    argv = [a.replace("{D}", str(data)).replace("{T}", str(tmp_path)) for a in argv]
    before = digest(data)
    refused(argv, capsys, "--")
    assert digest(data) == before
    assert not (tmp_path / "sim").exists() and not (tmp_path / "s.csv").exists()


def test_argparse_errors_are_one_line(capsys):
    refused(["evaluate", "--data"], capsys, "--data")
    refused(["inspect", "x", "--events", "many"], capsys, "--events")
    refused(["bench", "attention", "--hits", "x"], capsys, "--hits")
    refused(["bench", "attention"], capsys, "--hits")


@pytest.mark.parametrize("build", ["component", "total"])
@pytest.mark.parametrize("command", ["inspect", "evaluate", "baseline", "locality", "predict", "simulate", "train"])
def test_path_too_long(command, build, data, tmp_path, capsys):
    long = str(tmp_path / ("a" * 300)) if build == "component" else str(tmp_path) + "/ab" * 2100
    argv = {
        "inspect": ["inspect", long],
        "evaluate": ["evaluate", "--data", data, "--submission", long],
        "baseline": ["baseline", "--method", "random", "--data", data, "--out", long + ".csv"],
        "locality": ["locality", long],
        "predict": ["predict", "--run", long, "--data", data, "--out", tmp_path / "s.csv"],
        "simulate": ["simulate", "--out", long, "--pileup", "0"],
        "train": ["train", "--config", long, "--out", tmp_path / "run"],
    }[command]
    refused(argv, capsys, "too long")


def test_symlink_loop_as_input(data, tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    refused(["inspect", loop], capsys, str(loop))
    refused(["evaluate", "--data", data, "--submission", loop], capsys, str(loop))


def test_binary_config(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_bytes(bytes(range(256)) * 4)
    refused(["train", "--config", cfg, "--out", tmp_path / "run"], capsys, str(cfg))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("column,value", [("hit_id", str(2**70)), ("track_id", str(2**64)),
                                          ("track_id", "-" + str(2**70)), ("event_id", str(10**30))])
def test_submission_ids_too_large(column, value, data, frames, tmp_path, capsys):
    sub = truth_submission(frames[1]).astype(object)
    sub.loc[5, column] = value
    path = write_csv(tmp_path / "sub.csv", sub)
    refused(["evaluate", "--data", data, "--submission", path], capsys, str(path), column, "row 5")


@pytest.mark.parametrize("part,column", [("hits", "hit_id"), ("hits", "volume_id"), ("truth", "particle_id"),
                                         ("particles", "particle_id")])
def test_data_ids_too_large(part, column, data, capsys):
    path = data / f"event000000001-{part}.csv.gz"
    df = pd.read_csv(path).astype({column: object})
    df.loc[3, column] = str(2**70)
    write_csv(path, df)
    refused(["inspect", data], capsys, path.name, column, "row 3")


def test_missing_field_names_row(data, capsys):
    path = data / HITS
    df = pd.read_csv(path)
    df.loc[4, "volume_id"] = np.nan
    write_csv(path, df)
    line = refused(["inspect", data], capsys, path.name, "volume_id", "row 4")
    assert "np.float64" not in line and "nan" not in line


def test_huge_coordinates_no_warning(data, capsys):
    path = data / HITS
    df = pd.read_csv(path)
    df["x"] = df["x"].astype(object)
    df.loc[2, "x"] = "1e300"
    write_csv(path, df)
    line = refused(["inspect", data], capsys, path.name, "column x", "row 2")
    assert "Warning" not in line


@pytest.mark.parametrize("part,column,value", [("hits", "x", 1e30), ("hits", "z", -3e7), ("truth", "tpx", 1e9),
                                               ("particles", "vz", 1e12)])
def test_implausible_values_refused(part, column, value, data, frames, tmp_path, capsys):
    path = data / f"event000000001-{part}.csv.gz"
    df = pd.read_csv(path)
    df.loc[2, column] = value
    write_csv(path, df)
    sub = write_csv(tmp_path / "sub.csv", truth_submission(frames[1]))
    commands = [["inspect", data], ["evaluate", "--data", data, "--submission", sub]]
    if part != "particles":  # baselines read hits and truth only
        commands.append(["baseline", "--method", "truth", "--data", data, "--out", tmp_path / "b.csv"])
    for argv in commands:
        refused(argv, capsys, path.name, f"column {column}, row 2", "plausible")
    assert not (tmp_path / "b.csv").exists()


def test_unexpected_exception_one_line(monkeypatch, data, capsys):
    import trackstudy.cli.inspect as mod

    def boom(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(mod, "inspect_path", boom)
    status, _, err = cli(["inspect", data], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1 and "please report" in err
    assert "Traceback" not in err
    monkeypatch.setenv("TRACKSTUDY_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["inspect", str(data)])


def test_memory_error_one_line(monkeypatch, data, capsys):
    import trackstudy.cli.inspect as mod

    def boom(*a, **k):
        raise MemoryError()

    monkeypatch.setattr(mod, "inspect_path", boom)
    refused(["inspect", data], capsys, "memory")


# --------------------------------------------------------------------------------------------
# 2. no silent wrong answers


def test_negative_weight_refused(data, frames, tmp_path, capsys):
    path = data / TRUTH
    df = pd.read_csv(path)
    df.loc[7, "weight"] = -0.5
    write_csv(path, df)
    sub = write_csv(tmp_path / "sub.csv", truth_submission(frames[1]))
    refused(["evaluate", "--data", data, "--submission", sub], capsys, path.name, "weight", "row 7")


def test_zero_weights_refused(data, frames, tmp_path, capsys):
    path = data / TRUTH
    df = pd.read_csv(path)
    df["weight"] = 0.0
    write_csv(path, df)
    sub = write_csv(tmp_path / "sub.csv", truth_submission(frames[1]))
    refused(["evaluate", "--data", data, "--submission", sub], capsys, "weight")


def test_volumes_without_hits(data, frames, tmp_path, capsys):
    sub = write_csv(tmp_path / "sub.csv", truth_submission(frames[1]))
    refused(["evaluate", "--data", data, "--submission", sub, "--volumes", "99"], capsys, "--volumes", "99")
    refused(["baseline", "--method", "random", "--data", data, "--out", tmp_path / "b.csv", "--volumes", "99"],
            capsys, "--volumes", "99")
    assert not (tmp_path / "b.csv").exists()
    refused(["evaluate", "--data", data, "--submission", sub, "--pt-min", "1000"], capsys, "--pt-min")


def test_partial_submission_warns(data, frames, tmp_path, capsys):
    two_events(data)
    sub = write_csv(tmp_path / "sub.csv", truth_submission(frames[1], event_id=2))
    status, out, err = cli(["evaluate", "--data", data, "--submission", sub, "--json"], capsys)
    assert status == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "warning" in lines[0] and "1 of the 2" in lines[0]
    result = json.loads(out)
    assert result["n_events"] == 1 and result["missing_events"] == [1] and result["trackml_score"] == pytest.approx(1)


def test_empty_submission_refused(data, tmp_path, capsys):
    sub = tmp_path / "sub.csv"
    sub.write_text("event_id,hit_id,track_id\n")
    refused(["evaluate", "--data", data, "--submission", sub], capsys, str(sub))


def test_orphan_truth_and_particles(data, capsys):
    for name in (TRUTH, PARTICLES):
        (data / name).rename(data / name.replace("000000001", "000000002"))
    for argv in (["inspect", data], ["locality", data]):
        refused(argv, capsys, "event000000002", "no hits")


def test_incomplete_event_refused(data, tmp_path, capsys):
    (data / PARTICLES).unlink()
    refused(["inspect", data], capsys, "event000000001", "particles")
    refused(["inspect", data / HITS], capsys, "event000000001", "particles")
    refused(["locality", data], capsys, "event000000001", "particles")


def test_plain_and_gzipped_twins_refused(data, capsys):
    pd.read_csv(data / HITS).to_csv(data / "event000000001-hits.csv", index=False)
    refused(["inspect", data], capsys, "event000000001-hits.csv", ".gz")


@pytest.mark.parametrize("extra", [["--batch", "2"], ["--cluster-size", "10"]])
def test_bench_event_mode_rejects_random_options(extra, data, capsys):
    refused(["bench", "attention", "--event", data, *extra], capsys, extra[0], "--event")


@pytest.mark.parametrize("method", ["truth", "dbscan-helix"])
def test_baseline_seed_without_randomness(method, data, tmp_path, capsys):
    refused(["baseline", "--method", method, "--data", data, "--out", tmp_path / "b.csv", "--seed", "3"], capsys,
            "--seed", method)


def test_simulate_particles_from_rejects_pileup(data, tmp_path, capsys):
    refused(["simulate", "--out", tmp_path / "sim", "--particles-from", data / PARTICLES, "--pileup", "50"],
            capsys, "--pileup", "--particles-from")
    assert not (tmp_path / "sim").exists()


# --------------------------------------------------------------------------------------------
# 3. nothing lost


@pytest.mark.parametrize("command", ["baseline", "predict"])
def test_out_never_replaces_an_input(command, data, tmp_path, capsys, tiny_run):
    before = digest(data)
    for target in (data / HITS, data / TRUTH):
        argv = {"baseline": ["baseline", "--method", "random", "--data", data, "--out", target, "--force"],
                "predict": ["predict", "--run", tiny_run, "--data", data, "--out", target, "--force",
                            "--device", "cpu", "--quiet"]}[command]
        refused(argv, capsys, str(target), "input")
    # a symlink to an input is the same file
    link = tmp_path / "link.csv.gz"
    link.symlink_to(data / HITS)
    refused(["baseline", "--method", "random", "--data", data, "--out", link, "--force"], capsys, "input")
    assert digest(data) == before


def test_evaluate_out_like_names_untouched(data, frames, tmp_path, capsys):
    sub = write_csv(tmp_path / "sub.csv", truth_submission(frames[1]))
    before = digest(data) | digest(tmp_path)
    assert cli(["evaluate", "--data", data, "--submission", sub, "--json"], capsys)[0] == 0
    assert digest(data) | digest(tmp_path) == before


@pytest.mark.parametrize("kind", ["dangling", "loop", "folder", "dir_link"])
@pytest.mark.parametrize("command", ["baseline", "predict"])
def test_out_symlinks_and_folders(kind, command, data, tmp_path, capsys, tiny_run):
    out = tmp_path / "out.csv"
    if kind == "dangling":
        out.symlink_to(tmp_path / "nowhere.csv")
    elif kind == "loop":
        out.symlink_to(out)
    elif kind == "folder":
        out.mkdir()
    else:
        (tmp_path / "d").mkdir()
        out.symlink_to(tmp_path / "d")
    before = digest(tmp_path)
    for force in ([], ["--force"]):
        argv = {"baseline": ["baseline", "--method", "random", "--data", data, "--out", out, *force],
                "predict": ["predict", "--run", tiny_run, "--data", data, "--out", out, *force,
                            "--device", "cpu", "--quiet"]}[command]
        refused(argv, capsys, str(out))
    assert digest(tmp_path) == before
    assert not (tmp_path / "nowhere.csv").exists()


def test_out_symlink_to_file_needs_force(data, tmp_path, capsys):
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    out = tmp_path / "out.csv"
    out.symlink_to(target)
    refused(["baseline", "--method", "random", "--data", data, "--out", out], capsys, "exists")
    assert target.read_text() == "old\n"
    assert cli(["baseline", "--method", "random", "--data", data, "--out", out, "--force"], capsys)[0] == 0
    assert out.is_symlink() and pd.read_csv(target).shape[1] == 3


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
@pytest.mark.parametrize("command", ["baseline", "predict", "simulate"])
def test_read_only_output_folder_found_before_work(command, monkeypatch, data, tmp_path, capsys, tiny_run):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)

    def never(*a, **k):
        raise AssertionError("work started")

    import trackstudy.baselines as bl
    import trackstudy.data.simulate as sim
    import trackstudy.inference as inf
    monkeypatch.setattr(bl, "baseline_submission", never)
    monkeypatch.setattr(inf, "predict_events", never)
    monkeypatch.setattr(sim, "simulate_event", never)
    argv = {"baseline": ["baseline", "--method", "random", "--data", data, "--out", ro / "s.csv"],
            "predict": ["predict", "--run", tiny_run, "--data", data, "--out", ro / "s.csv", "--device", "cpu"],
            "simulate": ["simulate", "--out", ro / "sim", "--pileup", "0"]}[command]
    try:
        line = refused(argv, capsys, str(ro))
    finally:
        ro.chmod(0o755)
    assert ".tmp" not in line


def test_write_error_names_the_output_not_a_temp_file(monkeypatch, tmp_path):
    from trackstudy.data import io

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "fdopen", full)
    with pytest.raises(Exception) as info:
        io.atomic_write_bytes(tmp_path / "x.csv", b"abc")
    assert str(tmp_path / "x.csv") in str(info.value) and ".tmp" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_simulate_interrupt_leaves_no_partial_event(monkeypatch, tmp_path, capsys):
    from trackstudy.data import io

    real = io.table_bytes
    calls = {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # event 2, its second file
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(io, "table_bytes", interrupted)
    out = tmp_path / "sim"
    status, _, err = cli(["simulate", "--out", out, "--events", "3", "--pileup", "0", "--tracks", "2:3",
                          "--pixel-only", "--quiet"], capsys)
    assert status == 130 and err.strip().splitlines() == ["trackstudy simulate: interrupted"]
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"event000001000-{p}.csv.gz" for p in ("hits", "particles", "truth")]


def test_system_error_from_interrupt(monkeypatch, tmp_path, capsys):
    import trackstudy.data.simulate as sim

    def compiled(*a, **k):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise SystemError("<built-in function> returned a result with an exception set") from exc

    monkeypatch.setattr(sim, "simulate_event", compiled)
    status, _, err = cli(["simulate", "--out", tmp_path / "sim", "--pileup", "0", "--quiet"], capsys)
    assert status == 130 and err.strip().splitlines() == ["trackstudy simulate: interrupted"]


def test_simulate_never_overwrites_particles_from(data, capsys):
    before = digest(data)
    refused(["simulate", "--out", data, "--first-event-id", "1", "--particles-from", data / PARTICLES, "--force"],
            capsys, "input")
    assert digest(data) == before


# --------------------------------------------------------------------------------------------
# 4. messages a person can act on


@pytest.mark.parametrize("content", [b"", b"not a torch file at all", b"PK\x03\x04garbage"])
def test_checkpoint_not_trackstudy(content, data, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_bytes(content)
    line = refused(["predict", "--run", run, "--data", data, "--out", tmp_path / "s.csv", "--device", "cpu"],
                   capsys, "model.pt", "trackstudy")
    assert "weights_only" not in line


def test_checkpoint_foreign_object(data, tmp_path, capsys):
    import torch

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"something": torch.zeros(2)}, run / "model.pt")
    refused(["predict", "--run", run, "--data", data, "--out", tmp_path / "s.csv", "--device", "cpu"],
            capsys, "model.pt", "model_config")


def test_checkpoint_wrong_shapes(data, tmp_path, capsys, tiny_run):
    import torch

    obj = torch.load(tiny_run / "model.pt", weights_only=True)
    key = next(iter(obj["state_dict"]))
    obj["state_dict"][key] = torch.zeros(3, 1, 7)
    run = tmp_path / "run"
    run.mkdir()
    torch.save(obj, run / "model.pt")
    refused(["predict", "--run", run, "--data", data, "--out", tmp_path / "s.csv", "--device", "cpu"],
            capsys, "model.pt", key)


def test_set_value_keeps_min_max_strings():
    from trackstudy.training.run_config import set_value

    cfg: dict = {}
    set_value(cfg, "data.train.tracks=10:50")
    assert cfg["data"]["train"]["tracks"] == "10:50"
    set_value(cfg, "train.steps=5")
    assert cfg["train"]["steps"] == 5


def test_yaml_file_keeps_min_max_strings(tmp_path):
    from trackstudy.training.run_config import load_yaml

    p = tmp_path / "c.yaml"
    p.write_text("data:\n  train:\n    tracks: 10:50\n")
    assert load_yaml(p)["data"]["train"]["tracks"] == "10:50"


def test_set_errors_blame_the_set(tmp_path, capsys):
    cfg = Path(__file__).resolve().parents[2] / "params" / "train_smoke.yaml"
    line = refused(["train", "--config", cfg, "--out", tmp_path / "run", "--set", "train.steps=abc"],
                   capsys, "--set", "train.steps")
    assert str(cfg) not in line
    line = refused(["train", "--config", cfg, "--out", tmp_path / "run", "--set", "train.nosuchkey=1"],
                   capsys, "--set", "nosuchkey")
    refused(["train", "--config", cfg, "--out", tmp_path / "run", "--set", "train.steps=[1"], capsys, "--set")
    assert not (tmp_path / "run").exists()


def test_yaml_syntax_error_one_line(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  steps: [1, 2\n  lr: 3\nmodel: {\n")
    refused(["train", "--config", p, "--out", tmp_path / "run"], capsys, str(p), "line")
    refused(["baseline", "--method", "random", "--data", tmp_path, "--out", tmp_path / "s.csv", "--params", p],
            capsys, str(p), "line")


@pytest.mark.parametrize("text,words", [
    ("random:\n  mean_hits: lots\n", ["mean_hits", "number"]),
    ("random:\n  nosuch: 1\n", ["nosuch", "mean_hits"]),
    ("dbscan-helix:\n  eps: [1, 2]\n", ["eps", "number"]),
    ("dbscan-helix:\n  bogus: 1\n", ["bogus"]),
    ("shuffle:\n  rate: 2\n", ["rate"]),
])
def test_baseline_params_errors_name_the_file(text, words, data, tmp_path, capsys):
    p = tmp_path / "bl.yaml"
    p.write_text(text)
    method = text.split(":")[0]
    refused(["baseline", "--method", method, "--data", data, "--out", tmp_path / "s.csv", "--params", p],
            capsys, str(p), *words)
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("method", ["truth", "shuffle"])
def test_baseline_truth_missing(method, data, tmp_path, capsys):
    (data / TRUTH).unlink()
    (data / PARTICLES).unlink()
    line = refused(["baseline", "--method", method, "--data", data, "--out", tmp_path / "s.csv"], capsys,
                   "truth", f"--method {method}")
    assert "parts=" not in line


# --------------------------------------------------------------------------------------------
# 5. paths are relative to the working directory


@pytest.mark.parametrize("command", ["inspect", "evaluate", "baseline", "locality", "predict"])
def test_relative_paths_from_working_directory(command, data, frames, tmp_path, monkeypatch, capsys, tiny_run):
    sub = write_csv(data.parent / "sub.csv", truth_submission(frames[1]))
    monkeypatch.chdir(data.parent)
    rel = data.name
    argv = {
        "inspect": ["inspect", rel, "--json"],
        "evaluate": ["evaluate", "--data", rel, "--submission", sub.name, "--json"],
        "baseline": ["baseline", "--method", "random", "--data", rel, "--out", "b.csv"],
        "locality": ["locality", rel, "--json", "--no-dm"],
        "predict": ["predict", "--run", os.path.relpath(tiny_run, data.parent), "--data", rel, "--out", "p.csv",
                    "--device", "cpu", "--quiet"],
    }[command]
    status, out, err = cli(argv, capsys)
    assert status == 0, err
    if command in ("baseline", "predict"):
        assert (data.parent / argv[argv.index("--out") + 1]).is_file()


# --------------------------------------------------------------------------------------------
# fixtures that need torch


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder holding an untrained tiny contrastive model (model.pt only)."""
    import torch

    from trackstudy.models.heads import build_model
    from trackstudy.training.checkpoint import save_model

    run = tmp_path_factory.mktemp("tiny_run")
    torch.manual_seed(0)
    model = build_model("contrastive", "tiny", encoder_overrides={"attention": "packed"})
    save_model(run, model, {"locality": {"method": "dbscan", "params": {}, "vertex_scan": False},
                            "data": {"train": {"pixel_only": True}}})
    return run


def test_particle_lists_beside_events_are_read(tmp_path):
    # data/real/full holds event 1001's hits with its particle list and event 1000's particle list
    # alone: a layout of particle lists, not an incomplete copy
    from trackstudy.data.io import find_events, read_event

    full = Path(__file__).resolve().parents[2] / "data" / "real" / "full"
    assert [eid for eid, _ in find_events(full)] == [1001]
    assert len(read_event(full / "event000001001", parts=("hits",)).hits) > 0
