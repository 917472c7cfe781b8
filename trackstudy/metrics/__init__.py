"""Tracking metrics: TrackML score, double-majority / perfect / LHC efficiencies, fake and
duplicate rates, binned efficiencies with Clopper-Pearson intervals, submission checks.

Every notebook, the CLI and the tests call these functions; definitions are in
:mod:`trackstudy.metrics.matching`.
"""

from trackstudy.metrics.binned import (
    BINNING,
    ETA_EDGES,
    PHI_EDGES,
    PT_EDGES,
    VZ_EDGES,
    binned_efficiency,
    binned_fake_rate,
    binned_ratio,
    clopper_pearson,
)
from trackstudy.metrics.evaluate import (
    Evaluation,
    evaluate_events,
    evaluate_submission_file,
    summarize_events,
    summary_table,
)
from trackstudy.metrics.matching import (
    BARREL_VOLUMES,
    HEADLINE_KEYS,
    Matching,
    evaluate_event,
    match_tracks,
    reconstructable,
    score_from_matching,
    summarize_matching,
    track_parameters,
    trackml_score,
)
from trackstudy.metrics.submission import read_submission, split_events, validate_submission, write_submission

__all__ = [
    "BARREL_VOLUMES", "BINNING", "ETA_EDGES", "HEADLINE_KEYS", "PHI_EDGES", "PT_EDGES", "VZ_EDGES",
    "Evaluation", "Matching", "binned_efficiency", "binned_fake_rate", "binned_ratio", "clopper_pearson",
    "evaluate_event", "evaluate_events", "evaluate_submission_file", "match_tracks", "read_submission",
    "reconstructable", "score_from_matching", "split_events", "summarize_events", "summarize_matching",
    "summary_table", "track_parameters", "trackml_score", "validate_submission", "write_submission",
]
