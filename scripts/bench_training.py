"""Accuracy benchmark of a training config: train it, then score it on held-out simulated events.

    python scripts/bench_training.py params/bench/contrastive_10-50.yaml            # -> runs/contrastive_10-50
    python scripts/bench_training.py params/bench/enc_cla_10-50.yaml --events 100 --seed 777
    python scripts/bench_training.py params/bench/contrastive_10-50.yaml --no-train   # score an existing run

Equivalent to the commands

    trackstudy train --config params/bench/NAME.yaml --out runs/NAME
    trackstudy simulate --out DIR --events N --seed S --pileup MU --pixel-only --tracks MIN:MAX
    trackstudy predict --run runs/NAME --data DIR --out runs/NAME/heldout.csv
    trackstudy evaluate --data DIR --submission runs/NAME/heldout.csv

The held-out events are simulated like the config's validation data (pile-up, tracks per event,
pixel volumes) with a seed that neither the training nor the validation data used. Prints the
training time, the TrackML score, DM efficiency (pT > 0.9 GeV), fake and duplicate rates and the
median seconds per event of each inference stage, and where the particles it missed were lost
(trackstudy.study.misses); writes them to runs/NAME/heldout.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from trackstudy.cli.locality import add_view_frame_option, parse_params
from trackstudy.config import RUNS_DIR, resolve_path
from trackstudy.errors import ConfigError
from trackstudy.locality.views import parse_views
from trackstudy.study.heldout import HEADLINE, REGIONS, baseline_comparison, heldout_folder, score_run
from trackstudy.training import resolve_config, set_value, train
from trackstudy.training.run_config import load_yaml


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", help="training config, e.g. params/bench/contrastive_10-50.yaml")
    p.add_argument("--out", default=None, help="run directory (default runs/<config name>)")
    p.add_argument("--events", type=int, default=50, help="held-out events (default 50)")
    p.add_argument("--seed", type=int, default=20240917, help="seed of the held-out events")
    p.add_argument("--no-train", action="store_true", help="score the existing run only")
    p.add_argument("--resume", action="store_true", help="resume the run's training first")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE")
    p.add_argument("--device", default="auto", help="inference device")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="torch CPU threads of the held-out scoring (default 0: torch's choice; on a machine "
                        "other jobs share, 1: OpenMP threads on busy cores spin at their barriers)")
    p.add_argument("--weights", default=None, metavar="CHECKPOINT",
                   help="score these weights instead (e.g. runs/NAME/checkpoints/at_15min.pt, written with "
                        "train.snapshot_minutes) with the run's tuned track formation; writes heldout_<name>.json")
    p.add_argument("--locality-param", action="append", default=[], metavar="K=V",
                   help="clustering parameter laid over the run's at inference, repeatable, as `trackstudy "
                        "locality --param` (e.g. barrel_max_size=128); the report then carries its own tag")
    p.add_argument("--no-quality", action="store_true",
                   help="score without the run's track-quality scorer (track_quality.npz of `trackstudy quality`)")
    p.add_argument("--barrel-views", default=None, metavar="Z,Z,...",
                   help="vertex z values (mm) of barrel views laid over the run's locality at inference "
                        "(trackstudy.locality.views), e.g. --barrel-views=-15,-7.5,0,7.5,15 (the = keeps the "
                        "leading minus); none: off; the report then carries its own tag")
    add_view_frame_option(p, "the report's tag then ends in _frame (_bothframes)")
    p.add_argument("--baseline", default="", metavar="METHOD",
                   help="also run a training-free baseline (e.g. dbscan-helix) on the first --baseline-events")
    p.add_argument("--baseline-events", type=int, default=1, metavar="N",
                   help="held-out events the baseline runs on (DBSCAN-helix: ~95 s per mu = 200 event)")
    args = p.parse_args(argv)
    if args.threads < 0:
        raise SystemExit(f"--threads: must be >= 0 (0: torch's choice), got {args.threads}")

    raw = load_yaml(args.config)
    for a in args.overrides:
        set_value(raw, a)
    cfg = resolve_config(raw)
    out = resolve_path(args.out) if args.out else RUNS_DIR / Path(args.config).stem
    wall = time.perf_counter()
    if not args.no_train:
        train(cfg, out, resume=args.resume, progress=True)
    train_wall = time.perf_counter() - wall
    summary = json.loads((out / "summary.json").read_text())

    try:
        folder = heldout_folder(cfg, args.events, args.seed)
    except ConfigError as exc:
        raise SystemExit(f"--seed: {exc}") from None
    overrides = parse_params(args.locality_param)
    try:
        views = None if args.barrel_views is None else parse_views(args.barrel_views)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    if args.threads:
        torch.set_num_threads(args.threads)
    report, sub = score_run(out, folder, device=args.device, weights=args.weights, locality_params=overrides,
                            barrel_views=views, quality=not args.no_quality,
                            view_frame=args.view_frame or None)
    tag = report.pop("tag") + "".join(f"_{k}{v}" for k, v in overrides.items())
    report = {"config": str(args.config), "heldout_seed": args.seed, "train_seconds": summary["train_seconds"],
              "steps": summary["steps"], "stopped": summary["stopped"], "device": summary["device"],
              "wall_seconds_train_command": train_wall if not args.no_train else None,
              "track_params": summary["track_params"], **report}
    if args.baseline:
        report["baseline"] = baseline_comparison(args.baseline, folder, sub, args.baseline_events)
    (out / f"{tag}.json").write_text(json.dumps(report, indent=1))
    print(f"\n{Path(args.config).name}: {summary['family']} trained {summary['steps']} steps in "
          f"{summary['train_seconds'] / 60:.1f} min ({summary['stopped']}) on {summary['device']}")
    if not args.no_train:
        print(f"  train command wall time (data, training, tuning): {train_wall / 60:.1f} min")
    print(f"  held-out: {report['n_events']} events ({folder.name})")
    if args.weights:
        print(f"  weights: {args.weights} (step {report['weights_step']}, "
              f"{report['weights_train_seconds'] / 60:.1f} min of training)")
    for k in (*HEADLINE, *REGIONS):
        v = report.get(k)
        print(f"  {k:20s} {float('nan') if v is None else v:.4f}")
    for var, rows in report["binned"].items():
        print(f"  DM efficiency vs {var} (Clopper-Pearson 68%): " + "; ".join(
            f"[{r['low']:.3g}, {r['high']:.3g}) {r['eff']:.3f} -{r['err_low']:.3f}/+{r['err_high']:.3f} (n={r['n_total']})"
            for r in rows if r["n_total"]))
    for region in ("barrel", "endcap"):
        rows = [r for r in report.get("dm_by_cluster_size", []) if r["region"] == region and r["n"]]
        if rows:
            print(f"  {region} DM efficiency vs locality-cluster size (hits): " + "; ".join(
                f"({r['low']:g}, {r['high']:g}] {r['dm_efficiency']:.3f} (n={r['n']})" for r in rows))
        rows = [r for r in report.get("dm_by_vertex_z", []) if r["region"] == region and r["n"]]
        if rows:
            print(f"  {region} DM efficiency vs |vertex z| (mm): " + "; ".join(
                f"[{r['low']:g}, {r['high']:g}) {r['dm_efficiency']:.3f} (n={r['n']})" for r in rows))
        rows = [r for r in report.get("dm_by_hits", []) if r["region"] == region and r["n"]]
        if rows:
            print(f"  {region} DM efficiency vs the particle's hits: " + "; ".join(
                f"[{r['low']:g}, {r['high']:g}) {r['dm_efficiency']:.3f} (n={r['n']})" for r in rows))
    for r in report.get("miss_reasons", []):
        print(f"  {r['region']} reconstructable particles (n={r['n']}): " + ", ".join(
            f"{k} {v:.3f}" for k, v in r.items() if k not in ("region", "n")))
    if "baseline" in report:
        b = report["baseline"]
        print(f"  baseline {b['method']} on {b['n_events']} event(s), {b['seconds_per_event']:.1f} s/event: "
              + ", ".join(f"{k} {b[k]:.4f}" for k in ("trackml_score", "dm_efficiency", "fake_rate")
                          if b[k] is not None)
              + "; the model on the same events: "
              + ", ".join(f"{k} {v:.4f}" for k, v in b["model_on_the_same_events"].items()
                          if k in ("trackml_score", "dm_efficiency", "fake_rate") and v is not None))
    print("  seconds per event (median): "
          + ", ".join(f"{k} {v:.4f}" for k, v in report["seconds_per_event_median"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
