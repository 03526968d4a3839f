"""ModelSpec -> an equivalent Keras 3 model with the same weights.

The model is a Sequential model (a chain) or a Functional model (a graph, several inputs or
outputs) of the Keras layers the FKB layer types come from, in the model's precision, so that ``to_keras(from_keras(m))`` computes exactly what ``m`` computes.
Activations Keras has no name for (``gelu_tanh``, leaky_relu/elu with a non-default alpha in a
Dense layer) use the serializable objects of :mod:`fkb._keras_objects`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._errors import UnsupportedError
from ._format import ALPHA_DEFAULTS, CUSTOM_LAYER_TYPES, LAYER_TYPES, LayerSpec, ModelSpec

__all__ = ["spec_to_keras", "keras_activation", "keras_layer"]


def keras_activation(act: str, alpha: float | None) -> Any:
    """The Keras 3 activation (name or object) for an fkb activation."""
    from . import _keras_objects as ko

    if act in ALPHA_DEFAULTS:
        a = ALPHA_DEFAULTS[act] if alpha is None else float(alpha)
        if a == ALPHA_DEFAULTS[act]:
            return act
        return ko.LeakyReLUActivation(a) if act == "leaky_relu" else ko.ELUActivation(a)
    if act == "gelu_tanh":
        return ko.gelu_tanh
    return act


def _rnn_kwargs(c: dict) -> dict:
    kw = {"units": c["units"], "activation": keras_activation(c["activation"], c.get("alpha")),
          "use_bias": c["use_bias"], "return_sequences": c["return_sequences"],
          "go_backwards": c["go_backwards"], "stateful": c["stateful"]}
    if "recurrent_activation" in c:
        kw["recurrent_activation"] = keras_activation(c["recurrent_activation"], None)
    if "reset_after" in c:
        kw["reset_after"] = c["reset_after"]
    return kw


_RNN_CLASSES = {"simple_rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
_MERGE_CLASSES = {"add": "Add", "subtract": "Subtract", "multiply": "Multiply",
                  "average": "Average", "maximum": "Maximum", "minimum": "Minimum"}


def keras_layer(layer: LayerSpec, dtype: str) -> Any:
    """The Keras 3 layer (not built) of one FKB layer."""
    import keras

    L = keras.layers
    c = layer.config
    name = layer.name
    custom = CUSTOM_LAYER_TYPES.get(layer.type)
    if custom is not None and layer.type not in LAYER_TYPES:
        return _custom_keras_layer(custom, layer, dtype)
    kw = {"name": name, "dtype": dtype}
    td = bool(c.get("time_distributed"))
    if td:  # the wrapped layer gets the wrapper's name with a suffix
        kw = {"name": name + "_inner", "dtype": dtype}
    t = layer.type
    if t == "dense":
        reg = {f"{part}_regularizer": keras.regularizers.L1L2(
                   l1=c.get(f"{part}_l1", 0.0), l2=c.get(f"{part}_l2", 0.0))
               for part in ("kernel", "bias")
               if c.get(f"{part}_l1") or c.get(f"{part}_l2")}
        kl = L.Dense(c["units"], activation=keras_activation(c["activation"], c.get("alpha")),
                     use_bias=c["use_bias"], **reg, **kw)
    elif t == "activation":
        kl = L.Activation(keras_activation(c["activation"], c.get("alpha")), **kw)
    elif t == "dropout":
        kl = L.Dropout(c["rate"], **kw)
    elif t == "flatten":
        kl = L.Flatten(**kw)
    elif t == "batch_normalization":
        kl = L.BatchNormalization(axis=-1, epsilon=c["epsilon"], center=c["center"],
                                  scale=c["scale"], momentum=c.get("momentum", 0.99), **kw)
    elif t == "layer_normalization":
        kl = L.LayerNormalization(axis=-1, epsilon=c["epsilon"], center=c["center"],
                                  scale=c["scale"], **kw)
    elif t == "normalization":
        kl = L.Normalization(axis=-1, invert=c["invert"], **kw)
    elif t == "relu":
        kl = L.ReLU(max_value=c["max_value"], negative_slope=c["negative_slope"],
                    threshold=c["threshold"], **kw)
    elif t == "leaky_relu":
        kl = L.LeakyReLU(negative_slope=c["negative_slope"], **kw)
    elif t == "elu":
        kl = L.ELU(alpha=c["alpha"], **kw)
    elif t == "prelu":
        kl = L.PReLU(**kw)
    elif t == "softmax":
        kl = L.Softmax(axis=-1, **kw)
    elif t in _MERGE_CLASSES:
        kl = getattr(L, _MERGE_CLASSES[t])(**kw)
    elif t == "concatenate":
        kl = L.Concatenate(axis=c["axis"], **kw)
    elif t == "conv1d":
        kl = L.Conv1D(c["filters"], c["kernel_size"], strides=c["strides"],
                      padding=c["padding"], dilation_rate=c["dilation_rate"], groups=c["groups"],
                      activation=keras_activation(c["activation"], c.get("alpha")),
                      use_bias=c["use_bias"], **kw)
    elif t in ("max_pooling1d", "average_pooling1d"):
        cls = L.MaxPooling1D if t == "max_pooling1d" else L.AveragePooling1D
        kl = cls(pool_size=c["pool_size"], strides=c["strides"], padding=c["padding"], **kw)
    elif t in ("global_average_pooling1d", "global_max_pooling1d"):
        cls = L.GlobalAveragePooling1D if t == "global_average_pooling1d" \
            else L.GlobalMaxPooling1D
        kl = cls(keepdims=c["keepdims"], **kw)
    elif t == "up_sampling1d":
        kl = L.UpSampling1D(size=c["size"], **kw)
    elif t == "zero_padding1d":
        kl = L.ZeroPadding1D(padding=(c["left"], c["right"]), **kw)
    elif t == "cropping1d":
        kl = L.Cropping1D(cropping=(c["left"], c["right"]), **kw)
    elif t == "reshape":
        kl = L.Reshape(tuple(c["target_shape"]), **kw)
    elif t == "permute":
        kl = L.Permute(tuple(c["dims"]), **kw)
    elif t == "repeat_vector":
        kl = L.RepeatVector(c["n"], **kw)
    elif t in _RNN_CLASSES:
        kl = getattr(L, _RNN_CLASSES[t])(**_rnn_kwargs(c), **kw)
    elif t == "bidirectional":
        inner = getattr(L, _RNN_CLASSES[c["layer"]])(**_rnn_kwargs(c), dtype=dtype)
        kl = L.Bidirectional(inner, merge_mode=c["merge_mode"], **kw)
    else:  # validate() refuses unknown types; kept for new types added to the table
        raise UnsupportedError(f"layer {layer.name!r}: no Keras layer for {layer.type!r}")
    if td:
        kl = L.TimeDistributed(kl, name=name, dtype=dtype)
    if c.get("trainable") is False:
        kl.trainable = False
    return kl


def _custom_keras_layer(lt: Any, layer: LayerSpec, dtype: str) -> Any:
    """The Keras layer of a registered type (its from_config_and_weights)."""
    import keras

    config = {k: v for k, v in layer.config.items() if k != "trainable"}
    config.update(name=layer.name, dtype=dtype)
    weights = [np.array(t, dtype=dtype) for _, t in layer.tensors]
    where = f"layer {layer.name!r} ({layer.type})"
    try:
        kl = lt.from_config_and_weights(config, weights)
    except Exception as e:
        raise UnsupportedError(f"{where}: from_config_and_weights failed: "
                               f"{type(e).__name__}: {e}") from e
    if not isinstance(kl, keras.layers.Layer):
        raise UnsupportedError(f"{where}: from_config_and_weights returned a "
                               f"{type(kl).__name__}, not a Keras layer")
    kl._fkb_weights_set = bool(kl.built)
    if layer.config.get("trainable") is False:
        kl.trainable = False
    return kl


def _set_weights(kl: Any, layer: LayerSpec, dtype: str) -> None:
    weights = [np.asarray(t, dtype=dtype) for _, t in layer.tensors]
    if getattr(kl, "_fkb_weights_set", None) is not None:
        # A registered type: a layer built by from_config_and_weights has its weights.
        if not kl._fkb_weights_set and weights:
            try:
                kl.set_weights(weights)
            except Exception as e:
                raise UnsupportedError(
                    f"layer {layer.name!r} ({layer.type}): set_weights with the file's tensors "
                    f"failed ({type(e).__name__}: {e}); from_config_and_weights may return a "
                    "built layer with its weights set") from e
        return
    if layer.type == "normalization":
        # Adapted-state weights (mean, variance, count), then Keras' own finalization.
        kl.set_weights(weights + [np.zeros((), dtype=kl.weights[2].dtype)])
        kl.finalize_state()
    elif weights:
        kl.set_weights(weights)


def spec_to_keras(spec: ModelSpec) -> Any:
    """Builds the Keras 3 model of ``spec`` (tensors must hold data): a Sequential model for a
    chain over one input called ``input``, else a Functional model with the file's input and
    layer names."""
    import keras

    spec.validate()
    dtype = spec.dtype
    name = _safe_name(spec.metadata.get("name") or "fkb_model")
    batch = None
    if any(layer.config.get("stateful") for layer in spec.layers):
        batch = int(spec.metadata.get("batch_size", "1"))
    if spec.is_chain() and spec.inputs[0].name == "input":
        model = keras.Sequential(name=name)
        model.add(keras.Input(shape=tuple(spec.inputs[0].shape), dtype=dtype, batch_size=batch))
        for layer in spec.layers:
            kl = keras_layer(layer, dtype)
            model.add(kl)
            _set_weights(kl, layer, dtype)
    else:
        values: dict[str, Any] = {}
        inputs = []
        for inp in spec.inputs:
            values[inp.name] = keras.Input(shape=tuple(inp.shape), name=inp.name, dtype=dtype,
                                           batch_size=batch)
            inputs.append(values[inp.name])
        for i, layer in enumerate(spec.layers):
            kl = keras_layer(layer, dtype)
            args = [values[n] for n in spec.layer_inputs(i)]
            values[layer.name] = kl(args if len(args) > 1 else args[0])
            _set_weights(kl, layer, dtype)
        outputs = [values[n] for n in spec.output_names()]
        model = keras.Model(inputs if len(inputs) > 1 else inputs[0],
                            outputs if len(outputs) > 1 else outputs[0], name=name)
    if spec.training:
        _compile_like(model, spec.training)
    return model


_KERAS_OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop",
                     "adagrad": "Adagrad", "nadam": "Nadam"}
_KERAS_LOSSES = {"mean_squared_error": "MeanSquaredError", "mse": "MeanSquaredError",
                 "mean_absolute_error": "MeanAbsoluteError", "mae": "MeanAbsoluteError",
                 "huber": "Huber", "log_cosh": "LogCosh",
                 "mean_absolute_percentage_error": "MeanAbsolutePercentageError",
                 "binary_crossentropy": "BinaryCrossentropy",
                 "categorical_crossentropy": "CategoricalCrossentropy",
                 "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy"}


def _options(words: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for w in words:
        key, _, value = w.partition("=")
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def _compile_like(model: Any, training: dict) -> None:
    """Compiles the rebuilt model with the optimizer and loss of a network saved while
    training (fresh Keras optimizer state); a custom loss or a schedule is left out."""
    import keras

    opt_words = str(training.get("optimizer", "")).split()
    loss_words = str(training.get("loss", "")).split()
    if not opt_words or not loss_words or loss_words[0] not in _KERAS_LOSSES:
        return
    opts = _options(opt_words[1:])
    if not isinstance(opts.get("learning_rate", 0.0), float):
        return  # a schedule: Keras gets the weights, the user chooses the optimizer
    bools = {"nesterov", "amsgrad", "centered", "staircase", "from_logits"}
    for key in list(opts):
        if key in bools:
            opts[key] = bool(opts[key])
    opts.pop("iterations", None)
    loss_opts = _options(loss_words[1:])
    for key in list(loss_opts):
        if key in bools:
            loss_opts[key] = bool(loss_opts[key])
    optimizer = getattr(keras.optimizers, _KERAS_OPTIMIZERS[opt_words[0].lower()])(**opts)
    loss = getattr(keras.losses, _KERAS_LOSSES[loss_words[0]])(**loss_opts)
    model.compile(optimizer=optimizer, loss=loss)


def _safe_name(name: str) -> str:
    """Keras model names may not contain '/'."""
    return name.replace("/", "_") or "fkb_model"
