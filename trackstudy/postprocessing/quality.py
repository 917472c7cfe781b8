"""Track quality: a learned score per track candidate, the way ambiguity solvers of the experiments
choose among candidates that share hits (ACTS's ML ambiguity solver scores tracks with a small
network; ATLAS and CMS cut on fit quality).

At mu = 200 most fake tracks are either three-hit pieces of a low-pT particle whose hits were
split, or four-hit candidates holding two hits each of two particles (measured on the validation
events of the mu = 200 config). Neither is visible to one cut: both are short, both fit a line in
(r, z); together they are visible in the helix fit, the layers crossed and the impact parameters.
:func:`candidate_features` describes each candidate by its hits alone (no model output, so one
scorer serves any hit-token model), a small multi-layer perceptron (scikit-learn's
``MLPClassifier``) learns from simulated events with truth whether a candidate is a
double-majority match, and :func:`select_candidates` builds the event's partition from the
candidates scored above a threshold, best first, each hit in at most one track.

The scorer is stored as plain arrays (``track_quality.npz`` of a run; loaded with
``allow_pickle=False``, so loading executes nothing) and its forward pass is written here in
numpy: a pickled scikit-learn estimator could run code when loaded.

Features of a candidate (:data:`FEATURES`), from its hits' x, y, z (mm), volume and layer:
  nhits; layers (distinct volume/layer pairs); shared (nhits - layers: hits sharing a layer, the
  module overlaps of one particle or another particle's hits); rz_rms (RMS of the z residuals of
  the least-squares line z = z0 + r cot(theta), mm); dz0 (|z0 - the vertex z of the view the
  candidate was formed in|, mm; the view is z = 0 without barrel views); home (whether that view's
  vertex is the one nearest z0); xy_rms (RMS of the radial residuals of the circle fitted in x-y,
  mm); d0 (distance of that circle from the beam line, mm); log_pt (log of the circle's pT,
  GeV, 2 T); rmin and rspan (mm); abs_eta (from the line's slope); barrel (fraction of hits in
  the pixel barrel, volume 8).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from trackstudy.config import B_FIELD_T
from trackstudy.data.io import atomic_write_bytes
from trackstudy.errors import ConfigError, DataError
from trackstudy.kinematics import C_LIGHT
from trackstudy.postprocessing.views import claim_in_order, line_fits, nearest_view

FEATURES = ("nhits", "layers", "shared", "rz_rms", "dz0", "home", "xy_rms", "d0", "log_pt", "rmin", "rspan",
            "abs_eta", "barrel")
#: Candidates of fewer hits are never kept as tracks (the selection's ``min_free``): neither
#: fitted nor scored.
MIN_TRACK_HITS = 2
#: The file of a run that holds its scorer.
QUALITY_FILE = "track_quality.npz"
#: Feature values are clipped to this magnitude (degenerate fits give inf).
_CLIP = 1.0e4
#: How ``TrackQuality.view_frame`` is stored (an integer: the file holds no objects).
_FRAME_CODES = {None: -1, False: 0, True: 1, "both": 2}
#: The pixel barrel volume.
_BARREL_VOLUME = 8


def _circle_fits(t: np.ndarray, x: np.ndarray, y: np.ndarray, n_t: int):
    """Per candidate the algebraic (Kasa) circle x^2 + y^2 + D x + E y + F = 0 through its hits:
    radius, RMS of the radial residuals and distance of the circle from the beam line (mm); NaN
    for candidates of fewer than 3 hits or with collinear hits."""
    w = np.bincount(t, minlength=n_t).astype(np.float64)
    wn = np.maximum(w, 1.0)
    mx, my = np.bincount(t, x, n_t) / wn, np.bincount(t, y, n_t) / wn
    u, v = x - mx[t], y - my[t]
    q = u * u + v * v
    suu, svv, suv = np.bincount(t, u * u, n_t), np.bincount(t, v * v, n_t), np.bincount(t, u * v, n_t)
    suq, svq = np.bincount(t, u * q, n_t), np.bincount(t, v * q, n_t)
    det = suu * svv - suv * suv
    ok = (w >= 3) & (np.abs(det) > 1e-9 * np.maximum(suu * svv, 1e-300))
    det = np.where(ok, det, 1.0)
    a = 0.5 * (svv * suq - suv * svq) / det
    b = 0.5 * (suu * svq - suv * suq) / det
    radius = np.sqrt(a * a + b * b + np.bincount(t, q, n_t) / wn)
    resid = np.hypot(u - a[t], v - b[t]) - radius[t]
    rms = np.sqrt(np.bincount(t, resid * resid, n_t) / wn)
    d0 = np.abs(np.hypot(mx + a, my + b) - radius)
    nan = np.full(n_t, np.nan)
    return np.where(ok, radius, nan), np.where(ok, rms, nan), np.where(ok, d0, nan)


def candidate_features(track, x, y, z, volume, layer, view_z=None, vertices=None) -> np.ndarray:
    """The :data:`FEATURES` of each candidate, (T, 13) float64.

    track (M,): candidate label 0..T-1 of each row (a hit of a candidate); x, y, z (M,) in mm;
    volume, layer (M,): the hits' TrackML volume_id and layer_id; view_z (T,): the vertex z of the
    view each candidate was formed in (default 0); vertices (K,): all views' vertex z (default
    [0]). Undefined fits (fewer than 3 hits, hits at one radius) give -1 for that feature.
    """
    t = np.asarray(track, dtype=np.int64).ravel()
    x, y, z = (np.asarray(a, dtype=np.float64).ravel() for a in (x, y, z))
    volume, layer = (np.asarray(a, dtype=np.int64).ravel() for a in (volume, layer))
    if not (len(t) == len(x) == len(y) == len(z) == len(volume) == len(layer)):
        raise DataError("candidate_features: track, x, y, z, volume and layer need one value per row")
    if len(t) and t.min() < 0:
        raise DataError("candidate_features: candidate labels must be >= 0")
    n_t = int(t.max()) + 1 if len(t) else 0
    view_z = np.zeros(n_t) if view_z is None else np.asarray(view_z, dtype=np.float64).ravel()
    vertices = np.zeros(1) if vertices is None else np.asarray(vertices, dtype=np.float64).ravel()
    if len(view_z) != n_t:
        raise DataError(f"candidate_features: view_z needs one value per candidate ({n_t}), got {len(view_z)}")
    if n_t == 0:
        return np.zeros((0, len(FEATURES)))
    r = np.hypot(x, y)
    size = np.bincount(t, minlength=n_t).astype(np.float64)
    z0, slope, rz_rms = line_fits(t, r, z)
    home = np.isfinite(z0) & (vertices[nearest_view(z0, vertices)] == view_z)
    _, key = np.unique(volume * 1000 + layer, return_inverse=True)  # (volume, layer) -> 0..L-1
    pairs = np.unique(t * (int(key.max()) + 1) + key.ravel())  # one per (candidate, layer)
    layers = np.bincount(pairs // (int(key.max()) + 1), minlength=n_t).astype(np.float64)
    radius, xy_rms, d0 = _circle_fits(t, x, y, n_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pt = np.log(C_LIGHT * B_FIELD_T * radius / 1000.0)
        abs_eta = np.abs(np.arcsinh(1.0 / slope))  # cot(theta) = slope -> eta = asinh(cot theta)
    rmin = np.full(n_t, np.inf)
    np.minimum.at(rmin, t, r)
    rmax = np.full(n_t, -np.inf)
    np.maximum.at(rmax, t, r)
    barrel = np.bincount(t, (volume == _BARREL_VOLUME).astype(np.float64), n_t) / size
    feats = np.stack([size, layers, size - layers, rz_rms, np.abs(z0 - view_z), home.astype(np.float64), xy_rms,
                      d0, log_pt, rmin, rmax - rmin, abs_eta, barrel], axis=1)
    feats = np.where(np.isnan(feats), -1.0, feats)
    return np.clip(feats, -_CLIP, _CLIP)


def candidate_labels(track, particle_id, particle_nhits: dict | None = None) -> np.ndarray:
    """Whether each candidate is a double-majority match (its majority particle, not noise, holds
    > 50% of its hits and the candidate > 50% of the particle's hits): the scorer's training target.

    track (M,): candidate label 0..T-1 of each row; particle_id (M,): the truth particle of each
    row's hit (0: noise); particle_nhits: particle -> its hits in the event (default: counted
    from the rows, right when every hit is in exactly one candidate)."""
    t = np.asarray(track, dtype=np.int64).ravel()
    pid = np.asarray(particle_id, dtype=np.int64).ravel()
    if len(t) != len(pid):
        raise DataError("candidate_labels: track and particle_id need one value per row")
    n_t = int(t.max()) + 1 if len(t) else 0
    good = np.zeros(n_t, dtype=bool)
    if n_t == 0:
        return good
    upid, p = np.unique(pid, return_inverse=True)
    p = p.ravel()
    if particle_nhits is None:
        tot = np.bincount(p, minlength=len(upid))
    else:
        tot = np.array([particle_nhits.get(int(q), 0) for q in upid], dtype=np.int64)
    pair = t * len(upid) + p
    keys, counts = np.unique(pair, return_counts=True)
    kt, kp = keys // len(upid), keys % len(upid)
    order = np.lexsort((-counts, kt))  # per candidate, its most frequent particle first
    first = order[np.r_[True, kt[order][1:] != kt[order][:-1]]]
    size = np.bincount(t, minlength=n_t)
    ct, cp, cc = kt[first], kp[first], counts[first]
    good[ct] = (2 * cc > size[ct]) & (2 * cc > tot[cp]) & (upid[cp] != 0)
    return good


def check_variants(variants) -> list[dict]:
    """Track-formation variants as a list of {parameter name: number or string} dicts (checked
    against the run's parameters where they are applied: :func:`apply_variants`)."""
    if variants is None:
        return []
    if not isinstance(variants, (list, tuple)) or not all(isinstance(v, dict) for v in variants):
        raise ConfigError(f"track quality: variants must be a list of parameter dicts, got {variants!r}")
    out = []
    for v in variants:
        for k, x in v.items():
            if not isinstance(k, str) or isinstance(x, bool) or not isinstance(x, (int, float, str)):
                raise ConfigError(f"track quality: variant {v!r}: names map to numbers or strings")
        out.append(dict(v))
    return out


def apply_variants(params, variants) -> list:
    """The track-formation parameters of each variant: ``params`` (a dataclass such as
    EmbeddingTrackParams) with each variant's overrides; ``[params]`` without variants. An unknown
    parameter name is a ConfigError naming it."""
    variants = check_variants(variants)
    if not variants:
        return [params]
    names = {f.name for f in fields(params)}
    out = []
    for v in variants:
        unknown = sorted(set(v) - names)
        if unknown:
            raise ConfigError(f"track quality: {type(params).__name__} has no parameter {unknown[0]!r} "
                              f"(variants vary: {', '.join(sorted(names))})")
        out.append(replace(params, **v))
    return out


@dataclass
class TrackQuality:
    """A fitted candidate scorer: standardisation, the perceptron's layers (ReLU between them,
    logistic at the end), the threshold a candidate's score must reach to be kept, and the
    track-formation ``variants`` it chooses among: parameter overrides of the run's track
    formation (e.g. ``[{"eps": 0.15, "min_track_pt": 0.0}, {"eps": 0.25, ...}]``) whose candidates
    are pooled before scoring (empty: the run's formation alone). The scorer is fitted on the
    candidates of the same variants (:func:`trackstudy.study.quality.fit_run_quality`).
    ``view_frame``: with barrel views, whether those candidates were formed with the views in their
    own frames (``locality.view_frame``: False, True or "both"); None when fitted without views (or
    before it was recorded)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: list = field(default_factory=list)
    biases: list = field(default_factory=list)
    threshold: float = 0.5
    features: tuple = FEATURES
    variants: list = field(default_factory=list)
    view_frame: bool | str | None = None

    def __post_init__(self):
        self.mean = np.asarray(self.mean, dtype=np.float64).ravel()
        self.scale = np.asarray(self.scale, dtype=np.float64).ravel()
        self.weights = [np.asarray(w, dtype=np.float64) for w in self.weights]
        self.biases = [np.asarray(b, dtype=np.float64).ravel() for b in self.biases]
        self.features = tuple(str(f) for f in self.features)
        n = len(self.features)
        if len(self.mean) != n or len(self.scale) != n or not np.all(self.scale > 0):
            raise DataError(f"track quality: mean and scale need {n} values (scale > 0)")
        if not self.weights or len(self.weights) != len(self.biases):
            raise DataError("track quality: needs as many weight matrices as bias vectors (at least one)")
        width = n
        for w, b in zip(self.weights, self.biases):
            if w.ndim != 2 or w.shape[0] != width or w.shape[1] != len(b):
                raise DataError(f"track quality: a layer of shape {w.shape} does not follow one of width {width}")
            width = w.shape[1]
        if width != 1:
            raise DataError(f"track quality: the last layer must have one output, got {width}")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ConfigError(f"track quality: threshold={self.threshold} must be a probability in [0, 1]")
        self.threshold = float(self.threshold)
        self.variants = check_variants(self.variants)
        if self.view_frame is not None and self.view_frame != "both":
            self.view_frame = bool(self.view_frame)

    def score(self, feats: np.ndarray) -> np.ndarray:
        """Probability (T,) that each candidate (rows of :func:`candidate_features`) is a DM match."""
        h = np.asarray(feats, dtype=np.float64)
        if h.ndim != 2 or h.shape[1] != len(self.features):
            raise DataError(f"track quality: features must be (T, {len(self.features)}), got {h.shape}")
        h = (h - self.mean) / self.scale
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return 1.0 / (1.0 + np.exp(-np.clip(h[:, 0], -50, 50)))

    def candidate_scores(self, feats: np.ndarray) -> np.ndarray:
        """:meth:`score` of the candidates that can be kept (>= :data:`MIN_TRACK_HITS` hits), 0 for
        the others (most candidates of an event are one-hit leftovers: not worth the forward pass)."""
        feats = np.asarray(feats, dtype=np.float64)
        out = np.zeros(len(feats))
        keep = feats[:, 0] >= MIN_TRACK_HITS if feats.ndim == 2 and len(feats) else np.zeros(len(feats), bool)
        if keep.any():
            out[keep] = self.score(feats[keep])
        return out

    def save(self, path: str | os.PathLike, *, force: bool = True) -> Path:
        """Write the scorer as plain arrays (npz) through a temporary file, then rename."""
        arrays = {"mean": self.mean, "scale": self.scale, "threshold": np.array(self.threshold),
                  "features": np.array(self.features), "n_layers": np.array(len(self.weights)),
                  "variants": np.array(json.dumps(self.variants)),  # a JSON string: read without pickle
                  "view_frame": np.array(_FRAME_CODES[self.view_frame])}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        buf = io.BytesIO()  # npz in memory, then one atomic write
        np.savez(buf, **arrays)
        return atomic_write_bytes(path, buf.getvalue(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrackQuality:
        """Read a scorer written by :meth:`save` (arrays only: nothing in the file is executed)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                n = int(f["n_layers"])
                obj = cls(mean=f["mean"], scale=f["scale"], threshold=float(f["threshold"]),
                          features=tuple(f["features"].tolist()),
                          weights=[f[f"w{i}"] for i in range(n)], biases=[f[f"b{i}"] for i in range(n)],
                          variants=json.loads(str(f["variants"])) if "variants" in f.files else [],
                          view_frame={c: v for v, c in _FRAME_CODES.items()}.get(int(f["view_frame"]))
                          if "view_frame" in f.files else None)
        except FileNotFoundError:
            raise DataError(f"{path}: no such track-quality file") from None
        except (KeyError, ValueError, OSError, TypeError) as exc:
            raise DataError(f"{path}: not a track-quality file ({exc})") from None
        except (DataError, ConfigError) as exc:
            raise DataError(f"{path}: {exc}") from None
        if obj.features != FEATURES:
            raise DataError(f"{path}: scores features {list(obj.features)}, this version computes {list(FEATURES)}")
        return obj


def fit_track_quality(feats: np.ndarray, good: np.ndarray, *, hidden=(32, 32), min_hits: int = MIN_TRACK_HITS,
                      max_samples: int = 300_000, seed: int = 0) -> TrackQuality:
    """Fit the scorer on candidates with truth (rows of :func:`candidate_features`, DM labels of
    :func:`candidate_labels`) with scikit-learn's ``MLPClassifier`` (Adam, early stopping on a
    tenth of the rows). Candidates of fewer than ``min_hits`` hits (never kept as tracks) are left
    out; at most ``max_samples`` of the rest, drawn at random with ``seed``. The threshold is 0.5
    until :func:`trackstudy.study.quality.fit_run_quality` chooses it."""
    from sklearn.neural_network import MLPClassifier

    feats = np.asarray(feats, dtype=np.float64)
    good = np.asarray(good, dtype=bool).ravel()
    if feats.ndim != 2 or feats.shape[1] != len(FEATURES) or len(feats) != len(good):
        raise DataError(f"fit_track_quality: features must be (T, {len(FEATURES)}) with one label per row")
    keep = feats[:, 0] >= min_hits
    feats, good = feats[keep], good[keep]
    if len(np.unique(good)) < 2:
        raise DataError("fit_track_quality: the candidates need both good and fake examples "
                        f"(got {int(good.sum())} good of {len(good)})")
    rng = np.random.default_rng(seed)
    if len(feats) > max_samples:
        pick = rng.choice(len(feats), max_samples, replace=False)
        feats, good = feats[pick], good[pick]
    mean, scale = feats.mean(0), feats.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    clf = MLPClassifier(tuple(int(h) for h in hidden), max_iter=200, early_stopping=True, random_state=seed)
    clf.fit((feats - mean) / scale, good)
    return TrackQuality(mean=mean, scale=scale, weights=list(clf.coefs_), biases=list(clf.intercepts_))


def select_candidates(n_hits: int, rows, track, score, threshold: float, *, min_free: int = MIN_TRACK_HITS
                      ) -> tuple[np.ndarray, np.ndarray]:
    """One partition of the hits from scored candidates that may share hits: the candidates scored
    >= ``threshold`` are taken best first, each claiming its still free hits when at least
    ``min_free`` of them, and more than half of its hits, are free; hits no candidate claimed are
    one-hit tracks. rows (M,): the hit of each candidate row; track (M,): its candidate label
    0..T-1; score (T,). Returns ``(labels, claimed)``: (n_hits,) int64 consecutive track labels
    and the candidate each hit went to (-1: none).

    A greedy pass, as ambiguity solvers do: no library solves this set packing, and the order
    decides every conflict by a rule one can check by hand."""
    rows, t = (np.asarray(a, dtype=np.int64).ravel() for a in (rows, track))
    score = np.asarray(score, dtype=np.float64).ravel()
    if len(rows) != len(t):
        raise DataError(f"select_candidates: rows and track have different lengths ({len(rows)}, {len(t)})")
    if len(rows) and (rows.min() < 0 or rows.max() >= n_hits):
        raise DataError(f"select_candidates: rows must index the {n_hits} hits")
    n_t = int(t.max()) + 1 if len(t) else 0
    if len(t) and t.min() < 0:
        raise DataError("select_candidates: candidate labels must be >= 0")
    if len(score) != n_t:
        raise DataError(f"select_candidates: score needs one value per candidate ({n_t}), got {len(score)}")
    if min_free < 1:
        raise ConfigError(f"select_candidates: min_free={min_free} must be >= 1")
    size = np.bincount(t, minlength=n_t)
    order = np.lexsort((np.arange(n_t), -score))
    order = order[(score[order] >= threshold) & (size[order] >= min_free)]
    return claim_in_order(n_hits, rows, t, order, min_free=min_free)


def choose_candidates(quality, cols: dict, rows, track, view=None, vertices=None, *, capture: dict | None = None
                      ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The candidates' features (:func:`candidates_features`; ``capture`` receives ``candidates``:
    {rows, track (0..T-1), features (T, F)}, for fitting a scorer) and, with a scorer ``quality``,
    its choice among them (:func:`select_candidates` at its threshold). Returns ``(t, labels,
    claimed)``: the candidate labels made consecutive, then the selection's track labels and claims
    over the hits of ``cols`` (None, None without a scorer)."""
    t, feats = candidates_features(cols, rows, track, view, vertices)
    if capture is not None:
        capture["candidates"] = {"rows": np.asarray(rows, dtype=np.int64).ravel(), "track": t, "features": feats}
    if quality is None:
        return t, None, None
    labels, claimed = select_candidates(len(cols["x"]), rows, t, quality.candidate_scores(feats), quality.threshold)
    return t, labels, claimed


def hit_columns(hits, *, source: str = "hits") -> dict:
    """The columns of a hits table the features need (x, y, z, volume_id, layer_id), as arrays;
    a DataError naming the missing column otherwise."""
    missing = [c for c in ("x", "y", "z", "volume_id", "layer_id") if c not in hits.columns]
    if missing:
        raise DataError(f"{source}: the track-quality scorer needs the column {missing[0]!r} of the hits "
                        "(TrackML hits files have it; run without the scorer: --no-quality)")
    return {c: hits[c].to_numpy() for c in ("x", "y", "z", "volume_id", "layer_id")}


def candidates_features(cols: dict, rows, track, view=None, vertices=None) -> tuple[np.ndarray, np.ndarray]:
    """Candidate labels made consecutive and their features: rows (M,) index the hits of ``cols``
    (:func:`hit_columns`), track (M,) any int candidate label, view (M,) the view index of each
    row into ``vertices`` (none: one view at z = 0). Returns ``(t, features)``: (M,) labels 0..T-1
    and (T, 13) features."""
    rows = np.asarray(rows, dtype=np.int64).ravel()
    _, t = np.unique(np.asarray(track, dtype=np.int64).ravel(), return_inverse=True)
    t = t.ravel()
    n_t = int(t.max()) + 1 if len(t) else 0
    view_z = None
    if view is not None and vertices is not None:
        view_z = np.zeros(n_t)
        view_z[t] = np.asarray(vertices, dtype=np.float64)[np.asarray(view, dtype=np.int64).ravel()]
    feats = candidate_features(t, *(cols[c][rows] for c in ("x", "y", "z", "volume_id", "layer_id")),
                               view_z=view_z, vertices=vertices)
    return t, feats


__all__ = ["FEATURES", "MIN_TRACK_HITS", "QUALITY_FILE", "TrackQuality", "apply_variants", "candidate_features", "candidate_labels",
           "check_variants",
           "candidates_features", "choose_candidates", "fit_track_quality", "hit_columns", "select_candidates"]
