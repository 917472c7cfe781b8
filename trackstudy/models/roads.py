"""What the classification and regression heads predict: track parameters and road classes.

Track parameters are those of the hit's particle at its production vertex (particles table:
px, py, pz, q), so every hit of a particle has the same target and the same road class::

    p     = sqrt(px^2 + py^2 + pz^2)        GeV
    theta = arccos(pz / p)                   rad, in [0, pi]
    phi   = atan2(py, px)                    rad, in (-pi, pi]
    q     = charge                           -1 or +1

Road classes (EncCla) come from a nested quantile binning fitted on training data: phi is cut
into ``n_phi`` quantile bins; inside each phi bin theta is cut into ``n_theta`` quantile bins of
the hits of that phi bin; inside each (phi, theta) bin p is cut into ``n_p`` quantile bins; the
charge splits each of those in two. Nesting (rather than independent per-variable quantiles)
makes every class hold about the same number of training hits even though the variables are
correlated. ``n_classes = n_phi * n_theta * n_p * 2``; the seeds used ~1,800 (e.g. 15*15*4*2)
at 10-50 tracks per event and 5,400 in the FlexAttention paper.

Label conventions (shared with :mod:`trackstudy.models.losses`):

* road classes are 0 .. n_classes-1 (class 0 is a real road, never padding);
* noise hits (particle_id 0) get the dedicated class ``n_classes`` when ``noise="class"``
  (the head then has n_classes + 1 outputs, and track formation gives every hit predicted as
  noise its own track), or :data:`IGNORE_INDEX` when ``noise="ignore"`` (excluded from the loss);
* padding always gets :data:`IGNORE_INDEX` (-100, torch's cross-entropy default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trackstudy.errors import ConfigError, DataError

#: Label of hits excluded from the cross-entropy (padding; noise when noise="ignore").
IGNORE_INDEX = -100
#: Regression targets, in this order.
REG_TARGETS = ("theta", "sin_phi", "cos_phi", "q")
#: Padding value of particle ids in batches (noise is 0, real particles > 0).
PAD_PARTICLE_ID = -1


def particle_parameters(px, py, pz, q=None) -> dict[str, np.ndarray]:
    """phi, theta (rad), p (GeV) and q of momenta (arrays, any shape); NaN in, NaN out."""
    px = np.asarray(px, dtype=np.float64)
    py = np.asarray(py, dtype=np.float64)
    pz = np.asarray(pz, dtype=np.float64)
    p = np.sqrt(px * px + py * py + pz * pz)
    with np.errstate(invalid="ignore", divide="ignore"):
        theta = np.arccos(np.clip(pz / p, -1.0, 1.0))
    out = {"phi": np.arctan2(py, px), "theta": theta, "p": p}
    if q is not None:
        out["q"] = np.asarray(q, dtype=np.float64)
    return out


def _require(df: pd.DataFrame, cols: Sequence[str], what: str, source: str) -> None:
    for c in cols:
        if c not in df.columns:
            raise DataError(f"{source}: column {c!r} is missing (needed for {what}); "
                            "use trackstudy.data.io.merge_event to join hits, truth and particles")


def particle_columns(df: pd.DataFrame, source: str, what: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """particle_id (int64) and the parameters of each row's particle; noise rows have NaN parameters."""
    _require(df, ("particle_id", "px", "py", "pz", "q"), what, source)
    pid = df["particle_id"].to_numpy()
    if not np.issubdtype(pid.dtype, np.integer):
        raise DataError(f"{source}: column 'particle_id' must be int64, got {pid.dtype} "
                        "(a float cast makes distinct TrackML particle ids collide)")
    pid = pid.astype(np.int64, copy=False)
    params = particle_parameters(df["px"].to_numpy(), df["py"].to_numpy(), df["pz"].to_numpy(), df["q"].to_numpy())
    real = pid != 0
    for name, values in params.items():
        bad = real & ~np.isfinite(values)
        if bad.any():
            raise DataError(f"{source}: particle {int(pid[bad][0])} (row {int(np.argmax(bad))}) has no finite "
                            f"{name}; is it missing from the particles table?")
    q = params["q"]
    bad = real & ~np.isin(q, (-1.0, 1.0))
    if bad.any():
        raise DataError(f"{source}: column 'q' must be -1 or +1 for real particles, got {q[bad][0]!r} "
                        f"at row {int(np.argmax(bad))}")
    return pid, params


def _quantile_edges(values: np.ndarray, n: int, fallback: np.ndarray | None) -> np.ndarray:
    """n-1 inner edges splitting ``values`` into n equally populated bins (fallback when empty)."""
    if values.size == 0:
        if fallback is None:
            raise DataError("quantile binning: no training values")
        return fallback
    return np.quantile(values, np.arange(1, n) / n)


@dataclass
class RoadBinning:
    """Nested quantile binning of (phi, theta, p, q) into road classes; fit with :meth:`fit`.

    Stored as inner bin edges (the outer bins are open, so values outside the training range
    fall into the first or last bin):

    * ``phi_edges``: (n_phi - 1,)
    * ``theta_edges``: (n_phi, n_theta - 1), per phi bin
    * ``p_edges``: (n_phi, n_theta, n_p - 1), per (phi, theta) bin

    Class index = ((i_phi * n_theta + i_theta) * n_p + i_p) * 2 + i_q with i_q = 0 for q < 0.
    """

    n_phi: int
    n_theta: int
    n_p: int
    phi_edges: np.ndarray
    theta_edges: np.ndarray
    p_edges: np.ndarray

    @property
    def n_classes(self) -> int:
        return self.n_phi * self.n_theta * self.n_p * 2

    @staticmethod
    def _check_bins(n_phi, n_theta, n_p) -> None:
        for name, n in (("n_phi", n_phi), ("n_theta", n_theta), ("n_p", n_p)):
            if not isinstance(n, (int, np.integer)) or n < 1:
                raise ConfigError(f"RoadBinning.{name} must be a positive integer, got {n!r}")

    @classmethod
    def fit(cls, df: pd.DataFrame, n_phi: int = 15, n_theta: int = 15, n_p: int = 4, *,
            per: str = "hit", source: str = "training hits") -> RoadBinning:
        """Fit the edges on the real (non-noise) rows of a merged hits table (one row per hit).

        ``per="hit"`` weights each particle by its number of hits (classes then hold equal hit
        counts, which is what the cross-entropy sees); ``per="particle"`` counts each particle once.
        """
        cls._check_bins(n_phi, n_theta, n_p)
        if per not in ("hit", "particle"):
            raise ConfigError(f"RoadBinning.fit: per must be 'hit' or 'particle', got {per!r}")
        pid, params = particle_columns(df, source, "the road binning")
        real = pid != 0
        if per == "particle":
            _, first = np.unique(pid, return_index=True)
            keep = np.zeros_like(real)
            keep[first] = True
            real &= keep
        phi, theta, p = params["phi"][real], params["theta"][real], params["p"][real]
        if phi.size < n_phi * n_theta * n_p:
            raise DataError(f"{source}: {phi.size} particle hits cannot fill {n_phi}*{n_theta}*{n_p} "
                            "quantile bins; fit on more events or use fewer bins")
        phi_edges = _quantile_edges(phi, n_phi, None)
        i_phi = np.searchsorted(phi_edges, phi, side="right")
        theta_all = _quantile_edges(theta, n_theta, None)
        theta_edges = np.empty((n_phi, n_theta - 1))
        p_edges = np.empty((n_phi, n_theta, n_p - 1))
        for a in range(n_phi):
            sel = i_phi == a
            theta_edges[a] = _quantile_edges(theta[sel], n_theta, theta_all)
            i_theta = np.searchsorted(theta_edges[a], theta[sel], side="right")
            p_sel = p[sel]
            p_parent = _quantile_edges(p_sel, n_p, _quantile_edges(p, n_p, None))
            for b in range(n_theta):
                p_edges[a, b] = _quantile_edges(p_sel[i_theta == b], n_p, p_parent)
        return cls(n_phi, n_theta, n_p, phi_edges, theta_edges, p_edges)

    def classes(self, phi, theta, p, q) -> np.ndarray:
        """Road class (int64) of each (phi, theta, p, q); the inputs must be finite."""
        phi = np.asarray(phi, dtype=np.float64)
        theta = np.asarray(theta, dtype=np.float64)
        p = np.asarray(p, dtype=np.float64)
        q = np.asarray(q, dtype=np.float64)
        i_phi = np.searchsorted(self.phi_edges, phi, side="right")
        # Per-row edges of the row's parent bin; searchsorted row-wise = count of edges <= value.
        i_theta = (self.theta_edges[i_phi] <= theta[:, None]).sum(axis=1)
        i_p = (self.p_edges[i_phi, i_theta] <= p[:, None]).sum(axis=1)
        i_q = (q > 0).astype(np.int64)
        return (((i_phi * self.n_theta + i_theta) * self.n_p + i_p) * 2 + i_q).astype(np.int64)

    def class_centres(self) -> pd.DataFrame:
        """Bin description per class: lower/upper phi, theta, p edges (open ends are +-inf) and q."""
        inf = np.array([np.inf])
        rows = []
        phi_e = np.concatenate([-inf, self.phi_edges, inf])
        for a in range(self.n_phi):
            th_e = np.concatenate([-inf, self.theta_edges[a], inf])
            for b in range(self.n_theta):
                p_e = np.concatenate([-inf, self.p_edges[a, b], inf])
                for c in range(self.n_p):
                    for iq, q in enumerate((-1, 1)):
                        rows.append((((a * self.n_theta + b) * self.n_p + c) * 2 + iq, phi_e[a], phi_e[a + 1],
                                     th_e[b], th_e[b + 1], p_e[c], p_e[c + 1], q))
        return pd.DataFrame(rows, columns=["cls", "phi_lo", "phi_hi", "theta_lo", "theta_hi", "p_lo", "p_hi", "q"])

    def to_state(self) -> dict:
        """Plain dict of ints and nested float lists (safe for torch.load(weights_only=True))."""
        return {"kind": "nested_quantile", "n_phi": int(self.n_phi), "n_theta": int(self.n_theta),
                "n_p": int(self.n_p), "phi_edges": self.phi_edges.tolist(),
                "theta_edges": self.theta_edges.tolist(), "p_edges": self.p_edges.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> RoadBinning:
        try:
            if state.get("kind") != "nested_quantile":
                raise ConfigError(f"road binning state: unknown kind {state.get('kind')!r}")
            n_phi, n_theta, n_p = int(state["n_phi"]), int(state["n_theta"]), int(state["n_p"])
            cls._check_bins(n_phi, n_theta, n_p)
            phi_e = np.asarray(state["phi_edges"], dtype=np.float64).reshape(n_phi - 1)
            th_e = np.asarray(state["theta_edges"], dtype=np.float64).reshape(n_phi, n_theta - 1)
            p_e = np.asarray(state["p_edges"], dtype=np.float64).reshape(n_phi, n_theta, n_p - 1)
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"road binning state is malformed: {exc}") from exc
        return cls(n_phi, n_theta, n_p, phi_e, th_e, p_e)

    def __eq__(self, other) -> bool:
        if not isinstance(other, RoadBinning):
            return NotImplemented
        return ((self.n_phi, self.n_theta, self.n_p) == (other.n_phi, other.n_theta, other.n_p)
                and np.array_equal(self.phi_edges, other.phi_edges)
                and np.array_equal(self.theta_edges, other.theta_edges)
                and np.array_equal(self.p_edges, other.p_edges))


__all__ = ["IGNORE_INDEX", "REG_TARGETS", "RoadBinning", "particle_columns", "particle_parameters"]
