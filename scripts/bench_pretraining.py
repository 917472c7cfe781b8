"""Label-efficiency benchmark: pretrain an encoder on hits without truth, then fine-tune it and a
model from scratch on N labelled events each and score both on the same held-out events.

    python scripts/bench_pretraining.py params/bench/pretrain_10-50.yaml --n-labelled 10,30,100,600
    python scripts/bench_pretraining.py params/bench/pretrain_10-50.yaml --n-labelled '' --tokens 20,200
    python scripts/bench_pretraining.py params/bench/pretrain_smoke.yaml --base-config params/train_smoke.yaml \\
        --n-labelled 8 --minutes 0 --steps 20 --events 4 --pileup 20

Equivalent to ``trackstudy pretrain --config CONFIG --out runs/<config name>``, then for each N
``trackstudy train --config BASE --out runs/<prefix>_n<N>_<init> [--init-from runs/<config name>]``
with N training events, and ``scripts/bench_training.py``'s held-out scoring. Prints one line per
run and writes the table (and the pretraining summary) to runs/<prefix>.json as the runs finish.
``--tokens PILEUPS``: also the hit tokens per simulated event at those pile-ups (seed 2001) and the
tokenizer measured on every real set of data/real (codebook usage, perplexity, dead codes,
reconstruction errors in mm and rad), written to runs/<config name>/tokenizer_report.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from trackstudy.config import RUNS_DIR
from trackstudy.data.datasets import REAL_SETS, ensure_simulated, real_trackml_dir
from trackstudy.data.io import atomic_write_bytes
from trackstudy.study.pretraining import (
    INITS,
    label_efficiency,
    parse_counts,
    pretrain_run,
    token_counts,
    tokenizer_report,
)
from trackstudy.training.pretrain import load_tokenizer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", help="pretraining config, e.g. params/bench/pretrain_10-50.yaml")
    p.add_argument("--base-config", default="params/bench/contrastive_10-50.yaml", help="fine-tuning run config")
    p.add_argument("--n-labelled", default="10,30", help="labelled training events, e.g. 10,30,100,600")
    p.add_argument("--minutes", type=float, default=3.0, help="fine-tuning minutes per run (both arms)")
    p.add_argument("--steps", type=int, default=0, help="fine-tuning steps cap (0: the base config's)")
    p.add_argument("--val-events", type=int, default=10, help="labelled validation events (tuning)")
    p.add_argument("--events", type=int, default=50, help="held-out events")
    p.add_argument("--seed", type=int, default=1001, help="seed of the held-out events")
    p.add_argument("--train-seed", type=int, default=500, help="seed of the labelled events")
    p.add_argument("--pileup", type=float, default=200.0)
    p.add_argument("--prefix", default="labeleff", help="runs/<prefix>_n<N>_<init>")
    p.add_argument("--tracks", default="10:50",
                   help="particles per labelled and held-out event: MIN:MAX, or 'all' for full events")
    p.add_argument("--inits", default=",".join(INITS),
                   help="arms to run: scratch, pretrained or both (e.g. the scratch arm on another core "
                        "while the encoder pretrains)")
    p.add_argument("--tokens", default="", metavar="PILEUPS",
                   help="token counts at these pile-ups and the tokenizer on the real sets (e.g. 20,200)")
    args = p.parse_args(argv)
    inits = tuple(dict.fromkeys(i.strip() for i in args.inits.split(",") if i.strip()))  # in order, once each
    if not inits or any(i not in INITS for i in inits):
        p.error(f"--inits: expected a comma-separated subset of {', '.join(INITS)}, got {args.inits!r}")
    tracks = None if args.tracks.strip().lower() in ("all", "none", "") else args.tracks

    name = Path(args.config).stem
    pre = None
    if "pretrained" in inits or args.tokens:
        pre = pretrain_run(args.config, RUNS_DIR / name, progress=sys.stderr.isatty())
        print(f"pretrained {name}: {pre['steps']} steps, {pre['train_seconds']:.0f} s, "
              f"validation {pre['validation']}", flush=True)
    if args.tokens:
        tok, measures = load_tokenizer(RUNS_DIR / name)
        report = {"validation": measures}
        for real in REAL_SETS:
            report[real] = tokenizer_report(RUNS_DIR / name, real_trackml_dir(real), max_hits=20000)[0]
        counts = token_counts(args.tokens, n_events=1, seed=2001, tokenizer=tok)
        report["token_counts"] = counts.to_dict(orient="records")
        atomic_write_bytes(RUNS_DIR / name / "tokenizer_report.json", json.dumps(report, indent=1).encode(), force=True)
        keys = ("n_hits", "used", "dead", "perplexity", "x_mm", "y_mm", "z_mm", "r_mm", "phi_rad", "xyz_mm_median")
        print(pd.DataFrame({k: {kk: v[kk] for kk in keys} for k, v in report.items() if k != "token_counts"}).T)
        print(counts.to_string(index=False))
    if not str(args.n_labelled).strip():
        return 0
    held = ensure_simulated(args.events, args.pileup, args.seed, pixel_only=True, tracks=tracks,
                            progress=sys.stderr.isatty())
    # one table per arm when the arms run as separate processes, so neither overwrites the other's
    out = RUNS_DIR / (f"{args.prefix}.json" if len(inits) == len(INITS) else f"{args.prefix}_{inits[0]}.json")
    # rows of earlier invocations with the same prefix stay (other N, the other arm); a row is
    # replaced only by a new run of its own N and arm
    rows = json.loads(out.read_text()).get("rows", []) if out.is_file() else []
    for n in parse_counts(args.n_labelled):
        table = label_efficiency(RUNS_DIR / name, held, n_labelled=[n], base_config=args.base_config,
                                 run_prefix=args.prefix, max_minutes=args.minutes, steps=args.steps,
                                 n_val_events=args.val_events, train_seed=args.train_seed, train_pileup=args.pileup,
                                 tracks=tracks, inits=inits)
        for row in table.to_dict(orient="records"):
            rows = [r for r in rows if (r["n_labelled"], r["init"]) != (row["n_labelled"], row["init"])] + [row]
            print(f"n_labelled {row['n_labelled']:4d} {row['init']:10s} DM {row['dm_efficiency']:.4f} "
                  f"score {row['trackml_score']:.4f} fake {row['fake_rate']:.4f} "
                  f"DM - fake {row['dm_efficiency'] - row['fake_rate']:.4f} | base formation: "
                  f"DM {row['dm_efficiency_base']:.4f} fake {row['fake_rate_base']:.4f} steps {row['steps']} "
                  f"({row['train_seconds']:.0f} s)", flush=True)
        atomic_write_bytes(out, json.dumps({"pretrain": pre, "heldout": str(held), "args": vars(args),
                                            "rows": rows}, indent=1, default=str).encode(), force=True)
    if rows:
        print(pd.DataFrame(rows).sort_values(["n_labelled", "init"]).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
