"""Legacy tf.keras 2.x `.h5` model files -> ModelSpec, with h5py and json only.

The architecture comes from the file's ``model_config`` attribute, parsed with ``json.loads``;
the weights from ``model_weights/<layer>/<weight name>`` in the order of the ``weight_names``
attribute (the Keras 2 ``get_weights()`` order). Sequential models and Functional graphs
(several inputs and outputs, merges, shaped data) are read; shared layers and models nested in
Functional models are refused. Nothing stored in the file is executed:
no ``eval``, no pickle, no Keras deserialization. Lambda layers and unknown or custom layers are
refused by name.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ._errors import FKBFormatError, UnsupportedError
from ._format import InputSpec, ModelSpec
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
            f"{where}: layer {name!r} is called {len(nodes)} times (a shared layer); FKB needs "
            "one layer per call"
        )
    node = nodes[0]
    if isinstance(node, dict):  # newer serialization: {"args": [...], "kwargs": {...}}
        args = node.get("args", [])
        kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if v not in (None, False)}
        names = []
        for a in args:
            items = a if isinstance(a, list) else [a]
            for item in items:
                hist = item.get("config", {}).get("keras_history") \
                    if isinstance(item, dict) else None
                if not hist:
                    raise UnsupportedError(f"{where}: layer {name!r} has a non-tensor argument")
                if hist[1] != 0 or hist[2] != 0:
                    raise UnsupportedError(f"{where}: layer {name!r} takes a second call or "
                                           "output of a layer")
                names.append(hist[0])
    else:
        names = []
        kwargs = {}
        for entry in node:
            if len(entry) > 2 and (entry[1] != 0 or entry[2] != 0):
                raise UnsupportedError(f"{where}: layer {name!r} takes a second call or output "
                                       f"of layer {entry[0]!r}")
            names.append(entry[0])
            if len(entry) > 3 and isinstance(entry[3], dict):
                kwargs.update({k: v for k, v in entry[3].items() if v not in (None, False)})
    if kwargs:
        raise UnsupportedError(
            f"{where}: layer {name!r} is called with {sorted(kwargs)}; FKB supports plain calls"
        )
    if not names:
        raise UnsupportedError(f"{where}: layer {name!r} takes no input")
    return names


_MODELS = ("Sequential", "Functional", "Model")


def _graph(config: dict, where: str) -> tuple[list[tuple[dict, list[str]]],
                                              list[tuple[str, Any]], list[str]]:
    """([(layer config, input names)] in execution order, [(input name, batch shape)],
    output names) of a Keras 2 Sequential/Functional config."""
    cls = config.get("class_name")
    inner = config.get("config")
    if cls == "Sequential":
        layers = inner if isinstance(inner, list) else inner.get("layers", [])
        shape = None
        in_name = "input"
        out: list[tuple[dict, list[str]]] = []
        prev = in_name
        for layer in layers:
            lc = layer.get("config", {})
            if layer.get("class_name") in _MODELS:
                sub, sub_inputs, sub_outputs = _graph(layer, where)
                if len(sub_inputs) != 1 or len(sub_outputs) != 1:
                    raise UnsupportedError(f"{where}: nested model {lc.get('name')!r} with "
                                           "several inputs or outputs inside a Sequential")
                shape = shape or sub_inputs[0][1]
                rename = {sub_inputs[0][0]: prev}
                for lcfg, srcs in sub:
                    out.append((lcfg, [rename.get(s, s) for s in srcs]))
                prev = rename.get(sub_outputs[0], sub_outputs[0])
                continue
            if shape is None and lc.get("batch_input_shape") is not None:
                shape = lc["batch_input_shape"]
            if layer.get("class_name") != "InputLayer":
                out.append((layer, [prev]))
                prev = lc.get("name", layer.get("name"))
        return out, [(in_name, shape)], [prev]
    if cls in ("Functional", "Model"):
        by_name = {layer["name"]: layer for layer in inner["layers"]}
        in_layers = inner.get("input_layers", [])
        out_layers = inner.get("output_layers", [])
        if in_layers and isinstance(in_layers[0], str):  # a single input written unnested
            in_layers = [in_layers]
        if out_layers and isinstance(out_layers[0], str):
            out_layers = [out_layers]
        inputs = [entry[0] for entry in in_layers]
        outputs = [entry[0] for entry in out_layers]
        order: list[tuple[dict, list[str]]] = []
        done = set(inputs)
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in done:
                return
            if name in visiting or name not in by_name:
                raise FKBFormatError(f"{where}: broken layer graph at {name!r}")
            visiting.add(name)
            layer = by_name[name]
            if layer.get("class_name") in _MODELS:
                raise UnsupportedError(
                    f"{where}: nested model {name!r} inside a functional legacy model"
                )
            if layer.get("class_name") == "InputLayer":
                raise UnsupportedError(f"{where}: input {name!r} is not an input of the model")
            srcs = _inbound_names(layer, where)
            for src in srcs:
                visit(src)
            order.append((layer, srcs))
            done.add(name)

        for name in outputs:
            visit(name)
        shapes = [(n, by_name[n].get("config", {}).get("batch_input_shape")) for n in inputs]
        return order, shapes, outputs
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
        layers, inputs, outputs = _graph(config, path)
        specs_in = []
        for iname, shape in inputs:
            if shape is None or len(shape) < 2 or any(d is None for d in shape[1:]):
                raise UnsupportedError(
                    f"{path}: input {iname!r} of shape {shape}; FKB needs every dimension but "
                    "the batch known"
                )
            specs_in.append(InputSpec(iname, tuple(int(d) for d in shape[1:])))
        group = f["model_weights"] if "model_weights" in f else f
        keras_version = _text(f.attrs.get("keras_version", ""))
        training = _text(f.attrs["training_config"]) if "training_config" in f.attrs else None
        dtype = None
        converted = []
        for layer, srcs in layers:
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
            if cls in ("TimeDistributed", "Bidirectional") and isinstance(cfg.get("layer"), dict):
                sub = dict(cfg["layer"])
                sub["config"] = {k: v for k, v in (sub.get("config") or {}).items()
                                 if k not in ("batch_input_shape", "input_shape")}
                cfg["layer"] = sub
            converted.append((cls, cfg, _layer_weights(group, lname, path), srcs))
        spec = ModelSpec(dtype=dtype or "float32", n_inputs=None, inputs=specs_in)
        shapes = {i.name: i.shape for i in specs_in}
        for cls, cfg, weights, srcs in converted:
            in_shapes = [shapes[s] for s in srcs]
            n = in_shapes[0][-1]
            if cls == "Normalization" and weights:
                weights = [np.reshape(w, (-1,)) if np.size(w) == n else w for w in weights]
            ls = convert_layer(cls, cfg, weights, in_shapes if len(in_shapes) > 1 else
                               in_shapes[0], spec.dtype, resolve_activation_k2)
            ls.inputs = list(srcs)
            spec.layers.append(ls)
            shapes[ls.name] = spec.shapes()[ls.name]
        spec.outputs = list(outputs)
        if spec.is_chain() and len(specs_in[0].shape) == 1:
            # A chain over one rank-1 input: the format 1.0 file of earlier versions.
            spec.inputs = [InputSpec("input", specs_in[0].shape)]
            spec.outputs = []
            for layer in spec.layers:
                layer.inputs = None
        elif spec.is_chain() and config.get("class_name") == "Sequential":
            spec.outputs = []
            for layer in spec.layers:
                layer.inputs = None
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
