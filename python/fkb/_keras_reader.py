"""Keras 3 models (live, `.keras`, Keras-3 `.h5`) and legacy tf.keras `.h5` files -> ModelSpec.

Models whose graph is a single chain are read: Sequential models and Functional models with
one input and one output where every layer takes the previous layer's output (nested chain
models are flattened). Files are opened by their content, not their name; Keras 3 files are
loaded with ``safe_mode=True`` after their stored config was checked for unsupported layers,
legacy tf.keras `.h5` files are read with h5py and ``json.loads`` only (see _legacy_h5).
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from ._errors import FKBFileError, FKBFormatError, UnsupportedError
from ._format import ModelSpec
from ._keras_layers import SUPPORTED_CLASSES, check_dtype_policy, convert_layer

__all__ = ["spec_from_keras", "spec_from_path", "load_keras_file", "check_config_layers"]

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_MODEL_CLASSES = ("Sequential", "Functional", "Model")


def _keras():
    import keras

    from . import _keras_objects  # noqa: F401  (registers fkb>gelu_tanh & co.)

    return keras


def _fkb_version() -> str:
    from . import __version__

    return __version__


# --------------------------------------------------------------------------------------------
# Activations of a live Keras 3 layer
# --------------------------------------------------------------------------------------------

_ACT_TABLE: dict[int, str] | None = None


def _activation_table() -> dict[int, str]:
    global _ACT_TABLE
    if _ACT_TABLE is None:
        keras = _keras()
        from . import _keras_objects as ko

        a = keras.activations
        names = [
            "linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "mish",
            "softplus", "softsign", "tanh", "sigmoid", "hard_sigmoid", "hard_silu",
            "exponential", "softmax", "log_softmax",
        ]
        table = {id(getattr(a, n)): n for n in names}
        table[id(a.swish)] = "silu"
        table[id(a.hard_swish)] = "hard_silu"
        table[id(ko.gelu_tanh)] = "gelu_tanh"
        _ACT_TABLE = table
    return _ACT_TABLE


def resolve_activation_k3(obj: Any, where: str) -> tuple[str, float | None]:
    """fkb activation name and alpha of a Keras 3 activation (object or config value)."""
    keras = _keras()
    from . import _keras_objects as ko

    if obj is None:
        return "linear", None
    if isinstance(obj, (str, dict)):
        try:
            obj = keras.activations.get(obj)
        except Exception as e:  # unknown name or unregistered object
            raise UnsupportedError(f"{where}: activation {obj!r} is not supported") from e
    if type(obj) is ko.LeakyReLUActivation:
        return "leaky_relu", obj.alpha
    if type(obj) is ko.ELUActivation:
        return "elu", obj.alpha
    name = _activation_table().get(id(obj))
    if name is None:
        label = getattr(obj, "__name__", None) or type(obj).__name__
        raise UnsupportedError(f"{where}: activation {label!r} is not supported by FKB")
    if name == "leaky_relu":
        return name, 0.2
    if name == "elu":
        return name, 1.0
    return name, None


# --------------------------------------------------------------------------------------------
# Live models
# --------------------------------------------------------------------------------------------


def _chain_layers(model: Any) -> tuple[Any, list[Any]]:
    """(input KerasTensor, layers in order) of a chain model; nested chain models flattened."""
    keras = _keras()
    if isinstance(model, keras.Sequential):
        if not model.built or not getattr(model, "inputs", None):
            raise UnsupportedError(
                f"model {model.name!r} is not built: give it a keras.Input or call it on data"
            )
        return model.inputs[0], _flatten(list(model.layers))
    from keras.src.models.functional import Functional

    if not isinstance(model, Functional):
        raise UnsupportedError(
            f"model {getattr(model, 'name', '?')!r} of class {type(model).__name__} is a "
            "subclassed model; FKB reads Sequential and Functional models"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedError(
            f"model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} "
            "outputs; FKB reads chains with one input and one output"
        )
    inp = model.inputs[0]
    t = model.outputs[0]
    layers: list[Any] = []
    while t is not inp:
        op, node_index, _ = t._keras_history
        if isinstance(op, keras.layers.InputLayer):
            raise UnsupportedError(f"model {model.name!r}: output does not depend on its input")
        node = op._inbound_nodes[node_index]
        if not isinstance(op, keras.layers.Layer):
            raise UnsupportedError(
                f"model {model.name!r}: operation {op.name!r} ({type(op).__name__}) is not a "
                "layer FKB supports"
            )
        if len(node.input_tensors) != 1:
            raise UnsupportedError(
                f"layer {op.name!r} ({type(op).__name__}) takes {len(node.input_tensors)} "
                "inputs; FKB reads chains of single-input layers"
            )
        kwargs = {k: v for k, v in node.arguments.kwargs.items() if v is not None}
        if kwargs.get("training") is False:
            kwargs.pop("training")
        if kwargs:
            raise UnsupportedError(
                f"layer {op.name!r} ({type(op).__name__}) is called with {sorted(kwargs)}; "
                "FKB supports plain calls only"
            )
        layers.append(op)
        t = node.input_tensors[0]
    layers.reverse()
    return inp, _flatten(layers)


def _flatten(layers: list[Any]) -> list[Any]:
    keras = _keras()
    out = []
    for layer in layers:
        if isinstance(layer, keras.Model):
            _, inner = _chain_layers(layer)
            out.extend(inner)
        elif isinstance(layer, keras.layers.InputLayer):
            continue
        else:
            out.append(layer)
    return out


def spec_from_keras(model: Any, source: str | None = None,
                    training_config: str | None = None) -> ModelSpec:
    """A live Keras 3 model -> ModelSpec (refusing whatever FKB cannot compute exactly)."""
    keras = _keras()
    if not isinstance(model, keras.Model):
        raise UnsupportedError(f"{type(model).__name__} is not a Keras 3 model")
    inp, layers = _chain_layers(model)
    shape = tuple(inp.shape)
    if len(shape) != 2 or shape[1] is None:
        raise UnsupportedError(
            f"model {model.name!r}: input shape {shape}; FKB networks take rank-1 samples "
            "(batch, features) with a known width"
        )
    n = int(shape[1])
    dtype = None
    for layer in layers:
        policy = getattr(layer.dtype_policy, "name", str(layer.dtype_policy))
        d = check_dtype_policy(layer.name, type(layer).__name__, policy)
        if dtype is None:
            dtype = d
        elif d != dtype:
            raise UnsupportedError(
                f"layer {layer.name!r} ({type(layer).__name__}) computes in {d} while the "
                f"layers before it compute in {dtype}; FKB needs one precision per model"
            )
    if dtype is None:
        dtype = check_dtype_policy("input", "InputLayer", keras.config.floatx())
    spec = ModelSpec(dtype=dtype, n_inputs=n)
    for layer in layers:
        cls = type(layer).__name__
        if cls not in SUPPORTED_CLASSES or getattr(keras.layers, cls, None) is not type(layer):
            if cls == "Lambda":
                raise UnsupportedError(
                    f"layer {layer.name!r} is a Lambda layer (arbitrary Python code); FKB does "
                    "not convert it"
                )
            raise UnsupportedError(
                f"layer {layer.name!r}: layer type {cls!r} ({type(layer).__module__}) is not "
                "supported by FKB"
            )
        cfg = dict(layer.get_config())
        weights = [np.asarray(w) for w in layer.get_weights()]
        if cls == "Normalization":
            if keras.config.epsilon() != 1e-7:
                raise UnsupportedError(
                    f"layer {layer.name!r} (Normalization): keras.config.epsilon() is "
                    f"{keras.config.epsilon()!r}; FKB's normalization uses 1e-7"
                )
            cfg.pop("mean", None)
            cfg.pop("variance", None)
            # The tensors Keras computes with, whether adapted or given to the constructor.
            weights = [np.reshape(keras.ops.convert_to_numpy(v), (-1,))
                       for v in (layer.mean, layer.variance)]
        if cls == "Dense" and getattr(layer, "quantization_mode", None):
            raise UnsupportedError(f"layer {layer.name!r} (Dense): quantized layers")

        def resolve(value: Any, where: str, _layer: Any = layer) -> tuple[str, float | None]:
            return resolve_activation_k3(getattr(_layer, "activation", value), where)

        ls = convert_layer(cls, cfg, weights, n, dtype, resolve)
        spec.layers.append(ls)
        n = spec.widths()[-1]
    spec.metadata["name"] = str(model.name)
    spec.metadata["keras_version"] = keras.__version__
    spec.metadata["fkb_version"] = _fkb_version()
    if source:
        spec.metadata["source"] = os.fspath(source)
    if training_config is None:
        try:
            cc = model.get_compile_config()
        except Exception:
            cc = None
        if cc:
            training_config = json.dumps(cc, default=str, sort_keys=True)
    if training_config:
        spec.metadata["training_config"] = training_config
    spec.training = _training_records(model) or _records_from_config(training_config)
    out = tuple(model.outputs[0].shape) if getattr(model, "outputs", None) else None
    if out is not None and (len(out) != 2 or out[1] != spec.n_outputs):
        raise UnsupportedError(
            f"model {model.name!r}: output shape {out} disagrees with the converted chain "
            f"(width {spec.n_outputs})"
        )
    spec.validate()
    return spec


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def check_config_layers(config: Any, where: str) -> None:
    """Refuses, by name, Lambda and any layer class FKB does not convert, before loading."""
    if isinstance(config, list):  # very old Keras Sequential config: a list of layers
        for layer in config:
            check_config_layers(layer, where)
        return
    if not isinstance(config, dict):
        raise FKBFormatError(f"{where}: model config is not a JSON object")
    cls = config.get("class_name")
    inner = config.get("config")
    if cls in _MODEL_CLASSES:
        layers = inner if isinstance(inner, list) else (inner or {}).get("layers", [])
        for layer in layers:
            check_config_layers(layer, where)
        return
    name = (inner or {}).get("name", config.get("name", "?")) if isinstance(inner, dict) else "?"
    if cls == "Lambda":
        raise UnsupportedError(
            f"{where}: layer {name!r} is a Lambda layer (arbitrary Python code); FKB does not "
            "convert it"
        )
    registered = config.get("registered_name")
    if cls not in SUPPORTED_CLASSES or registered not in (None, cls):
        label = registered or cls
        raise UnsupportedError(
            f"{where}: layer {name!r}: layer type {label!r} is not supported by FKB"
        )


def _sniff(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except OSError as e:
        raise FKBFileError(e.errno, f"cannot read {path}: {e.strerror}", path) from e


def load_keras_file(path: str | os.PathLike) -> tuple[Any, str | None]:
    """(Keras 3 model, training config JSON or None) of a `.keras` or Keras-3 `.h5` file."""
    keras = _keras()
    path = os.fspath(path)
    head = _sniff(path)
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as z:
                config = json.loads(z.read("config.json"))
        except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
            raise FKBFormatError(f"{path}: not a readable .keras file ({e})") from e
        check_config_layers(config, path)
        cc = config.get("compile_config")
        training = json.dumps(cc, sort_keys=True) if cc else None
    elif head == HDF5_MAGIC:
        training = None
        with _open_h5(path) as f:
            raw = f.attrs.get("model_config")
            if raw is None:
                raise FKBFormatError(f"{path}: HDF5 file without a Keras model (weights only?)")
            check_config_layers(json.loads(_text(raw)), path)
            if "training_config" in f.attrs:
                training = _text(f.attrs["training_config"])
    else:
        raise FKBFormatError(f"{path}: not a Keras model file (.keras archive or HDF5)")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except (UnsupportedError, FKBFormatError):
        raise
    except Exception as e:
        raise FKBFormatError(f"{path}: Keras cannot load this model: {e}") from e
    return model, training


def _text(raw: Any) -> str:
    return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)


def _open_h5(path: str):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise FKBFormatError(f"{path}: not a readable HDF5 file (truncated?): {e}") from e


def h5_keras_major(path: str) -> int:
    """2 for tf.keras 2.x (or older) `.h5` files, 3 for Keras 3 ones."""
    with _open_h5(path) as f:
        if "model_config" not in f.attrs:
            raise FKBFormatError(f"{path}: HDF5 file without a Keras model (weights only?)")
        version = _text(f.attrs.get("keras_version", "2"))
    return 3 if version.split(".")[0] == "3" else 2


def spec_from_path(path: str | os.PathLike) -> ModelSpec:
    """A Keras model file (`.keras`, Keras-3 `.h5`, legacy tf.keras `.h5`) -> ModelSpec."""
    path = os.fspath(path)
    head = _sniff(path)
    if head == HDF5_MAGIC and h5_keras_major(path) == 2:
        from ._legacy_h5 import spec_from_legacy_h5

        return spec_from_legacy_h5(path)
    model, training = load_keras_file(path)
    return spec_from_keras(model, source=path, training_config=training)


def _training_records(model: Any) -> dict | None:
    """The optimizer and loss of a compiled Keras model as `.fkb` training records, so that
    the converted network loads compiled (fresh optimizer state: the step count and moments
    of Keras' optimizer are not carried over). None when the model is not compiled or its
    optimizer or loss has no FKB equivalent (the JSON training_config metadata still has it)."""
    optimizer = getattr(model, "optimizer", None)
    loss = getattr(model, "loss", None)
    if optimizer is None or loss is None:
        return None
    try:
        from . import optimizers as _opt
        from ._training import loss_spec

        return {"optimizer": _opt.get(optimizer).spec(), "loss": loss_spec(loss),
                "state": "iterations=0 u_product=1.0 seed=0", "slots": []}
    except Exception:  # unsupported optimizer, schedule or loss: convert the weights only
        return None


def _records_from_config(training_config: str | None) -> dict | None:
    """Training records from a saved model's compile config (JSON; built-in Keras optimizers
    and losses only, deserialised in safe mode)."""
    if not training_config:
        return None
    try:
        import json

        import keras

        cfg = json.loads(training_config)
        optimizer = keras.optimizers.deserialize(cfg["optimizer"])
        loss = cfg["loss"]
        if isinstance(loss, dict):
            loss = keras.losses.deserialize(loss)

        class _Compiled:  # the two attributes _training_records reads
            pass

        compiled = _Compiled()
        compiled.optimizer, compiled.loss = optimizer, loss
        return _training_records(compiled)
    except Exception:
        return None
