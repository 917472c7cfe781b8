"""Benchmark track formation (and the contrastive loss) at HL-LHC pixel scale.

The hits are the pixel hits of the real full-size event 1001 (~48k hits), clustered with the
locality clustering used for attention (trackstudy.locality; default the grid window, whose
~660 clusters of <= ~300 hits cut the attention pairs ~430x, like the FlexAttention tracking
paper's ~400x; the papers are listed in docs/references.md); the embeddings are synthetic: hits
are grouped into pseudo-tracks of 4-8 hits inside each locality cluster, and a track's hits share
a random 32-d direction plus noise. Timing depends on the cluster sizes and the number of hits,
not on how well a model was trained, so this measures the cost of the formation step itself (for
its physics quality see the tests and trackstudy.postprocessing.tune_track_formation).

    taskset -c 0 .venv/bin/python scripts/bench_track_formation.py [--repeat 5] [--hits N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from trackstudy.config import PIXEL_VOLUMES, REAL_DATA_DIR
from trackstudy.data.io import read_table
from trackstudy.device import resolve_device, synchronize
from trackstudy.locality.clustering import cluster_xyz
from trackstudy.models.losses import contrastive_loss
from trackstudy.postprocessing.track_formation import (
    EmbeddingTrackParams,
    ParamTrackParams,
    tracks_from_embeddings,
    tracks_from_params,
)


def synthetic_event(n_hits: int | None, method: str = "grid", seed: int = 0):
    hits = read_table(REAL_DATA_DIR / "full" / "event000001001-hits.csv.gz", "hits")
    hits = hits[hits.volume_id.isin(PIXEL_VOLUMES)].reset_index(drop=True)
    if n_hits is not None and n_hits < len(hits):
        hits = hits.sample(n_hits, random_state=seed).reset_index(drop=True)
    labels = cluster_xyz(hits.x.to_numpy(), hits.y.to_numpy(), hits.z.to_numpy(), method)
    rng = np.random.default_rng(seed)
    # pseudo-tracks of 4-8 hits within each locality cluster
    order = np.argsort(labels, kind="stable")
    track = np.empty(len(hits), dtype=np.int64)
    tid = 0
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for seg in np.split(order, bounds):
        i = 0
        while i < len(seg):
            k = int(rng.integers(4, 9))
            track[seg[i:i + k]] = tid
            tid += 1
            i += k
    dirs = rng.standard_normal((tid, 32))
    emb = dirs[track] / np.linalg.norm(dirs[track], axis=1, keepdims=True) + 0.05 * rng.standard_normal((len(hits), 32))
    return hits, labels.astype(np.int64), track, emb.astype(np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="timed repetitions (the median is reported)")
    ap.add_argument("--hits", type=int, default=None, help="subsample the pixel hits to this many")
    ap.add_argument("--locality", default="grid", help="locality clustering method (trackstudy.locality)")
    ap.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu or cuda (knn search and loss)")
    args = ap.parse_args(argv)
    dev = resolve_device(args.device)
    hits, labels, track, emb = synthetic_event(args.hits, args.locality)
    sizes = np.bincount(labels)
    print(f"event: {len(hits)} pixel hits, {len(sizes)} locality clusters (max {sizes.max()}, "
          f"sum size^2 / N^2 = {np.sum(sizes.astype(float) ** 2) / len(hits) ** 2:.2e}), {track.max() + 1} "
          f"pseudo-tracks; device {dev}, torch threads {torch.get_num_threads()}")
    hit_ids = hits.hit_id.to_numpy()

    def bench(name, fn):
        fn()  # warm-up
        times = []
        for _ in range(args.repeat):
            synchronize(dev)
            t0 = time.perf_counter()
            out = fn()
            synchronize(dev)
            times.append(time.perf_counter() - t0)
        print(f"{name:55s} median {1e3 * np.median(times):8.1f} ms  (min {1e3 * min(times):.1f}, "
              f"max {1e3 * max(times):.1f}, n={args.repeat})")
        return out

    for k, thr, mutual in ((8, 0.8, False), (4, 0.8, True)):
        p = EmbeddingTrackParams(method="knn", k=k, threshold=thr, mutual=mutual, per_cluster=True, device=dev.type)
        sub = bench(f"knn per cluster k={k} thr={thr} mutual={mutual}",
                    lambda p=p: tracks_from_embeddings(hit_ids, emb, cluster=labels, params=p))
        same = (sub.groupby(track).track_id.nunique() == 1).mean()
        print(f"    {sub.track_id.nunique()} tracks; pseudo-tracks kept whole: {same:.3f}")
    p = EmbeddingTrackParams(method="dbscan", eps=0.3, min_samples=2, per_cluster=True)
    bench("dbscan eps=0.3 per cluster (block graph + sklearn)",
          lambda: tracks_from_embeddings(hit_ids, emb, cluster=labels, params=p))

    # EncReg: predicted (theta, sin phi, cos phi, q) of each pseudo-track, smeared by 0.003
    rng = np.random.default_rng(1)
    n_tr = track.max() + 1
    th, ph, q = rng.uniform(0.1, 3.0, n_tr), rng.uniform(-np.pi, np.pi, n_tr), rng.choice([-1.0, 1.0], n_tr)
    pred = np.stack([th, np.sin(ph), np.cos(ph), q], 1)[track] + 0.003 * rng.standard_normal((len(track), 4))
    for p in (ParamTrackParams(algorithm="dbscan", eps=0.02),
              ParamTrackParams(algorithm="dbscan", eps=0.02, split_by_cluster=True),
              ParamTrackParams(algorithm="hdbscan", min_cluster_size=3, split_by_cluster=True)):
        name = f"EncReg {p.algorithm} {'within clusters' if p.split_by_cluster else 'whole event'}"
        sub = bench(name, lambda p=p: tracks_from_params(hit_ids, pred, cluster=labels, params=p))
        print(f"    {sub.track_id.nunique()} tracks; pseudo-tracks kept whole: "
              f"{(sub.groupby(track).track_id.nunique() == 1).mean():.3f}")

    e = torch.as_tensor(emb, device=dev)[None].requires_grad_(True)
    pid = torch.as_tensor(track + 1, device=dev)[None]
    pt = torch.full_like(pid, 2.0, dtype=torch.float32)
    mask = torch.ones_like(pid, dtype=torch.bool)
    cl = torch.as_tensor(labels, device=dev)[None]

    def loss_step():
        loss, _ = contrastive_loss(e, pid, pt, mask, cl)
        loss.backward()
        return loss

    bench("contrastive loss forward+backward (per-cluster blocks)", loss_step)


if __name__ == "__main__":
    main()
