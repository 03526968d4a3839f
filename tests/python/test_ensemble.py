"""fkb.Ensemble against numpy over the members' Keras predictions, noise reproducibility
across thread counts (subprocesses with OMP_NUM_THREADS), deterministic mode, bad input.

Tolerance: the float32 tolerance of the engine (|a-b| <= 1e-5 max(1,|b|)), since members of
both precisions are mixed; statistics are computed in float64 by the engine.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import TOL

fkb = pytest.importorskip("fkb")
pytest.importorskip("fkb._core")

MEMBERS = ["dense_relu_float32", "dense_tanh_float64", "dense_gelu_float32", "dense_elu_float64"]


@pytest.fixture(scope="module")
def members(cases, tmp_path_factory):
    """(paths, keras models) of four 7 -> 5 members of both precisions."""
    d = tmp_path_factory.mktemp("ensemble")
    by_name = {name: model for name, _, model in cases}
    paths = []
    for name in MEMBERS:
        path = str(d / f"{name}.fkb")
        fkb.convert(by_name[name], path)
        paths.append(path)
    return paths, [by_name[n] for n in MEMBERS], d


def keras_members(models, x, make_cases):
    return np.stack([make_cases.keras_predict(m, x) for m in models])


def test_mean_std_range_members_match_numpy(members, make_cases):
    paths, models, _ = members
    x = np.random.default_rng(3).normal(size=(33, 7))
    ys = keras_members(models, x, make_cases)
    w = np.array([1.0, 3.0, 0.5, 2.0])
    ens = fkb.Ensemble(paths, weights=w)
    mean, std, lo, hi = ens.predict(x, return_std=True, return_range=True)
    wn = w / w.sum()
    ref_mean = np.tensordot(wn, ys, axes=1)
    ref_std = np.sqrt(np.tensordot(wn, (ys - ref_mean) ** 2, axes=1))
    tol = TOL["float32"]
    assert np.all(np.abs(mean - ref_mean) <= tol * np.maximum(1, np.abs(ref_mean)))
    assert np.all(np.abs(std - ref_std) <= tol * np.maximum(1, np.abs(ref_std)))
    assert np.all(np.abs(lo - ys.min(0)) <= tol * np.maximum(1, np.abs(ys.min(0))))
    assert np.all(np.abs(hi - ys.max(0)) <= tol * np.maximum(1, np.abs(ys.max(0))))
    per = ens.predict_members(x)
    assert per.shape == (4, 33, 5)
    assert np.all(np.abs(per - ys) <= tol * np.maximum(1, np.abs(ys)))
    assert ens.predict(x[0]).shape == (5,)


def test_folder_and_manifest(members):
    paths, _, d = members
    x = np.random.default_rng(4).normal(size=(5, 7))
    by_list = fkb.Ensemble(paths, weights=[1, 1, 2, 1]).predict(x)
    manifest = d / "members.txt"
    manifest.write_text("".join(f"{os.path.basename(p)} {w}\n"
                                for p, w in zip(paths, [1, 1, 2, 1])))
    np.testing.assert_array_equal(fkb.Ensemble(str(manifest)).predict(x), by_list)
    folder = fkb.Ensemble(str(d))
    assert folder.n_members == 4
    np.testing.assert_array_equal(folder.predict(x), fkb.Ensemble(sorted(paths)).predict(x))


NOISY = """
import sys, numpy as np, fkb
paths = sys.argv[1:]
x = np.random.default_rng(5).normal(size=(50, 7))
ens = fkb.Ensemble(paths, noise_std=[0.05 * (i + 1) for i in range(7)], copies=3, seed=99)
mean, std = ens.predict(x, return_std=True)
sys.stdout.write(mean.tobytes().hex() + std.tobytes().hex())
"""


def test_noise_same_bits_for_1_2_8_threads(members):
    paths, _, _ = members
    outs = set()
    for threads in ("1", "2", "8"):
        env = dict(os.environ, OMP_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", NOISY, *paths], env=env, check=True,
                             capture_output=True, text=True).stdout
        outs.add(out)
    assert len(outs) == 1
    ens = fkb.Ensemble(paths, noise_std=0.05, copies=3, seed=1)
    other = fkb.Ensemble(paths, noise_std=0.05, copies=3, seed=2)
    x = np.zeros((4, 7))
    assert not np.array_equal(ens.predict(x), other.predict(x))
    _, std = ens.predict(x, return_std=True)
    assert np.all(np.isfinite(std))


def test_deterministic_mode_any_split(members):
    paths, _, _ = members
    x = np.random.default_rng(6).normal(size=(200, 7))
    net = fkb.load(paths[1])
    fkb.set_deterministic(True)
    try:
        whole = net.predict(x)
        for chunk in (1, 7, 64):
            parts = np.concatenate([net.predict(x[i:i + chunk]) for i in range(0, 200, chunk)])
            np.testing.assert_array_equal(parts, whole)
    finally:
        fkb.set_deterministic(False)
    assert not fkb.is_deterministic()


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(members=[]), fkb.FKBArgumentError, "at least one member"),
    (dict(members=["/no/such/member.fkb"]), fkb.FKBFileError, "/no/such/member.fkb"),
    (dict(weights=[1, -1, 1, 1]), fkb.FKBArgumentError, "weights"),
    (dict(weights=[0, 0, 0, 0]), fkb.FKBArgumentError, "weights"),
    (dict(weights=[1, 1]), fkb.FKBArgumentError, "2 weights for 4 members"),
    (dict(noise_std=-0.1), fkb.FKBArgumentError, "noise"),
    (dict(noise_std=float("nan")), fkb.FKBArgumentError, "noise"),
    (dict(noise_std=0.1, copies=0), fkb.FKBArgumentError, "copies"),
    (dict(noise_std=[0.1, 0.2]), fkb.ShapeError, "noise values"),
])
def test_bad_input(members, kwargs, error, text):
    paths, _, _ = members
    args = dict(members=paths)
    args.update(kwargs)
    with pytest.raises(error, match=text):
        fkb.Ensemble(args.pop("members"), **args)


def test_members_of_different_widths(members, cases, tmp_path):
    paths, _, _ = members
    wide = str(tmp_path / "wide.fkb")
    fkb.convert(next(m for n, _, m in cases if n == "spcam_like_float32"), wide)
    with pytest.raises(fkb.ShapeError, match="maps 94 -> 65"):
        fkb.Ensemble([paths[0], wide])
    ens = fkb.Ensemble(paths)
    with pytest.raises(fkb.ShapeError):
        ens.predict(np.zeros((3, 8)))


def test_cli_convert_to_manifest_and_info(members, cases, tmp_path):
    """`fkb convert A B C -o DIR --ensemble M` writes the members and a manifest that
    fkb.Ensemble and `fkb info` read; the manifest's weights are used."""
    by_name = {name: model for name, _, model in cases}
    srcs = []
    for name in MEMBERS[:3]:
        path = tmp_path / f"{name}.keras"
        by_name[name].save(path)
        srcs.append(str(path))
    out, manifest = tmp_path / "out", tmp_path / "ens.txt"
    run = [sys.executable, "-m", "fkb"]
    subprocess.run(run + ["convert", *srcs, "-o", str(out) + "/", "--ensemble", str(manifest),
                          "--weights", "1", "2", "1", "-q"], check=True)
    ens = fkb.Ensemble(str(manifest))
    assert ens.n_members == 3
    x = np.random.default_rng(8).normal(size=(6, 7))
    by_list = fkb.Ensemble([str(out / f"{n}.fkb") for n in MEMBERS[:3]], weights=[1, 2, 1])
    np.testing.assert_array_equal(ens.predict(x), by_list.predict(x))
    info = subprocess.run(run + ["info", str(manifest)], check=True, capture_output=True,
                          text=True).stdout
    assert "3 members, 7 inputs -> 5 outputs" in info
    assert "dense_tanh_float64.fkb" in info and "float64" in info
    bad = subprocess.run(run + ["convert", *srcs, "-o", str(out) + "/", "--ensemble",
                                str(manifest), "--weights", "1", "-q"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "1 weights for 3 members" in bad.stderr


def test_mc_dropout_spread_and_reproducibility(cases, tmp_path):
    """A model with Dropout gets spread from MC dropout, none without it; same seed, same bits."""
    model = next(m for n, _, m in cases if n == "dropout_flatten_float64")
    path = str(tmp_path / "dropout.fkb")
    fkb.convert(model, path)
    x = np.random.default_rng(9).normal(size=(20, model.inputs[0].shape[-1]))
    plain = fkb.Ensemble([path], copies=4)
    _, std0 = plain.predict(x, return_std=True)
    assert np.all(std0 == 0)
    mc = fkb.Ensemble([path], copies=16, seed=3, mc_dropout=True)
    mean, std = mc.predict(x, return_std=True)
    assert np.all(std > 0)
    np.testing.assert_array_equal(fkb.Ensemble([path], copies=16, seed=3,
                                               mc_dropout=True).predict(x), mean)
    assert not np.array_equal(fkb.Ensemble([path], copies=16, seed=4,
                                           mc_dropout=True).predict(x), mean)
