#!/usr/bin/env python3
"""The FKB case study at laptop scale: Keras emulators of subgrid physics, run online in Fortran.

1. Build the Fortran programs of examples/l96 against the installed FKB (find_package(FKB)).
2. Run the two-scale Lorenz-96 truth (l96_truth): training, validation and test segments.
3. Train N Keras candidates (depth, width, activation, optimizer, learning rate, batch size,
   input noise drawn with a fixed seed) mapping a stencil of X to the subgrid tendency U_k;
   record each one's offline validation error.
4. Convert them all with one `fkb convert` command.
5. Run each one online in the one-scale Fortran model (l96_online), and the ensemble of the k
   best (by offline error): forecast error, divergence, blow-ups, climate, time per step.
6. Write results.csv / results.md / findings.md and PNG figures; print the table.

    python examples/l96/run_case_study.py --prefix build/prefix --work build/l96 [--candidates N]
"""
import argparse
import csv
import os
import shutil
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
K = 8                      # slow variables
STENCIL = 5                # network inputs: X_{k-2} .. X_{k+2}
OPTIMIZERS = ("sgd", "adam", "rmsprop")
OPT_COLORS = {"sgd": "tab:red", "adam": "tab:blue", "rmsprop": "tab:green"}
LEADS = ("0.2", "0.5", "1", "2", "4")
ONLINE_ERROR = "rmse_lead_1"   # the headline online error: forecast RMSE at 1 model time unit

# Lengths in model time units (MTU); 1 MTU ~ 5 e-folding times of the error.
SETTINGS = {
    "default": dict(spinup=10, train=100, valid=20, test=300, train_rows=40000, epochs=10,
                    n_ic=64, t_run=15),
    "quick": dict(spinup=2, train=10, valid=4, test=30, train_rows=4000, epochs=2,
                  n_ic=4, t_run=6),
}


def log(msg):
    print(msg, flush=True)


def run(cmd, quiet=False, **kw):
    log("$ " + " ".join(str(c) for c in cmd))
    if quiet:
        r = subprocess.run(cmd, capture_output=True, text=True, **kw)
        if r.returncode != 0:
            sys.stderr.write(r.stdout + r.stderr)
            raise subprocess.CalledProcessError(r.returncode, cmd)
        return r
    return subprocess.run(cmd, check=True, **kw)


def tool_env():
    """PATH with the venv's cmake/ninja first; one thread per Fortran process."""
    bin_dir = os.path.dirname(sys.executable)
    return dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"],
                OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def build_fortran(prefix, build_dir, fkb_dir=None):
    """Configures and builds examples/l96 against the FKB installed under prefix (or the CMake
    package in fkb_dir, e.g. FKB's build tree)."""
    env = tool_env()
    where = f"-DFKB_DIR={os.path.abspath(fkb_dir)}" if fkb_dir else \
        f"-DCMAKE_PREFIX_PATH={os.path.abspath(prefix)}"
    run(["cmake", "-S", HERE, "-B", build_dir, "-G", "Ninja", where], quiet=True, env=env)
    run(["cmake", "--build", build_dir], quiet=True, env=env)
    return {name: os.path.join(build_dir, name) for name in ("l96_truth", "l96_online")}


def read_meta(data_dir):
    meta = {}
    with open(os.path.join(data_dir, "meta.txt")) as f:
        for line in f:
            key, _, value = line.partition(" ")
            meta[key.strip()] = value.strip()
    return meta


def load_segment(data_dir, name):
    x = np.fromfile(os.path.join(data_dir, f"{name}_x.bin"), dtype="<f8").reshape(-1, K)
    u = np.fromfile(os.path.join(data_dir, f"{name}_u.bin"), dtype="<f8").reshape(-1, K)
    return x, u


def stencil_rows(x, u, every=1):
    """Rows (time*site, STENCIL) of [X_{k-2}, ..., X_{k+2}] (periodic) and U_k: the same
    order as l96_core's stencil()."""
    x, u = x[::every], u[::every]
    r = STENCIL // 2
    cols = [np.roll(x, -o, axis=1) for o in range(-r, r + 1)]   # cols[i][:, k] = X_{k+i-r}
    inputs = np.stack(cols, axis=-1).reshape(-1, STENCIL)
    return inputs.astype("float32"), u.reshape(-1, 1).astype("float32")


def sample_candidates(n, seed):
    """N hyper-parameter sets; optimizers in turn (balanced), the rest drawn at random."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append(dict(
            name=f"cand_{i:03d}",
            optimizer=OPTIMIZERS[i % len(OPTIMIZERS)],
            lr=float(f"{10 ** rng.uniform(-4, -2):.2g}"),
            batch=int(rng.choice([32, 64, 128, 256, 512])),
            depth=int(rng.integers(1, 5)),
            width=int(rng.choice([16, 32, 64, 128])),
            activation=str(rng.choice(["relu", "tanh", "elu", "silu", "selu"])),
            noise=float(rng.choice([0.0, 0.05, 0.1, 0.2, 0.3])),
            seed=int(seed * 1000 + i),
        ))
    return out


def train_candidate(hp, data, epochs, keras):
    """Trains one candidate on standardised targets; returns the model to export (inputs in
    physical units -> U_k in physical units), its offline validation RMSE and history."""
    keras.utils.set_random_seed(hp["seed"])
    (xt, ut), (xv, uv), (xm, xvar, um, uvar) = data
    norm = keras.layers.Normalization(mean=xm, variance=xvar, name="x_norm")
    hidden = [keras.layers.Dense(hp["width"], activation=hp["activation"], name=f"dense_{i}")
              for i in range(hp["depth"])]
    head = keras.layers.Dense(1, name="u_std")
    noise = [keras.layers.GaussianNoise(hp["noise"], seed=hp["seed"])] if hp["noise"] else []
    train_model = keras.Sequential([keras.Input((STENCIL,)), norm, *noise, *hidden, head])
    opt = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
           "rmsprop": keras.optimizers.RMSprop}[hp["optimizer"]](learning_rate=hp["lr"])
    train_model.compile(optimizer=opt, loss="mse")
    zt = (ut - um) / np.sqrt(uvar)
    zv = (uv - um) / np.sqrt(uvar)
    hist = train_model.fit(xt, zt, batch_size=hp["batch"], epochs=epochs, verbose=0,
                           validation_data=(xv, zv), shuffle=True)
    # The exported model: same layers (no noise at inference), plus the inverse scaling.
    model = keras.Sequential([keras.Input((STENCIL,)), norm, *hidden, head,
                              keras.layers.Normalization(mean=um, variance=uvar, invert=True,
                                                         name="u_denorm")], name=hp["name"])
    pred = np.asarray(model(xv), dtype=np.float64)   # (a direct call: no retracing warnings)
    rmse = float(np.sqrt(np.mean((pred - uv) ** 2)))
    return model, rmse, pred, hist.history


def read_online(prefix):
    res = {}
    with open(prefix + ".txt") as f:
        for line in f:
            key, value = line.split()
            res[key] = float(value)
    res["rmse_curve"] = np.fromfile(prefix + "_rmse.bin", dtype="<f8")
    res["traj"] = np.fromfile(prefix + "_traj.bin", dtype="<f8").reshape(-1, K)
    a = np.fromfile(prefix + "_acf.bin", dtype="<f8").reshape(3, -1)
    res["acf_lag"], res["acf_model"], res["acf_truth"] = a
    p = np.fromfile(prefix + "_pdf.bin", dtype="<f8")
    nb = (p.size - 1) // 3
    res["pdf_edges"], res["pdf_model"], res["pdf_truth"] = p[:nb + 1], p[nb + 1:2 * nb + 1], \
        p[2 * nb + 1:]
    return res


def ranks(a):
    """Ranks 1..n, ties averaged."""
    a = np.asarray(a, dtype=float)
    order = np.argsort(a, kind="mergesort")
    r = np.empty(len(a))
    r[order] = np.arange(1, len(a) + 1)
    for v in np.unique(a):
        tie = a == v
        r[tie] = r[tie].mean()
    return r


def spearman(a, b, n_perm=10000, seed=0):
    """Spearman rank correlation over the finite pairs and a two-sided permutation p-value."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3:
        return float("nan"), float("nan"), len(a)
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan"), float("nan"), len(a)
    rho = float(np.corrcoef(ra, rb)[0, 1])
    rng = np.random.default_rng(seed)
    perm = np.array([np.corrcoef(ra, rng.permutation(rb))[0, 1] for _ in range(n_perm)])
    p = float((np.sum(np.abs(perm) >= abs(rho) - 1e-12) + 1) / (n_perm + 1))
    return rho, p, len(a)


def optimizer_effect(opts, values, n_perm=10000, seed=0):
    """Spread of the per-optimizer medians (max - min) and its permutation p-value: does the
    optimizer label explain the online error more than a random relabelling would?"""
    opts, values = np.asarray(opts), np.asarray(values, float)
    ok = np.isfinite(values)
    opts, values = opts[ok], values[ok]
    groups = [g for g in OPTIMIZERS if np.any(opts == g)]
    if len(groups) < 2:
        return float("nan"), float("nan")

    def stat(labels):
        med = [np.median(values[labels == g]) for g in groups]
        return max(med) - min(med)

    s = stat(opts)
    rng = np.random.default_rng(seed)
    perm = np.array([stat(rng.permutation(opts)) for _ in range(n_perm)])
    return float(s), float((np.sum(perm >= s - 1e-12) + 1) / (n_perm + 1))


def optimizer_given_offline(opts, offline, values, key_higher_is_better=False):
    """Does the optimizer matter online beyond what the offline error predicts? Per model, the
    rank of its online measure minus the rank of its offline error (robust to the few very
    bad models); per-optimizer medians of that, and the spread of those medians with its
    permutation p-value (optimizer_effect). Negative: better online than its offline rank."""
    off, y = np.asarray(offline, float), np.asarray(values, float)
    opts = np.asarray(opts)
    ok = np.isfinite(off) & np.isfinite(y)
    if ok.sum() < 3:
        return {}, float("nan"), float("nan")
    if key_higher_is_better:
        y = -y      # ranks of "online badness", so that negative always means better online
    res = ranks(y[ok]) - ranks(off[ok])
    med = {g: float(np.median(res[opts[ok] == g])) for g in OPTIMIZERS if np.any(opts[ok] == g)}
    return (med, *optimizer_effect(opts[ok], res))


def hellinger_floor(x_test, edges):
    """Hellinger distance between the PDFs of X in the two halves of the truth's test
    segment, with the host model's bins: what sampling alone gives."""
    half = x_test.shape[0] // 2
    p, q = (np.histogram(a, bins=edges)[0] / a.size for a in (x_test[:half], x_test[half:]))
    return float(np.sqrt(max(0.0, 1 - np.sum(np.sqrt(p * q)))))


def fmt(v, nd=3):
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "nan"
    if isinstance(v, (int, np.integer)):
        return str(v)
    return f"{v:.{nd}g}"


COLUMNS = [
    ("model", "model"), ("optimizer", "opt"), ("lr", "lr"), ("batch", "batch"),
    ("depth", "depth"), ("width", "width"), ("activation", "act"), ("noise", "noise"),
    ("params", "params"), ("offline_rmse", "offline RMSE(U)"),
    ("rmse_lead_0.5", "RMSE(X) t=0.5"), ("rmse_lead_1", "RMSE(X) t=1"),
    ("rmse_lead_2", "RMSE(X) t=2"), ("divergence_time_mean", "t_div"),
    ("blowups", "blow-ups"), ("hellinger", "Hellinger"), ("acf_rmse", "ACF err"),
    ("nn_us_per_step", "NN us/step"), ("rest_us_per_step", "rest us/step"),
    ("train_s", "train s"),
]


def write_tables(rows, work):
    csv_path = os.path.join(work, "results.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([c for c, _ in COLUMNS])
        for r in rows:
            w.writerow([r.get(c, "") for c, _ in COLUMNS])
    md_path = os.path.join(work, "results.md")
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c, "")) for c, _ in COLUMNS) + " |")
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return csv_path, md_path, "\n".join(lines)


def make_figures(rows, ens, online, truth_test, dt_out, stats, fig_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(fig_dir, exist_ok=True)
    paths = []
    off = np.array([r["offline_rmse"] for r in rows])

    # 1. Offline vs online error, coloured by optimizer.
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, key, label in ((axes[0], ONLINE_ERROR, "online forecast RMSE of X at t = 1 MTU"),
                           (axes[1], "hellinger", "online climate: Hellinger distance, PDF of X")):
        for opt in OPTIMIZERS:
            sel = [r for r in rows if r["optimizer"] == opt]
            if sel:
                ax.scatter([r["offline_rmse"] for r in sel], [r[key] for r in sel],
                           c=OPT_COLORS[opt], label=opt, s=36, edgecolors="k", linewidths=0.4)
        if ens is not None:
            ax.scatter([ens["offline_rmse"]], [ens[key]], marker="*", s=220, c="gold",
                       edgecolors="k", label=ens["model"])
        rho, p, n = stats[key]
        ax.set_title(f"Spearman rho = {rho:.2f} (p = {p:.2g}, n = {n})")
        ax.set_xlabel("offline validation RMSE of U")
        ax.set_ylabel(label)
        if np.all(off[np.isfinite(off)] > 0) and np.nanmax(off) / np.nanmin(off) > 5:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Offline validation error vs online performance (one point per emulator)")
    fig.tight_layout()
    paths.append(os.path.join(fig_dir, "offline_vs_online.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    # 2. Stability per optimizer.
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
    rng = np.random.default_rng(0)
    for j, (key, label) in enumerate((("divergence_time_mean", "mean time to divergence (MTU)"),
                                      ("blowup_frac", "fraction of runs that blew up"),
                                      (ONLINE_ERROR, "forecast RMSE of X at t = 1 MTU"),
                                      ("hellinger", "Hellinger distance, PDF of X"))):
        ax = axes[j]
        for i, opt in enumerate(OPTIMIZERS):
            vals = np.array([r[key] for r in rows if r["optimizer"] == opt], float)
            if vals.size == 0:
                continue
            ax.scatter(i + rng.uniform(-0.12, 0.12, vals.size), vals, c=OPT_COLORS[opt],
                       s=30, edgecolors="k", linewidths=0.4)
            ax.hlines(np.nanmedian(vals), i - 0.3, i + 0.3, colors="k")
        ax.set_xticks(range(len(OPTIMIZERS)), OPTIMIZERS)
        ax.set_ylabel(label)
        if key == "hellinger" and np.isfinite(stats.get("hellinger_floor", np.nan)):
            ax.axhline(stats["hellinger_floor"], color="gray", ls="--", lw=1,
                       label="truth vs truth (sampling floor)")
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Online stability and skill per optimizer (dots: emulators, bars: medians)")
    fig.tight_layout()
    paths.append(os.path.join(fig_dir, "stability_by_optimizer.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    # 3. Truth vs best vs worst: trajectory, forecast error, climate PDF.
    ranked = sorted(rows, key=lambda r: r[ONLINE_ERROR])
    best, worst = ranked[0], ranked[-1]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    first = online[best["model"]]
    nfc = first["traj"].shape[0]
    t = np.arange(nfc) * dt_out
    i0 = 0   # the first initial condition is the start of the test segment
    axes[0].plot(t, truth_test[i0:i0 + nfc, 0], "k", lw=2, label="truth (two-scale)")
    shown = [(best, "tab:blue", "best"), (worst, "tab:red", "worst")]
    if ens is not None:
        shown.append((ens, "goldenrod", "ensemble"))
    for r, c, what in shown:
        o = online[r["model"]]
        axes[0].plot(t, o["traj"][:, 0], c=c, lw=1.2, label=f"{what}: {r['model']}")
        axes[1].plot(np.arange(o["rmse_curve"].size) * dt_out, o["rmse_curve"], c=c,
                     label=f"{what}: {r['model']}")
        centers = 0.5 * (o["pdf_edges"][1:] + o["pdf_edges"][:-1])
        axes[2].plot(centers, o["pdf_model"] / np.diff(o["pdf_edges"]), c=c,
                     label=f"{what} (H = {r['hellinger']:.3f})")
    centers = 0.5 * (first["pdf_edges"][1:] + first["pdf_edges"][:-1])
    axes[2].plot(centers, first["pdf_truth"] / np.diff(first["pdf_edges"]), "k", lw=2,
                 label="truth")
    axes[1].axhline(first["truth_sigma"], color="gray", ls="--", lw=1,
                    label="climate sigma (divergence)")
    axes[0].set_xlabel("time (MTU)")
    axes[0].set_ylabel("X_1")
    axes[0].set_title("X_1 from the first initial condition")
    axes[1].set_xlabel("lead time (MTU)")
    axes[1].set_ylabel("RMSE of X")
    axes[1].set_title("forecast error, mean over initial conditions")
    support = centers[first["pdf_truth"] > 0]
    axes[2].set_xlim(support.min() - 3, support.max() + 3)
    axes[2].set_xlabel("X")
    axes[2].set_ylabel("probability density")
    axes[2].set_title("climate: PDF of X")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(os.path.join(fig_dir, "truth_best_worst.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", default=os.path.join(ROOT, "build", "prefix"),
                    help="where FKB is installed (default: build/prefix)")
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "l96"),
                    help="output folder (default: build/l96)")
    ap.add_argument("--fkb-dir", default=None,
                    help="FKB's CMake package folder instead of --prefix (e.g. the build tree "
                         "build/cmake)")
    ap.add_argument("--candidates", type=int, default=None,
                    help="number of Keras candidates (default 16; 120 = the paper's scale)")
    ap.add_argument("--quick", action="store_true",
                    help="2 candidates, short runs (the test suite's version)")
    ap.add_argument("--ensemble", type=int, default=None,
                    help="size k of the ensemble of the k best (by offline error); default 3")
    ap.add_argument("--seed", type=int, default=1, help="seed of the whole study")
    args = ap.parse_args(argv)
    cfg = SETTINGS["quick" if args.quick else "default"]
    n_cand = args.candidates or (2 if args.quick else 16)
    k_best = args.ensemble if args.ensemble is not None else (2 if args.quick else 3)
    k_best = min(k_best, n_cand)
    work = os.path.abspath(args.work)
    if args.fkb_dir:
        if not os.path.isfile(os.path.join(args.fkb_dir, "FKBConfig.cmake")):
            sys.exit(f"no FKBConfig.cmake in {args.fkb_dir}")
    elif not os.path.isfile(os.path.join(args.prefix, "lib", "cmake", "FKB", "FKBConfig.cmake")):
        sys.exit(f"FKB is not installed under {args.prefix} (run `make install`)")
    t_start = time.time()
    from tqdm import tqdm

    for sub in ("data", "keras", "fkb", "online", "figures"):
        shutil.rmtree(os.path.join(work, sub), ignore_errors=True)
        os.makedirs(os.path.join(work, sub))

    log("== 1. Build the Fortran truth and host models against the installed FKB")
    exe = build_fortran(args.prefix, os.path.join(work, "fortran"), args.fkb_dir)

    log("== 2. Truth: two-scale Lorenz-96 (K=8, J=32, F=20, h=1, b=10, c=10), RK4 dt=0.001")
    data_dir = os.path.join(work, "data")
    t0 = time.time()
    run([exe["l96_truth"], "run", data_dir, *(str(cfg[k]) for k in ("spinup", "train", "valid",
                                                                     "test")), str(args.seed)])
    meta = read_meta(data_dir)
    dt_out = float(meta["dt_out"])
    x_tr, u_tr = load_segment(data_dir, "train")
    x_va, u_va = load_segment(data_dir, "valid")
    x_te, _ = load_segment(data_dir, "test")
    every = max(1, (x_tr.shape[0] * K) // cfg["train_rows"])
    xt, ut = stencil_rows(x_tr, u_tr, every)
    xv, uv = stencil_rows(x_va, u_va, max(1, every // 2))
    scal = (xt.mean(0), xt.var(0), float(ut.mean()), float(ut.var()))
    data = ((xt, ut), (xv, uv), scal)
    log(f"   {time.time() - t0:.1f} s; {xt.shape[0]} training rows, {xv.shape[0]} validation "
        f"rows; X mean {x_te.mean():.2f} sd {x_te.std():.2f}, U mean {ut.mean():.2f} "
        f"sd {ut.std():.2f}")

    log(f"== 3. Train {n_cand} Keras candidates ({cfg['epochs']} epochs each)")
    import keras

    cands = sample_candidates(n_cand, args.seed)
    rows, val_preds = [], {}
    bar = tqdm(cands, desc="training", unit="model", file=sys.stdout)
    for hp in bar:
        t0 = time.time()
        model, rmse, pred, _ = train_candidate(hp, data, cfg["epochs"], keras)
        model.save(os.path.join(work, "keras", hp["name"] + ".keras"))
        val_preds[hp["name"]] = pred
        rows.append(dict(model=hp["name"], optimizer=hp["optimizer"], lr=hp["lr"],
                         batch=hp["batch"], depth=hp["depth"], width=hp["width"],
                         activation=hp["activation"], noise=hp["noise"],
                         params=int(model.count_params()), offline_rmse=rmse,
                         train_s=round(time.time() - t0, 1)))
        bar.set_postfix(model=hp["name"], opt=hp["optimizer"], val_rmse=f"{rmse:.3f}")
    bar.close()

    log("== 4. Convert every candidate with one `fkb convert` command")
    keras_files = [os.path.join(work, "keras", r["model"] + ".keras") for r in rows]
    fkb_dir = os.path.join(work, "fkb")
    run([sys.executable, "-m", "fkb", "convert", *keras_files, "-o", fkb_dir])

    log(f"== 5. Run every emulator online in the Fortran one-scale model ({cfg['n_ic']} initial "
        f"conditions x {cfg['t_run']} MTU)")
    env = tool_env()
    online = {}

    def run_online(name, models):
        prefix = os.path.join(work, "online", name)
        r = subprocess.run([exe["l96_online"], data_dir, prefix, str(cfg["n_ic"]),
                            str(cfg["t_run"]), *models], capture_output=True, text=True,
                           env=env)
        if r.returncode != 0:
            raise RuntimeError(f"l96_online {name} failed:\n{r.stdout}{r.stderr}")
        online[name] = read_online(prefix)
        return online[name]

    for r in tqdm(rows, desc="online", unit="model", file=sys.stdout):
        res = run_online(r["model"], [os.path.join(fkb_dir, r["model"] + ".fkb")])
        r.update({k: res[k] for k in res if not isinstance(res[k], np.ndarray)})
    ens = None
    finite = [r for r in rows if np.isfinite(r["offline_rmse"])]
    if k_best >= 2 and len(finite) >= k_best:
        best_k = sorted(finite, key=lambda r: r["offline_rmse"])[:k_best]
        name = f"ensemble_{k_best}"
        log(f"   ensemble of the {k_best} best by offline error: "
            + ", ".join(r["model"] for r in best_k))
        res = run_online(name, [os.path.join(fkb_dir, r["model"] + ".fkb") for r in best_k])
        pred = np.mean([val_preds[r["model"]] for r in best_k], axis=0)
        ens = dict(model=name, optimizer="+".join(sorted({r["optimizer"] for r in best_k})),
                   lr="", batch="", depth="", width="", activation="", noise="",
                   params=sum(r["params"] for r in best_k),
                   offline_rmse=float(np.sqrt(np.mean((pred - uv) ** 2))), train_s="",
                   members=[r["model"] for r in best_k])
        ens.update({k: res[k] for k in res if not isinstance(res[k], np.ndarray)})
    for r in rows + ([ens] if ens else []):
        r["blowups"] = f"{int(r['blowup_runs'])}/{int(r['n_ic'])}"
        r["blowup_frac"] = r["blowup_runs"] / r["n_ic"]

    log("== 6. Analysis")
    stats = {key: spearman([r["offline_rmse"] for r in rows], [r[key] for r in rows])
             for key in (ONLINE_ERROR, "hellinger", "divergence_time_mean", "acf_rmse")}
    stats["hellinger_floor"] = hellinger_floor(x_te, online[rows[0]["model"]]["pdf_edges"])
    opt_stats = {key: optimizer_effect([r["optimizer"] for r in rows], [r[key] for r in rows])
                 for key in ("offline_rmse", ONLINE_ERROR, "divergence_time_mean",
                             "hellinger")}
    table_rows = sorted(rows, key=lambda r: r["offline_rmse"]) + ([ens] if ens else [])
    csv_path, md_path, table = write_tables(table_rows, work)
    figs = make_figures(rows, ens, online, x_te, dt_out, stats, os.path.join(work, "figures"))

    # Findings, in numbers.
    f = []
    f.append(f"Candidates: {n_cand}; online: {cfg['n_ic']} initial conditions x "
             f"{cfg['t_run']} MTU each (dt = {dt_out}); truth X sd = "
             f"{rows[0]['truth_sigma']:.3f}.")
    f.append("Finding 1 (offline error vs online performance), Spearman rank correlation of "
             "the offline validation RMSE with:")
    names = {ONLINE_ERROR: "forecast RMSE at 1 MTU", "hellinger": "Hellinger distance",
             "divergence_time_mean": "mean time to divergence", "acf_rmse": "ACF error"}
    for key in names:
        rho, p, n = stats[key]
        f.append(f"  - {names[key]}: rho = {rho:.3f}, permutation p = {p:.3g} (n = {n})")
    f.append(f"  (sampling floor of the Hellinger distance: {stats['hellinger_floor']:.3f}, "
             "between the two halves of the truth's test segment)")
    f.append("Finding 2 (optimizer), per optimizer: n, median offline RMSE, median forecast "
             "RMSE at 1 MTU, median time to divergence, median Hellinger, runs blown up:")
    for opt in OPTIMIZERS:
        sel = [r for r in rows if r["optimizer"] == opt]
        if not sel:
            continue

        def med(key, sel=sel):
            return float(np.nanmedian([r[key] for r in sel]))

        f.append(f"  - {opt}: n = {len(sel)}, {med('offline_rmse'):.3f}, "
                 f"{med(ONLINE_ERROR):.3f}, {med('divergence_time_mean'):.3f}, "
                 f"{med('hellinger'):.3f}, "
                 f"{int(sum(r['blowup_runs'] for r in sel))}/{int(sum(r['n_ic'] for r in sel))}")
    f.append("  spread of the per-optimizer medians (max - min) and permutation p-value:")
    for key, (s, p) in opt_stats.items():
        f.append(f"  - {key}: {s:.3f}, p = {p:.3g}")
    f.append("  given the offline error (rank of the online measure minus rank of the offline "
             "RMSE, per model): median per optimizer; spread, permutation p:")
    for key in (ONLINE_ERROR, "divergence_time_mean", "hellinger"):
        med, spread, p = optimizer_given_offline([r["optimizer"] for r in rows],
                                                 [r["offline_rmse"] for r in rows],
                                                 [r[key] for r in rows],
                                                 key == "divergence_time_mean")
        f.append(f"  - {key}: " + ", ".join(f"{g} {v:+.1f}" for g, v in med.items())
                 + f"; {spread:.1f}, p = {p:.3g}")
    if ens:
        best = min(rows, key=lambda r: r[ONLINE_ERROR])
        f.append(f"Ensemble of the {k_best} best by offline error ({', '.join(ens['members'])}): "
                 f"offline RMSE {ens['offline_rmse']:.3f}, forecast RMSE at 1 MTU "
                 f"{ens[ONLINE_ERROR]:.3f}, Hellinger {ens['hellinger']:.3f}, time to "
                 f"divergence {ens['divergence_time_mean']:.3f}; best single model online "
                 f"{best['model']}: {best[ONLINE_ERROR]:.3f}.")
    nn = np.median([r["nn_us_per_step"] for r in rows])
    rest = np.median([r["rest_us_per_step"] for r in rows])
    f.append(f"Cost per step (median over models): network {nn:.2f} us, rest of the step "
             f"{rest:.2f} us ({100 * nn / (nn + rest):.0f}% in the network).")
    f.append(f"Wall time: {time.time() - t_start:.0f} s.")
    findings = "\n".join(f)
    with open(os.path.join(work, "findings.md"), "w") as fh:
        fh.write(findings + "\n")

    log("\n" + table + "\n")
    log(findings)
    log("\nWritten:")
    for p in [csv_path, md_path, os.path.join(work, "findings.md"), *figs]:
        log(f"  {os.path.relpath(p)}")
    log("Swap in your own model: " + os.path.relpath(exe["l96_online"]) + " "
        + os.path.relpath(data_dir) + " OUTPREFIX N_IC T_RUN your_model.fkb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
