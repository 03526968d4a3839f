"""fkb.Network over the engine: agreement with Keras, predict's input handling, weights, files,
legacy FKB text files, and the errors of each malformed input."""

from __future__ import annotations

import os
import struct
import threading

import numpy as np
import pytest

from conftest import LEGACY_DIR, assert_close

pytest.importorskip("fkb._core")
keras = pytest.importorskip("keras")

import fkb  # noqa: E402
from fkb._format import encode_fkb, read_fkb  # noqa: E402
from fkb._keras_reader import spec_from_keras  # noqa: E402

LEGACY_FILES = ["simple_model_with_weights.txt", "simple_model.txt"]


@pytest.fixture(scope="module")
def nets(cases):
    return {name: fkb.from_keras(model) for name, _, model in cases}


@pytest.fixture(scope="module")
def small(nets):
    return nets["dense_tanh_float32"]


def test_every_case_agrees_with_keras(cases, nets, case_inputs, keras_outputs):
    failures = []
    for name, dtype, _ in cases:
        net = nets[name]
        assert net.dtype == np.dtype(dtype)
        try:
            assert_close(net.predict(case_inputs[name].astype(dtype)), keras_outputs[name],
                         dtype, name)
        except AssertionError as e:
            failures.append(str(e).splitlines()[0])
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_batch_sizes(nets, case_inputs, keras_outputs, batch):
    for name in ("spcam_like_float32", "spcam_like_float64", "batch_normalization_float32"):
        dtype = nets[name].dtype
        got = nets[name].predict(case_inputs[name][:batch].astype(dtype))
        assert got.shape == (batch, nets[name].n_outputs)
        assert_close(got, keras_outputs[name][:batch], dtype.name, name)


def test_dtype_in_dtype_out(small):
    x = np.random.default_rng(1).normal(size=(5, small.n_inputs))
    y32 = small.predict(x.astype(np.float32))
    y64 = small.predict(x)
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    # A float32 network rounds float64 inputs to float32: same numbers either way.
    assert np.array_equal(y32.astype(np.float64), y64)


def test_single_sample_and_empty_batch(small):
    x = np.random.default_rng(2).normal(size=small.n_inputs)
    y = small.predict(x)
    assert y.shape == (small.n_outputs,)
    assert np.array_equal(y, small.predict(x[None, :])[0])
    assert small.predict(np.zeros((0, small.n_inputs))).shape == (0, small.n_outputs)


def test_integer_bool_and_list_inputs_are_converted(small):
    xi = np.arange(3 * small.n_inputs, dtype=np.int64).reshape(3, -1) - 5
    y = small.predict(xi)
    assert y.dtype == np.float32
    assert np.array_equal(y, small.predict(xi.astype(np.float32)))
    assert np.array_equal(small.predict(xi > 0), small.predict((xi > 0).astype(np.float32)))
    assert np.array_equal(small.predict(xi.tolist()), small.predict(xi.astype(np.float32)))


def test_non_contiguous_inputs_are_copied(small):
    rng = np.random.default_rng(3)
    base = rng.normal(size=(10, 2 * small.n_inputs)).astype(np.float32)
    view = base[:, ::2]
    assert not view.flags.c_contiguous
    assert np.array_equal(small.predict(view), small.predict(np.ascontiguousarray(view)))
    fortran = np.asfortranarray(base[:, : small.n_inputs])
    assert np.array_equal(small.predict(fortran), small.predict(np.ascontiguousarray(fortran)))
    swapped = base[:, : small.n_inputs].astype(">f4")
    assert np.array_equal(small.predict(swapped), small.predict(base[:, : small.n_inputs]))


def test_bad_predict_inputs(small):
    n = small.n_inputs
    with pytest.raises(fkb.ShapeError, match="width"):
        small.predict(np.zeros((4, n + 1), np.float32))
    with pytest.raises(fkb.ShapeError, match="rank"):
        small.predict(np.zeros((2, 2, n), np.float32))
    with pytest.raises(fkb.ShapeError, match="rank"):
        small.predict(np.float32(1.0))
    for bad in (np.array([["a"] * n]), np.array([[object()] * n]),
                np.zeros((1, n), np.complex64)):
        with pytest.raises(fkb.FKBError, match="non-numeric"):
            small.predict(bad)
    with pytest.raises(ValueError):  # ShapeError is a ValueError
        small.predict(np.zeros(n + 2))


def test_nan_propagates_like_keras(cases, nets, case_inputs):
    for name, dtype, model in cases:
        if name not in ("dense_relu_float32", "softmax_layer_float64", "layer_normalization_float32"):
            continue
        x = case_inputs[name][:4].astype(dtype)
        x[1, 0] = np.nan
        ref = np.asarray(model(x), dtype=np.float64)
        got = nets[name].predict(x)
        assert np.array_equal(np.isnan(got), np.isnan(ref)), name
        assert np.isnan(got[1]).any() and not np.isnan(got[[0, 2, 3]]).any(), name


def test_concurrent_predict_is_identical(nets, case_inputs):
    net = nets["spcam_like_float64"]
    x = case_inputs["spcam_like_float64"]
    expected = net.predict(x)
    results = [None] * 6

    def work(i):
        results[i] = [net.predict(x) for _ in range(5)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(r, expected) for rs in results for r in rs)


# -- description, weights, files -------------------------------------------------------------


def test_properties_summary_layers(cases, nets):
    model = dict((n, m) for n, _, m in cases)["batch_normalization_float64"]
    net = nets["batch_normalization_float64"]
    spec = spec_from_keras(model)
    assert (net.n_inputs, net.n_outputs) == (spec.n_inputs, spec.n_outputs)
    assert net.n_params == spec.n_params == model.count_params()
    assert [l.name for l in net.layers] == [l.name for l in model.layers]
    assert net.metadata["name"] == "batch_normalization"
    text = net.summary(print_fn=None)
    assert "Total params: " + f"{model.count_params():,}" in text
    for layer in model.layers:
        assert layer.name in text
    assert "fkb.Network" in repr(net)


def test_get_set_weights(cases, nets, case_inputs):
    for name, _, model in cases:
        if name not in ("batch_normalization_float32", "prelu_float64", "normalization_float32"):
            continue
        net = nets[name]
        spec = spec_from_keras(model)
        ws = net.get_weights()
        expect = [t for l in spec.layers for _, t in l.tensors]
        assert len(ws) == len(expect)
        for a, b in zip(ws, expect):
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    net = fkb.from_keras(dict((n, m) for n, _, m in cases)["dense_linear_float64"])
    ws = net.get_weights()
    x = case_inputs["dense_linear_float64"]
    before = net.predict(x)
    net.set_weights([2 * w for w in ws])
    assert not np.array_equal(net.predict(x), before)
    assert all(np.array_equal(a, 2 * b) for a, b in zip(net.get_weights(), ws))
    net.set_weights(ws)
    assert np.array_equal(net.predict(x), before)
    with pytest.raises(fkb.ShapeError):
        net.set_weights(ws[:-1])
    with pytest.raises(fkb.ShapeError):
        net.set_weights([w.T for w in ws])


def test_save_load_bit_exact(tmp_path, cases, nets):
    for name, _, model in cases[::7]:
        path = tmp_path / (name + ".fkb")
        nets[name].save(path)
        again = fkb.load(path)
        assert all(np.array_equal(a, b) for a, b in zip(again.get_weights(),
                                                          nets[name].get_weights()))
        ours = read_fkb(path)
        ref = spec_from_keras(model)
        for a, b in zip(ours.layers, ref.layers):
            assert (a.type, a.name, a.config) == (b.type, b.name, b.config)
            assert all(u.tobytes() == v.tobytes() for (_, u), (_, v) in zip(a.tensors, b.tensors))


def test_convert_many_and_one(tmp_path, cases):
    models = [m for _, _, m in cases[0:10:2]]  # distinct names
    outs = fkb.convert(models, tmp_path / "many", progress=False)
    assert len(outs) == 5 and all(os.path.exists(o) for o in outs)
    files = []
    for i, m in enumerate(models[:3]):
        p = tmp_path / f"src{i}.keras"
        m.save(p)
        files.append(str(p))
    outs = fkb.convert(files, tmp_path / "out")
    assert [os.path.basename(o) for o in outs] == ["src0.fkb", "src1.fkb", "src2.fkb"]
    single = fkb.convert(files[0], tmp_path / "one.fkb")
    assert read_fkb(single).n_inputs == models[0].inputs[0].shape[-1]
    with pytest.raises(ValueError, match="several sources"):
        fkb.convert([files[0], files[0]], tmp_path / "dup")


# -- legacy FKB text files ---------------------------------------------------------------


def _legacy_reference(path):
    """Outputs from the legacy text format's definition, computed here with numpy."""
    lines = [l.split() for l in open(path) if l.strip()]
    n = int(float(lines[0][0]))
    arch = lines[1:1 + n]
    dense = []
    for i, (kind, value) in enumerate(arch):
        if kind == "dense":
            dense.append((int(float(value)), arch[i + 1][0], float(arch[i + 1][1])))
    n_in = int(float(arch[0][1]))
    rest = lines[2 + n:]
    if not rest:
        return n_in, None
    sizes = [n_in] + [u for u, _, _ in dense]
    biases = [np.array(rest[i], float) for i in range(len(dense))]
    weights = [np.array(rest[len(dense) + i], float).reshape(sizes[i + 1], sizes[i]).T
               for i in range(len(dense))]
    return n_in, (dense, weights, biases)


@pytest.mark.parametrize("fname", LEGACY_FILES)
def test_legacy_text_files(tmp_path, fname):
    path = os.path.join(LEGACY_DIR, fname)
    net = fkb.load(path)
    n_in, ref = _legacy_reference(path)
    assert (net.n_inputs, net.n_outputs) == (n_in, 2)
    x = np.random.default_rng(5).normal(size=(9, n_in)).astype(net.dtype)
    y = net.predict(x)
    if ref is not None:
        dense, weights, biases = ref
        h = x.astype(np.float64)
        for (units, act, alpha), w, b in zip(dense, weights, biases):
            h = h @ w + b
            if act == "leakyrelu":
                h = np.where(h >= 0, h, alpha * h)
        assert_close(y, h, "float32", fname)
    else:
        assert net.metadata.get("weights") == "initialised"
    # FKB -> Keras -> FKB: same predictions, same weights, same legacy text round trip.
    model = fkb.to_keras(net)
    assert_close(np.asarray(model(x)), y, net.dtype.name, fname + " to_keras")
    back = fkb.from_keras(model)
    assert all(np.array_equal(a, b) for a, b in zip(back.get_weights(), net.get_weights()))
    assert [(l.type, l.config) for l in back.layers] == [(l.type, l.config) for l in net.layers]
    assert np.array_equal(back.predict(x), y)
    out = tmp_path / "again.txt"
    back.save(out, format="legacy")
    again = fkb.load(out)
    assert np.array_equal(again.predict(x), y)


def test_save_legacy_refuses_other_networks(tmp_path, nets):
    with pytest.raises(fkb.FKBError):
        nets["layer_normalization_float32"].save(tmp_path / "x.txt", format="legacy")
    with pytest.raises(ValueError):
        nets["dense_tanh_float32"].save(tmp_path / "x", format="onnx")


# -- malformed files through the engine ------------------------------------------------------


def test_engine_file_errors(tmp_path, small):
    with pytest.raises(fkb.FKBFileError) as e:
        fkb.load(tmp_path / "missing.fkb")
    assert isinstance(e.value, OSError) and "missing.fkb" in str(e.value)
    junk = tmp_path / "junk.txt"
    junk.write_text("this is not a model\n")
    with pytest.raises(fkb.FKBFormatError):
        fkb.load(junk)
    good = tmp_path / "good.fkb"
    small.save(good)
    data = good.read_bytes()
    bad = tmp_path / "bad.fkb"
    bad.write_bytes(data[:8] + struct.pack("<I", 9) + data[12:])
    with pytest.raises(fkb.FKBVersionError):
        fkb.load(bad)
    bad.write_bytes(data[:-3])
    with pytest.raises(fkb.FKBFormatError, match="(?i)truncat"):
        fkb.load(bad)
    spec = read_fkb(good)
    spec.layers[0].config["activation"] = "tanh"
    text = encode_fkb(spec).replace(b"activation=tanh", b"activation=sinh")
    hlen = struct.unpack_from("<Q", text, 16)[0]
    bad.write_bytes(text)
    assert hlen > 0
    with pytest.raises(fkb.UnsupportedError, match="sinh"):
        fkb.load(bad)
    with pytest.raises(fkb.FKBFileError):
        small.save(tmp_path / "no" / "dir" / "x.fkb")


def test_from_keras_errors(tmp_path):
    notes = tmp_path / "notes.h5"
    notes.write_text("not a model")
    with pytest.raises(fkb.FKBFormatError):
        fkb.from_keras(str(notes))
    with pytest.raises(fkb.UnsupportedError, match="'lam' is a Lambda"):
        fkb.from_keras(keras.Sequential([keras.Input((2,)),
                                         keras.layers.Lambda(lambda t: t, name="lam")]))
    with pytest.raises(TypeError):
        fkb.from_keras(42)


def test_contiguous_input_of_the_right_dtype_is_not_copied(small):
    """numpy reports its allocations to tracemalloc: a copy of x would show up in the peak."""
    import tracemalloc

    x = np.ones((20000, small.n_inputs), np.float32)
    small.predict(x[:10])  # warm up (workspaces)
    tracemalloc.start()
    try:
        y = small.predict(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes / 2 + y.nbytes, peak
    xf = np.asfortranarray(x)
    tracemalloc.start()
    try:
        small.predict(xf)
        _, peak_copy = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_copy >= x.nbytes  # the Fortran-ordered array was copied, as it must be
