"""``trackstudy export --run runs/NAME --out model.onnx``: a trained model as an ONNX graph, checked
with onnxruntime against torch (trackstudy.models.export; the contract is in docs/onnx.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from trackstudy.config import json_safe
from trackstudy.errors import ConfigError, DataError


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="a trained run's model (encoder + head) as an ONNX graph, checked with onnxruntime",
        description="Export the model of a trained run (runs/NAME) to ONNX (torch.onnx.export, dynamo) for one "
                    "event of N hits: inputs the features x (N, F) and the locality clusters (packed: clusters "
                    "in size bins plus a gather index; dense: one label per hit), outputs the family's per-hit "
                    "outputs. With --check DATA the first event of DATA goes through the run's pixel selection "
                    "and clustering and the ONNX graph (onnxruntime, CPU) is compared with torch; the command "
                    "fails when they differ by more than --tolerance. Needs the extra `export` "
                    "(pip install -e .[export]). Contract: docs/onnx.md.")
    p.add_argument("--run", required=True, metavar="DIR", help="run directory (holds model.pt)")
    p.add_argument("--out", required=True, metavar="FILE", help="ONNX file to write")
    p.add_argument("--mode", default="packed", choices=("packed", "dense"),
                   help="cluster attention in the graph: packed (size bins; default) or dense (N x N mask)")
    p.add_argument("--bins", type=int, default=None, metavar="N", help="size bins of --mode packed (default 8)")
    p.add_argument("--check", default=None, metavar="DATA",
                   help="compare onnxruntime with torch on the first event of DATA (folder, prefix or file)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="largest accepted |onnxruntime - torch| of --check (default 1e-4)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of torch and onnxruntime")
    p.add_argument("--json", action="store_true", help="print the check's result as JSON")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    import torch

    from trackstudy.bench.latency import load_events
    from trackstudy.cli._paths import check_output_file
    from trackstudy.cli.evaluate import check_count, check_number
    from trackstudy.inference import DENSE_MAX_HITS, check_locality, cluster_hits, select_pixel_hits
    from trackstudy.models import export
    from trackstudy.models.features import hit_features
    from trackstudy.study.runs import run_settings
    from trackstudy.training.checkpoint import load_run

    check_count(args.bins, "--bins", 1, 64)
    check_count(args.threads, "--threads", 1, 1024)
    check_number(args.tolerance, "--tolerance", 0.0, low_open=True)
    if args.bins is not None and args.mode == "dense":
        raise ConfigError("--bins has no effect with --mode dense (no bins); use it with --mode packed")
    n_bins = args.bins or export.DEFAULT_BINS
    export.require("onnx")
    export.require("onnxscript")
    if args.check is not None:
        export.require("onnxruntime")
    run_dir = Path(args.run)
    out = check_output_file(Path(args.out), "--out", args.force,
                            inputs=[p for p in run_dir.glob("*") if p.is_file()] if run_dir.is_dir() else [],
                            input_dirs=[Path(args.check)] if args.check and Path(args.check).is_dir() else [])
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model, run_config = load_run(args.run, "cpu")
    locality, pixel_only = run_settings(run_config)
    locality = check_locality(locality)
    event = None
    if args.check is not None:
        event_id, hits = load_events(args.check, 1)[0]
        if pixel_only:
            hits = hits.loc[select_pixel_hits(hits, source=f"{args.check}: event {event_id} hits")]
        if len(hits) == 0:
            raise DataError(f"{args.check}: event {event_id} has no hits to run (--check)")
        if args.mode == "dense" and len(hits) > DENSE_MAX_HITS:
            raise ConfigError(f"--check with --mode dense over {len(hits)} hits (> {DENSE_MAX_HITS}) needs an "
                              f"N x N mask; check with --mode packed or a smaller event")
        if locality["method"] == "none" and len(hits) > DENSE_MAX_HITS:
            raise ConfigError(f"--check over {len(hits)} hits (> {DENSE_MAX_HITS}) with the run's full attention "
                              f"(locality none) needs N x N scores; check with a smaller event")
        event = (event_id, hits)
    path = export.export_onnx(model, out, mode=args.mode, n_bins=n_bins, force=True,  # checked above
                              extra_metadata={"locality": locality, "pixel_only": pixel_only,
                                              "run": run_dir.name})
    meta = export.read_metadata(path)
    print(f"wrote {path} ({model.family}, mode {args.mode}"
          + (f", {n_bins} bins" if args.mode == "packed" else "") + f"); inputs {', '.join(json.loads(meta['inputs']))}; "
          f"outputs {', '.join(json.loads(meta['outputs']))}", file=sys.stderr if args.json else sys.stdout)
    if event is None:
        return 0
    event_id, hits = event
    labels = cluster_hits(hits, locality)
    x = hit_features(hits, model.feature_cfg, source=f"{args.check}: event {event_id} hits", cluster=labels)
    result = export.check_onnx(path, model, x, labels, threads=args.threads)
    tolerance = args.tolerance or export.TOLERANCE
    result.update(tolerance=tolerance, ok=all(d <= tolerance for d in result["max_abs_diff"].values()),
                  event_id=int(event_id), data=str(args.check),
                  clusters=int(len(np.unique(labels))) if labels is not None else 1)
    if args.json:
        print(json.dumps(json_safe(result), indent=2, allow_nan=False))
    else:
        worst = max(result["max_abs_diff"].values())
        print(f"check on event {event_id} ({result['n_hits']} hits, {result['clusters']} clusters): max "
              f"|onnxruntime - torch| = {worst:.2e} (tolerance {tolerance:g}) "
              + ", ".join(f"{k} {v:.2e}" for k, v in result["max_abs_diff"].items()))
    if not result["ok"]:
        worst = max(result["max_abs_diff"].values())
        raise DataError(f"{path}: onnxruntime differs from torch by {worst:.3g} > --tolerance {tolerance:g} on "
                        f"event {event_id} of {args.check}")
    return 0
