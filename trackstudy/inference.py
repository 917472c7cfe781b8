"""Inference: hits of one event -> Kaggle submission, with every stage timed.

The pipeline of the FlexAttention tracking paper (its Table 1), stage by stage::

    clustering       pixel selection (pixel-only models), projection onto the R = 91 mm cylinder
                     / z = +-920 mm planes and locality clustering (trackstudy.locality)
    features         per-hit input features -> tensors on the device
    masks            the attention metadata of the model's backend, built once per event and read
                     by every layer: FlexAttention BlockMask, cluster packing, LSH plan or dense mask
                     (trackstudy.models.attention.AttentionContext / trackstudy.models.masks)
    encoder          the network's forward pass (no_grad; bfloat16 autocast on CUDA)
    track_formation  model outputs -> tracks (model.form_tracks)

Usage::

    model, run_config = trackstudy.training.checkpoint.load_run("runs/NAME")
    sub, t = predict_event(model, hits, locality=run_config["locality"],
                           pixel_only=run_config["data"]["train"]["pixel_only"])
    t  # {"clustering": s, "features": s, "masks": s, "encoder": s, "track_formation": s, "total": s, "n_hits": N}

Times are wall seconds with the device synchronised at every stage boundary; on CUDA each stage
is measured with CUDA events (``torch.cuda.Event(enable_timing=True)``) recorded at the same
boundaries. Every hit of the input ends up in the submission: hits a pixel-only model does not
see (strip volumes) become one-hit tracks with their own ids, like every hit that track
formation leaves alone.

One device: on CUDA (or with ``device_clustering`` / ``device_tracks``) the hit positions cross to
the device once; projection and grid clustering (:mod:`trackstudy.locality.torch_clustering`), the
input features, the masks, the encoder and kNN track formation
(:mod:`trackstudy.postprocessing.torch_tracks`) run there, and the track ids are the only copy
back; the results equal the CPU stages'. Other clustering methods, the vertex scan and other
track-formation methods run on the CPU as before.

Barrel views (``locality.barrel_views``, :mod:`trackstudy.locality.views`): the barrel is also
clustered from several vertex z values; every barrel hit runs through the network once per view,
tracks are formed view by view and resolved into one per hit (:func:`view_tracks`).

Dense-path guard (:func:`guard_dense`): a run with full attention (locality "none") over more than
:data:`DENSE_MAX_HITS` hits runs with grid clustering and the packed backend instead, with a
one-line notice naming the options that keep full attention.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import torch

from trackstudy.config import PIXEL_VOLUMES
from trackstudy.data.io import Event, iter_events
from trackstudy.device import StageClock, autocast_context, resolve_device, synchronize
from trackstudy.errors import ConfigError, DataError
from trackstudy.kinematics import MIN_R_MM, hit_eta_phi
from trackstudy.locality.clustering import METHODS, cluster_xyz, resolve_params, vertex_scan_regions
from trackstudy.locality.torch_clustering import TORCH_METHODS, cluster_xyz_torch
from trackstudy.locality.views import ViewClusters, check_view_scan, check_views, view_clusters
from trackstudy.models.attention import AttentionContext, build_masks, get_backend
from trackstudy.models.features import feature_tensor, hit_features
from trackstudy.models.heads import EDGE_FAMILIES
from trackstudy.postprocessing.gnn_tracks import predict_graph_event
from trackstudy.postprocessing.quality import apply_variants, choose_candidates, hit_columns
from trackstudy.postprocessing.torch_tracks import device_track_formation, tracks_from_embeddings_torch
from trackstudy.postprocessing.track_formation import form_tracks, labels_to_track_ids, model_params, submission
from trackstudy.postprocessing.views import line_fits, nearest_view, resolve_views

#: Stages timed by :func:`predict_event`, in pipeline order (plus "total").
STAGES = ("clustering", "features", "masks", "encoder", "track_formation")
#: Keys accepted in the ``locality`` section (the run config's).
LOCALITY_KEYS = ("method", "params", "vertex_scan", "barrel_views", "view_frame")
#: The dense-path guard: above this many hits through the network, a run without locality
#: clustering (locality method "none": full attention over the event, e.g. the 10-50-track runs)
#: takes the sparse path :data:`SPARSE_PATH` instead, with a notice (full attention over a real
#: event of 48,006 pixel hits took 22.8 s and ~15 GB on 2 CPU cores). ``max_dense_hits=None``
#: (the CLI: naming ``--locality`` or ``--backend``) turns the guard off; the CLI's
#: ``--max-dense-hits N`` moves the threshold.
DENSE_MAX_HITS = 10_000
#: (locality method, attention backend) of the guard's sparse path.
SPARSE_PATH = ("grid", "packed")


class SparsePathWarning(UserWarning):
    """Issued by :func:`predict_event` (without ``notify``) when the dense-path guard switches paths."""


class QualityFrameWarning(UserWarning):
    """Issued by :func:`predict_event` when a run's track-quality scorer was fitted with its barrel
    views in another frame (``locality.view_frame``) than the one they run in."""


# --------------------------------------------------------------------------------------------
# inputs


def check_locality(locality: Mapping | None) -> dict:
    """The ``locality`` section normalised to {"method", "params", "vertex_scan", "barrel_views",
    "view_frame"} (method "none" when None; barrel_views a list of vertex z in mm, empty when off;
    view_frame, default False: with barrel views, the network sees each barrel row's z measured
    from its view's vertex, :meth:`~trackstudy.locality.views.ViewClusters.frame_z`). Raises
    ConfigError naming an unknown key, method or parameter."""
    if locality is None:
        return {"method": "none", "params": {}, "vertex_scan": False, "barrel_views": [], "view_frame": False}
    if not isinstance(locality, Mapping):
        raise ConfigError(f"locality: expected a mapping with keys {', '.join(LOCALITY_KEYS)}, "
                          f"got {type(locality).__name__}")
    unknown = sorted(set(locality) - set(LOCALITY_KEYS))
    if unknown:
        raise ConfigError(f"locality: unknown key {unknown[0]!r}; valid keys: {', '.join(LOCALITY_KEYS)}")
    method = str(locality.get("method") or "none").lower()
    params = dict(locality.get("params") or {})
    vertex_scan = locality.get("vertex_scan", False)
    views = [float(v) for v in check_views(locality.get("barrel_views"))]
    if method != "none":
        if method not in METHODS:
            raise ConfigError(f"locality.method={method!r}: expected 'none' or one of {', '.join(METHODS)}")
        resolve_params(method, params)
        vertex_scan_regions(vertex_scan)
        if views:
            check_view_scan(vertex_scan)
    elif params:
        raise ConfigError("locality.params given but locality.method is 'none'")
    elif views:
        raise ConfigError("locality.barrel_views given but locality.method is 'none'")
    view_frame = locality.get("view_frame", False)
    if not isinstance(view_frame, (bool, np.bool_)) and view_frame != "both":
        raise ConfigError(f"locality.view_frame={view_frame!r}: expected true, false or both")
    return {"method": method, "params": params, "vertex_scan": vertex_scan, "barrel_views": views,
            "view_frame": view_frame if view_frame == "both" else bool(view_frame)}


def select_pixel_hits(hits: pd.DataFrame, *, source: str = "hits") -> np.ndarray:
    """Boolean (N,) mask of the hits in the pixel volumes 7, 8, 9 (needs ``volume_id``)."""
    if "volume_id" not in hits.columns:
        raise DataError(f"{source}: column 'volume_id' is missing (needed to select the pixel volumes "
                        f"{', '.join(map(str, PIXEL_VOLUMES))} for a pixel-only model)")
    return hits["volume_id"].isin(PIXEL_VOLUMES).to_numpy()


def cluster_hits(hits: pd.DataFrame, locality: Mapping | None, device=None) -> np.ndarray | None:
    """Locality cluster labels (N,) int64 of ``hits`` (projection + clustering), or None when the
    method is "none" (full attention over the event). With barrel views, the labels of the
    partition the model was trained on (views are an inference-time overlay: :func:`view_hits`).
    With a ``device``, the methods of
    :data:`~trackstudy.locality.torch_clustering.TORCH_METHODS` (without vertex scan) run in torch
    there (same labels)."""
    loc = check_locality(locality)
    if loc["method"] == "none":
        return None
    x, y, z = (hits[c].to_numpy(np.float64) for c in ("x", "y", "z"))
    if device is not None and torch_clusterable(loc):
        xyz = torch.from_numpy(np.stack([x, y, z])).to(device)
        return cluster_xyz_torch(*xyz, loc["method"], **loc["params"]).cpu().numpy()
    return np.asarray(cluster_xyz(x, y, z, loc["method"], vertex_scan=loc["vertex_scan"], **loc["params"]),
                      dtype=np.int64)


def view_hits(hits: pd.DataFrame, locality: Mapping) -> ViewClusters:
    """The overlapping clusters of a locality section with ``barrel_views``
    (:func:`trackstudy.locality.views.view_clusters`): every barrel hit once per view, and once
    more per view with ``view_frame: both`` (:meth:`~trackstudy.locality.views.ViewClusters.with_both_frames`)."""
    loc = check_locality(locality)
    x, y, z = (hits[c].to_numpy(np.float64) for c in ("x", "y", "z"))
    views = view_clusters(x, y, z, loc["method"], barrel_views=loc["barrel_views"], vertex_scan=loc["vertex_scan"],
                          **loc["params"])
    return views.with_both_frames() if loc["view_frame"] == "both" else views


def view_tracks(former, outputs: Mapping, hits: pd.DataFrame, views: ViewClusters, *, event_id: int = 0,
                params=None, quality=None, capture: dict | None = None, variants=None
                ) -> tuple[pd.DataFrame, np.ndarray]:
    """Tracks of one event from outputs over the rows of ``views``: ``former`` (form_tracks or its
    device version) in each view over its barrel rows, and once over the endcap rows (their
    clusters and outputs are the same in every view; an endcap candidate is given the view nearest
    the z0 of its line fit), the candidates
    resolved into one partition: by the track-quality scorer ``quality``
    (:class:`trackstudy.postprocessing.quality.TrackQuality`) when given, else by the line-fit
    rules of :func:`trackstudy.postprocessing.views.resolve_views`. ``capture`` receives the
    candidates (:func:`quality_candidates`); ``variants``: track-formation parameter overrides
    whose candidates are pooled in every view (:func:`trackstudy.postprocessing.quality.apply_variants`;
    default: those of ``quality``).
    Returns the submission (one row per hit of ``hits``, input order) and the row each hit's
    outputs are taken from (the copy in the view of its track; the view nearest z = 0 for a
    barrel hit no track took)."""
    xyz = hits[["x", "y", "z"]].to_numpy(np.float64)
    n = len(hits)
    rows, track, view = [], [], []
    offset = 0
    if variants is None and quality is not None:
        variants = quality.variants
    r_hit = np.hypot(xyz[:, 0], xyz[:, 1])
    # each view's barrel rows, then the endcap rows once (the same clusters and outputs in every view)
    blocks = [(k, np.flatnonzero(views.view == k)) for k in range(len(views.vertices))]
    blocks.append((-1, np.flatnonzero(views.view < 0)))
    for k, idx in blocks:
        if len(idx) == 0:
            continue
        sel = torch.from_numpy(idx)
        part = {name: (v[sel.to(v.device)] if isinstance(v, torch.Tensor) else np.asarray(v)[idx])
                for name, v in outputs.items()}
        for p in apply_variants(params, variants):
            sub = former(part, np.arange(len(idx)), event_id=event_id, cluster=views.labels[idx], params=p,
                         xyz=xyz[views.rows[idx]])
            _, lab = np.unique(sub["track_id"].to_numpy(), return_inverse=True)
            lab = lab.ravel()
            hit = views.rows[idx]
            if k >= 0:
                v = np.full(len(idx), k, dtype=np.int64)
            else:  # an endcap candidate belongs to the view nearest the z0 of its line (z = 0 without one)
                v = nearest_view(line_fits(lab, r_hit[hit], xyz[hit, 2])[0], views.vertices)[lab]
            rows.append(hit)
            track.append(lab + offset)
            view.append(v)
            offset += int(lab.max()) + 1
    cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64))
    rows, track, view = cat(rows), cat(track), cat(view)
    if quality is not None or capture is not None:
        labels, chosen = quality_candidates(quality, hits, rows, track, view, views.vertices, event_id=event_id,
                                            capture=capture)
    if quality is None:
        labels, chosen = resolve_views(n, rows, track, view, views.vertices, np.hypot(xyz[:, 0], xyz[:, 1]), xyz[:, 2])
    # the row of each hit's outputs: its copy in the chosen view, else in the view nearest z = 0
    home = np.where(chosen >= 0, chosen, int(np.argmin(np.abs(views.vertices))))
    key = np.full((len(views.vertices) + 1, n), -1, dtype=np.int64)  # view + 1 (0: endcap rows), hit -> row
    key[views.view + 1, views.rows] = np.arange(len(views))
    source = np.where(key[0] >= 0, key[0], key[home + 1, np.arange(n)])
    return submission(event_id, hits["hit_id"].to_numpy(), labels_to_track_ids(labels)), source


def with_unseen(track: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Track ids of every hit of an event from those of the hits that went through the model
    (``track``, one per True of ``keep``): each other hit a one-hit track with a fresh id, input order."""
    out = np.empty(len(keep), dtype=np.int64)
    out[keep] = track
    out[~keep] = np.max(track, initial=-1) + 1 + np.arange(int((~keep).sum()))
    return out


def quality_candidates(quality, hits: pd.DataFrame, rows, track, view=None, vertices=None, *, event_id: int = 0,
                       capture: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The partition of one event's hits (rows of ``hits``) chosen among track candidates by a
    track-quality scorer (:func:`trackstudy.postprocessing.quality.select_candidates` with its
    threshold): rows (M,) the hit of each candidate row, track (M,) its candidate, view (M,) the
    view it was formed in (index into ``vertices``; None without barrel views). ``capture``
    receives ``candidates``: {rows, track (0..T-1), features (T, F)} for fitting a scorer.
    Returns ``(labels, chosen)``: (N,) track labels and the view of each hit's track (-1: none).
    With ``quality`` None (capture only) the labels are those of ``track`` as given."""
    if quality is None:  # capture only (a table without volume_id / layer_id captures no candidates)
        labels = np.full(len(hits), -1, dtype=np.int64)
        _, labels[np.asarray(rows, dtype=np.int64)] = np.unique(np.asarray(track), return_inverse=True)
        if capture is not None and {"volume_id", "layer_id"} <= set(hits.columns):
            choose_candidates(None, hit_columns(hits), rows, track, view, vertices, capture=capture)
        return labels, np.full(len(hits), -1, dtype=np.int64)
    t, labels, claimed = choose_candidates(quality, hit_columns(hits, source=f"event {event_id} hits"), rows, track,
                                           view, vertices, capture=capture)
    chosen = np.full(len(hits), -1, dtype=np.int64)
    if view is not None:
        cand_view = np.zeros(int(t.max()) + 1 if len(t) else 0, dtype=np.int64)
        cand_view[t] = np.asarray(view, dtype=np.int64)
        chosen = np.where(claimed >= 0, cand_view[np.maximum(claimed, 0)], -1)
    return labels, chosen


def torch_clusterable(locality: Mapping | None) -> bool:
    """Whether the locality section's clustering has a torch version (grid, window; no vertex scan)."""
    loc = check_locality(locality)
    return loc["method"] in TORCH_METHODS and not vertex_scan_regions(loc["vertex_scan"]) and not loc["barrel_views"]


def hit_angles(hits: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(eta, phi) float32 (N,) of the hit positions (pseudorapidity, radians)."""
    return hit_eta_phi(*(hits[c].to_numpy(np.float64) for c in ("x", "y", "z")))


def guard_dense(n_hits: int, locality: Mapping | None, backend: str,
                max_dense_hits: int | None = DENSE_MAX_HITS) -> tuple[dict, str, str | None]:
    """The dense-path guard: ``(locality, backend, notice)`` to run ``n_hits`` hits with.

    Full attention (locality method "none", any backend but the approximate ``lsh``) over more
    than ``max_dense_hits`` hits becomes :data:`SPARSE_PATH` (default grid clustering, packed
    backend) and ``notice`` is one line naming the options that keep full attention; otherwise the
    inputs come back unchanged with notice None (also when ``max_dense_hits`` is None)."""
    loc = check_locality(locality)
    if max_dense_hits is None or loc["method"] != "none" or backend == "lsh" or n_hits <= max_dense_hits:
        return loc, backend, None
    method, sparse = SPARSE_PATH
    notice = (f"{n_hits} hits > {max_dense_hits} under full attention (locality none, backend {backend}): "
              f"running --locality {method} --backend {sparse} instead; pass --locality none --backend "
              f"{backend} to keep full attention, or raise --max-dense-hits")
    return {"method": method, "params": {}, "vertex_scan": False, "barrel_views": [], "view_frame": False}, sparse, notice


def tracks_on_device(outputs: Mapping, hit_ids, *, event_id: int = 0, cluster=None, params=None,
                     xyz=None) -> pd.DataFrame:
    """:func:`~trackstudy.postprocessing.track_formation.form_tracks` of a contrastive model's kNN
    track formation, run where the embedding is (:mod:`trackstudy.postprocessing.torch_tracks`)."""
    return tracks_from_embeddings_torch(hit_ids, outputs["embedding"], event_id=event_id, cluster=cluster,
                                        params=params, hit_filter=outputs.get("filter"), xyz=xyz)


def _eta_phi(xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`trackstudy.kinematics.hit_eta_phi` of (3, N) positions on their device (float64)."""
    x, y, z = xyz
    return torch.asinh(z / torch.hypot(x, y).clamp(min=MIN_R_MM)), torch.atan2(y, x)


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


# --------------------------------------------------------------------------------------------
# one event


@torch.no_grad()
def predict_event(model, hits: pd.DataFrame, *, locality: Mapping | None, event_id: int = 0, device=None,
                  pixel_only: bool = False, backend: str | None = None, max_dense_hits: int | None = DENSE_MAX_HITS,
                  notify=None, device_clustering: bool | None = None,
                  device_tracks: bool | None = None, compiled=None, capture: dict | None = None,
                  quality: bool = True, variants=None) -> tuple[pd.DataFrame, dict]:
    """Run one event through the whole pipeline; returns ``(submission, timings)``.

    model: a :class:`trackstudy.models.heads.TrackModel` (e.g. from ``load_run``).
    hits: the event's hits (hit_id, x, y, z in mm; volume_id when ``pixel_only``); no truth needed.
    locality: the run config's locality section ({method, params, vertex_scan, barrel_views}); None or
        method "none" = no clustering (full attention over the event). With ``barrel_views`` every
        barrel hit runs once per view (:func:`view_hits`) and the tracks are resolved across the
        views (:func:`view_tracks`); ``timings["n_rows"]`` then counts the rows through the network.
    device: where to run (None: where the model is; otherwise the model is moved there).
    pixel_only: the model was trained on pixel hits only: only volumes 7, 8, 9 go through it.
    backend: attention backend override (default: the model's ``encoder_cfg.attention``).
    max_dense_hits: the dense-path guard (:func:`guard_dense`; None: off).
    notify: called with the guard's one-line notice when it switches paths (default: a
        :class:`SparsePathWarning`).
    device_clustering: projection, grid / window clustering and input features in torch on
        ``device`` (same labels and features): the hit positions cross to the device once and the
        labels never come back; default: grid on CUDA.
    device_tracks: kNN track formation of a contrastive model in torch on ``device``
        (:mod:`trackstudy.postprocessing.torch_tracks`; same tracks); default: on CUDA.
    compiled: a :class:`trackstudy.models.compiled.BucketedModel` of ``model`` to run the encoder
        with (the event padded to its size bucket, compiled once per bucket).
    capture: a dict to receive what track formation saw, for diagnostics (:mod:`trackstudy.study.misses`):
        of hit-token models ``hit_ids`` (N,) of the hits through the network, ``outputs`` (name ->
        numpy array, one row per hit) and ``cluster`` (N,) locality labels or None; of edge models
        ``hit_ids`` and ``edges`` (the edges of each graph stage: ``predict_graph_event``); of
        every model also ``candidates`` (the track candidates before selection, with their
        track-quality features: :func:`quality_candidates`).
    quality: choose the tracks with the run's track-quality scorer (``model.track_quality``, from
        the run's ``track_quality.npz``) when it has one; False: the candidates as formed.
        The scorer chooses among the candidates of its track-formation ``variants`` pooled.
    variants: track-formation parameter overrides whose candidates are pooled (for fitting a
        scorer: with ``quality=False`` and ``capture``); default: the scorer's.

    submission: DataFrame [event_id, hit_id, track_id] (int64), one row per input hit, input order.
    timings: seconds per stage of :data:`STAGES`, "total" (wall time of the whole call) and "n_hits"
    (hits through the network).
    """
    if not isinstance(hits, pd.DataFrame):
        raise DataError(f"predict_event: hits must be a pandas DataFrame, got {type(hits).__name__}")
    for col in ("hit_id", "x", "y", "z"):
        if col not in hits.columns:
            raise DataError(f"predict_event: hits of event {event_id} have no {col!r} column")
    if getattr(model, "family", None) in EDGE_FAMILIES:  # doublet graph -> edge scores -> tracks (its own stages)
        if locality and check_locality(locality)["barrel_views"]:
            raise ConfigError(f"barrel views: model family {model.family} builds its own graph and has no "
                              "locality clusters (give --barrel-views=none, or use a hit-token run)")
        sub, t = predict_graph_event(model, hits, event_id=event_id, device=device, backend=backend, capture=capture,
                                     quality=getattr(model, "track_quality", None) if quality else None,
                                     variants=variants)
        return sub, {**dict.fromkeys(STAGES, 0.0), **t}
    loc = check_locality(locality)
    dev = _model_device(model) if device is None else resolve_device(device)
    if _model_device(model) != dev:
        model.to(dev)
    backend = backend or model.encoder_cfg.attention
    get_backend(backend, "backend")
    was_training = model.training
    model.eval()
    clock = StageClock(dev)
    t_start = time.perf_counter()
    try:
        with clock("clustering"):
            keep = select_pixel_hits(hits, source=f"event {event_id} hits") if pixel_only else None
            sel = hits.loc[keep] if keep is not None else hits
            if len(sel) == 0:
                raise DataError(f"event {event_id}: no hits to run"
                                + (" in the pixel volumes 7, 8, 9" if pixel_only else ""))
            loc, backend, notice = guard_dense(len(sel), loc, backend, max_dense_hits)
            if notice is not None:
                notice = f"event {event_id}: {notice}"
                if notify is None:
                    warnings.warn(notice, SparsePathWarning, stacklevel=3)
                else:
                    notify(notice)
            on_device = (dev.type == "cuda" and loc["method"] == "grid") if device_clustering is None \
                else device_clustering  # window in torch is a sequential loop: on the CPU unless asked
            xyz, views, net = None, None, sel  # net: the rows through the network
            if loc["barrel_views"]:  # every barrel hit once per view
                views = view_hits(sel, loc)
                net = sel.iloc[views.rows]
                if loc["view_frame"]:  # each barrel row as seen from its view's vertex
                    net = net.assign(z=views.frame_z(sel["z"].to_numpy(np.float64)))
                labels = views.labels
            elif on_device and torch_clusterable(loc):  # the hits go to the device once; labels stay there
                xyz = torch.from_numpy(sel[["x", "y", "z"]].to_numpy(np.float64).T.copy()).to(dev)  # (3, N)
                labels = cluster_xyz_torch(*xyz, loc["method"], **loc["params"])
            else:
                labels = cluster_hits(sel, loc)
        with clock("features"):
            if xyz is not None:
                x = feature_tensor(*xyz, model.feature_cfg, labels)[None]  # (1, N, F)
                eta, phi = (a.float()[None] for a in _eta_phi(xyz))
                lab = labels[None]
            else:
                x = torch.from_numpy(hit_features(net, model.feature_cfg, source=f"event {event_id} hits",
                                                  cluster=labels))
                x = x[None].to(dev)  # (1, N, F)
                eta, phi = (torch.from_numpy(a)[None].to(dev) for a in hit_angles(net))
                lab = None if labels is None else torch.from_numpy(labels)[None].to(dev)
        with clock("masks"):
            if compiled is not None:  # padded to its size bucket
                x, ctx, n_real = compiled.prepare(x, lab, eta, phi)
            else:
                ctx = AttentionContext(torch.ones(1, len(net), dtype=torch.bool, device=dev), lab, eta, phi)
            build_masks(ctx, backend, model.encoder_cfg.lsh)
        with clock("encoder"), autocast_context(dev):
            out = compiled.run(x, ctx, n_real, backend) if compiled is not None else model(x, ctx, backend=backend)
        with clock("track_formation"):
            out = {k: v.float() for k, v in out.items()}  # bf16 under autocast -> float32 for numpy
            ev_out, params = model.event_outputs(out), model_params(model)
            former = tracks_on_device if (dev.type == "cuda" if device_tracks is None else device_tracks) \
                and device_track_formation(ev_out, params) else form_tracks
            scorer = getattr(model, "track_quality", None) if quality else None
            if variants is None and scorer is not None:
                variants = scorer.variants
            if views is not None and scorer is not None and scorer.view_frame not in (None, loc["view_frame"]):
                warnings.warn("the run's track-quality scorer was fitted with "
                              f"view_frame={str(scorer.view_frame).lower()}, these views run with "
                              f"view_frame={str(loc['view_frame']).lower()} (--view-frame): its candidates differ "
                              "from those it learned", QualityFrameWarning, stacklevel=3)
            if views is not None:
                sub, source = view_tracks(former, ev_out, sel, views, event_id=event_id, params=params,
                                          quality=scorer, capture=capture, variants=variants)
            else:
                pos = xyz.T if xyz is not None else sel[["x", "y", "z"]].to_numpy(np.float64)
                subs = [former(ev_out, sel["hit_id"].to_numpy(), event_id=event_id, cluster=labels, params=p, xyz=pos)
                        for p in apply_variants(params, variants)]
                sub = subs[0]
                if scorer is not None or capture is not None:  # the candidates of every variant, scored
                    ids = [np.unique(v["track_id"].to_numpy(), return_inverse=True)[1].ravel() for v in subs]
                    offsets = np.cumsum([0] + [int(i.max()) + 1 for i in ids[:-1]])
                    chosen, _ = quality_candidates(scorer, sel, np.tile(np.arange(len(sel)), len(subs)),
                                                   np.concatenate([i + o for i, o in zip(ids, offsets)]),
                                                   event_id=event_id, capture=capture)
                    if scorer is not None:
                        sub = submission(event_id, sel["hit_id"].to_numpy(), labels_to_track_ids(chosen))
            if keep is not None and not keep.all():  # hits the model never saw: one-hit tracks
                sub = submission(event_id, hits["hit_id"].to_numpy(), with_unseen(sub["track_id"].to_numpy(), keep))
    finally:
        model.train(was_training)
    synchronize(dev)
    timings = {name: clock.seconds.get(name, 0.0) for name in STAGES}
    timings["total"] = time.perf_counter() - t_start
    timings["n_hits"] = int(len(sel))
    if views is not None:
        timings["n_rows"] = int(len(views))  # the rows through the network: barrel hits once per view
    if capture is not None:  # after the clock: copies for diagnostics, not pipeline work
        outputs = {k: _np(v) for k, v in ev_out.items()}
        cluster = None if labels is None else _np(labels)
        if views is not None:  # each hit as its track saw it: the copy in its track's view
            outputs, cluster = {k: v[source] for k, v in outputs.items()}, cluster[source]
        capture.update(hit_ids=sel["hit_id"].to_numpy(), cluster=cluster, outputs=outputs)
    return sub, timings


# --------------------------------------------------------------------------------------------
# many events


def _iter_inputs(events) -> Iterable[tuple[int, pd.DataFrame]]:
    if isinstance(events, (str, os.PathLike)):
        events = iter_events(events, parts=("hits",))
    for i, ev in enumerate(events):
        if isinstance(ev, Event):
            yield int(ev.event_id), ev.hits
        elif isinstance(ev, pd.DataFrame):
            yield i, ev
        elif isinstance(ev, tuple) and len(ev) == 2 and isinstance(ev[1], pd.DataFrame):
            yield int(ev[0]), ev[1]
        else:
            raise DataError(f"predict_events: item {i} is a {type(ev).__name__}; expected an Event, a hits "
                            "DataFrame or an (event_id, hits) pair")


def predict_events(model, events, *, locality: Mapping | None, device=None, pixel_only: bool = False,
                   backend: str | None = None, n_events: int | None = None, progress: bool = True,
                   max_dense_hits: int | None = DENSE_MAX_HITS, notify=None,
                   captures: dict | None = None, quality: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`predict_event` over many events with a progress bar.

    events: a folder of TrackML events (hits are read, nothing else), or an iterable of
    :class:`~trackstudy.data.io.Event`, hits DataFrames (event id = position) or (event_id, hits)
    pairs; at most ``n_events`` of them. Returns ``(submission of all events, timings)`` with one
    timings row per event (event_id, the stages, total, n_hits). ``captures``: a dict to receive,
    per event id, what :func:`predict_event`'s ``capture`` holds. quality: use the run's
    track-quality scorer when it has one (:func:`predict_event`).
    """
    from itertools import islice

    from tqdm.auto import tqdm

    if n_events is not None and int(n_events) < 1:
        raise ConfigError(f"n_events={n_events}: must be >= 1")
    loc = check_locality(locality)
    subs, rows = [], []
    items = _iter_inputs(events)
    if n_events is not None:
        items = islice(items, int(n_events))
    for event_id, hits in tqdm(items, desc="predict", unit="event", total=n_events, disable=not progress):
        capture = {} if captures is not None else None
        sub, t = predict_event(model, hits, locality=loc, event_id=event_id, device=device,
                               pixel_only=pixel_only, backend=backend, max_dense_hits=max_dense_hits,
                               notify=notify, capture=capture, quality=quality)
        if capture:
            captures[event_id] = capture
        subs.append(sub)
        rows.append({"event_id": event_id, **t})
    if not subs:
        raise DataError("predict_events: no events given")
    return pd.concat(subs, ignore_index=True), pd.DataFrame(rows)


__all__ = ["DENSE_MAX_HITS", "LOCALITY_KEYS", "SPARSE_PATH", "STAGES", "QualityFrameWarning", "SparsePathWarning",
           "build_masks",
           "check_locality", "cluster_hits", "guard_dense", "hit_angles", "predict_event", "predict_events",
           "select_pixel_hits", "torch_clusterable", "view_hits", "view_tracks", "with_unseen"]
