"""Write notebooks/02_projection_clustering.ipynb (without outputs) with nbformat.

    .venv/bin/python scripts/make_nb02.py [--force]
"""

from notebook_builder import main

TITLE = """# 02 · Projection and clustering: locality for sparse attention

The FlexAttention tracking paper restricts attention to clusters of hits that lie close in
direction. This notebook builds that step and measures whether a clustering choice is good.

**Shows**: the projection surfaces (a cylinder at R = 91 mm for the barrel, planes at
z = ±920 mm for the endcaps) with the pixel layers; one event's projected hits coloured by
particle and by cluster; the comparison table of the four clustering methods (DBSCAN,
iterative window, density peaks, grid window) per region — reconstructible ratio, cluster
double-majority efficiency, clusters, tracks, attention reduction — on simulated pixel events,
on the real reduced TrackML event and (sizes and reduction only: no truth) on the real
full-size hits of event 1001; cluster sizes; the endcap vertex-z refinement; a parameter scan.

**Inputs**: events simulated here with `trackstudy.data.simulate` (pixel volumes, seeded);
the real samples under `trackstudy.config.SHARED_TRACKML_DIR`.
**Outputs**: figures and tables in this notebook only.

The defaults below are the quick CI smoke size (a low pile-up event); the study uses
`pileup = 200`, `n_events = 5` (`params/full.yaml`)."""

PARAMS = """pileup = 20.0          # simulated pile-up mu (study: 200)
n_events = 2           # simulated events averaged in the tables (study: 5)
seed = 1               # simulation seed
scan_method = "dbscan"  # method of the parameter scan
max_reduction = 0.01   # attention budget of the scan's best pick"""

CELLS = [
    ("md", "## Setup"),
    ("code", """import pandas as pd

from trackstudy.config import SHARED_TRACKML_DIR
from trackstudy.data.io import read_event
from trackstudy.data.simulate import SimulationConfig, event_rngs, read_particles, simulate_event, simulate_from_particles
from trackstudy.locality.clustering import METHODS
from trackstudy.locality.measures import cluster_sizes, measure_locality
from trackstudy.locality.scan import DEFAULT_GRIDS, best, best_params, compare_methods, scan
from trackstudy.plots.locality import plot_cluster_sizes, plot_projection, plot_scan, plot_surfaces

pd.set_option("display.precision", 4)
TABLE = ["method", "region", "reconstructible_ratio", "contained_fraction", "cluster_dm_efficiency",
         "n_clusters", "n_tracks", "attention_reduction", "block_fraction"]"""),
    ("md", """## The projection surfaces

Each hit is carried along the straight line from the origin (or a candidate vertex z) to
whichever surface that line meets first: the green cylinder (coordinates R·φ, z) or a red plane
(coordinates x, y). Hits between the dashed lines go to the barrel."""),
    ("code", "plot_surfaces();"),
    ("md", "## Simulated pixel events"),
    ("code", """config = SimulationConfig(mu=pileup, pixel_only=True)
events = [simulate_event(config, rng, event_id=1000 + i) for i, rng in enumerate(event_rngs(seed, n_events))]
events"""),
    ("md", """## One event, projected and clustered (DBSCAN, default parameters)

Per region: reconstructible ratio (particles with pT > 0.9 GeV and ≥ 3 hits having ≥ 50% of
their hits in one cluster), contained fraction (all hits in one cluster), cluster DM
efficiency, cluster counts and sizes, attention reduction Σ s² / N² and the fraction of
128 × 128 blocks a block mask computes."""),
    ("code", """result = measure_locality(events[0], "dbscan")
pd.DataFrame(result.regions)"""),
    ("md", "Projected hits coloured by particle (noise in grey) and by cluster (zoom in: tracks are short streaks)."),
    ("code", """plot_projection(result.projection, result.particle_id, kind="particle").show()"""),
    ("code", """plot_projection(result.projection, result.labels, kind="cluster").show()"""),
    ("md", """## Comparison of the four methods

Default parameters of each method (`trackstudy.locality.clustering.METHODS`), event means.
The seed slides report, at μ = 200, DBSCAN 0.987 (barrel) and 0.985 (endcap) with reductions
0.009 and 0.0005."""),
    ("code", """pd.DataFrame({name: {"summary": m.summary, "barrel": m.barrel, "endcap": m.endcap}
              for name, m in METHODS.items()}).T"""),
    ("code", """sim_table = compare_methods(events, progress=False)
sim_table[TABLE + ["seconds"]]"""),
    ("md", "### The real reduced TrackML event (5% of the particles, with truth)"),
    ("code", """mini = read_event(SHARED_TRACKML_DIR / "mini")
compare_methods(mini, progress=False)[TABLE]"""),
    ("md", """### Real particles through the simulated detector

The full particle lists of the real events 1000 and 1001 (vertices, momenta, charges: decays and
material secondaries as TrackML generated them) pushed through this project's detector model: the
ratio of each method on the real particle population at μ ≈ 200."""),
    ("code", """resim = [simulate_from_particles(read_particles(SHARED_TRACKML_DIR / "full" / f"event00000{e}-particles.csv.gz"),
                                 rng=seed, config=SimulationConfig(pixel_only=True), event_id=e) for e in (1000, 1001)]
compare_methods(resim, progress=False)[TABLE]"""),
    ("md", "### The real full-size event 1001 (hits only: sizes and reduction)"),
    ("code", """full = read_event(SHARED_TRACKML_DIR / "full" / "event000001001", parts=("hits",))
compare_methods(full, dm=False, progress=False)[["method", "region", "n_hits", "n_clusters", "mean_cluster_size",
                                 "max_cluster_size", "attention_reduction", "block_fraction", "seconds"]]"""),
    ("md", "## Cluster sizes"),
    ("code", """plot_cluster_sizes({m: cluster_sizes(measure_locality(events[0], m, dm=False).labels)
                    for m in METHODS});"""),
    ("md", """## Refinement by the vertex-z scan

Each cluster is reprojected from candidate vertex positions z0 (−150 … 150 mm); the z0 making
it most compact is kept and the surface is clustered again on the refined coordinates. The seed
papers apply it to the endcaps; on the barrel it joins the fragments of tracks from a vertex far
from z = 0 (the real reduced event has a wide luminous region, σ(z) ≈ 44 mm)."""),
    ("code", """vertex_table = pd.concat([
    compare_methods(evs, {"dbscan": {}}, vertex_scan=vs, progress=False).assign(events=name, vertex_scan=str(vs))
    for name, evs in (("simulated", events), ("real mini", [mini])) for vs in (False, "endcap", "all")])
vertex_table[vertex_table["region"] != "all"][["events", "vertex_scan"] + TABLE[1:] + ["prompt_ratio"]]"""),
    ("md", """## Parameter scan

Every combination of the grid below is clustered and measured; the star marks, per region,
the best reconstructible ratio whose attention reduction stays within `max_reduction`."""),
    ("code", """grid = DEFAULT_GRIDS[scan_method]
scan_table = scan(events, scan_method, grid, max_reduction=max_reduction)
plot_scan(scan_table);"""),
    ("code", """best(scan_table)"""),
    ("code", """best_params(scan_table)"""),
]



if __name__ == "__main__":
    main("02_projection_clustering.ipynb", TITLE, PARAMS, CELLS)
