"""The `fkb` command, run as a separate process (python -m fkb)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import LEGACY_DIR, ROOT

pytest.importorskip("fkb._core")
keras = pytest.importorskip("keras")


def run(*args, check_rc=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    import fkb

    pkg_parent = os.path.dirname(os.path.dirname(fkb.__file__))
    env["PYTHONPATH"] = pkg_parent + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-m", "fkb", *map(str, args)], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=300)
    if check_rc is not None:
        assert p.returncode == check_rc, p.stdout + p.stderr
    return p


@pytest.fixture(scope="module")
def files(tmp_path_factory, cases):
    d = tmp_path_factory.mktemp("cli")
    picked = {n: m for n, _, m in cases if n in ("batch_normalization_float32",
                                                 "dense_softmax_float32", "prelu_float32")}
    paths = {}
    for name, m in picked.items():
        paths[name] = d / f"{name}.keras"
        m.save(paths[name])
    return d, paths


def test_convert_info_verify_export(files):
    d, paths = files
    src = paths["batch_normalization_float32"]
    out = d / "bn.fkb"
    run("convert", src, "-o", out, check_rc=0)
    assert out.exists()
    info = run("info", out, check_rc=0).stdout
    assert "Precision: float32" in info and "batch_normalization" in info
    assert "Total params:" in info and "meta keras_version" in info
    v = run("verify", src, out, "--samples", 50, "--seed", 3, check_rc=0).stdout
    assert "PASS" in v and "max |Δ|" in v
    assert v.count(" ok") >= 9  # every layer and the output
    x = np.random.default_rng(0).normal(size=(5, 6))
    np.save(d / "x.npy", x)
    run("verify", src, out, "--inputs", d / "x.npy", check_rc=0)
    k = d / "back.keras"
    run("export", out, "-o", k, check_rc=0)
    import fkb

    assert np.array_equal(fkb.to_keras(str(out)).predict(x, verbose=0),
                          keras.saving.load_model(k).predict(x, verbose=0))


def test_convert_many_to_directory_and_verify_failure(files):
    d, paths = files
    outdir = d / "many"
    p = run("convert", *paths.values(), "-o", outdir, check_rc=0)
    assert sorted(os.listdir(outdir)) == sorted(f"{n}.fkb" for n in paths)
    assert "3 file(s)" in p.stdout
    # A converted model checked against a different Keras model: above tolerance, exit 1.
    wrong = outdir / "dense_softmax_float32.fkb"
    other = d / "other.fkb"
    import fkb

    net = fkb.load(wrong)
    ws = net.get_weights()
    ws[0] = ws[0] * 1.01  # (adding a constant everywhere would cancel in the softmax)
    net.set_weights(ws)
    net.save(other)
    p = run("verify", paths["dense_softmax_float32"], other, "--samples", 20, check_rc=1)
    assert "FAIL" in p.stdout


def test_legacy_text_and_errors(files, tmp_path):
    legacy = os.path.join(LEGACY_DIR, "simple_model_with_weights.txt")
    info = run("info", legacy, check_rc=0).stdout
    assert "Inputs: 5  Outputs: 2" in info
    out = tmp_path / "legacy.keras"
    run("export", legacy, "-o", out, check_rc=0)
    run("verify", out, legacy, check_rc=0)
    junk = tmp_path / "junk.keras"
    junk.write_text("nope")
    p = run("convert", junk, "-o", tmp_path / "x.fkb", check_rc=2)
    assert "not a Keras model" in p.stderr and "Traceback" not in p.stderr
    p = run("info", tmp_path / "missing.fkb", check_rc=2)
    assert "missing.fkb" in p.stderr
    run("--version", check_rc=0)
