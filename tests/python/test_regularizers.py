"""Keras regularizers (L1, L2, L1L2 on Dense kernels and biases), frozen layers and
BatchNormalization's momentum carry over to FKB: train_on_batch matches Keras (float64,
1e-12 normwise per tensor; loss values include the penalties) and to_keras keeps them."""

from __future__ import annotations

import numpy as np
import pytest

fkb = pytest.importorskip("fkb")
pytest.importorskip("fkb._core")
keras = pytest.importorskip("keras")


@pytest.fixture
def float64():
    old_x, old_p = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(old_x)
    keras.config.set_dtype_policy(old_p)


def _model():
    keras.utils.set_random_seed(11)
    R = keras.regularizers
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="tanh", kernel_regularizer=R.L2(0.01),
                           bias_regularizer=R.L1(0.003), name="dense"),
        keras.layers.BatchNormalization(momentum=0.9, name="batch_normalization"),
        keras.layers.Dense(5, activation="relu", kernel_regularizer=R.L1L2(l1=0.002, l2=0.004)),
        keras.layers.Dense(3, name="frozen"),
    ])


def test_regularized_training_matches_keras(float64):
    m = _model()
    m.get_layer("frozen").trainable = False
    net = fkb.from_keras(m)
    cfg = {layer.name: layer.config for layer in net.layers}
    assert cfg["dense"]["kernel_l2"] == pytest.approx(0.01) and cfg["dense"]["bias_l1"] == pytest.approx(0.003)
    assert cfg["frozen"]["trainable"] is False
    assert cfg["batch_normalization"]["momentum"] == 0.9
    m.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    net.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    rng = np.random.default_rng(3)
    for _ in range(3):
        x, y = rng.normal(size=(16, 6)), rng.normal(size=(16, 3))
        lk = float(m.train_on_batch(x, y))
        lf = net.train_on_batch(x, y)
        assert abs(lf - lk) <= 1e-12 * abs(lk)
    for a, b in zip(net.get_weights(), m.get_weights()):
        assert np.abs(a - b).max() <= 1e-12 * max(1e-300, np.abs(b).max())
    back = fkb.to_keras(net)
    assert not back.get_layer("frozen").trainable
    assert back.get_layer("dense").kernel_regularizer is not None
    assert back.get_layer("batch_normalization").momentum == pytest.approx(0.9)


def test_unsupported_regularizer_is_refused():
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
        2, kernel_regularizer=keras.regularizers.OrthogonalRegularizer(0.1))])
    with pytest.raises(fkb.UnsupportedError, match="OrthogonalRegularizer"):
        fkb.from_keras(m)
