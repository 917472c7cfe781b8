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

from trackstudy.config import PIXEL_VOLUMES, RUNS_DIR, resolve_path
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
    p.add_argument("--weights", default=None, metavar="CHECKPOINT",
                   help="score these weights instead (e.g. runs/NAME/checkpoints/at_15min.pt, written with "
                        "train.snapshot_minutes) with the run's tuned track formation; writes heldout_<name>.json")
    p.add_argument("--baseline", default="", metavar="METHOD",
                   help="also run a training-free baseline (e.g. dbscan-helix) on the first --baseline-events")
    p.add_argument("--baseline-events", type=int, default=1, metavar="N",
                   help="held-out events the baseline runs on (DBSCAN-helix: ~95 s per mu = 200 event)")
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
    tag, weights_info = "heldout", {}
    if args.weights:
        import torch

        ck = torch.load(resolve_path(args.weights), map_location=next(model.parameters()).device, weights_only=True)
        model.load_state_dict(ck["model"])
        tag = f"heldout_{Path(args.weights).stem}"
        weights_info = {"weights": str(args.weights), "weights_step": int(ck["step"]),
                        "weights_train_seconds": float(ck["train_seconds"])}
    sub, timings = predict_events(model, folder, locality=run_config["locality"],
                                  pixel_only=run_config["data"]["train"]["pixel_only"])
    write_submission(sub, out / f"{tag}.csv", force=True)
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
        "track_params": summary["track_params"], **weights_info,
    }
    for k in ("barrel_dm_efficiency", "endcap_dm_efficiency", "barrel_fake_rate", "endcap_fake_rate",
              "n_particles", "n_tracks"):
        report[k] = s.get(k)
    report["binned"] = _binned(result)
    if args.baseline:
        from trackstudy.baselines import baseline_submission
        from trackstudy.data.io import iter_events
        from trackstudy.metrics import evaluate_events

        events = list(iter_events(folder, n_events=args.baseline_events))
        t0 = time.perf_counter()
        bsub = baseline_submission(args.baseline, events, volumes=PIXEL_VOLUMES, progress=True)
        seconds = (time.perf_counter() - t0) / len(events)
        b = evaluate_events(bsub, events, volumes=PIXEL_VOLUMES)
        model_same = evaluate_events(sub[sub["event_id"].isin([e.event_id for e in events])], events,
                                     volumes=PIXEL_VOLUMES)
        keys = ("trackml_score", "dm_efficiency", "barrel_dm_efficiency", "endcap_dm_efficiency", "fake_rate",
                "duplicate_rate")
        report["baseline"] = {"method": args.baseline, "n_events": len(events), "seconds_per_event": seconds,
                              **{k: b.summary.get(k) for k in keys},
                              "model_on_the_same_events": {k: model_same.summary.get(k) for k in keys}}
    (out / f"{tag}.json").write_text(json.dumps(report, indent=1))
    print(f"\n{Path(args.config).name}: {summary['family']} trained {summary['steps']} steps in "
          f"{summary['train_seconds'] / 60:.1f} min ({summary['stopped']}) on {summary['device']}")
    if not args.no_train:
        print(f"  train command wall time (data, training, tuning): {train_wall / 60:.1f} min")
    print(f"  held-out: {s['n_events']} events ({folder.name})")
    if weights_info:
        print(f"  weights: {args.weights} (step {weights_info['weights_step']}, "
              f"{weights_info['weights_train_seconds'] / 60:.1f} min of training)")
    for k in ("trackml_score", "dm_efficiency", "dm_efficiency_pt1", "perfect_efficiency", "fake_rate",
              "duplicate_rate"):
        print(f"  {k:20s} {s.get(k, float('nan')):.4f}")
    for k in ("barrel_dm_efficiency", "endcap_dm_efficiency", "barrel_fake_rate", "endcap_fake_rate"):
        print(f"  {k:20s} {s.get(k, float('nan')):.4f}")
    for var, rows in report["binned"].items():
        print(f"  DM efficiency vs {var} (Clopper-Pearson 68%): " + "; ".join(
            f"[{r['low']:.3g}, {r['high']:.3g}) {r['eff']:.3f} -{r['err_low']:.3f}/+{r['err_high']:.3f} (n={r['n_total']})"
            for r in rows if r["n_total"]))
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


def _binned(result) -> dict:
    """DM efficiency (pT > 0.9 GeV for eta) in bins of pT and eta, with Clopper-Pearson 68% intervals."""
    import math

    from trackstudy.metrics.binned import binned_efficiency

    out = {}
    for var in ("pt", "eta"):
        table = binned_efficiency(result.particles, var)
        out[var] = [{k: (None if isinstance(v, float) and math.isnan(v) else
                         (int(v) if k.startswith("n_") else float(v))) for k, v in row.items()}
                    for row in table.to_dict(orient="records")]
    return out


if __name__ == "__main__":
    sys.exit(main())
