"""Named datasets for notebooks and training: simulated folders made on demand, real folders as given.

A simulated dataset lives in ``data/sim/<name>/`` with a ``manifest.json`` recording the
simulator settings, the seed and the number of events. :func:`ensure_simulated` makes it once
(into a temporary folder, renamed into place when complete, so an interrupted or concurrent
run never leaves half a dataset) and afterwards only checks that the manifest matches: a
folder holding another simulation is an error, never overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from trackstudy.config import DATA_DIR, REAL_DATA_DIR, resolve_path
from trackstudy.data.io import atomic_write_bytes, find_events
from trackstudy.data.simulate import SIMULATOR_VERSION, SimulationConfig, config_dict, parse_tracks, simulate_dataset
from trackstudy.errors import ConfigError, DataError

MANIFEST = "manifest.json"


def dataset_name(pileup: float, n_events: int, seed: int, pixel_only: bool = False, tracks: str | None = None,
                 hard_scatter: bool = True) -> str:
    """Folder name of a simulated dataset, e.g. ``mu200-pixel-n5-s1-v2`` or ``mu200-pixel-t10_50-n100-s3-v2``
    (``v2``: :data:`~trackstudy.data.simulate.SIMULATOR_VERSION`, so a new simulator never reuses old events)."""
    name = f"mu{pileup:g}"
    if pixel_only:
        name += "-pixel"
    if tracks:
        name += "-t" + str(tracks).replace(":", "_")
    if not hard_scatter:
        name += "-nohs"
    return f"{name}-n{int(n_events)}-s{int(seed)}-v{SIMULATOR_VERSION}"


def ensure_simulated(n_events: int, pileup: float, seed: int, *, pixel_only: bool = False,
                     tracks: str | None = None, hard_scatter: bool = True, out_dir: str | os.PathLike | None = None,
                     progress: bool = True) -> Path:
    """The folder of a simulated dataset, simulating it first if it does not exist yet.

    ``tracks``: ``"MIN:MAX"`` keeps a random 10-50-style subset of particles per event.
    Returns the folder (default ``data/sim/<dataset_name(...)>``).
    """
    config = SimulationConfig(pileup=float(pileup), pixel_only=bool(pixel_only), hard_scatter=bool(hard_scatter),
                              tracks=parse_tracks(tracks) if tracks else None)
    manifest = {"simulator": json.loads(json.dumps(asdict(config))), "n_events": int(n_events), "seed": int(seed),
                "simulator_version": SIMULATOR_VERSION}
    out = resolve_path(out_dir) if out_dir else DATA_DIR / "sim" / dataset_name(
        pileup, n_events, seed, pixel_only, tracks, hard_scatter)
    if out.exists():
        _check_manifest(out, manifest)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        simulate_dataset(tmp, int(n_events), config, seed=int(seed), progress=progress)
        atomic_write_bytes(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
        try:
            os.rename(tmp, out)
        except OSError:
            if not out.exists():
                raise
            # another process finished the same dataset first: use theirs if it matches
            shutil.rmtree(tmp, ignore_errors=True)
            _check_manifest(out, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_manifest(out: Path, expected: dict) -> None:
    path = out / MANIFEST
    if not path.is_file():
        raise DataError(f"{out}: exists but has no {MANIFEST}; it is not a dataset made by ensure_simulated "
                        f"(choose another folder, or delete this one to re-simulate)")
    found = json.loads(path.read_text())
    if isinstance(found.get("simulator"), dict):
        # a simulator option added later, at the default that reproduces the old events byte for
        # byte, is absent from older manifests: absent means the default, not a different simulation

        sim = dict(found["simulator"])
        if "mu" in sim and "pileup" not in sim:  # manifests written before the field was named pileup
            sim["pileup"] = sim.pop("mu")
        found["simulator"] = {**config_dict(SimulationConfig()), **sim}
    if found != expected:
        diff = [k for k in set(found["simulator"]) | set(expected["simulator"])
                if found["simulator"].get(k) != expected["simulator"].get(k)]
        diff += [k for k in ("n_events", "seed", "simulator_version") if found.get(k) != expected.get(k)]
        raise DataError(f"{out}: holds a different simulation (differs in {', '.join(sorted(diff))}); "
                        f"choose another folder, or delete this one to re-simulate")
    n_found = len(find_events(out))
    if n_found != expected["n_events"]:
        raise DataError(f"{out}: {n_found} events for {expected['n_events']} in its manifest (incomplete?)")


def resolve_data(data_dir: str | os.PathLike | None, *, n_events: int, pileup: float, seed: int,
                 pixel_only: bool = False, tracks: str | None = None, progress: bool = True) -> Path:
    """A notebook's data folder: ``data_dir`` when given (relative to the project root), else the
    simulated dataset for (pileup, n_events, seed, ...), made if missing."""
    if data_dir:
        path = resolve_path(data_dir)
        if not path.is_dir():
            raise DataError(f"{path}: no such data folder")
        return path
    return ensure_simulated(n_events, pileup, seed, pixel_only=pixel_only, tracks=tracks, progress=progress)


#: The real TrackML samples shipped in data/real/ (see its README.md).
REAL_SETS = ("mini", "full", "pix1gev", "barrel20")


def real_trackml_dir(kind: str = "mini") -> Path:
    """A folder of the real TrackML samples shipped beside the project: ``mini`` (a reduced event
    with truth), ``full`` (full-size hits of event 1001, particles of events 1000 and 1001),
    ``pix1gev`` (event 1001: pixel hits of the pT > 1 GeV particles, estimated momenta) or
    ``barrel20`` (event 1000: barrel hits of 20% of the particles and 20% of the noise)."""
    if kind not in REAL_SETS:
        raise ConfigError(f"kind={kind!r}: expected one of {', '.join(map(repr, REAL_SETS))}")
    path = REAL_DATA_DIR / kind
    if not path.is_dir():
        raise DataError(f"{path}: the real TrackML samples are not there (set TRACKSTUDY_TRACKML to their folder)")
    return path
