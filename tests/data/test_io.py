"""TrackML I/O: reading, validation errors, atomic writing, selections and derived columns."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pandas as pd
import pytest

from trackstudy.data import io
from trackstudy.errors import DataError


def test_read_mini_counts_and_dtypes(mini_dir):
    ev = io.read_event(mini_dir, parts=io.PARTS)
    assert ev.event_id == 1
    assert len(ev.hits) == 5527 and len(ev.truth) == 5527 and len(ev.particles) == 548
    assert len(ev.cells) == 18564
    assert ev.truth["particle_id"].dtype == np.int64
    assert ev.particles["particle_id"].dtype == np.int64
    assert ev.hits["x"].dtype == np.float32 and ev.hits["volume_id"].dtype == np.int32
    assert "particle_type" in ev.particles.columns  # extra columns are kept


@pytest.mark.parametrize("how", ["folder", "folder_id", "prefix", "hits_file", "truth_file"])
def test_read_event_by_any_name(mini_dir, how):
    arg = {
        "folder": (mini_dir, None),
        "folder_id": (mini_dir, 1),
        "prefix": (mini_dir / "event000000001", None),
        "hits_file": (mini_dir / "event000000001-hits.csv.gz", None),
        "truth_file": (mini_dir / "event000000001-truth.csv.gz", 1),
    }[how]
    ev = io.read_event(*arg, parts=("hits", "truth"))
    assert ev.event_id == 1 and len(ev.truth) == 5527 and ev.particles is None


def test_unknown_event_id_and_missing_part(mini_dir, tmp_path):
    with pytest.raises(DataError, match="no event 7"):
        io.read_event(mini_dir, 7)
    with pytest.raises(DataError, match="asked for but the file is event 1"):
        io.read_event(mini_dir / "event000000001-hits.csv.gz", 2)
    (tmp_path / "event000000005-hits.csv").write_text((mini_dir / "event000000001-hits.csv.gz").read_bytes()
                                                       and gzip.decompress((mini_dir / "event000000001-hits.csv.gz").read_bytes()).decode())
    with pytest.raises(DataError, match=r"event000000005-truth\.csv\[\.gz\]: no such file"):
        io.read_event(tmp_path)
    assert io.read_event(tmp_path, parts=("hits",)).event_id == 5
    with pytest.raises(DataError, match="no such file or folder"):
        io.read_event(tmp_path / "nope")


def test_write_roundtrip_atomic_and_reproducible(mini_dir, tmp_path):
    ev = io.read_event(mini_dir, parts=io.PARTS)
    prefix = io.write_event(ev, tmp_path / "out")
    back = io.read_event(prefix, parts=io.PARTS)
    for part in io.PARTS:
        pd.testing.assert_frame_equal(back.part(part), ev.part(part))
    first = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert not [n for n in first if n.endswith(".tmp")]
    with pytest.raises(io.OutputExistsError, match="exists"):
        io.write_event(ev, tmp_path / "out")
    io.write_event(ev, tmp_path / "out", force=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == first  # byte-identical
    # plain csv with force replaces the gzipped twin, never leaving two versions
    io.write_event(ev, tmp_path / "out", force=True, compress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(n[:-3] for n in first)


def _write(tmp_path, part, text, name="event000000001"):
    path = tmp_path / f"{name}-{part}.csv"
    path.write_text(text)
    return path


HITS = "hit_id,x,y,z,volume_id,layer_id,module_id\n1,1.0,2.0,3.0,8,2,1\n2,4.0,5.0,6.0,8,2,1\n"
TRUTH = "hit_id,particle_id,tx,ty,tz,tpx,tpy,tpz,weight\n1,4503668346847232,1,2,3,1,1,1,0.5\n2,0,4,5,6,0,0,0,0\n"
PARTICLES = "particle_id,vx,vy,vz,px,py,pz,q,nhits\n4503668346847232,0,0,0,1,1,1,1,1\n"


@pytest.mark.parametrize(
    "part,text,pattern",
    [
        ("hits", "", r"hits\.csv: the file is empty"),
        ("hits", "hit_id,x,y,z,volume_id,layer_id\n1,1,2,3,8,2\n", "missing column module_id"),
        ("hits", HITS.replace("2.0,3.0", "nan,3.0"), r"column y, row 0: nan is not a finite number"),
        ("hits", HITS.replace("\n2,", "\n1,"), "column hit_id, row 1: duplicate hit_id 1"),
        ("hits", HITS.replace("4.0,5.0", "abc,5.0"), r"column x, row 1: value 'abc' is not a number"),
        ("hits", "hit_id,x,y,z,volume_id,layer_id,module_id\n", "the event has no hits"),
        ("truth", TRUTH.replace("4503668346847232", "4.503668346847232e+15"),
         "column particle_id holds floating-point values.*distinct ids collide"),
        ("truth", TRUTH.replace("\n2,0", "\n3,0"), r"column hit_id, row 1: hit 3 is not in the hits file"),
        ("truth", TRUTH.rsplit("\n", 2)[0] + "\n", "1 rows for 2 hits; hit 2"),
        ("truth", TRUTH.replace("\n1,4503668346847232", "\n1,777"), "particle 777 is not in the particles file"),
        ("particles", PARTICLES + PARTICLES.split("\n")[1] + "\n", "duplicate particle_id"),
    ],
)
def test_malformed_files_give_clear_errors(tmp_path, part, text, pattern):
    files = {"hits": HITS, "truth": TRUTH, "particles": PARTICLES}
    files[part] = text
    for name, content in files.items():
        _write(tmp_path, name, content)
    with pytest.raises(DataError, match=pattern) as info:
        io.read_event(tmp_path)
    assert "\n" not in str(info.value)
    assert f"-{part}.csv" in str(info.value) or part == "hits"


def test_mismatched_event_id_column(tmp_path):
    _write(tmp_path, "hits", "event_id," + HITS.replace("\n1,", "\n1,1,").replace("\n2,", "\n2,2,"))
    with pytest.raises(DataError, match="column event_id, row 0: event 1 in the files of event 1|row 1: event 2"):
        io.read_event(tmp_path, parts=("hits",))


def test_select_volumes_and_merge(mini_dir):
    ev = io.read_event(mini_dir)
    pix = io.select_volumes(ev)
    assert set(pix.hits["volume_id"]) == {7, 8, 9}
    assert len(pix.hits) == 2783 and len(pix.truth) == 2783
    assert pix.particles["nhits_sel"].sum() == (pix.truth["particle_id"] != 0).sum()
    merged = io.merge_event(pix)
    assert len(merged) == 2783
    noise = merged["particle_id"] == 0
    assert merged.loc[noise, "pt"].isna().all() and merged.loc[~noise, "pt"].notna().all()


def test_derived_columns_hand_computed():
    hits = pd.DataFrame({"x": [3.0, 0.0], "y": [4.0, -2.0], "z": [0.0, 2.0 * math.sinh(1.0)]})
    out = io.add_hit_features(hits)
    np.testing.assert_allclose(out["r"], [5.0, 2.0])
    np.testing.assert_allclose(out["phi"], [math.atan2(4, 3), -math.pi / 2])
    np.testing.assert_allclose(out["eta"], [0.0, 1.0])
    parts = pd.DataFrame({"px": [3.0], "py": [4.0], "pz": [12.0]})
    out = io.add_particle_features(parts)
    np.testing.assert_allclose(out[["pt", "p", "eta"]].to_numpy()[0], [5.0, 13.0, math.asinh(12 / 5)])


def test_iter_and_find_events(mini_copy):
    ev = io.read_event(mini_copy)
    io.write_event(io.Event(1000, ev.hits, ev.truth, ev.particles), mini_copy, compress=False)
    assert [e for e, _ in io.find_events(mini_copy)] == [1, 1000]
    assert [e.event_id for e in io.iter_events(mini_copy)] == [1, 1000]
    assert [e.event_id for e in io.iter_events(mini_copy, n_events=1)] == [1]


def test_atomic_write_follows_umask_and_leaves_no_temp_files(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        io._UMASK = 0o022
        path = io.atomic_write_bytes(tmp_path / "a.csv", b"x\n")
    finally:
        os.umask(old)
        io._UMASK = io._current_umask()
    assert (path.stat().st_mode & 0o777) == 0o644  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]
    with pytest.raises(io.OutputExistsError, match="a.csv: exists"):
        io.atomic_write_bytes(path, b"y\n")
    assert path.read_bytes() == b"x\n"
