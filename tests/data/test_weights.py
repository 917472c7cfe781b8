from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackstudy.data.io import read_event
from trackstudy.data.weights import ORDER_MATRIX, trackml_weights, weight_order, weight_pt
from trackstudy.errors import DataError

DATA = Path(__file__).resolve().parents[2] / "data" / "real" / "mini"


def test_weight_pt_shape():
    np.testing.assert_allclose(weight_pt([0.01, 0.05, 0.3, 0.5, 1.75, 3.0, 50.0]), [0.0, 0.2, 0.2, 0.2, 0.6, 1.0, 1.0])


def test_order_weights_by_hand():
    # 4 hits: the proposal (10, 8, 6, 5, 3, 3, 3, 5, 6) at supports k * 3/8 interpolated at 0, 1, 2, 3
    # x=0 -> 10; x=1 between 0.75 (6) and 1.125 (5) -> 6 - 0.25/0.375 = 5.3333; x=2 -> 3; x=3 -> 6
    raw = np.array([10.0, 6.0 - 0.25 / 0.375, 3.0, 6.0])
    np.testing.assert_allclose(ORDER_MATRIX[4, :4], raw / raw.sum())
    # 9 hits: the proposal itself
    prop = np.array([10, 8, 6, 5, 3, 3, 3, 5, 6.0])
    np.testing.assert_allclose(weight_order(np.arange(9), 9), prop / prop.sum())
    assert weight_order(0, 3) == 0.0           # fewer than 4 hits
    assert weight_order(20, 25) == 0.0         # hits beyond the 20th
    np.testing.assert_allclose(weight_order(5, 25), ORDER_MATRIX[20, 5])


def test_trackml_weights_tiny_event():
    # particle 1: pT 2 GeV (w_pt 0.68), 4 hits given in scrambled order along z;
    # particle 2: pT 0.3 (w_pt 0.2), 4 hits; particle 3: 3 hits (weight 0); one noise hit
    particles = pd.DataFrame({
        "particle_id": np.array([1, 2, 3], np.int64), "vz": [5.0, -5.0, 0.0],
        "px": [2.0, 0.0, 1.0], "py": [0.0, 0.3, 0.0],
    })
    truth = pd.DataFrame({
        "particle_id": np.array([1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 0], np.int64),
        "tz": [35.0, 15.0, 105.0, 55.0, -10.0, -20.0, -30.0, -40.0, 1.0, 2.0, 3.0, 7.0],
    })
    w = trackml_weights(truth, particles)
    order4 = ORDER_MATRIX[4, :4]
    # particle 1 hits by |tz - vz|: 15 (10), 35 (30), 55 (50), 105 (100) -> ranks 1, 0, 3, 2 of the rows
    raw = np.r_[0.68 * order4[[1, 0, 3, 2]], 0.2 * order4, 0, 0, 0, 0]
    np.testing.assert_allclose(w, raw / raw.sum())
    assert w.sum() == pytest.approx(1.0)
    assert w[-1] == 0.0


def test_tied_distances_share_the_truncated_average_rank():
    particles = pd.DataFrame({"particle_id": np.array([1], np.int64), "vz": [0.0], "px": [5.0], "py": [0.0]})
    truth = pd.DataFrame({"particle_id": np.ones(5, np.int64), "tz": [1.0, 2.0, 2.0, 3.0, 4.0]})
    w = trackml_weights(truth, particles)
    row = ORDER_MATRIX[5, :5]
    # ranks 0, 1.5 -> 1, 1.5 -> 1, 3, 4 (pandas rank average, then int)
    raw = row[[0, 1, 1, 3, 4]]
    np.testing.assert_allclose(w, raw / raw.sum())


def test_reproduces_real_weights_of_the_reduced_event():
    ev = read_event(DATA)
    real = ev.truth["weight"].to_numpy(np.float64)
    ours = trackml_weights(ev.truth, ev.particles, phase=2)  # a throughput-phase event
    # the reduced event keeps whole particles: weights agree up to the event normalisation
    nz = real > 0
    assert np.array_equal(nz, ours > 0)
    ratio = real[nz] / ours[nz]
    assert ratio.std() / ratio.mean() < 1e-5
    assert np.corrcoef(real, ours)[0, 1] > 0.999999
    # phase 1 differs only in giving secondaries their weight
    p1 = trackml_weights(ev.truth, ev.particles, phase=1)
    gen = (ev.truth["particle_id"].to_numpy() >> 24) & 0xFFF
    assert (p1[gen != 0] > 0).sum() > 100
    np.testing.assert_allclose(p1[nz] / ours[nz], (p1[nz] / ours[nz])[0], rtol=1e-9)


def test_errors_and_edge_cases():
    truth = pd.DataFrame({"particle_id": np.array([0, 0], np.int64), "tz": [1.0, 2.0]})
    particles = pd.DataFrame({"particle_id": np.array([], np.int64), "vz": [], "px": [], "py": []})
    np.testing.assert_array_equal(trackml_weights(truth, particles), [0.0, 0.0])
    with pytest.raises(DataError, match="lacks column tz"):
        trackml_weights(truth.drop(columns=["tz"]), particles)
    with pytest.raises(DataError, match="phase=3"):
        trackml_weights(truth, particles, phase=3)
