"""`fkb verify`: compares a Keras model with its FKB conversion, overall and layer by layer.

Both run on the same inputs (random normal with a seed, or given). Keras is the reference: a
Keras 3 model, or for a legacy tf.keras `.h5` file tf.keras itself (the ``tf_keras`` package)
when it is installed. Per layer, the Keras layers are applied one after the other and compared
with FKB networks truncated after the same layer.

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

    @property
    def ok(self) -> bool:
        return self.overall.ok and all(c.ok for c in self.layers)


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


def verify(keras_model: Any, fkb_model: Any, samples: int = 1000, seed: int = 0,
           inputs: np.ndarray | None = None, per_layer: bool = True) -> VerifyResult:
    """Runs both models on the same inputs and compares them (see the module docstring)."""
    net = fkb_model if isinstance(fkb_model, Network) else Network.load(fkb_model)
    dtype = net.dtype.name
    tol = TOLERANCES[dtype]
    model, reference = _reference_model(keras_model)
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


def format_result(r: VerifyResult, title: str = "") -> str:
    rows = [("layer", "max |Δ|", "max |Δ|/max(1,|y|)", "")]
    for c in r.layers + [r.overall]:
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
