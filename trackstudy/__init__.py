"""trackstudy: transformer-based charged-particle track reconstruction on TrackML-format data.

The package follows the data, one sub-package per stage; each imports only the ones above it
in this list (the stages), and the layers below the line import the stages::

    config, errors, device, kinematics   paths and constants, error types, devices, hit angles
    data/            TrackML I/O and validation, detector geometry, the built-in simulator
    metrics/         TrackML score, double-majority and other efficiencies, fake/duplicate rates
    locality/        projection onto the R = 91 mm cylinder and z = +-920 mm planes, clustering
    models/          features, encoder, attention backends and their masks, the four heads
    postprocessing/  track formation (model outputs -> Kaggle submissions)
    baselines/       truth, random and DBSCAN-helix track finders
    ---------------
    training/        run configs, targets and batches, the trainer, checkpoints, DDP
    inference        one event or a folder of events through the whole pipeline
    study/           runs, evaluation, summary, real vs simulated, attention maps, reports
    plots/           figures of the notebooks and reports
    bench/           benchmarks that print numbers (attention, latency, scaling)
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
