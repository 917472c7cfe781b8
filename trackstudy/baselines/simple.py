"""Baselines that need neither training nor geometry: the truth assignment, random tracks, and the
TrackML challenge's hit shuffling (trackml-library ``randomize.shuffle_hits``).

Each function takes one event (hits; truth where noted) and returns its submission
``hit_id, track_id`` with track ids >= 0 (valid for the official scorer too).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trackstudy.data.io import Event
from trackstudy.errors import ConfigError, DataError


def _need_truth(event: Event, method: str) -> pd.DataFrame:
    if event.truth is None:
        raise DataError(f"event {event.event_id}: the {method} baseline needs the truth (read it with parts "
                        f"including 'truth')")
    return event.truth


def _dense_ids(labels: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Renumber labels to 0..n-1 (in random order when rng is given, as the challenge did)."""
    _, inv = np.unique(labels, return_inverse=True)
    if rng is None:
        return inv.astype(np.int64)
    perm = rng.permutation(inv.max() + 1 if len(inv) else 0)
    return perm[inv].astype(np.int64)


def truth_tracks(event: Event) -> pd.DataFrame:
    """The perfect assignment: one track per particle; each noise hit is its own one-hit track.

    Score 1 on the challenge weights; DM / perfect efficiency 1; no fakes.
    """
    truth = _need_truth(event, "truth")
    pid = truth["particle_id"].to_numpy()
    labels = pid.copy()
    noise = pid == 0
    # noise hits get fresh ids above every particle id (one-hit tracks: never fakes, weight 0)
    labels[noise] = pid.max() + 1 + np.arange(noise.sum())
    return pd.DataFrame({"hit_id": truth["hit_id"].to_numpy(np.int64), "track_id": _dense_ids(labels)})


def random_tracks(event: Event, *, mean_hits: float = 10.0, seed: int | np.random.Generator = 0) -> pd.DataFrame:
    """Every hit in one of ``n_hits / mean_hits`` tracks chosen uniformly at random."""
    if not mean_hits >= 1:
        raise ConfigError(f"mean_hits={mean_hits!r}: must be >= 1")
    rng = np.random.default_rng(seed)
    n = len(event.hits)
    n_tracks = max(1, int(round(n / float(mean_hits))))
    return pd.DataFrame({"hit_id": event.hits["hit_id"].to_numpy(np.int64),
                         "track_id": rng.integers(0, n_tracks, n).astype(np.int64)})


def shuffled_tracks(event: Event, *, rate: float = 0.1, seed: int | np.random.Generator = 0) -> pd.DataFrame:
    """The truth assignment with each hit moved, with probability ``rate``, to a particle drawn
    uniformly from the event's particle ids (noise included), as trackml-library's ``shuffle_hits``
    does; track ids are then renumbered at random. ``rate`` = 0 is the official truth
    submission (all noise in one track), rate = 1 is close to random."""
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"rate={rate!r}: the shuffling probability must be in [0, 1]")
    truth = _need_truth(event, "shuffle")
    rng = np.random.default_rng(seed)
    pid = truth["particle_id"].to_numpy().copy()
    mask = rng.random(len(pid)) < rate
    pid[mask] = rng.choice(np.unique(pid), size=int(mask.sum()))
    return pd.DataFrame({"hit_id": truth["hit_id"].to_numpy(np.int64), "track_id": _dense_ids(pid, rng)})
