"""Speed and calibration check of the built-in TrackML simulator.

Simulates mu = 200 full-detector events, prints events/s (generation alone, and with the
gzipped TrackML files written) and the event statistics next to the real ones (the means over
real events in data/real/README.trackml.md, and the real event 1001 hits per pixel layer). With
``--particles-from`` it also re-simulates the real particles files and compares the
per-particle hit counts with their real ``nhits``. Pin it to one core for the speed number:

    taskset -c 0 .venv/bin/python scripts/bench_simulate.py --events 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from trackstudy.config import PIXEL_VOLUMES, REAL_DATA_DIR
from trackstudy.data.detector import Detector
from trackstudy.data.io import Event, read_table, write_event
from trackstudy.data.simulate import SimulationConfig, event_rngs, simulate_event, simulate_from_particles
from trackstudy.data.stats import event_summary, hits_per_layer

#: Means over real events (data/real/README.trackml.md): key of trackstudy.data.stats.event_summary -> (label, value).
REAL = {"n_particles": ("particles", 10792), "n_pt_above": ("particles pT>0.9", 1465), "n_hits": ("hits", 102001),
        "n_pixel_hits": ("pixel hits", 52308), "noise_fraction": ("noise fraction", 0.16)}
REAL_1001_PIXEL_BARREL = {2: 6737, 4: 5673, 6: 4987, 8: 4544}
REAL_1001_PARTICLES = 8915


def layer_counts(hits: pd.DataFrame) -> pd.Series:
    """Hits per (volume_id, layer_id)."""
    return hits_per_layer(Event(0, hits)).set_index(["volume_id", "layer_id"])["n_hits"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5, help="mu = 200 events to time (default 5)")
    ap.add_argument("--mu", type=float, default=200.0, help="pile-up (default 200)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-particles-from", action="store_true", help="skip the re-simulation of real particles")
    args = ap.parse_args(argv)

    det = Detector.load()
    cfg = SimulationConfig(pileup=args.mu)
    simulate_event(SimulationConfig(pileup=1), 0, 0, det)  # compile / load the numba kernel
    rngs = event_rngs(args.seed, args.events)
    t0 = time.perf_counter()
    events = [simulate_event(cfg, rng, 1000 + i, det) for i, rng in enumerate(rngs)]
    t_gen = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for ev in events:
            write_event(ev, tmp)
        t_write = time.perf_counter() - t0
    print(f"mu={args.mu:g} full detector, {args.events} events: {args.events / t_gen:.2f} events/s simulated "
          f"({t_gen / args.events:.2f} s/event); with gzipped files written: "
          f"{args.events / (t_gen + t_write):.2f} events/s ({(t_gen + t_write) / args.events:.2f} s/event)")

    stats = pd.DataFrame([event_summary(ev) for ev in events])
    print("\nstatistic            simulated (mean +- sd)     real      sim/real")
    for key, (label, real) in REAL.items():
        m, s = stats[key].mean(), stats[key].std(ddof=0)
        fmt = "{:.3f}" if key == "noise_fraction" else "{:.0f}"
        print(f"{label:<20} {fmt.format(m):>10} +- {fmt.format(s):<10} {fmt.format(real):>10}   {m / real:6.3f}")
    lay = pd.concat([layer_counts(ev.hits) for ev in events], axis=1).fillna(0).mean(axis=1)
    # event 1001 has 8,915 particles (the README mean is 10,792): also compare per particle
    per_particle = lay / stats["n_particles"].mean()
    print("\npixel barrel layer    simulated   real (event 1001)   sim/real   per particle sim/real")
    for lid, real in REAL_1001_PIXEL_BARREL.items():
        n = lay.get((8, lid), 0)
        print(f"volume 8 layer {lid:<6} {n:>10.0f}   {real:>10}          {n / real:6.3f}     "
              f"{per_particle.get((8, lid), 0) / (real / REAL_1001_PARTICLES):6.3f}")
    real_hits_file = REAL_DATA_DIR / "full" / "event000001001-hits.csv.gz"
    real_hits = read_table(real_hits_file, "hits") if real_hits_file.is_file() else None
    if real_hits is not None:
        real_vol = real_hits.groupby("volume_id").size()
        sim_vol = pd.concat([ev.hits.groupby("volume_id").size() for ev in events], axis=1).fillna(0).mean(axis=1)
        print("\nhits per volume: simulated mean / real event 1001")
        print(" ".join(f"{v}:{sim_vol.get(v, 0) / real_vol[v]:.2f}" for v in real_vol.index))

    if args.no_particles_from:
        return 0
    print("\n--particles-from: real particles re-simulated (mu and spectra not used), vs their real nhits")
    for f in sorted((REAL_DATA_DIR / "full").glob("event*-particles.csv*")):
        real_p = read_table(f, "particles")
        t0 = time.perf_counter()
        ev = simulate_from_particles(real_p, args.seed, SimulationConfig(), det)
        dt = time.perf_counter() - t0
        sim = ev.particles.set_index("particle_id")["nhits"]
        real = real_p.set_index("particle_id")["nhits"].loc[sim.index]
        d = (sim - real).to_numpy()
        hist = pd.Series(np.clip(d, -5, 5)).value_counts().sort_index()
        print(f"{f.name}: {len(real_p)} particles, {dt:.2f} s; signal hits sim {int(sim.sum())} vs real "
              f"{int(real.sum())} ({sim.sum() / real.sum():.3f}); per particle sim-real: mean {d.mean():+.2f}, "
              f"sd {d.std():.2f}, exactly equal {np.mean(d == 0):.3f}, |diff|<=1 {np.mean(np.abs(d) <= 1):.3f}, "
              f"|diff|<=2 {np.mean(np.abs(d) <= 2):.3f}")
        print("   diff histogram (clipped to +-5): " + " ".join(f"{int(k):+d}:{v}" for k, v in hist.items()))
        if real_hits is not None and "1001" in f.name:
            sim_l = layer_counts(ev.hits)
            real_l = layer_counts(real_hits)
            r = (sim_l / real_l).dropna()
            pix = r.loc[list(PIXEL_VOLUMES)]
            print(f"   hits per layer vs real event 1001 hits (real noise included, sim noise 15%): pixel layers "
                  f"sim/real {pix.min():.2f}..{pix.max():.2f}, all layers {r.min():.2f}..{r.max():.2f}; "
                  f"pixel barrel " + " ".join(f"{l}:{r.get((8, l), np.nan):.2f}" for l in (2, 4, 6, 8)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
