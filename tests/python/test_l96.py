"""The Lorenz-96 case study (examples/l96).

* The Fortran two-scale integrator (l96_truth step) against an independent numpy
  implementation of the same equations, a few RK4 steps from the same state.
* The Fortran host model (l96_online) with a known linear network against numpy: the stencil
  order, the one batched call per step and RK4 with U held fixed.
* The whole pipeline, `run_case_study.py --quick`, end to end.

They build the Fortran programs against the installed package (build/prefix, `make install`)
or, without it, against FKB's build tree (build/cmake, what `make test` builds); they are
skipped when neither exists.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
PREFIX = os.path.join(ROOT, "build", "prefix")
BUILD_TREE = os.path.join(ROOT, "build", "cmake")
SCRIPT = os.path.join(ROOT, "examples", "l96", "run_case_study.py")

# The truth model's parameters (examples/l96/l96_core.f90).
K, J, F, H, B, C = 8, 32, 20.0, 1.0, 10.0, 10.0

# Both sides compute in float64; the operations may be ordered differently, so they may differ
# by rounding (observed here: bit-identical, 0, after 10 two-scale steps and 40 host steps).
# |fortran - numpy| <= RTOL * max(1, |numpy|) with RTOL = 1e-11 allows rounding amplified by
# the chaos over these short runs, while a wrong term, sign or index moves the state by more
# than 1e-6 in one step.
RTOL = 1e-11


def _close(got, ref, rtol=RTOL):
    err = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
    assert np.all(np.isfinite(got)), "non-finite values"
    assert err.max() <= rtol, f"max |a-b|/max(1,|b|) = {err.max():.3e} > {rtol:g}"


def _case_study():
    spec = importlib.util.spec_from_file_location("l96_case_study", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fkb_location():
    """Command-line arguments of run_case_study.py that point at FKB, or None. The build
    tree first: `make test` has just built it, while an installed copy may be older."""
    if os.path.isfile(os.path.join(BUILD_TREE, "FKBConfig.cmake")):
        return ["--fkb-dir", BUILD_TREE]
    if os.path.isfile(os.path.join(PREFIX, "lib", "cmake", "FKB", "FKBConfig.cmake")):
        return ["--prefix", PREFIX]
    return None


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    where = _fkb_location()
    if where is None:
        pytest.skip("FKB is neither installed under build/prefix nor built in build/cmake")
    fkb_dir = where[1] if where[0] == "--fkb-dir" else None
    return _case_study().build_fortran(PREFIX, str(tmp_path_factory.mktemp("l96_build")),
                                       fkb_dir)


# An independent implementation of the equations (Wilks 2005), in numpy.
def two_scale_tendency(x, y):
    coupling = H * C / B
    dx = (np.roll(x, 1) * (np.roll(x, -1) - np.roll(x, 2)) - x + F
          - coupling * y.reshape(K, J).sum(axis=1))
    dy = (C * B * np.roll(y, -1) * (np.roll(y, 1) - np.roll(y, -2)) - C * y
          + coupling * np.repeat(x, J))
    return dx, dy


def rk4(f, state, dt):
    k1 = f(state)
    k2 = f(state + dt / 2 * k1)
    k3 = f(state + dt / 2 * k2)
    k4 = f(state + dt * k3)
    return state + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def two_scale_numpy(x, y, nsteps, dt):
    s = np.concatenate([x, y])

    def f(s):
        return np.concatenate(two_scale_tendency(s[:K], s[K:]))

    for _ in range(nsteps):
        s = rk4(f, s, dt)
    return s


@pytest.mark.parametrize("nsteps", [1, 10])
def test_two_scale_integrator_matches_numpy(programs, tmp_path, nsteps):
    rng = np.random.default_rng(8)
    x = rng.normal(4.0, 5.0, K)
    y = rng.normal(0.0, 0.5, K * J)
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    np.concatenate([x, y]).astype("<f8").tofile(src)
    subprocess.run([programs["l96_truth"], "step", str(src), str(dst), str(nsteps), "0.001"],
                   check=True)
    got = np.fromfile(dst, dtype="<f8")
    ref = two_scale_numpy(x, y, nsteps, 0.001)
    assert got.shape == ref.shape
    _close(got, ref)
    # The test can fail: the state really moved, well beyond the tolerance.
    assert np.abs(ref - np.concatenate([x, y])).max() > 1e-3


def test_truth_data_are_the_subgrid_tendency(programs, tmp_path):
    """The U_k written by `l96_truth run` closes the X budget: a central difference of the
    sampled X (dt_out = 0.005) matches the resolved tendency plus U_k. The difference is the
    O(dt_out^2) truncation error, observed ~0.05 RMS (dX/dt has sd ~35); a wrong sign, scale
    or site of U gives > 3. Limit: 0.2."""
    subprocess.run([programs["l96_truth"], "run", str(tmp_path), "1", "1", "0.1", "0.1", "3"],
                   check=True)
    meta = dict(line.split(" ", 1) for line in (tmp_path / "meta.txt").read_text().splitlines())
    n = int(meta["n_train"])
    dt = float(meta["dt_out"])
    x = np.fromfile(tmp_path / "train_x.bin", dtype="<f8").reshape(n, K)
    u = np.fromfile(tmp_path / "train_u.bin", dtype="<f8").reshape(n, K)
    assert n == 200 and dt == 0.005
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(u))
    fd = (x[2:] - x[:-2]) / (2 * dt)
    xm, um = x[1:-1], u[1:-1]
    resolved = np.roll(xm, 1, 1) * (np.roll(xm, -1, 1) - np.roll(xm, 2, 1)) - xm + F
    assert np.sqrt(np.mean((fd - (resolved + um)) ** 2)) < 0.2
    assert np.sqrt(np.mean((fd - (resolved - um)) ** 2)) > 3     # the check can fail


def test_host_model_matches_numpy(programs, tmp_path):
    """l96_online with a float64 linear network U_k = w . [X_{k-2..k+2}] + b against numpy's
    one-scale RK4 with the same U held fixed over each step."""
    import keras

    import fkb

    w = np.array([0.05, -0.1, -0.6, 0.2, 0.03])
    bias = 1.5
    model = keras.Sequential([keras.Input((5,), dtype="float64"),
                              keras.layers.Dense(1, dtype="float64")])
    model.layers[-1].set_weights([w.reshape(5, 1), np.array([bias])])
    path = str(tmp_path / "linear.fkb")
    fkb.from_keras(model).save(path)

    # A "truth" test segment: only its first state (the initial condition) matters here.
    rng = np.random.default_rng(3)
    ntest, nsteps, dt = 400, 40, 0.005
    test_x = rng.normal(4.0, 5.0, (ntest, K))
    data = tmp_path / "data"
    data.mkdir()
    test_x.astype("<f8").tofile(data / "test_x.bin")
    (data / "meta.txt").write_text(f"nk {K}\ndt_out {dt}\nn_test {ntest}\n")
    prefix = str(tmp_path / "linear")
    subprocess.run([programs["l96_online"], str(data), prefix, "1", str(nsteps * dt), path],
                   check=True, capture_output=True)
    traj = np.fromfile(prefix + "_traj.bin", dtype="<f8").reshape(-1, K)

    def f_fixed(u):
        return lambda x: np.roll(x, 1) * (np.roll(x, -1) - np.roll(x, 2)) - x + F + u

    x = test_x[0].copy()
    ref = [x]
    for _ in range(nsteps):
        u = sum(w[i] * np.roll(x, 2 - i) for i in range(5)) + bias   # w . [X_{k-2}..X_{k+2}]
        x = rk4(f_fixed(u), x, dt)
        ref.append(x)
    ref = np.array(ref)
    assert traj.shape == ref.shape
    _close(traj, ref)


def test_quick_pipeline(programs, tmp_path):
    """`run_case_study.py --quick`: build, truth, 2 Keras candidates, fkb convert, online runs,
    ensemble, table and figures."""
    work = tmp_path / "l96"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, SCRIPT, "--quick", *_fkb_location(),
                        "--work", str(work)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    with open(work / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["model"] for row in rows][-1] == "ensemble_2"
    assert len(rows) == 3
    for row in rows:
        for key in ("offline_rmse", "rmse_lead_1", "divergence_time_mean", "hellinger",
                    "nn_us_per_step"):
            v = float(row[key])
            assert np.isfinite(v) and v >= 0, (row["model"], key, row[key])
        assert 0 <= float(row["hellinger"]) <= 1
    assert {row["optimizer"] for row in rows[:2]} == {"sgd", "adam"}
    for name in ("offline_vs_online", "stability_by_optimizer", "truth_best_worst"):
        png = work / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size > 10_000, name
    assert "Spearman" in (work / "findings.md").read_text()
    assert "results.md" in r.stdout and "| model |" in r.stdout

    # The converted candidates compute what Keras computes (float32 tolerance).
    import keras

    import fkb

    xv = np.random.default_rng(0).normal(4.0, 5.0, (64, 5)).astype("float32")
    for row in rows[:2]:
        model = keras.models.load_model(work / "keras" / f"{row['model']}.keras")
        net = fkb.load(str(work / "fkb" / f"{row['model']}.fkb"))
        ref = np.asarray(model(xv), dtype=np.float64)
        got = np.asarray(net.predict(xv), dtype=np.float64)
        err = np.abs(got - ref) / np.maximum(1.0, np.abs(ref))
        assert err.max() <= 1e-5, (row["model"], err.max())
