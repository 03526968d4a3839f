"""Legacy tf.keras 2.x `.h5` files (written here with the tf_keras package) -> FKB."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import assert_close

K = pytest.importorskip("tf_keras")
pytest.importorskip("keras")

from fkb import FKBFormatError, UnsupportedError  # noqa: E402
from fkb._keras_reader import spec_from_path  # noqa: E402
from fkb._to_keras import spec_to_keras  # noqa: E402

KL = K.layers
K2_ACTIVATIONS = ["linear", "relu", "elu", "selu", "gelu", "swish", "mish", "softplus",
                  "softsign", "tanh", "sigmoid", "exponential", "softmax"]


def _randomise(model, rng):
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        new = []
        for w in ws:
            if w.ndim == 0:
                new.append(w)
            elif "variance" in layer.weights[len(new)].name or "gamma" in \
                    layer.weights[len(new)].name:
                new.append(rng.uniform(0.5, 1.5, w.shape).astype(w.dtype))
            else:
                new.append(rng.normal(0, 0.5, w.shape).astype(w.dtype))
        layer.set_weights(new)


def _models():
    out = []
    for dtype in ("float32", "float64"):
        kw = {"dtype": dtype}
        layers = [KL.Dense(8, activation=a, input_shape=(5,) if i == 0 else None, **kw)
                  if i == 0 else KL.Dense(8, activation=a, **kw)
                  for i, a in enumerate(K2_ACTIVATIONS)]
        layers.append(KL.Dense(3, use_bias=False, **kw))
        out.append((f"activations_{dtype}", K.Sequential(layers, name=f"acts_{dtype}")))
        i = K.Input((6,), dtype=dtype)
        x = KL.Dense(7, **kw)(i)
        x = KL.BatchNormalization(**kw)(x)
        x = KL.LeakyReLU(alpha=0.15, **kw)(x)
        x = KL.Normalization(**kw)(x)
        x = KL.PReLU(**kw)(x)
        x = KL.LayerNormalization(center=False, **kw)(x)
        x = KL.Dropout(0.4, **kw)(x)
        x = KL.Flatten(**kw)(x)
        x = KL.ReLU(max_value=1.0, **kw)(x)
        x = KL.Dense(5, **kw)(x)
        x = KL.ELU(alpha=0.6, **kw)(x)
        x = KL.ReLU(negative_slope=0.1, threshold=0.2, **kw)(x)
        x = KL.Normalization(mean=0.5, variance=2.0, invert=True, **kw)(x)
        x = KL.Activation("tanh", **kw)(x)
        x = KL.Softmax(**kw)(x)
        out.append((f"layers_{dtype}", K.Model(i, x, name=f"layers_{dtype}")))
    return out


@pytest.fixture(scope="session")
def legacy_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("legacy_h5")
    K.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    files = []
    for name, model in _models():
        _randomise(model, rng)
        model.compile(optimizer=K.optimizers.SGD(learning_rate=0.01), loss="mse")
        path = d / f"{name}.h5"
        model.save(path)
        x = rng.normal(size=(50, model.input_shape[-1]))
        dtype = model.layers[-1].dtype
        y = np.asarray(model(x.astype(dtype), training=False), dtype=np.float64)
        files.append((name, dtype, path, x, y))
    return files


def test_legacy_h5_files_are_tf_keras_2(legacy_files):
    for _, _, path, _, _ in legacy_files:
        with h5py.File(path) as f:
            assert f.attrs["keras_version"].startswith("2.")


def test_legacy_h5_converts_and_matches_tf_keras(legacy_files):
    for name, dtype, path, x, y in legacy_files:
        spec = spec_from_path(path)
        assert spec.dtype == dtype, name
        assert spec.metadata["keras_version"].startswith("2.")
        assert "SGD" in spec.metadata["training_config"]
        rebuilt = spec_to_keras(spec)  # Keras 3 equivalent
        got = np.asarray(rebuilt(x.astype(dtype)), dtype=np.float64)
        assert_close(got, y, dtype, name)


def test_legacy_h5_through_the_engine(legacy_files):
    pytest.importorskip("fkb._core")
    import fkb

    for name, dtype, path, x, y in legacy_files:
        net = fkb.from_keras(str(path))
        assert net.dtype == np.dtype(dtype)
        assert_close(net.predict(x.astype(dtype)), y, dtype, name)


def test_legacy_refusals(tmp_path):
    cases = [
        (K.Sequential([KL.Dense(3, input_shape=(4,)), KL.Lambda(lambda t: t * 2, name="twice")]),
         "'twice' is a Lambda"),
        (K.Sequential([KL.Dense(3, input_shape=(4,), activation="hard_sigmoid", name="hs")]),
         "'hs'.*hard_sigmoid"),
        (K.Sequential([KL.Dense(3, input_shape=(4,), name="a"),
                       KL.Dense(2, dtype="float64", name="b")]), "'b'.*float64"),
        (K.Sequential([KL.Conv2D(2, 2, input_shape=(4, 4, 1), name="conv")]), "'conv'.*Conv2D"),
        (K.Sequential([KL.Conv1D(2, 2, input_shape=(None, 1), name="conv")]), "dimension but"),
        (K.Sequential([KL.Dense(3, input_shape=(4,), name="half", dtype="mixed_float16")]),
         "'half'.*mixed_float16"),
    ]
    for i, (model, match) in enumerate(cases):
        path = tmp_path / f"bad{i}.h5"
        model.save(path)
        with pytest.raises(UnsupportedError, match=match):
            spec_from_path(path)


def test_legacy_custom_layer_refused_without_running_it(tmp_path):
    @K.utils.register_keras_serializable(package="my")
    class Twice(KL.Layer):
        def call(self, t):
            return 2 * t

    model = K.Sequential([KL.Dense(3, input_shape=(4,)), Twice(name="twice")])
    path = tmp_path / "custom.h5"
    model.save(path)
    with pytest.raises(UnsupportedError, match="'twice'.*Twice"):
        spec_from_path(path)


def test_truncated_legacy_h5(tmp_path, legacy_files):
    _, _, path, _, _ = legacy_files[0]
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(FKBFormatError):
        spec_from_path(cut)


def test_legacy_graph(tmp_path):
    """A tf.keras 2 Functional graph (two inputs, two outputs, merges, Conv1D, pooling,
    Bidirectional GRU, TimeDistributed(Dense), Reshape) read from its .h5 file: the Keras 3
    rebuild agrees with tf.keras."""
    a = K.Input((6, 3), name="seq")
    b = K.Input((4,), name="vec")
    h = KL.Conv1D(4, 3, padding="same", activation="relu", name="conv")(a)
    h = KL.MaxPooling1D(2, name="pool")(h)
    h = KL.Bidirectional(KL.GRU(2, return_sequences=True), merge_mode="sum", name="bi")(h)
    r = KL.Reshape((3, 4), name="r")(KL.Dense(12, name="d")(b))
    c = KL.Concatenate(name="cat")([h, r])
    y1 = KL.TimeDistributed(KL.Dense(2), name="td")(c)
    y2 = KL.Add(name="add")([KL.GlobalAveragePooling1D(name="gap")(c), KL.Dense(6, name="e")(b)])
    model = K.Model([a, b], [y1, y2], name="legacy_graph")
    _randomise(model, np.random.default_rng(3))
    path = tmp_path / "graph.h5"
    model.save(path)
    spec = spec_from_path(path)
    assert spec.input_names() == ["seq", "vec"] and spec.output_names() == ["td", "add"]
    assert spec.layers[-1].inputs == ["gap", "e"]
    rng = np.random.default_rng(4)
    xs = [rng.normal(size=(9, 6, 3)).astype("float32"), rng.normal(size=(9, 4)).astype("float32")]
    ref = model.predict(xs, verbose=0)
    got = spec_to_keras(spec).predict(xs, verbose=0)
    for g, y in zip(got, ref):
        assert_close(g, y, "float32", "legacy graph")
    try:
        import fkb
        from fkb import _core  # noqa: F401
    except ImportError:
        return
    net = fkb.from_keras(str(path))
    for g, y in zip(net.predict(xs), ref):
        assert_close(g, y, "float32", "legacy graph through the engine")
