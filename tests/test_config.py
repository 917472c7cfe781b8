"""trackstudy.config: JSON that strict readers load, dataclass configs from YAML sections."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from trackstudy.config import config_from_dict, json_safe
from trackstudy.errors import ConfigError


def test_json_safe_hand_case():
    obj = {"a": np.float32(0.5), "b": float("nan"), "c": [np.int64(3), -math.inf, (1, 2)], 4: Path("runs/x"),
           "d": np.bool_(True), "e": None, "f": "text", "g": np.float64(2.0)}
    out = json_safe(obj)
    assert out == {"a": 0.5, "b": None, "c": [3, None, [1, 2]], "4": "runs/x", "d": True, "e": None, "f": "text",
                   "g": 2.0}
    assert type(out["c"][0]) is int and type(out["d"]) is bool and type(out["a"]) is float
    json.dumps(out, allow_nan=False)  # strict JSON holds


def test_config_from_dict_names_the_section_and_key():
    @dataclasses.dataclass
    class Cfg:
        width: int = 4
        depth: int = 2

    assert config_from_dict(Cfg, None, "model.x") == Cfg()
    assert config_from_dict(Cfg, {"width": 8}, "model.x") == Cfg(width=8)
    same = Cfg(depth=3)
    assert config_from_dict(Cfg, same, "model.x") is same
    with pytest.raises(ConfigError, match=r"unknown config key 'model.x.widht'; valid keys in model.x: width, depth"):
        config_from_dict(Cfg, {"widht": 8}, "model.x")
    with pytest.raises(ConfigError, match=r"model.x: expected a mapping, got \[1, 2\]"):
        config_from_dict(Cfg, [1, 2], "model.x")
