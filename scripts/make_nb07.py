"""Build notebooks/07_full_event.ipynb with nbformat (the notebook is committed without outputs).

    python scripts/make_nb07.py [--force]
"""

from notebook_builder import main

TITLE = """# 07 · Full events at HL-LHC pile-up, simulated and real

What this shows: the study's headline, a contrastive model on **full pixel events** (mu = 200, ~58k hits).
It is trained on locality clusters: every DBSCAN cluster of the projected hits is one training sequence,
with the hits' global features and their offsets from the cluster centre. At inference the same clusters
cut the full event and the packed attention backend runs them all at once, giving the same per-hit outputs.
Tracks are formed cluster by cluster, with a cap on the track size and a hit filter that keeps low-pT and
noise hits out of the track candidates. Then:

- held-out simulated events at mu = 20 and mu = 200, next to the DBSCAN-helix baseline: TrackML score,
  DM / perfect / LHC efficiency (pT > 0.9 GeV), fake and duplicate rates, barrel vs endcap,
  efficiency vs pT and η with Clopper-Pearson intervals;
- the validation curve: DM efficiency and fake rate over the training time;
- real TrackML events with truth (`data/real/pix1gev`, `data/real/barrel20`) next to simulated events
  cut the same way: the sim-to-real gap.

Inputs: the training config `fe_config` (default `params/bench/contrastive_mu200_cpu.yaml`, with the time
budget `fe_minutes`); held-out events simulated with their own seed. Outputs: the run
`runs/<fe_run_prefix>_contrastive`, the tables and figures below, and the `headline`, `full_event` and
`real_vs_sim` entries of `summary.json` (shown on `reports/index.html`)."""

PARAMETERS = """fe_config = "params/bench/contrastive_mu200_cpu.yaml"  # training config of the full-event model
fe_run_prefix = "smoke_fe"  # runs/<fe_run_prefix>_contrastive
fe_preset = "tiny"  # encoder size (empty keeps the config's)
fe_minutes = 0.3  # training time budget in minutes (0 keeps the config's)
fe_steps = 20  # training steps at most (0 keeps the config's)
fe_train_pileup = 200.0  # pile-up of the training events
fe_n_train_events = 2  # training events (each cut into its locality clusters)
fe_n_val_events = 1  # validation events (track-formation tuning)
fe_train_seed = 400  # seed of the training events (validation: seed + 1)
fe_eval_pileups = "20,200"  # held-out pile-ups, comma-separated (the last one is the headline)
fe_eval_events = 1  # held-out events per pile-up
fe_eval_seed = 2001  # seed of the held-out events (never trained or tuned on)
fe_baseline = "dbscan-helix"  # baseline on the same events (empty: none)
fe_baseline_events = 1  # events the baseline runs on (DBSCAN-helix takes ~95 s per mu 200 event)
dbscan_n_curvature = 21  # DBSCAN-helix curvature steps (params/baselines.yaml: 41)
dbscan_z0_step = 10.0  # DBSCAN-helix vertex-z step in mm (params/baselines.yaml: 5)
fe_real_sets = "pix1gev,barrel20"  # real sets with truth, compared with simulated counterparts
fe_sim_events = 1  # simulated counterparts per real set
retrain = False  # train again even if the run exists (the old run is kept aside)
pt_min = 0.9  # GeV, reconstructable particles
min_hits = 3  # reconstructable particles / track candidates
summary_path = "reports/summary.json"  # headline metrics (relative to the project root)"""

CELLS = [
    ("md", "Setup."),
    ("code", """import matplotlib.pyplot as plt
import pandas as pd

from trackstudy import realsim, study
from trackstudy.metrics import summary_table
from trackstudy.metrics.study import collect_evaluations
from trackstudy.plots.efficiency import efficiency_tables, plot_efficiency, region_table
from trackstudy.plots.training import plot_training_curves, plot_validation_tracks
from trackstudy.training import load_run

pileups = [float(p) for p in str(fe_eval_pileups).split(",") if p.strip()]
dbscan = {"n_curvature": dbscan_n_curvature, "z0_range": [-100.0, 100.0, dbscan_z0_step]}
run = study.run_dir(fe_run_prefix, "contrastive")"""),
    ("md", "## Training on locality clusters\nTrained once (or reused when `runs/<fe_run_prefix>_contrastive` "
           "already holds this config's model): the training events are cut into their locality clusters, "
           "which are batched by a hit budget with length bucketing."),
    ("code", """summaries = study.train_models(
    ["contrastive"], fe_run_prefix, retrain=retrain, base_config=fe_config, preset=fe_preset,
    max_minutes=fe_minutes, steps=fe_steps, train_pileup=fe_train_pileup, tracks="", pixel_only=True,
    n_train_events=fe_n_train_events, n_val_events=fe_n_val_events, train_seed=fe_train_seed)
s = summaries["contrastive"]
print(f"{s['steps']} steps, {s['train_seconds'] / 60:.1f} min on {s['device']}; training data:",
      {k: s["data"]["train"].get(k) for k in ("n_events", "n_sequences", "mean_sequence_hits", "max_sequence_hits")})
print("track formation:", s["track_params"])"""),
    ("md", "The validation curve: DM efficiency and fake rate of the validation events over the training "
           "time, with the track parameters of the time (the tuned parameters come at the end), and the losses."),
    ("code", """plot_validation_tracks({run.name: run})
plt.show()
plot_training_curves({run.name: run})
plt.show()"""),
    ("md", "## Held-out full events\nSimulated pixel events at each pile-up with their own seed; the model runs "
           "over the events' locality clusters with the packed backend; the baseline (DBSCAN on helix-unrolled "
           "features) on the first `fe_baseline_events` of them."),
    ("code", """evaluations = {}
for mu in pileups:
    data = study.eval_dataset(train_pileup=mu, tracks="", pixel_only=True, eval_events=fe_eval_events,
                              eval_seed=fe_eval_seed)
    study.predict_runs(["contrastive"], fe_run_prefix, data)
    evs, _ = collect_evaluations(data, baselines="", submissions_glob=f"{run.name}/submission_{data.name}.csv",
                                 n_events=fe_eval_events, pt_min=pt_min, min_hits=min_hits, volumes="pixel")
    if fe_baseline:
        base, _ = collect_evaluations(data, baselines=fe_baseline, submissions_glob="-", n_events=fe_baseline_events,
                                      pt_min=pt_min, min_hits=min_hits, volumes="pixel",
                                      baseline_overrides={"dbscan-helix": dbscan})
        evs.update({f"{k} ({fe_baseline_events} ev.)": v for k, v in base.items()})
    evaluations[mu] = evs
    print(f"mu = {mu:g}: {data}")"""),
    ("code", """tables = []
for mu, evs in evaluations.items():
    t = summary_table(evs)
    t.insert(0, "pile-up", mu)
    tables.append(t)
pd.concat(tables).round(4)"""),
    ("md", "Barrel vs endcap (a particle is in the barrel when most of its hits are)."),
    ("code", """pd.concat({f"mu = {mu:g}": region_table(evs) for mu, evs in evaluations.items()}).round(4)"""),
    ("md", "## Efficiency vs pT and η at the headline pile-up\nMarkers at bin centres, Clopper-Pearson 68 % "
           "intervals."),
    ("code", """head = evaluations[pileups[-1]]
fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
plot_efficiency(efficiency_tables(head, "pt", pt_min=pt_min, min_hits=min_hits), var="pt", ax=axes[0],
                title=f"DM efficiency, mu = {pileups[-1]:g}")
plot_efficiency(efficiency_tables(head, "eta", pt_min=pt_min, min_hits=min_hits), var="eta", ax=axes[1],
                title=f"pT > {pt_min} GeV")
plt.show()"""),
    ("md", "## Real events vs simulated events cut the same way\n`pix1gev`: real event 1001, pixel volumes, "
           "the hits of every particle with pT > 1 GeV, one hit per particle per layer, no noise (its momenta "
           "are estimates from the hits). `barrel20`: real event 1000, barrel volumes, 20% of the particles with "
           "all their hits plus 20% of the noise (a pixel model sees volume 8). Each against `fe_sim_events` "
           "simulated mu = 200 events cut like it (`trackstudy simulate --like NAME`)."),
    ("code", """model, run_config = load_run(run)
results = [realsim.compare(name.strip(), model=model, run_config=run_config, n_sim=fe_sim_events,
                           baseline=bool(fe_baseline), baseline_overrides=dbscan)
           for name in str(fe_real_sets).split(",") if name.strip()]
real_vs_sim = realsim.comparison_table(results)
real_vs_sim.round(4)"""),
    ("md", "The headline and the full-event tables go into `summary.json` (next to notebook 05's models) and "
           "onto `reports/index.html`."),
    ("code", """print(study.write_full_event_summary(evaluations, run=run, headline_pileup=pileups[-1],
                                     real_vs_sim=real_vs_sim, path=summary_path))"""),
]


if __name__ == "__main__":
    main("07_full_event.ipynb", TITLE, PARAMETERS, CELLS)
