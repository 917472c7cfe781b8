"""``trackstudy train --config FILE.yaml --out runs/NAME [--resume] [--set section.key=value ...]``."""

from __future__ import annotations

import json
import sys

from trackstudy.config import json_safe
from trackstudy.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML run config",
        description="Train a track-finding transformer (model family, preset, attention backend, locality, "
                    "simulated or given data, optimiser and steps all come from the YAML config; see "
                    "params/train_smoke.yaml and params/bench/). Writes OUT/config.yaml, checkpoints/last.pt, "
                    "model.pt, log_steps.csv, log_val.csv and summary.json. Ctrl-C writes a checkpoint; "
                    "--resume continues from it and reaches the same result as an uninterrupted run. "
                    "Under `torchrun --nproc-per-node K` it trains with DistributedDataParallel.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="run config (YAML)")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory, e.g. runs/NAME")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its last checkpoint")
    p.add_argument("--init-from", metavar="DIR", dest="init_from",
                   help="start the encoder from a pretraining run (trackstudy pretrain; heads start fresh); "
                        "sets model.init_from")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                   help="override a config value (YAML syntax), e.g. --set train.steps=5; repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from trackstudy.training import resolve_config, set_value, train

    cfg = resolved_config(args, resolve_config, set_value)
    if args.init_from:
        from trackstudy.training.pretrained import check_init_from

        cfg["model"]["init_from"] = str(args.init_from)
        cfg = resolve_config(cfg)  # the edge families that have no encoder refuse init_from here
        check_init_from(cfg["model"], args.init_from, where="--init-from")
    summary = train(cfg, args.out, resume=args.resume, progress=not args.quiet and sys.stderr.isatty())
    if "family" not in summary:  # a non-zero DDP rank
        return 0
    if args.json:
        print(json.dumps(json_safe(summary), allow_nan=False))
        return 0
    v = summary.get("validation") or {}
    print(f"{summary['family']} ({summary['preset']}, {summary.get('n_params', 0):,} parameters, {summary['backend']}) "
          f"on {summary['device']}: "
          f"{summary['steps']} steps in {summary['train_seconds']:.0f} s ({summary['stopped']}), "
          f"best val loss {summary['best_val_loss'] if summary['best_val_loss'] is not None else float('nan'):.4f}")
    if v:
        print(f"validation ({v.get('n_events', 0)} events): trackml_score {_f(v.get('trackml_score'))}, "
              f"dm_efficiency {_f(v.get('dm_efficiency'))}, fake_rate {_f(v.get('fake_rate'))}")
    print(f"wrote {summary['model_file']}", file=sys.stdout)
    return 0


def resolved_config(args, resolve_config, set_value) -> dict:
    """The config of ``--config`` with the ``--set`` overrides, resolved by ``resolve_config``, after
    checking that ``--out`` can be a run folder (used by ``train`` and ``pretrain``); a config error
    is blamed on the file or on the first ``--set`` that breaks it."""
    import copy
    import os
    from pathlib import Path

    from trackstudy.cli._paths import check_writable_folder
    from trackstudy.training.run_config import load_yaml

    out = Path(args.out)
    if os.path.lexists(out) and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder (expected a run folder)")
    check_writable_folder(out, "--out")
    base = load_yaml(args.config)
    cfg = copy.deepcopy(base)
    for assignment in args.overrides:
        set_value(cfg, assignment)
    try:
        return resolve_config(cfg)
    except ConfigError as exc:
        raise ConfigError(_blame(exc, base, args, resolve_config, set_value)) from None


def _blame(exc: ConfigError, base: dict, args, resolve_config, set_value) -> str:
    """The message of a config error, blamed on what caused it: the config file, or the first
    --set after which the config no longer resolves."""
    import copy

    if not args.overrides:
        return f"{args.config}: {exc}"
    try:
        resolve_config(copy.deepcopy(base))
    except ConfigError:
        return f"{args.config}: {exc}"
    cfg = copy.deepcopy(base)
    for assignment in args.overrides:
        set_value(cfg, assignment)
        try:
            resolve_config(copy.deepcopy(cfg))
        except ConfigError as step_exc:
            return f"--set {assignment}: {step_exc}"
    return f"--set {' '.join(args.overrides)}: {exc}"


def _f(x) -> str:
    return "-" if x is None else f"{x:.4f}"
