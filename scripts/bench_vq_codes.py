"""How far one VQ code per hit tells the hits of an event apart (docs/results.md, "Pretraining and VQ tokens").

    python scripts/bench_vq_codes.py runs/pretrain_10-50_tokenizer data/sim/mu200-pixel-t10_50-n20-s20240917-v2 --events 20

Prints, over the events (pixel hits, truth read): hits, distinct codes used and hits per used code
per event, and the fraction of the hits of particles whose code a hit of another particle (or a
noise hit) of the same event also has: hits that a model reading codes alone cannot tell apart.
"""

from __future__ import annotations

import argparse
import json
import sys

from trackstudy.errors import ConfigError, DataError
from trackstudy.study.pretraining import code_sharing
from trackstudy.training.pretrained import load_tokenizer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("tokenizer", help="a pretraining run with a hit tokenizer, or its tokenizer.pt")
    p.add_argument("data", help="folder of simulated events (with truth)")
    p.add_argument("--events", type=int, default=20, help="events (default 20)")
    args = p.parse_args(argv)
    try:
        tok, _ = load_tokenizer(args.tokenizer)
        table = code_sharing(tok, args.data, n_events=args.events)
    except (ConfigError, DataError) as exc:
        print(f"bench_vq_codes: {exc}", file=sys.stderr)
        return 2
    mean = table[["hits", "codes_used", "hits_per_code", "shared"]].mean()
    out = {"events": len(table), "codebook_size": tok.config.codebook_size, **{k: float(v) for k, v in mean.items()},
           "shared_min": float(table["shared"].min()), "shared_max": float(table["shared"].max())}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
