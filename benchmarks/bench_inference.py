"""Inference benchmark: FKB (Fortran and Python) against Keras on the same machine, same run.

Model: 94 -> 5 x [Dense(256) + LeakyReLU(0.3)] -> Dense(65), float32, fixed seed.
Every number is measured afresh on each run; nothing is cached and nothing is asserted.

    python benchmarks/bench_inference.py --prefix build/prefix --work build/bench
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
BATCHES = (1, 64, 512, 4096)
N_IN, WIDTH, DEPTH, N_OUT = 94, 256, 5, 65
SEED = 1234


def repeats(batch: int, scale: float) -> int:
    """Timed repetitions per batch size: many for small batches, few for large ones."""
    base = {1: 200, 64: 100, 512: 30, 4096: 10}[batch]
    return max(5, int(base * scale))


def build_model():
    import keras

    keras.utils.set_random_seed(SEED)
    inputs = keras.Input((N_IN,), dtype="float32")
    h = inputs
    for _ in range(DEPTH):
        h = keras.layers.Dense(WIDTH)(h)
        h = keras.layers.LeakyReLU(negative_slope=0.3)(h)
    outputs = keras.layers.Dense(N_OUT)(h)
    return keras.Model(inputs, outputs)


def median_us_per_sample(fn, batch: int, reps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times) / batch


def find_tool(name: str) -> str:
    cand = pathlib.Path(sys.executable).parent / name
    return str(cand) if cand.exists() else (shutil.which(name) or name)


def run_fortran(prefix: pathlib.Path, work: pathlib.Path, model_path: pathlib.Path, scale: float):
    cmake = find_tool("cmake")
    ninja = find_tool("ninja")
    bdir = work / "fortran"
    subprocess.run([cmake, "-S", str(HERE / "fortran"), "-B", str(bdir), "-G", "Ninja",
                    f"-DCMAKE_MAKE_PROGRAM={ninja}", f"-DCMAKE_PREFIX_PATH={prefix}",
                    "-DCMAKE_BUILD_TYPE=Release"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([cmake, "--build", str(bdir)], check=True, stdout=subprocess.DEVNULL)
    args = [str(bdir / "bench_fkb"), str(model_path)]
    for b in BATCHES:
        args += [str(b), str(repeats(b, scale))]
    args.append(str(max(100, int(2000 * scale))))
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    per_batch, single = {}, None
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4 and f[0] == "batch" and f[2] == "us_per_sample":
            per_batch[int(f[1])] = float(f[3])
        elif len(f) >= 3 and f[0] == "single_rank1":
            single = float(f[2])
    if set(per_batch) != set(BATCHES) or single is None:
        raise RuntimeError(f"could not parse bench_fkb output:\n{out}")
    return per_batch, single, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", default="build/prefix", help="FKB install prefix (make install)")
    ap.add_argument("--work", default="build/bench", help="scratch directory")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the repeat counts")
    a = ap.parse_args()
    prefix = pathlib.Path(a.prefix).resolve()
    work = pathlib.Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)

    load_before = os.getloadavg()

    import fkb
    import keras
    import tensorflow as tf

    model = build_model()
    model_path = work / "bench_model.fkb"
    fkb.convert(model, str(model_path))
    net = fkb.load(str(model_path))

    rng = np.random.default_rng(SEED)
    xs = {b: rng.uniform(-1, 1, (b, N_IN)).astype(np.float32) for b in BATCHES}
    err = np.max(np.abs(net.predict(xs[64]) - model.predict(xs[64], verbose=0)))
    print(f"check: max |fkb - keras| on a batch of 64 = {err:.2e}")

    print("timing FKB from Fortran ...", flush=True)
    fortran, single, _ = run_fortran(prefix, work, model_path, a.scale)

    serve = tf.function(lambda t: model(t, training=False))
    rows = []
    for b in BATCHES:
        print(f"timing batch {b} in Python ...", flush=True)
        x = xs[b]
        xt = tf.constant(x)
        r = repeats(b, a.scale)
        py = median_us_per_sample(lambda: net.predict(x), b, r)
        kp = median_us_per_sample(lambda: model.predict(x, batch_size=b, verbose=0), b, r)
        kc = median_us_per_sample(lambda: model(xt, training=False).numpy(), b, r)
        kf = median_us_per_sample(lambda: serve(xt).numpy(), b, r)
        rows.append((b, fortran[b], py, kp, kc, kf))

    cpu = "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    print()
    print(f"CPU: {cpu}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
          f"keras {keras.__version__}, tensorflow {tf.__version__}, numpy {np.__version__}")
    print(f"load average (1/5/15 min) before: {'/'.join(f'{v:.2f}' for v in load_before)}, "
          f"after: {'/'.join(f'{v:.2f}' for v in os.getloadavg())} "
          "(well above 0 means other work shared the CPUs and the numbers are noisy)")
    print(f"FKB-Fortran single-sample rank-1 predict: {single:.2f} us/call")
    print()
    print("| batch | FKB-Fortran | FKB-Python | Keras predict | Keras call | Keras tf.function "
          "| tf.function / FKB-Fortran | predict / FKB-Fortran |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b, f, py, kp, kc, kf in rows:
        print(f"| {b} | {f:.2f} | {py:.2f} | {kp:.2f} | {kc:.2f} | {kf:.2f} | {kf / f:.1f}x | {kp / f:.1f}x |")
    print()
    print("All times: median microseconds per sample (lower is better).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
