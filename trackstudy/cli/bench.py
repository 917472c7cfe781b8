"""``trackstudy bench``: the command line of the benchmarks in :mod:`trackstudy.bench`.

The modules of :mod:`trackstudy.bench` only measure (functions with explicit arguments that
return results and tables); the options of each benchmark are parsed here: for a benchmark NAME,
``register_NAME(subparsers)`` adds its sub-command with its options and sets ``func`` to the
function that checks them, calls the measuring functions and prints. :data:`REGISTER` maps the
names to those functions.

Building the parser of every ``trackstudy`` command must stay cheap (no torch import), so
:func:`register` lists the benchmarks by name and help text only (:data:`BENCHMARKS`); the full
parser of one benchmark is built when its sub-command runs (``trackstudy bench NAME -h`` shows
it), and torch and :mod:`trackstudy.bench` are imported inside the functions of this module.
A new benchmark is a module of :mod:`trackstudy.bench` plus a line in :data:`BENCHMARKS` and a
``register_NAME`` here.
"""

from __future__ import annotations

import argparse
import json
import math
import time

from trackstudy.cli.locality import add_view_frame_option, parse_params
from trackstudy.config import json_safe
from trackstudy.errors import ConfigError

#: name -> help line of each benchmark (the module trackstudy.bench.<name> measures).
BENCHMARKS = {
    "attention": "time every attention backend on the same clustered random inputs",
    "latency": "time every stage of the inference pipeline (clustering, masks, encoder, track formation)",
    "scaling": "encoder forward time and memory of every attention backend versus the number of hits",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmarks (attention backends, inference latency, scaling)",
        description="Benchmarks that print measured numbers. Run 'trackstudy bench BENCHMARK -h' for options.")
    sub = parser.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    sub.required = True
    for name, help_text in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_text, add_help=False, prefix_chars="\0")
        p.add_argument("bench_args", nargs=argparse.REMAINDER)
        p.set_defaults(func=_run, bench_prog=f"{parser.prog} {name}")


def _registrar(name: str):
    """The function that adds the sub-command ``name`` with its options to a subparsers object."""
    return REGISTER[name]


def _parsers(name: str, prog: str = "trackstudy bench"):
    """(outer, inner): a parser ``prog`` with the one sub-command ``name``, and that sub-command's parser."""
    from trackstudy.cli import OneLineParser

    outer = OneLineParser(prog=prog, add_help=False)
    sub = outer.add_subparsers(dest="bench_command")
    _registrar(name)(sub)
    return outer, sub.choices[name]


def benchmark_parser(name: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of the options of the benchmark ``name`` (those of ``trackstudy bench NAME``),
    for scripts that run a benchmark with their own loop around it; ``prog``: the program name of
    its messages (default ``trackstudy bench NAME``)."""
    parser = _parsers(name)[1]
    if prog is not None:
        parser.prog = prog
    return parser


def _run(args: argparse.Namespace):
    """Build the benchmark's own parser, parse its options with it, run it."""
    from trackstudy.cli import absolute_paths

    outer, _ = _parsers(args.bench_command, prog=args.bench_prog.rsplit(" ", 1)[0])
    inner = outer.parse_args([args.bench_command, *args.bench_args])
    return inner.func(absolute_paths(inner))


def _backends(text: str) -> tuple[str, ...]:
    return tuple(b.strip() for b in text.split(",") if b.strip())


# --------------------------------------------------------------------------------------------
# trackstudy bench attention (trackstudy.bench.attention)


def register_attention(subparsers) -> argparse.ArgumentParser:
    from trackstudy.models.attention import BACKENDS
    from trackstudy.models.lsh import LSHConfig

    parser = subparsers.add_parser(
        "attention", help=BENCHMARKS["attention"],
        description="Run every attention backend on the same random q, k, v with a realistic cluster "
                    "structure; print per backend the forward time, peak memory and the largest absolute "
                    "difference from the float64 cluster-masked reference.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hits", type=int, help="hits per event (sequence length T) of random clustered inputs")
    source.add_argument("--event", help="instead: a real TrackML event (folder, prefix or file); its pixel hits "
                                        "clustered by the locality step's DBSCAN give the labels, eta and phi")
    parser.add_argument("--cluster-size", type=float, default=None,
                        help="mean cluster size (default 64; not with --event)")
    parser.add_argument("--batch", type=int, default=None,
                        help="events per batch; events after the first are 70-100%% as long (padding); not with --event")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (default 4, as the paper)")
    parser.add_argument("--head-dim", type=int, default=48, help="dimension per head (default 48 = 192/4)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"comma-separated backends (default: {','.join(BACKENDS)})")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up calls (compilation)")
    parser.add_argument("--reference-rows", type=int, default=None,
                        help="query rows checked against the reference (default: all up to 16384 hits, else 4096)")
    parser.add_argument("--lsh-rounds", type=int, default=LSHConfig.n_rounds, help="LSH hash rounds (OR)")
    parser.add_argument("--lsh-projections", type=int, default=LSHConfig.n_projections,
                        help="E2LSH projections per round (AND)")
    parser.add_argument("--lsh-bucket-width", type=float, default=LSHConfig.bucket_width,
                        help="E2LSH bucket width in Delta R units")
    parser.add_argument("--lsh-block-size", type=int, default=LSHConfig.block_size, help="LSH attention block size")
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {backend, seconds, peak_mb, max_abs_diff, ...}")
    parser.set_defaults(func=run_attention)
    return parser


#: Allowed ranges of the counts of ``bench attention`` (inclusive); beyond them the inputs alone would not fit.
ATTENTION_RANGES = {"hits": (1, 1_000_000), "batch": (1, 64), "heads": (1, 64), "head_dim": (1, 1024),
                    "repeats": (1, 1000), "warmup": (0, 1000), "reference_rows": (1, 1_000_000_000),
                    "lsh_rounds": (1, 64), "lsh_projections": (1, 64), "lsh_block_size": (1, 65_536),
                    "threads": (1, 1024), "seed": (0, 2**32 - 1)}


def check_attention_args(args: argparse.Namespace) -> None:
    """Every option's range, and options that do nothing with --event, before any work (ConfigError)."""
    if args.event is not None:
        for name, opt in (("batch", "--batch"), ("cluster_size", "--cluster-size")):
            if getattr(args, name) is not None:
                raise ConfigError(f"{opt} has no effect with --event (the event gives one sequence and its own "
                                  f"clusters); use it with --hits")
    for name, (low, high) in ATTENTION_RANGES.items():
        value = getattr(args, name)
        if value is not None and not low <= value <= high:
            raise ConfigError(f"--{name.replace('_', '-')} must be {'positive' if low == 1 else f'>= {low}'} and at "
                              f"most {high}, got {value}")
    if args.cluster_size is not None and not (math.isfinite(args.cluster_size) and args.cluster_size >= 2):
        raise ConfigError(f"--cluster-size {args.cluster_size}: expected a finite number >= 2 (mean hits per cluster)")
    if not (math.isfinite(args.lsh_bucket_width) and args.lsh_bucket_width > 0):
        raise ConfigError(f"--lsh-bucket-width {args.lsh_bucket_width}: expected a finite number > 0 "
                          f"(the LSH bucket_width, in Delta R units)")


def attention_setup(args: argparse.Namespace):
    """Check the parsed options of ``bench attention``, set the torch threads and build the inputs.

    Returns ``(inputs, device, kwargs)``: the benchmark is then
    ``trackstudy.bench.attention.run_attention_benchmark(None, inputs=inputs, **kwargs)``.
    """
    import torch

    from trackstudy.bench.attention import check_input_memory, check_options, make_event_inputs, make_inputs
    from trackstudy.device import resolve_device
    from trackstudy.models.lsh import LSHConfig

    check_attention_args(args)
    if args.event is None:
        args.batch = 1 if args.batch is None else args.batch
        args.cluster_size = 64.0 if args.cluster_size is None else args.cluster_size
    backends = _backends(args.backends)
    lsh = LSHConfig(n_rounds=args.lsh_rounds, n_projections=args.lsh_projections,
                    bucket_width=args.lsh_bucket_width, block_size=args.lsh_block_size, seed=args.seed)
    check_options(backends, repeats=args.repeats, batch=args.batch or 1, n_heads=args.heads, head_dim=args.head_dim,
                  threads=1 if args.threads is None else args.threads)
    dev = resolve_device(args.device)
    if args.event is None:
        check_input_memory(args.hits, args.batch, args.heads, args.head_dim, dev)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.event is not None:
        inputs = make_event_inputs(args.event, n_heads=args.heads, head_dim=args.head_dim, seed=args.seed, device=dev)
    else:
        inputs = make_inputs(args.hits, args.cluster_size, batch=args.batch, n_heads=args.heads,
                             head_dim=args.head_dim, seed=args.seed, device=dev)
    kwargs = dict(backends=backends, repeats=args.repeats, warmup=args.warmup, seed=args.seed, device=str(dev),
                  reference_rows=args.reference_rows, lsh=lsh)
    return inputs, dev, kwargs


def run_attention(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from trackstudy.bench.attention import describe_clusters, format_results, run_attention_benchmark
    from trackstudy.device import describe_device

    inputs, dev, kwargs = attention_setup(args)
    if not args.json:
        print(f"attention benchmark on {describe_device(dev)}: {args.heads} heads x {args.head_dim}, "
              f"{inputs.labels.shape[0]} event(s), {describe_clusters(inputs)}")
    results = run_attention_benchmark(None, inputs=inputs, progress=not args.json, **kwargs)
    if args.json:
        print(json.dumps(json_safe([asdict(r) for r in results]), indent=2, allow_nan=False))
    else:
        print(format_results(results))
    return 0


# --------------------------------------------------------------------------------------------
# trackstudy bench scaling (trackstudy.bench.scaling)

#: Defaults of ``bench scaling`` (the same as trackstudy.bench.scaling.DEFAULT_HITS / DEFAULT_BACKENDS,
#: repeated so that building the parser does not import torch; a test keeps them in step).
SCALING_HITS = (1000, 4000, 16000, 55000)
SCALING_BACKENDS = ("dense", "flex", "packed", "lsh")


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--hits {text!r}: expected comma-separated integers such as 1000,4000") from None


def register_scaling(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "scaling", help=BENCHMARKS["scaling"],
        description="Run the whole encoder of a preset with every attention backend at growing hit counts, on "
                    "pixel hits of events simulated at the matching pile-up and clustered with DBSCAN; print the "
                    "forward time, mask-building time and peak memory, the log-log slopes, the speed-up over "
                    "dense, and the simulator's throughput. Backends that would run out of memory or time are "
                    "reported as such.")
    parser.add_argument("--hits", default=",".join(map(str, SCALING_HITS)),
                        help=f"comma-separated hit counts (default {','.join(map(str, SCALING_HITS))})")
    parser.add_argument("--backends", default=",".join(SCALING_BACKENDS),
                        help=f"comma-separated backends (default {','.join(SCALING_BACKENDS)})")
    parser.add_argument("--preset", default="small", help="encoder preset: tiny, small, paper, cms (default small)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per point (median; default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards per point (default 1)")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="skip a backend whose forward is predicted or measured to exceed this (default 120)")
    parser.add_argument("--sim-events", type=int, default=3, help="events timed for the simulator line (default 3)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (simulation, subsampling, weights)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON: results (backend, n_hits, seconds, mask_seconds, peak_mb, status), "
                             "slopes, speedups, inputs, simulator, device")
    parser.set_defaults(func=run_scaling)
    return parser


def run_scaling(args: argparse.Namespace) -> int:
    import torch

    from trackstudy.bench import scaling
    from trackstudy.models.encoder import PRESETS

    hits = _int_list(args.hits)
    backends = _backends(args.backends)
    scaling.check_options(hits, backends, repeats=args.repeats, warmup=args.warmup, max_seconds=args.max_seconds)
    if args.preset not in PRESETS:
        raise ConfigError(f"--preset {args.preset!r}: choose from {', '.join(PRESETS)}")
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    result = scaling.run_scaling(hits, backends, preset=args.preset, repeats=args.repeats, warmup=args.warmup,
                                 max_seconds=args.max_seconds, device=args.device, seed=args.seed,
                                 sim_events=args.sim_events, memory=not args.no_memory, progress=not args.json)
    if args.json:
        print(json.dumps(json_safe(result.summary()), indent=2, allow_nan=False))
    else:
        print(scaling.format_result(result))
    return 0


#: name -> register function of the benchmarks whose options are parsed here.
#: Default model family of ``bench latency --preset`` (kept equal to trackstudy.bench.latency.DEFAULT_FAMILY
#: by a test; repeated here so that building the parser does not import torch).
LATENCY_FAMILY = "contrastive"


def register_latency(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "latency", help=BENCHMARKS["latency"],
        description="Run the inference pipeline of a trained run (or an untrained preset model) over the events "
                    "of a dataset: projection + clustering, features, mask building, encoder forward, track "
                    "formation. Prints the median and 90th percentile of each stage after warm-up, and the peak "
                    "memory. Works on hits-only data.")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--run", metavar="DIR", help="a trained run directory (runs/NAME)")
    model.add_argument("--preset", help="instead: an untrained model with this encoder preset (tiny, small, "
                                        "paper, cms), DBSCAN locality, pixel hits")
    parser.add_argument("--family", default=LATENCY_FAMILY,
                        help=f"model family of --preset (default {LATENCY_FAMILY})")
    parser.add_argument("--data", required=True, metavar="PATH",
                        help="a folder of TrackML events, an event prefix or a file of an event (hits are enough)")
    parser.add_argument("--events", type=int, default=5, metavar="N",
                        help="timed runs (default 5), cycling over the folder's events")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs (default 1; compiles flex)")
    parser.add_argument("--backend", default=None,
                        help="attention backend (default: the run's; for --preset flex on CUDA, packed on CPU)")
    parser.add_argument("--locality", default=None, metavar="METHOD",
                        help="locality clustering of the pipeline (none, dbscan, window, density, grid; default: "
                             "the run's). A run trained with full attention can be timed with sparse attention "
                             "(e.g. --locality dbscan --backend packed): same weights, same cost as a sparse model")
    parser.add_argument("--locality-param", action="append", default=[], metavar="K=V",
                        help="clustering parameter, repeatable, as `trackstudy locality --param` (e.g. "
                             "n_jobs=-1 for DBSCAN on all cores); replaces the run's locality parameters")
    parser.add_argument("--barrel-views", default=None, metavar="Z,Z,...",
                        help="vertex z values (mm) of barrel views laid over the locality, e.g. "
                             "--barrel-views=-15,-7.5,0,7.5,15 (trackstudy.locality.views); none: off")
    add_view_frame_option(parser)
    parser.add_argument("--no-quality", action="store_true",
                        help="time without the run's track-quality scorer (track_quality.npz)")
    parser.add_argument("--max-dense-hits", type=int, default=None, metavar="N",
                        help="a run with full attention (locality none) runs events of more than N hits (default "
                             "10000) on the sparse path (grid clustering, packed backend) with a notice; naming "
                             "--locality or --backend keeps what they say")
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-memory", action="store_true", help="skip the extra run that measures peak memory")
    parser.add_argument("--compile", action="store_true",
                        help="run the encoder padded to a size bucket with its per-hit parts compiled once per bucket "
                             "(trackstudy.models.compiled; the warm-up runs compile: give --warmup >= 1)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON: stages (name -> median s), total_seconds, peak_mb, n_hits, device, ...")
    parser.set_defaults(func=run_latency)
    return parser


def run_latency(args: argparse.Namespace) -> int:
    import torch

    from trackstudy.bench.latency import (
        PAPER_TABLE1,
        STAGES,
        compare_with_paper,
        format_result,
        load_events,
        measure_latency,
    )
    from trackstudy.cli.predict import notice_once
    from trackstudy.inference import DENSE_MAX_HITS, check_locality
    from trackstudy.locality.views import parse_views
    from trackstudy.models.compiled import BucketedModel
    from trackstudy.models.encoder import PRESETS
    from trackstudy.models.heads import TOKEN_FAMILIES
    from trackstudy.study.runs import latency_model, run_settings

    if args.events < 1:
        raise ConfigError(f"--events must be >= 1, got {args.events}")
    if args.max_dense_hits is not None and args.max_dense_hits < 1:
        raise ConfigError(f"--max-dense-hits must be >= 1, got {args.max_dense_hits}")
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.run is None and args.preset is not None:
        if args.preset not in PRESETS:
            raise ConfigError(f"--preset {args.preset!r}: choose from {', '.join(PRESETS)}")
        if args.family not in TOKEN_FAMILIES:  # a preset is an untrained transformer (a GNN run needs --run)
            raise ConfigError(f"--family {args.family!r}: choose from {', '.join(TOKEN_FAMILIES)}")
    events = load_events(args.data, args.events)
    t0 = time.perf_counter()
    model, run_config, how = latency_model(args.run or "", preset=args.preset or "small", family=args.family,
                                           backend=args.backend, device=args.device)
    locality, pixel_only = run_settings(run_config)
    if args.locality is not None:
        locality = {"method": args.locality, "params": {}, "vertex_scan": False}
    if args.locality_param:
        locality = check_locality({**(locality or {}), "params": parse_params(args.locality_param)})
    if args.barrel_views is not None:
        locality = check_locality({**(locality or {}), "barrel_views": parse_views(args.barrel_views)})
    if args.view_frame:
        locality = check_locality({**(locality or {}), "view_frame": args.view_frame})
    explicit = args.locality is not None or args.backend is not None
    if args.no_quality:
        model.track_quality = None
    result = measure_latency(model, events, locality=locality, pixel_only=pixel_only, n_runs=args.events,
                             warmup=args.warmup, memory=not args.no_memory, progress=not args.json,
                             max_dense_hits=None if explicit else (args.max_dense_hits or DENSE_MAX_HITS),
                             notify=notice_once("trackstudy bench latency"),
                             compiled=BucketedModel(model) if args.compile else None)
    result.info.update(compiled=bool(args.compile), model=how,
                       n_params=int(sum(p.numel() for p in model.parameters())),
                       data=str(args.data), locality=locality, bench_seconds=time.perf_counter() - t0,
                       track_quality=None if getattr(model, "track_quality", None) is None
                       else {"threshold": model.track_quality.threshold})
    if args.json:
        print(json.dumps(json_safe(result.summary()), indent=2, allow_nan=False))
    else:
        print(f"model: {how} ({result.info['n_params']:,} parameters)")
        print(format_result(result))
        if result.stages != STAGES:  # a GNN run: the paper's rows are transformer stages
            return 0
        cmp = compare_with_paper(result)
        print("\nnext to the paper (" + PAPER_TABLE1["device"] + "):")
        print(cmp.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


REGISTER = {"attention": register_attention, "latency": register_latency, "scaling": register_scaling}
