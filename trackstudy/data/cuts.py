"""Event cuts: reduce any TrackML event (real or simulated) the way the real reduced sets were made.

One function, :func:`cut_event`, applies an :class:`EventCuts` in a fixed order:

1. ``volumes``: keep the hits of these volumes (e.g. the pixel volumes 7, 8, 9);
2. ``min_pt``: drop the hits of particles with pT < min_pt (GeV, from the particles table);
3. ``one_hit_per_layer``: keep one hit per particle per (volume, layer): ``"innermost"`` keeps
   the hit at the smallest transverse radius (the heptrkx graphs' rule; the real ``pix1gev`` set
   keeps the innermost of every module-overlap pair of event 1001), ``"first"`` the lowest hit id
   (hepqpr-qallse's ``drop_duplicates(keep="first")`` on hit-id-ordered files; ``barrel20``);
4. ``particle_fraction``: keep all the hits of a random ``floor(f * n)`` of the n particles that
   still have hits (hepqpr-qallse's sampling);
5. ``noise``: keep every noise hit (True), none (False) or a random ``floor(f * n)`` of them (f);
6. particles: only those with kept hits, ``nhits`` recounted on the kept hits;
   weights: the challenge's scheme recomputed on the kept hits (``weights="recompute"``,
   :func:`trackstudy.data.weights.trackml_weights`) or the event's weights renormalised to sum 1
   (``"renormalise"``).

Hit ids are kept (the real reduced sets keep the original ids), rows stay in their order.
:data:`LIKE` holds the cuts that made each real set; ``cut_event(event, "barrel20", rng=1)``
reduces a simulated event like it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import pandas as pd

from trackstudy.config import PIXEL_VOLUMES
from trackstudy.data.io import Event
from trackstudy.data.weights import trackml_weights
from trackstudy.errors import ConfigError, DataError

#: Rules of ``one_hit_per_layer``: which hit of a particle stays on a (volume, layer).
LAYER_RULES = ("innermost", "first")
WEIGHT_MODES = ("recompute", "renormalise")
BARREL_VOLUMES = (8, 13, 17)


@dataclass(frozen=True)
class EventCuts:
    """What :func:`cut_event` keeps (None / True: no cut). See the module docstring for the order.

    volumes: volume ids to keep. min_pt: GeV. one_hit_per_layer: None, "innermost" or "first"
    (True means "innermost"). particle_fraction: in (0, 1]. noise: True, False or a fraction in
    [0, 1]. weights: "recompute" or "renormalise". weights_phase: 1 (accuracy) or 2 (throughput).
    """

    volumes: tuple[int, ...] | None = None
    min_pt: float | None = None
    one_hit_per_layer: str | None = None
    particle_fraction: float | None = None
    noise: bool | float = True
    weights: str = "recompute"
    weights_phase: int = 1

    def __post_init__(self):
        def bad(name, why):
            raise ConfigError(f"{name}={getattr(self, name)!r}: {why}")

        if self.volumes is not None:
            try:
                vols = tuple(sorted({int(v) for v in self.volumes}))
            except (TypeError, ValueError):
                bad("volumes", "expected volume ids (integers), e.g. 8,13,17")
            if not vols or min(vols) < 0:
                bad("volumes", "expected one or more volume ids >= 0, e.g. 8,13,17")
            object.__setattr__(self, "volumes", vols)
        if self.min_pt is not None:
            if not _is_number(self.min_pt) or not (math.isfinite(float(self.min_pt)) and float(self.min_pt) >= 0):
                bad("min_pt", "expected a transverse momentum >= 0 (GeV)")
            object.__setattr__(self, "min_pt", float(self.min_pt))
        rule = self.one_hit_per_layer
        if rule is True:
            rule = "innermost"
        elif rule is False:
            rule = None
        if rule is not None and rule not in LAYER_RULES:
            bad("one_hit_per_layer", f"expected one of {', '.join(LAYER_RULES)} (or None)")
        object.__setattr__(self, "one_hit_per_layer", rule)
        f = self.particle_fraction
        if f is not None:
            if not _is_number(f) or not (0.0 < float(f) <= 1.0):
                bad("particle_fraction", "expected a fraction in (0, 1]")
            object.__setattr__(self, "particle_fraction", float(f))
        if not isinstance(self.noise, (bool, np.bool_)):
            if not _is_number(self.noise) or not (0.0 <= float(self.noise) <= 1.0):
                bad("noise", "expected True (keep all), False (drop all) or a fraction in [0, 1]")
            object.__setattr__(self, "noise", float(self.noise))
        else:
            object.__setattr__(self, "noise", bool(self.noise))
        if self.weights not in WEIGHT_MODES:
            bad("weights", f"expected one of {', '.join(WEIGHT_MODES)}")
        if self.weights_phase not in (1, 2):
            bad("weights_phase", "expected 1 (accuracy phase) or 2 (throughput phase)")

    @property
    def is_identity(self) -> bool:
        """True when nothing is cut (the weights may still be recomputed)."""
        return (self.volumes is None and self.min_pt is None and self.one_hit_per_layer is None
                and self.particle_fraction is None and self.noise is True)

    @property
    def random(self) -> bool:
        """True when the cut draws random numbers (particle or noise sampling)."""
        return self.particle_fraction is not None or not isinstance(self.noise, bool)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["volumes"] = list(self.volumes) if self.volumes is not None else None
        return d


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


#: The cuts that made the real reduced sets in data/real/ (see data/real/README.md).
LIKE: dict[str, EventCuts] = {
    # heptrkx "plus 1 GeV" graphs of event 1001: pixel volumes, particles with pT > 1 GeV, the
    # innermost hit per particle and layer, no noise
    "pix1gev": EventCuts(volumes=PIXEL_VOLUMES, min_pt=1.0, one_hit_per_layer="innermost", noise=False),
    # hepqpr-qallse dataset tool on event 1000: barrel volumes, double hits dropped (first hit id),
    # 20% of the particles with barrel hits, 20% of the barrel noise
    "barrel20": EventCuts(volumes=BARREL_VOLUMES, one_hit_per_layer="first", particle_fraction=0.2, noise=0.2),
    # gnn_tracking's test event: all hits of ~5% of the particles and ~5% of the noise, every volume
    "mini": EventCuts(particle_fraction=0.05, noise=0.05, weights_phase=2),
}


def resolve_cuts(cuts: EventCuts | str | None = None, **overrides) -> EventCuts:
    """An :class:`EventCuts` from a name of :data:`LIKE`, an EventCuts or None, with field overrides."""
    if cuts is None:
        base = EventCuts()
    elif isinstance(cuts, EventCuts):
        base = cuts
    elif isinstance(cuts, str):
        if cuts not in LIKE:
            raise ConfigError(f"like={cuts!r}: expected one of {', '.join(LIKE)}")
        base = LIKE[cuts]
    else:
        raise ConfigError(f"cuts={cuts!r}: expected an EventCuts, a name ({', '.join(LIKE)}) or None")
    names = {f.name for f in fields(EventCuts)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown cut(s) {', '.join(unknown)}; expected some of {', '.join(sorted(names))}")
    return replace(base, **overrides) if overrides else base


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def one_hit_per_layer_mask(hits: pd.DataFrame, particle_id: np.ndarray, rule: str = "innermost") -> np.ndarray:
    """Boolean (N,) mask keeping one hit per particle per (volume, layer); noise (id 0) is kept.

    rule: ``"innermost"`` = smallest sqrt(x^2 + y^2) (ties: lowest hit id), ``"first"`` = lowest hit id.
    """
    if rule not in LAYER_RULES:
        raise ConfigError(f"one_hit_per_layer={rule!r}: expected one of {', '.join(LAYER_RULES)}")
    pid = np.asarray(particle_id, np.int64)
    n = len(pid)
    keep = pid == 0
    sig = np.flatnonzero(~keep)
    if len(sig) == 0:
        return keep
    vol = hits["volume_id"].to_numpy()[sig]
    lay = hits["layer_id"].to_numpy()[sig]
    hid = hits["hit_id"].to_numpy()[sig]
    if rule == "innermost":
        r = np.hypot(hits["x"].to_numpy(np.float64)[sig], hits["y"].to_numpy(np.float64)[sig])
        order = np.lexsort((hid, r, lay, vol, pid[sig]))
    else:
        order = np.lexsort((hid, lay, vol, pid[sig]))
    p, v, l = pid[sig][order], vol[order], lay[order]
    first = np.r_[True, (p[1:] != p[:-1]) | (v[1:] != v[:-1]) | (l[1:] != l[:-1])]
    out = np.zeros(n, bool)
    out[keep] = True
    out[sig[order[first]]] = True
    return out


def cut_event(event: Event, cuts: EventCuts | str | None = None, *, rng: np.random.Generator | int | None = None,
              **overrides) -> Event:
    """The event reduced by ``cuts`` (an :class:`EventCuts`, a name of :data:`LIKE` or None) with
    keyword overrides of its fields, e.g. ``cut_event(ev, volumes=(8,), noise=False)`` or
    ``cut_event(ev, "barrel20", rng=1)``. Random sampling (particle_fraction, a noise fraction)
    draws from ``rng`` (a Generator or a seed). Hit ids are kept; truth, cells and particles follow.
    """
    c = resolve_cuts(cuts, **overrides)
    truth, particles = event.truth, event.particles
    needs_truth = (c.min_pt is not None or c.one_hit_per_layer is not None or c.particle_fraction is not None
                   or c.noise is not True)
    if needs_truth and truth is None:
        raise DataError(f"event {event.event_id}: these cuts need the truth (read the event with parts including "
                        f"'truth')")
    if c.min_pt is not None and particles is None:
        raise DataError(f"event {event.event_id}: min_pt needs the particles (read the event with parts including "
                        f"'particles')")
    hits = event.hits
    keep = np.ones(len(hits), bool)
    pid = None
    if truth is not None:
        if len(truth) != len(hits) or not np.array_equal(truth["hit_id"].to_numpy(), hits["hit_id"].to_numpy()):
            # align truth rows to hit rows (validated events match one to one, maybe in another order)
            truth = truth.set_index("hit_id").loc[hits["hit_id"].to_numpy()].reset_index()
        pid = truth["particle_id"].to_numpy(np.int64)
    if c.volumes is not None:
        keep &= hits["volume_id"].isin(c.volumes).to_numpy()
    if c.min_pt is not None:
        ppt = np.hypot(particles["px"].to_numpy(np.float64), particles["py"].to_numpy(np.float64))
        fast = particles["particle_id"].to_numpy(np.int64)[ppt >= c.min_pt]
        keep &= (pid == 0) | np.isin(pid, fast)
    if c.one_hit_per_layer is not None:
        idx = np.flatnonzero(keep)
        sub = one_hit_per_layer_mask(hits.iloc[idx], pid[idx], c.one_hit_per_layer)
        keep[idx[~sub]] = False
    if c.random:
        gen = _rng(rng)
        if c.particle_fraction is not None:
            with_hits = np.unique(pid[keep & (pid != 0)])
            k = int(math.floor(c.particle_fraction * len(with_hits) + 1e-9))
            chosen = np.sort(gen.choice(with_hits, size=k, replace=False)) if k else np.zeros(0, np.int64)
            keep &= (pid == 0) | np.isin(pid, chosen)
        if not isinstance(c.noise, bool):
            noise_idx = np.flatnonzero(keep & (pid == 0))
            k = int(math.floor(c.noise * len(noise_idx) + 1e-9))
            chosen = gen.choice(noise_idx, size=k, replace=False) if k else np.zeros(0, np.int64)
            keep[noise_idx] = False
            keep[chosen] = True
    if c.noise is False:
        keep &= pid != 0
    if not keep.any():
        raise DataError(f"event {event.event_id}: no hits left after the cuts ({_describe(c)})")
    new_hits = hits.loc[keep].reset_index(drop=True)
    new_truth = truth.loc[keep].reset_index(drop=True) if truth is not None else None
    new_cells = None
    if event.cells is not None:
        new_cells = event.cells.loc[event.cells["hit_id"].isin(new_hits["hit_id"]).to_numpy()].reset_index(drop=True)
    new_particles = particles
    if particles is not None and new_truth is not None:
        counts = new_truth.loc[new_truth["particle_id"] != 0, "particle_id"].value_counts()
        if c.is_identity:
            new_particles = particles.copy()
        else:
            new_particles = particles[particles["particle_id"].isin(counts.index)].copy()
        new_particles["nhits"] = new_particles["particle_id"].map(counts).fillna(0).astype(np.int32).to_numpy()
        new_particles = new_particles.drop(columns=[c_ for c_ in ("nhits_sel",) if c_ in new_particles.columns])
        new_particles = new_particles.reset_index(drop=True)
    if new_truth is not None:
        new_truth = new_truth.copy()
        if c.weights == "recompute" and new_particles is not None:
            w = trackml_weights(new_truth, new_particles, c.weights_phase)
        else:
            w = new_truth["weight"].to_numpy(np.float64)
            total = w.sum()
            w = w / total if total > 0 else w
        new_truth["weight"] = w.astype(np.float32)
    return replace(event, hits=new_hits, truth=new_truth, particles=new_particles, cells=new_cells)


def _describe(c: EventCuts) -> str:
    d = {k: v for k, v in c.as_dict().items() if v != getattr(EventCuts(), k)}
    return ", ".join(f"{k}={v}" for k, v in d.items()) or "no cuts"


def hits_per_particle_layer(event: Event) -> pd.DataFrame:
    """Signal hits counted per (particle_id, volume_id, layer_id): column ``n`` (> 1 = a double hit)."""
    if event.truth is None:
        raise DataError(f"event {event.event_id}: counting hits per particle needs the truth")
    m = event.hits[["hit_id", "volume_id", "layer_id"]].merge(event.truth[["hit_id", "particle_id"]], on="hit_id")
    m = m[m["particle_id"] != 0]
    return m.groupby(["particle_id", "volume_id", "layer_id"]).size().rename("n").reset_index()


__all__ = ["BARREL_VOLUMES", "EventCuts", "LAYER_RULES", "LIKE", "WEIGHT_MODES", "cut_event", "hits_per_particle_layer",
           "one_hit_per_layer_mask", "resolve_cuts"]
