#!/usr/bin/env python3
"""`make demo`: the bridge end to end.

1. Train a small Keras model (fixed seed) on a synthetic "subgrid tendency" problem.
2. Convert it to .fkb with `fkb convert` (the command line a scientist would use).
3. Build the Fortran host program examples/fortran against the installed FKB package with
   find_package(FKB), run it on the same inputs, and print its agreement with Keras.
"""
import argparse
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run(cmd, **kw):
    print("$", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prefix", required=True, help="where FKB is installed")
    ap.add_argument("--work", required=True, help="scratch folder")
    args = ap.parse_args()
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    import keras

    print("== 1. Train a Keras model (94 inputs -> 3 x 128 LeakyReLU -> 65 outputs)")
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4096, 94)).astype("float32")
    w = rng.normal(size=(94, 65)).astype("float32") / 10
    y = np.tanh(x @ w) + 0.1 * np.sin(3 * x[:, :65])
    model = keras.Sequential([keras.Input((94,))] + [
        layer for _ in range(3) for layer in (keras.layers.Dense(128), keras.layers.LeakyReLU(0.3))
    ] + [keras.layers.Dense(65)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    hist = model.fit(x, y, epochs=3, batch_size=128, verbose=0)
    print(f"   training loss per epoch: {[round(v, 4) for v in hist.history['loss']]}")
    keras_path = os.path.join(work, "emulator.keras")
    model.save(keras_path)

    print("== 2. Convert it with the fkb command line")
    fkb_path = os.path.join(work, "emulator.fkb")
    run([sys.executable, "-m", "fkb", "convert", keras_path, "-o", fkb_path])
    run([sys.executable, "-m", "fkb", "info", fkb_path])

    print("== 3. Run it from a Fortran host program built with find_package(FKB)")
    n = 1024
    xt = rng.normal(size=(n, 94)).astype("float32")
    ref = np.asarray(model(xt), dtype=np.float64)
    xt.astype("<f8").tofile(os.path.join(work, "x.bin"))
    ref.astype("<f8").tofile(os.path.join(work, "keras_y.bin"))
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"])
    build = os.path.join(work, "fortran")
    run(["cmake", "-S", os.path.join(ROOT, "examples", "fortran"), "-B", build, "-G", "Ninja",
         f"-DCMAKE_PREFIX_PATH={os.path.abspath(args.prefix)}"], env=env,
        stdout=subprocess.DEVNULL)
    run(["cmake", "--build", build], env=env, stdout=subprocess.DEVNULL)
    run([os.path.join(build, "fkb_host"), fkb_path, os.path.join(work, "x.bin"),
         os.path.join(work, "keras_y.bin"), str(n)])
    print("== Done: the Keras model runs in Fortran and gives what Keras gives.")


if __name__ == "__main__":
    main()
