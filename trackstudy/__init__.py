"""trackstudy: transformer-based charged-particle track reconstruction on TrackML-format data.

The package follows the data, one sub-package per stage::

    data/            TrackML I/O and validation, detector geometry, the built-in simulator
    locality/        projection onto the R = 91 mm cylinder and z = +-920 mm planes, clustering, masks
    models/          encoder, attention backends, EncCla / EncReg / joint / contrastive heads
    postprocessing/  track formation (model outputs -> Kaggle submissions)
    metrics/         TrackML score, double-majority and other efficiencies, fake/duplicate rates
    baselines/       truth, random and DBSCAN-helix track finders
    training/        trainer, data pipeline, checkpoints
    plots/           figures used by the notebooks and reports
    bench/           benchmarks (attention, latency, scaling)
    cli/             the ``trackstudy`` command
"""

from trackstudy.data.io import (
    Event,
    find_events,
    iter_events,
    merge_event,
    read_event,
    select_volumes,
    write_event,
)

__version__ = "0.1.0"

__all__ = ["Event", "find_events", "iter_events", "merge_event", "read_event", "select_volumes",
           "write_event", "__version__"]
