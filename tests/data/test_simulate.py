import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackstudy.cli import main
from trackstudy.config import PIXEL_VOLUMES
from trackstudy.data._propagate import PION_MASS, SI_X0_MM, _cylinder_s, _helix_pos, highland_theta0
from trackstudy.data.detector import Detector
from trackstudy.data.io import read_event, validate_event
from trackstudy.data.simulate import (
    SimulationConfig,
    event_rngs,
    generate_particles,
    parse_tracks,
    propagate_particles,
    simulate_dataset,
    simulate_event,
    simulate_from_particles,
)
from trackstudy.errors import ConfigError, DataError

REAL = Path(__file__).resolve().parents[2] / "data" / "real"
DATA = REAL / "mini"
QUIET = dict(noise_fraction=0.0, material_scale=0.0, interaction_per_mm=0.0, smear=False)


@pytest.fixture(scope="module")
def det():
    return Detector.load()


def one_particle(pt, eta, phi, q=1, vx=0.0, vy=0.0, vz=0.0, pid=1):
    return pd.DataFrame({
        "particle_id": np.array([pid], np.int64), "vx": [vx], "vy": [vy], "vz": [vz],
        "px": [pt * math.cos(phi)], "py": [pt * math.sin(phi)], "pz": [pt * math.sinh(eta)], "q": [q], "nhits": [0],
    })


# ----------------------------------------------------------------------------- helix geometry
def test_helix_cylinder_crossing_by_hand():
    # pT = 1 GeV in 2 T: R = 1 / (0.299792458 * 2) m = 1667.82 mm; a positive track leaving the
    # origin along +x turns clockwise: circle centre (0, -R), so at r = 172 mm
    # y = -r^2 / (2R) = -8.8694 mm (the sagitta), and the arc length is s = 2R asin(r / 2R).
    R = 1000.0 / (0.299792458 * 2.0)
    assert R == pytest.approx(1667.820, abs=1e-3)
    kappa = -1 * 0.299792458e-3 * 2.0 / 1.0
    s = _cylinder_s(0.0, 0.0, 1.0, 0.0, kappa, 172.0, 1e-3)
    assert s == pytest.approx(2 * R * math.asin(86.0 / R), rel=1e-12)
    x, y, z = _helix_pos(0.0, 0.0, 0.0, 1.0, 0.0, 0.5, kappa, s)
    assert math.hypot(x, y) == pytest.approx(172.0, abs=1e-9)
    assert y == pytest.approx(-172.0**2 / (2 * R), abs=1e-9)
    assert z == pytest.approx(0.5 * s)
    # a negative particle bends the other way
    _, y_neg, _ = _helix_pos(0.0, 0.0, 0.0, 1.0, 0.0, 0.0, -kappa, s)
    assert y_neg == pytest.approx(-y)
    # a 0.1 GeV track (2R = 333.6 mm) never reaches r = 500 mm
    assert _cylinder_s(0.0, 0.0, 1.0, 0.0, kappa * 10, 500.0, 1e-3) == -1.0


def test_highland_by_hand():
    # p = 1 GeV pion: beta = 1 / sqrt(1 + 0.13957^2) = 0.990409; x/X0 = 0.01:
    # 13.6 MeV / beta * 0.1 * (1 + 0.038 ln(0.01 / beta^2)) = 1.13386 mrad
    beta = 1 / math.sqrt(1 + 0.13957**2)
    expect = 0.0136 / beta * 0.1 * (1 + 0.038 * math.log(0.01 / beta**2))
    assert expect == pytest.approx(1.13386e-3, rel=1e-4)
    assert highland_theta0(1.0, PION_MASS, 0.01) == pytest.approx(expect, rel=1e-12)
    assert highland_theta0(1.0, PION_MASS, 0.0) == 0.0


def test_multiple_scattering_spread_matches_highland(det):
    # 3000 positive pT = 1 GeV tracks at eta = 0.3: without scattering the momentum azimuth at radius r is
    # phi0 - 2 asin(r / 2R); at the second pixel layer it spreads by the Highland angle of the
    # first-layer module they crossed (tracks with a single hit there)
    n = 3000
    phi0 = np.random.default_rng(0).uniform(-np.pi, np.pi, n)
    p = pd.concat([one_particle(pt=1.0, eta=0.3, phi=f, pid=i + 1) for i, f in enumerate(phi0)], ignore_index=True)
    cfg = SimulationConfig(noise_fraction=0.0, interaction_per_mm=0.0, smear=False)
    cross = propagate_particles(p, cfg, np.random.default_rng(1), det)
    mods = det.modules.iloc[cross["module_row"].to_numpy()]
    lay = mods["layer_id"].to_numpy() * (mods["volume_id"].to_numpy() == 8)
    first = cross[lay == 2]
    single = first.groupby("particle_row").size() == 1
    rows = single[single].index
    second = cross[lay == 4].groupby("particle_row").first().loc[lambda d: d.index.isin(rows)]
    R = 1.0 / (0.299792458e-3 * 2.0)
    r = np.hypot(second["tx"], second["ty"]).to_numpy()
    resid = np.arctan2(second["tpy"], second["tpx"]).to_numpy() - (phi0[second.index] - 2 * np.arcsin(r / (2 * R)))
    resid = (resid + np.pi) % (2 * np.pi) - np.pi
    sigma = np.std(resid)
    h1 = first.set_index("particle_row").loc[second.index]
    normal = det.rotations()[h1["module_row"].to_numpy()][:, :, 2]
    mom = h1[["tpx", "tpy", "tpz"]].to_numpy()
    cos = np.abs((normal * mom).sum(1)) / np.linalg.norm(mom, axis=1)
    xx0 = 0.15 * cfg.material_scale / SI_X0_MM / cos
    pmag = np.linalg.norm(mom, axis=1)
    expect = np.sqrt(np.mean([highland_theta0(pm, PION_MASS, x) ** 2 for pm, x in zip(pmag, xx0)]))
    assert len(second) > 1500
    assert sigma == pytest.approx(expect, rel=0.1), (sigma, expect)


def test_straight_track_hits_every_barrel_layer(det):
    p = one_particle(pt=100.0, eta=0.2, phi=0.7)
    cross = propagate_particles(p, SimulationConfig(**QUIET), np.random.default_rng(0), det)
    mods = det.modules.iloc[cross["module_row"].to_numpy()]
    layers = set(zip(mods["volume_id"], mods["layer_id"]))
    for lid in (2, 4, 6, 8):
        assert (8, lid) in layers
    for lid in (2, 4, 6, 8):
        assert (13, lid) in layers
    assert {(17, 2), (17, 4)} <= layers
    assert all(v in (8, 13, 17) for v, _ in layers)
    # every hit lies on its module plane, inside the module, on the (nearly straight) track
    xyz = cross[["tx", "ty", "tz"]].to_numpy()
    loc = det.to_local(cross["module_row"].to_numpy(), xyz)
    np.testing.assert_allclose(loc[:, 2], 0.0, atol=1e-4)
    assert np.all(np.abs(loc[:, 1]) <= mods["module_hv"].to_numpy() + 1e-6)
    # a positive 100 GeV track (R = 166.78 m) from the origin is at phi0 - asin(r / 2R) at radius r
    r = np.hypot(xyz[:, 0], xyz[:, 1])
    R = 100.0 / (0.299792458e-3 * 2.0)
    np.testing.assert_allclose(np.arctan2(xyz[:, 1], xyz[:, 0]), 0.7 - np.arcsin(r / (2 * R)), atol=1e-6)
    np.testing.assert_allclose(np.arcsinh(xyz[:, 2] / np.hypot(xyz[:, 0], xyz[:, 1])), 0.2, atol=1e-3)
    # ordered along the path
    assert np.all(np.diff(np.hypot(xyz[:, 0], xyz[:, 1])) > -5.0)


def test_hits_are_inside_their_modules(det):
    rng = np.random.default_rng(5)
    n = 300
    pt = np.exp(rng.uniform(np.log(0.3), np.log(20), n))
    eta = rng.uniform(-3.5, 3.5, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    p = pd.DataFrame({"particle_id": np.arange(1, n + 1, dtype=np.int64), "vx": 0.0, "vy": 0.0,
                      "vz": rng.normal(0, 5, n), "px": pt * np.cos(phi), "py": pt * np.sin(phi),
                      "pz": pt * np.sinh(eta), "q": rng.choice([-1, 1], n), "nhits": 0})
    cross = propagate_particles(p, SimulationConfig(), rng, det)
    rows = cross["module_row"].to_numpy()
    m = det.modules.iloc[rows]
    u, v = cross["u"].to_numpy(), cross["v"].to_numpy()
    hv = m["module_hv"].to_numpy()
    hu = m["module_minhu"].to_numpy() + (m["module_maxhu"].to_numpy() - m["module_minhu"].to_numpy()) * (v + hv) / (2 * hv)
    assert np.all(np.abs(v) <= hv + 1e-6) and np.all(np.abs(u) <= hu + 1e-6)
    np.testing.assert_allclose(det.to_local(rows, cross[["tx", "ty", "tz"]].to_numpy())[:, :2],
                               np.stack([u, v], 1), atol=1e-4)
    # almost every particle of pT > 0.3 GeV within |eta| < 3.5 reaches the first pixel layers
    per = cross.groupby("particle_row").size()
    assert len(per) >= 0.95 * n
    assert per.median() >= 8


def test_loopers_recross_layers_and_stay_bounded(det):
    p = one_particle(pt=0.2, eta=0.0, phi=0.3)
    cfg = dict(QUIET, min_pt=0.0)
    half = propagate_particles(p, SimulationConfig(**cfg), np.random.default_rng(0), det)
    loops = propagate_particles(p, SimulationConfig(**cfg, max_turns=2.0), np.random.default_rng(0), det)
    capped = propagate_particles(p, SimulationConfig(**cfg, max_turns=2.0, max_crossings=10),
                                 np.random.default_rng(0), det)

    def first_layer(c):
        mods = det.modules.iloc[c["module_row"].to_numpy()]
        return int(((mods["volume_id"] == 8) & (mods["layer_id"] == 2)).sum())

    assert first_layer(half) in (1, 2)  # once (or a double hit in an overlap)
    assert first_layer(loops) >= 3      # back in and out again
    assert len(loops) > 2 * len(half)
    assert len(capped) <= 10
    # a too small output buffer is grown and gives the same crossings
    small = propagate_particles(p, SimulationConfig(**cfg, max_turns=2.0), np.random.default_rng(0), det, capacity=3)
    pd.testing.assert_frame_equal(small, loops)


# ----------------------------------------------------------------------------- events
@pytest.fixture(scope="module")
def small_event(det):
    return simulate_event(SimulationConfig(pileup=5), 11, event_id=7, detector=det)


def test_event_is_valid_trackml(small_event, det):
    ev = small_event
    validate_event(ev)
    assert ev.event_id == 7
    assert list(ev.hits.columns) == ["hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id"]
    assert ev.hits["hit_id"].tolist() == list(range(1, len(ev.hits) + 1))
    key = ev.hits[["volume_id", "layer_id", "module_id"]].to_numpy()
    assert np.all(np.diff(key[:, 0] * 10**8 + key[:, 1] * 10**5 + key[:, 2]) >= 0)  # detector order
    assert ev.truth["particle_id"].dtype == np.int64
    assert ev.truth["weight"].sum() == pytest.approx(1.0, abs=1e-5)
    noise = ev.truth["particle_id"].to_numpy() == 0
    assert np.all(ev.truth["weight"].to_numpy()[noise] == 0)
    assert 0.05 < noise.mean() < 0.3
    counts = ev.truth.loc[~noise, "particle_id"].value_counts()
    nh = ev.particles.set_index("particle_id")["nhits"]
    assert (nh.loc[counts.index] == counts).all() and nh.drop(counts.index).eq(0).all()
    # measured hits lie on their module (smeared within it), true positions near them
    rows = det.module_row(ev.hits["volume_id"], ev.hits["layer_id"], ev.hits["module_id"])
    loc = det.to_local(rows, ev.hits[["x", "y", "z"]].to_numpy(np.float64))
    assert np.abs(loc[:, 2]).max() < 1e-2
    d = np.linalg.norm(ev.hits[["x", "y", "z"]].to_numpy(np.float64)[~noise]
                       - ev.truth[["tx", "ty", "tz"]].to_numpy(np.float64)[~noise], axis=1)
    assert np.median(d) < 0.5 and d.max() < 20.0


def test_generated_spectra_at_mu200():
    p = generate_particles(SimulationConfig(pileup=200), np.random.default_rng(3))
    pt = np.hypot(p["px"], p["py"])
    eta = np.arcsinh(p["pz"] / pt)
    assert 10792 * 0.85 < len(p) < 10792 * 1.15
    assert 1465 * 0.8 < (pt > 0.9).sum() < 1465 * 1.2
    assert pt.min() >= 0.099 and np.abs(eta).max() <= 4.0 + 1e-6
    assert p["particle_id"].is_unique and set(np.unique(p["q"])) == {-1, 1}
    prompt = np.hypot(p["vx"], p["vy"]) < 1.0
    assert 0.55 < prompt.mean() < 0.8
    assert np.std(p.loc[prompt, "vz"]) < 20.0
    assert ((p["particle_id"].to_numpy() >> 52) == 1).sum() > 50  # the hard-scatter vertex
    none = generate_particles(SimulationConfig(pileup=0, hard_scatter=False), np.random.default_rng(3))
    assert len(none) == 0


def _displaced_geometry(p: pd.DataFrame):
    pt = np.hypot(p["px"], p["py"]).to_numpy()
    vr = np.hypot(p["vx"], p["vy"]).to_numpy()
    dphi = np.angle(np.exp(1j * (np.arctan2(p["py"], p["px"]) - np.arctan2(p["vy"], p["vx"])).to_numpy()))
    sel = (pt > 0.9) & (vr > 1.0) & (vr < 180.0)  # high-pT secondaries inside the pixel detector
    return np.abs(dphi[sel]), np.abs(vr * np.sin(dphi))[sel]


def test_displaced_particles_follow_the_real_kinematics():
    """High-pT secondaries leave their vertex nearly along the line from the beam, as in the real
    events: impact parameter and direction come out as in data/real/full (the simulator once drew
    direction and pT independently and gave them ten times the real impact parameter)."""
    real = pd.concat([pd.read_csv(f) for f in sorted((REAL / "full").glob("event*-particles.csv.gz"))])
    real_dphi, real_d0 = _displaced_geometry(real)
    sim = pd.concat([generate_particles(SimulationConfig(pileup=200), np.random.default_rng(s)) for s in (5, 6)])
    sim_dphi, sim_d0 = _displaced_geometry(sim)
    assert len(sim_dphi) > 100 and len(real_dphi) > 100
    assert np.median(real_dphi) < 0.1  # the fact the simulator must reproduce
    assert 0.5 < np.median(sim_dphi) / np.median(real_dphi) < 2.0
    assert 0.5 < np.median(sim_d0) / np.median(real_d0) < 2.0
    disp = np.hypot(sim["vx"], sim["vy"]) > 1.0  # mirrored in z half of the time: both sides filled
    assert 0.4 < (sim.loc[disp, "vz"] > 0).mean() < 0.6


def test_pixel_only(det):
    ev = simulate_event(SimulationConfig(pileup=5, pixel_only=True), 2, detector=det)
    assert set(ev.hits["volume_id"].unique()) <= set(PIXEL_VOLUMES)
    assert len(ev.hits) > 100


def test_tracks_subset(det):
    full = simulate_event(SimulationConfig(pileup=10), 4, detector=det)
    sub = simulate_event(SimulationConfig(pileup=10, tracks=(5, 8)), 4, detector=det)
    assert 5 <= len(sub.particles) <= 8
    assert (sub.particles["nhits"] >= 1).all()
    # the subset keeps all hits of its particles: same counts as in the full event of the same seed
    full_n = full.particles.set_index("particle_id")["nhits"]
    np.testing.assert_array_equal(sub.particles["nhits"].to_numpy(), full_n.loc[sub.particles["particle_id"]].to_numpy())
    noise_full = (full.truth["particle_id"] == 0).sum() / (full.truth["particle_id"] != 0).sum()
    noise_sub = (sub.truth["particle_id"] == 0).sum() / (sub.truth["particle_id"] != 0).sum()
    assert abs(noise_sub - noise_full) < 0.02
    assert sub.hits["hit_id"].tolist() == list(range(1, len(sub.hits) + 1))
    validate_event(sub)
    # asking for more particles than have hits keeps them all
    few = simulate_event(SimulationConfig(pileup=0, tracks=(5000, 6000)), 4, detector=det)
    assert len(few.particles) == (few.particles["nhits"] > 0).sum()


def test_particles_from_real_event(det):
    real = read_event(DATA).particles
    ev = simulate_from_particles(real, 1, SimulationConfig(noise_fraction=0.0), det)
    assert set(ev.particles["particle_id"]) == set(real["particle_id"])
    assert "particle_type" in ev.particles.columns
    sim = ev.particles.set_index("particle_id")["nhits"]
    ref = real.set_index("particle_id")["nhits"].loc[sim.index]
    assert abs(sim.sum() / ref.sum() - 1) < 0.15
    d = (sim - ref).to_numpy()
    assert abs(d.mean()) < 1.0 and np.mean(np.abs(d) <= 2) > 0.5


# ----------------------------------------------------------------------------- reproducibility
def _bytes(folder: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


def test_same_seed_gives_identical_files(tmp_path, det):
    cfg = SimulationConfig(pileup=3)
    simulate_dataset(tmp_path / "a", 2, cfg, seed=5, progress=False, detector=det)
    simulate_dataset(tmp_path / "b", 2, cfg, seed=5, progress=False, detector=det)
    simulate_dataset(tmp_path / "c", 1, cfg, seed=5, progress=False, detector=det)
    simulate_dataset(tmp_path / "d", 1, cfg, seed=6, progress=False, detector=det)
    a, b, c, d = (_bytes(tmp_path / x) for x in "abcd")
    assert len(a) == 6 and a == b
    # event 0 depends on (seed, 0) only, not on how many events were asked for
    assert all(a[k] == v for k, v in c.items())
    assert c["event000001000-hits.csv.gz"] != d["event000001000-hits.csv.gz"]
    rngs = event_rngs(5, 3)
    assert rngs[2].random() == event_rngs(5, 1, start=2)[0].random()


def test_simulate_dataset_refuses_to_overwrite(tmp_path, det):
    simulate_dataset(tmp_path, 1, SimulationConfig(pileup=1), seed=1, progress=False, detector=det)
    with pytest.raises(FileExistsError, match="exists"):
        simulate_dataset(tmp_path, 1, SimulationConfig(pileup=1), seed=1, progress=False, detector=det)
    simulate_dataset(tmp_path, 1, SimulationConfig(pileup=1), seed=2, force=True, progress=False, detector=det)


# ----------------------------------------------------------------------------- config and CLI
def test_config_errors():
    with pytest.raises(ConfigError, match="pileup"):
        SimulationConfig(pileup=-1)
    with pytest.raises(ConfigError, match="noise_fraction"):
        SimulationConfig(noise_fraction=1.0)
    with pytest.raises(ConfigError, match="MIN <= MAX"):
        parse_tracks("50:10")
    with pytest.raises(ConfigError, match="MIN:MAX"):
        parse_tracks("a:b")
    with pytest.raises(ConfigError, match="1 <= MIN"):
        SimulationConfig(tracks=(0, 5))
    assert parse_tracks("10:50") == (10, 50) and parse_tracks("7") == (7, 7)
    assert SimulationConfig(tracks="3:4").tracks == (3, 4)
    with pytest.raises(ConfigError, match="endcap_interaction_scale"):
        SimulationConfig(endcap_interaction_scale=-1)


def test_endcap_interaction_scale_acts_on_endcap_modules_only(det):
    # 200 forward tracks (eta 2.5, pT 2 GeV: pixel barrel layer 1, then the endcap disks) and 200 central
    # ones (eta 0: barrel only), with a certain stop at the first endcap crossing (scale 1e6) or none (0)
    p = pd.concat([one_particle(pt=2.0, eta=eta, phi=0.03 * i, pid=i + 1 + 1000 * k)
                   for k, eta in enumerate((2.5, 0.0)) for i in range(200)], ignore_index=True)
    counts = {}
    for scale in (0.0, 1e6):
        cfg = SimulationConfig(noise_fraction=0.0, interaction_per_mm=1e-4, endcap_interaction_scale=scale)
        ev = simulate_from_particles(p, 5, cfg, det)
        counts[scale] = ev.particles.set_index("particle_id")["nhits"]
    fwd = p["particle_id"] < 1000
    central = p.loc[~fwd, "particle_id"]
    assert (counts[0.0].loc[central] == counts[1e6].loc[central]).all()  # barrel: same random numbers, same hits
    n_ec_crossings = counts[1e6].loc[p.loc[fwd, "particle_id"]]
    assert n_ec_crossings.mean() < 0.5 * counts[0.0].loc[p.loc[fwd, "particle_id"]].mean()


def test_particles_input_errors(det):
    p = one_particle(1.0, 0.0, 0.0)
    with pytest.raises(DataError, match="missing column q"):
        simulate_from_particles(p.drop(columns=["q"]), 0, detector=det)
    with pytest.raises(DataError, match="particle_id must be integer"):
        simulate_from_particles(p.astype({"particle_id": float}), 0, detector=det)
    with pytest.raises(DataError, match="row 1: duplicate id 1"):
        simulate_from_particles(pd.concat([p, p], ignore_index=True), 0, detector=det)
    # neutral particles leave no hits, but stay in the particles table
    ev = simulate_from_particles(pd.concat([p, one_particle(1.0, 0.0, 1.0, q=0, pid=2)], ignore_index=True), 0,
                                 SimulationConfig(**QUIET), det)
    assert ev.particles.set_index("particle_id").loc[2, "nhits"] == 0
    assert ev.particles.set_index("particle_id").loc[1, "nhits"] >= 8  # 4 pixel + 4 + 2 strip layers


def test_cli_simulate(tmp_path, capsys):
    out = tmp_path / "sim"
    args = ["simulate", "--out", str(out), "--events", "2", "--pileup", "2", "--seed", "1", "--quiet",
            "--pixel-only", "--tracks", "2:4"]
    assert main(args) == 0
    assert len(list(out.glob("event*-hits.csv.gz"))) == 2
    ev = read_event(out, 1001)
    assert 2 <= len(ev.particles) <= 4 and set(ev.hits["volume_id"]) <= set(PIXEL_VOLUMES)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err and err.count("\n") == 1
    assert main(args + ["--force"]) == 0


@pytest.mark.parametrize("extra, message", [
    (["--tracks", "50:10"], "--tracks"),
    (["--pileup", "-3"], "--pileup"),
    (["--events", "0"], "--events"),
    (["--particles-from", "/nonexistent/particles.csv"], "no such"),
])
def test_cli_errors(tmp_path, capsys, extra, message):
    assert main(["simulate", "--out", str(tmp_path / "x"), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_cli_simulate_like_real_sets(tmp_path):
    from trackstudy.data.cuts import hits_per_particle_layer

    pix = tmp_path / "pix"
    assert main(["simulate", "--out", str(pix), "--pileup", "10", "--seed", "2", "--quiet", "--like", "pix1gev"]) == 0
    ev = read_event(pix)
    assert set(ev.hits["volume_id"]) <= set(PIXEL_VOLUMES) and (ev.truth["particle_id"] != 0).all()
    assert (np.hypot(ev.particles["px"], ev.particles["py"]) >= 1.0).all()
    assert (hits_per_particle_layer(ev)["n"] == 1).all()
    assert ev.truth["weight"].sum() == pytest.approx(1.0, abs=1e-5)
    # barrel20 with an override: every noise hit kept
    bar = tmp_path / "bar"
    assert main(["simulate", "--out", str(bar), "--pileup", "10", "--seed", "2", "--quiet", "--like", "barrel20",
                 "--noise-keep", "1"]) == 0
    ev = read_event(bar)
    assert set(ev.hits["volume_id"]) <= {8, 13, 17} and (hits_per_particle_layer(ev)["n"] == 1).all()
    # the same event uncut, reduced by hand: the same particles are a fifth of those with barrel hits
    full = tmp_path / "full"
    assert main(["simulate", "--out", str(full), "--pileup", "10", "--seed", "2", "--quiet"]) == 0
    whole = read_event(full)
    barrel = whole.truth[whole.hits["volume_id"].isin([8, 13, 17]).to_numpy()]
    n_barrel = barrel.loc[barrel["particle_id"] != 0, "particle_id"].nunique()
    assert ev.truth.loc[ev.truth["particle_id"] != 0, "particle_id"].nunique() == int(0.2 * n_barrel)
    assert (ev.truth["particle_id"] == 0).sum() == (barrel["particle_id"] == 0).sum()
    # options alone, no --like
    own = tmp_path / "own"
    assert main(["simulate", "--out", str(own), "--pileup", "5", "--seed", "2", "--quiet", "--volumes", "8",
                 "--min-pt", "0.5", "--drop-double-hits", "--no-noise"]) == 0
    ev = read_event(own)
    assert set(ev.hits["volume_id"]) == {8} and (ev.truth["particle_id"] != 0).all()


@pytest.mark.parametrize("extra, message", [
    (["--like", "pix2gev"], "--like 'pix2gev': expected one of pix1gev, barrel20, mini"),
    (["--volumes", "8,x"], "--volumes '8,x': expected 'all', 'pixel' or a comma-separated list of volume ids"),
    (["--volumes", ""], "--volumes '': expected"),
    (["--min-pt", "fast"], "--min-pt 'fast': expected a transverse momentum >= 0"),
    (["--min-pt", "-1"], "--min-pt '-1': expected"),
    (["--min-pt", "nan"], "--min-pt 'nan': expected"),
    (["--one-hit-per-layer", "outermost"], "--one-hit-per-layer 'outermost': expected innermost or first"),
    (["--one-hit-per-layer", "innermost", "--drop-double-hits"], "--drop-double-hits keeps the first hit id"),
    (["--particle-fraction", "0"], "--particle-fraction '0': expected a fraction 0 < F <= 1"),
    (["--particle-fraction", "20%"], "--particle-fraction '20%': expected"),
    (["--noise-keep", "1.5"], "--noise-keep '1.5': expected a fraction 0 <= F <= 1"),
    (["--noise-keep", "0.2", "--no-noise"], "--no-noise and --noise-keep contradict"),
])
def test_cli_cut_errors(tmp_path, capsys, extra, message):
    assert main(["simulate", "--out", str(tmp_path / "x"), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_mu200_event_looks_like_a_real_one(det):
    # README facts (means of real events): 10,792 particles, 1,465 with pT > 0.9 GeV, 102,001 hits,
    # 52,308 pixel hits, ~15-17.5% noise. Event sizes fluctuate by ~10% (as real ones do: 8,915 and
    # 12,263 particles in the two shared events), so compare the mean particle count over 20
    # generated events, and per-particle yields for one simulated event.
    rng = np.random.default_rng(2024)
    gen = [generate_particles(SimulationConfig(pileup=200), rng) for _ in range(20)]
    n = np.array([len(p) for p in gen])
    n_hi = np.array([(np.hypot(p["px"], p["py"]) > 0.9).sum() for p in gen])
    assert n.mean() == pytest.approx(10792, rel=0.05)
    assert n_hi.mean() == pytest.approx(1465, rel=0.15)
    ev = simulate_event(SimulationConfig(pileup=200), 2024, detector=det)
    n_p = len(ev.particles)
    assert len(ev.hits) / n_p == pytest.approx(102001 / 10792, rel=0.15)
    assert ev.hits["volume_id"].isin(PIXEL_VOLUMES).sum() / n_p == pytest.approx(52308 / 10792, rel=0.15)
    assert (ev.truth["particle_id"] == 0).mean() == pytest.approx(0.15, abs=0.01)
    # pixel-barrel layer occupancy per particle as in real event 1001 (6,737 / 5,673 / 4,987 / 4,544
    # hits for 8,915 particles)
    per_layer = ev.hits[ev.hits["volume_id"] == 8].groupby("layer_id").size() / n_p
    np.testing.assert_allclose(per_layer.loc[[2, 4, 6, 8]].to_numpy(),
                               np.array([6737, 5673, 4987, 4544]) / 8915, rtol=0.1)
