import json

import pytest

from trackstudy.data.datasets import MANIFEST, dataset_name, ensure_simulated, real_trackml_dir, resolve_data
from trackstudy.data.io import find_events, read_event
from trackstudy.data.simulate import SIMULATOR_VERSION
from trackstudy.errors import ConfigError, DataError


def test_dataset_name_carries_every_setting_and_the_simulator_version():
    v = f"-v{SIMULATOR_VERSION}"
    assert dataset_name(200, 5, 1) == "mu200-n5-s1" + v
    assert dataset_name(200, 100, 3, pixel_only=True, tracks="10:50") == "mu200-pixel-t10_50-n100-s3" + v
    assert dataset_name(20, 2, 7, hard_scatter=False) == "mu20-nohs-n2-s7" + v


def test_ensure_simulated_makes_once_then_reuses(tmp_path):
    out = tmp_path / "ds"
    assert ensure_simulated(2, 2.0, 5, pixel_only=True, out_dir=out, progress=False) == out
    assert len(find_events(out)) == 2
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["simulator_version"] == SIMULATOR_VERSION and manifest["seed"] == 5
    assert manifest["simulator"]["pixel_only"] is True
    stamp = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    assert ensure_simulated(2, 2.0, 5, pixel_only=True, out_dir=out, progress=False) == out
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == stamp  # reused, not rewritten
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_ensure_simulated_refuses_another_simulation(tmp_path):
    out = tmp_path / "ds"
    ensure_simulated(1, 2.0, 5, pixel_only=True, out_dir=out, progress=False)
    with pytest.raises(DataError, match="differs in seed"):
        ensure_simulated(1, 2.0, 6, pixel_only=True, out_dir=out, progress=False)
    # a dataset of an older simulator (same settings and seed) is not taken for a current one
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["simulator_version"] = SIMULATOR_VERSION - 1
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="differs in simulator_version"):
        ensure_simulated(1, 2.0, 5, pixel_only=True, out_dir=out, progress=False)
    del manifest["simulator_version"]  # written before versions were recorded
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="simulator_version"):
        ensure_simulated(1, 2.0, 5, pixel_only=True, out_dir=out, progress=False)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("user data")
    with pytest.raises(DataError, match="no manifest.json"):
        ensure_simulated(1, 2.0, 5, out_dir=other, progress=False)
    assert (other / "notes.txt").read_text() == "user data"


def test_resolve_data_and_real_dirs(tmp_path, mini_dir):
    assert resolve_data(str(mini_dir), n_events=1, pileup=2.0, seed=1) == mini_dir
    with pytest.raises(DataError, match="no such data folder"):
        resolve_data(str(tmp_path / "missing"), n_events=1, pileup=2.0, seed=1)
    assert real_trackml_dir("mini").is_dir()
    for kind in ("pix1gev", "barrel20"):  # both read and pass validation
        folder = real_trackml_dir(kind)
        ev = read_event(folder)
        assert ev.event_id == {"pix1gev": 1001, "barrel20": 1000}[kind]
        assert len(ev.hits) == {"pix1gev": 4029, "barrel20": 11382}[kind]
    with pytest.raises(ConfigError, match="'mini', 'full', 'pix1gev', 'barrel20'"):
        real_trackml_dir("medium")


def test_manifest_without_a_later_default_option_is_the_same_simulation(tmp_path):
    # a manifest written before a simulator option existed lacks it; at its default the events
    # are the same, so the dataset is reused; at another value it is another simulation
    out = tmp_path / "ds"
    ensure_simulated(1, 2.0, 5, pixel_only=True, out_dir=out, progress=False)
    manifest = json.loads((out / MANIFEST).read_text())
    del manifest["simulator"]["endcap_interaction_scale"]
    (out / MANIFEST).write_text(json.dumps(manifest))
    assert ensure_simulated(1, 2.0, 5, pixel_only=True, out_dir=out, progress=False) == out
    manifest["simulator"]["endcap_interaction_scale"] = 2.0
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="differs in endcap_interaction_scale"):
        ensure_simulated(1, 2.0, 5, pixel_only=True, out_dir=out, progress=False)


def test_manifest_that_names_the_pileup_mu_is_the_same_simulation(tmp_path):
    # manifests written before SimulationConfig's field was named pileup call it mu
    out = tmp_path / "ds"
    ensure_simulated(1, 2.0, 5, pixel_only=True, out_dir=out, progress=False)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["simulator"]["mu"] = manifest["simulator"].pop("pileup")
    (out / MANIFEST).write_text(json.dumps(manifest))
    assert ensure_simulated(1, 2.0, 5, pixel_only=True, out_dir=out, progress=False) == out
    manifest["simulator"]["mu"] = 3.0
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="differs in pileup"):
        ensure_simulated(1, 2.0, 5, pixel_only=True, out_dir=out, progress=False)
