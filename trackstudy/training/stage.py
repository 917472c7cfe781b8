"""The loop of a graph stage trained before the edge model (the metric-learning embedding, the
edge filter): ``steps`` optimiser steps or ``max_minutes`` of them, whichever ends first, with a
cosine learning rate over that budget and a progress bar. Each stage has its own loss and batches;
the trainer of the edge model (:mod:`trackstudy.training.gnn`) has the full machinery (checkpoints,
validation, resume), which a stage of a few minutes does not need: a run interrupted during it
trains it again."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["train_stage"]


def train_stage(model: torch.nn.Module, loss_fn: Callable[[np.random.Generator], torch.Tensor], *, steps: int,
                max_minutes: float, lr: float, seed: int = 0, desc: str = "stage", progress: bool = False) -> dict:
    """Train ``model`` with AdamW; ``loss_fn(rng)`` gives one step's loss (``rng``: a generator
    seeded by (seed, step), so the batches are a function of the step). Returns the record of the
    stage: steps, seconds, stopped ("steps" or "max_minutes"), loss (mean of the last 20 steps)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    budget = max_minutes * 60.0
    seconds, step, losses = 0.0, 0, []
    bar = tqdm(total=steps, desc=desc, unit="step", disable=not progress)
    model.train()
    while step < steps and not (budget and seconds >= budget):
        t0 = time.perf_counter()
        frac = max(step / steps, seconds / budget if budget else 0.0)
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))
        loss = loss_fn(np.random.default_rng([int(seed), step]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        seconds += time.perf_counter() - t0
        losses.append(float(loss.detach()))
        bar.update()
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    model.eval()
    return {"steps": step, "seconds": seconds, "stopped": "steps" if step >= steps else "max_minutes",
            "loss": float(np.mean(losses[-20:])) if losses else None}
