"""Training data: events -> per-hit tensors (features, targets, locality clusters), cached on disk.

Pipeline of one event (:func:`event_sample`)::

    Event -> [pixel volumes] -> merge_event -> locality clusters (cluster_xyz) -> make_sample

A dataset (``data.train`` / ``data.val`` of the run config) is a folder of TrackML events: the
given ``dir``, or a simulated dataset made on demand by :func:`trackstudy.data.datasets.ensure_simulated`
under ``<root>/sim/``. Its samples are cached as one ``samples.pt`` under
``<root>/processed/<key>/`` where ``key`` hashes

* the data identity: every event file used (name, size, modification time), so a re-simulated or
  edited dataset gets a new key;
* everything that shapes the tensors: the feature list and scales, the locality method and
  parameters, ``pixel_only``, and :data:`CACHE_VERSION` (bumped when this pipeline changes).

A changed config therefore never reads a stale cache. Road classes (EncCla/JM) are not cached:
they are a cheap function of the cached per-hit momenta and the binning fitted on the training
samples (:func:`fit_binning`, :func:`add_class_targets`), so they always follow the current binning.

Batches: :func:`epoch_batches` orders the events by a permutation drawn from (seed, epoch) alone,
so a resumed run sees exactly the batches an uninterrupted run would, and shards them by rank.
With ``data.online`` the training events are simulated afresh for each epoch (:class:`OnlineEvents`),
again as a function of (seed, epoch, index).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trackstudy.config import DATA_DIR, PIXEL_VOLUMES, resolve_path
from trackstudy.data.datasets import dataset_name, ensure_simulated
from trackstudy.data.detector import Detector
from trackstudy.data.io import Event, atomic_write_bytes, find_events, merge_event, read_event, select_volumes
from trackstudy.data.simulate import SimulationConfig, parse_tracks, simulate_event
from trackstudy.errors import ConfigError, DataError
from trackstudy.kinematics import hit_eta_phi
from trackstudy.locality import cluster_xyz
from trackstudy.models.features import FeatureConfig, feature_array
from trackstudy.models.roads import RoadBinning, particle_parameters
from trackstudy.training.run_config import config_hash
from trackstudy.training.targets import class_targets, collate, make_sample

#: Version of the cached tensor layout; part of every cache key.
CACHE_VERSION = 2
#: Per-hit keys that go into a batch (the rest of a sample, e.g. the momenta, stays out).
BATCH_KEYS = ("x", "hit_id", "eta", "phi", "cluster", "particle_id", "pt", "reg_target", "reg_mask", "cls_target")

__all__ = ["BATCH_KEYS", "CACHE_VERSION", "Dataset", "OnlineEvents", "add_class_targets", "augment_sample",
           "cache_key", "cluster_samples", "data_root", "dataset_folder", "epoch_batches", "event_sample", "fit_binning", "load_dataset",
           "locality_labels", "make_batch", "spec_folder"]


def data_root(root: str) -> Path:
    """Folder of simulated datasets and caches: ``root`` (relative to the project) or ``data/``."""
    return resolve_path(root) if root else DATA_DIR


def locality_labels(hits: pd.DataFrame, locality: dict | None) -> np.ndarray | None:
    """(N,) int64 locality-cluster labels of hits (x, y, z in mm), or None for method 'none'."""
    if not locality or locality.get("method", "none") == "none":
        return None

    return cluster_xyz(hits["x"].to_numpy(), hits["y"].to_numpy(), hits["z"].to_numpy(), locality["method"],
                       vertex_scan=locality.get("vertex_scan", False), **dict(locality.get("params") or {}))


def event_sample(event: Event, *, feature_cfg: FeatureConfig, locality: dict | None, pixel_only: bool) -> dict:
    """Per-hit arrays of one event with truth: features ``x``, ``hit_id``, ``eta``, ``phi``, targets
    (``particle_id``, ``pt``, ``reg_target``, ``reg_mask``), ``cluster`` (with a locality method),
    ``mom`` (N, 4) float64 = particle px, py, pz (GeV), q of each hit (0 for noise), from which
    road classes are made, and ``xyz`` (N, 3) float64 hit positions (mm) for augmentation."""
    if pixel_only:
        event = select_volumes(event, PIXEL_VOLUMES)
    if len(event.hits) == 0:
        raise DataError(f"event {event.event_id} ({event.source}): no hits"
                        f"{' in the pixel volumes' if pixel_only else ''}")
    df = merge_event(event)
    source = f"event {event.event_id}"
    sample = make_sample(df, feature_cfg=feature_cfg, cluster=locality_labels(df, locality), source=source)
    real = sample["particle_id"] != 0
    mom = np.zeros((len(df), 4))
    mom[real] = df.loc[real, ["px", "py", "pz", "q"]].to_numpy(np.float64)
    sample["mom"] = mom
    sample["xyz"] = df[["x", "y", "z"]].to_numpy(np.float64)
    return sample


def augment_sample(sample: dict, rng: np.random.Generator, *, feature_cfg: FeatureConfig, locality: dict | None,
                   binning: RoadBinning | None = None, noise: str = "class", recluster: bool = True) -> dict:
    """A randomly transformed copy of a sample, by symmetries of the detector and the field:
    a rotation about the beam axis by a uniform angle, a mirror z -> -z (probability 1/2) and a
    mirror y -> -y with the charges flipped (probability 1/2; a mirrored helix bends the other
    way). Positions and particle momenta move together; features, eta/phi, regression targets,
    road classes and (with ``recluster``) locality clusters are recomputed from them. A sample
    that is one locality cluster (:func:`cluster_samples`) keeps its label: ``recluster=False``."""
    x, y, z = sample["xyz"].T
    px, py, pz, q = sample["mom"].T
    a = rng.uniform(-np.pi, np.pi)
    c, s = np.cos(a), np.sin(a)
    x, y, px, py = c * x - s * y, s * x + c * y, c * px - s * py, s * px + c * py
    if rng.random() < 0.5:
        z, pz = -z, -pz
    if rng.random() < 0.5:
        y, py, q = -y, -py, -q
    out = dict(sample)
    out["xyz"] = np.stack([x, y, z], axis=-1)
    out["mom"] = np.stack([px, py, pz, q], axis=-1)
    if "cluster" in sample and recluster:
        out["cluster"] = locality_labels(pd.DataFrame({"x": x, "y": y, "z": z}), locality)
    out["x"] = feature_array(x, y, z, feature_cfg, out.get("cluster"))
    out["eta"], out["phi"] = hit_eta_phi(x, y, z)
    real = sample["particle_id"] != 0
    par = particle_parameters(px, py, pz, q)
    reg = np.stack([par["theta"], np.sin(par["phi"]), np.cos(par["phi"]), q], axis=-1)
    reg[~real] = 0.0
    out["reg_target"] = reg.astype(np.float32)
    if binning is not None:
        add_class_targets([out], binning, noise=noise)
    return out


def cluster_samples(samples: list[dict], min_hits: int = 2) -> list[dict]:
    """Every locality cluster of the event samples with at least ``min_hits`` hits, as a sample of
    its own: the cluster's rows of every per-hit array (features computed on the whole event, so a
    cluster is a window of its event, not a new event) and ``cluster`` set to 0 (one neighbourhood
    for the loss). ``event`` and ``cluster_label`` record where it came from. Run through the same
    weights, a cluster alone gives exactly the per-hit outputs it gets inside its full event with a
    cluster-masked backend: attention never crosses clusters and the rest of the network is per hit.
    Clusters are ordered by (event, label), so the list is a deterministic function of the samples."""
    if min_hits < 1:
        raise ConfigError(f"data.min_cluster_hits: must be >= 1, got {min_hits}")
    out = []
    for e, s in enumerate(samples):
        if "cluster" not in s:
            raise ConfigError("data.sequences='cluster' needs locality clusters: set locality.method "
                              "(dbscan, window, density or grid)")
        c = np.asarray(s["cluster"])
        n = len(c)
        order = np.argsort(c, kind="stable")
        labels, starts, counts = np.unique(c[order], return_index=True, return_counts=True)
        for lab, st, cnt in zip(labels, starts, counts):
            if cnt < min_hits:
                continue
            idx = order[st:st + cnt]
            unit = {k: v[idx] for k, v in s.items() if hasattr(v, "__len__") and len(v) == n}
            unit["cluster"] = np.zeros(cnt, dtype=np.int64)
            unit["event"] = np.full(cnt, e, dtype=np.int64)
            unit["cluster_label"] = np.full(cnt, lab, dtype=np.int64)
            out.append(unit)
    if not out:
        raise DataError(f"no locality cluster with >= {min_hits} hits in the training events "
                        "(data.min_cluster_hits)")
    return out


def dataset_folder(spec: dict, root: Path, *, progress: bool = True) -> Path:
    """The events folder of a dataset spec (``data.train`` / ``data.val``): ``dir`` as given, or
    the simulated dataset, made under ``root/sim/`` if missing."""
    if spec["dir"]:
        path = resolve_path(spec["dir"])
        if not path.is_dir():
            raise DataError(f"{path}: no such data folder (data.*.dir)")
        return path
    name = dataset_name(spec["pileup"], spec["n_events"], spec["seed"], spec["pixel_only"], spec["tracks"])
    return ensure_simulated(spec["n_events"], spec["pileup"], spec["seed"], pixel_only=spec["pixel_only"],
                            tracks=spec["tracks"], out_dir=root / "sim" / name, progress=progress)


def _event_files(folder: Path, n_events: int) -> list[tuple[int, Path]]:
    events = find_events(folder)
    if not events:
        raise DataError(f"{folder}: no TrackML events (event<N>-hits.csv or .csv.gz) in this folder")
    if n_events:
        if len(events) < n_events:
            raise DataError(f"{folder}: {len(events)} events, the config asks for {n_events} (data.*.n_events)")
        events = events[:n_events]
    return events


def _identity(events: list[tuple[int, Path]]) -> list:
    """(file name, size, mtime_ns) of every file of the events: changes whenever the data does."""
    out = []
    for _, prefix in events:
        for f in sorted(prefix.parent.glob(prefix.name + "-*")):
            st = f.stat()
            out.append([f.name, st.st_size, st.st_mtime_ns])
    return out


def cache_key(identity, *, feature_cfg: FeatureConfig, locality: dict | None, pixel_only: bool) -> str:
    """Hash of the data identity and every config part that changes the cached tensors."""
    loc = locality if locality and locality.get("method", "none") != "none" else {"method": "none"}
    # barrel views act at inference only: the training tensors are those of the base partition
    loc = {k: v for k, v in loc.items() if k not in ("barrel_views", "view_frame")}
    return config_hash({"version": CACHE_VERSION, "data": identity, "features": feature_cfg.to_dict(),
                        "locality": loc, "pixel_only": bool(pixel_only)})


@dataclass
class Dataset:
    """Samples of one dataset: per-hit numpy arrays, plus where the events came from."""

    samples: list[dict]
    event_ids: list[int]
    folder: Path | None = None
    prefixes: list[Path] = field(default_factory=list)
    pixel_only: bool = True
    key: str = ""
    cached: bool = False

    def __len__(self) -> int:
        return len(self.samples)

    def read_events(self, indices=None) -> list[Event]:
        """The events (hits, truth, particles; pixel volumes when pixel_only) of the given samples,
        for evaluation."""
        if not self.prefixes:
            raise DataError("this dataset has no event files to read (online data)")
        idx = range(len(self)) if indices is None else indices
        out = []
        for i in idx:
            ev = read_event(self.prefixes[i], self.event_ids[i], parts=("hits", "truth", "particles"))
            out.append(select_volumes(ev, PIXEL_VOLUMES) if self.pixel_only else ev)
        return out

    def describe(self) -> dict:
        n_hits = [len(s["x"]) for s in self.samples]
        n_part = [len(np.unique(s["particle_id"][s["particle_id"] > 0])) for s in self.samples]
        return {"dir": str(self.folder) if self.folder else "", "n_events": len(self),
                "mean_hits": float(np.mean(n_hits)) if n_hits else 0.0,
                "max_hits": int(max(n_hits)) if n_hits else 0,
                "mean_particles": float(np.mean(n_part)) if n_part else 0.0, "cache_key": self.key}


def _to_tensors(sample: dict) -> dict:
    return {k: torch.from_numpy(np.array(v)) for k, v in sample.items()}


def _to_numpy(sample: dict) -> dict:
    return {k: v.numpy() for k, v in sample.items()}


def load_dataset(spec: dict, *, feature_cfg: FeatureConfig, locality: dict | None, root: Path,
                 use_cache: bool = True, progress: bool = True, build: bool = True) -> Dataset:
    """The samples of a dataset spec, from the cache when its key matches, else computed (and cached).

    ``build=False`` only reads an existing cache (raises DataError when missing): DDP ranks other
    than 0 wait for rank 0 to build it.
    """
    from tqdm.auto import tqdm

    folder = dataset_folder(spec, root, progress=progress) if build else spec_folder(spec, root)
    events = _event_files(folder, spec["n_events"])
    key = cache_key(_identity(events), feature_cfg=feature_cfg, locality=locality, pixel_only=spec["pixel_only"])
    cache_dir = root / "processed" / key
    cache_file = cache_dir / "samples.pt"
    ids = [eid for eid, _ in events]
    prefixes = [p for _, p in events]
    if use_cache and cache_file.is_file():
        try:
            obj = torch.load(cache_file, map_location="cpu", weights_only=True)
            if obj.get("event_ids") == ids:
                samples = [_to_numpy(s) for s in obj["samples"]]
                return Dataset(samples, ids, folder, prefixes, spec["pixel_only"], key, cached=True)
        except Exception:  # a damaged cache is rebuilt, never trusted
            pass
    if not build:
        raise DataError(f"{cache_file}: tensor cache missing (rank 0 should have written it)")
    samples = []
    for eid, prefix in tqdm(events, desc=f"process {folder.name}", unit="event", disable=not progress):
        ev = read_event(prefix, eid, parts=("hits", "truth", "particles"))
        samples.append(event_sample(ev, feature_cfg=feature_cfg, locality=locality, pixel_only=spec["pixel_only"]))
    if use_cache:
        import io

        buf = io.BytesIO()
        torch.save({"event_ids": ids, "samples": [_to_tensors(s) for s in samples]}, buf)
        atomic_write_bytes(cache_file, buf.getvalue(), force=True)
        meta = {"folder": str(folder), "n_events": len(ids), "features": feature_cfg.to_dict(),
                "locality": locality, "pixel_only": spec["pixel_only"], "version": CACHE_VERSION}
        atomic_write_bytes(cache_dir / "meta.json", json.dumps(meta, indent=1, default=list).encode(), force=True)
    return Dataset(samples, ids, folder, prefixes, spec["pixel_only"], key)


def spec_folder(spec: dict, root: Path) -> Path:
    """The folder a dataset spec means (:func:`dataset_folder`'s answer), without checking or
    simulating it."""
    if spec["dir"]:
        return resolve_path(spec["dir"])
    return root / "sim" / dataset_name(spec["pileup"], spec["n_events"], spec["seed"], spec["pixel_only"],
                                       spec["tracks"])


class OnlineEvents:
    """Freshly simulated training events: event ``i`` of epoch ``e`` is simulated from the random
    stream (seed, e, i), so the data of a resumed run equals that of an uninterrupted one."""

    def __init__(self, spec: dict, *, feature_cfg: FeatureConfig, locality: dict | None):
        self.spec = spec
        self.n_events = int(spec["n_events"])
        self.config = SimulationConfig(pileup=float(spec["pileup"]), pixel_only=bool(spec["pixel_only"]),
                                       tracks=parse_tracks(spec["tracks"]) if spec["tracks"] else None)
        self.detector = Detector.load()
        self.feature_cfg = feature_cfg
        self.locality = locality

    def __len__(self) -> int:
        return self.n_events

    def sample(self, epoch: int, index: int) -> dict:
        rng = np.random.default_rng([int(self.spec["seed"]), 1 + int(epoch), int(index)])
        ev = simulate_event(self.config, rng, event_id=index, detector=self.detector)
        return event_sample(ev, feature_cfg=self.feature_cfg, locality=self.locality,
                            pixel_only=self.spec["pixel_only"])

    def epoch_samples(self, epoch: int, n: int | None = None) -> list[dict]:
        return [self.sample(epoch, i) for i in range(self.n_events if n is None else n)]


def fit_binning(samples: list[dict], n_phi: int, n_theta: int, n_p: int) -> RoadBinning:
    """The road binning (:class:`RoadBinning`) fitted on the hits of training samples."""
    pid = np.concatenate([s["particle_id"] for s in samples])
    mom = np.concatenate([s["mom"] for s in samples])
    df = pd.DataFrame({"particle_id": pid, "px": mom[:, 0], "py": mom[:, 1], "pz": mom[:, 2], "q": mom[:, 3]})
    return RoadBinning.fit(df, n_phi=n_phi, n_theta=n_theta, n_p=n_p, source="training hits")


def add_class_targets(samples: list[dict], binning: RoadBinning, noise: str = "class") -> None:
    """Add ``cls_target`` (road class per hit) to each sample, in place."""
    for s in samples:
        m = s["mom"]
        df = pd.DataFrame({"particle_id": s["particle_id"], "px": m[:, 0], "py": m[:, 1], "pz": m[:, 2],
                           "q": m[:, 3]})
        s["cls_target"] = class_targets(df, binning, noise=noise)


def _budget_batches(perm, rng, batch_size, batch_hits, rank, world_size, lengths, length_buckets, n) -> list:
    """Batches cut by a padded-hit budget (see :func:`epoch_batches`)."""
    if lengths is None:
        raise ConfigError("train.batch_hits: needs the length of every training sequence")
    lengths = np.asarray(lengths)
    if len(lengths) != n:
        raise ConfigError(f"epoch_batches: {len(lengths)} lengths for {n} events")
    budget, cap = batch_hits * world_size, batch_size * world_size
    if length_buckets > 1:
        # runs of about length_buckets global batches' worth of hits, each sorted by length
        run = (np.cumsum(lengths[perm]) - lengths[perm]) // (length_buckets * budget)
        perm = perm[np.lexsort((lengths[perm], run))]
    batches, start, longest = [], 0, 0
    for i, j in enumerate(perm):
        longest_i = max(longest, int(lengths[j]))
        count = i - start + 1
        if count > 1 and (count > cap or count * longest_i > budget):
            batches.append(perm[start:i])
            start, longest_i = i, int(lengths[j])
        longest = longest_i
    batches.append(perm[start:])
    batches = [batches[k] for k in rng.permutation(len(batches))]
    out = []
    for gb in batches:
        if len(gb) < world_size:  # every rank gets at least one sequence
            gb = np.resize(gb, world_size)
        out.append(gb[rank::world_size])
    return out


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1,
                  lengths=None, length_buckets: int = 0, batch_hits: int = 0) -> list:
    """Index arrays of this rank's batches in ``epoch``: a permutation of ``n`` events drawn from
    (seed, epoch), cut into global batches of ``batch_size * world_size`` events, each rank taking
    its slice. Every rank gets the same number of batches; a dataset smaller than one global batch
    is repeated to fill it.

    Length bucketing (``length_buckets`` > 1 and ``lengths``, the hits of each event): the
    permutation is cut into runs of ``length_buckets`` global batches, each run is sorted by
    length before being cut into batches, and the batches are then shuffled. A batch is padded to
    its longest event, so batches of similar lengths spend far less on padding (attention grows
    with the square of the padded length), while every batch still mixes events from across the
    epoch's permutation. Deterministic in (seed, epoch) like the plain order.

    Hit budget (``batch_hits`` > 0, needs ``lengths``): batches of sequences whose sizes vary a
    hundredfold (locality clusters: 2 to ~1,000 hits) are cut so that (sequences x longest
    sequence) stays within ``batch_hits`` per rank, with at most ``batch_size`` sequences, so every
    step costs about the same whatever the sizes. With ``length_buckets`` > 1 the permutation is
    sorted within runs of about ``length_buckets`` batches' worth of hits first. The number of
    batches per epoch then depends on the lengths; every rank still gets the same number."""
    rng = np.random.default_rng([int(seed), int(epoch)])
    perm = rng.permutation(n)
    if batch_hits > 0:
        return _budget_batches(perm, rng, batch_size, batch_hits, rank, world_size, lengths, length_buckets, n)
    per_step = batch_size * world_size
    n_batches = max(1, n // per_step)
    perm = np.resize(perm, n_batches * per_step)
    if length_buckets > 1 and lengths is not None:
        lengths = np.asarray(lengths)
        if len(lengths) != n:
            raise ConfigError(f"epoch_batches: {len(lengths)} lengths for {n} events")
        run = length_buckets * per_step
        for r0 in range(0, len(perm), run):
            seg = perm[r0:r0 + run]
            perm[r0:r0 + run] = seg[np.argsort(lengths[seg], kind="stable")]
        perm = perm.reshape(n_batches, per_step)[rng.permutation(n_batches)].ravel()
    return [perm[(j * world_size + rank) * batch_size:(j * world_size + rank + 1) * batch_size]
            for j in range(n_batches)]


def make_batch(samples: list[dict], device: torch.device | str = "cpu") -> dict:
    """Collated batch (padding mask added) of samples, on ``device``."""
    keys = [k for k in BATCH_KEYS if k in samples[0]]
    batch = collate([{k: s[k] for k in keys} for s in samples])
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
