"""The flat parameter sets agree with the notebooks: smoke.yaml holds exactly the defaults of the
notebooks' `parameters` cells (what nbval runs), full.yaml only names parameters that exist."""

from __future__ import annotations

import papermill as pm
import pytest
import yaml

from trackstudy.config import PARAMS_DIR
from trackstudy.study.reports import load_params, notebooks


def _declared() -> dict[str, dict[str, object]]:
    out = {}
    for nb in notebooks():
        params = pm.inspect_notebook(str(nb))
        out[nb.stem] = {name: yaml.safe_load(p["default"]) for name, p in params.items()}
    return out


def test_every_notebook_declares_parameters():
    declared = _declared()
    assert len(declared) >= 5
    for name, params in declared.items():
        assert params, f"{name} has no parameters cell"


def test_smoke_yaml_is_the_notebook_defaults():
    smoke = load_params(PARAMS_DIR / "smoke.yaml")
    seen = {}
    for name, params in _declared().items():
        for key, default in params.items():
            assert key in smoke, f"{name}: parameter {key!r} is missing from params/smoke.yaml"
            assert smoke[key] == default, f"{name}: {key} = {default!r} but params/smoke.yaml has {smoke[key]!r}"
            seen[key] = name
    unused = sorted(set(smoke) - set(seen))
    assert not unused, f"params/smoke.yaml names parameters no notebook declares: {unused}"


@pytest.mark.parametrize("name", ["full.yaml", "smoke.yaml"])
def test_parameter_files_name_existing_parameters(name):
    params = load_params(PARAMS_DIR / name)
    declared = set().union(*(p.keys() for p in _declared().values()))
    assert set(params) <= declared, sorted(set(params) - declared)


@pytest.mark.parametrize("config", sorted(p for p in (PARAMS_DIR / "bench").glob("*.yaml")
                                           if not p.name.startswith("pretrain_")), ids=lambda p: p.name)
def test_benchmark_configs_are_valid(config):
    # every benchmark config resolves (keys, types, ranges, locality, tuning grid and base)
    from trackstudy.training.run_config import resolve_config

    cfg = resolve_config(config)
    assert cfg["train"]["max_minutes"] >= 0 and cfg["tune"]["grid"]


@pytest.mark.parametrize("config", sorted((PARAMS_DIR / "bench").glob("pretrain_*.yaml")), ids=lambda p: p.name)
def test_pretraining_configs_are_valid(config):
    # pretraining configs (trackstudy pretrain) resolve against their own schema
    from trackstudy.training.pretrain import resolve_pretrain_config

    cfg = resolve_pretrain_config(config)
    assert cfg["train"]["steps"] > 0 and cfg["mask"]["rate"] > 0
