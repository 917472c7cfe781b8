"""``trackstudy pretrain --config FILE.yaml --out runs/NAME [--resume] [--set section.key=value ...]``."""

from __future__ import annotations

import json
import sys

from trackstudy.config import json_safe


def register(sub) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pretrain an encoder on hits without truth (masked tokens, VQ-VAE codes)",
        description="BERT-style masked-token pretraining of the shared encoder on hit tokens: a VQ-VAE "
                    "tokenizer of the hits first (tokenizer.pt: codebook usage, perplexity, dead codes, "
                    "reconstruction error in mm and rad), then 15%% of the hits masked (80%% mask token, 10%% "
                    "random, 10%% kept) and their codes and hidden features predicted. Reads hits only: "
                    "simulated events and the real sets of data/real (data.real). Writes OUT/config.yaml, "
                    "tokenizer.pt, checkpoints/last.pt, pretrained.pt, log_steps.csv, log_val.csv and "
                    "summary.json; --resume continues from the checkpoint and reaches the same weights as an "
                    "uninterrupted run. Fine-tune with: trackstudy train --config ... --out ... --init-from OUT "
                    "(see params/bench/pretrain_*.yaml). data.tokens: doublets pretrains on the candidate doublets "
                    "of a graph builder fitted on simulated truth (graph.npz; features target only) and starts a "
                    "model.family: doublet run (params/bench/pretrain_doublets_10-50.yaml).",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="pretraining config (YAML)")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory, e.g. runs/NAME")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its last checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                   help="override a config value (YAML syntax), e.g. --set train.steps=5; repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from trackstudy.cli.train import resolved_config
    from trackstudy.training.pretrain import pretrain, resolve_pretrain_config, set_pretrain_value

    cfg = resolved_config(args, resolve_pretrain_config, set_pretrain_value)  # --set errors name the --set
    summary = pretrain(cfg, args.out, resume=args.resume, progress=not args.quiet and sys.stderr.isatty())
    if args.json:
        print(json.dumps(json_safe(summary), allow_nan=False))
        return 0
    v, t = summary.get("validation") or {}, summary.get("tokenizer") or {}
    print(f"masked {summary.get('tokens', 'hits')} ({summary['preset']}, {summary['encoder_params']:,} encoder "
          f"parameters, {summary['backend']}) "
          f"on {summary['device']}: {summary['steps']} steps in {summary['train_seconds']:.0f} s ({summary['stopped']})")
    if t:
        nan = float("nan")
        if t.get("tokens") == "doublets":
            recon = (f"reconstruction {t.get('xyz_in_mm', nan):.2f} / {t.get('xyz_out_mm', nan):.2f} mm (inner / outer "
                     f"hit), dphi {t.get('dphi_rad', nan):.4f} rad, z0 {t.get('z0_mm', nan):.1f} mm")
        else:
            recon = f"reconstruction {t.get('xyz_mm', nan):.2f} mm, phi {t.get('phi_rad', nan):.4f} rad"
        print(f"tokenizer: {t['used']}/{t['codebook_size']} codes used, perplexity {t['perplexity']:.1f}, {recon}")
    print("validation: " + ", ".join(f"{k[4:]} {val:.4f}" for k, val in v.items() if val is not None))
    print(f"wrote {summary['model_file']}")
    return 0
