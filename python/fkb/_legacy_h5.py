"""Legacy tf.keras 2.x `.h5` model files -> ModelSpec, with h5py and json only.

The architecture comes from the file's ``model_config`` attribute, parsed with ``json.loads``;
the weights from ``model_weights/<layer>/<weight name>`` in the order of the ``weight_names``
attribute (the Keras 2 ``get_weights()`` order). Nothing stored in the file is executed:
no ``eval``, no pickle, no Keras deserialization. Lambda layers and unknown or custom layers are
refused by name.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ._errors import FKBFormatError, UnsupportedError
from ._format import ModelSpec
from ._keras_layers import check_dtype_policy, convert_layer
from ._keras_reader import _open_h5, _text, check_config_layers

__all__ = ["spec_from_legacy_h5", "resolve_activation_k2"]

# Keras 2 activation names whose definition equals Keras 3's (what FKB computes).
_K2_ACTIVATIONS = {
    "linear": ("linear", None), "relu": ("relu", None), "elu": ("elu", 1.0),
    "selu": ("selu", None), "gelu": ("gelu", None), "swish": ("silu", None),
    "silu": ("silu", None), "mish": ("mish", None), "softplus": ("softplus", None),
    "softsign": ("softsign", None), "tanh": ("tanh", None), "sigmoid": ("sigmoid", None),
    "exponential": ("exponential", None), "softmax": ("softmax", None),
}


def resolve_activation_k2(value: Any, where: str) -> tuple[str, float | None]:
    """fkb activation of a Keras 2 config value (a name, or a serialized builtin function)."""
    if value is None:
        return "linear", None
    if isinstance(value, dict):
        if value.get("class_name") == "function" and isinstance(value.get("config"), str) \
                and str(value.get("module", "keras.activations")).endswith("activations"):
            value = value["config"]
        else:
            raise UnsupportedError(f"{where}: custom activation {value!r} is not supported")
    if value == "hard_sigmoid":
        raise UnsupportedError(
            f"{where}: Keras 2 'hard_sigmoid' (clip(0.2*x + 0.5, 0, 1)) differs from the Keras 3 "
            "hard_sigmoid FKB computes (relu6(x + 3) / 6); replace it before converting"
        )
    if value not in _K2_ACTIVATIONS:
        raise UnsupportedError(f"{where}: activation {value!r} is not supported by FKB")
    return _K2_ACTIVATIONS[value]


def _policy_name(layer: str, cls: str, dtype: Any) -> str:
    if dtype is None:
        return "float32"
    if isinstance(dtype, str):
        return dtype
    if isinstance(dtype, dict):
        cfg = dtype.get("config")
        if isinstance(cfg, dict) and isinstance(cfg.get("name"), str):
            return cfg["name"]
    raise UnsupportedError(f"layer {layer!r} ({cls}): dtype policy {dtype!r} is not supported")


def _inbound_names(layer: dict, where: str) -> list[str]:
    """Names of the layers feeding ``layer`` (Keras 2 functional config), one call only."""
    nodes = layer.get("inbound_nodes") or []
    name = layer.get("name", "?")
    if len(nodes) != 1:
        raise UnsupportedError(
            f"{where}: layer {name!r} is called {len(nodes)} times; FKB reads chains"
        )
    node = nodes[0]
    if isinstance(node, dict):  # newer serialization: {"args": [...], "kwargs": {...}}
        args = node.get("args", [])
        kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if v not in (None, False)}
        names = []
        for a in args:
            hist = a.get("config", {}).get("keras_history") if isinstance(a, dict) else None
            if not hist:
                raise UnsupportedError(f"{where}: layer {name!r} has a non-tensor argument")
            names.append(hist[0])
    else:
        names = [entry[0] for entry in node]
        kwargs = {}
        for entry in node:
            if len(entry) > 3 and isinstance(entry[3], dict):
                kwargs.update({k: v for k, v in entry[3].items() if v not in (None, False)})
    if kwargs:
        raise UnsupportedError(
            f"{where}: layer {name!r} is called with {sorted(kwargs)}; FKB supports plain calls"
        )
    if len(names) != 1:
        raise UnsupportedError(
            f"{where}: layer {name!r} takes {len(names)} inputs; FKB reads chains of "
            "single-input layers"
        )
    return names


def _chain(config: dict, where: str) -> tuple[list[dict], list | None]:
    """(layer configs in order, batch input shape) of a Keras 2 Sequential/Functional config."""
    cls = config.get("class_name")
    inner = config.get("config")
    if cls == "Sequential":
        layers = inner if isinstance(inner, list) else inner.get("layers", [])
        shape = None
        out = []
        for layer in layers:
            lc = layer.get("config", {})
            if layer.get("class_name") in ("Sequential", "Functional", "Model"):
                sub, sub_shape = _chain(layer, where)
                shape = shape or sub_shape
                out.extend(sub)
                continue
            if shape is None and lc.get("batch_input_shape") is not None:
                shape = lc["batch_input_shape"]
            if layer.get("class_name") != "InputLayer":
                out.append(layer)
        return out, shape
    if cls in ("Functional", "Model"):
        by_name = {layer["name"]: layer for layer in inner["layers"]}
        inputs, outputs = inner.get("input_layers", []), inner.get("output_layers", [])
        if len(inputs) != 1 or len(outputs) != 1:
            raise UnsupportedError(
                f"{where}: model with {len(inputs)} inputs and {len(outputs)} outputs; FKB "
                "reads chains with one input and one output"
            )
        input_name = inputs[0][0]
        chain = []
        current = outputs[0][0]
        seen = set()
        while current != input_name:
            if current in seen or current not in by_name:
                raise FKBFormatError(f"{where}: broken layer graph at {current!r}")
            seen.add(current)
            layer = by_name[current]
            if layer.get("class_name") in ("Sequential", "Functional", "Model"):
                raise UnsupportedError(
                    f"{where}: nested model {current!r} inside a functional legacy model"
                )
            chain.append(layer)
            current = _inbound_names(layer, where)[0]
        chain.reverse()
        shape = by_name[input_name].get("config", {}).get("batch_input_shape")
        return chain, shape
    raise UnsupportedError(f"{where}: model class {cls!r}; FKB reads Sequential and Functional")


def _layer_weights(group: Any, name: str, where: str) -> list[np.ndarray]:
    if name not in group:
        return []
    g = group[name]
    names = [_text(n) for n in g.attrs.get("weight_names", [])]
    try:
        return [np.asarray(g[n]) for n in names]
    except (KeyError, OSError) as e:
        raise FKBFormatError(f"{where}: weights of layer {name!r} cannot be read: {e}") from e


def spec_from_legacy_h5(path: str | os.PathLike) -> ModelSpec:
    """Reads a tf.keras 2.x `.h5` model file."""
    path = os.fspath(path)
    with _open_h5(path) as f:
        raw = f.attrs.get("model_config")
        if raw is None:
            raise FKBFormatError(f"{path}: HDF5 file without a Keras model (weights only?)")
        try:
            config = json.loads(_text(raw))
        except ValueError as e:
            raise FKBFormatError(f"{path}: model_config is not JSON: {e}") from e
        check_config_layers(config, path)
        layers, shape = _chain(config, path)
        if shape is None or len(shape) != 2 or shape[1] is None:
            raise UnsupportedError(
                f"{path}: input shape {shape}; FKB networks take rank-1 samples (batch, features)"
            )
        n = int(shape[1])
        group = f["model_weights"] if "model_weights" in f else f
        keras_version = _text(f.attrs.get("keras_version", ""))
        training = _text(f.attrs["training_config"]) if "training_config" in f.attrs else None
        dtype = None
        converted = []
        for layer in layers:
            cls = layer["class_name"]
            cfg = dict(layer.get("config", {}))
            lname = cfg.get("name", layer.get("name", "?"))
            d = check_dtype_policy(lname, cls, _policy_name(lname, cls, cfg.get("dtype")))
            if dtype is None:
                dtype = d
            elif d != dtype:
                raise UnsupportedError(
                    f"layer {lname!r} ({cls}) computes in {d} while the layers before it "
                    f"compute in {dtype}; FKB needs one precision per model"
                )
            cfg.pop("batch_input_shape", None)
            cfg.pop("input_shape", None)
            converted.append((cls, cfg, _layer_weights(group, lname, path)))
        spec = ModelSpec(dtype=dtype or "float32", n_inputs=n)
        for cls, cfg, weights in converted:
            if cls == "Normalization" and weights:
                weights = [np.reshape(w, (-1,)) if np.size(w) == n else w for w in weights]
            spec.layers.append(
                convert_layer(cls, cfg, weights, n, spec.dtype, resolve_activation_k2)
            )
            n = spec.widths()[-1]
    from . import __version__

    name = config.get("config", {}).get("name") if isinstance(config.get("config"), dict) else None
    if name:
        spec.metadata["name"] = str(name)
    if keras_version:
        spec.metadata["keras_version"] = keras_version
    spec.metadata["fkb_version"] = __version__
    spec.metadata["source"] = path
    if training:
        spec.metadata["training_config"] = training
    spec.validate()
    return spec
