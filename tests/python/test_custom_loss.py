"""Custom losses from Python: a numpy function trains exactly like its built-in twin, an
exception in it stops the step and is reported, and the state survives save/load."""

from __future__ import annotations

import numpy as np
import pytest

fkb = pytest.importorskip("fkb")
pytest.importorskip("fkb._core")
keras = pytest.importorskip("keras")


def _mse(y, t, w):
    e = y - t
    return float((e * e).mean()), 2 * e / e.size


def _net():
    keras.utils.set_random_seed(4)
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="elu"),
                          keras.layers.Dense(3)])
    keras.config.set_floatx("float32")
    return fkb.from_keras(m)


def test_custom_equals_builtin_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 4)), rng.normal(size=(10, 3))
    a, b = _net(), _net()
    a.compile("adam", loss="mse")
    b.compile("adam", loss=fkb.CustomLoss(_mse))
    for _ in range(4):
        la = a.train_on_batch(x, y)
        lb = b.train_on_batch(x, y)
    assert abs(la - lb) <= 1e-12 * la
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wb, wa, rtol=1e-6, atol=1e-7)

    def broken(y, t, w):
        raise RuntimeError("no physics today")

    b.set_custom_loss(fkb.CustomLoss(broken))
    before = [w.copy() for w in b.get_weights()]
    with pytest.raises(fkb.FKBError, match="no physics today"):
        b.train_on_batch(x, y)
    assert b.iterations == 4
    for w0, w1 in zip(before, b.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    with pytest.raises(fkb.FKBError, match="shape of y_pred"):
        b.set_custom_loss(fkb.CustomLoss(lambda y, t, w: (0.0, np.zeros(2))))
        b.train_on_batch(x, y)
    with pytest.raises(TypeError):
        fkb.CustomLoss(3)
