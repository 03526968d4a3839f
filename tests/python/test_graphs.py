"""Format 1.2 graphs: several inputs and outputs, skip connections, merge layers, shaped data
(Reshape, Permute, RepeatVector, Flatten, global pooling, Dense and TimeDistributed(Dense) on
rank-3 data). The file format and the Keras round trip are pure Python; agreement with Keras
goes through the engine (fkb.from_keras(model).predict)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from conftest import check_engine, check_round_trip

from fkb import FKBFormatError, ShapeError, UnsupportedError
from fkb._format import (
    InputSpec,
    LayerSpec,
    ModelSpec,
    decode_fkb,
    encode_fkb,
    format_header,
    parse_header,
)

CASES = ["residual_mlp", "merge_graph", "reshape_permute", "time_distributed"]
DTYPES = ["float32", "float64"]


# -- the file format (no Keras) ----------------------------------------------------------------


def graph_spec(dtype: str = "float64") -> ModelSpec:
    """Two inputs (one named with a comma and a space), three outputs, merges, shapes."""
    rng = np.random.default_rng(3)

    def w(*shape):
        return rng.normal(size=shape).astype(dtype)

    return ModelSpec(
        dtype=dtype, n_inputs=None,
        inputs=[InputSpec("seq, a", (5, 3)), InputSpec("vec", (3,))],
        layers=[
            LayerSpec("dense", "d", {"units": 3, "activation": "tanh", "use_bias": True},
                      [("kernel", w(3, 3)), ("bias", w(3))], ["vec"]),
            LayerSpec("repeat_vector", "rep", {"n": 5}),
            LayerSpec("add", "sum", {}, [], ["seq, a", "rep"]),
            LayerSpec("concatenate", "cat", {"axis": 1}, [], ["seq, a", "sum", "rep"]),
            LayerSpec("dense", "per_step", {"units": 2, "activation": "linear",
                                            "use_bias": False, "time_distributed": True},
                      [("kernel", w(3, 2))]),
            LayerSpec("flatten", "flat", {}, [], ["cat"]),
            LayerSpec("reshape", "r", {"target_shape": [3, 15]}),
            LayerSpec("permute", "p", {"dims": [2, 1]}),
        ],
        outputs=["per_step", "p", "vec"],
        metadata={"name": "graph"},
    )


def test_graph_file_round_trip_and_layout():
    spec = graph_spec()
    data = encode_fkb(spec)
    assert struct.unpack_from("<II", data, 8) == (1, 2)  # minor version 2: 1.2 features
    back = decode_fkb(data)
    assert encode_fkb(back) == data
    text = format_header(spec)
    assert "\ninput 5,3 name=seq%2C%20a\ninput 3 name=vec\n" in text
    assert "layer add name=sum inputs=seq%2C%20a,rep\n" in text
    assert "layer dense name=per_step units=2 activation=linear use_bias=0 " \
        "time_distributed=1\n" in text
    assert "layer reshape name=r target_shape=3,15\n" in text
    assert "\noutput per_step,p,vec\n" in text
    assert back.input_names() == ["seq, a", "vec"]
    assert back.output_shapes() == [(15, 2), (15, 3), (3,)]
    assert back.n_inputs == 18 and back.n_outputs == 30 + 45 + 3
    assert back.layers[2].inputs == ["seq, a", "rep"]
    assert back.layer_inputs(1) == ["d"]  # implicit: the previous layer
    assert not back.is_chain() and back.uses_v12()


def test_chain_over_rank3_input_is_12_without_graph_records():
    spec = ModelSpec("float32", n_inputs=None, inputs=[InputSpec("input", (4, 3))],
                     layers=[LayerSpec("dense", "d", {"units": 2, "activation": "relu",
                                                      "use_bias": False},
                                       [("kernel", np.ones((3, 2), "f4"))], ["input"])],
                     outputs=["d"])
    text = format_header(spec)
    assert "input 4,3\n" in text and "inputs=" not in text and "output" not in text
    assert struct.unpack_from("<II", encode_fkb(spec), 8) == (1, 2)
    assert decode_fkb(encode_fkb(spec)).output_shapes() == [(4, 2)]


def test_new_layer_types_shapes():
    """Per-sample shape rules of the 1.2 layer types (docs/format.md)."""
    from fkb._format import LAYER_TYPES

    def out(t, c, *shapes):
        return LAYER_TYPES[t].out_shape(c, list(shapes))

    assert out("concatenate", {"axis": -1}, (4, 2), (4, 3)) == (4, 5)
    assert out("concatenate", {"axis": 1}, (4, 2), (1, 2)) == (5, 2)
    assert out("global_max_pooling1d", {"keepdims": True}, (9, 4)) == (1, 4)
    assert out("up_sampling1d", {"size": 3}, (5, 2)) == (15, 2)
    assert out("zero_padding1d", {"left": 0, "right": 2}, (5, 2)) == (7, 2)
    assert out("cropping1d", {"left": 1, "right": 2}, (5, 2)) == (2, 2)
    assert out("permute", {"dims": [3, 1, 2]}, (2, 3, 4)) == (4, 2, 3)
    assert out("repeat_vector", {"n": 4}, (3,)) == (4, 3)
    rnn = {"units": 5, "return_sequences": True}
    assert out("lstm", rnn, (7, 2)) == (7, 5)
    assert out("gru", dict(rnn, return_sequences=False), (7, 2)) == (5,)
    assert out("bidirectional", dict(rnn, merge_mode="concat"), (7, 2)) == (7, 10)
    assert out("bidirectional", dict(rnn, merge_mode="ave", return_sequences=False),
               (7, 2)) == (5,)
    assert out("dense", {"units": 4}, (6, 5, 3)) == (6, 5, 4)


def _edit(old: str, new: str) -> bytes:
    text = format_header(graph_spec())
    assert old in text, old
    return text.replace(old, new, 1).encode()


@pytest.mark.parametrize(
    "old,new,error,match",
    [
        # a cycle: a layer takes a layer defined after it
        ("layer repeat_vector name=rep n=5", "layer repeat_vector name=rep inputs=cat n=5",
         FKBFormatError, "'rep'.*'cat'.*comes after"),
        ("inputs=seq%2C%20a,rep\n", "inputs=sum,rep\n", FKBFormatError, "'sum'.*own output"),
        # dangling input
        ("inputs=seq%2C%20a,rep\n", "inputs=seq,rep\n", FKBFormatError,
         "'sum'.*'seq'.*neither an input nor a layer"),
        ("output per_step,p,vec", "output per_step,q", FKBFormatError, "output 'q'"),
        ("output per_step,p,vec", "output p,p", FKBFormatError, "'p' is named twice"),
        # merged branches of different shapes
        ("inputs=seq%2C%20a,rep\n", "inputs=seq%2C%20a,d\n", ShapeError,
         "'sum'.*\\(5, 3\\).*\\(3,\\)"),
        ("name=cat inputs=seq%2C%20a,sum,rep axis=1", "name=cat inputs=seq%2C%20a,sum,d axis=1",
         ShapeError, "'cat'"),
        ("name=cat inputs=seq%2C%20a,sum,rep axis=1", "name=cat inputs=seq%2C%20a,sum,rep axis=3",
         ShapeError, "'cat'.*axis=3"),
        ("name=cat inputs=seq%2C%20a,sum,rep axis=1", "name=cat inputs=seq%2C%20a,sum,rep axis=0",
         FKBFormatError, "'cat'.*batch axis"),
        ("layer add name=sum", "layer subtract name=sum", None, None),  # 2 inputs: fine
        ("name=cat inputs=seq%2C%20a,sum,rep", "name=cat inputs=sum", FKBFormatError,
         "'cat'.*takes 1 input"),
        ("target_shape=3,15", "target_shape=4,15", ShapeError, "'r'.*target_shape"),
        ("dims=2,1", "dims=1,1", ShapeError, "'p'.*permutation"),
        ("name=d inputs=vec units=3", "name=d inputs=vec units=3 inputs=vec", FKBFormatError,
         "inputs= given twice"),
        # the first layer of a two-input network must name its inputs
        ("name=d inputs=vec ", "name=d ", FKBFormatError, "'d'.*must name its inputs"),
        ("layer repeat_vector name=rep", "layer repeat_vector name=vec", FKBFormatError,
         "'vec'.*duplicate"),
        ("input 3 name=vec", "input 3 name=seq%2C%20a", FKBFormatError, "duplicate"),
        ("input 3 name=vec", "input 3 nom=vec", FKBFormatError, "only takes name="),
        ("input 3 name=vec", "input 3,x name=vec", FKBFormatError, "input"),
        ("layer flatten name=flat inputs=cat", "layer flatten name=flat inputs=cat,",
         FKBFormatError, "empty name"),
        ("output per_step,p,vec\n", "output per_step,p,vec\noutput p\n", FKBFormatError,
         "after the output record"),
        ("output per_step,p,vec\n", "output per_step,p,vec\nlayer flatten name=f2\n",
         FKBFormatError, "after the output record"),
        ("layer flatten name=flat", "input 3 name=late\nlayer flatten name=flat",
         FKBFormatError, "'input' record after the first layer"),
        ("name=per_step units=2", "name=per_step units=3", ShapeError, "'per_step'.*kernel"),
        ("layer permute name=p dims=2,1", "layer permute name=p dims=2,1 time_distributed=1",
         Exception, "'p'.*time_distributed"),
        ("layer reshape name=r", "layer reshape name=r inputs=vec", ShapeError,
         "'r'.*target_shape"),
    ],
)
def test_bad_graph_headers(old, new, error, match):
    data = _edit(old, new)
    if error is None:
        parse_header(data)
        return
    with pytest.raises(error, match=match):
        parse_header(data)


def test_time_distributed_needs_rank2():
    text = format_header(graph_spec()).replace(
        "layer dense name=d inputs=vec units=3 activation=tanh use_bias=1",
        "layer dense name=d inputs=vec units=3 activation=tanh use_bias=1 time_distributed=1")
    with pytest.raises(ShapeError, match="'d'.*time_distributed"):
        parse_header(text)


def test_writer_refuses_bad_graphs():
    spec = graph_spec()
    spec.layers[2].inputs = ["seq, a", "nowhere"]
    with pytest.raises(FKBFormatError, match="'sum'.*'nowhere'"):
        encode_fkb(spec)
    spec = graph_spec()
    spec.outputs = ["missing"]
    with pytest.raises(FKBFormatError, match="'missing'"):
        encode_fkb(spec)
    spec = graph_spec()
    spec.n_inputs = 17
    with pytest.raises(ShapeError, match="n_inputs"):
        encode_fkb(spec)


def test_subgraph_and_truncated():
    spec = graph_spec()
    sub = spec.subgraph(["cat"])
    assert [layer.name for layer in sub.layers] == ["d", "rep", "sum", "cat"]
    assert sub.output_shapes() == [(15, 3)]
    assert spec.truncated(2).output_names() == ["rep"]


# -- Keras round trip (no engine) --------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_round_trip_exact(make_cases, graph_case, case, dtype):
    _, model, xs, ys = graph_case(f"{case}_{dtype}")
    check_round_trip(make_cases, model, xs, ys, dtype)


def test_graph_conversion_records(graph_case):
    from fkb._keras_reader import spec_from_keras

    _, model, _, _ = graph_case("merge_graph_float32")
    spec = spec_from_keras(model)
    assert spec.input_names() == ["seq", "vec"]
    assert spec.output_names() == ["per_step", "flat_head", "cat_vec"]
    assert spec.input_shapes() == [(5, 3), (3,)]
    assert spec.output_shapes() == [tuple(t.shape[1:]) for t in model.outputs]
    types = {layer.type for layer in spec.layers}
    assert {"add", "subtract", "multiply", "average", "maximum", "minimum",
            "concatenate", "repeat_vector", "flatten", "global_average_pooling1d"} <= types
    _, model, _, _ = graph_case("time_distributed_float32")
    spec = spec_from_keras(model)
    assert spec.layers[0].config["time_distributed"] is True
    assert "time_distributed" not in spec.layers[1].config
    _, model, _, _ = graph_case("residual_mlp_float64")
    spec = spec_from_keras(model)
    assert spec.layers[3].type == "add" and spec.layers[3].inputs == ["stem", "block0_b"]


@pytest.mark.parametrize("case", ["merge_graph_float64", "residual_mlp_float32",
                                  "time_distributed_float64"])
def test_keras_and_h5_files(tmp_path, graph_case, case):
    from fkb._keras_reader import spec_from_keras, spec_from_path

    _, model, _, _ = graph_case(case)
    live = spec_from_keras(model)
    live.metadata.pop("source", None)
    for ext in (".keras", ".h5"):
        path = tmp_path / (case + ext)
        model.save(path)
        spec = spec_from_path(path)
        spec.metadata.pop("source")
        assert format_header(spec) == format_header(live), ext


def test_exported_graph_reloads_in_safe_mode(tmp_path, make_cases, graph_case):
    import keras

    from fkb._keras_reader import spec_from_keras
    from fkb._to_keras import spec_to_keras

    _, model, xs, ys = graph_case("merge_graph_float32")
    path = tmp_path / "graph.keras"
    spec_to_keras(spec_from_keras(model)).save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    for g, y in zip(make_cases.keras_predict_multi(again, xs), ys):
        assert np.array_equal(g, y)


# -- refusals of the converter -----------------------------------------------------------------


def _refuse(build, error, match):
    from fkb._keras_reader import spec_from_keras

    with pytest.raises(error, match=match):
        spec_from_keras(build())


def test_converter_refusals():
    import keras

    L = keras.layers

    def shared():
        i = keras.Input((4,))
        d = L.Dense(4, name="twice")
        return keras.Model(i, d(d(i)))

    _refuse(shared, UnsupportedError, "'twice'.*used 2 times")

    def broadcast():
        a, b = keras.Input((4, 3)), keras.Input((1, 3))
        return keras.Model([a, b], L.Add(name="bcast")([a, b]))

    _refuse(broadcast, ShapeError, "'bcast'.*no broadcasting")

    def lam():
        i = keras.Input((4,))
        return keras.Model(i, L.Add()([i, L.Lambda(lambda t: t * 2, name="twice_it")(i)]))

    _refuse(lam, UnsupportedError, "'twice_it' is a Lambda")

    _refuse(lambda: keras.Sequential([keras.Input((5, 3)),
                                      L.BatchNormalization(axis=1, name="bn_steps")]),
            UnsupportedError, "'bn_steps'.*axis=1")
    _refuse(lambda: keras.Sequential([keras.Input((5, 3)),
                                      L.LayerNormalization(axis=[1, 2], name="ln2")]),
            UnsupportedError, "'ln2'.*axis")
    _refuse(lambda: keras.Sequential([keras.Input((5, 3)), L.PReLU(shared_axes=[1],
                                                                   name="pr")]),
            UnsupportedError, "'pr'.*shared_axes")
    _refuse(lambda: keras.Sequential([keras.Input((None, 3)), L.Dense(2)]),
            UnsupportedError, "shape \\(None, 3\\)")
    _refuse(lambda: keras.Sequential([keras.Input((5, 3)),
                                      L.TimeDistributed(L.Dropout(0.1), name="td_drop")]),
            UnsupportedError, "'td_drop'.*Dropout.*TimeDistributed\\(Dense\\) only")
    _refuse(lambda: keras.Sequential([keras.Input((5, 3)), L.Masking(name="mask")]),
            UnsupportedError, "'mask'.*masking")
    _refuse(lambda: keras.Sequential([keras.Input((5, 3)), L.Flatten(data_format="channels_first",
                                                                     name="flat_cf")]),
            UnsupportedError, "'flat_cf'.*channels_first")

    def same_output_twice():
        i = keras.Input((4,))
        d = L.Dense(2)(i)
        return keras.Model(i, [d, d])

    _refuse(same_output_twice, UnsupportedError, "output twice")

    def training_call():
        i = keras.Input((4,))
        return keras.Model(i, L.Dropout(0.5, name="mc")(L.Dense(3)(i), training=True))

    _refuse(training_call, UnsupportedError, "'mc'.*training")


def test_shared_weightless_layer_is_duplicated(make_cases):
    import keras

    from fkb._keras_reader import spec_from_keras
    from fkb._to_keras import spec_to_keras

    L = keras.layers
    i = keras.Input((4,), name="x")
    act = L.Activation("tanh", name="act")
    y = L.Add(name="sum")([act(L.Dense(4, name="a")(i)), act(L.Dense(4, name="b")(i))])
    model = keras.Model(i, y)
    spec = spec_from_keras(model)
    assert [layer.name for layer in spec.layers] == ["a", "act", "b", "act_1", "sum"]
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    assert np.array_equal(np.asarray(spec_to_keras(spec)(x)), np.asarray(model(x)))


def test_nested_functional_model_is_inlined(make_cases):
    import keras

    from fkb._keras_reader import spec_from_keras
    from fkb._to_keras import spec_to_keras

    L = keras.layers
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    inner = keras.Model([a, b], L.Multiply(name="inner_mul")([a, L.Dense(3, name="inner_d")(b)]),
                        name="inner")
    x = keras.Input((3,), name="x")
    h = L.Dense(3, name="pre")(x)
    model = keras.Model(x, L.Add(name="outer_add")([inner([x, h]), h]))
    spec = spec_from_keras(model)
    assert [layer.name for layer in spec.layers] == ["pre", "inner_d", "inner_mul", "outer_add"]
    assert spec.layers[2].inputs == ["x", "inner_d"]
    xs = np.random.default_rng(1).normal(size=(6, 3)).astype("float32")
    assert np.array_equal(np.asarray(spec_to_keras(spec)(xs)), np.asarray(model(xs)))


# -- the engine --------------------------------------------------------------------------------


@pytest.mark.engine
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_engine_agrees_with_keras(graph_case, case, dtype):
    pytest.importorskip("fkb._core")
    import fkb

    _, model, xs, ys = graph_case(f"{case}_{dtype}")
    check_engine(fkb.from_keras(model), xs, ys, dtype)


@pytest.mark.engine
def test_engine_predict_inputs_and_outputs(graph_case, tmp_path):
    pytest.importorskip("fkb._core")
    import fkb
    from fkb import FKBArgumentError

    dtype, model, xs, ys = graph_case("merge_graph_float64")
    net = fkb.from_keras(model)
    assert net.input_names == ["seq", "vec"]
    assert net.output_names == ["per_step", "flat_head", "cat_vec"]
    assert net.input_shapes == [(5, 3), (3,)]
    assert net.output_shapes == [(5, 2), (4,), (9,)]
    # one sample without the batch axis
    one = net.predict([xs[0][4], xs[1][4]])
    assert [o.shape for o in one] == [(5, 2), (4,), (9,)]
    for o, y in zip(one, ys):
        np.testing.assert_allclose(o, y[4], rtol=0, atol=1e-12 * max(1, np.abs(y[4]).max()))
    # float32 inputs to a float64 network are computed in float64 and returned as float32
    out = net.predict([x[:5].astype("float32") for x in xs])
    assert all(o.dtype == np.float32 for o in out)
    with pytest.raises(FKBArgumentError, match="unknown input"):
        net.predict({"seq": xs[0], "vector": xs[1]})
    with pytest.raises(FKBArgumentError, match="missing"):
        net.predict({"seq": xs[0]})
    with pytest.raises(FKBArgumentError, match="1 input array"):
        net.predict(xs[0])
    with pytest.raises(ShapeError, match="'vec'"):
        net.predict([xs[0], xs[1][:, :2]])
    with pytest.raises(ShapeError, match="batch sizes"):
        net.predict([xs[0][:3], xs[1][:4]])
    # save / load keeps the graph
    net.save(tmp_path / "g.fkb")
    again = fkb.load(tmp_path / "g.fkb")
    for a, b in zip(again.predict(xs), net.predict(xs)):
        assert np.array_equal(a, b)
    text = net.summary(print_fn=None)
    assert "Connected to" in text and "seq, rep" in text and "Outputs: per_step" in text


@pytest.mark.engine
def test_engine_single_input_rank3(graph_case):
    pytest.importorskip("fkb._core")
    import fkb

    dtype, model, xs, ys = graph_case("time_distributed_float32")
    net = fkb.from_keras(model)
    assert net.input_shapes == [(7, 4)] and net.output_shapes == [(7, 2)]
    out = net.predict(xs[0][0].astype(dtype))
    assert out.shape == (7, 2)
    out = net.predict([xs[0][:2].astype(dtype)])
    assert out.shape == (2, 7, 2)
    assert net.predict(np.zeros((0, 7, 4), dtype)).shape == (0, 7, 2)


@pytest.mark.engine
def test_cli_info_and_verify_graph(tmp_path, graph_case):
    pytest.importorskip("fkb._core")
    from test_cli import run

    _, model, xs, _ = graph_case("residual_mlp_float64")
    src = tmp_path / "res.keras"
    model.save(src)
    out = tmp_path / "res.fkb"
    run("convert", src, "-o", out, check_rc=0)
    info = run("info", out, check_rc=0).stdout
    assert "Inputs: features (8,)" in info and "Outputs: head (4,)" in info
    assert "Connected to" in info and "stem, block0_b" in info
    v = run("verify", src, out, "--samples", 30, check_rc=0).stdout
    assert "skip0 (add)" in v and "PASS" in v
    np.save(tmp_path / "x.npy", xs[0][:5])
    run("verify", src, out, "--inputs", tmp_path / "x.npy", check_rc=0)


@pytest.mark.engine
def test_verify_multi_input_graph(graph_case):
    pytest.importorskip("fkb._core")
    import fkb
    from fkb._verify import format_result, verify

    _, model, xs, _ = graph_case("merge_graph_float32")
    net = fkb.from_keras(model)
    r = verify(model, net, samples=20)
    text = format_result(r)
    assert r.ok, text
    assert "output per_step" in text and "cat_steps (concatenate)" in text
    r = verify(model, net, inputs={"seq": xs[0][:4], "vec": xs[1][:4]}, per_layer=False)
    assert r.ok and r.samples == 4
