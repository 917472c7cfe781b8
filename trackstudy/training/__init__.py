"""Training: run configs, the data pipeline, the training loop, checkpoints and DDP.

    from trackstudy.training import train, load_run
    summary = train("params/train_smoke.yaml", "runs/smoke")     # writes runs/smoke/ (see checkpoint.py)
    model, run_config = load_run("runs/smoke")                   # eval mode, on the best device

Modules: :mod:`.run_config` (schema, defaults, validation), :mod:`.targets` (labels of each
family, samples, padded batches), :mod:`.data` (events -> cached tensors, batches),
:mod:`.trainer` (the loop; ``model.family: gnn`` runs go to :mod:`.gnn`, whose metric-learning
graphs train first in :mod:`.metric_embedding`), :mod:`.checkpoint`
(run directory files), :mod:`.ddp` (torch.distributed helpers).
"""

from trackstudy.training.checkpoint import load_checkpoint, load_run, save_checkpoint, save_model, unwrap_model
from trackstudy.training.run import train
from trackstudy.training.run_config import DEFAULTS, dump_yaml, load_yaml, resolve_config, set_value
from trackstudy.training.trainer import Trainer, training_backend

__all__ = ["DEFAULTS", "Trainer", "dump_yaml", "load_checkpoint", "load_run", "load_yaml",
           "resolve_config", "save_checkpoint", "save_model", "set_value", "train", "training_backend",
           "unwrap_model"]
