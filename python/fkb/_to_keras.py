"""ModelSpec -> an equivalent Keras 3 model with the same weights.

The model is a Sequential model of the Keras layers the FKB layer types come from, in the
model's precision, so that ``to_keras(from_keras(m))`` computes exactly what ``m`` computes.
Activations Keras has no name for (``gelu_tanh``, leaky_relu/elu with a non-default alpha in a
Dense layer) use the serializable objects of :mod:`fkb._keras_objects`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._errors import UnsupportedError
from ._format import ALPHA_DEFAULTS, ModelSpec

__all__ = ["spec_to_keras", "keras_activation"]


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


def spec_to_keras(spec: ModelSpec) -> Any:
    """Builds the Keras 3 model of ``spec`` (tensors must hold data)."""
    import keras

    spec.validate()
    dtype = spec.dtype
    name = spec.metadata.get("name") or "fkb_model"
    model = keras.Sequential(name=_safe_name(name))
    model.add(keras.Input(shape=(spec.n_inputs,), dtype=dtype))
    L = keras.layers
    for layer in spec.layers:
        c = layer.config
        kw = {"name": layer.name, "dtype": dtype}
        if layer.type == "dense":
            reg = {f"{part}_regularizer": keras.regularizers.L1L2(
                       l1=c.get(f"{part}_l1", 0.0), l2=c.get(f"{part}_l2", 0.0))
                   for part in ("kernel", "bias")
                   if c.get(f"{part}_l1") or c.get(f"{part}_l2")}
            kl = L.Dense(c["units"], activation=keras_activation(c["activation"], c.get("alpha")),
                         use_bias=c["use_bias"], **reg, **kw)
        elif layer.type == "activation":
            kl = L.Activation(keras_activation(c["activation"], c.get("alpha")), **kw)
        elif layer.type == "dropout":
            kl = L.Dropout(c["rate"], **kw)
        elif layer.type == "flatten":
            kl = L.Flatten(**kw)
        elif layer.type == "batch_normalization":
            kl = L.BatchNormalization(axis=-1, epsilon=c["epsilon"], center=c["center"],
                                      scale=c["scale"], momentum=c.get("momentum", 0.99), **kw)
        elif layer.type == "layer_normalization":
            kl = L.LayerNormalization(axis=-1, epsilon=c["epsilon"], center=c["center"],
                                      scale=c["scale"], **kw)
        elif layer.type == "normalization":
            kl = L.Normalization(axis=-1, invert=c["invert"], **kw)
        elif layer.type == "relu":
            kl = L.ReLU(max_value=c["max_value"], negative_slope=c["negative_slope"],
                        threshold=c["threshold"], **kw)
        elif layer.type == "leaky_relu":
            kl = L.LeakyReLU(negative_slope=c["negative_slope"], **kw)
        elif layer.type == "elu":
            kl = L.ELU(alpha=c["alpha"], **kw)
        elif layer.type == "prelu":
            kl = L.PReLU(**kw)
        elif layer.type == "softmax":
            kl = L.Softmax(axis=-1, **kw)
        else:  # validate() refuses unknown types; kept for new types added to the table
            raise UnsupportedError(f"layer {layer.name!r}: no Keras layer for {layer.type!r}")
        if c.get("trainable") is False:
            kl.trainable = False
        model.add(kl)
        weights = [np.asarray(t, dtype=dtype) for _, t in layer.tensors]
        if layer.type == "normalization":
            # Adapted-state weights (mean, variance, count), then Keras' own finalization.
            kl.set_weights(weights + [np.zeros((), dtype=kl.weights[2].dtype)])
            kl.finalize_state()
        elif weights:
            kl.set_weights(weights)
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
