"""Build notebooks/05_efficiency_pt_eta.ipynb with nbformat (the notebook is committed without outputs).

    python scripts/make_nb05.py [--force]
"""

from notebook_builder import main

TITLE = """# 05 · Tracking efficiency vs pT and η

What this shows: for every model of the study, the TrackML score, double-majority (DM),
perfect and LHC efficiencies, fake and duplicate rates (one table), then DM efficiency vs particle pT and
vs η (HEP convention: markers at bin centres, x error = half bin, Clopper-Pearson 68 % y errors),
the fake rate vs the tracks' η, and barrel vs endcap.

Models: the training-free baselines (truth, random, DBSCAN on helix-unrolled features), computed here on
the data (the smoke parameters use a coarser DBSCAN scan than `params/baselines.yaml`), and the models
trained by notebook 03 (`runs/<run_prefix>_<model>`), run here on the held-out events.

Inputs: held-out events with truth (`data_dir`, or simulated with the training settings and `eval_seed`).
Outputs: the tables and figures below, and `summary.json` (headline metrics per model, with training time
and device) at `summary_path`. Definitions of every metric: `trackstudy.metrics.matching`."""

PARAMETERS = """model = "contrastive"  # the study's trained models (notebook 03), comma-separated
run_prefix = "smoke"  # runs/<run_prefix>_<model>
data_dir = ""  # held-out events with truth (empty is simulated with the training settings and eval_seed)
train_pileup = 20.0  # the training data's pile-up (notebook 03)
tracks = "10:50"  # the training data's particles per event (notebook 03)
train_pixel_only = True  # the training data's volumes (notebook 03)
eval_events = 4  # held-out events (never used in training or tuning)
eval_seed = 1001  # seed of the held-out events
baselines = "truth,random,dbscan-helix"  # baselines computed on the fly (comma-separated)
volumes = "pixel"  # evaluate on these volumes: pixel, all, or e.g. 7,8,9
pt_min = 0.9  # GeV, reconstructable particles
min_hits = 3  # reconstructable particles / track candidates
dbscan_n_curvature = 21  # DBSCAN-helix curvature steps (params/baselines.yaml: 41)
dbscan_z0_step = 10.0  # DBSCAN-helix vertex-z step in mm (params/baselines.yaml: 5)
summary_path = "reports/summary.json"  # headline metrics per model (relative to the project root)"""

CELLS = [
    ("md", "Setup: the study's metric, baseline and plot functions."),
    ("code", """import matplotlib.pyplot as plt

from trackstudy.metrics import summary_table
from trackstudy.metrics.study import collect_evaluations
from trackstudy.plots.efficiency import (
    efficiency_tables,
    plot_efficiency,
    plot_efficiency_plotly,
    plot_region_summary,
    region_table,
)"""),
    ("md", "The held-out events (simulated once with the training settings and their own seed), and each trained "
           "model's submission on them (`runs/<run_prefix>_<model>/submission_<data>.csv`, by `trackstudy.inference`)."),
    ("code", """from trackstudy import study

models = study.parse_models(model)
data = study.eval_dataset(train_pileup=train_pileup, tracks=tracks, pixel_only=train_pixel_only,
                          eval_events=eval_events, eval_seed=eval_seed, data_dir=data_dir)
trained = [m for m in models if (study.run_dir(run_prefix, m) / "model.pt").is_file()]
missing = sorted(set(models) - set(trained))
print(data, "| trained models:", trained, "| not trained yet (run notebook 03):", missing)
submissions = study.predict_runs(trained, run_prefix, data)"""),
    ("md", "Evaluate the baselines and the models' submissions. `sources` says where each model came from."),
    ("code", """evaluations, sources = collect_evaluations(
    data, baselines=baselines, submissions_glob=f"{run_prefix}_*/submission_{data.name}.csv",
    n_events=eval_events or None, pt_min=pt_min, min_hits=min_hits, volumes=volumes,
    baseline_overrides={"dbscan-helix": {"n_curvature": dbscan_n_curvature,
                                         "z0_range": [-100.0, 100.0, dbscan_z0_step]}},
)
summary_file = study.write_summary(evaluations, models=trained, run_prefix=run_prefix, data=data, path=summary_path)
print("summary:", summary_file)
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



if __name__ == "__main__":
    main("05_efficiency_pt_eta.ipynb", TITLE, PARAMETERS, CELLS)
