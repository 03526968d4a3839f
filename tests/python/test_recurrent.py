"""Format 1.2 recurrent layers: SimpleRNN, LSTM, GRU (reset_after both ways), return_sequences,
go_backwards, Bidirectional (every merge mode), a stateful LSTM. Expected values come from
Keras at test time."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_close, check_engine, check_round_trip

from fkb import FKBFormatError, ShapeError, UnsupportedError
from fkb._format import InputSpec, LayerSpec, ModelSpec, format_header, parse_header

keras = pytest.importorskip("keras")
L = keras.layers

CASES = ["simple_rnn", "lstm", "gru", "bidirectional", "stateful_lstm"]
DTYPES = ["float32", "float64"]


# -- Keras round trip (no engine) --------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_round_trip_exact(make_cases, graph_case, case, dtype):
    _, model, xs, ys = graph_case(f"{case}_{dtype}")
    check_round_trip(make_cases, model, xs, ys, dtype)


def test_conversion_records(graph_case):
    from fkb._keras_reader import spec_from_keras

    _, model, _, _ = graph_case("gru_float32")
    spec = spec_from_keras(model)
    first, second, third, fourth = spec.layers[:4]
    assert first.config["reset_after"] is False and dict(first.tensors)["bias"].shape == (15,)
    assert second.config["reset_after"] is True and dict(second.tensors)["bias"].shape == (2, 12)
    assert second.config["go_backwards"] and second.config["return_sequences"]
    assert fourth.config["use_bias"] is False and fourth.config["activation"] == "relu"
    assert spec.output_shapes() == [(6, 4), (3,)]
    _, model, _, _ = graph_case("bidirectional_float64")
    spec = spec_from_keras(model)
    assert [layer.config["merge_mode"] for layer in spec.layers[:4]] == \
        ["concat", "sum", "mul", "ave"]
    assert [name for name, _ in spec.layers[0].tensors] == [
        "forward_kernel", "forward_recurrent_kernel", "forward_bias",
        "backward_kernel", "backward_recurrent_kernel", "backward_bias"]
    _, model, _, _ = graph_case("stateful_lstm_float32")
    spec = spec_from_keras(model)
    assert spec.layers[0].config["stateful"] is True
    assert spec.metadata["batch_size"] == "4"
    _, model, _, _ = graph_case("lstm_float32")
    assert spec_from_keras(model).layers[1].config["recurrent_activation"] == "hard_sigmoid"


def test_rnn_in_functional_graph_files(tmp_path, graph_case):
    from fkb._keras_reader import spec_from_keras, spec_from_path

    _, model, _, _ = graph_case("gru_float64")
    live = spec_from_keras(model)
    for ext in (".keras", ".h5"):
        path = tmp_path / ("gru" + ext)
        model.save(path)
        spec = spec_from_path(path)
        spec.metadata.pop("source")
        assert format_header(spec) == format_header(live), ext


# -- bad files and refusals --------------------------------------------------------------------


def rnn_spec(ltype: str = "gru", **extra) -> ModelSpec:
    config = {"units": 2, "activation": "tanh", "use_bias": True, "return_sequences": False,
              "go_backwards": False, "stateful": False}
    if ltype in ("lstm", "gru"):
        config["recurrent_activation"] = "sigmoid"
    if ltype == "gru":
        config["reset_after"] = True
    config.update(extra)
    gates = {"simple_rnn": 1, "lstm": 4, "gru": 3}[ltype]
    tensors = [("kernel", np.zeros((3, 2 * gates))), ("recurrent_kernel", np.zeros((2, 2 * gates))),
               ("bias", np.zeros((2, 2 * gates) if ltype == "gru" else (2 * gates,)))]
    return ModelSpec("float64", None, inputs=[InputSpec("x", (5, 3))],
                     layers=[LayerSpec(ltype, "rnn", config, tensors)])


def bidi_spec() -> ModelSpec:
    spec = rnn_spec("gru")
    layer = spec.layers[0]
    layer.type = "bidirectional"
    layer.config = dict({"merge_mode": "concat", "layer": "gru"}, **layer.config)
    layer.tensors = [("forward_" + n, t) for n, t in layer.tensors] + \
        [("backward_" + n, t) for n, t in layer.tensors]
    return spec


def test_header_round_trip():
    for spec in (rnn_spec("simple_rnn"), rnn_spec("lstm"), rnn_spec("gru", reset_after=False,
                                                                    bias=None), bidi_spec()):
        if spec.layers[0].config.pop("bias", 1) is None:
            spec.layers[0].tensors[2] = ("bias", np.zeros(6))
        text = format_header(spec)
        back, _ = parse_header(text)
        assert format_header(back) == text


@pytest.mark.parametrize(
    "make,old,new,error,match",
    [
        (bidi_spec, " reset_after=1", "", FKBFormatError, "'rnn'.*reset_after"),
        (bidi_spec, "layer=gru", "layer=lstm", Exception, "'rnn'"),
        (bidi_spec, "merge_mode=concat", "merge_mode=none", UnsupportedError, "'rnn'.*merge_mode"),
        (bidi_spec, "tensor backward_kernel", "tensor reverse_kernel", ShapeError, "'rnn'"),
        (lambda: rnn_spec("simple_rnn"), "stateful=0", "stateful=0 recurrent_activation=tanh",
         UnsupportedError, "'rnn'.*recurrent_activation"),
        (lambda: rnn_spec("lstm"), " recurrent_activation=sigmoid", "", FKBFormatError,
         "'rnn'.*missing key 'recurrent_activation'"),
        (lambda: rnn_spec("gru"), "tensor bias float64 2,6", "tensor bias float64 6", ShapeError,
         "'rnn'.*bias"),
        (lambda: rnn_spec("gru"), "input 5,3 name=x", "input 15 name=x", ShapeError,
         "'rnn'.*2-d"),
        (lambda: rnn_spec("lstm"), "go_backwards=0", "go_backwards=2", FKBFormatError,
         "'rnn'.*go_backwards"),
    ],
)
def test_bad_recurrent_headers(make, old, new, error, match):
    text = format_header(make())
    assert old in text, text
    with pytest.raises(error, match=match):
        parse_header(text.replace(old, new))


def test_converter_refusals():
    from fkb._keras_reader import spec_from_keras

    def seq(*layers, shape=(5, 3)):
        return keras.Sequential([keras.Input(shape)] + list(layers))

    cases = [
        (lambda: seq(L.LSTM(3, return_state=True, name="rs")), "return_state|outputs"),
        (lambda: seq(L.Bidirectional(L.GRU(2), merge_mode=None, name="bi_none")),
         "'bi_none'.*merge_mode=None|'bi_none'.*2 outputs"),
        (lambda: seq(L.Masking(name="masked"), L.LSTM(2)), "'masked'.*masking"),
        (lambda: seq(L.LSTM(2), shape=(None, 3)), "dimension but the batch"),
        (lambda: seq(L.Bidirectional(L.LSTM(2), backward_layer=L.LSTM(3, go_backwards=True),
                                     name="odd")), "'odd'.*backward layer"),
        (lambda: seq(L.LSTM(2, recurrent_activation=keras.activations.leaky_relu, name="lr")),
         None),
        (lambda: seq(L.SimpleRNN(2, activation="hard_tanh", name="ht")), "'ht'.*hard_tanh"),
    ]
    for build, match in cases:
        if match is None:
            spec_from_keras(build())  # leaky_relu with Keras' default alpha: fine
            continue
        with pytest.raises(UnsupportedError, match=match):
            spec_from_keras(build())


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
@pytest.mark.parametrize("dtype", DTYPES)
def test_engine_stateful_carries_state_like_keras(make_cases, graph_case, dtype):
    """With an fkb.RnnState, consecutive calls continue the sequences as Keras' stateful LSTM
    does; without one every call starts from zero."""
    pytest.importorskip("fkb._core")
    import fkb

    _, model, xs, _ = graph_case(f"stateful_lstm_{dtype}")
    batch = make_cases.STATEFUL_BATCH
    chunks = [xs[0][k * batch:(k + 1) * batch].astype(dtype) for k in range(3)]
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_state()
    expected = [np.asarray(model(c, training=False), dtype=np.float64) for c in chunks]
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_state()
    net = fkb.from_keras(model)
    state = fkb.RnnState()
    for k, c in enumerate(chunks):
        assert_close(net.predict(c, state=state), expected[k], dtype, f"call {k} with state")
    state.reset()
    assert_close(net.predict(chunks[0], state=state), expected[0], dtype, "after reset")
    assert_close(net.predict(chunks[2]), make_cases.keras_predict_multi(model, [chunks[2]])[0],
                 dtype, "no state: zero initial state")
