"""Keras <-> FKB conversion entry points: from_keras, to_keras, convert."""

from __future__ import annotations

import os
from typing import Any, Iterable

from ._errors import FKBFileError, FKBFormatError
from ._format import MAGIC, ModelSpec, read_fkb, write_fkb
from ._network import Network

__all__ = ["spec_from_any", "from_keras", "to_keras", "convert"]

_KERAS_MAGICS = (b"PK\x03\x04", b"\x89HDF\r\n\x1a\n")


def _is_keras_model(obj: Any) -> bool:
    mod = type(obj).__module__ or ""
    return mod.split(".")[0] == "keras" and hasattr(obj, "layers")


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except OSError as e:
        raise FKBFileError(e.errno, f"cannot read {path}: {e.strerror}", path) from e


def spec_from_any(src: Any) -> ModelSpec:
    """ModelSpec of a Keras model, Network, ModelSpec, or a path to a Keras/FKB model file."""
    if isinstance(src, ModelSpec):
        return src
    if isinstance(src, Network):
        return src.to_spec()
    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        head = _head(path)
        if head == MAGIC:
            return read_fkb(path)
        if head.startswith(_KERAS_MAGICS):
            from ._keras_reader import spec_from_path

            return spec_from_path(path)
        if path.lower().endswith((".keras", ".h5", ".hdf5")):
            raise FKBFormatError(f"{path}: not a Keras model file (.keras archive or HDF5)")
        # Anything else is taken as a legacy FKB text file, which the engine reads.
        return Network.load(path).to_spec()
    if _is_keras_model(src):
        from ._keras_reader import spec_from_keras

        return spec_from_keras(src)
    if type(src).__module__.split(".")[0] in ("tf_keras", "tensorflow"):
        raise FKBFormatError(
            "in-memory tf.keras (Keras 2) models are not read; save it as .h5 and convert the file"
        )
    raise TypeError(f"cannot convert a {type(src).__name__}; give a Keras model or a path")


def _keras_spec(src: Any) -> ModelSpec:
    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        if not _head(path).startswith(_KERAS_MAGICS):
            raise FKBFormatError(f"{path}: not a Keras model file (.keras archive or HDF5)")
        from ._keras_reader import spec_from_path

        return spec_from_path(path)
    if _is_keras_model(src):
        from ._keras_reader import spec_from_keras

        return spec_from_keras(src)
    return spec_from_any(src)


def from_keras(model: Any) -> Network:
    """A Keras 3 model, or a `.keras` / `.h5` (Keras 3 or legacy tf.keras) file -> Network."""
    return Network.from_spec(_keras_spec(model))


def to_keras(src: Any) -> Any:
    """An equivalent Keras 3 model of a Network, ModelSpec or model file (.fkb, legacy text)."""
    from ._to_keras import spec_to_keras

    return spec_to_keras(spec_from_any(src))


def _stem(src: Any, index: int) -> str:
    if isinstance(src, (str, os.PathLike)):
        base = os.path.basename(os.fspath(src).rstrip("/\\"))
        stem, _ = os.path.splitext(base)
        return stem or f"model_{index}"
    name = getattr(src, "name", None)
    if isinstance(src, ModelSpec):
        name = src.metadata.get("name")
    return str(name) if name else f"model_{index}"


def _write(spec: ModelSpec, out: str, format: str) -> None:
    if format == "fkb":
        write_fkb(spec, out)
    elif format == "legacy":
        Network.from_spec(spec).save(out, format="legacy")
    else:
        raise ValueError(f"format must be 'fkb' or 'legacy', not {format!r}")


def convert(src: Any, dst: str | os.PathLike, *, format: str = "fkb",
            progress: bool | None = None) -> str | list[str]:
    """Converts one model (or a list of them) to FKB files.

    ``src``: a Keras model, a path (`.keras`, `.h5`, legacy tf.keras `.h5`, `.fkb`, legacy FKB
    text), or a list of those. ``dst``: the output file for one source; a directory (created
    if needed) for a list or when ``dst`` is an existing directory, where each model becomes
    ``<stem>.fkb`` (``.txt`` for ``format='legacy'``). Returns the path(s) written. With many
    sources a progress bar is shown (``progress=False`` turns it off). A failing source stops
    the conversion with its error; the files written before it stay.
    """
    dst = os.fspath(dst)
    many = isinstance(src, (list, tuple))
    sources: list[Any] = list(src) if many else [src]
    to_dir = many or os.path.isdir(dst) or dst.endswith(("/", os.sep))
    if not to_dir:
        _write(spec_from_any(src), dst, format)
        return dst
    os.makedirs(dst, exist_ok=True)
    ext = ".fkb" if format == "fkb" else ".txt"
    outs = [os.path.join(dst, _stem(s, i) + ext) for i, s in enumerate(sources)]
    dup = {o for o in outs if outs.count(o) > 1}
    if dup:
        raise ValueError(f"several sources would be written to {sorted(dup)}")
    items: Iterable[tuple[Any, str]] = zip(sources, outs)
    show = progress if progress is not None else len(sources) > 1
    if show:
        from tqdm import tqdm

        items = tqdm(list(items), desc="fkb convert", unit="model")
    for s, out in items:
        _write(spec_from_any(s), out, format)
    return outs if many else outs[0]
