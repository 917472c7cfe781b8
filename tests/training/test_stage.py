"""The loop of the graph stages (metric embedding, edge filter): its step and time budgets, its
cosine learning rate and its per-step random generators."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trackstudy.training import stage
from trackstudy.training.stage import train_stage


def test_steps_budget_learning_rate_and_generators(monkeypatch):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    draws, lrs = [], []
    real_adamw = torch.optim.AdamW

    def adamw(params, lr):
        opt = real_adamw(params, lr=lr)
        real_step = opt.step
        opt.step = lambda: (lrs.append(opt.param_groups[0]["lr"]), real_step())[1]
        return opt

    monkeypatch.setattr(stage.torch.optim, "AdamW", adamw)
    x, y = torch.randn(16, 2), torch.randn(16, 1)

    def loss_fn(rng):
        draws.append(rng.integers(1 << 30))
        return ((model(x) - y) ** 2).mean()

    first = float(loss_fn(np.random.default_rng(0)).detach())
    draws.clear()
    record = train_stage(model, loss_fn, steps=4, max_minutes=0.0, lr=0.1, seed=7)
    assert record["steps"] == 4 and record["stopped"] == "steps" and record["loss"] < first
    # cosine over the 4 steps: lr (1 + cos(pi k / 4)) / 2 at step k
    np.testing.assert_allclose(lrs, [0.1 * 0.5 * (1 + np.cos(np.pi * k / 4)) for k in range(4)])
    assert draws == [np.random.default_rng([7, k]).integers(1 << 30) for k in range(4)]
    assert not model.training  # left in eval mode


def test_time_budget_ends_the_stage(monkeypatch):
    clock = iter(np.arange(0.0, 1000.0, 30.0))  # every perf_counter call: 30 s later
    monkeypatch.setattr(stage.time, "perf_counter", lambda: float(next(clock)))
    model = torch.nn.Linear(1, 1)
    record = train_stage(model, lambda rng: model(torch.ones(1, 1)).sum() ** 2, steps=100, max_minutes=1.0, lr=0.01)
    assert record["stopped"] == "max_minutes" and record["steps"] == 2 and record["seconds"] == pytest.approx(60.0)
