"""Write notebooks/04_attention_maps.ipynb (python scripts/make_nb04.py --force)."""

from notebook_builder import main

TITLE = """# 04 · Attention maps

Does the trained model's attention stay local? For one held-out event: the attention weights of every layer
and head (computed by the encoder's `explicit` backend, the same mathematics as the fast backends), their
spread in Δη and Δφ between query and key hits against uniform attention over the same mask, and the
cluster mask next to the learnt attention.

**Inputs**: a run of notebook 03 (`runs/<run_prefix>_<model>`, the first family of `model`) and held-out
simulated events of the training kind (`eval_events`, `eval_seed`; or `data_dir`).
**Outputs**: the per-layer/head statistics table and figures below."""

PARAMETERS = """model = "contrastive"  # the study's models (notebook 03); the first one is inspected
run_prefix = "smoke"  # runs/<run_prefix>_<model>
data_dir = ""  # held-out events (empty is simulated with the training settings and eval_seed)
train_pileup = 20.0  # the training data's pile-up (notebook 03)
tracks = "10:50"  # the training data's particles per event (notebook 03)
train_pixel_only = True  # the training data's volumes (notebook 03)
eval_events = 4  # held-out events
eval_seed = 1001  # seed of the held-out events
event_index = 0  # which held-out event to inspect
max_hits = 1500  # at most this many hits (the maps hold layers x heads x N^2 weights)
layer = 0  # layer and head of the heat maps
head = 0"""

CELLS = [
    ("code", """import matplotlib.pyplot as plt

import trackstudy as ts
from trackstudy import study
from trackstudy.inference import cluster_hits, select_pixel_hits
from trackstudy.models.inspect import inspect_event
from trackstudy.plots.attention import plot_attention_profile, plot_attention_vs_mask, plot_locality_summary
from trackstudy.reports import notebook_setup
from trackstudy.training.checkpoint import load_run

notebook_setup()
name = study.parse_models(model)[0]
net, run_config = load_run(study.run_dir(run_prefix, name), "cpu")
data = study.eval_dataset(train_pileup=train_pileup, tracks=tracks, pixel_only=train_pixel_only, eval_events=eval_events,
                          eval_seed=eval_seed, data_dir=data_dir)
print(f"{name}: {run_config['model']['preset']} preset, backend {run_config['model']['backend']}, "
      f"locality {run_config['locality']['method']}; data {data}")"""),
    ("md", "## The event\nThe hits the model sees (pixel hits for a pixel-only model), with truth, and their "
           "locality clusters (one cluster for a model trained with full attention)."),
    ("code", """event = list(ts.iter_events(data, n_events=event_index + 1))[event_index]
hits = ts.merge_event(event)
if run_config["data"]["train"]["pixel_only"]:
    hits = hits[select_pixel_hits(hits)]
hits = hits.sort_values("hit_id").head(max_hits).reset_index(drop=True)
cluster = cluster_hits(hits, run_config["locality"])
print(f"event {event.event_id}: {len(hits)} hits, {hits['particle_id'].nunique()} particles (incl. noise 0)")"""),
    ("code", """maps, summary, profile = inspect_event(net, hits, cluster=cluster, max_hits=max_hits)
summary.round(3)"""),
    ("md", "## Attention against Δη and Δφ\nMass of attention per |Δη| and |Δφ| bin (mean over queries and heads), "
           "per layer; dashed: uniform attention over the hits the mask allows. Curves above the dashed line at "
           "small Δ mean the model learnt to look at nearby hits."),
    ("code", """stage = next(iter(maps.weights))
plot_attention_profile(profile, stage=stage)
plt.show()"""),
    ("md", "## Which heads are local, which follow particles\nPer layer and head: attention mass within "
           "|Δη| < 0.1 and |Δφ| < 0.1, and on hits of the query's own particle, minus the uniform baseline."),
    ("code", """fig, axes = plt.subplots(1, 2, figsize=(11, 4))
plot_locality_summary(summary[summary["stage"] == stage], metric="frac_local", ax=axes[0])
plot_locality_summary(summary[summary["stage"] == stage], metric="frac_same_particle", ax=axes[1])
plt.show()"""),
    ("md", "## Mask and learnt attention\nHits ordered by locality cluster, particle and η: the pairs the mask "
           "allows, the attention of one layer/head (log scale), and the truth (same-particle pairs)."),
    ("code", """plot_attention_vs_mask(maps, stage=stage, layer=layer, head=head, cluster=cluster)
plt.show()"""),
    ("code", """last = maps.weights[stage].shape[0] - 1
plot_attention_vs_mask(maps, stage=stage, layer=last, head=head, cluster=cluster)
plt.show()"""),
]

if __name__ == "__main__":
    main("04_attention_maps.ipynb", TITLE, PARAMETERS, CELLS)
