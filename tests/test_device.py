"""trackstudy.device: device resolution and autocast."""

import contextlib

import pytest
import torch

from trackstudy.device import autocast_context, autocast_dtype, describe_device, resolve_device, synchronize
from trackstudy.errors import ConfigError


def test_cpu_and_torch_device_pass_through():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device(None) == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("trackstudy.device._mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr("trackstudy.device._mps_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_missing_accelerator_and_bad_names_are_config_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("trackstudy.device._mps_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="MPS is not available"):
        resolve_device("mps")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    with pytest.raises(ConfigError, match="must be a string"):
        resolve_device(3)


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match="only 1 CUDA device"):
        resolve_device("cuda:3")


def test_autocast_is_bf16_on_cuda_and_null_on_cpu(monkeypatch):
    assert autocast_dtype("cpu") is None
    with autocast_context("cpu"):
        assert not torch.is_autocast_enabled("cpu")
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert autocast_dtype("cuda") == torch.bfloat16
    assert isinstance(autocast_context("cuda", enabled=False), contextlib.nullcontext)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_autocast_on_cuda_runs_matmul_in_bf16():
    with autocast_context("cuda"):
        y = torch.ones(4, 4, device="cuda") @ torch.ones(4, 4, device="cuda")
    assert y.dtype == torch.bfloat16


def test_describe_and_synchronize_cpu():
    assert describe_device("cpu").startswith("cpu (")
    synchronize("cpu")
