"""`fkb verify`: compares a Keras model with its FKB conversion, overall and layer by layer.

Both run on the same inputs (random normal with a seed, or given). Keras is the reference: a
Keras 3 model, or for a legacy tf.keras `.h5` file tf.keras itself (the ``tf_keras`` package)
when it is installed. Per layer of a chain, the Keras layers are applied one after the other
and compared with FKB networks truncated after the same layer. Per node of a graph (several
inputs or outputs, skip connections, shaped data), the output of each FKB layer is compared
with the Keras sub-model from the model's inputs to the layer of the same name.

Tolerance (written down once): an output element passes when
``|fkb - keras| <= tol * max(1, |keras|)`` with ``tol = 1e-5`` for float32 models and
``1e-12`` for float64 ones; NaN must meet NaN and an infinity the same infinity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._format import ModelSpec
from ._network import Network

__all__ = ["TOLERANCES", "Comparison", "VerifyResult", "compare", "verify", "format_result"]

TOLERANCES = {"float32": 1e-5, "float64": 1e-12}


@dataclass
class Comparison:
    label: str
    max_abs: float
    max_scaled: float  # max |Δ| / max(1, |y|)
    ok: bool


@dataclass
class VerifyResult:
    dtype: str
    samples: int
    tolerance: float
    reference: str
    overall: Comparison
    layers: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: one comparison per output of a network with several outputs (overall: the worst)
    outputs: list[Comparison] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.overall.ok and all(c.ok for c in self.layers + self.outputs)


def compare(label: str, got: np.ndarray, ref: np.ndarray, tol: float) -> Comparison:
    """Elementwise check |got-ref| <= tol*max(1,|ref|); NaN/inf must match exactly."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return Comparison(f"{label} (shape {got.shape} vs {ref.shape})", np.inf, np.inf, False)
    special = ~np.isfinite(ref) | ~np.isfinite(got)
    special_ok = bool(np.all((got[special] == ref[special])
                             | (np.isnan(got[special]) & np.isnan(ref[special]))))
    fin = ~special
    diff = np.abs(got[fin] - ref[fin])
    scaled = diff / np.maximum(1.0, np.abs(ref[fin]))
    max_abs = float(diff.max()) if diff.size else 0.0
    max_scaled = float(scaled.max()) if scaled.size else 0.0
    if not special_ok:
        max_abs = max_scaled = float("inf")
    return Comparison(label, max_abs, max_scaled, special_ok and max_scaled <= tol)


def _reference_model(src: Any) -> tuple[Any, str]:
    """(callable Keras model, description) for a Keras model or file."""
    if not isinstance(src, (str, os.PathLike)):
        return src, "Keras 3 model"
    path = os.fspath(src)
    from ._keras_reader import HDF5_MAGIC, _sniff, check_config_layers, h5_keras_major, \
        load_keras_file

    if _sniff(path) == HDF5_MAGIC and h5_keras_major(path) == 2:
        from ._legacy_h5 import spec_from_legacy_h5

        spec = spec_from_legacy_h5(path)  # refuses Lambda / custom layers first
        try:
            import json

            import h5py
            import tf_keras

            with h5py.File(path, "r") as f:
                raw = f.attrs["model_config"]
                check_config_layers(json.loads(raw.decode() if isinstance(raw, bytes) else raw),
                                    path)
            return tf_keras.models.load_model(path, compile=False), "tf.keras (Keras 2)"
        except ImportError:
            from ._to_keras import spec_to_keras

            return spec_to_keras(spec), "Keras 3 rebuild of the legacy file (tf_keras missing)"
    model, _ = load_keras_file(path)
    return model, "Keras 3"


def _chain(model: Any) -> list[Any]:
    """The layers of a chain model in order (nested models flattened), for Keras 2 or 3."""
    if type(model).__module__.split(".")[0] == "keras":
        from ._keras_reader import _chain_layers

        return _chain_layers(model)[1]
    out = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        if hasattr(layer, "layers"):
            out.extend(_chain(layer))
        else:
            out.append(layer)
    return out


def _keras_run(model: Any, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Keras' outputs (a list, float64); a model with a fixed batch size (stateful recurrent
    layers) runs in batches of that size from the zero state (the last batch padded)."""
    batch = tuple(model.inputs[0].shape)[0] if getattr(model, "inputs", None) else None
    n = xs[0].shape[0]
    if batch is None or batch == n:
        ys = model(xs if len(xs) > 1 else xs[0], training=False)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        return [np.asarray(y, dtype=np.float64) for y in ys]
    parts = []
    for start in range(0, n, batch):
        for layer in model.layers:
            if getattr(layer, "stateful", False):
                layer.reset_states() if hasattr(layer, "reset_states") else layer.reset_state()
        chunk = [x[start:start + batch] for x in xs]
        short = batch - chunk[0].shape[0]
        if short:
            chunk = [np.concatenate([c, np.zeros((short,) + c.shape[1:], c.dtype)])
                     for c in chunk]
        ys = model(chunk if len(chunk) > 1 else chunk[0], training=False)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        parts.append([np.asarray(y, dtype=np.float64)[:batch - short] for y in ys])
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def _given_inputs(inputs: Any, net: Network) -> list[np.ndarray]:
    names, shapes = net.input_names, net.input_shapes
    if isinstance(inputs, dict) or hasattr(inputs, "files"):  # dict or .npz
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ValueError(f"inputs: no array for input(s) {missing} (have {list(inputs)})")
        items = [inputs[n] for n in names]
    elif isinstance(inputs, (list, tuple)) and len(names) > 1:
        items = list(inputs)
    else:
        items = [inputs]
    if len(items) != len(names):
        raise ValueError(f"inputs: {len(items)} arrays for {len(names)} inputs {names}")
    out = []
    for a, shape in zip(items, shapes):
        a = np.asarray(a, dtype=np.float64)
        if a.shape == tuple(shape):
            a = a[None]
        if a.shape[1:] != tuple(shape):
            raise ValueError(f"inputs: shape {a.shape}, expected (batch, "
                             f"{', '.join(map(str, shape))})")
        out.append(a)
    return out


def verify(keras_model: Any, fkb_model: Any, samples: int = 1000, seed: int = 0,
           inputs: Any = None, per_layer: bool = True) -> VerifyResult:
    """Runs both models on the same inputs and compares them (see the module docstring).

    ``inputs``: an array (batch, *input_shape), or for several inputs a list of arrays or a
    dict (or `.npz` archive) by input name; None: ``samples`` random normal samples."""
    net = fkb_model if isinstance(fkb_model, Network) else Network.load(fkb_model)
    dtype = net.dtype.name
    tol = TOLERANCES[dtype]
    model, reference = _reference_model(keras_model)
    spec = net._header()
    if not (spec.is_chain() and len(spec.input_shapes()[0]) == 1 and
            len(spec.output_shapes()[0]) == 1):
        return _verify_graph(model, reference, net, samples, seed, inputs, per_layer)
    if inputs is None:
        x = np.random.default_rng(seed).standard_normal((samples, net.n_inputs))
    else:
        x = np.asarray(inputs, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
    x = x.astype(dtype)
    ref = np.asarray(model(x, training=False), dtype=np.float64)
    got = net.predict(x)
    result = VerifyResult(dtype, x.shape[0], tol, reference, compare("output", got, ref, tol))
    if not per_layer:
        return result
    layers = _chain(model)
    spec: ModelSpec = net.to_spec()
    if len(layers) != len(spec.layers):
        result.notes.append(
            f"per-layer comparison skipped: Keras has {len(layers)} layers, FKB "
            f"{len(spec.layers)}"
        )
        return result
    h: Any = x
    for k, (klayer, flayer) in enumerate(zip(layers, spec.layers), start=1):
        h = klayer(h)
        part = Network.from_spec(spec.truncated(k)).predict(x)
        label = f"{flayer.name} ({flayer.type})"
        result.layers.append(compare(label, part, np.asarray(h, dtype=np.float64), tol))
    return result


def _verify_graph(model: Any, reference: str, net: Network, samples: int, seed: int,
                  inputs: Any, per_layer: bool) -> VerifyResult:
    """verify() for graphs and shaped data: outputs, then every node by layer name."""
    dtype = net.dtype.name
    tol = TOLERANCES[dtype]
    if inputs is None:
        rng = np.random.default_rng(seed)
        xs = [rng.standard_normal((samples,) + tuple(s)) for s in net.input_shapes]
    else:
        xs = _given_inputs(inputs, net)
    xs = [x.astype(dtype) for x in xs]
    refs = _keras_run(model, xs)
    got = net.predict(xs if len(xs) > 1 else xs[0])
    got = got if isinstance(got, list) else [got]
    names = net.output_names
    outs = [compare(f"output {n}" if len(names) > 1 else "output", g, r, tol)
            for n, g, r in zip(names, got, refs)]
    if len(refs) != len(got):
        outs = [Comparison(f"outputs ({len(got)} vs Keras' {len(refs)})", np.inf, np.inf,
                           False)]
    worst = max(outs, key=lambda c: (not c.ok, c.max_scaled))
    overall = Comparison("output" if len(outs) == 1 else "outputs (worst)", worst.max_abs,
                         worst.max_scaled, all(c.ok for c in outs))
    result = VerifyResult(dtype, xs[0].shape[0], tol, reference, overall,
                          outputs=outs if len(outs) > 1 else [])
    if not per_layer:
        return result
    spec = net.to_spec()
    root = type(model).__module__.split(".")[0]
    if root == "tf_keras":
        import tf_keras as K
    else:
        import keras as K
    skipped = []
    for layer in spec.layers:
        try:
            klayer = model.get_layer(layer.name)
            ins = model.inputs if len(model.inputs) > 1 else model.inputs[0]
            sub = K.Model(ins, klayer.output)
        except Exception:
            skipped.append(layer.name)
            continue
        part = Network.from_spec(spec.subgraph([layer.name])).predict(
            xs if len(xs) > 1 else xs[0])
        ref = _keras_run(sub, xs)[0]
        result.layers.append(compare(f"{layer.name} ({layer.type})", part, ref, tol))
    if skipped:
        result.notes.append(f"not compared (no layer of that name in the Keras model: nested "
                            f"or shared layers): {', '.join(skipped)}")
    return result


def format_result(r: VerifyResult, title: str = "") -> str:
    rows = [("layer", "max |Δ|", "max |Δ|/max(1,|y|)", "")]
    for c in r.layers + r.outputs + [r.overall]:
        rows.append((c.label, f"{c.max_abs:.3e}", f"{c.max_scaled:.3e}",
                     "ok" if c.ok else "FAIL"))
    w0 = max(len(a) for a, *_ in rows) + 2
    lines = []
    if title:
        lines.append(title)
    lines.append(f"precision {r.dtype}, {r.samples} samples, reference: {r.reference}")
    for a, b, c, d in rows:
        lines.append(f"{a:<{w0}}{b:>12}  {c:>20}  {d}")
    lines.extend(r.notes)
    lines.append(f"tolerance: |Δ| <= {r.tolerance:g}·max(1,|y|)")
    lines.append("PASS" if r.ok else "FAIL")
    return "\n".join(lines)
