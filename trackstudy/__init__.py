"""trackstudy: transformer-based charged-particle track reconstruction on TrackML-format data.

The package follows the data, one sub-package per stage. Each part imports only the parts above
it in this list (tests/test_structure.py checks it): the stages first, then the layers that use
them::

    errors, config, device, kinematics   error types, paths and constants, devices and timing, hit angles
    data/            TrackML I/O and validation, detector geometry, the built-in simulator, cuts
    metrics/         TrackML score, double-majority and other efficiencies, fake/duplicate rates
    baselines/       truth, random and DBSCAN-helix track finders
    locality/        projection onto the R = 91 mm cylinder and z = +-920 mm planes, clustering
    graphs/          doublets: pixel layer pairs, geometric windows and the module map, edge features
    models/          features, encoder, attention backends and their masks, the four heads, the GNN,
                     the doublet-token encoder
    postprocessing/  track formation (model outputs -> Kaggle submissions) and its tuning, GNN tracks
    ---------------
    training/        run configs, targets and batches, the trainer, checkpoints, DDP
    inference        one event or a folder of events through the whole pipeline, stage by stage
    bench/           benchmarks that measure (attention backends, latency, scaling)
    study/           runs, held-out scoring, evaluation, summary, real vs simulated, attention maps,
                     reports: what the notebooks, make study and the scripts share
    plots/           figures of the notebooks and reports
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
