"""FKB's benchmark suite (issue 7): FKB against Keras 3, ONNX Runtime, a per-sample loop and the
machine's own GEMM rate, measured in one run on one machine.

    python benchmarks/run_all.py --prefix build/prefix --work build/bench [--quick]
                                 [--models tiny,spcam,wide,deep,conv_column,lstm]

Models: four dense chains (tiny, spcam, wide, deep), a ClimSim-like Conv1D column model and a
two-layer LSTM; the last two take (steps, channels) samples, flat in C order per sample from
Fortran and C, shaped (batch, steps, channels) from Python.

Systems (each runs in its own process, one per thread count, so thread settings hold):
  FKB-Fortran   net%predict from a Fortran program built against the installed package
  FKB-C         fkb_network_predict from a C program built against the installed package
  FKB-Python    fkb.load(path).predict(x)
  ORT           ONNX Runtime on the model exported by Keras (model.export(format="onnx"))
  tf.function   tf.function(lambda t: model(t, training=False)), traced once
  Keras call    model(x, training=False).numpy(), eager
  Keras predict model.predict(x, batch_size=B)
  loop          one sample at a time, intrinsic matmul, allocating per layer, as the original
                FKB did (fortran/loop_impl.inc); single-threaded by nature, run once (1 thread);
                dense chains only (the original FKB had no Conv1D/LSTM)
  GEMM bound    the chain of sgemm/dgemm calls of the same shapes, same BLAS as FKB (no bias,
                no activation): the physical bound for a batched dense forward pass; for the
                Conv1D/LSTM models their GEMMs (gemm_shapes: im2col products; LSTM input
                projections and per-step recurrent products)

Before timing, every system's output is checked against Keras on the same inputs (FKB-Fortran
and FKB-C through the timing programs' own `check` job).

Every run measures afresh: nothing is cached between runs, nothing is hard-coded, and nothing is
asserted about speed. Rounds are interleaved (the order of systems and thread counts rotates
from round to round); each cell's figure is the median over rounds of the per-round medians.
Writes WORK/results.md (also printed), WORK/results.json and WORK/bench_float32.png,
WORK/bench_float64.png.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import json
import math
import os
import pathlib
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import time
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import paired  # noqa: E402  (benchmarks/paired.py: the target ratios in alternating windows)

HERE = pathlib.Path(__file__).resolve().parent
SEED = 1234


class Shaped(NamedTuple):
    """A model on (steps, channels) samples. kind "conv": layers are (filters, kernel_size,
    activation) of Conv1D layers with padding "same", stride 1; kind "lstm": layers are the
    units of stacked LSTMs (all but the last return sequences), then Dense(n_out)."""
    desc: str
    kind: str
    in_shape: tuple
    layers: list
    n_out: int


# Dense chains: name -> (description, n_in, hidden widths, n_out, hidden activation, leaky
# alpha); Conv1D/LSTM models: name -> Shaped.
MODELS = {
    "tiny": ("tiny 5→3→4→3→2 (ReLU)", 5, [3, 4, 3], 2, "relu", 0.0),
    "spcam": ("SPCAM-like 94→5×256→65 (LeakyReLU 0.3)", 94, [256] * 5, 65, "leaky_relu", 0.3),
    "wide": ("wide 128→3×1024→128 (ReLU)", 128, [1024] * 3, 128, "relu", 0.0),
    "deep": ("deep-narrow 64→10×64→64 (ReLU)", 64, [64] * 10, 64, "relu", 0.0),
    "conv_column": Shaped("ClimSim-like column (60, 6) → 2 × Conv1D(32, 3, same, ReLU) → "
                          "Conv1D(8, 1) → (60, 8)", "conv", (60, 6),
                          [(32, 3, "relu"), (32, 3, "relu"), (8, 1, "linear")], 8),
    "lstm": Shaped("(30, 8) → LSTM(64, return_sequences) → LSTM(64) → Dense(8)", "lstm",
                   (30, 8), [64, 64], 8),
}
BIG = ("10M-parameter 512→3×2048→512 (ReLU)", 512, [2048] * 3, 512, "relu", 0.0)
TRAIN_BATCH = 256
ACT_CODE = {"linear": 0, "relu": 1, "leaky_relu": 2, "tanh": 3}

SYSTEMS = ["fkb-fortran", "fkb-c", "fkb-python", "ort", "keras-tf.function", "keras-call",
           "keras-predict", "loop", "gemm"]
NAMES = {"fkb-fortran": "FKB-Fortran", "fkb-c": "FKB-C", "fkb-python": "FKB-Python",
         "ort": "ORT", "keras-tf.function": "tf.function", "keras-call": "Keras call",
         "keras-predict": "Keras predict", "loop": "loop (1 thr)", "gemm": "GEMM bound",
         "fkb-fortran-rank1": "FKB-Fortran rank-1", "fkb-python-train": "FKB-Python",
         "keras-train": "Keras"}
# Worker processes: name -> systems it measures.
WORKERS = {"fkb-fortran": ["fkb-fortran"], "fkb-c": ["fkb-c"], "fkb-python": ["fkb-python"],
           "ort": ["ort"], "keras": ["keras-tf.function", "keras-call", "keras-predict"],
           "loop": ["loop"], "gemm": ["gemm"]}


# ----------------------------------------------------------------------------------------------
# helpers

def find_tool(name: str) -> str:
    cand = pathlib.Path(sys.executable).parent / name
    return str(cand) if cand.exists() else (shutil.which(name) or name)


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model() -> str:
    for line in sh(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def openblas_coretype(blas: str):
    """(OPENBLAS_CORETYPE for the GEMM-bound worker or None, OpenBLAS' own choice or None).
    OpenBLAS 0.3.21 does not know recent Intel server CPUs (family 6 model 207) and falls back
    to its Prescott (SSE3) kernels: square sgemm 31 GFLOP/s on a core whose FMA peak is 161.
    A bound measured so bounds nothing, so the worker then asks for the kernels the CPU runs
    (SkylakeX: AVX-512, Haswell: AVX2 + FMA). A CORETYPE set by the caller is left alone."""
    lib_path = next((p for p in blas.split(";") if "openblas" in p.lower()), None)
    if lib_path is None or "OPENBLAS_CORETYPE" in os.environ:
        return None, None
    try:
        lib = ctypes.CDLL(lib_path)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        name = lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return None, None
    try:
        flags = next((ln.split(":", 1)[1].split() for ln in open("/proc/cpuinfo")
                      if ln.startswith("flags")), [])
    except OSError:
        flags = []
    if name.lower() != "prescott":
        return None, name
    if "avx512f" in flags:
        return "SkylakeX", name
    if "avx2" in flags and "fma" in flags:
        return "Haswell", name
    return None, name


def fkb_libraries(prefix: pathlib.Path) -> str:
    """Which FKB builds were measured: the prefix's library (Fortran, C) and the Python
    package's extension, with their modification times (others may rebuild them)."""
    out = []
    libs = sorted(prefix.glob("lib*/libfkb.so*")) + sorted(prefix.glob("lib*/libfkb.a"))
    real = [p for p in libs if not p.is_symlink()]
    for p in real[:1]:
        t = dt.datetime.fromtimestamp(p.stat().st_mtime, dt.timezone.utc)
        out.append(f"`{p}` built {t:%Y-%m-%d %H:%M} UTC")
    try:
        import fkb._core as core

        t = dt.datetime.fromtimestamp(os.stat(core.__file__).st_mtime, dt.timezone.utc)
        out.append(f"Python `{core.__file__}` built {t:%Y-%m-%d %H:%M} UTC")
    except (ImportError, OSError):
        pass
    return "; ".join(out)


def fmt_load(v) -> str:
    return "/".join(f"{x:.2f}" for x in v)


def is_dense(spec) -> bool:
    return not isinstance(spec, Shaped)


def in_shape(spec) -> tuple:
    """Per-sample input shape (Keras' shape without the batch axis)."""
    return (spec[1],) if is_dense(spec) else tuple(spec.in_shape)


def gemm_shapes(spec, batch: int) -> list:
    """The BLAS work of a Conv1D/LSTM model's forward pass on `batch` samples, as GEMMs
    (M, N, K, repeats): C(M, N) = W(M, K) · A(K, N).
    conv: per layer the im2col GEMM C(filters, steps·batch) = W(filters, k·C_in) · cols.
    lstm: per layer the input projection of all steps in one GEMM, C(4u, steps·batch) =
    W(4u, C_in) · x, then one recurrent GEMM C(4u, batch) = U(4u, u) · h per step; then the
    final Dense C(n_out, batch) = W(n_out, u) · h."""
    steps, ch = spec.in_shape
    out = []
    if spec.kind == "conv":
        for filters, k, _ in spec.layers:
            out.append((filters, steps * batch, k * ch, 1))
            ch = filters
    else:
        for u in spec.layers:
            out.append((4 * u, steps * batch, ch, 1))
            out.append((4 * u, batch, u, steps))
            ch = u
        out.append((spec.n_out, batch, ch, 1))
    return out


def n_params(spec) -> int:
    if not is_dense(spec):
        steps, ch = spec.in_shape
        n = 0
        if spec.kind == "conv":
            for filters, k, _ in spec.layers:
                n += k * ch * filters + filters
                ch = filters
            return n
        for u in spec.layers:
            n += ch * 4 * u + u * 4 * u + 4 * u
            ch = u
        return n + ch * spec.n_out + spec.n_out
    _, n_in, hidden, n_out, _, _ = spec
    dims = [n_in] + hidden + [n_out]
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def flops(spec) -> int:
    """Multiply-adds x 2 of the dense layers (Conv1D/LSTM: of their GEMMs, gemm_shapes), per
    sample."""
    if not is_dense(spec):
        return sum(2 * m * n * k * r for m, n, k, r in gemm_shapes(spec, 1))
    _, n_in, hidden, n_out, _, _ = spec
    dims = [n_in] + hidden + [n_out]
    return 2 * sum(a * b for a, b in zip(dims[:-1], dims[1:]))


# ----------------------------------------------------------------------------------------------
# models

def build_keras(spec, dtype: str):
    import keras

    keras.utils.set_random_seed(SEED)
    # The global policy too: with only the layers' dtype set, the input layer stays float32 and
    # Keras rounds a float64 model's inputs to float32.
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        return _build_keras(spec, dtype)
    finally:
        keras.config.set_dtype_policy(policy)


def _build_keras(spec, dtype: str):
    import keras

    if not is_dense(spec):
        inp = keras.Input(in_shape(spec), dtype=dtype)
        h = inp
        if spec.kind == "conv":
            for filters, k, act in spec.layers:
                h = keras.layers.Conv1D(filters, k, padding="same", activation=act, dtype=dtype)(h)
        else:
            for i, u in enumerate(spec.layers):
                h = keras.layers.LSTM(u, return_sequences=i < len(spec.layers) - 1, dtype=dtype)(h)
            h = keras.layers.Dense(spec.n_out, dtype=dtype)(h)
        model = keras.Model(inp, h)
        model(np.zeros((1,) + in_shape(spec), dtype))
        return model
    _, n_in, hidden, n_out, act, alpha = spec
    inp = keras.Input((n_in,), dtype=dtype)
    h = inp
    for w in hidden:
        if act == "leaky_relu":
            h = keras.layers.Dense(w, dtype=dtype)(h)
            h = keras.layers.LeakyReLU(negative_slope=alpha, dtype=dtype)(h)
        else:
            h = keras.layers.Dense(w, activation=act, dtype=dtype)(h)
    out = keras.layers.Dense(n_out, dtype=dtype)(h)
    model = keras.Model(inp, out)
    model(np.zeros((1, n_in), dtype))  # builds it (the ONNX export needs a called model)
    return model


def write_raw(model, spec, path: pathlib.Path) -> None:
    """The per-sample loop's weight file (read by fortran/loop_impl.inc)."""
    import keras

    _, _, _, _, act, alpha = spec
    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    with open(path, "wb") as f:
        f.write(struct.pack("<i", len(dense)))
        for i, layer in enumerate(dense):
            k, b = (np.asarray(v, np.float64) for v in layer.get_weights())
            last = i == len(dense) - 1
            code = 0 if last else ACT_CODE[act]
            f.write(struct.pack("<iiid", k.shape[0], k.shape[1], code, alpha))
            f.write(np.asfortranarray(k).tobytes(order="F"))
            f.write(b.tobytes())


def prepare_models(work: pathlib.Path, dtypes, log, names=None) -> dict:
    """Keras model -> .keras, .fkb, .onnx, loop weights (dense chains only); checks that
    FKB-Python and ORT agree with Keras, and leaves the check batch (`check_x` file, C order,
    and the Keras result `_ref`) for check_native."""
    import fkb

    mdir = work / "models"
    mdir.mkdir(parents=True, exist_ok=True)
    out: dict = {}
    todo = [(m, d) for m in (names or MODELS) for d in dtypes] + [("big", "float32")]
    for name, dtype in todo:
        spec = BIG if name == "big" else MODELS[name]
        stem = mdir / f"{name}_{dtype}"
        model = build_keras(spec, dtype)
        files = {"keras": f"{stem}.keras", "fkb": f"{stem}.fkb", "onnx": f"{stem}.onnx",
                 "raw": f"{stem}.raw", "check_x": f"{stem}.check_x.bin"}
        for p in files.values():
            if os.path.exists(p):
                os.remove(p)
        model.save(files["keras"])
        fkb.convert(model, files["fkb"])
        if is_dense(spec):  # the per-sample loop only runs dense chains
            write_raw(model, spec, pathlib.Path(files["raw"]))
        info = {"files": files, "ort_error": None, "check": {}}
        try:
            model.export(files["onnx"], format="onnx", verbose=False)
        except Exception as e:  # noqa: BLE001 - reported in the results
            info["ort_error"] = f"ONNX export failed: {type(e).__name__}: {e}"
        # agreement on one batch (a sanity check of what is timed, not a test)
        x = np.random.default_rng(SEED).uniform(-1, 1, (64,) + in_shape(spec)).astype(dtype)
        # (a direct call: model.predict would round float64 inputs to float32 first)
        ref = np.asarray(model(x, training=False), np.float64)
        x.tofile(files["check_x"])  # flat, C order per sample: Fortran's x(n_in, 64)
        info["_ref"] = ref
        info["check"]["fkb"] = float(np.max(np.abs(fkb.load(files["fkb"]).predict(x) - ref)))
        if info["ort_error"] is None:
            try:
                import onnxruntime as ort

                s = ort.InferenceSession(files["onnx"], providers=["CPUExecutionProvider"])
                y = s.run(None, {s.get_inputs()[0].name: x})[0]
                info["check"]["ort"] = float(np.max(np.abs(y - ref)))
            except Exception as e:  # noqa: BLE001
                msg = " ".join(str(e).split())
                info["ort_error"] = f"ONNX Runtime refused the exported model: {msg[:200]}"
        out[(name, dtype)] = info
        log(f"  {name} {dtype}: {n_params(spec):,} parameters; max |FKB - Keras| = "
            f"{info['check']['fkb']:.2e}"
            + (f", max |ORT - Keras| = {info['check']['ort']:.2e}" if "ort" in info["check"]
               else f"; ORT: n/a ({info['ort_error'][:90]})"))
    return out


# ----------------------------------------------------------------------------------------------
# native programs

def build_native(prefix: pathlib.Path, work: pathlib.Path) -> pathlib.Path:
    cmake, ninja = find_tool("cmake"), find_tool("ninja")
    bdir = work / "native"
    subprocess.run([cmake, "-S", str(HERE / "fortran"), "-B", str(bdir), "-G", "Ninja",
                    f"-DCMAKE_MAKE_PROGRAM={ninja}", f"-DCMAKE_PREFIX_PATH={prefix}",
                    "-DCMAKE_BUILD_TYPE=Release"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([cmake, "--build", str(bdir)], check=True, stdout=subprocess.DEVNULL)
    return bdir


def check_native(native: pathlib.Path, work: pathlib.Path, models: dict, log) -> None:
    """FKB-Fortran (batch and rank-1 calls) and FKB-C on the check batch of prepare_models,
    through the timing programs' own input layout (flat, C order per sample), against Keras:
    max |difference| into models[...]["check"]."""
    cdir = work / "check"
    cdir.mkdir(parents=True, exist_ok=True)
    dbits = {"float32": 32, "float64": 64}
    keys = [k for k in models if k[0] != "big"]
    for prog, sysname in (("bench_fkb_jobs", "fkb-fortran"), ("bench_fkb_c", "fkb-c")):
        lines = []
        for m, d in keys:
            f = models[(m, d)]["files"]
            yp = cdir / f"{sysname}_{m}_{d}.bin"
            if yp.exists():
                yp.unlink()
            lines.append(f"check {label(sysname, m, d, 64)} {f['fkb']} {dbits[d]} 64 {f['check_x']} {yp}")
        jf = cdir / f"{sysname}.txt"
        jf.write_text("\n".join(lines) + "\n")
        out, err, rc, _ = run_worker([str(native / prog), str(jf), "0", "1", "1", "0"],
                                     thread_env(1), timeout=600)
        for m, d in keys:
            info = models[(m, d)]
            ref = info["_ref"].reshape(64, -1)
            yp = cdir / f"{sysname}_{m}_{d}.bin"
            y = np.fromfile(yp, dtype=d) if yp.exists() else np.zeros(0)
            if y.size != ref.size + (ref.shape[1] if sysname == "fkb-fortran" else 0):
                tail = " ".join((err.strip() or out.strip()).split())[-200:]
                info["check"][sysname] = f"failed (exit {rc}): {tail}"
                log(f"  {m} {d}: {NAMES[sysname]} check failed: {tail}")
                continue
            info["check"][sysname] = float(np.max(np.abs(y[:ref.size].reshape(ref.shape) - ref)))
            msg = f"max |{NAMES[sysname]} - Keras| = {info['check'][sysname]:.2e}"
            if sysname == "fkb-fortran":  # then the rank-1 call on the first sample
                info["check"]["fkb-fortran-rank1"] = float(np.max(np.abs(y[ref.size:] - ref[0])))
                msg += f", rank-1 call {info['check']['fkb-fortran-rank1']:.2e}"
            log(f"  {m} {d}: {msg}")


# ----------------------------------------------------------------------------------------------
# jobs and workers

def label(system: str, model: str, dtype: str, batch: int) -> str:
    return f"{system}|{model}|{dtype}|{batch}"


def worker_jobs(worker: str, threads: int, cfg, models) -> list:
    """Job list of one worker process for one thread count: (label, job)."""
    jobs = []
    dbits = {"float32": 32, "float64": 64}
    first = threads == cfg.threads[0]
    for m in cfg.models:
        for d in cfg.dtypes:
            info = models[(m, d)]
            f = info["files"]
            spec = MODELS[m]
            for b in cfg.batches:
                if worker == "fkb-fortran":
                    jobs.append((label("fkb-fortran", m, d, b),
                                 f"predict {label('fkb-fortran', m, d, b)} {f['fkb']} {dbits[d]} {b}"))
                    if b == 1:
                        jobs.append((label("fkb-fortran-rank1", m, d, 1),
                                     f"rank1 {label('fkb-fortran-rank1', m, d, 1)} {f['fkb']} {dbits[d]}"))
                elif worker == "fkb-c":
                    jobs.append((label("fkb-c", m, d, b),
                                 f"predict {label('fkb-c', m, d, b)} {f['fkb']} {dbits[d]} {b}"))
                elif worker == "loop":
                    if is_dense(spec):  # the original FKB's per-sample loop: dense chains only
                        jobs.append((label("loop", m, d, b),
                                     f"loop {label('loop', m, d, b)} {f['raw']} {dbits[d]} {b} {cfg.loop_cols}"))
                elif worker == "gemm":
                    if is_dense(spec):
                        dims = [spec[1]] + spec[2] + [spec[3]]
                        jobs.append((label("gemm", m, d, b),
                                     f"chain {label('gemm', m, d, b)} {dbits[d]} {b} {len(dims)} "
                                     + " ".join(map(str, dims))))
                    else:  # Conv1D / LSTM: their GEMMs (gemm_shapes), each on its own operands
                        g = gemm_shapes(spec, b)
                        jobs.append((label("gemm", m, d, b),
                                     f"gemms {label('gemm', m, d, b)} {dbits[d]} {len(g)} "
                                     + " ".join(" ".join(map(str, x)) for x in g)))
                elif worker == "fkb-python":
                    jobs.append((label("fkb-python", m, d, b),
                                 dict(kind="predict", mode="fkb", path=f["fkb"], dtype=d, batch=b)))
                elif worker == "ort":
                    if info["ort_error"] is None:
                        jobs.append((label("ort", m, d, b),
                                     dict(kind="predict", mode="ort", path=f["onnx"], dtype=d, batch=b)))
                elif worker == "keras":
                    for mode in WORKERS["keras"]:
                        if mode == "keras-predict" and d != "float32":
                            continue  # slow (tf.data per call); float64 Keras: call, tf.function
                        jobs.append((label(mode, m, d, b),
                                     dict(kind="predict", mode=mode, path=f["keras"], dtype=d, batch=b)))
    if worker in ("fkb-python", "keras") and ("spcam", "float32") in models and cfg.train:
        # training throughput: one Adam step (MSE) per call, SPCAM-like, float32, batch 256
        sysname = "fkb-python-train" if worker == "fkb-python" else "keras-train"
        f = models[("spcam", "float32")]["files"]
        jobs.append((label(sysname, "spcam", "float32", TRAIN_BATCH),
                     dict(kind="train", mode=sysname, dtype="float32", batch=TRAIN_BATCH,
                          path=f["fkb"] if worker == "fkb-python" else f["keras"])))
    if worker == "gemm":
        for d in cfg.dtypes:
            n = cfg.square
            jobs.append((label("gemm-square", f"n{n}", d, n), f"square {label('gemm-square', f'n{n}', d, n)} {dbits[d]} {n}"))
    if first:  # load time of the 10M-parameter model (does not depend on threads)
        f = models[("big", "float32")]["files"]
        lab = {"fkb-fortran": "fkb-fortran", "fkb-c": "fkb-c", "fkb-python": "fkb-python",
               "ort": "ort", "keras": "keras"}.get(worker)
        if lab in ("fkb-fortran", "fkb-c"):
            jobs.append((label(lab, "load10M", "float32", 0), f"load {label(lab, 'load10M', 'float32', 0)} {f['fkb']}"))
        elif lab == "fkb-python":
            jobs.append((label(lab, "load10M", "float32", 0), dict(kind="load", mode="fkb", path=f["fkb"], dtype="float32", batch=0)))
        elif lab == "ort" and models[("big", "float32")]["ort_error"] is None:
            jobs.append((label(lab, "load10M", "float32", 0), dict(kind="load", mode="ort", path=f["onnx"], dtype="float32", batch=0)))
        elif lab == "keras":
            jobs.append((label(lab, "load10M", "float32", 0), dict(kind="load", mode="keras", path=f["keras"], dtype="float32", batch=0)))
    return jobs


def worker_command(worker: str, threads: int, jobfile: pathlib.Path, native: pathlib.Path, cfg):
    timing = [str(cfg.budget), str(cfg.min_samples), str(cfg.max_samples), str(cfg.block_target)]
    if worker in ("fkb-fortran", "fkb-c", "loop", "gemm"):
        exe = {"fkb-fortran": "bench_fkb_jobs", "fkb-c": "bench_fkb_c", "loop": "bench_loop",
               "gemm": "bench_gemm"}[worker]
        return [str(native / exe), str(jobfile)] + timing
    system = {"fkb-python": "fkb", "ort": "ort", "keras": "keras"}[worker]
    return [sys.executable, str(HERE / "worker_py.py"), "--system", system, "--threads",
            str(threads), "--jobs", str(jobfile), "--budget", timing[0], "--min-samples",
            timing[1], "--max-samples", timing[2], "--block-target", timing[3]]


def thread_env(threads: int) -> dict:
    env = dict(os.environ)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
              "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        env[k] = str(threads)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def run_worker(cmd, env, timeout: float):
    """Runs a worker; returns (stdout, stderr, returncode, seconds)."""
    t0 = time.perf_counter()
    with open(os.devnull, "rb") as devnull:
        p = subprocess.Popen(cmd, env=env, stdin=devnull, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        err += f"\n(killed after {timeout:.0f} s)"
    return out, err, p.returncode, time.perf_counter() - t0


def target_pairs(cfg, models, native: pathlib.Path, workers: list):
    """The issue-7 ratios as paired.Pair objects, and the commands of their stream workers:
    SPCAM-like float32 only. Returns (commands, pairs)."""
    if ("spcam", "float32") not in models:
        return {}, []
    pcfg = argparse.Namespace(**vars(cfg))
    pcfg.models, pcfg.dtypes = ["spcam"], ["float32"]
    pcfg.budget, pcfg.min_samples = cfg.pair_budget, 3
    t1, t2, big = cfg.threads[0], cfg.threads[-1], max(cfg.batches)
    mid = 512 if 512 in cfg.batches else None
    pcfg.batches = sorted({1, big} | ({mid} if mid else set()))
    lines: dict = {}
    commands: dict = {}
    cpu = min(os.sched_getaffinity(0))  # (every one-thread worker on the same CPU: paired.py)
    for w in ("fkb-fortran", "fkb-python", "ort", "keras", "loop"):
        if w not in workers:
            continue
        for t in sorted(set(cfg.threads)):
            if w == "loop" and t != t1:
                continue
            commands[(w, t)] = (worker_command(w, t, pathlib.Path("-"), native, pcfg), thread_env(t),
                                cpu if t == 1 else None)
            for lab, job in worker_jobs(w, t, pcfg, models):
                if not lab.endswith("|0"):  # (not the load-time jobs)
                    lines[(w, t, lab.split("|")[0], lab.split("|")[3])] = (
                        json.dumps(dict(job, label=lab)) if isinstance(job, dict) else job)

    def side(w, t, system, batch):
        k = (w, t, system, str(batch))
        return ((w, t), lines[k]) if k in lines else None

    def peak(t):
        pin = (lambda: os.sched_setaffinity(0, {cpu})) if t == 1 else None
        out = subprocess.run([str(native / "bench_peak")], env=thread_env(t), capture_output=True,
                             text=True, timeout=120, preexec_fn=pin).stdout
        for line in out.splitlines():
            f = line.split()
            if len(f) >= 3 and f[:2] == ["peak", "float32"]:
                return float(f[2])
        return float("nan")

    fkb2 = side("fkb-fortran", t2, "fkb-fortran", big)
    want = [
        ("ort", side("ort", t2, "ort", big), fkb2, ()),
        ("tf.function", side("keras", t2, "keras-tf.function", big), fkb2, ()),
        ("loop", side("loop", t1, "loop", big), fkb2, ()),
        ("single", side("fkb-fortran", t1, "fkb-fortran", 1), side("ort", t1, "ort", 1), ()),
        ("single python", side("fkb-python", t1, "fkb-python", 1), side("ort", t1, "ort", 1), ()),
    ]
    if mid:
        for t in cfg.threads:
            want.append((f"flat {t}", side("fkb-fortran", t, "fkb-fortran", big),
                         side("fkb-fortran", t, "fkb-fortran", mid), ()))
    if t1 != t2:
        want.append(("speed-up", side("fkb-fortran", t1, "fkb-fortran", big), fkb2,
                     ((f"peak {t1}", lambda: peak(t1)), (f"peak {t2}", lambda: peak(t2)))))
    for t in cfg.threads if cfg.train else []:
        want.append((f"train {t}", side("keras", t, "keras-train", TRAIN_BATCH),
                     side("fkb-python", t, "fkb-python-train", TRAIN_BATCH), ()))
    pairs = [paired.Pair(n, a, b, x) for n, a, b, x in want if a and b]
    return commands, pairs


def run_for_rss(cmd, env, native: pathlib.Path, timeout: float):
    """Runs a worker under rss_run; returns its peak RSS in KiB (None if it failed)."""
    out, err, rc, _ = run_worker([str(native / "rss_run")] + cmd, env, timeout)
    for line in err.splitlines():
        f = line.split()
        if rc == 0 and len(f) == 3 and f[:2] == ["rss_run", "maxrss_kib"]:
            return int(f[2])
    return None


def parse(out: str):
    res, failed = {}, {}
    for line in out.splitlines():
        f = line.split(None, 2)
        if len(f) == 3 and f[0] == "result":
            v = f[2].split()
            res[f[1]] = float(v[0])
        elif len(f) >= 2 and f[0] == "failed":
            failed[f[1]] = f[2] if len(f) > 2 else ""
    return res, failed


# ----------------------------------------------------------------------------------------------
# report

def us(v):
    return "—" if v is None else (f"{v:.3g}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:,.0f}")


def ratio(v):
    return "—" if v is None else (f"{v:.2f}×" if v < 10 else f"{v:.0f}×")


def paired_section(cfg, pair_results: dict, summary: dict) -> list:
    """The report's table of the target ratios measured in alternating windows (paired.py);
    adds them to summary as 'paired: NAME'."""
    t1, t2, big = cfg.threads[0], cfg.threads[-1], max(cfg.batches)
    mid = 512 if 512 in cfg.batches else None
    goals = {  # name: (what, goal text, test, scale of a/b, unit and batch of each side)
        "ort": (f"SPCAM-like, batch {big}, {t2} threads: FKB-Fortran throughput / ORT's",
                "≥ 1.0×", lambda v: v >= 1.0, 1.0, ("ORT", "FKB", big)),
        "tf.function": ("… / Keras tf.function", "≥ 3×", lambda v: v >= 3, 1.0,
                        ("tf.function", "FKB", big)),
        "loop": ("… / per-sample loop (1 thread)", "≥ 15×", lambda v: v >= 15, 1.0,
                 ("loop", "FKB", big)),
        "single": (f"SPCAM-like, single sample, {t1} thread: FKB-Fortran latency / ORT's",
                   "≤ 0.5×", lambda v: v <= 0.5, 1.0, ("FKB-Fortran", "ORT", 1)),
        "single python": ("… FKB-Python latency / ORT's", "≤ 0.5×", lambda v: v <= 0.5, 1.0,
                          ("FKB-Python", "ORT", 1)),
        "speed-up": (f"SPCAM-like, batch {big}: FKB-Fortran {t2} threads speed-up over {t1}",
                     "≥ 1.7×", lambda v: v >= 1.7, 1.0, (f"{t1} thr", f"{t2} thr", big)),
    }
    for t in cfg.threads:
        if mid:
            goals[f"flat {t}"] = (f"SPCAM-like, {t} thread(s): time/sample at {big} ÷ at {mid}",
                                  "0.8–1.2×", lambda v: 0.8 <= v <= 1.2, mid / big,
                                  (str(big), str(mid), None))
        goals[f"train {t}"] = (f"training, Adam, batch {TRAIN_BATCH}, {t} thread(s): FKB-Python / "
                               "Keras' throughput", "≥ 1.5×", lambda v: v >= 1.5, 1.0,
                               ("Keras", "FKB", TRAIN_BATCH))
    L = [f"## Issue 7 targets in paired windows ({cfg.pair_windows} per ratio)", "",
         "Both sides of each ratio kept alive as worker processes and timed alternately "
         f"(A B, B A, …; ≥ {cfg.pair_budget:g} s each), so that every window's ratio compares them "
         "in the same stretch of time; the median over windows is the figure (range: lowest and "
         "highest window). On a shared VM this is the steadier estimate of the two tables.", "",
         "| target | goal | median | range | | detail |", "|---|---|---:|---:|---|---|"]
    for name, rec in pair_results.items():
        what, goal, ok, scale, (na, nb, batch) = goals[name]
        if "error" in rec:
            L.append(f"| {what} | {goal} | — | — | — | failed: {rec['error'][:120]} |")
            continue
        med, lo, hi = paired.summary(paired.ratios(rec, scale))
        summary[f"paired: {name}"] = med
        if batch is None:  # flatness: per sample at each batch
            ta, tb = (1e6 * statistics.median(rec["a"]) / big, 1e6 * statistics.median(rec["b"]) / mid)
            detail = f"{us(tb)} → {us(ta)} µs/sample"
        else:
            unit = "µs" if batch == 1 else "µs/sample"
            ta, tb = (1e6 * statistics.median(rec[k]) / batch for k in ("a", "b"))
            detail = f"{nb} {us(tb)} {unit}, {na} {us(ta)} (medians)"
        if rec["extra"]:
            pk = [y / x for x, y in zip(*rec["extra"].values())]
            pm = statistics.median(pk)
            detail += (f"; the FMA peak's own speed-up in the same windows {ratio(pm)} "
                       f"(range {min(pk):.2f}–{max(pk):.2f}), FKB's ÷ it {med / pm:.2f}")
        L.append(f"| {what} | {goal} | {ratio(med)} | {lo:.2f}–{hi:.2f} | "
                 f"{'meets' if ok(med) else 'misses'} | {detail} |")
    L.append("")
    return L


def make_report(cfg, meta, results, failures, models, rss, pair_results=None) -> tuple[str, dict]:
    """results[(system, model, dtype, threads, batch)] = list of per-round seconds per call."""
    med = {k: statistics.median(v) for k, v in results.items() if v}

    def per_sample(system, model, dtype, threads, batch):
        if system == "loop":
            threads = cfg.threads[0]
        if system == "gemm":  # the bound with at most `threads` threads
            vs = [med[k] for k in ((system, model, dtype, t, batch) for t in cfg.threads
                                    if t <= threads) if k in med]
            v = min(vs) if vs else None
        else:
            v = med.get(("gemm" if system == "gemm-raw" else system, model, dtype, threads, batch))
        return None if v is None else 1e6 * v / batch

    L = []
    L.append(f"# FKB benchmark suite — {meta['date']}")
    L.append("")
    L.append(f"Machine: `lscpu` model name **{meta['cpu']}**, {meta['ncpu']} logical CPUs; "
             f"BLAS `{meta['blas']}`. Python {meta['python']}, numpy {meta['numpy']}, "
             f"keras {meta['keras']}, tensorflow {meta['tensorflow']}, onnxruntime {meta['ort']}, "
             f"FKB {meta['fkb']}: {meta['fkb_libs']}.")
    L.append(f"Load average (1/5/15 min) before {meta['load_before']}, after {meta['load_after']} "
             f"(well above 0 means other work shared the CPUs: figures are noisier); at the start "
             f"of each round {', '.join(meta['round_loads'])}. "
             f"Run: {cfg.rounds} round(s), {cfg.budget:g} s budget per cell per round, "
             f"≥ {cfg.min_samples} timed blocks per cell, blocks of ≥ {1e3 * cfg.block_target:g} ms; "
             f"{meta['elapsed']:.0f} s in all.")
    L.append("")

    # --- targets -------------------------------------------------------------------------------
    t1, t2 = cfg.threads[0], cfg.threads[-1]
    big = max(cfg.batches)
    mid = 512 if 512 in cfg.batches else None
    sp = lambda s, b, t, d="float32": per_sample(s, "spcam", d, t, b)  # noqa: E731
    rows = []
    summary = {}

    def rounds(num, den, scale=1.0):
        """The ratio num/den round by round (keys (system, model, dtype, threads, batch)): how
        much one run's noise moves it."""
        a, b = results.get(num, []), results.get(den, [])
        if not a or not b or len(a) != len(b) or len(a) < 2:
            return ""
        return " (rounds: " + ", ".join(f"{scale * x / y:.2f}" for x, y in zip(a, b)) + ")"

    def target(name, value, goal, ok, note=""):
        status = "—" if value is None else ("meets" if ok(value) else "misses")
        rows.append(f"| {name} | {goal} | {value if isinstance(value, str) else (ratio(value) if value is not None else '—')} | {status} | {note} |")
        summary[name] = value

    f_big2, f_big1 = sp("fkb-fortran", big, t2), sp("fkb-fortran", big, t1)
    o_big2 = sp("ort", big, t2)
    g_big2 = sp("gemm", big, t2)
    k_big2 = sp("keras-tf.function", big, t2)
    l_big = sp("loop", big, t1)
    div = lambda a, b: None if a is None or b is None or b == 0 else a / b  # noqa: E731
    target(f"SPCAM-like, batch {big}, {t2} threads: FKB-Fortran throughput / ORT's",
           div(o_big2, f_big2), "≥ 1.0×", lambda v: v >= 1.0,
           f"FKB {us(f_big2)} µs/sample, ORT {us(o_big2)}"
           + rounds(("ort", "spcam", "float32", t2, big), ("fkb-fortran", "spcam", "float32", t2, big)))
    target(f"SPCAM-like, batch {big}, {t2} threads: FKB-Fortran / GEMM bound",
           div(g_big2, f_big2), "≥ 0.85×", lambda v: v >= 0.85,
           f"GEMM chain {us(g_big2)} µs/sample"
           + rounds(("gemm", "spcam", "float32", t2, big), ("fkb-fortran", "spcam", "float32", t2, big)))
    target(f"SPCAM-like, batch {big}, {t2} threads: FKB-Fortran / Keras tf.function",
           div(k_big2, f_big2), "≥ 3×", lambda v: v >= 3, f"tf.function {us(k_big2)} µs/sample"
           + rounds(("keras-tf.function", "spcam", "float32", t2, big), ("fkb-fortran", "spcam", "float32", t2, big)))
    target(f"SPCAM-like, batch {big}, {t2} threads: FKB-Fortran / per-sample loop",
           div(l_big, f_big2), "≥ 15×", lambda v: v >= 15, f"loop {us(l_big)} µs/sample (1 thread)")
    o1 = per_sample("ort", "spcam", "float32", t1, 1)
    for s in ("fkb-fortran", "fkb-fortran-rank1", "fkb-python"):
        v = per_sample(s, "spcam", "float32", t1, 1)
        target(f"SPCAM-like, single sample, {t1} thread: {NAMES[s]} latency / ORT's",
               div(v, o1), "≤ 0.5×", lambda x: x <= 0.5, f"{NAMES[s]} {us(v)} µs, ORT {us(o1)} µs"
               + rounds((s, "spcam", "float32", t1, 1), ("ort", "spcam", "float32", t1, 1)))
    for s, goal in (("fkb-fortran", 0.3), ("fkb-fortran-rank1", 0.3), ("fkb-python", 3.0)):
        v = per_sample(s, "tiny", "float32", t1, 1)
        rows.append(f"| tiny, single sample, {t1} thread: {NAMES[s]} µs per call | ≤ {goal} µs | "
                    f"{us(v)} µs | {'—' if v is None else ('meets' if v <= goal else 'misses')} | |")
        summary[f"tiny single {s} us"] = v
    if mid:
        for t in cfg.threads:
            a, b = sp("fkb-fortran", mid, t), sp("fkb-fortran", big, t)
            ga, gb = sp("gemm", mid, t), sp("gemm", big, t)
            target(f"SPCAM-like, {t} thread(s): FKB-Fortran time/sample at {big} ÷ at {mid}",
                   div(b, a), "0.8–1.2×", lambda v: 0.8 <= v <= 1.2,
                   f"{us(a)} → {us(b)} µs; GEMM bound {us(ga)} → {us(gb)}"
                   + rounds(("fkb-fortran", "spcam", "float32", t, big), ("fkb-fortran", "spcam", "float32", t, mid),
                            mid / big))
    if t1 != t2:
        gs = div(sp("gemm-raw", big, t1), sp("gemm-raw", big, t2))
        target(f"SPCAM-like, batch {big}: FKB-Fortran {t2} threads speed-up over {t1}",
               div(f_big1, f_big2), "≥ 1.7×", lambda v: v >= 1.7,
               f"{us(f_big1)} → {us(f_big2)} µs; GEMM bound's own speed-up {ratio(gs)}"
               + rounds(("fkb-fortran", "spcam", "float32", t1, big), ("fkb-fortran", "spcam", "float32", t2, big)))
    for s in ("fkb-fortran", "fkb-c", "fkb-python"):
        v = med.get((s, "load10M", "float32", t1, 0))
        rows.append(f"| loading the 10M-parameter `.fkb` ({NAMES[s]}) | ≤ 0.1 s | "
                    f"{'—' if v is None else f'{v:.3f} s'} | {'—' if v is None else ('meets' if v <= 0.1 else 'misses')} | |")
        summary[f"load10M {s} s"] = v
    for t in cfg.threads:
        a = per_sample("fkb-python-train", "spcam", "float32", t, TRAIN_BATCH)
        b = per_sample("keras-train", "spcam", "float32", t, TRAIN_BATCH)
        target(f"training, SPCAM-like, Adam, batch {TRAIN_BATCH}, {t} thread(s): FKB-Python "
               "throughput / Keras'", div(b, a), "≥ 1.5×", lambda v: v >= 1.5,
               f"train_on_batch: FKB {us(a)} µs/sample, Keras {us(b)}"
               + rounds(("keras-train", "spcam", "float32", t, TRAIN_BATCH),
                        ("fkb-python-train", "spcam", "float32", t, TRAIN_BATCH)))
    L.append("## Issue 7 targets (float32)")
    L.append("")
    L.append("| target | goal | measured | | detail |")
    L.append("|---|---|---:|---|---|")
    L += rows
    L.append("")
    L.append("Ratios above 1 mean FKB is faster, except the latency ratio (FKB ÷ ORT, lower is "
             "better) and the flatness ratio. Training: `train_on_batch` with Adam and MSE from Python, "
             "FKB's `Network.compile('adam', 'mse')` against Keras' `model.compile(optimizer='adam', "
             "loss='mse')`, each on its own copy of the model. The no-allocation check is a test's "
             "job, not measured here.")
    L.append("")
    if pair_results:
        L += paired_section(cfg, pair_results, summary)

    # --- main tables ---------------------------------------------------------------------------
    cols = [s for s in SYSTEMS if s in cfg.systems_run]
    for d in cfg.dtypes:
        for t in cfg.threads:
            L.append(f"## {d}, {t} thread{'s' if t > 1 else ''}: µs per sample (median) · % of the GEMM bound")
            L.append("")
            L.append("| model | batch | " + " | ".join(NAMES[c] for c in cols) + " |")
            L.append("|---|---:|" + "---:|" * len(cols))
            for m in cfg.models:
                for b in cfg.batches:
                    g = per_sample("gemm", m, d, t, b)
                    cells = []
                    for c in cols:
                        v = per_sample(c, m, d, t, b)
                        if v is None:
                            lab = label(c, m, d, b)
                            cells.append("n/a" if (c == "ort" and models[(m, d)]["ort_error"]) or lab in failures else "—")
                        elif c == "gemm" or g is None:
                            cells.append(us(v))
                        else:
                            cells.append(f"{us(v)} · {100 * g / v:.0f}%")
                    L.append(f"| {m} | {b} | " + " | ".join(cells) + " |")
            L.append("")
    L.append("Models: " + "; ".join(f"**{m}** = {MODELS[m][0]}, {n_params(MODELS[m]):,} parameters, "
                                   f"{flops(MODELS[m]) / 1e6:.3g} MFLOP/sample" for m in cfg.models) + ".")
    L.append("`GEMM bound`: the fastest chain of sgemm/dgemm calls (sgemv/dgemv too for batch 1) of "
             "the model's shapes, no bias or activation, with at most that many threads (a "
             "2-thread system may use 1); the `%` after each figure is bound time ÷ system time.")
    shaped = [m for m in cfg.models if not is_dense(MODELS[m])]
    if shaped:
        L.append("For " + ", ".join(f"**{m}**" for m in shaped) + " the GEMM bound is the "
                 "model's GEMMs, each on its own operands: a Conv1D layer's im2col GEMM "
                 "C(filters, steps·B) = W(filters, kernel·C_in) · cols (the im2col copy itself, bias "
                 "and activation not counted); an LSTM layer's input projection of all steps as one "
                 "GEMM C(4·units, steps·B) = W · x, then one recurrent GEMM C(4·units, B) = U · h per "
                 "step (the gate nonlinearities and the cell update not counted), then the final "
                 "Dense. The `loop` is — for them: the original FKB had dense layers only, so there "
                 "is no per-sample baseline of its kind to reproduce.")
    L.append(f"`loop` is timed on min(batch, {cfg.loop_cols}) columns (its cost per sample does not "
             "depend on the batch) and only with 1 thread; the same figure stands in the 2-thread "
             "tables. `n/a`: the system cannot run that case (reason below); `—`: not measured.")
    for (m, d), info in models.items():  # which model, which dtype: the node names differ
        if info["ort_error"]:
            L.append(f"- ORT n/a for {m} {d}: {info['ort_error']}")
    for lab, msg in sorted(failures.items()):
        L.append(f"- failed: `{lab}`: {msg[:200]}")
    L.append("")

    # --- single sample ------------------------------------------------------------------------
    L.append(f"## Single sample (batch 1), float32, {t1} thread: µs per call")
    L.append("")
    sc = ["fkb-fortran", "fkb-fortran-rank1", "fkb-c", "fkb-python", "ort", "keras-tf.function",
          "keras-call", "keras-predict", "loop", "gemm"]
    sc = [c for c in sc if c.replace("-rank1", "") in cfg.systems_run]
    L.append("| model | " + " | ".join(NAMES[c] for c in sc) + " |")
    L.append("|---|" + "---:|" * len(sc))
    for m in cfg.models:
        L.append(f"| {m} | " + " | ".join(us(per_sample(c, m, "float32", t1, 1)) for c in sc) + " |")
    L.append("")

    # --- GEMM rate ----------------------------------------------------------------------------
    L.append("## The machine's GEMM rate (the BLAS FKB links) and FMA peak")
    L.append("")
    L.append("| dtype | threads | FMA peak | square " + str(cfg.square) + "³ GEMM | SPCAM-like chain, batch "
             f"{big} | FKB-Fortran on it (share of peak) |")
    L.append("|---|---:|---:|---:|---:|---:|")
    for d in cfg.dtypes:
        for t in cfg.threads:
            sq = med.get(("gemm-square", f"n{cfg.square}", d, t, cfg.square))
            sq_rate = None if sq is None else 2 * cfg.square ** 3 / sq / 1e9
            g = sp("gemm-raw", big, t, d)
            fv = sp("fkb-fortran", big, t, d)
            fl = flops(MODELS["spcam"])
            pk = meta.get("fma_peak", {}).get(f"{d}|{t}")
            share = "" if pk is None or fv is None else f" ({fl / fv / 1e3 / pk:.0%})"
            L.append(f"| {d} | {t} | {'—' if pk is None else f'{pk:.0f} GFLOP/s'} | "
                     f"{'—' if sq_rate is None else f'{sq_rate:.0f} GFLOP/s'} | "
                     f"{'—' if g is None else f'{fl / g / 1e3:.0f} GFLOP/s'} | "
                     f"{'—' if fv is None else f'{fl / fv / 1e3:.0f} GFLOP/s'}{share} |")
    L.append("")
    L.append("FMA peak: independent fused multiply-add chains in registers on every thread "
             "(benchmarks/c/bench_peak.c, best of 3), the ceiling no product can pass. Where FKB's "
             "own kernels run (AVX-512 CPUs), FKB can beat the BLAS chain, so the `GEMM bound` "
             "columns above, measured with BLAS, are a floor on what the cores can do rather than "
             "a ceiling; the share of the FMA peak is the stricter figure.")
    if meta.get("openblas_coretype"):
        L.append("")
        L.append(f"OpenBLAS chose its {meta['openblas_core']} kernels on this CPU (it does not know "
                 f"the model); the GEMM-bound worker ran with `OPENBLAS_CORETYPE="
                 f"{meta['openblas_coretype']}`, the kernels the CPU can run.")
    L.append("")

    # --- load and memory ----------------------------------------------------------------------
    L.append(f"## Loading the {BIG[0]} model ({n_params(BIG):,} parameters, float32), and peak memory")
    L.append("")
    L.append("| system | load (median) | peak RSS: SPCAM-like, batch 4096, float32, 1 thread |")
    L.append("|---|---:|---:|")
    for s, what in (("fkb-fortran", "`net%load`"), ("fkb-c", "`fkb_network_load` + free"),
                    ("fkb-python", "`fkb.load`"), ("ort", "`InferenceSession` (.onnx)"),
                    ("keras", "`keras.saving.load_model` (.keras)"), ("loop", ""), ("gemm", "")):
        v = med.get((s, "load10M", "float32", t1, 0))
        r = rss.get(s)
        name = {"keras": "Keras (tf.function)"}.get(s, NAMES.get(s, s))
        L.append(f"| {name} {what} | {'—' if v is None else f'{1e3 * v:.1f} ms'} | "
                 f"{'—' if r is None else f'{r / 1024:.0f} MiB'} |")
    L.append("")
    L.append("Peak RSS is `ru_maxrss` of a process that loads that one model and times batch 4096 "
             "(Python processes include the interpreter and the imported libraries).")
    L.append("")
    summary["rss_mib"] = {k: (None if v is None else v / 1024) for k, v in rss.items()}
    return "\n".join(L), summary


def plot(cfg, results, path_base: pathlib.Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = {k: statistics.median(v) for k, v in results.items() if v}
    written = []
    styles = {"fkb-fortran": ("C0", "o", "-"), "fkb-c": ("C9", "s", "--"),
              "fkb-python": ("C1", "^", "-"), "ort": ("C2", "D", "-"),
              "keras-tf.function": ("C3", "v", "-"), "keras-call": ("C4", "<", ":"),
              "keras-predict": ("C5", ">", ":"), "loop": ("C7", "x", "-."),
              "gemm": ("k", "", "--")}
    for d in cfg.dtypes:
        nm = len(cfg.models)
        fig, axes = plt.subplots(len(cfg.threads), nm, figsize=(4.2 * nm, 3.6 * len(cfg.threads)),
                                 squeeze=False)
        for i, t in enumerate(cfg.threads):
            for j, m in enumerate(cfg.models):
                ax = axes[i][j]
                for s in SYSTEMS:
                    pts = []
                    for b in cfg.batches:
                        if s == "gemm":  # the bound with at most t threads, as in the tables
                            vs = [med[k] for k in ((s, m, d, u, b) for u in cfg.threads if u <= t)
                                  if k in med]
                        else:
                            k = (s, m, d, cfg.threads[0] if s == "loop" else t, b)
                            vs = [med[k]] if k in med else []
                        if vs:
                            pts.append((b, 1e6 * min(vs) / b))
                    if pts:
                        c, mk, ls = styles[s]
                        ax.plot(*zip(*pts), color=c, marker=mk, linestyle=ls, label=NAMES[s], ms=4)
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
                ax.set_title(f"{m}, {d}, {t} thread{'s' if t > 1 else ''}", fontsize=9)
                ax.set_xlabel("batch size")
                ax.set_ylabel("µs per sample")
                ax.grid(True, which="both", alpha=0.3)
        legend = {}  # every system drawn in any panel (not every model runs everywhere)
        for ax in axes.flat:
            for hh, ll in zip(*ax.get_legend_handles_labels()):
                legend.setdefault(ll, hh)
        lab = [NAMES[s] for s in SYSTEMS if NAMES[s] in legend]
        h = [legend[x] for x in lab]
        fig.legend(h, lab, loc="lower center", ncol=max(1, len(lab)), fontsize=8)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        p = path_base.parent / f"{path_base.name}_{d}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(str(p))
    return written


# ----------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", default="build/prefix", help="FKB install prefix (make install)")
    ap.add_argument("--work", default="build/bench", help="scratch and output directory")
    ap.add_argument("--quick", action="store_true",
                    help="one round, float32 only, batches 1/512/4096, short budgets (~2 min)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    ap.add_argument("--budget", type=float, help="seconds per cell per round (default 0.04)")
    ap.add_argument("--batches", help="comma-separated batch sizes (default 1,8,64,512,4096)")
    ap.add_argument("--dtypes", help="float32,float64 (default both)")
    ap.add_argument("--threads", help="thread counts (default 1,2)")
    ap.add_argument("--systems", help="comma-separated workers to run (default all: "
                    + ",".join(WORKERS) + ")")
    ap.add_argument("--models", help="comma-separated models (default all: " + ",".join(MODELS) + ")")
    ap.add_argument("--no-train", action="store_true", help="skip the training throughput cells")
    ap.add_argument("--pair-windows", type=int,
                    help="alternating windows per paired target ratio (default 9, quick 3; 0: none)")
    a = ap.parse_args()

    cfg = argparse.Namespace()
    cfg.rounds = a.rounds or (1 if a.quick else 3)
    cfg.budget = a.budget if a.budget is not None else (0.02 if a.quick else 0.04)
    cfg.min_samples = 2 if a.quick else 3
    cfg.max_samples = 400
    cfg.block_target = 0.002
    cfg.batches = [int(x) for x in a.batches.split(",")] if a.batches else \
        ([1, 512, 4096] if a.quick else [1, 8, 64, 512, 4096])
    cfg.dtypes = a.dtypes.split(",") if a.dtypes else (["float32"] if a.quick else ["float32", "float64"])
    cfg.threads = [int(x) for x in a.threads.split(",")] if a.threads else [1, 2]
    cfg.loop_cols = 16 if a.quick else 64
    cfg.square = 1024
    cfg.train = not a.no_train
    cfg.pair_windows = a.pair_windows if a.pair_windows is not None else (3 if a.quick else 9)
    cfg.pair_budget = 0.05 if a.quick else 0.1
    workers = a.systems.split(",") if a.systems else list(WORKERS)
    cfg.models = a.models.split(",") if a.models else list(MODELS)
    bad = [m for m in cfg.models if m not in MODELS] + [w for w in workers if w not in WORKERS]
    if bad:
        sys.exit(f"unknown model(s)/system(s): {', '.join(bad)} (models: {', '.join(MODELS)}; "
                 f"systems: {', '.join(WORKERS)})")
    cfg.systems_run = [s for w in workers for s in WORKERS[w]]

    prefix = pathlib.Path(a.prefix).resolve()
    work = pathlib.Path(a.work).resolve()
    if " " in str(work):
        sys.exit(f"the work directory must not contain blanks: {work}")
    if not (prefix / "lib").is_dir() and not (prefix / "lib64").is_dir():
        sys.exit(f"no FKB installation under {prefix}: run `make install` first")
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    load_before = os.getloadavg()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    log("building the native programs ...")
    native = build_native(prefix, work)
    blas = (native / "blas_libraries.txt").read_text().strip() if (native / "blas_libraries.txt").exists() else "?"
    coretype, corename = openblas_coretype(blas)
    if coretype:
        log(f"OpenBLAS runs its {corename} kernels on this CPU: the GEMM bound asks for {coretype}")
    log("preparing the models (Keras -> .keras, .fkb, .onnx, loop weights) ...")
    models = prepare_models(work, cfg.dtypes, log, cfg.models)
    log("checking FKB-Fortran and FKB-C against Keras on the same inputs ...")
    check_native(native, work, models, log)

    jobdir = work / "jobs"
    jobdir.mkdir(exist_ok=True)
    results: dict = {}
    failures: dict = {}
    round_loads = []
    for r in range(cfg.rounds):
        round_loads.append(fmt_load(os.getloadavg()))
        order = workers[r % len(workers):] + workers[:r % len(workers)]
        thr = cfg.threads if r % 2 == 0 else cfg.threads[::-1]
        for t in thr:
            for w in order:
                if w == "loop" and t != cfg.threads[0]:
                    continue
                jobs = worker_jobs(w, t, cfg, models)
                if not jobs:
                    continue
                jf = jobdir / f"{w}_t{t}.{'json' if isinstance(jobs[0][1], dict) else 'txt'}"
                if isinstance(jobs[0][1], dict):
                    jf.write_text(json.dumps([dict(j, label=lab) for lab, j in jobs]))
                else:
                    jf.write_text("\n".join(j for _, j in jobs) + "\n")
                log(f"round {r + 1}/{cfg.rounds}, {t} thread(s): {w} ({len(jobs)} cells) ...")
                env = thread_env(t)
                if w == "gemm" and coretype:
                    env["OPENBLAS_CORETYPE"] = coretype
                out, err, rc, secs = run_worker(worker_command(w, t, jf, native, cfg), env,
                                                timeout=1800)
                res, failed = parse(out)
                for lab, v in res.items():
                    s, m, d, b = lab.split("|")
                    results.setdefault((s, m, d, t, int(b)), []).append(v)
                for lab, msg in failed.items():
                    failures[lab] = msg
                missing = [lab for lab, _ in jobs if lab not in res and lab not in failed]
                if rc != 0 or missing:
                    tail = " ".join((err.strip() or out.strip()).split())[-300:]
                    log(f"  {w} exited with {rc}; {len(missing)} cell(s) missing: {tail}")
                    for lab in missing:
                        failures[lab] = f"worker exited with {rc}: {tail}"
                log(f"  {secs:.1f} s")

    # The target ratios again, both sides alive and timed in alternating windows (paired.py).
    pair_results: dict = {}
    if cfg.pair_windows > 0:
        commands, pairs = target_pairs(cfg, models, native, workers)
        pair_results = paired.alternate(commands, pairs, cfg.pair_windows, log)

    # The cores' FMA peak, per thread count (the best of three runs: a peak is a maximum).
    peak: dict = {}
    for t in cfg.threads:
        for _ in range(3):
            out, err, rc, _ = run_worker([str(native / "bench_peak")], thread_env(t), timeout=120)
            for line in out.splitlines():
                f = line.split()
                if len(f) >= 3 and f[0] == "peak":
                    peak[(f[1], t)] = max(peak.get((f[1], t), 0.0), float(f[2]))

    # Peak memory: one process per system, SPCAM-like float32 batch 4096, 1 thread.
    log("peak memory ...")
    rss: dict = {}
    t = cfg.threads[0]
    mcfg = argparse.Namespace(**vars(cfg))
    mcfg.batches = [max(cfg.batches)]
    mcfg.dtypes = ["float32"]
    mcfg.rounds = 1
    mcfg.min_samples = 1
    mcfg.budget = 0.0
    mcfg.train = False
    mcfg.models = [m for m in cfg.models if m == "spcam" and ("spcam", "float32") in models]
    for w in workers if mcfg.models else []:
        jobs = [(lab, j) for lab, j in worker_jobs(w, -1, mcfg, models)
                if lab.split("|")[1] == "spcam" and lab.split("|")[0] in ("fkb-fortran", "fkb-c", "fkb-python", "ort", "keras-tf.function", "loop", "gemm")]
        if not jobs:
            continue
        jf = jobdir / f"rss_{w}.{'json' if isinstance(jobs[0][1], dict) else 'txt'}"
        if isinstance(jobs[0][1], dict):
            jf.write_text(json.dumps([dict(j, label=lab) for lab, j in jobs]))
        else:
            jf.write_text("\n".join(j for _, j in jobs) + "\n")
        rss[w] = run_for_rss(worker_command(w, t, jf, native, mcfg), thread_env(t), native, 900)

    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(), "ncpu": os.cpu_count(), "blas": blas,
        "python": platform.python_version(), "numpy": np.__version__,
        "load_before": fmt_load(load_before), "load_after": fmt_load(os.getloadavg()),
        "elapsed": time.perf_counter() - t_start, "round_loads": round_loads,
        "fma_peak": {f"{d}|{t}": v for (d, t), v in peak.items()},
        "openblas_core": corename, "openblas_coretype": coretype,
    }
    meta["fkb_libs"] = fkb_libraries(prefix)
    for mod, key in (("keras", "keras"), ("tensorflow", "tensorflow"), ("onnxruntime", "ort"), ("fkb", "fkb")):
        try:
            meta[key] = getattr(__import__(mod), "__version__", "?")
        except ImportError:
            meta[key] = "not installed"
    report, summary = make_report(cfg, meta, results, failures, models, rss, pair_results)
    try:
        pngs = plot(cfg, results, work / "bench")
        report += "\nPlots: " + ", ".join(f"`{p}`" for p in pngs) + "\n"
    except ImportError as e:  # matplotlib missing: the tables still stand
        pngs = []
        report += f"\nNo plot: {e} (pip install -r requirements-bench.txt)\n"
    (work / "results.md").write_text(report)
    (work / "results.json").write_text(json.dumps({
        "meta": meta, "config": {k: v for k, v in vars(cfg).items()},
        "results": [{"system": k[0], "model": k[1], "dtype": k[2], "threads": k[3], "batch": k[4],
                     "seconds_per_call_per_round": v} for k, v in sorted(results.items())],
        "failures": failures, "summary": summary, "paired": pair_results,
        "checks": {f"{m}/{d}": models[(m, d)]["check"] for (m, d) in models}}, indent=1))
    print(report)
    print(f"(written: {work / 'results.md'}, {work / 'results.json'}, {', '.join(pngs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
