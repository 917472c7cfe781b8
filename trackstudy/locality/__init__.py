"""Locality for sparse attention: projection of hits onto detector surfaces, clustering, measurements.

    projection   hits -> barrel cylinder (R*phi, z) / endcap planes (x, y); vertex-z scan
    clustering   dbscan, window, density, grid; ``cluster(projection, method, **params) -> labels``
    measures     reconstructible ratio, cluster DM efficiency, attention reduction, block fraction
    scan         parameter scans, best pick under an attention budget, method comparison table
    views        the barrel clustered from several vertex z values (overlapping clusters), containment by |vz|

Typical use::

    from trackstudy.locality import project_hits, cluster, measure_locality
    labels = cluster(project_hits(hits), "dbscan", barrel_eps=3.0)
    result = measure_locality(event, "dbscan")      # per-region measures, labels, timing
"""

from trackstudy.locality.clustering import METHODS, cluster, cluster_points, cluster_xyz, refine_endcaps, resolve_params
from trackstudy.locality.measures import (
    LocalityResult,
    attention_reduction,
    block_fraction,
    cluster_dm_efficiency,
    cluster_sizes,
    mean_results,
    measure_locality,
    particle_containment,
    reconstructible_ratio,
)
from trackstudy.locality.projection import (
    BARREL,
    ENDCAP_NEG,
    ENDCAP_POS,
    Projection,
    Surfaces,
    project,
    project_hits,
    vertex_z_scan,
)
from trackstudy.locality.scan import DEFAULT_GRIDS, best, best_params, compare_methods, scan

__all__ = [
    "BARREL", "DEFAULT_GRIDS", "ENDCAP_NEG", "ENDCAP_POS", "METHODS", "LocalityResult", "Projection", "Surfaces",
    "attention_reduction", "best", "best_params", "block_fraction", "cluster", "cluster_dm_efficiency",
    "cluster_points", "cluster_sizes", "cluster_xyz", "compare_methods", "mean_results", "measure_locality",
    "particle_containment", "project", "project_hits", "reconstructible_ratio", "refine_endcaps",
    "resolve_params", "scan", "vertex_z_scan",
]
