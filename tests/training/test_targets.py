import numpy as np
import pandas as pd
import pytest
import torch

from trackstudy.config import ROOT
from trackstudy.data.io import merge_event, read_event, select_volumes
from trackstudy.errors import ConfigError, DataError
from trackstudy.models.roads import IGNORE_INDEX, RoadBinning, particle_parameters
from trackstudy.training.targets import class_targets, collate, event_targets, make_sample, regression_targets


def _synthetic_hits(n_particles=2000, hits_per=3, seed=0):
    rng = np.random.default_rng(seed)
    pt = rng.exponential(1.0, n_particles) + 0.2
    phi = rng.uniform(-np.pi, np.pi, n_particles)
    eta = rng.uniform(-3, 3, n_particles)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    q = rng.choice([-1, 1], n_particles)
    pid = np.arange(1, n_particles + 1, dtype=np.int64) << 20  # large int64 ids
    rep = np.repeat(np.arange(n_particles), hits_per)
    df = pd.DataFrame({"particle_id": pid[rep], "px": px[rep], "py": py[rep], "pz": pz[rep], "q": q[rep]})
    noise = pd.DataFrame({"particle_id": np.zeros(50, np.int64), "px": np.nan, "py": np.nan, "pz": np.nan,
                          "q": np.nan})
    return pd.concat([df, noise], ignore_index=True)


def test_particle_parameters_hand_values():
    out = particle_parameters([1.0], [1.0], [np.sqrt(2.0)], [1])
    assert out["p"][0] == pytest.approx(2.0)
    assert out["theta"][0] == pytest.approx(np.pi / 4)
    assert out["phi"][0] == pytest.approx(np.pi / 4)


def test_binning_equal_population_and_round_trip():
    df = _synthetic_hits()
    b = RoadBinning.fit(df, n_phi=5, n_theta=4, n_p=3, per="particle")
    assert b.n_classes == 120
    cls = class_targets(df, b, noise="ignore")
    real = df.particle_id.to_numpy() != 0
    assert (cls[~real] == IGNORE_INDEX).all()
    counts = np.bincount(cls[real], minlength=b.n_classes) // 3  # particles per class
    assert (counts > 0).all()
    # nested quantiles: each (phi, theta, p) cell holds 2000/60 ~ 33 particles, split by charge
    cell = counts.reshape(-1, 2).sum(1)
    assert cell.min() >= 30 and cell.max() <= 37
    # every hit of a particle has the same class
    per_particle = pd.Series(cls[real]).groupby(df.particle_id[real].to_numpy()).nunique()
    assert (per_particle == 1).all()
    state = b.to_state()
    # plain python containers only: survives torch.save / torch.load(weights_only=True)
    import io
    buf = io.BytesIO()
    torch.save({"binning": state}, buf)
    buf.seek(0)
    b2 = RoadBinning.from_state(torch.load(buf, weights_only=True)["binning"])
    assert b2 == b
    np.testing.assert_array_equal(class_targets(df, b2), class_targets(df, b))


def test_class_index_layout_hand_case():
    b = RoadBinning(2, 1, 2, np.array([0.0]), np.zeros((2, 0)), np.array([[[1.0]], [[5.0]]]))
    # phi<0 -> a=0 (p edge 1.0); phi>=0 -> a=1 (p edge 5.0); class = ((a*1+0)*2+i_p)*2+i_q
    cls = b.classes([-1.0, -1.0, 1.0, 1.0], [1.0] * 4, [0.5, 2.0, 2.0, 6.0], [-1, 1, 1, -1])
    np.testing.assert_array_equal(cls, [0, 3, 5, 6])
    # values outside the fitted range fall into the outer bins
    assert b.classes([10.0], [3.0], [1e6], [1])[0] == 7


def test_noise_class_and_regression_targets():
    df = _synthetic_hits(n_particles=100)
    b = RoadBinning.fit(df, n_phi=2, n_theta=2, n_p=2)
    cls = class_targets(df, b, noise="class")
    assert (cls[df.particle_id == 0] == b.n_classes).all()
    assert cls[df.particle_id != 0].max() < b.n_classes and cls.min() >= 0
    reg, mask = regression_targets(df)
    assert reg.shape == (len(df), 4) and reg.dtype == np.float32
    assert not mask[df.particle_id.to_numpy() == 0].any()
    np.testing.assert_allclose(reg[mask, 1] ** 2 + reg[mask, 2] ** 2, 1.0, rtol=1e-5)
    assert set(np.unique(reg[mask, 3])) <= {-1.0, 1.0}


def test_real_event_targets():
    ev = select_volumes(read_event(ROOT / "data" / "real" / "mini"))
    df = merge_event(ev)
    b = RoadBinning.fit(df, n_phi=4, n_theta=4, n_p=2)
    t = event_targets(df, b)
    assert t["particle_id"].dtype == np.int64
    assert t["cls_target"].shape == (len(df),)
    assert (t["pt"][t["particle_id"] == 0] == 0).all()
    assert set(t) == {"particle_id", "pt", "reg_target", "reg_mask", "cls_target"}


def test_errors():
    df = _synthetic_hits(n_particles=10)
    with pytest.raises(DataError, match="cannot fill"):
        RoadBinning.fit(df, n_phi=10, n_theta=10, n_p=10)
    with pytest.raises(DataError, match="'q'"):
        RoadBinning.fit(df.drop(columns="q"))
    with pytest.raises(DataError, match="int64"):
        RoadBinning.fit(df.assign(particle_id=df.particle_id.astype(float)))
    with pytest.raises(ConfigError, match="n_theta"):
        RoadBinning.fit(df, n_theta=0)
    with pytest.raises(ConfigError, match="malformed"):
        RoadBinning.from_state({"kind": "nested_quantile", "n_phi": 3, "n_theta": 1, "n_p": 1,
                                "phi_edges": [0.0], "theta_edges": [], "p_edges": []})


def test_collate_pads_with_documented_values():
    s1 = {"x": np.ones((3, 2), np.float32), "particle_id": np.array([5, 0, 5], np.int64),
          "cls_target": np.array([1, 2, 1])}
    s2 = {"x": np.ones((1, 2), np.float32), "particle_id": np.array([7], np.int64), "cls_target": np.array([0])}
    b = collate([s1, s2])
    assert b["x"].shape == (2, 3, 2)
    assert b["pad_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert b["particle_id"].dtype == torch.int64 and b["particle_id"][1].tolist() == [7, -1, -1]
    assert b["cls_target"][1].tolist() == [0, IGNORE_INDEX, IGNORE_INDEX]
    with pytest.raises(ConfigError, match="pad_to"):
        collate([s1], pad_to=2)


def test_make_sample_and_collate():
    ev = select_volumes(read_event(ROOT / "data" / "real" / "mini"))
    df = merge_event(ev).iloc[:40]
    cluster = np.arange(40) // 10
    s = make_sample(df, binning=RoadBinning.fit(merge_event(ev), 2, 2, 2), cluster=cluster)
    assert {"x", "hit_id", "eta", "phi", "cluster", "particle_id", "pt", "reg_target", "reg_mask",
            "cls_target"} <= set(s)
    assert s["x"].shape == (40, 7) and s["cluster"].dtype == np.int64
    b = collate([s])
    assert b["cluster"].dtype == torch.int64 and b["eta"].dtype == torch.float32
    with pytest.raises(DataError, match="< 0"):
        make_sample(df, cluster=np.full(40, -1))
    hits_only = make_sample(ev.hits.iloc[:3], with_targets=False)
    assert set(hits_only) == {"x", "hit_id", "eta", "phi"}
