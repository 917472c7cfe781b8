"""Build the simulator's calibration tables from the real TrackML files in data/real.

Reads the full particle lists of the real events in ``data/real/full`` and the reduced real
event in ``data/real/mini`` (for where noise hits sit; the folder is
``trackstudy.config.REAL_DATA_DIR``, set by ``TRACKSTUDY_TRACKML``), and writes
``trackstudy/data/simulator_calibration.npz`` (a few tens of kB), so the simulator reads no
real event files at run time. Run from anywhere:

    .venv/bin/python scripts/calibrate_simulator.py [--force]

What is stored (particles with vertex radius < 1 mm are "prompt", the rest "displaced":
decays and secondaries produced in the material; vertex_id 1 of a real event is its
hard-scatter vertex, the other vertex ids are pile-up interactions):
- pile-up prompt multiplicity per interaction: the observed counts per vertex id, and the
  probability that an interaction leaves any particle (observed vertices / 200), scaled so
  that a mu = 200 event with its hard scatter has the README's mean particle count (10,792);
- prompt eta quantiles and, per |eta| bin, log(pT) quantiles; P(q = +1);
- beam spot: vertex z and transverse spreads of the prompt vertices;
- hard scatter: observed multiplicities, eta and log(pT) quantiles of vertex-1 particles;
- displaced particles: count per prompt particle, and the real displaced particles themselves
  as rows (vertex r, vertex z, log pT, phi_p - phi_v, eta, q), which the simulator resamples
  jointly (rotated in phi, mirrored in z, lightly smeared). Their direction is strongly tied to
  their momentum and vertex position: a 2 GeV secondary leaves its vertex nearly along the
  line from the beam (median |phi_p - phi_v| 0.06 rad above pT = 0.9 GeV), a 100 MeV one in
  any direction. Tables of each quantity per vertex cell, sampled independently (the first
  version of this script), lose that and give high-pT secondaries ten times the real impact
  parameter, which wrecks every locality measurement;
- the share of particles produced below pT = 150 MeV that still have hits (TrackML simulated
  almost none of the prompt ones), relative to the share above for displaced particles;
- noise: noise hits per signal hit in each volume of the real reduced event (which keeps the
  same share of particles and of noise hits, so these ratios are those of the full event).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from trackstudy.config import PACKAGE_DIR, REAL_DATA_DIR
from trackstudy.data.io import atomic_write_bytes, find_events, read_event, read_table
from trackstudy.kinematics import eta_from_momentum, wrap_phi

OUT = PACKAGE_DIR / "data" / "simulator_calibration.npz"
MU_REAL = 200.0
#: Mean particles per real event, measured on 100 real particles files (data/real/README.trackml.md).
TARGET_PARTICLES_MU200 = 10792.0
N_Q = 201  # quantile table size
#: columns of the displaced-particle rows (mm, mm, log GeV, rad, -, charge)
DISP_COLUMNS = ("r", "z", "logpt", "dphi", "eta", "q")
LOW_PT = 0.15  # GeV
ABS_ETA_EDGES = np.linspace(0.0, 4.0, 9)


def quantiles(x: np.ndarray, n: int = N_Q) -> np.ndarray:
    return np.quantile(np.asarray(x, np.float64), np.linspace(0.0, 1.0, n)).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="overwrite the existing calibration file")
    ap.add_argument("--out", default=str(OUT), help="output .npz (default: inside the package)")
    args = ap.parse_args(argv)

    full = REAL_DATA_DIR / "full"
    files = sorted(full.glob("event*-particles.csv*"))
    if not files:
        print(f"no particles files in {full}", file=sys.stderr)
        return 2
    frames = []
    for i, f in enumerate(files):
        df = read_table(f, "particles")
        df["event"] = i
        frames.append(df)
    p = pd.concat(frames, ignore_index=True)
    n_events = len(files)
    pid = p["particle_id"].to_numpy(np.int64)
    vertex = (pid >> 52) & 0xFFF
    px, py, pz = (p[c].to_numpy(np.float64) for c in ("px", "py", "pz"))
    vx, vy, vz = (p[c].to_numpy(np.float64) for c in ("vx", "vy", "vz"))
    pt = np.hypot(px, py)
    eta = eta_from_momentum(px, py, pz)
    rv = np.hypot(vx, vy)
    q = p["q"].to_numpy()
    prompt = rv < 1.0
    hs = prompt & (vertex == 1)
    pu = prompt & (vertex != 1)
    disp = ~prompt

    # pile-up multiplicity per interaction (counts per vertex id, vertex 1 excluded)
    counts = p[pu].groupby(["event", vertex[pu]]).size().to_numpy()
    hs_counts = p[hs].groupby("event").size().to_numpy()
    n_vertices_per_event = len(counts) / n_events
    p_nonempty = n_vertices_per_event / MU_REAL
    # scale to the README mean: total(mu=200) = 200 * p * mean(counts) * (1 + f_disp) + hs * (1 + f_disp)
    f_disp = disp.sum() / prompt.sum()
    predicted = (MU_REAL * p_nonempty * counts.mean() + hs_counts.mean()) * (1.0 + f_disp)
    scale = TARGET_PARTICLES_MU200 / predicted
    p_nonempty_scaled = min(1.0, p_nonempty * scale)

    abs_eta = np.abs(eta)
    pt_q = np.stack([quantiles(np.log(pt[pu & (abs_eta >= lo) & (abs_eta < hi)]))
                     for lo, hi in zip(ABS_ETA_EDGES[:-1], ABS_ETA_EDGES[1:])])

    # beam spot from prompt pile-up particles
    vz_sigma = float(np.std(vz[pu]))
    vxy_sigma = float(np.sqrt(0.5 * (np.var(vx[pu]) + np.var(vy[pu]))))

    # displaced particles
    phi_v = np.arctan2(vy[disp], vx[disp])
    d_phi = wrap_phi(np.arctan2(py[disp], px[disp]) - phi_v)
    disp_rows = np.column_stack([rv[disp], vz[disp], np.log(pt[disp]), d_phi, eta[disp], q[disp]])

    # noise hits per volume in the real reduced event (truth particle_id 0)
    mini = REAL_DATA_DIR / "mini"
    (eid, prefix), = find_events(mini)[:1]
    ev = read_event(prefix, eid, parts=("hits", "truth"))
    is_noise = (ev.truth.set_index("hit_id").loc[ev.hits["hit_id"], "particle_id"] == 0).to_numpy()
    vols = ev.hits["volume_id"].to_numpy()
    noise_vols = np.unique(vols)
    n_noise = np.array([(is_noise & (vols == v)).sum() for v in noise_vols], np.float64)
    n_signal = np.array([(~is_noise & (vols == v)).sum() for v in noise_vols], np.float64)

    # TrackML simulated few particles produced below pT = 150 MeV: the fraction that has hits
    nh = p["nhits"].to_numpy()
    low = pt < LOW_PT
    lowpt_kept_prompt = float((nh[low & prompt] > 0).mean())
    lowpt_kept_displaced = float((nh[low & disp] > 0).mean() / max((nh[~low & disp] > 0).mean(), 1e-9))

    tables = dict(
        low_pt=np.float64(LOW_PT),
        lowpt_kept_prompt=np.float64(lowpt_kept_prompt),
        lowpt_kept_displaced=np.float64(min(lowpt_kept_displaced, 1.0)),
        n_source_events=np.int64(n_events),
        mu_real=np.float64(MU_REAL),
        target_particles_mu200=np.float64(TARGET_PARTICLES_MU200),
        pu_counts=counts.astype(np.int32),
        pu_p_nonempty=np.float64(p_nonempty_scaled),
        hs_counts=hs_counts.astype(np.int32),
        prompt_eta_q=quantiles(eta[pu], 1001),
        abs_eta_edges=ABS_ETA_EDGES.astype(np.float32),
        prompt_logpt_q=pt_q,
        prompt_p_plus=np.float64((q[pu] > 0).mean()),
        vz_sigma=np.float64(vz_sigma),
        vxy_sigma=np.float64(vxy_sigma),
        hs_eta_q=quantiles(eta[hs], 101),
        hs_logpt_q=quantiles(np.log(pt[hs]), 101),
        hs_p_plus=np.float64((q[hs] > 0).mean()),
        disp_per_prompt=np.float64(f_disp),
        disp_rows=disp_rows.astype(np.float32),
        disp_columns=np.array(DISP_COLUMNS),
        noise_volumes=noise_vols.astype(np.int32),
        noise_per_signal=(n_noise / np.maximum(n_signal, 1.0)),
        noise_fraction_real=np.float64(is_noise.mean()),
    )
    buf = io.BytesIO()
    np.savez_compressed(buf, **tables)
    atomic_write_bytes(args.out, buf.getvalue(), force=args.force)
    Path(args.out).chmod(0o644)  # package data: readable by all (mkstemp creates 0600)
    print(f"wrote {args.out} ({len(buf.getvalue()) / 1024:.1f} kB) from {n_events} events: "
          f"{prompt.sum()} prompt ({hs.sum()} hard-scatter), {disp.sum()} displaced particles; "
          f"pile-up: {n_vertices_per_event:.0f} vertices/event, mean {counts.mean():.1f} prompt/vertex, "
          f"P(non-empty) {p_nonempty:.3f} -> {p_nonempty_scaled:.3f} (scale {scale:.3f}); "
          f"vz sigma {vz_sigma:.1f} mm, vxy sigma {vxy_sigma * 1000:.1f} um; displaced/prompt {f_disp:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
