"""The study: the one layer that puts the stages together for the notebooks, ``make study`` and
the benchmark scripts alike.

    runs          which models, trained on which data, into which folder; reuse of finished runs;
                  the model a latency measurement runs
    evaluation    models and baselines scored on the same held-out events
    summary       ``reports/summary.json``: the headline numbers
    realsim       real TrackML sets next to simulated events cut the same way
    attention_maps  what the trained encoder attends to (analysis of a model)
    reports       papermill: every notebook into ``reports/`` as HTML, and the index page

Notebooks use it as ``from trackstudy import study`` and call ``study.train_models(...)``,
``study.write_summary(...)``, ...; the names below are that interface.
"""

from trackstudy.study.evaluation import collect_evaluations, find_submissions, resolve_volumes
from trackstudy.study.runs import (
    FAMILIES,
    eval_dataset,
    first_transformer,
    latency_model,
    parse_models,
    predict_runs,
    run_dir,
    run_settings,
    train_models,
    training_config,
)
from trackstudy.study.summary import FULL_EVENT_KEYS, write_full_event_summary, write_summary

__all__ = ["FAMILIES", "FULL_EVENT_KEYS", "collect_evaluations", "eval_dataset", "find_submissions",
           "first_transformer", "latency_model", "parse_models", "predict_runs", "resolve_volumes", "run_dir", "run_settings",
           "train_models", "training_config", "write_full_event_summary", "write_summary"]
