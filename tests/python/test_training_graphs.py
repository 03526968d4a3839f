"""Training Functional graphs and last-axis layers on (steps, channels) data from Python,
against Keras (references computed here by tests/data/make_train_graph_cases.py: gradients
from tf.GradientTape in a tf.function, Keras' own train_on_batch for the steps and curves).

Closeness: gradients max |g - ref| / (|ref| + max|ref|), a step's tensors max|w - ref| /
max|ref|, every loss |l - ref| / |ref|; all <= 1e-12 (float64), 1e-5 (float32).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
fkb = pytest.importorskip("fkb")
pytest.importorskip("fkb._core")

pytestmark = pytest.mark.engine
TOL = {"float32": 1e-5, "float64": 1e-12}
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, os.pardir, "data")


@pytest.fixture(scope="module")
def gen(make_cases):
    """tests/data/make_train_graph_cases.py as a module (it imports make_cases)."""
    import sys

    if DATA not in sys.path:
        sys.path.insert(0, DATA)
    spec = importlib.util.spec_from_file_location("make_train_graph_cases",
                                                  os.path.join(DATA, "make_train_graph_cases.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def keras_losses(gen, name):
    _, losses, weights, _, _ = gen.CASES[name]
    return losses, weights


def batch(ref, gen, k):
    """Inputs and targets of batch k shaped as Keras has them, weights (batch,)."""
    sl = slice(k * gen.B, (k + 1) * gen.B)
    xs = [a[sl] for a in ref["xs"]]
    ts = [a[sl] for a in ref["ts"]]
    w = None if ref["w"] is None else ref["w"][sl]
    return xs, ts, w


def fresh(gen, name, dtype, optimizer, ref):
    """The case's model in FKB, compiled as Keras was (losses as Keras names them)."""
    net = fkb.from_keras(gen.make(name, dtype))
    losses, weights = keras_losses(gen, name)
    net.compile(optimizer, loss=losses, loss_weights=weights)
    return net


def flat(net):
    return np.concatenate([w.ravel() for w in net.get_weights()])


CASES = ["residual_mlp", "two_in_three_out", "steps_channels", "td_sequential"]


@pytest.fixture(scope="module")
def refs(gen):
    return {(n, d): gen.references(n, d) for n in CASES for d in ("float32", "float64")}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", CASES)
def test_gradients_steps_curve_resume(gen, refs, name, dtype, tmp_path):
    ref = refs[(name, dtype)]
    tol = TOL[dtype]
    xs, ts, w = batch(ref, gen, 0)
    one = len(xs) == 1 and len(ts) == 1
    x_arg = xs[0] if len(xs) == 1 else xs
    t_arg = ts[0] if one else ts
    # gradients (SGD compile: nothing is applied)
    net = fresh(gen, name, dtype, "sgd", ref)
    got = np.concatenate([g.ravel() for g in net.gradients(x_arg, t_arg, sample_weight=w)])
    g = ref["grad"][1:]
    worst = float(np.max(np.abs(got - g) / (np.abs(g) + np.abs(g).max())))
    assert worst <= tol, f"{name} {dtype}: gradients {worst:.3e}"
    ev = net.evaluate(x_arg, t_arg, sample_weight=w)
    assert np.isfinite(ev)
    # one step of Adam and of SGD with momentum
    for key, opt in (("adam", fkb.optimizers.Adam(learning_rate=0.01)),
                     ("sgd", fkb.optimizers.SGD(learning_rate=0.05, momentum=0.9))):
        net = fresh(gen, name, dtype, opt, ref)
        loss = net.train_on_batch(x_arg, t_arg, sample_weight=w)
        r = ref[key]
        assert abs(loss - r[0]) <= tol * abs(r[0]), (key, loss, r[0])
        err = float(np.abs(flat(net) - r[1:]).max() / np.abs(r[1:]).max())
        assert err <= tol, f"{name} {dtype}: one {key} step {err:.3e}"
    # 50 Adam steps, saved after 25 and continued from the file
    net = fresh(gen, name, dtype, fkb.optimizers.Adam(learning_rate=1e-3), ref)
    losses = []
    for s in range(50):
        bx, bt, bw = batch(ref, gen, s % 4)
        losses.append(net.train_on_batch(bx if len(bx) > 1 else bx[0],
                                         bt if len(bt) > 1 else bt[0], sample_weight=bw))
        if s == 24:
            net.save(tmp_path / "mid.fkb")
    curve = ref["curve"]
    err_l = float(np.max(np.abs(np.array(losses) - curve[:50]) / np.abs(curve[:50])))
    err_w = float(np.abs(flat(net) - curve[50:]).max() / np.abs(curve[50:]).max())
    assert err_l <= tol and err_w <= tol, (err_l, err_w)
    resumed = fkb.load(tmp_path / "mid.fkb")
    for s in range(25, 50):
        bx, bt, bw = batch(ref, gen, s % 4)
        assert resumed.train_on_batch(bx if len(bx) > 1 else bx[0],
                                      bt if len(bt) > 1 else bt[0], sample_weight=bw) \
            == losses[s]
    assert np.array_equal(flat(resumed), flat(net))


def test_dict_inputs_targets_and_fit(gen, refs):
    """Dicts by input/output name give the same step as lists; fit takes lists."""
    ref = refs[("two_in_three_out", "float64")]
    xs, ts, w = batch(ref, gen, 0)
    a = fresh(gen, "two_in_three_out", "float64", "adam", ref)
    b = fresh(gen, "two_in_three_out", "float64", "adam", ref)
    la = a.train_on_batch(xs, ts, sample_weight=w)
    lb = b.train_on_batch(dict(zip(a.input_names, xs)), dict(zip(a.output_names, ts)),
                          sample_weight=w)
    assert la == lb and np.array_equal(flat(a), flat(b))
    net = fresh(gen, "two_in_three_out", "float64", "adam", ref)
    hist = net.fit(ref["xs"], ref["ts"], batch_size=16, epochs=3, shuffle=False, verbose=0,
                   validation_data=(ref["xs"], ref["ts"]))
    assert len(hist["loss"]) == 3 and hist["loss"][-1] < hist["loss"][0]
    assert net.iterations == 12


def test_bad_calls_change_nothing(gen, refs):
    ref = refs[("two_in_three_out", "float32")]
    xs, ts, w = batch(ref, gen, 0)
    net = fresh(gen, "two_in_three_out", "float32", "adam", ref)
    before = flat(net)
    with pytest.raises(fkb.FKBArgumentError, match="2 output array"):
        net.train_on_batch(xs, ts[:2])
    with pytest.raises(fkb.ShapeError, match="'o2'"):
        net.train_on_batch(xs, [ts[0], ts[1][:, :3], ts[2]])
    with pytest.raises(fkb.FKBArgumentError, match="2 losses for a network with 3"):
        net.compile("adam", loss=["mse", "mae"])
    assert np.array_equal(flat(net), before) and net.iterations == 0
    for case, layer in (("conv1d", "conv"), ("lstm", "lstm")):
        model = dict(gen.bad_models())[f"bad_{case}"]
        bad = fkb.from_keras(model)
        with pytest.raises(fkb.UnsupportedError, match=f"'{layer}'"):
            bad.compile("adam", "mse")
