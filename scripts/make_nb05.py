"""Build notebooks/05_efficiency_pt_eta.ipynb with nbformat (the notebook is committed without outputs).

    python scripts/make_nb05.py [--force]
"""

from __future__ import annotations

import argparse

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from trackstudy.config import NOTEBOOKS_DIR
from trackstudy.data.io import atomic_write_bytes

NAME = "05_efficiency_pt_eta.ipynb"

TITLE = """# 05 · Tracking efficiency vs pT and η

What this shows: for every model of the study, the TrackML score, double-majority (DM),
perfect and LHC efficiencies, fake and duplicate rates (one table), then DM efficiency vs particle pT and
vs η (HEP convention: markers at bin centres, x error = half bin, Clopper-Pearson 68 % y errors),
the fake rate vs the tracks' η, and barrel vs endcap.

Models: the training-free baselines (truth, random, DBSCAN on helix-unrolled features), computed here on
the data (the smoke parameters use a coarser DBSCAN scan than `params/baselines.yaml`), plus every
submission the study has written under `runs/` (`runs/<model>/submission.csv`,
glob set by `submissions_glob`).

Inputs: a TrackML-format dataset with truth (`data_dir`; empty = `data/nb05_smoke`, simulated here when
missing). Outputs: the tables and figures below (the report keeps them). Definitions of every metric:
`trackstudy.metrics.matching`."""

PARAMETERS = """data_dir = ""  # dataset folder with truth; "" = data/nb05_smoke (simulated if missing)
runs_dir = ""  # where model submissions live; "" = runs/
submissions_glob = "*/submission*.csv*"  # model submissions under runs_dir
baselines = "truth,random,dbscan-helix"  # baselines computed on the fly (comma-separated)
volumes = "pixel"  # evaluate on these volumes: pixel, all, or e.g. 7,8,9
n_events = 2  # events evaluated (0 = all)
pt_min = 0.9  # GeV, reconstructable particles
min_hits = 3  # reconstructable particles / track candidates
dbscan_n_curvature = 21  # DBSCAN-helix curvature steps (params/baselines.yaml: 41)
dbscan_z0_step = 10.0  # DBSCAN-helix vertex-z step in mm (params/baselines.yaml: 5)
sim_events = 2  # events simulated when data_dir has none
sim_mu = 10.0  # pile-up of the simulated smoke dataset
sim_seed = 0"""

CELLS = [
    ("md", "Setup: the study's metric, baseline and plot functions."),
    ("code", """import matplotlib.pyplot as plt

from trackstudy.metrics import summary_table
from trackstudy.metrics.study import collect_evaluations, ensure_dataset
from trackstudy.plots.efficiency import (
    efficiency_tables,
    plot_efficiency,
    plot_efficiency_plotly,
    plot_region_summary,
    region_table,
)"""),
    ("md", "The dataset (simulated with `trackstudy.data.simulate` when the folder has no events)."),
    ("code", """data = ensure_dataset(data_dir, n_events=sim_events, mu=sim_mu, seed=sim_seed)
print(data)"""),
    ("md", "Evaluate the baselines and every submission found. `sources` says where each model came from "
           "and why a submission was skipped (e.g. written for other events)."),
    ("code", """evaluations, sources = collect_evaluations(
    data, baselines=baselines, runs_dir=runs_dir, submissions_glob=submissions_glob,
    n_events=n_events or None, pt_min=pt_min, min_hits=min_hits, volumes=volumes,
    baseline_overrides={"dbscan-helix": {"n_curvature": dbscan_n_curvature,
                                         "z0_range": [-100.0, 100.0, dbscan_z0_step]}},
)
sources"""),
    ("md", "## Scores\nMeans over events; fractions of reconstructable particles "
           "(pT > `pt_min`, >= `min_hits` hits, |η| < 4) and of track candidates (>= `min_hits` hits)."),
    ("code", """summary_table(evaluations).round(4)"""),
    ("md", "## DM efficiency vs particle pT\nThe pT cut is replaced by the bins (from 0.6 GeV; overflow in the "
           "last bin)."),
    ("code", """pt_tables = efficiency_tables(evaluations, "pt", pt_min=pt_min, min_hits=min_hits)
plot_efficiency(pt_tables, var="pt", title="double-majority efficiency")
plt.show()"""),
    ("code", """plot_efficiency_plotly(pt_tables, var="pt", title="double-majority efficiency vs pT").show()"""),
    ("md", "## DM efficiency vs particle η"),
    ("code", """eta_tables = efficiency_tables(evaluations, "eta", pt_min=pt_min, min_hits=min_hits)
plot_efficiency(eta_tables, var="eta", title=f"double-majority efficiency, pT > {pt_min} GeV")
plt.show()"""),
    ("code", """plot_efficiency_plotly(eta_tables, var="eta", title="double-majority efficiency vs η").show()"""),
    ("md", "## Fake rate vs track η\nTracks with >= `min_hits` hits and no double-majority particle; "
           "η from a straight-line fit of the track's hits in (r, z)."),
    ("code", """fake_tables = efficiency_tables(evaluations, "eta", kind="fake", min_hits=min_hits)
plot_efficiency(fake_tables, var="eta", kind="fake", title="fake rate")
plt.show()"""),
    ("md", "## Barrel vs endcap\nA particle (track) is in the barrel when most of its hits are in barrel "
           "volumes (8, 13, 17)."),
    ("code", """region_table(evaluations).round(4)"""),
    ("code", """plot_region_summary(summary_table(evaluations))
plt.show()"""),
    ("code", """fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
for ax, region in zip(axes, ("barrel", "endcap")):
    plot_efficiency(efficiency_tables(evaluations, "pt", pt_min=pt_min, min_hits=min_hits, region=region),
                    var="pt", ax=ax, title=region)
plt.show()"""),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    cells = [new_markdown_cell(TITLE), new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]})]
    for kind, src in CELLS:
        cells.append(new_markdown_cell(src) if kind == "md" else new_code_cell(src))
    nb.cells = cells
    return nb


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="overwrite the notebook if it exists")
    args = ap.parse_args(argv)
    nb = build()
    nbformat.validate(nb)
    path = atomic_write_bytes(NOTEBOOKS_DIR / NAME, nbformat.writes(nb).encode() + b"\n", force=args.force)
    print(path)


if __name__ == "__main__":
    main()
