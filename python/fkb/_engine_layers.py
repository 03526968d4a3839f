"""Registered layer types the engine runs by calling Python (fkb.register_layer's forward).

The extension registers each such type with the C API (fkb_register_layer_callbacks); while
the engine loads a file, its configure callback calls :func:`configure` here with the layer's
context. The C API gives options by key but cannot list them, so every load from Python
first reads the file's header with the pure-Python reader (:func:`loading`) and queues the
records of these types, in file order: configure takes the next one, reads its options (which
marks them used) and declares its tensors as the record has them.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import numpy as np

from ._format import CUSTOM_LAYER_TYPES, LayerSpec

_local = threading.local()


def register_with_engine(lt: Any) -> None:
    """Gives a registered type with a forward to the engine (C API custom-layer callbacks)."""
    from ._network import _core_module

    core = _core_module()
    if hasattr(core, "register_layer"):
        core.register_layer(lt.name)


def _engine_types() -> set[str]:
    return {n for n, t in CUSTOM_LAYER_TYPES.items() if t.forward is not None}


@contextlib.contextmanager
def loading(headers: list[Any]) -> Iterator[None]:
    """Queues the records of Python-run types of ``headers`` (ModelSpecs, header bytes, or
    paths of `.fkb` files) for the engine's configure calls made inside the block."""
    types = _engine_types()
    queue: list[LayerSpec] = []
    if types:
        for h in headers:
            spec = _spec_of(h, types)
            if spec is not None:
                queue.extend(layer for layer in spec.layers if layer.type in types)
    saved = getattr(_local, "queue", None)
    _local.queue = queue
    try:
        yield
    finally:
        _local.queue = saved


def _spec_of(h: Any, types: set[str]) -> Any:
    from ._format import ModelSpec, parse_header

    if isinstance(h, ModelSpec):
        return h
    if isinstance(h, bytes):
        return parse_header(h)[0]
    header = _read_header(h)
    if header is None or not any(b"layer " + t.encode() + b" " in header for t in types):
        return None
    try:
        return parse_header(header)[0]
    except Exception:
        return None  # the engine reports what is wrong with the file


def _read_header(path: Any) -> bytes | None:
    import os

    from ._format import _PREFIX, MAGIC

    try:
        with open(os.fspath(path), "rb") as f:
            prefix = f.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size or prefix[:len(MAGIC)] != MAGIC:
                return None
            return f.read(_PREFIX.unpack_from(prefix)[3])
    except (OSError, TypeError):
        return None


def configure(type_name: str, ctx: Any) -> Any:
    """Called by the engine (through the extension) for each layer of a Python-run type as a
    file loads; returns the function the forward callback calls: fn(x, weights) -> y."""
    lt = CUSTOM_LAYER_TYPES.get(type_name)
    if lt is None or lt.forward is None:
        raise RuntimeError(f"layer type {type_name!r} has no Python forward registered "
                           "(fkb.register_layer(..., forward=...))")
    name = ctx.name()
    queue = getattr(_local, "queue", None) or []
    if not queue or queue[0].type != type_name or queue[0].name != name:
        raise RuntimeError(
            f"layer {name!r} ({type_name}): a layer type run by Python loads only through the "
            "fkb package (fkb.load, fkb.from_keras, Network.from_spec, fkb.Ensemble)")
    record = queue.pop(0)
    for key in record.config:
        if key != "trainable":
            ctx.option(key)  # marks it used
    for tname, t in record.tensors:
        ctx.declare_tensor(tname, [int(d) for d in np.shape(t)])
    in_shape = tuple(int(d) for d in ctx.input_shape())
    out_shape = lt.out_shape(record.config, [in_shape])
    if tuple(out_shape) != in_shape:
        ctx.set_output_shape([int(d) for d in out_shape])
    config = {k: v for k, v in record.config.items() if k != "trainable"}
    config["name"] = name
    forward = lt.forward

    def fn(x: np.ndarray, weights: list) -> Any:
        return forward(config, weights, x)

    return fn
