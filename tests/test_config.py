"""trackstudy.config: JSON that strict readers load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from trackstudy.config import json_safe


def test_json_safe_hand_case():
    obj = {"a": np.float32(0.5), "b": float("nan"), "c": [np.int64(3), -math.inf, (1, 2)], 4: Path("runs/x"),
           "d": np.bool_(True), "e": None, "f": "text", "g": np.float64(2.0)}
    out = json_safe(obj)
    assert out == {"a": 0.5, "b": None, "c": [3, None, [1, 2]], "4": "runs/x", "d": True, "e": None, "f": "text",
                   "g": 2.0}
    assert type(out["c"][0]) is int and type(out["d"]) is bool and type(out["a"]) is float
    json.dumps(out, allow_nan=False)  # strict JSON holds
