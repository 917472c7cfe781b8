"""A fast simulator of the TrackML detector that writes TrackML-format events.

Physics, in the order an event is made:

1. particles (:func:`generate_particles`): Poisson(mu) pile-up interactions plus, by default,
   one hard-scatter vertex (as in the real TrackML events, whose vertex 1 is a hard scatter);
   per-interaction multiplicity, eta and pT spectra, charge and beam spot from the real
   particle lists (``scripts/calibrate_simulator.py`` -> ``simulator_calibration.npz``);
   displaced particles (decays and material secondaries) resampled from the real ones with
   their vertex, momentum and direction together (rotated in phi, mirrored in z, smeared);
2. propagation (:mod:`trackstudy.data._propagate`): helices in the 2 T solenoid, analytic
   intersections with each layer's cylinder (barrel) or plane (endcap), then Newton steps to
   the exact plane of every candidate module near that point; a hit on each module whose
   trapezoid contains the intersection (overlapping modules give double hits); Highland
   multiple scattering and mean ionisation loss at each module crossed; a per-crossing
   nuclear-interaction probability; by default a particle stops after half a turn in the
   transverse plane, as in the TrackML truth (no hits on the way back in); ``max_turns``
   above 0.5 simulates loopers that re-cross layers (bounded);
3. measurement: local (u, v) smeared by pitch / sqrt(12) and kept on the module, a per-hit
   inefficiency, noise hits uniform on the modules with the real per-volume noise rates;
4. TrackML tables: hits sorted by volume, layer, module (hit ids carry no truth), truth with
   true position / momentum and the challenge weights, particles with nhits.

Everything random comes from a ``numpy.random.Generator``; :func:`simulate_dataset` derives
one per event from ``SeedSequence(seed).spawn`` so an event depends only on (seed, index).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from trackstudy.config import B_FIELD_T, PACKAGE_DIR, PIXEL_VOLUMES
from trackstudy.data._propagate import PION_MASS, propagate
from trackstudy.data.cuts import EventCuts, cut_event, resolve_cuts
from trackstudy.data.detector import Detector, _module_edge_points
from trackstudy.data.io import Event, OutputExistsError, coerce_table, event_prefix, read_table, write_event
from trackstudy.data.weights import trackml_weights
from trackstudy.errors import ConfigError, DataError

CALIBRATION_FILE = PACKAGE_DIR / "data" / "simulator_calibration.npz"
#: Version of the simulation: bumped whenever a change alters the events a given config and seed
#: give. Simulated datasets record it (trackstudy.data.datasets), so a cached dataset of an older
#: simulator is never taken for a current one. 2: displaced particles resampled jointly from the
#: real ones (version 1 drew their direction independently of pT).
SIMULATOR_VERSION = 2
#: Smearing of the resampled real displaced particles (standard deviations): vertex radius and
#: phi_p - phi_v multiplicative (log), vertex z in mm, log pT and eta additive. Small next to
#: the spreads themselves (the real |phi_p - phi_v| spans 0.01-3 rad), large enough that no
#: two events share a particle.
DISP_SMEAR = {"r": 0.01, "z": 1.0, "logpt": 0.05, "dphi": 0.1, "eta": 0.01}
SI_X0_MM = 93.7

# lookup margins: how far (mm) the crossing with the layer's reference surface may lie from
# the crossing with the module plane (tilted staves, +-2.5..5.5 mm endcap planes, shallow angles)
_BARREL_MARGIN_RPHI = 12.0
_BARREL_MARGIN_Z = 30.0
_ENDCAP_MARGIN_R = 15.0
_ENDCAP_MARGIN_RPHI = 12.0


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of the simulator (defaults: a TrackML-like event at mu = 200).

    pileup: mean number of pile-up interactions (mu, Poisson), 0..1000.
    hard_scatter: add one high-multiplicity hard-scatter vertex (the real events have one).
    pixel_only: simulate and keep only the pixel volumes 7, 8, 9.
    tracks: (min, max) -> keep k ~ U{min..max} random particles with hits (and noise in proportion).
    noise_fraction: noise hits / all hits of a full-detector event. Noise is spread over the volumes
        with the real per-volume noise-per-signal-hit rates (mini event), so the pixel volumes get
        ~5.5% noise at 0.15, in full and in pixel-only events alike; uniform on the modules.
    inefficiency: probability that a module crossing leaves no hit.
    interaction_per_mm: probability per mm of silicon-equivalent material that a particle stops
        (nuclear interaction); calibrated (0.012) so that re-simulated real particle lists give the
        real total of hits (real tracks end early far more often than the sensors alone explain).
    endcap_interaction_scale: factor on ``interaction_per_mm`` in the endcap modules (1: the same
        probability everywhere). A knob for studying where real tracks end (docs/real_vs_sim.md).
    material_scale: effective material per module crossing relative to the bare sensor thickness
        (services, supports, cooling), used by multiple scattering, energy loss and interactions;
        6 reproduces the mean momentum loss per pixel hit of the real truth (~0.1% at p ~ 0.7 GeV).
    max_turns: transverse turns a particle is followed for (0.5 = up to the turning point, as in TrackML).
    max_path_over_thickness: no hit where the path in a sensor exceeds this many thicknesses
        (incidence beyond ~84 deg from the normal; the real data has none beyond 9.8).
    min_pt: particles produced below this pT (GeV) mostly leave no hits, as in TrackML: only the
        calibrated fraction of them (prompt ~3%, displaced ~30%) is propagated.
    max_crossings: bound on module crossings per particle (loopers).
    smear: smear measured positions by pitch / sqrt(12) (False: hits at the true positions).
    b_field: solenoid field (T).
    weights_phase: TrackML hit weights of the accuracy phase (1, Kaggle) or throughput phase (2:
        secondaries get 0), see :func:`trackstudy.data.weights.trackml_weights`.
    """

    pileup: float = 200.0
    hard_scatter: bool = True
    pixel_only: bool = False
    tracks: tuple[int, int] | None = None
    noise_fraction: float = 0.15
    inefficiency: float = 0.0
    interaction_per_mm: float = 0.012
    endcap_interaction_scale: float = 1.0
    material_scale: float = 6.0
    max_turns: float = 0.5
    max_path_over_thickness: float = 10.0
    min_pt: float = 0.15
    max_crossings: int = 48
    smear: bool = True
    b_field: float = B_FIELD_T
    weights_phase: int = 1

    def __post_init__(self):
        def bad(name, why):
            raise ConfigError(f"SimulationConfig.{name}={getattr(self, name)!r}: {why}")
        if not (0.0 <= float(self.pileup) <= 1000.0):
            bad("pileup", "must be between 0 and 1000")
        if not (0.0 <= float(self.noise_fraction) < 1.0):
            bad("noise_fraction", "must be in [0, 1)")
        if not (0.0 <= float(self.inefficiency) < 1.0):
            bad("inefficiency", "must be in [0, 1)")
        if float(self.interaction_per_mm) < 0.0:
            bad("interaction_per_mm", "must be >= 0")
        if float(self.endcap_interaction_scale) < 0.0:
            bad("endcap_interaction_scale", "must be >= 0")
        if float(self.material_scale) < 0.0:
            bad("material_scale", "must be >= 0")
        if not (0.0 < float(self.max_turns) <= 20.0):
            bad("max_turns", "must be in (0, 20]")
        if not (float(self.max_path_over_thickness) >= 1.0):
            bad("max_path_over_thickness", "must be >= 1")
        if not (float(self.min_pt) >= 0.0):
            bad("min_pt", "must be >= 0 (GeV)")
        if not (1 <= int(self.max_crossings) <= 1000):
            bad("max_crossings", "must be in 1..1000")
        if not (float(self.b_field) > 0.0):
            bad("b_field", "must be > 0 (tesla)")
        if self.weights_phase not in (1, 2):
            bad("weights_phase", "must be 1 (accuracy phase) or 2 (throughput phase)")
        if self.tracks is not None:
            object.__setattr__(self, "tracks", parse_tracks(self.tracks))


def parse_tracks(value) -> tuple[int, int]:
    """``"10:50"``, ``"20"`` or ``(10, 50)`` -> (min, max) with 1 <= min <= max."""
    try:
        if isinstance(value, str):
            parts = value.split(":")
            if len(parts) == 1:
                lo = hi = int(parts[0])
            elif len(parts) == 2:
                lo, hi = int(parts[0]), int(parts[1])
            else:
                raise ValueError
        else:
            lo, hi = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"tracks={value!r}: expected MIN:MAX with integers, e.g. 10:50") from None
    if lo < 1 or hi < lo:
        raise ConfigError(f"tracks={value!r}: expected 1 <= MIN <= MAX (got MIN={lo}, MAX={hi})")
    return lo, hi


# ---------------------------------------------------------------------------- calibration
@lru_cache(maxsize=2)
def load_calibration(path: str | None = None) -> dict[str, np.ndarray]:
    """The spectra tables written by ``scripts/calibrate_simulator.py`` (cached)."""
    p = Path(path) if path else CALIBRATION_FILE
    if not p.is_file():
        raise DataError(f"{p}: simulator calibration missing (run scripts/calibrate_simulator.py)")
    with np.load(p) as f:
        return {k: f[k] for k in f.files}


def _from_quantiles(table: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling from a quantile table (linear between quantiles)."""
    return np.interp(u, np.linspace(0.0, 1.0, len(table)), table.astype(np.float64))


def generate_particles(config: SimulationConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Sample the particles of one event (TrackML particles columns, nhits = 0)."""
    cal = load_calibration()
    n_int = int(rng.poisson(config.pileup)) if config.pileup > 0 else 0
    nonempty = rng.random(n_int) < float(cal["pu_p_nonempty"])
    mult = np.where(nonempty, rng.choice(cal["pu_counts"], size=n_int), 0)
    hs = 1 if config.hard_scatter else 0
    hs_mult = int(rng.choice(cal["hs_counts"])) if hs else 0
    # vertices: hard scatter is vertex 1 (as in TrackML), pile-up 1+hs ...
    n_vtx = n_int + hs
    vtx_xy = rng.normal(0.0, float(cal["vxy_sigma"]), size=(n_vtx, 2))
    vtx_z = rng.normal(0.0, float(cal["vz_sigma"]), size=n_vtx)
    counts = np.r_[[hs_mult] * hs, mult].astype(np.int64)
    n_prompt = int(counts.sum())
    vtx_of = np.repeat(np.arange(n_vtx), counts)
    is_hs = vtx_of < hs
    prim = np.arange(n_prompt) - np.repeat(np.cumsum(counts) - counts, counts) + 1

    eta = np.empty(n_prompt)
    logpt = np.empty(n_prompt)
    u1, u2 = rng.random(n_prompt), rng.random(n_prompt)
    eta[~is_hs] = _from_quantiles(cal["prompt_eta_q"], u1[~is_hs])
    eta[is_hs] = _from_quantiles(cal["hs_eta_q"], u1[is_hs])
    edges = cal["abs_eta_edges"]
    ebin = np.clip(np.searchsorted(edges, np.abs(eta), side="right") - 1, 0, len(edges) - 2)
    for b in range(len(edges) - 1):
        sel = (~is_hs) & (ebin == b)
        logpt[sel] = _from_quantiles(cal["prompt_logpt_q"][b], u2[sel])
    logpt[is_hs] = _from_quantiles(cal["hs_logpt_q"], u2[is_hs])
    phi = rng.uniform(-np.pi, np.pi, n_prompt)
    p_plus = np.where(is_hs, float(cal["hs_p_plus"]), float(cal["prompt_p_plus"]))
    q = np.where(rng.random(n_prompt) < p_plus, 1, -1)
    pt = np.exp(logpt)
    vid = vtx_of + 1
    pid = (vid.astype(np.int64) << 52) | (prim.astype(np.int64) << 36)
    prompt = dict(vx=vtx_xy[vtx_of, 0], vy=vtx_xy[vtx_of, 1], vz=vtx_z[vtx_of],
                  px=pt * np.cos(phi), py=pt * np.sin(phi), pz=pt * np.sinh(eta), q=q, particle_id=pid)

    # displaced particles: real ones resampled jointly (smoothed bootstrap). Vertex position,
    # momentum and direction are strongly correlated (a high-pT secondary leaves its vertex
    # nearly along the line from the beam), so they are drawn together from the real rows,
    # rotated to a random azimuth, mirrored in z half of the time and lightly smeared so that
    # events do not repeat the source particles exactly.
    n_disp = int(rng.poisson(float(cal["disp_per_prompt"]) * n_prompt)) if n_prompt else 0
    source = cal["disp_rows"].astype(np.float64)
    lo, hi = source.min(axis=0), source.max(axis=0)  # smearing stays inside the real ranges
    rows = source[rng.integers(0, len(source), n_disp)]
    mirror = np.where(rng.random(n_disp) < 0.5, -1.0, 1.0)
    r = np.maximum(rows[:, 0] * np.exp(rng.normal(0.0, DISP_SMEAR["r"], n_disp)), 1.0)
    zv = mirror * (rows[:, 1] + rng.normal(0.0, DISP_SMEAR["z"], n_disp))
    pt_d = np.exp(np.clip(rows[:, 2] + rng.normal(0.0, DISP_SMEAR["logpt"], n_disp), lo[2], hi[2]))
    phv = rng.uniform(-np.pi, np.pi, n_disp)
    phi_d = phv + rows[:, 3] * np.exp(rng.normal(0.0, DISP_SMEAR["dphi"], n_disp))
    eta_max = min(-lo[4], hi[4])  # symmetric, as the rows are mirrored
    eta_d = mirror * np.clip(rows[:, 4] + rng.normal(0.0, DISP_SMEAR["eta"], n_disp), -eta_max, eta_max)
    q_d = rows[:, 5].astype(np.int64)
    # ids: generation 1 under a random prompt parent, secondary index counting per parent
    parent = rng.integers(0, max(n_prompt, 1), n_disp)
    srt = np.argsort(parent, kind="stable")
    ps = parent[srt]
    first = np.r_[True, ps[1:] != ps[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(n_disp), 0))
    sec = np.empty(n_disp, np.int64)
    sec[srt] = np.arange(n_disp) - start + 1
    parent_pid = pid[parent] if n_prompt else np.zeros(n_disp, np.int64)
    pid_d = parent_pid | (np.int64(1) << 24) | (np.minimum(sec, 4095).astype(np.int64) << 12)
    disp = dict(vx=r * np.cos(phv), vy=r * np.sin(phv), vz=zv, px=pt_d * np.cos(phi_d), py=pt_d * np.sin(phi_d),
                pz=pt_d * np.sinh(eta_d), q=q_d, particle_id=pid_d)
    df = pd.DataFrame({k: np.r_[prompt[k], disp[k]] for k in prompt})
    df = df.drop_duplicates("particle_id")  # a parent with > 4095 secondaries: practically never
    df["nhits"] = 0
    df = df.sort_values("particle_id", kind="stable").reset_index(drop=True)
    return coerce_table(df[["particle_id", "vx", "vy", "vz", "px", "py", "pz", "q", "nhits"]], "particles",
                        "generated particles")


# ---------------------------------------------------------------------------- geometry arrays
@dataclass
class _Geometry:
    volumes: tuple[int, ...]
    layers: dict[str, np.ndarray]
    cell_ptr: np.ndarray
    cell_mod: np.ndarray
    mod_c: np.ndarray
    mod_rot: np.ndarray
    mod_hu0: np.ndarray
    mod_hu1: np.ndarray
    mod_hv: np.ndarray
    mod_t: np.ndarray
    modules: pd.DataFrame = field(repr=False)


_GEOMETRY_CACHE: dict[tuple[int, tuple[int, ...]], _Geometry] = {}


def _geometry(detector: Detector, volumes: tuple[int, ...]) -> _Geometry:
    key = (id(detector), volumes)
    geo = _GEOMETRY_CACHE.get(key)
    if geo is None or geo.modules is not detector.modules:
        geo = _build_geometry(detector, volumes)
        _GEOMETRY_CACHE[key] = geo
    return geo


def _build_geometry(detector: Detector, volumes: tuple[int, ...]) -> _Geometry:
    mods = detector.modules
    edge = _module_edge_points(mods)
    ex, ey, ez = edge[..., 0], edge[..., 1], edge[..., 2]
    er = np.hypot(ex, ey)
    ephi = np.arctan2(ey, ex)
    cphi = np.arctan2(mods["cy"].to_numpy(), mods["cx"].to_numpy())
    dphi = (ephi - cphi[:, None] + np.pi) % (2 * np.pi) - np.pi
    phi_lo = cphi + dphi.min(1)
    phi_hi = cphi + dphi.max(1)
    layers = detector.layers[detector.layers["volume_id"].isin(volumes)].reset_index(drop=True)
    L = len(layers)
    out = {k: np.zeros(L, np.float64) for k in ("r", "z", "lo", "hi", "q0", "q1")}
    out["type"] = np.zeros(L, np.int64)
    out["nphi"] = np.zeros(L, np.int64)
    out["nq"] = np.zeros(L, np.int64)
    out["cell0"] = np.zeros(L, np.int64)
    cell_lists: list[list[int]] = []
    lay_idx = mods["layer_index"].to_numpy()
    for li, lay in layers.iterrows():
        rows = np.flatnonzero(lay_idx == lay.layer_index)
        barrel = lay.region == "barrel"
        out["type"][li] = 0 if barrel else 1
        if barrel:
            out["r"][li] = lay.r
            out["lo"][li], out["hi"][li] = lay.z_min - _BARREL_MARGIN_Z, lay.z_max + _BARREL_MARGIN_Z
            qlo = ez[rows].min(1) - _BARREL_MARGIN_Z
            qhi = ez[rows].max(1) + _BARREL_MARGIN_Z
            mphi = _BARREL_MARGIN_RPHI / er[rows].min(1)
            nq_unique = len(np.unique(np.round(mods["cz"].to_numpy()[rows])))
        else:
            out["z"][li] = lay.z
            out["lo"][li], out["hi"][li] = max(lay.r_min - _ENDCAP_MARGIN_R, 0.0), lay.r_max + _ENDCAP_MARGIN_R
            qlo = er[rows].min(1) - _ENDCAP_MARGIN_R
            qhi = er[rows].max(1) + _ENDCAP_MARGIN_R
            mphi = _ENDCAP_MARGIN_RPHI / np.maximum(er[rows].min(1), 20.0)
            nq_unique = len(np.unique(np.round(np.hypot(mods["cx"].to_numpy()[rows], mods["cy"].to_numpy()[rows]))))
        nphi_unique = len(np.unique(np.round(cphi[rows], 2)))
        nphi = int(np.clip(2 * nphi_unique, 16, 720))
        nq = int(np.clip(2 * nq_unique, 2, 64))
        q0, q1 = float(qlo.min()), float(qhi.max())
        out["q0"][li], out["q1"][li] = q0, q1
        out["nphi"][li], out["nq"][li] = nphi, nq
        out["cell0"][li] = len(cell_lists)
        cells = [[] for _ in range(nphi * nq)]
        dq = (q1 - q0) / nq
        for j, m in enumerate(rows):
            a0 = int(np.floor((phi_lo[m] - mphi[j] + np.pi) / (2 * np.pi) * nphi))
            a1 = int(np.floor((phi_hi[m] + mphi[j] + np.pi) / (2 * np.pi) * nphi))
            b0 = int(np.clip(np.floor((qlo[j] - q0) / dq), 0, nq - 1))
            b1 = int(np.clip(np.floor((qhi[j] - q0) / dq), 0, nq - 1))
            for a in range(a0, a1 + 1):
                aa = a % nphi
                for b in range(b0, b1 + 1):
                    cells[aa * nq + b].append(int(m))
        cell_lists.extend(cells)
    sizes = np.array([len(c) for c in cell_lists], np.int64)
    cell_ptr = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    cell_mod = np.fromiter((m for c in cell_lists for m in c), np.int32, count=int(sizes.sum()))
    rot = detector.rotations().reshape(-1, 9)
    return _Geometry(
        volumes=volumes, layers=out, cell_ptr=cell_ptr, cell_mod=cell_mod,
        mod_c=mods[["cx", "cy", "cz"]].to_numpy(np.float64), mod_rot=np.ascontiguousarray(rot),
        mod_hu0=mods["module_minhu"].to_numpy(np.float64), mod_hu1=mods["module_maxhu"].to_numpy(np.float64),
        mod_hv=mods["module_hv"].to_numpy(np.float64), mod_t=mods["module_t"].to_numpy(np.float64), modules=mods,
    )


# ---------------------------------------------------------------------------- propagation
def propagate_particles(particles: pd.DataFrame, config: SimulationConfig, rng: np.random.Generator,
                        detector: Detector | None = None, capacity: int | None = None) -> pd.DataFrame:
    """Propagate particles through the detector; one row per true module crossing that left a hit.

    Columns: particle_row (row in ``particles``), module_row (row in ``detector.modules``),
    tx, ty, tz (true position, mm), tpx, tpy, tpz (true momentum, GeV), u, v (true local
    position, mm), k (crossing number along the particle's path).
    """
    detector = detector or Detector.load()
    volumes = tuple(PIXEL_VOLUMES) if config.pixel_only else tuple(sorted(detector.modules["volume_id"].unique()))
    geo = _geometry(detector, volumes)
    n = len(particles)
    kmax = int(config.max_crossings)
    rnd_n = rng.standard_normal((n, kmax, 2))
    rnd_u = rng.random((n, kmax, 2))
    col = {c: particles[c].to_numpy(np.float64) for c in ("vx", "vy", "vz", "px", "py", "pz")}
    qv = particles["q"].to_numpy(np.float64).copy()
    # TrackML left most particles produced below ~150 MeV unsimulated (prompt ones almost all)
    cal = load_calibration()
    prompt = np.hypot(col["vx"], col["vy"]) < 1.0
    keep_low = np.where(prompt, float(cal["lowpt_kept_prompt"]), float(cal["lowpt_kept_displaced"]))
    low = np.hypot(col["px"], col["py"]) < float(config.min_pt)
    u_low = rng.random(n)
    qv[low & (u_low >= keep_low)] = 0.0
    tmat = geo.mod_t * float(config.material_scale)
    endcap = (geo.modules["region"] == "endcap").to_numpy()
    pint = float(config.interaction_per_mm) * np.where(endcap, float(config.endcap_interaction_scale), 1.0)
    xx0 = tmat / SI_X0_MM
    max_turn = 2.0 * np.pi * float(config.max_turns)
    # output buffer: 24 crossings per particle is plenty for max_turns = 0.5; the kernel reports an
    # overflow (loopers) and is re-run with a larger buffer (same random numbers, same result)
    capacity = int(capacity) if capacity else max(1024, 24 * n)
    while True:
        nh, op, om, ox, omom, ouv, ok = propagate(
            col["vx"], col["vy"], col["vz"], col["px"], col["py"], col["pz"], qv, rnd_n, rnd_u,
            geo.layers["type"], geo.layers["r"], geo.layers["z"], geo.layers["lo"], geo.layers["hi"],
            geo.layers["nphi"], geo.layers["nq"], geo.layers["q0"], geo.layers["q1"], geo.layers["cell0"],
            geo.cell_ptr, geo.cell_mod, geo.mod_c, geo.mod_rot, geo.mod_hu0, geo.mod_hu1, geo.mod_hv, xx0, tmat,
            float(config.b_field), max_turn, float(config.inefficiency), pint,
            float(config.max_path_over_thickness), PION_MASS, capacity)
        if nh >= 0:
            break
        capacity *= 2
    return pd.DataFrame({
        "particle_row": op[:nh], "module_row": om[:nh],
        "tx": ox[:nh, 0], "ty": ox[:nh, 1], "tz": ox[:nh, 2],
        "tpx": omom[:nh, 0], "tpy": omom[:nh, 1], "tpz": omom[:nh, 2],
        "u": ouv[:nh, 0], "v": ouv[:nh, 1], "k": ok[:nh],
    })


def _uv_on_module(u, v, hu0, hu1, hv):
    """Clip local coordinates onto the module trapezoid."""
    v = np.clip(v, -hv, hv)
    hu = hu0 + (hu1 - hu0) * (v + hv) / (2 * hv)
    return np.clip(u, -hu, hu), v


def _noise_hits(n_signal_per_volume: dict[int, int], config: SimulationConfig, rng: np.random.Generator,
                detector: Detector, volumes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise hits: (module rows, u, v). Per volume: Poisson(c * rate_v * signal hits in v), with
    rate_v the real noise-per-signal-hit ratio and c scaling the real noise fraction to the asked one."""
    cal = load_calibration()
    f = float(config.noise_fraction)
    if f <= 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    f_real = float(cal["noise_fraction_real"])
    c = (f / (1 - f)) / (f_real / (1 - f_real))
    mods = detector.modules
    vol = mods["volume_id"].to_numpy()
    area = 2 * mods["module_hv"].to_numpy() * (mods["module_minhu"].to_numpy() + mods["module_maxhu"].to_numpy())
    rows_all, u_all, v_all = [], [], []
    rate = dict(zip(cal["noise_volumes"].tolist(), cal["noise_per_signal"].tolist()))
    # a full-detector event has ~(real fraction) noise: the per-volume rates reproduce it,
    # the normalisation below makes the total exactly f of all hits on average
    total_signal = sum(n_signal_per_volume.values())
    expected = {v: rate.get(v, 0.0) * n_signal_per_volume.get(v, 0) for v in volumes}
    norm = c
    if not config.pixel_only and total_signal > 0 and sum(expected.values()) > 0:
        norm = (f / (1 - f)) * total_signal / sum(expected.values())
    for v in volumes:
        lam = norm * expected[v]
        k = int(rng.poisson(lam)) if lam > 0 else 0
        if k == 0:
            continue
        rows = np.flatnonzero(vol == v)
        w = area[rows] / area[rows].sum()
        pick = rows[rng.choice(len(rows), size=k, p=w)]
        hv = mods["module_hv"].to_numpy()[pick]
        hu0 = mods["module_minhu"].to_numpy()[pick]
        hu1 = mods["module_maxhu"].to_numpy()[pick]
        # uniform on the trapezoid: width(v) is linear in v -> invert the quadratic CDF
        t = rng.random(k)
        a = hu0
        b = hu1
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(np.abs(b - a) < 1e-9, t, (np.sqrt(a * a + t * (b * b - a * a)) - a) / (b - a))
        vv = (2 * y - 1) * hv
        hu = a + (b - a) * y
        uu = (2 * rng.random(k) - 1) * hu
        rows_all.append(pick)
        u_all.append(uu)
        v_all.append(vv)
    if not rows_all:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    return np.concatenate(rows_all), np.concatenate(u_all), np.concatenate(v_all)


def simulate_from_particles(particles: pd.DataFrame, rng: np.random.Generator | int | None = None,
                            config: SimulationConfig | None = None, detector: Detector | None = None,
                            event_id: int = 0) -> Event:
    """Simulate the detector response to given particles (a TrackML particles table).

    Particle ids and kinematics are kept; ``nhits`` is replaced by the simulated count (other
    columns, e.g. particle_type, are kept). ``config.tracks`` and ``config.pixel_only`` apply.
    """
    config = config or SimulationConfig()
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    detector = detector or Detector.load()
    missing = [c for c in ("particle_id", "vx", "vy", "vz", "px", "py", "pz", "q") if c not in particles.columns]
    if missing:
        raise DataError(f"particles: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    particles = particles.reset_index(drop=True).copy()
    if particles["particle_id"].dtype.kind != "i":
        raise DataError("particles: column particle_id must be integer (int64); float ids collide")
    dup = particles["particle_id"].duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise DataError(f"particles: column particle_id, row {row}: duplicate id {particles['particle_id'].iloc[row]}")
    cross = propagate_particles(particles, config, rng, detector)
    mods = detector.modules
    mrow = cross["module_row"].to_numpy()
    u = cross["u"].to_numpy()
    v = cross["v"].to_numpy()
    hv = mods["module_hv"].to_numpy()[mrow]
    hu0 = mods["module_minhu"].to_numpy()[mrow]
    hu1 = mods["module_maxhu"].to_numpy()[mrow]
    if config.smear:
        su = mods["pitch_u"].to_numpy()[mrow] / math.sqrt(12.0)
        sv = mods["pitch_v"].to_numpy()[mrow] / math.sqrt(12.0)
        noise = rng.standard_normal((len(mrow), 2))
        u, v = _uv_on_module(u + su * noise[:, 0], v + sv * noise[:, 1], hu0, hu1, hv)
    vol = mods["volume_id"].to_numpy()
    volumes = tuple(PIXEL_VOLUMES) if config.pixel_only else tuple(sorted(np.unique(vol).tolist()))
    sig_per_vol = dict(zip(*np.unique(vol[mrow], return_counts=True)))
    sig_per_vol = {int(k): int(c) for k, c in sig_per_vol.items()}
    nrow, nu, nv = _noise_hits(sig_per_vol, config, rng, detector, volumes)

    all_rows = np.r_[mrow, nrow].astype(np.int64)
    all_u = np.r_[u, nu]
    all_v = np.r_[v, nv]
    xyz = detector.to_global(all_rows, all_u, all_v)
    n_sig = len(mrow)
    pid_all = np.r_[particles["particle_id"].to_numpy(np.int64)[cross["particle_row"].to_numpy()],
                    np.zeros(len(nrow), np.int64)]
    true_xyz = np.r_[cross[["tx", "ty", "tz"]].to_numpy(), xyz[n_sig:]]
    true_p = np.r_[cross[["tpx", "tpy", "tpz"]].to_numpy(), np.zeros((len(nrow), 3))]
    event = _assemble(event_id, all_rows, xyz, pid_all, true_xyz, true_p, particles, detector,
                      config.weights_phase)
    if config.tracks is not None:
        event = select_tracks(event, config.tracks, rng, config.weights_phase)
    return event


def _assemble(event_id, rows, xyz, pid, true_xyz, true_p, particles, detector, weights_phase=1) -> Event:
    mods = detector.modules
    vol = mods["volume_id"].to_numpy()[rows]
    lay = mods["layer_id"].to_numpy()[rows]
    mid = mods["module_id"].to_numpy()[rows]
    x32 = xyz.astype(np.float32)
    # hit ids follow the detector (volume, layer, module, then position), never the particles
    order = np.lexsort((x32[:, 2], x32[:, 1], x32[:, 0], mid, lay, vol))
    n = len(rows)
    hit_id = np.arange(1, n + 1, dtype=np.int32)
    hits = pd.DataFrame({
        "hit_id": hit_id, "x": x32[order, 0], "y": x32[order, 1], "z": x32[order, 2],
        "volume_id": vol[order].astype(np.int32), "layer_id": lay[order].astype(np.int32),
        "module_id": mid[order].astype(np.int32),
    })
    truth = pd.DataFrame({
        "hit_id": hit_id, "particle_id": pid[order],
        "tx": true_xyz[order, 0].astype(np.float32), "ty": true_xyz[order, 1].astype(np.float32),
        "tz": true_xyz[order, 2].astype(np.float32),
        "tpx": true_p[order, 0].astype(np.float32), "tpy": true_p[order, 1].astype(np.float32),
        "tpz": true_p[order, 2].astype(np.float32), "weight": np.zeros(n, np.float32),
    })
    particles = _with_nhits(particles, truth)
    truth["weight"] = trackml_weights(truth, particles, weights_phase).astype(np.float32)
    return Event(int(event_id), hits=hits, truth=truth, particles=particles)


def _with_nhits(particles: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    counts = truth.loc[truth["particle_id"] != 0, "particle_id"].value_counts()
    out = particles.copy()
    out["nhits"] = out["particle_id"].map(counts).fillna(0).astype(np.int32).to_numpy()
    out = coerce_table(out, "particles", "simulated particles")
    return out.sort_values("particle_id", kind="stable").reset_index(drop=True)


def select_tracks(event: Event, tracks: tuple[int, int] | str, rng: np.random.Generator,
                  weights_phase: int = 1) -> Event:
    """Keep k ~ U{min..max} random particles with >= 1 hit, all their hits, and noise hits in
    the event's proportion (noise / signal hits unchanged); weights recomputed, hit ids renumbered."""
    lo, hi = parse_tracks(tracks)
    truth = event.truth
    pid = truth["particle_id"].to_numpy(np.int64)
    with_hits = np.unique(pid[pid != 0])
    k = int(rng.integers(lo, hi + 1))
    k = min(k, len(with_hits))
    chosen = np.sort(rng.choice(with_hits, size=k, replace=False)) if k else np.zeros(0, np.int64)
    keep_sig = np.isin(pid, chosen)
    noise_idx = np.flatnonzero(pid == 0)
    n_sig_all = int((pid != 0).sum())
    n_noise_keep = int(round(len(noise_idx) * keep_sig.sum() / n_sig_all)) if n_sig_all else 0
    keep = keep_sig.copy()
    if n_noise_keep:
        keep[rng.choice(noise_idx, size=n_noise_keep, replace=False)] = True
    hits = event.hits.loc[keep].reset_index(drop=True)
    truth = truth.loc[keep].reset_index(drop=True)
    new_id = np.arange(1, len(hits) + 1, dtype=np.int32)
    hits["hit_id"] = new_id
    truth["hit_id"] = new_id
    particles = event.particles[event.particles["particle_id"].isin(chosen)].reset_index(drop=True)
    particles = _with_nhits(particles, truth)
    truth["weight"] = trackml_weights(truth, particles, weights_phase).astype(np.float32)
    return replace(event, hits=hits, truth=truth, particles=particles)


def simulate_event(config: SimulationConfig | None = None, rng: np.random.Generator | int | None = None,
                   event_id: int = 0, detector: Detector | None = None) -> Event:
    """One simulated event: generated particles propagated through the detector."""
    config = config or SimulationConfig()
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    particles = generate_particles(config, rng)
    return simulate_from_particles(particles, rng, config, detector, event_id)


def event_rngs(seed: int, n_events: int, start: int = 0) -> list[np.random.Generator]:
    """Independent generators for events start..start+n-1 of a dataset with this seed: event i's
    stream depends only on (seed, i), not on how many events are made."""
    ss = np.random.SeedSequence(int(seed))
    children = ss.spawn(start + n_events)[start:]
    return [np.random.Generator(np.random.PCG64(c)) for c in children]


def simulate_dataset(out_dir: str | os.PathLike, n_events: int, config: SimulationConfig | None = None,
                     seed: int = 0, force: bool = False, first_event_id: int = 1000,
                     particles_from: str | os.PathLike | None = None, progress: bool = True,
                     compress: bool = True, detector: Detector | None = None,
                     cuts: EventCuts | str | None = None) -> list[Path]:
    """Simulate ``n_events`` events into ``out_dir`` (TrackML layout); returns their prefixes.

    Event i (0-based) gets id ``first_event_id + i`` and the random stream (seed, i).
    ``particles_from``: re-simulate the particles of this particles file for every event
    (ids kept). ``cuts``: reduce every event after simulation with
    :func:`trackstudy.data.cuts.cut_event` (an EventCuts or a name such as ``"barrel20"``), drawing
    from the event's own stream. Existing event files are refused without ``force`` (checked
    before any work).
    """
    from tqdm.auto import tqdm

    config = config or SimulationConfig()
    cuts = resolve_cuts(cuts) if cuts is not None else None
    if int(n_events) < 1:
        raise ConfigError(f"n_events={n_events}: must be >= 1")
    if int(first_event_id) < 0:
        raise ConfigError(f"first_event_id={first_event_id}: must be >= 0")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder")
    ids = [int(first_event_id) + i for i in range(int(n_events))]
    if not force and out_dir.is_dir():
        for eid in ids:
            for part in ("hits", "truth", "particles", "cells"):
                for suffix in (".csv", ".csv.gz"):
                    f = out_dir / f"{event_prefix(eid)}-{part}{suffix}"
                    if f.exists():
                        raise OutputExistsError(f"{f}: exists (use --force / force=True to overwrite)")
    given = None
    if particles_from is not None:
        given = read_particles(particles_from)
    detector = detector or Detector.load()
    rngs = event_rngs(seed, int(n_events))
    out = []
    for eid, rng in tqdm(list(zip(ids, rngs)), desc="simulate", unit="event", disable=not progress):
        if given is not None:
            ev = simulate_from_particles(given, rng, config, detector, eid)
        else:
            ev = simulate_event(config, rng, eid, detector)
        if cuts is not None:
            ev = cut_event(ev, cuts, rng=rng)
        out.append(write_event(ev, out_dir, force=force, compress=compress))
    return out


def read_particles(path: str | os.PathLike) -> pd.DataFrame:
    """Read a TrackML particles file (.csv or .csv.gz) for :func:`simulate_from_particles`."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such particles file")
    return read_table(p, "particles")


def config_dict(config: SimulationConfig) -> dict:
    """The config as a plain dict (for logs and reports)."""
    return asdict(config)
