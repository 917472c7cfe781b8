"""Reading, validating and writing track submissions (the Kaggle format ``event_id, hit_id, track_id``).

Conventions (shared by every model, baseline and metric of the study):

- A submission assigns hits to tracks. ``track_id`` is an integer; its value carries no
  meaning except that equal ids form one track.
- Hits of the event that the submission leaves out are *unassigned*: they belong to no track.
- A negative ``track_id`` (e.g. DBSCAN's -1) also means unassigned. The official TrackML
  library assumes ``track_id >= 0``; submissions written by trackstudy only use ids >= 0
  (unclustered hits become one-hit tracks), so they stay valid for the official scorer.

Errors are :class:`trackstudy.errors.DataError` with one line naming the file, the column
and the first offending row (0-based data row, header excluded, as in :mod:`trackstudy.data.io`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from trackstudy.data.io import _read_csv, write_table
from trackstudy.errors import DataError

REQUIRED_COLUMNS = ("hit_id", "track_id")
_INT64_MAX = 2**63 - 1


def _rows(df: pd.DataFrame, mask: np.ndarray) -> int:
    """The label of the first row where mask is true (the file row when df came from read_submission)."""
    return int(df.index[int(np.flatnonzero(mask)[0])])


def _exact_int(value) -> int | None:
    """An integer read as text or as a Python integer, exactly; None for anything else."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    return None


def _integer_column(df: pd.DataFrame, col: str, source: str) -> np.ndarray:
    values = df[col]
    if len(values) == 0:
        return np.empty(0, dtype=np.int64)
    if values.dtype.kind == "u":
        arr = values.to_numpy()
        big = arr > np.uint64(_INT64_MAX)
        if big.any():
            row = _rows(df, big)
            raise DataError(f"{source}: column {col}, row {row}: {arr[big][0]} does not fit in int64 "
                            f"(ids are integers up to {_INT64_MAX})")
        return arr.astype(np.int64)
    if values.dtype.kind == "i":
        return values.to_numpy().astype(np.int64, copy=False)
    if values.dtype.kind == "b":
        raise DataError(f"{source}: column {col} holds booleans; expected integers")
    if values.dtype.kind == "f":
        arr = values.to_numpy()
        bad = ~np.isfinite(arr)
        if bad.any():
            row = _rows(df, bad)
            raise DataError(f"{source}: column {col}, row {row}: missing value ({float(arr[bad][0])!r}); "
                            f"every row needs an integer {col}")
        bad = arr != np.round(arr)
        if bad.any():
            row = _rows(df, bad)
            raise DataError(f"{source}: column {col}, row {row}: {float(arr[bad][0])!r} is not an integer")
        # integer-valued floats (e.g. a column that once held NaN) are accepted up to 2**53
        if len(arr) and np.abs(arr).max() > 2.0**53:
            row = _rows(df, np.abs(arr) > 2.0**53)
            raise DataError(f"{source}: column {col}, row {row}: {float(arr[np.abs(arr) > 2.0**53][0])!r} is a float "
                            f"too large to be an exact integer id")
        return arr.astype(np.int64)
    # object / string column: find the first entry that is not an integer
    num = pd.to_numeric(values, errors="coerce")
    arr = num.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = values.isna().to_numpy()
    if missing.any():
        row = _rows(df, missing)
        raise DataError(f"{source}: column {col}, row {row}: missing value; every row needs an integer {col}")
    bad = ~np.isfinite(arr) | (arr != np.round(arr))
    if bad.any():
        row = _rows(df, bad)
        raise DataError(f"{source}: column {col}, row {row}: {values[bad].iloc[0]!r} is not an integer")
    # exact check on the values: a float64 cannot tell 2**63 - 1 from 2**63
    as_int = [_exact_int(v) for v in values]
    big = np.array([v is not None and not -_INT64_MAX - 1 <= v <= _INT64_MAX for v in as_int], dtype=bool)
    big |= np.array([v is None for v in as_int], dtype=bool) & (np.abs(arr) > 2.0**53)
    if big.any():
        row = _rows(df, big)
        raise DataError(f"{source}: column {col}, row {row}: {values[big].iloc[0]} does not fit in int64 "
                        f"(ids are integers up to {_INT64_MAX})")
    exact = [v if v is not None else int(x) for v, x in zip(as_int, arr)]
    return np.array(exact, dtype=np.int64)


def validate_submission(sub: pd.DataFrame, hits_or_truth: pd.DataFrame | None, source: str = "FILE",
                        event_id: int | None = None) -> pd.DataFrame:
    """Check one event's submission and return it cleaned: columns ``hit_id, track_id`` (int64).

    sub: ``hit_id, track_id`` (and optionally ``event_id``); rows are reported by their index
    label, so pass the rows of a file with their original index to get file row numbers.
    hits_or_truth: the event's hits or truth table (anything with ``hit_id``); submission hit
    ids must be among them. None skips that check.
    event_id: when given and ``sub`` has an ``event_id`` column, every row must carry it.
    Raises DataError (one line naming ``source``, the column and the row) on: missing columns,
    non-integer or missing ids, duplicate hit ids, hit ids not in the event.
    Hits of the event absent from ``sub`` are allowed: they are unassigned.
    """
    if not isinstance(sub, pd.DataFrame):
        raise DataError(f"{source}: a submission must be a pandas DataFrame, got {type(sub).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in sub.columns]
    if missing:
        raise DataError(f"{source}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                        f"(a submission has event_id, hit_id, track_id)")
    hit_id = _integer_column(sub, "hit_id", source)
    track_id = _integer_column(sub, "track_id", source)
    if event_id is not None and "event_id" in sub.columns:
        ev = _integer_column(sub, "event_id", source)
        bad = ev != int(event_id)
        if bad.any():
            row = _rows(sub, bad)
            raise DataError(f"{source}: column event_id, row {row}: event {ev[bad][0]} where event {event_id} "
                            f"was expected")
    dup = pd.Series(hit_id).duplicated().to_numpy()
    if dup.any():
        row = _rows(sub, dup)
        where = f" of event {event_id}" if event_id is not None else ""
        raise DataError(f"{source}: column hit_id, row {row}: duplicate hit_id {hit_id[dup][0]}{where} "
                        f"(a hit belongs to at most one track)")
    if hits_or_truth is not None:
        if "hit_id" not in hits_or_truth.columns:
            raise DataError(f"{source}: the reference table has no hit_id column")
        known = np.isin(hit_id, hits_or_truth["hit_id"].to_numpy())
        if not known.all():
            row = _rows(sub, ~known)
            where = f"event {event_id}" if event_id is not None else "the event"
            raise DataError(f"{source}: column hit_id, row {row}: hit {hit_id[~known][0]} is not a hit of {where}")
    return pd.DataFrame({"hit_id": hit_id, "track_id": track_id})


def read_submission(path: str | os.PathLike) -> pd.DataFrame:
    """Read a submission CSV (``event_id, hit_id, track_id``; plain or .gz).

    Checks the columns and integer types (one-line DataError naming file, column and row) and
    returns ``event_id, hit_id, track_id`` as int64 with the file's row numbers as index.
    A file without ``event_id`` is read as one event with ``event_id`` -1 (resolved by the caller).
    Duplicate and unknown hit ids are checked per event by :func:`validate_submission`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    df = _read_csv(path)
    source = str(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                        f"(a submission has event_id, hit_id, track_id)")
    out = pd.DataFrame({
        "event_id": _integer_column(df, "event_id", source) if "event_id" in df.columns
        else np.full(len(df), -1, dtype=np.int64),
        "hit_id": _integer_column(df, "hit_id", source),
        "track_id": _integer_column(df, "track_id", source),
    })
    return out


def write_submission(sub: pd.DataFrame, path: str | os.PathLike, force: bool = False) -> Path:
    """Write ``event_id, hit_id, track_id`` as CSV (gzipped if the name ends in .gz), atomically.

    Refuses to overwrite an existing file unless ``force``.
    """
    missing = [c for c in ("event_id", *REQUIRED_COLUMNS) if c not in sub.columns]
    if missing:
        raise DataError(f"{path}: cannot write a submission without column(s) {', '.join(missing)}")
    df = sub[["event_id", "hit_id", "track_id"]].astype(np.int64)
    return write_table(df, path, force=force)


def split_events(sub: pd.DataFrame, event_ids, source: str = "FILE") -> dict[int, pd.DataFrame]:
    """Split a multi-event submission by ``event_id``; events not in ``event_ids`` are an error.

    A submission without event ids (``event_id`` all -1, see :func:`read_submission`) is
    accepted only when there is exactly one event.
    """
    event_ids = [int(e) for e in event_ids]
    ev = sub["event_id"].to_numpy() if "event_id" in sub.columns else np.full(len(sub), -1)
    if len(ev) and (ev == -1).all():
        if len(event_ids) != 1:
            raise DataError(f"{source}: no event_id column, but the data hold {len(event_ids)} events "
                            f"(add an event_id column)")
        return {event_ids[0]: sub}
    unknown = ~np.isin(ev, event_ids)
    if unknown.any():
        row = _rows(sub, unknown)
        shown = ", ".join(str(e) for e in event_ids[:8]) + (", ..." if len(event_ids) > 8 else "")
        raise DataError(f"{source}: column event_id, row {row}: event {ev[unknown][0]} is not in the data "
                        f"(events there: {shown})")
    out = {}
    for eid, grp in sub.groupby("event_id", sort=True):
        out[int(eid)] = grp
    for eid in event_ids:
        out.setdefault(eid, sub.iloc[:0])
    return out
