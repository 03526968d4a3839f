"""Python-side timing worker of run_all.py: FKB's Python package, Keras 3 or ONNX Runtime.

Runs as its own process so that the thread settings (environment variables, TensorFlow's and
ONNX Runtime's thread pools) are fixed before any library starts. Reads a JSON list of jobs (or,
with `--jobs -`, one JSON job per line of stdin, each answered as it comes: paired.py keeps the
process alive and alternates it with another) and prints one line per job, as the native
programs do:

    result LABEL SECONDS_PER_CALL SAMPLES CALLS_PER_SAMPLE

Timing protocol (the same as fortran/bench_timer.f90): two warm-up calls, one timed call t1,
blocks of k = ceil(block_target / t1) calls, blocks until min_samples were taken and budget
seconds spent (or max_samples), median of (block time / k).

Job fields: label, kind ("predict", "load" or "train": one Adam step on an MSE loss, from a
fresh copy of the model), mode ("fkb", "keras-predict", "keras-call",
"keras-tf.function", "ort"), path (the model file for that system), dtype ("float32" or
"float64"), batch. Inputs are (batch, *input_shape) random arrays: (batch, n_in) for a dense
chain, (batch, steps, channels) for the Conv1D/LSTM models (shapes from the loaded model).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


_warmed = False


def measure(fn, budget: float, min_samples: int, max_samples: int, block_target: float):
    # The process's first measurement warms up for 0.25 s, as the native workers do (a freshly
    # started thread pool can share one core with the main thread for its first ~0.1 s).
    global _warmed
    w0 = time.perf_counter()
    while not _warmed and time.perf_counter() - w0 < 0.25:
        fn()
    _warmed = True
    fn()
    fn()
    t0 = time.perf_counter()
    fn()
    t1 = time.perf_counter() - t0
    k = int(max(1.0, min(1e7, block_target / max(t1, 1e-9))))
    samples = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        samples.append((time.perf_counter() - t0) / k)
        if len(samples) >= max(1, max_samples):
            break
        if len(samples) >= min_samples and time.perf_counter() - start >= budget:
            break
    return statistics.median(samples), len(samples), k


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", required=True, choices=["fkb", "keras", "ort"])
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--jobs", required=True)
    ap.add_argument("--budget", type=float, default=0.1)
    ap.add_argument("--min-samples", type=int, default=3)
    ap.add_argument("--max-samples", type=int, default=1000)
    ap.add_argument("--block-target", type=float, default=0.002)
    a = ap.parse_args()
    if a.jobs == "-":
        jobs = (json.loads(line) for line in sys.stdin if line.strip())
    else:
        with open(a.jobs) as f:
            jobs = json.load(f)

    import numpy as np

    rng = np.random.default_rng(4321)
    cache: dict = {}

    if a.system == "fkb":
        import fkb

        def get(job):
            if job["path"] not in cache:
                cache[job["path"]] = fkb.load(job["path"])
            return cache[job["path"]]

        def make(job):
            if job["kind"] == "load":
                return lambda: fkb.load(job["path"])
            if job["kind"] == "train":  # a network of its own: training changes the weights
                net = fkb.load(job["path"])
                if not hasattr(net, "train_on_batch"):
                    raise RuntimeError("this fkb package has no training (Network.train_on_batch)")
                net.compile("adam", "mse")
                x = rng.uniform(-1, 1, (job["batch"], net.n_inputs)).astype(job["dtype"])
                y = rng.uniform(-1, 1, (job["batch"], net.n_outputs)).astype(job["dtype"])
                return lambda: net.train_on_batch(x, y)
            net = get(job)
            # (batch, *input_shape): (batch, n_in) for a dense chain, (batch, steps, channels)
            # for the Conv1D/LSTM models
            shape = tuple(net.input_shapes[0]) if hasattr(net, "input_shapes") else (net.n_inputs,)
            x = rng.uniform(-1, 1, (job["batch"],) + shape).astype(job["dtype"])
            return lambda: net.predict(x)

    elif a.system == "keras":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
        tf.config.threading.set_inter_op_parallelism_threads(a.threads)
        import keras

        def get(job):
            if job["path"] not in cache:
                model = keras.saving.load_model(job["path"], compile=False)
                shape = tuple(model.inputs[0].shape[1:])  # per sample: (n_in,) or (steps, ch)
                serve = tf.function(lambda t: model(t, training=False), input_signature=[
                    tf.TensorSpec([None, *shape], job["dtype"])])
                cache[job["path"]] = (model, serve, shape)
            return cache[job["path"]]

        def make(job):
            if job["kind"] == "load":
                return lambda: keras.saving.load_model(job["path"], compile=False)
            if job["kind"] == "train":  # a model of its own: training changes the weights
                model = keras.saving.load_model(job["path"], compile=False)
                model.compile(optimizer="adam", loss="mse")
                n_in, n_out = model.inputs[0].shape[-1], model.outputs[0].shape[-1]
                x = rng.uniform(-1, 1, (job["batch"], n_in)).astype(job["dtype"])
                y = rng.uniform(-1, 1, (job["batch"], n_out)).astype(job["dtype"])
                return lambda: model.train_on_batch(x, y)
            model, serve, shape = get(job)
            b = job["batch"]
            x = rng.uniform(-1, 1, (b,) + shape).astype(job["dtype"])
            xt = tf.constant(x)
            if job["mode"] == "keras-predict":
                return lambda: model.predict(x, batch_size=b, verbose=0)
            if job["mode"] == "keras-call":
                return lambda: model(xt, training=False).numpy()
            if job["mode"] == "keras-tf.function":
                return lambda: serve(xt).numpy()
            raise ValueError(job["mode"])

    else:
        import onnxruntime as ort

        def session(path):
            so = ort.SessionOptions()
            so.intra_op_num_threads = a.threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

        def get(job):
            if job["path"] not in cache:
                s = session(job["path"])
                cache[job["path"]] = (s, s.get_inputs()[0].name, tuple(s.get_inputs()[0].shape[1:]))
            return cache[job["path"]]

        def make(job):
            if job["kind"] == "load":
                return lambda: session(job["path"])
            s, name, shape = get(job)
            x = rng.uniform(-1, 1, (job["batch"],) + shape).astype(job["dtype"])
            feed = {name: x}
            return lambda: s.run(None, feed)

    made: dict = {}  # streamed: a job seen again (same label) reuses its prepared call
    for job in jobs:
        try:
            if a.jobs != "-":
                fn = make(job)
            elif job["label"] not in made:
                fn = made[job["label"]] = make(job)
            else:
                fn = made[job["label"]]
            med, n, k = measure(fn, a.budget, a.min_samples, a.max_samples, a.block_target)
            print(f"result {job['label']} {med:.9e} {n} {k}", flush=True)
        except Exception as e:  # reported, the other jobs go on
            msg = " ".join(f"{type(e).__name__}: {e}".split())[:300]
            print(f"failed {job['label']} {msg}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
