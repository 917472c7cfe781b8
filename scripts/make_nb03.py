"""Write notebooks/03_training.ipynb (python scripts/make_nb03.py --force)."""

from notebook_builder import main

TITLE = """# 03 · Training

Trains the study's model(s) with `trackstudy.training` and shows how training went.

**Inputs**: the flat parameters below (the defaults are the CI smoke size; `params/full.yaml` is the study).
`model` is one family (`contrastive`, `enc_cla`, `enc_reg`, `jm`) or a comma-separated list; the data are
simulated pixel events of the TrackFormers kind (`tracks = "10:50"` keeps 10-50 particles per event, `""`
whole events at `train_pileup`). `base_config` may name a full run config (e.g.
`params/bench/contrastive_10-50.yaml`) that the other parameters then override.

**Outputs**: `runs/<run_prefix>_<model>/` per model (config, checkpoints, logs, final model, summary with
the tuned track-formation parameters); the training and validation loss curves; which device trained.
A finished run with the same config is reused, an interrupted one resumed. Equivalent command line:
`trackstudy train --config runs/<run_prefix>_<model>/config.yaml --out runs/<run_prefix>_<model>`."""

PARAMETERS = """model = "contrastive"  # family or comma-separated families: contrastive, enc_cla, enc_reg, jm
base_config = "params/train_smoke.yaml"  # run config the parameters below override; {model} is the family
preset = ""  # encoder size: tiny, small (CPU), paper (3.6M), cms (~38M); empty: from base_config
backend = ""  # attention: dense, flex (GPU), packed (exact sparse, CPU), lsh; empty: from base_config
locality = ""  # attention clusters: none (full attention), dbscan, window, density, grid; empty: base_config
steps = 0  # optimiser steps per model (0: from base_config)
batch_size = 0  # events per step (0: from base_config)
lr = 0.0  # peak learning rate, AdamW with warm-up and cosine (0: from base_config)
max_minutes = 0.0  # wall-clock cap per model (0: from base_config)
train_pileup = 20.0  # pile-up of the simulated events (with tracks: the events particles are drawn from)
tracks = "10:50"  # particles kept per event, MIN:MAX (empty: whole events)
train_pixel_only = True  # pixel volumes 7, 8, 9 only, as in the papers
n_train_events = 8  # simulated training events
n_val_events = 4  # validation events (early stopping, track-formation tuning)
train_seed = 11  # seed of the training data (validation: train_seed + 1)
device = "auto"  # auto: CUDA, then MPS, then CPU
run_prefix = "smoke"  # runs/<run_prefix>_<model>
retrain = False  # start over even if a finished run with this config exists"""

CELLS = [
    ("code", """import matplotlib.pyplot as plt
import pandas as pd
import yaml

from trackstudy import study
from trackstudy.device import describe_device, resolve_device
from trackstudy.plots.training import plot_training_curves
from trackstudy.reports import notebook_setup

notebook_setup()
models = study.parse_models(model)
settings = dict(base_config=base_config, preset=preset, backend=backend, locality=locality, steps=steps,
                batch_size=batch_size, lr=lr, max_minutes=max_minutes, train_pileup=train_pileup, tracks=tracks,
                pixel_only=train_pixel_only, n_train_events=n_train_events, n_val_events=n_val_events,
                train_seed=train_seed, device=device)
print("models:", ", ".join(models), "| device:", describe_device(resolve_device(device)))"""),
    ("md", "## The run config\nEvery setting of the first model's run (all models share them except the family); "
           "the trainer fills in its defaults and checks every key."),
    ("code", """print(yaml.safe_dump(study.training_config(models[0], **settings), sort_keys=False))"""),
    ("md", "## Training\nProgress bars per model; the summary of each run follows."),
    ("code", """summaries = study.train_models(models, run_prefix, retrain=retrain, **settings)"""),
    ("code", """columns = ["device", "preset", "backend", "n_params", "steps", "train_seconds", "best_val_loss",
           "stopped", "trackml_score", "dm_efficiency", "fake_rate"]
table = pd.DataFrame({m: {**s, **s.get("validation", {})} for m, s in summaries.items()}).T
table.reindex(columns=[c for c in columns if c in table.columns])"""),
    ("md", "## Loss curves\nTraining loss (running mean) and validation loss per model; the learning-rate schedule."),
    ("code", """plot_training_curves({m: study.run_dir(run_prefix, m) for m in models})
plt.show()"""),
    ("md", "## Track formation\nThe parameters tuned on the validation events at the end of training "
           "(they turn the model's outputs into tracks and are saved with the run)."),
    ("code", """pd.DataFrame({m: s.get("track_params", {}) for m, s in summaries.items()}).T"""),
]

if __name__ == "__main__":
    main("03_training.ipynb", TITLE, PARAMETERS, CELLS)
