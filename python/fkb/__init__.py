"""FKB, the Fortran-Keras Bridge: run Keras models in Fortran, C and C++ programs.

>>> import fkb
>>> net = fkb.from_keras(model)          # or fkb.load("model.fkb")
>>> y = net.predict(x)                   # numpy (batch, *input_shape); lists/dicts for graphs
>>> fkb.convert("model.keras", "model.fkb")
>>> keras_model = fkb.to_keras("model.fkb")
>>> net.compile(optimizer=fkb.optimizers.Adam(learning_rate=1e-3), loss="mse")
>>> history = net.fit(x, y, batch_size=32, epochs=10)

Keras is imported only by the calls that need it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._convert import convert, from_keras, to_keras
from ._errors import (
    FKBArgumentError,
    FKBError,
    FKBFileError,
    FKBFormatError,
    FKBInternalError,
    FKBMemoryError,
    FKBVersionError,
    LayerError,
    ShapeError,
    UnsupportedError,
)
from ._format import LayerSpec, ModelSpec, read_fkb, write_fkb
from ._network import Network, RnnState, load
from ._ensemble import Ensemble
from ._custom import register_layer, registered_layer_types, unregister_layer
from ._training import CustomLoss
from . import optimizers


def set_deterministic(on: bool = True) -> None:
    """Deterministic mode for this process: every prediction has the same bits for any batch
    size, split of a batch into calls, or thread count (fixed-order products; some speed is
    lost). The environment variable FKB_DETERMINISTIC=1 switches it on at the first load."""
    from ._network import _core_module

    _core_module().set_deterministic(bool(on))


def is_deterministic() -> bool:
    """True while deterministic mode is on."""
    from ._network import _core_module

    return bool(_core_module().is_deterministic())

__all__ = [
    "__version__",
    "Ensemble",
    "CustomLoss",
    "optimizers",
    "set_deterministic",
    "is_deterministic",
    "load",
    "Network",
    "RnnState",
    "from_keras",
    "to_keras",
    "convert",
    "read_fkb",
    "write_fkb",
    "ModelSpec",
    "LayerSpec",
    "FKBError",
    "FKBArgumentError",
    "FKBFileError",
    "FKBFormatError",
    "FKBVersionError",
    "UnsupportedError",
    "ShapeError",
    "LayerError",
    "register_layer",
    "unregister_layer",
    "registered_layer_types",
    "FKBMemoryError",
    "FKBInternalError",
]
