#!/usr/bin/env python3
"""Reference outputs for the legacy FKB text models, computed with numpy straight from the
format's definition (shared/legacy-fkb/README.md), independently of the engine.

Usage: legacy_cases.py LEGACY_DIR OUTDIR

Writes OUTDIR/<name>.txt (a copy of the model), <name>.x.bin, <name>.y.bin (float64, C order)
and OUTDIR/cases.txt (`name float32 n_in n_out n`) for each legacy file that has weights.
"""
import os
import shutil
import sys

import numpy as np

N = 1024
ACTIVATIONS = {
    "linear": lambda h, a: h,
    "relu": lambda h, a: np.maximum(h, 0),
    "leakyrelu": lambda h, a: np.where(h >= 0, h, np.float32(a) * h),
    "sigmoid": lambda h, a: 1 / (1 + np.exp(-h)),
    "tanh": lambda h, a: np.tanh(h),
}


def forward(path, x):
    lines = [ln.split() for ln in open(path) if ln.strip()]
    n = int(float(lines[0][0]))
    layers = [(name, float(value)) for name, value in lines[1:1 + n]]
    rest = lines[2 + n:]  # skip the learning rate line
    dense = [(int(v), layers[i + 1]) for i, (name, v) in enumerate(layers) if name == "dense"]
    if not rest:
        return None
    biases = [np.array(rest[k], dtype=np.float32) for k in range(len(dense))]
    weights = [np.array(rest[len(dense) + k], dtype=np.float32) for k in range(len(dense))]
    h = x.astype(np.float32)
    n_in = int(layers[0][1])
    for (units, (act, alpha)), b, w in zip(dense, biases, weights):
        kernel = w.reshape(units, n_in).T  # Fortran w(n_in, units), column-major
        h = ACTIVATIONS[act](h @ kernel + b, alpha).astype(np.float32)
        n_in = units
    return h


def main(legacy_dir, out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    with open(os.path.join(out, "cases.txt"), "w") as cases:
        for fname in sorted(os.listdir(legacy_dir)):
            if not fname.endswith(".txt"):
                continue
            path = os.path.join(legacy_dir, fname)
            n_in = int(float(open(path).readlines()[1].split()[1]))
            x = rng.normal(size=(N, n_in))
            y = forward(path, x)
            if y is None:
                continue
            name = fname[:-4]
            shutil.copy(path, os.path.join(out, fname))
            x.astype("<f8").tofile(os.path.join(out, name + ".x.bin"))
            y.astype("<f8").tofile(os.path.join(out, name + ".y.bin"))
            cases.write(f"{name} float32 {n_in} {y.shape[1]} {N}\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
