"""trackstudy.inference: predict_event / predict_events on the real reduced event (hits only)."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from trackstudy.config import PIXEL_VOLUMES
from trackstudy.data.io import read_event
from trackstudy.device import StageClock
from trackstudy.errors import ConfigError, DataError
from trackstudy.inference import (
    STAGES,
    QualityFrameWarning,
    check_locality,
    cluster_hits,
    predict_event,
    predict_events,
)
from trackstudy.models.heads import build_model
from trackstudy.training.checkpoint import load_run, save_model

DBSCAN = {"method": "dbscan", "params": {}, "vertex_scan": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hits(mini_dir) -> pd.DataFrame:
    """All hits of the real reduced event (no truth read)."""
    return read_event(mini_dir, parts=("hits",)).hits


def _model(family="contrastive", backend="packed", seed=0, **kwargs):
    torch.manual_seed(seed)
    if family in ("enc_cla", "jm"):
        kwargs.setdefault("n_classes", 12)
    return build_model(family, "tiny", encoder_overrides={"attention": backend}, **kwargs).eval()


def test_every_hit_in_submission_pixel_only(hits):
    model = _model()
    sub, t = predict_event(model, hits, locality=DBSCAN, event_id=7, pixel_only=True)
    assert list(sub.columns) == ["event_id", "hit_id", "track_id"]
    assert len(sub) == len(hits) and (sub["hit_id"].to_numpy() == hits["hit_id"].to_numpy()).all()
    assert (sub["event_id"] == 7).all() and sub["track_id"].min() >= 0
    pixel = hits["volume_id"].isin(PIXEL_VOLUMES).to_numpy()
    assert t["n_hits"] == int(pixel.sum())
    # hits the pixel-only model never saw are one-hit tracks, with ids no pixel hit uses
    other = sub["track_id"].to_numpy()[~pixel]
    assert len(np.unique(other)) == len(other)
    assert not np.isin(other, sub["track_id"].to_numpy()[pixel]).any()
    assert set(t) == {*STAGES, "total", "n_hits"}
    assert all(t[s] >= 0 for s in STAGES)
    assert t["total"] >= sum(t[s] for s in STAGES) * 0.99
    assert not model.training


def test_all_volumes_and_no_clustering(hits):
    small = hits.iloc[:500]
    sub, t = predict_event(_model(), small, locality=None, event_id=1)
    assert t["n_hits"] == 500 and len(sub) == 500
    sub2, _ = predict_event(_model(), small, locality={"method": "none"}, event_id=1)
    pd.testing.assert_frame_equal(sub, sub2)


@pytest.mark.parametrize("family", ["enc_cla", "jm"])
def test_exact_backends_give_the_same_tracks(hits, family):
    small = hits[hits["volume_id"] == 8].iloc[:800]
    subs = [predict_event(_model(family, backend), small, locality=DBSCAN)[0] for backend in ("dense", "packed")]
    pd.testing.assert_frame_equal(subs[0], subs[1])


def test_other_families_and_lsh_run(hits):
    small = hits[hits["volume_id"].isin(PIXEL_VOLUMES)].iloc[:600]
    for family, backend in (("enc_reg", "packed"), ("contrastive", "lsh")):
        sub, t = predict_event(_model(family, backend), small, locality=DBSCAN)
        assert len(sub) == 600 and t["n_hits"] == 600


def test_backend_override_and_device(hits):
    small = hits.iloc[:300]
    model = _model(backend="packed")
    a, _ = predict_event(model, small, locality=DBSCAN, backend="dense", device="cpu")
    b, _ = predict_event(model, small, locality=DBSCAN)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ConfigError, match="backend 'nope'"):
        predict_event(model, small, locality=DBSCAN, backend="nope")


def test_saved_run_predicts_the_same(hits, tmp_path):
    model = _model(seed=3)
    run_config = {"locality": DBSCAN, "data": {"train": {"pixel_only": True}}}
    save_model(tmp_path, model, run_config, step=5)
    loaded, cfg = load_run(tmp_path, device="cpu")
    a, _ = predict_event(model, hits, locality=cfg["locality"], pixel_only=True)
    b, _ = predict_event(loaded, hits, locality=cfg["locality"], pixel_only=True)
    pd.testing.assert_frame_equal(a, b)


def test_predict_events_folder_and_list(hits, mini_dir):
    model = _model()
    sub, timings = predict_events(model, mini_dir, locality=DBSCAN, pixel_only=True, progress=False)
    assert len(sub) == len(hits) and list(timings["event_id"]) == [1]
    assert {*STAGES, "total", "n_hits"} <= set(timings.columns)
    parts = [hits.iloc[:200], (42, hits.iloc[200:500])]
    sub, timings = predict_events(model, parts, locality=DBSCAN, progress=False)
    assert list(timings["event_id"]) == [0, 42] and len(sub) == 500
    assert (sub.loc[sub["event_id"] == 42, "hit_id"].to_numpy() == hits["hit_id"].to_numpy()[200:500]).all()
    _, timings = predict_events(model, [hits.iloc[:100]] * 3, locality=None, n_events=2, progress=False)
    assert len(timings) == 2
    with pytest.raises(DataError, match="item 0"):
        predict_events(model, ["nope"], locality=None, progress=False)
    with pytest.raises(DataError, match="no events"):
        predict_events(model, [], locality=None, progress=False)


def test_bad_inputs(hits):
    model = _model()
    with pytest.raises(DataError, match="'x'"):
        predict_event(model, hits.drop(columns="x"), locality=None)
    with pytest.raises(DataError, match="volume_id"):
        predict_event(model, hits.drop(columns="volume_id"), locality=None, pixel_only=True)
    with pytest.raises(DataError, match="pixel volumes"):
        predict_event(model, hits[hits["volume_id"] > 9], locality=None, pixel_only=True)
    with pytest.raises(DataError, match="DataFrame"):
        predict_event(model, hits.to_numpy(), locality=None)
    with pytest.raises(ConfigError, match="unknown key 'radius'"):
        predict_event(model, hits, locality={"method": "dbscan", "radius": 3})
    with pytest.raises(ConfigError, match="locality.method='kmeans'"):
        check_locality({"method": "kmeans"})
    with pytest.raises(ConfigError, match="unknown dbscan parameter 'bogus'"):
        check_locality({"method": "dbscan", "params": {"bogus": 1}})
    with pytest.raises(ConfigError, match="vertex_scan"):
        check_locality({"method": "dbscan", "vertex_scan": "sideways"})
    with pytest.raises(ConfigError, match="'none'"):
        check_locality({"method": "none", "params": {"eps": 1}})


def test_cluster_hits_matches_locality_step(hits):
    from trackstudy.locality.clustering import cluster_xyz

    pix = hits[hits["volume_id"].isin(PIXEL_VOLUMES)]
    lab = cluster_hits(pix, {"method": "dbscan", "params": {"eps": 2.0}})
    ref = cluster_xyz(pix["x"].to_numpy(), pix["y"].to_numpy(), pix["z"].to_numpy(), "dbscan", eps=2.0)
    assert lab.dtype == np.int64 and np.array_equal(lab, ref)
    assert cluster_hits(pix, None) is None


def test_stage_clock_sums_repeated_stages():
    clock = StageClock(torch.device("cpu"))
    for _ in range(2):
        with clock("a"):
            sum(range(1000))
    with pytest.raises(RuntimeError):
        with clock("b"):
            raise RuntimeError("boom")
    assert set(clock.seconds) == {"a", "b"} and clock.seconds["a"] > 0


VIEWS = {"method": "dbscan", "params": {"barrel_max_size": 128}, "vertex_scan": True}


def _same_partition(a, b) -> bool:
    """Two label arrays that group the hits the same way (ids may differ)."""
    pairs = np.unique(np.stack([a, b]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b))


def test_one_barrel_view_at_the_origin_is_the_ordinary_pipeline(hits):
    # one view from z = 0: the same barrel clusters, the same outputs and the same candidates, each
    # hit in one of them: the resolution keeps every track of two or more hits as it is, except
    # those whose hits leave their line by more than MAX_RMS_MM and those without a line (hits at
    # one radius: at home in no view) of fewer than MIN_HITS_AWAY hits; they become one-hit tracks
    from trackstudy.postprocessing.views import MAX_RMS_MM, MIN_HITS_AWAY, line_fits

    pix = hits[hits["volume_id"].isin(PIXEL_VOLUMES)].iloc[:3000]
    model = _model()
    base, t0 = predict_event(model, pix, locality=VIEWS, event_id=3)
    one, t1 = predict_event(model, pix, locality={**VIEWS, "barrel_views": [0.0]}, event_id=3)
    assert t1["n_rows"] == t1["n_hits"] == t0["n_hits"] == len(pix)
    assert (one["hit_id"].to_numpy() == base["hit_id"].to_numpy()).all()
    _, lab = np.unique(base["track_id"].to_numpy(), return_inverse=True)
    lab = lab.ravel()
    z0, _, rms = line_fits(lab, np.hypot(pix["x"], pix["y"]).to_numpy(), pix["z"].to_numpy())
    size = np.bincount(lab)[lab]
    kept = (rms[lab] <= MAX_RMS_MM) & (size >= 2) & (np.isfinite(z0[lab]) | (size >= MIN_HITS_AWAY))
    assert kept.sum() > len(pix) / 4 and (~kept).sum() > 0  # both kinds occur
    expected = np.where(kept, lab, lab.max() + 1 + np.arange(len(lab)))  # the others alone
    assert _same_partition(one["track_id"].to_numpy(), expected)


def test_barrel_views_run_every_barrel_hit_once_per_view(hits):
    from trackstudy.locality.projection import BARREL, project

    pix = hits[hits["volume_id"].isin(PIXEL_VOLUMES)].iloc[:3000]
    n_barrel = int((project(*(pix[c].to_numpy() for c in "xyz")).surface == BARREL).sum())
    loc = {**VIEWS, "barrel_views": [-10.0, 0.0, 10.0]}
    capture = {}
    sub, t = predict_event(_model(), pix, locality=loc, event_id=4, capture=capture)
    assert len(sub) == len(pix) and (sub["hit_id"].to_numpy() == pix["hit_id"].to_numpy()).all()
    assert t["n_hits"] == len(pix) and t["n_rows"] == len(pix) + 2 * n_barrel
    # the diagnostics see one row per hit: its outputs in the view of its track
    assert capture["outputs"]["embedding"].shape[0] == len(pix) and capture["cluster"].shape == (len(pix),)
    assert (capture["hit_ids"] == pix["hit_id"].to_numpy()).all()


def test_view_frame_is_the_event_moved_to_the_view(hits):
    # hits that project onto the barrel cylinder from any vertex near the origin (|z| < 5 r): the view
    # from z = v with the view frame is the view from z = 0 of the event moved by -v (same clusters,
    # same features, same outputs), and the tracks are the same partition
    pix = hits[(hits["volume_id"] == 8) & (hits["z"].abs() < 5 * np.hypot(hits["x"], hits["y"]))].iloc[:2000]
    moved = pix.assign(z=pix["z"] - 12.0)
    model = _model()
    runs = {}
    for name, event, view, frame in (("framed", pix, 12.0, True), ("origin", moved, 0.0, True),
                                     ("plain", pix, 12.0, False)):  # plain: z as it is
        capture = {}
        sub, _ = predict_event(model, event, locality={**VIEWS, "barrel_views": [view], "view_frame": frame},
                               capture=capture)
        runs[name] = sub["track_id"].to_numpy(), capture["outputs"]["embedding"]
    assert _same_partition(runs["framed"][0], runs["origin"][0])
    assert np.allclose(runs["framed"][1], runs["origin"][1], atol=1e-5)
    assert not np.allclose(runs["plain"][1], runs["framed"][1], atol=1e-3)


def test_barrel_views_options_are_checked():
    assert check_locality(VIEWS)["view_frame"] is False
    assert check_locality({**VIEWS, "barrel_views": [0.0], "view_frame": True})["view_frame"] is True
    assert check_locality({**VIEWS, "barrel_views": [0.0], "view_frame": "both"})["view_frame"] == "both"
    with pytest.raises(ConfigError, match="view_frame"):
        check_locality({**VIEWS, "view_frame": "yes"})
    assert check_locality({**VIEWS, "barrel_views": [5, 0]})["barrel_views"] == [0.0, 5.0]
    assert check_locality(None)["barrel_views"] == [] and check_locality(VIEWS)["barrel_views"] == []
    with pytest.raises(ConfigError, match="replace the barrel's vertex-z scan"):
        check_locality({**VIEWS, "vertex_scan": "all", "barrel_views": [0.0]})
    with pytest.raises(ConfigError, match="method is 'none'"):
        check_locality({"method": "none", "barrel_views": [0.0]})
    with pytest.raises(ConfigError, match="barrel_views"):
        check_locality({**VIEWS, "barrel_views": ["left"]})


def _nhits_scorer(threshold=0.5):
    """A track-quality scorer whose logit is nhits - 3: at threshold 0.5 it keeps tracks of >= 3 hits."""
    from trackstudy.postprocessing.quality import FEATURES, TrackQuality

    w = np.zeros((len(FEATURES), 1))
    w[FEATURES.index("nhits"), 0] = 1.0
    return TrackQuality(mean=np.zeros(len(FEATURES)), scale=np.ones(len(FEATURES)), weights=[w], biases=[[-3.0]],
                        threshold=threshold)


def test_track_quality_scorer_keeps_the_tracks_it_scores_high(hits, tmp_path):
    pix = hits[hits["volume_id"].isin(PIXEL_VOLUMES)].iloc[:3000]
    model = _model(seed=2)
    capture = {}
    base, _ = predict_event(model, pix, locality=DBSCAN, event_id=1, capture=capture)
    cand = capture["candidates"]
    assert cand["features"].shape[0] == cand["track"].max() + 1 and len(cand["rows"]) == len(pix)
    _, lab = np.unique(base["track_id"].to_numpy(), return_inverse=True)
    lab = lab.ravel()
    size = np.bincount(lab)[lab]
    assert (size >= 3).sum() > 100 and ((size == 2).sum() > 0)  # both kinds occur
    expected = np.where(size >= 3, lab, lab.max() + 1 + np.arange(len(lab)))  # tracks of 2 hits dissolved
    model.track_quality = _nhits_scorer()
    scored, _ = predict_event(model, pix, locality=DBSCAN, event_id=1)
    assert _same_partition(scored["track_id"].to_numpy(), expected)
    off, _ = predict_event(model, pix, locality=DBSCAN, event_id=1, quality=False)
    pd.testing.assert_frame_equal(off, base)
    # with barrel views the scorer chooses among the views' candidates: every hit once
    views, t = predict_event(model, pix, locality={**VIEWS, "barrel_views": [-10.0, 0.0, 10.0]}, event_id=1)
    assert len(views) == len(pix) and t["n_rows"] > len(pix)
    sizes = views["track_id"].value_counts()  # (a 3-hit candidate may take 2 free hits)
    assert sizes.max() > 2 and (sizes >= 3).sum() > 50
    # a scorer fitted with the views in their own frames, run in the global one: said, not silent
    model.track_quality.view_frame = True
    with pytest.warns(QualityFrameWarning, match="view_frame=true, these views run with view_frame=false"):
        predict_event(model, pix, locality={**VIEWS, "barrel_views": [0.0]}, event_id=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", QualityFrameWarning)
        predict_event(model, pix, locality={**VIEWS, "barrel_views": [0.0], "view_frame": True}, event_id=1)
    # both frames: every barrel view twice, each hit in one track
    model.track_quality.view_frame = "both"
    with pytest.warns(QualityFrameWarning):
        one, t1 = predict_event(model, pix, locality={**VIEWS, "barrel_views": [-10.0, 10.0], "view_frame": True})
    both, t2 = predict_event(model, pix, locality={**VIEWS, "barrel_views": [-10.0, 10.0], "view_frame": "both"})
    # two views: one frame 2B + E rows (B barrel hits, E endcap hits), both frames 4B + E
    assert t2["n_rows"] - t1["n_rows"] == 2 * (t1["n_rows"] - len(pix)) and len(both) == len(pix)
    assert (both["hit_id"].to_numpy() == pix["hit_id"].to_numpy()).all()
    model.track_quality.view_frame = None
    # a run directory with track_quality.npz: load_run attaches the scorer
    save_model(tmp_path, model, {"locality": DBSCAN, "data": {"train": {"pixel_only": True}}}, step=1)
    model.track_quality.save(tmp_path / "track_quality.npz")
    loaded, _ = load_run(tmp_path, device="cpu")
    assert loaded.track_quality.threshold == 0.5
    again, _ = predict_event(loaded, pix, locality=DBSCAN, event_id=1)
    pd.testing.assert_frame_equal(again, scored)
    # variants of the track formation: their candidates pooled, the scorer choosing among them
    pooled = {}
    predict_event(model, pix, locality=DBSCAN, event_id=1, capture=pooled, quality=False,
                  variants=[{"eps": 0.1}, {"eps": 0.3}])
    assert len(pooled["candidates"]["rows"]) == 2 * len(pix)
    model.track_quality.variants = [{"eps": 0.1}, {"eps": 0.3}]
    chosen, _ = predict_event(model, pix, locality=DBSCAN, event_id=1)
    assert len(chosen) == len(pix) and chosen["track_id"].value_counts().max() > 2
    model.track_quality.variants = []
    # hits without the layer columns: a clear error naming the column
    with pytest.raises(DataError, match="layer_id"):
        predict_event(model, pix.drop(columns=["layer_id"]), locality=DBSCAN, event_id=1)
