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
median seconds per event of each inference stage; writes them to runs/NAME/heldout.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from trackstudy.config import RUNS_DIR, resolve_path
from trackstudy.inference import STAGES, predict_events
from trackstudy.metrics import evaluate_submission_file, write_submission
from trackstudy.training import load_run, resolve_config, set_value, train
from trackstudy.training.config import load_yaml
from trackstudy.training.data import data_root, dataset_folder


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
    args = p.parse_args(argv)

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

    spec = cfg["data"]["val"]
    used = {cfg["data"]["train"]["seed"], spec["seed"]}
    if args.seed in used:
        raise SystemExit(f"--seed {args.seed} is used by the training or validation data; choose another")
    # the held-out events: simulated like the validation data, with their own count and seed
    folder = dataset_folder({**spec, "dir": "", "n_events": args.events, "seed": args.seed},
                            data_root(cfg["data"]["root"]))
    model, run_config = load_run(out, args.device)
    sub, timings = predict_events(model, folder, locality=run_config["locality"],
                                  pixel_only=run_config["data"]["train"]["pixel_only"])
    write_submission(sub, out / "heldout.csv", force=True)
    result = evaluate_submission_file(sub, folder)
    s = result.summary
    report = {
        "config": str(args.config), "run": str(out), "heldout_data": str(folder), "heldout_seed": args.seed,
        "n_events": s["n_events"], "train_seconds": summary["train_seconds"], "steps": summary["steps"],
        "stopped": summary["stopped"], "device": summary["device"],
        "wall_seconds_train_command": train_wall if not args.no_train else None,
        **{k: s.get(k) for k in ("trackml_score", "dm_efficiency", "dm_efficiency_pt1", "perfect_efficiency",
                                 "lhc_efficiency", "fake_rate", "duplicate_rate")},
        "seconds_per_event": {k: float(timings[k].mean()) for k in (*STAGES, "total")},
        # the median leaves out the first event's one-time start-up (CUDA context, kernels, caches)
        "seconds_per_event_median": {k: float(timings[k].median()) for k in (*STAGES, "total")},
        "track_params": summary["track_params"],
    }
    (out / "heldout.json").write_text(json.dumps(report, indent=1))
    print(f"\n{Path(args.config).name}: {summary['family']} trained {summary['steps']} steps in "
          f"{summary['train_seconds'] / 60:.1f} min ({summary['stopped']}) on {summary['device']}")
    if not args.no_train:
        print(f"  train command wall time (data, training, tuning): {train_wall / 60:.1f} min")
    print(f"  held-out: {s['n_events']} events ({folder.name})")
    for k in ("trackml_score", "dm_efficiency", "dm_efficiency_pt1", "perfect_efficiency", "fake_rate",
              "duplicate_rate"):
        print(f"  {k:20s} {s.get(k, float('nan')):.4f}")
    print("  seconds per event (median): "
          + ", ".join(f"{k} {v:.4f}" for k, v in report["seconds_per_event_median"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
