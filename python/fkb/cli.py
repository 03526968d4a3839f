"""The `fkb` command: convert, export, info, verify."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from ._errors import FKBError  # noqa: E402

EXIT_FAIL = 1  # verify: above tolerance
EXIT_ERROR = 2  # bad input, unsupported model, I/O error (argparse uses 2 as well)


def _convert(args: argparse.Namespace) -> int:
    from ._convert import convert

    srcs = args.src
    dst = args.output
    if len(srcs) > 1 or os.path.isdir(dst) or dst.endswith(("/", os.sep)):
        out = convert(list(srcs), dst, format=args.format,
                      progress=False if args.quiet else None)
    else:
        out = convert(srcs[0], dst, format=args.format)
    outs = out if isinstance(out, list) else [out]
    if not args.quiet:
        print(f"wrote {len(outs)} file(s): " + (outs[0] if len(outs) == 1 else os.fspath(dst)))
    if args.ensemble:
        path = write_manifest(args.ensemble, [os.fspath(o) for o in outs], args.weights)
        if not args.quiet:
            print(f"wrote ensemble manifest {path} ({len(outs)} members)")
    return 0


MANIFEST_HEADER = "# fkb ensemble manifest: PATH [WEIGHT] per line, paths relative to this file"


def write_manifest(path: str, members: list[str], weights: list[float] | None = None) -> str:
    """Writes an ensemble manifest (read by fkb.Ensemble and the engine's load_manifest)."""
    if weights is not None and len(weights) != len(members):
        raise ValueError(f"{len(weights)} weights for {len(members)} members")
    base = os.path.dirname(os.path.abspath(path))
    lines = [MANIFEST_HEADER]
    for k, member in enumerate(members):
        rel = os.path.relpath(os.path.abspath(member), base)
        if any(c.isspace() for c in rel) or "#" in rel:
            raise ValueError(f"member path {rel!r} has a space or '#', which a manifest cannot hold")
        lines.append(rel if weights is None else f"{rel} {weights[k]!r}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _is_manifest(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.readline().decode("utf-8", "replace").startswith(MANIFEST_HEADER[:24])
    except OSError:
        return False


def _info_manifest(path: str) -> int:
    from ._ensemble import Ensemble
    from ._network import load

    ens = Ensemble(path)  # checks that every member loads and that the widths agree
    base = os.path.dirname(os.path.abspath(path))
    print(f"Ensemble manifest {path}: {ens.n_members} members, "
          f"{ens.n_inputs} inputs -> {ens.n_outputs} outputs")
    print(f"{'member':40s} {'weight':>8s} {'dtype':>8s} {'layers':>6s} {'params':>10s}")
    with open(path) as f:
        for line in f:
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            member = fields[0] if os.path.isabs(fields[0]) else os.path.join(base, fields[0])
            net = load(member)
            params = sum(int(w.size) for w in net.get_weights())
            weight = fields[1] if len(fields) > 1 else "1"
            print(f"{fields[0]:40s} {weight:>8s} {str(net.dtype):>8s} {len(net.layers):>6d} "
                  f"{params:>10,d}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ._convert import to_keras

    model = to_keras(args.model)
    model.save(args.output)
    print(f"wrote {args.output} (Keras {_keras_version()})")
    return 0


def _keras_version() -> str:
    import keras

    return keras.__version__


def _info(args: argparse.Namespace) -> int:
    from ._convert import spec_from_any
    from ._network import format_summary

    if _is_manifest(args.model):
        return _info_manifest(args.model)
    spec = spec_from_any(args.model)
    print(format_summary(spec))
    print(f"Precision: {spec.dtype}")
    if spec.uses_v12():
        print("Inputs: " + ", ".join(f"{i.name} {tuple(i.shape)}" for i in spec.inputs) +
              f"  ({spec.n_inputs} values per sample)")
        print("Outputs: " + ", ".join(f"{n} {s}" for n, s in
                                      zip(spec.output_names(), spec.output_shapes())) +
              f"  ({spec.n_outputs} values per sample)")
        print(f"Layers: {len(spec.layers)}  (format 1.2)")
    else:
        print(f"Inputs: {spec.n_inputs}  Outputs: {spec.n_outputs}  Layers: {len(spec.layers)}")
    if spec.training:
        print(f"Training state: optimizer {spec.training.get('optimizer')!r}, loss "
              f"{spec.training.get('loss')!r}, {spec.training.get('state')} "
              f"({len(spec.training['slots'])} optimizer slot arrays)")
    for key, value in spec.metadata.items():
        if len(value) > 200 and not args.full:
            value = value[:200] + "…"
        print(f"meta {key}: {value}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    import numpy as np

    from ._verify import format_result, verify

    inputs = np.load(args.inputs, allow_pickle=False) if args.inputs else None
    r = verify(args.keras_model, args.fkb_model, samples=args.samples, seed=args.seed,
               inputs=inputs, per_layer=not args.no_per_layer)
    print(format_result(r, f"fkb verify {args.keras_model} {args.fkb_model}"))
    return 0 if r.ok else EXIT_FAIL


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="fkb", description="FKB, the Fortran-Keras Bridge: convert and check models.")
    p.add_argument("--version", action="version", version=f"fkb {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="Keras (.keras, .h5, legacy .h5) or FKB files -> .fkb",
                       description="Convert models to FKB files. Several sources (or an "
                       "existing directory as -o) write DST/<name>.fkb for each.")
    c.add_argument("src", nargs="+", help="model files")
    c.add_argument("-o", "--output", required=True, help="output file or directory")
    c.add_argument("--format", choices=("fkb", "legacy"), default="fkb",
                   help="fkb (default) or the legacy FKB text format")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    c.add_argument("--ensemble", metavar="MANIFEST",
                   help="also write an ensemble manifest listing the converted models")
    c.add_argument("--weights", type=float, nargs="+", metavar="W",
                   help="member weights for --ensemble (default equal)")
    c.set_defaults(func=_convert)

    e = sub.add_parser("export", help="FKB model (.fkb or legacy text) -> Keras .keras file")
    e.add_argument("model")
    e.add_argument("-o", "--output", required=True, help="output .keras file")
    e.set_defaults(func=_export)

    i = sub.add_parser("info", help="architecture, parameters, precision and metadata")
    i.add_argument("model", help=".fkb, legacy FKB text, .keras or .h5 file, or an ensemble "
                   "manifest")
    i.add_argument("--full", action="store_true", help="do not shorten long metadata")
    i.set_defaults(func=_info)

    v = sub.add_parser("verify", help="compare a Keras model with its FKB conversion",
                       description="Run both models on the same inputs; print the max "
                       "absolute and relative error overall and per layer; exit 1 when above "
                       "the tolerance (float32: 1e-5*max(1,|y|), float64: 1e-12*max(1,|y|)).")
    v.add_argument("keras_model")
    v.add_argument("fkb_model")
    v.add_argument("--samples", type=int, default=1000, help="random samples (default 1000)")
    v.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    v.add_argument("--inputs", help=".npy file of inputs (batch, *input_shape) instead; for "
                   "several inputs a .npz file with one array per input name")
    v.add_argument("--no-per-layer", action="store_true", help="compare the outputs only")
    v.set_defaults(func=_verify)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (FKBError, OSError, ValueError) as e:
        print(f"fkb {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
