"""A compiled Keras model converts to a network that loads compiled (its optimizer and loss as
FKB training records), in memory and through a .keras file; `fkb info` shows the state."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

fkb = pytest.importorskip("fkb")
pytest.importorskip("fkb._core")
keras = pytest.importorskip("keras")


def _model():
    keras.utils.set_random_seed(3)
    m = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, activation="tanh"),
                          keras.layers.Dense(2)])
    m.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.002, centered=True),
              loss="mean_absolute_error")
    return m


def test_in_memory_and_file_conversions_load_compiled(tmp_path):
    m = _model()
    x = np.random.default_rng(1).normal(size=(16, 5))
    y = np.random.default_rng(2).normal(size=(16, 2))
    for src in (m, str(tmp_path / "m.keras")):
        if isinstance(src, str):
            m.save(src)
        out = tmp_path / "m.fkb"
        fkb.convert(src, str(out))
        net = fkb.load(str(out))
        assert net.optimizer.startswith("rmsprop learning_rate=0.002") and "centered=1" in \
            net.optimizer
        assert net.loss.startswith("mean_absolute_error")
        before = net.evaluate(x, y)
        for _ in range(5):
            net.train_on_batch(x, y)
        assert net.iterations == 5 and net.evaluate(x, y) < before
    info = subprocess.run([sys.executable, "-m", "fkb", "info", str(tmp_path / "m.fkb")],
                          check=True, capture_output=True, text=True).stdout
    assert "Training state: optimizer 'rmsprop" in info and "iterations=0" in info


def test_uncompiled_model_converts_without_training_state(tmp_path):
    keras.utils.set_random_seed(3)
    m = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    fkb.convert(m, str(tmp_path / "plain.fkb"))
    net = fkb.load(str(tmp_path / "plain.fkb"))
    assert net.iterations == 0
    with pytest.raises(fkb.FKBArgumentError, match="not compiled"):
        net.train_on_batch(np.zeros((1, 5)), np.zeros((1, 2)))


def test_saved_training_state_exports_compiled(tmp_path):
    """A network saved while training exports to a Keras model compiled with the same
    optimizer and loss (a fresh Keras optimizer state)."""
    m = _model()
    fkb.convert(m, str(tmp_path / "m.fkb"))
    net = fkb.load(str(tmp_path / "m.fkb"))
    x = np.random.default_rng(1).normal(size=(16, 5))
    y = np.random.default_rng(2).normal(size=(16, 2))
    net.train_on_batch(x, y)
    net.save(str(tmp_path / "trained.fkb"))
    k = fkb.to_keras(str(tmp_path / "trained.fkb"))
    assert type(k.optimizer).__name__ == "RMSprop" and k.optimizer.centered
    assert float(k.optimizer.learning_rate) == pytest.approx(0.002)
    assert type(k.loss).__name__ == "MeanAbsoluteError"
    np.testing.assert_allclose(k.predict(x, verbose=0), net.predict(x), rtol=1e-5, atol=1e-6)
