"""Exception classes of FKB.

Every error FKB raises derives from :class:`FKBError`; each class also derives from the
built-in exception a Python user would expect (``OSError`` for files, ``ValueError`` for bad
values), so ``except ValueError`` keeps working. The extension maps each negative
``fkb_status`` of the C API to one class (see ``STATUS_CLASSES``).
"""

from __future__ import annotations

__all__ = [
    "FKBError",
    "FKBArgumentError",
    "FKBFileError",
    "FKBFormatError",
    "FKBVersionError",
    "UnsupportedError",
    "ShapeError",
    "FKBMemoryError",
    "FKBInternalError",
    "LayerError",
    "STATUS_CLASSES",
]


class FKBError(Exception):
    """Base class of every FKB error."""


class FKBArgumentError(FKBError, ValueError):
    """Invalid argument (FKB_ERR_ARGUMENT)."""


class FKBFileError(FKBError, OSError):
    """A file cannot be opened, read or written (FKB_ERR_IO)."""


class FKBFormatError(FKBError, ValueError):
    """Malformed or truncated model file (FKB_ERR_FORMAT)."""


class FKBVersionError(FKBFormatError):
    """Model file format version not supported (FKB_ERR_VERSION)."""


class UnsupportedError(FKBError, ValueError):
    """A layer, activation, option or dtype FKB does not support (FKB_ERR_UNSUPPORTED)."""


class ShapeError(FKBError, ValueError):
    """Shapes disagree: tensor vs layer, input width vs model (FKB_ERR_SHAPE)."""


class FKBMemoryError(FKBError, MemoryError):
    """Allocation failed or a size beyond the sane limits (FKB_ERR_MEMORY)."""


class FKBInternalError(FKBError, RuntimeError):
    """A bug in FKB (FKB_ERR_INTERNAL): please report it."""


class LayerError(FKBError, RuntimeError):
    """A custom layer reported a failure while computing (FKB_ERR_LAYER)."""


#: fkb_status code (include/fkb/fkb.h) -> exception class.
STATUS_CLASSES = {
    -1: FKBArgumentError,
    -2: FKBFileError,
    -3: FKBFormatError,
    -4: FKBVersionError,
    -5: UnsupportedError,
    -6: ShapeError,
    -7: FKBMemoryError,
    -8: FKBInternalError,
    -9: LayerError,
}
