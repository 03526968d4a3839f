"""FKB, the Fortran-Keras Bridge: run Keras models in Fortran, C and C++ programs.

>>> import fkb
>>> net = fkb.from_keras(model)          # or fkb.load("model.fkb")
>>> y = net.predict(x)                   # numpy (batch, n_inputs)
>>> fkb.convert("model.keras", "model.fkb")
>>> keras_model = fkb.to_keras("model.fkb")

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
    ShapeError,
    UnsupportedError,
)
from ._format import LayerSpec, ModelSpec, read_fkb, write_fkb
from ._network import Network, load

__all__ = [
    "__version__",
    "load",
    "Network",
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
    "FKBMemoryError",
    "FKBInternalError",
]
