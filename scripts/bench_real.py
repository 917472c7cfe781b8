"""Real vs simulated: a trained model (and the DBSCAN-helix baseline) on a real TrackML set and on
simulated counterparts cut the same way.

    python scripts/bench_real.py --run runs/contrastive_10-50 --set barrel20
    python scripts/bench_real.py --run runs/contrastive_10-50 --set all --sim-events 3 --json real_vs_sim.json

The comparison itself lives in :mod:`trackstudy.study.realsim` (notebook 07 uses it too).
For each set (data/real/pix1gev, barrel20, mini; see data/real/README.md) the real event is read and
N events are simulated at mu = --pileup with --seed, each cut like the set
(:data:`trackstudy.data.cuts.LIKE`). Both sides get the challenge's weights recomputed on their hits
(barrel20's own weights follow hepqpr-qallse's rule instead), so the TrackML score means the same on
both. The model runs through :func:`trackstudy.inference.predict_events` with the run's locality
method; a pixel-only model is evaluated on the pixel hits (barrel20: volume 8, mini: 7, 8, 9).
Printed per set and method: TrackML score, DM efficiency (pT > 0.9 GeV; on pix1gev the momenta are
estimates from the hits), fake and duplicate rates, hits and reconstructable particles per event,
real, simulated (mean and sd over the N events) and the gap (simulated - real).
"""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from trackstudy.cli.locality import add_view_frame_option
from trackstudy.data.cuts import LIKE, cut_event
from trackstudy.data.datasets import real_trackml_dir
from trackstudy.data.io import atomic_write_bytes, read_event
from trackstudy.data.simulate import SimulationConfig
from trackstudy.errors import ConfigError, TrackstudyError
from trackstudy.inference import check_locality
from trackstudy.locality.views import parse_views
from trackstudy.study.realsim import SETS, compare, simulated_events, table
from trackstudy.training.checkpoint import load_run


def simulator_report(config: SimulationConfig | None = None, seeds=(1, 2)) -> dict:
    """Where the simulator's response to real particles differs from the real hits (no model needed).

    hit_counts: per-particle ``nhits`` of the full particle lists of events 1000 and 1001 re-simulated
    (simulated - real, all particles and pT >= 1 GeV) and, as the floor set by the simulator's own
    randomness, two seeds against each other. barrel20: the real particles of the set re-simulated and
    cut like it without sampling: per-particle barrel hits, and per layer hits per particle and noise
    per signal hit (simulated counterpart at mu = 200). mini: double-hit rate per volume (the set keeps
    every hit of its particles) against its particles re-simulated.
    """
    from trackstudy.data.compare import hit_count_difference, layer_summary
    from trackstudy.data.simulate import read_particles, simulate_from_particles

    config = config or SimulationConfig()
    out: dict = {"config": {k: v for k, v in config.__dict__.items() if k != "tracks"}, "hit_counts": {}}
    full = real_trackml_dir("full")
    for eid in (1000, 1001):
        real = read_particles(full / f"event00000{eid}-particles.csv.gz")
        sims = [simulate_from_particles(real, s, config).particles for s in seeds]
        out["hit_counts"][eid] = {
            "sim_vs_real": hit_count_difference(sims[0], real, min_hits=1),
            "sim_vs_real_pt1": hit_count_difference(sims[0], real, pt_min=1.0, min_hits=1),
            "sim_vs_sim": hit_count_difference(sims[0], sims[1], min_hits=1),
            "sim_vs_sim_pt1": hit_count_difference(sims[0], sims[1], pt_min=1.0, min_hits=1),
            "total_ratio": float(sims[0]["nhits"].sum() / real["nhits"].sum()),
        }
    b20 = read_event(real_trackml_dir("barrel20"))
    plist = read_particles(full / "event000001000-particles.csv.gz")
    plist = plist[plist["particle_id"].isin(b20.particles["particle_id"])]
    sim = cut_event(simulate_from_particles(plist, seeds[0], config), volumes=LIKE["barrel20"].volumes,
                    one_hit_per_layer="first", noise=False)  # what barrel20 keeps of each particle
    real_p = cut_event(b20, noise=False).particles
    out["barrel20_hits"] = {"sim_vs_real": hit_count_difference(sim.particles, real_p, min_hits=1),
                            "sim_vs_real_pt1": hit_count_difference(sim.particles, real_p, pt_min=1.0, min_hits=1)}
    lr = layer_summary(b20)
    ls = layer_summary(sim)
    counterpart = simulated_events("barrel20", 1, 200.0, seeds[0])[0]
    lc = layer_summary(counterpart)
    n_part = len(b20.particles)
    layers = pd.DataFrame({"real_reach": lr["particles"] / n_part, "sim_reach": ls["particles"] / n_part,
                           "real_noise_per_signal": lr["noise"] / (lr["hits"] - lr["noise"]),
                           "sim_noise_per_signal": lc["noise"] / (lc["hits"] - lc["noise"])})
    out["barrel20_layers"] = {f"{v}-{lay}": {k: float(x) for k, x in row.items()}
                              for (v, lay), row in layers.iterrows()}
    mini = read_event(real_trackml_dir("mini"))
    msim = simulate_from_particles(mini.particles, seeds[0], config)

    def doubles(ev):
        s = layer_summary(ev)
        w = s["particles"] * s["double_hit_rate"]
        return (w.groupby(level=0).sum() / s["particles"].groupby(level=0).sum()).to_dict()
    out["double_hit_rate_by_volume"] = {"real_mini": doubles(mini), "sim_mini_particles": doubles(msim)}
    return out


def report_text(rep: dict) -> str:
    lines = ["per-particle hit counts, simulated - real (particles with >= 1 hit on either side)", "",
             "| particles | comparison | n | mean | mean abs | equal | off by > 1 |", "|---|---|---|---|---|---|---|"]
    rows = [(f"event {e}", k, v) for e, d in rep["hit_counts"].items() for k, v in d.items() if k != "total_ratio"]
    rows += [("barrel20 (barrel hits, one per layer)", k, v) for k, v in rep["barrel20_hits"].items()]
    for who, k, v in rows:
        lines.append(f"| {who} | {k} | {v['n']:,} | {v['mean']:+.2f} | {v['mean_abs']:.2f} | {v['equal']:.2f} | "
                     f"{v['off_by_more_than_one']:.2f} |")
    lines.append("\ntotal simulated / real hits: " + ", ".join(f"event {e} {d['total_ratio']:.3f}"
                                                            for e, d in rep["hit_counts"].items()))
    lines += ["", "barrel20 per layer: fraction of the set's particles with a hit there (its real particles "
              "re-simulated) and noise per signal hit (simulated counterpart)", "",
              "| volume-layer | real reach | sim | real noise/signal | sim |", "|---|---|---|---|---|"]
    for lay, r in rep["barrel20_layers"].items():
        lines.append(f"| {lay} | {r['real_reach']:.3f} | {r['sim_reach']:.3f} | "
                     f"{r['real_noise_per_signal']:.3f} | {r['sim_noise_per_signal']:.3f} |")
    d = rep["double_hit_rate_by_volume"]
    lines += ["", "double-hit rate by volume (mini: every hit of its particles)", "",
              "| volume | real | simulated |", "|---|---|---|"]
    for v in d["real_mini"]:
        lines.append(f"| {v} | {d['real_mini'][v]:.3f} | {d['sim_mini_particles'].get(v, float('nan')):.3f} |")
    return "\n".join(lines)


def _sim_config(pairs) -> SimulationConfig:
    kwargs = {}
    for a in pairs:
        key, sep, value = a.partition("=")
        if not sep or key not in SimulationConfig.__dataclass_fields__:
            raise ConfigError(f"--sim-config {a!r}: expected KEY=VALUE with KEY a SimulationConfig field")
        try:
            kwargs[key] = type(getattr(SimulationConfig(), key))(value)
        except (TypeError, ValueError):
            raise ConfigError(f"--sim-config {a!r}: {value!r} is not a valid {key}") from None
    return SimulationConfig(**kwargs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", default=None, help="trained run folder (runs/NAME); without it only the baseline runs")
    p.add_argument("--set", default="all", help=f"real set: {', '.join(SETS)} or all (default all)")
    p.add_argument("--sim-events", type=int, default=3, metavar="N", help="simulated events per set (default 3)")
    p.add_argument("--pileup", type=float, default=200.0, metavar="MU", help="pile-up of the simulated events (200)")
    p.add_argument("--seed", type=int, default=20261201, help="seed of the simulated events")
    p.add_argument("--no-baseline", action="store_true", help="skip the DBSCAN-helix baseline")
    p.add_argument("--device", default="auto", help="inference device (default auto)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--barrel-views", default=None, metavar="Z,Z,...",
                   help="vertex z values (mm) of barrel views laid over the run's locality "
                        "(trackstudy.locality.views), e.g. --barrel-views=-15,-7.5,0,7.5,15; none: off")
    add_view_frame_option(p)
    p.add_argument("--hit-counts", action="store_true",
                   help="no model: where the simulator's hits differ from the real ones (per-particle hit counts, "
                        "hits per layer, noise per layer, double-hit rate)")
    p.add_argument("--sim-config", action="append", default=[], metavar="KEY=VALUE",
                   help="with --hit-counts: a SimulationConfig field, e.g. interaction_per_mm=0.00215")
    args = p.parse_args(argv)
    try:
        if args.hit_counts:
            rep = simulator_report(_sim_config(args.sim_config))
            print(report_text(rep))
            if args.json:
                atomic_write_bytes(args.json, json.dumps(rep, indent=1, default=str).encode(), force=True)
            return 0
        if args.set != "all" and args.set not in SETS:
            raise ConfigError(f"--set {args.set!r}: expected one of {', '.join(SETS)} or all")
        if args.sim_events < 1:
            raise ConfigError(f"--sim-events {args.sim_events}: expected >= 1")
        if args.run is None and args.no_baseline:
            raise ConfigError("nothing to run: give --run, or drop --no-baseline")
        views = None if args.barrel_views is None else parse_views(args.barrel_views)
        model = run_config = None
        if args.run is not None:
            model, run_config = load_run(args.run, args.device)
            if views is not None:
                run_config["locality"] = check_locality({**run_config["locality"], "barrel_views": views})
            if args.view_frame:
                run_config["locality"] = check_locality({**run_config["locality"], "view_frame": args.view_frame})
        elif views is not None or args.view_frame:
            raise ConfigError("--barrel-views / --view-frame: the views are a model's locality; give --run")
        results = []
        for name in (SETS if args.set == "all" else (args.set,)):
            res = compare(name, model=model, run_config=run_config, n_sim=args.sim_events, pileup=args.pileup,
                          seed=args.seed, baseline=not args.no_baseline, device=args.device)
            res["run"] = str(args.run) if args.run else None
            if views is not None:
                res["barrel_views"] = views
            if args.view_frame:
                res["view_frame"] = args.view_frame
            results.append(res)
            print(table(res) + "\n", flush=True)
        if args.json:
            atomic_write_bytes(args.json, json.dumps(results if len(results) > 1 else results[0], indent=1).encode(),
                               force=True)
    except TrackstudyError as exc:
        print(f"bench_real: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
