"""Which edge scorer learns the doublets of one event fastest: an MLP of the doublet features
alone, the interaction network, and the transformer over hit tokens (``model.doublet.tokens: hits``).

    python scripts/probe_edge_heads.py --run runs/gnn_mu200_cpu_aug --data data/sim/mu200-pixel-n4-s401-v2 \\
        --steps 120 --threads 2

The graph: the graph builder of ``--run`` (an edge-model run: its windows and edge filter) on the
first event of ``--data``, with the trainer's labels and loss (``trackstudy.training.gnn.graph_sample``,
``trackstudy.models.gnn.edge_loss`` with the weights of ``--gnn-config``). Each model, fresh,
is fitted to that one graph for ``--steps`` full-event steps (AdamW, lr ``--lr``, no schedule):
the interaction network of ``--gnn-config``, the hit-token transformer of ``--hits-config`` and a
3-layer MLP (width 64) of the 8 doublet features. Printed: the loss every ``--every`` steps and the
seconds, one JSON line per model at the end. A model that uses no more than the doublet features
ends at the MLP's loss; context (message passing, attention) takes it lower. Fitting one event
measures how fast a model can learn, not how well it generalises. First printed: for each of
``--tile-sizes``, the fraction of the event's true doublets of pT > 0.9 GeV particles whose two
hits share an (eta, phi) tile of the hit-token transformer (``model.doublet.cluster_size``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from trackstudy.data.io import iter_events, select_volumes
from trackstudy.errors import TrackstudyError
from trackstudy.models.doublet import (
    DoubletConfig,
    DoubletTransformer,
    doublet_clusters,
    encoder_features,
    hit_position,
)
from trackstudy.models.encoder import EncoderConfig
from trackstudy.models.gnn import GNNConfig, InteractionNetwork, edge_loss, mlp
from trackstudy.training import load_run, resolve_config
from trackstudy.training.gnn import graph_sample

MODELS = ("mlp", "gnn", "hits")


def build(name: str, gnn_config: dict, hits_config: dict) -> tuple[torch.nn.Module, object]:
    """A fresh model ``name`` of :data:`MODELS` and a function (sample) -> logits (E,)."""
    if name == "mlp":
        net = mlp(8, 64, 1, 3)
        return net, lambda s: net(s["edge_attr"]).squeeze(1)
    if name == "gnn":
        net = InteractionNetwork(GNNConfig.from_dict(gnn_config["model"]["gnn"]))
        return net, lambda s: net(s["x"], s["edge_index"], s["edge_attr"])
    m = hits_config["model"]
    cfg = DoubletConfig.from_dict(m["doublet"])
    if cfg.tokens != "hits":
        raise TrackstudyError(f"--hits-config: model.doublet.tokens is {cfg.tokens!r}; this probe fits hit tokens")
    enc = EncoderConfig.preset(m["preset"], n_features=len(encoder_features(cfg)), attention=m["backend"],
                               **m["encoder"])
    net = DoubletTransformer(enc, cfg)
    return net, lambda s: net(s["x"], s["edge_index"], s["edge_attr"])


def fit(name: str, sample: dict, loss_cfg, *, gnn_config: dict, hits_config: dict, steps: int, lr: float,
        every: int, seed: int = 0) -> dict:
    """Fit a fresh model ``name`` to one graph ``sample``; its losses every ``every`` steps."""
    torch.manual_seed(seed)
    net, logits = build(name, gnn_config, hits_config)
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    t0 = time.perf_counter()
    curve = []
    for step in range(1, steps + 1):
        loss = edge_loss(logits(sample), sample["y"].float(), sample["pt"], loss_cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            curve.append({"step": step, "loss": round(loss.item(), 4), "seconds": round(time.perf_counter() - t0, 1)})
            print(f"{name:5s} step {step:5d}  loss {loss.item():.4f}  {curve[-1]['seconds']:.0f} s", flush=True)
    return {"model": name, "parameters": sum(p.numel() for p in net.parameters()), "curve": curve}


def tile_containment(sample: dict, cluster_size: int, pt_min: float = 0.9) -> float:
    """Fraction of the true doublets of particles above ``pt_min`` GeV in ``sample`` whose two hits
    fall in one (eta, phi) tile of about ``cluster_size`` hits (the hit-token transformer's tiles)."""
    tile = doublet_clusters(*hit_position(sample["x"]), None, cluster_size)
    src, dst = sample["edge_index"]
    keep = (sample["y"] > 0.5) & (sample["pt"] > pt_min)
    return float((tile[src] == tile[dst])[keep].float().mean()) if bool(keep.any()) else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="an edge-model run (its graph builder and edge filter)")
    ap.add_argument("--data", required=True, help="a folder of events with truth (the first is used)")
    ap.add_argument("--gnn-config", default="params/bench/gnn_mu200_cpu.yaml")
    ap.add_argument("--hits-config", default="params/bench/edge_transformer_mu200_cpu.yaml")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's choice)")
    ap.add_argument("--tile-sizes", default="256,512,1024", help="hits per tile for the containment line")
    args = ap.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        ap.error(f"--models: {', '.join(bad) or 'none given'}; choose from {', '.join(MODELS)}")
    if args.steps < 1 or args.every < 1:
        ap.error("--steps and --every must be >= 1")
    try:
        tile_sizes = [int(t) for t in args.tile_sizes.split(",") if t.strip()]
    except ValueError:
        ap.error(f"--tile-sizes: {args.tile_sizes!r} is not a comma-separated list of integers")
    if any(t < 1 for t in tile_sizes):
        ap.error(f"--tile-sizes: each must be >= 1, got {args.tile_sizes!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, _ = load_run(args.run, "cpu")
        if not hasattr(model, "builder"):
            raise TrackstudyError(f"--run {args.run}: not an edge-model run (no graph builder)")
        gnn_config, hits_config = resolve_config(args.gnn_config), resolve_config(args.hits_config)
        event = select_volumes(next(iter_events(args.data, n_events=1)))
        sample = graph_sample(model.builder, event)
        loss_cfg = GNNConfig.from_dict(gnn_config["model"]["gnn"])
        print(f"event {event.event_id}: {sample['stats']['n_hits']} hits, {sample['stats']['n_edges']} doublets, "
              f"{sample['stats']['n_true']} true", flush=True)
        for t in tile_sizes:
            print(f"tiles of {t} hits: {tile_containment(sample, t):.4f} of the true pT > 0.9 GeV doublets in one tile",
                  flush=True)
        results = [fit(m, sample, loss_cfg, gnn_config=gnn_config, hits_config=hits_config, steps=args.steps,
                       lr=args.lr, every=args.every) for m in models]
    except TrackstudyError as exc:
        print(f"probe_edge_heads: {exc}", file=sys.stderr)
        return 2
    for r in results:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
