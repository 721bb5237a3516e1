"""Optimizers, gradient clipping and learning-rate schedules, re-derived by hand."""

import math

import numpy as np
import pytest

from mlpjit.config import config_from_dict, resolved_dict
from mlpjit.optim import (
    SGD,
    Adam,
    clip_grad_norm,
    clip_grad_value,
    global_norm,
    make_optimizer,
    scheduled_lr,
)

THETA0 = np.array([0.5, -1.0, 2.0, 0.0])
THETA1 = np.array([[0.1, -0.2], [0.3, 0.4]])
# the gradient of each step (a new one each time, as in training)
GRADS0 = [np.array([0.1, -0.2, 0.3, -0.4]), np.array([-0.5, 0.25, 0.0, 1.0]),
          np.array([0.2, 0.2, -0.1, 0.05])]
GRADS1 = [np.array([[1.0, 0.0], [-1.0, 0.5]]), np.array([[0.3, -0.7], [0.2, 0.1]]),
          np.array([[-0.4, 0.6], [0.0, -0.9]])]


def make_params(dtype=np.float64):
    return [("0.A", THETA0.astype(dtype).copy(), np.zeros(4, dtype)),
            ("1.A", THETA1.astype(dtype).copy(), np.zeros((2, 2), dtype))]


def run_steps(opt, params, n=3, lrs=None):
    """Take n steps, setting the gradients in place before each; return θ after each step."""
    history = []
    for k in range(n):
        params[0][2][...] = GRADS0[k]
        params[1][2][...] = GRADS1[k]
        if lrs is None:
            opt.step()
        else:
            opt.step(lrs[k])
        history.append([p.copy() for _, p, _ in params])
    return history


def sgd_by_hand(theta, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0, lrs=None,
                dampening=0.0):
    theta = theta.astype(np.float64).copy()
    v = np.zeros_like(theta)
    out = []
    for k, g in enumerate(grads):
        eta = lr if lrs is None else lrs[k]
        gp = g + weight_decay * theta
        if momentum:
            v = momentum * v + (1.0 if k == 0 else 1.0 - dampening) * gp
            step = gp + momentum * v if nesterov else v
        else:
            step = gp
        theta = theta - eta * step
        out.append(theta.copy())
    return out


def adam_by_hand(theta, grads, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
    theta = theta.astype(np.float64).copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    out = []
    for t, g in enumerate(grads, start=1):
        gp = g + weight_decay * theta
        m = b1 * m + (1 - b1) * gp
        v = b2 * v + (1 - b2) * gp ** 2
        mhat = m / (1 - b1 ** t)
        vhat = v / (1 - b2 ** t)
        theta = theta - lr * mhat / (np.sqrt(vhat) + eps)
        out.append(theta.copy())
    return out


def check(history, expected0, expected1, rtol=1e-12, atol=1e-14):
    for step, (got, e0, e1) in enumerate(zip(history, expected0, expected1), start=1):
        np.testing.assert_allclose(got[0], e0, rtol=rtol, atol=atol, err_msg=f"step {step}, 0.A")
        np.testing.assert_allclose(got[1], e1, rtol=rtol, atol=atol, err_msg=f"step {step}, 1.A")


# --- SGD -----------------------------------------------------------------------------------

SGD_CASES = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.1, momentum=0.9),
    "nesterov": dict(lr=0.1, momentum=0.9, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=0.01),
    "momentum_weight_decay": dict(lr=0.05, momentum=0.5, weight_decay=0.1),
    "nesterov_weight_decay": dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.02),
    "dampening": dict(lr=0.1, momentum=0.9, dampening=0.9),
    "dampening_weight_decay": dict(lr=0.05, momentum=0.5, dampening=0.2, weight_decay=0.1),
}


@pytest.mark.parametrize("case", list(SGD_CASES))
def test_sgd_steps_match_hand_derivation(case):
    kw = SGD_CASES[case]
    params = make_params()
    opt = SGD(params, **kw)
    history = run_steps(opt, params)
    check(history, sgd_by_hand(THETA0, GRADS0, **kw), sgd_by_hand(THETA1, GRADS1, **kw))
    assert opt.t == 3


def test_sgd_first_steps_written_out():
    # one component, written out with numbers: θ=0.5, g=0.1 then -0.5, μ=0.9, η=0.1
    params = [("w", np.array([0.5]), np.zeros(1))]
    opt = SGD(params, lr=0.1, momentum=0.9)
    params[0][2][0] = 0.1
    opt.step()
    assert params[0][1][0] == pytest.approx(0.5 - 0.1 * 0.1, abs=1e-15)          # v = 0.1
    params[0][2][0] = -0.5
    opt.step()
    v2 = 0.9 * 0.1 - 0.5                                                        # -0.41
    assert params[0][1][0] == pytest.approx(0.49 - 0.1 * v2, abs=1e-15)         # 0.531


def test_sgd_step_takes_the_scheduled_lr():
    lrs = [0.1, 0.05, 0.025]
    params = make_params()
    opt = SGD(params, lr=1.0, momentum=0.9)
    history = run_steps(opt, params, lrs=lrs)
    check(history, sgd_by_hand(THETA0, GRADS0, 1.0, momentum=0.9, lrs=lrs),
          sgd_by_hand(THETA1, GRADS1, 1.0, momentum=0.9, lrs=lrs))


def test_sgd_float32_parameters():
    params = make_params(np.float32)
    opt = SGD(params, lr=0.1, momentum=0.9, nesterov=True)
    history = run_steps(opt, params)
    assert history[-1][0].dtype == np.float32
    check(history, sgd_by_hand(THETA0, GRADS0, 0.1, 0.9, True),
          sgd_by_hand(THETA1, GRADS1, 0.1, 0.9, True), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(lr=0.0), dict(lr=-0.1), dict(lr=0.1, momentum=1.0),
                                dict(lr=0.1, nesterov=True), dict(lr=0.1, dampening=1.0),
                                dict(lr=0.1, momentum=0.9, nesterov=True, dampening=0.5)])
def test_sgd_rejects_bad_hyperparameters(kw):
    with pytest.raises(ValueError):
        SGD(make_params(), **kw)


# --- Adam ----------------------------------------------------------------------------------

ADAM_CASES = {
    "default": dict(lr=0.01),
    "betas": dict(lr=0.1, beta1=0.5, beta2=0.9, eps=1e-6),
    "weight_decay": dict(lr=0.01, weight_decay=0.1),
}


@pytest.mark.parametrize("case", list(ADAM_CASES))
def test_adam_steps_match_hand_derivation(case):
    kw = dict(ADAM_CASES[case])
    params = make_params()
    opt = Adam(params, **kw)
    history = run_steps(opt, params)
    hand = dict(lr=kw["lr"], b1=kw.get("beta1", 0.9), b2=kw.get("beta2", 0.999),
                eps=kw.get("eps", 1e-8), weight_decay=kw.get("weight_decay", 0.0))
    check(history, adam_by_hand(THETA0, GRADS0, **hand), adam_by_hand(THETA1, GRADS1, **hand),
          rtol=1e-11, atol=1e-13)
    assert opt.t == 3


def test_adam_first_step_is_lr_times_sign():
    # t = 1: m̂ = g, v̂ = g², so θ moves by η·g/(|g| + ε) ≈ η·sign(g)
    params = [("w", np.array([1.0, 1.0, 1.0]), np.array([0.3, -2.0, 0.0]))]
    Adam(params, lr=0.01).step()
    np.testing.assert_allclose(params[0][1], [1.0 - 0.01 * 0.3 / (0.3 + 1e-8),
                                              1.0 + 0.01 * 2.0 / (2.0 + 1e-8), 1.0], rtol=1e-14)


@pytest.mark.parametrize("name,kw", [("sgd", dict(lr=0.1, momentum=0.9)), ("adam", dict(lr=0.01))])
def test_optimizer_state_round_trip_continues_identically(name, kw):
    """What the checkpoint stores is enough to continue bit for bit."""
    params_a = make_params()
    opt_a = make_optimizer(name, params_a, **kw)
    run_steps(opt_a, params_a, n=2)
    state = {k: np.array(v, copy=True) for k, v in opt_a.state_arrays().items()}
    params_b = [(n, p.copy(), g.copy()) for n, p, g in params_a]
    opt_b = make_optimizer(name, params_b, **kw)
    opt_b.load_state_arrays(state)
    assert opt_b.t == 2
    for opt, params in ((opt_a, params_a), (opt_b, params_b)):
        params[0][2][...] = GRADS0[2]
        params[1][2][...] = GRADS1[2]
        opt.step()
    for (_, pa, _), (_, pb, _) in zip(params_a, params_b):
        assert np.array_equal(pa, pb)


def test_make_optimizer_unknown_name():
    with pytest.raises(ValueError, match="adamw"):
        make_optimizer("adamw", make_params(), lr=0.1)


# --- clipping ------------------------------------------------------------------------------

def grads_params(g0, g1):
    return [("0.A", np.zeros_like(g0), g0.copy()), ("1.A", np.zeros_like(g1), g1.copy())]


def test_global_norm_over_all_parameters():
    params = grads_params(np.array([3.0, 0.0]), np.array([[0.0, 4.0], [0.0, 12.0]]))
    assert global_norm(params) == pytest.approx(13.0, rel=1e-15)


def test_clip_grad_norm_above_scales_to_exactly_c():
    params = grads_params(np.array([3.0, 0.0]), np.array([[0.0, 4.0], [0.0, 12.0]]))
    before = [g.copy() for _, _, g in params]
    norm = clip_grad_norm(params, 6.5)
    assert norm == pytest.approx(13.0, rel=1e-15)                # the norm before clipping
    assert global_norm(params) == pytest.approx(6.5, rel=1e-12)  # exactly c afterwards
    for (_, _, g), b in zip(params, before):
        np.testing.assert_allclose(g, b * 0.5, rtol=1e-15)        # same direction, scale c/‖g‖


def test_clip_grad_norm_below_leaves_gradients_unchanged():
    params = grads_params(np.array([0.3, -0.4]), np.array([[0.0, 0.0], [0.0, 0.0]]))
    before = [g.copy() for _, _, g in params]
    assert clip_grad_norm(params, 1.0) == pytest.approx(0.5, rel=1e-15)
    for (_, _, g), b in zip(params, before):
        assert np.array_equal(g, b)
    # exactly at the threshold: unchanged too
    params = grads_params(np.array([0.3, -0.4]), np.zeros((2, 2)))
    clip_grad_norm(params, 0.5)
    assert np.array_equal(params[0][2], [0.3, -0.4])


def test_clip_grad_norm_float32():
    params = [("0.A", np.zeros(3, np.float32), np.array([30.0, -40.0, 0.0], np.float32))]
    assert clip_grad_norm(params, 5.0) == pytest.approx(50.0, rel=1e-6)
    np.testing.assert_allclose(params[0][2], [3.0, -4.0, 0.0], rtol=1e-6)


def test_clip_grad_value_clips_each_component():
    params = grads_params(np.array([0.5, -2.0, 1.0, -1.0]), np.array([[3.0, -0.25], [-7.0, 0.99]]))
    clip_grad_value(params, 1.0)
    np.testing.assert_array_equal(params[0][2], [0.5, -1.0, 1.0, -1.0])
    np.testing.assert_array_equal(params[1][2], [[1.0, -0.25], [-1.0, 0.99]])


# --- schedules -----------------------------------------------------------------------------

def schedule_from_config(schedule):
    """The schedule dict exactly as the trainer receives it (defaults filled in)."""
    cfg = config_from_dict({"data": {"name": "xor"},
                            "model": {"layers": [{"type": "dense", "units": 1}]},
                            "loss": "binary_cross_entropy", "schedule": schedule})
    return resolved_dict(cfg)["schedule"]


def test_constant_schedule():
    s = schedule_from_config({"type": "constant"})
    assert [scheduled_lr(0.3, s, e, 10) for e in (0, 1, 9)] == [0.3, 0.3, 0.3]


def test_step_schedule():
    s = schedule_from_config({"type": "step", "every": 3, "gamma": 0.5})
    got = [scheduled_lr(0.8, s, e, 20) for e in (0, 2, 3, 5, 6, 9)]
    assert got == pytest.approx([0.8, 0.8, 0.4, 0.4, 0.2, 0.1], rel=1e-15)


def test_step_schedule_defaults():
    s = schedule_from_config({"type": "step"})        # every 10, gamma 0.1
    got = [scheduled_lr(1.0, s, e, 30) for e in (0, 9, 10, 19, 20)]
    assert got == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01], rel=1e-14)


def test_exponential_schedule():
    s = schedule_from_config({"type": "exponential", "gamma": 0.9})
    got = [scheduled_lr(0.5, s, e, 10) for e in (0, 1, 2, 5)]
    assert got == pytest.approx([0.5, 0.45, 0.405, 0.5 * 0.59049], rel=1e-14)


def test_cosine_schedule():
    s = schedule_from_config({"type": "cosine", "min_lr": 0.01})
    lr, lo, n = 0.1, 0.01, 10
    assert scheduled_lr(lr, s, 0, n) == pytest.approx(lr, rel=1e-15)
    assert scheduled_lr(lr, s, 5, n) == pytest.approx((lr + lo) / 2, rel=1e-14)
    # epoch 2 of 10: cos(π/5) = (1 + √5)/4
    expected = lo + (lr - lo) * (1 + (1 + math.sqrt(5)) / 4) / 2
    assert scheduled_lr(lr, s, 2, n) == pytest.approx(expected, rel=1e-14)
    assert scheduled_lr(lr, s, 10, n) == pytest.approx(lo, rel=1e-12)


def test_cosine_schedule_default_min_lr_is_zero():
    s = schedule_from_config({"type": "cosine"})
    assert scheduled_lr(0.2, s, 4, 8) == pytest.approx(0.1, rel=1e-14)   # half way
    assert scheduled_lr(0.2, s, 8, 8) == pytest.approx(0.0, abs=1e-17)


# --- max-norm (Srivastava et al. 2014, §5.1) -------------------------------------------------

def test_max_norm_by_hand():
    """A dense layer's units are the columns of A: column 0 = (3, 4) has norm 5 > c = 2.5 and
    becomes (1.5, 2); column 1 = (0.6, 0.8) has norm 1 ≤ c and stays.  A convolution's units are
    its output channels (rows of A viewed as (O, C·KH·KW)): row (0, 0, 0, 6) becomes (0, 0, 0, 2.5)."""
    import mlpjit
    from mlpjit.optim import apply_max_norm
    dense = mlpjit.Dense(2, 2, dtype=np.float64)
    dense.A = np.array([[3.0, 0.6], [4.0, 0.8]])
    conv = mlpjit.Conv2D(1, 2, 2, dtype=np.float64)   # A: (2, 1, 2, 2)
    conv.A = np.array([[0.0, 0.0, 0.0, 6.0], [0.5, 0.5, 0.5, 0.5]]).reshape(2, 1, 2, 2)
    model = mlpjit.Sequential([conv, mlpjit.Flatten(), dense])
    assert [(n, m) for n, _, m in model.incoming_weights()] == [("0.A", "rows"), ("2.A", "columns")]
    apply_max_norm(model.incoming_weights(), 2.5)
    np.testing.assert_allclose(dense.A, [[1.5, 0.6], [2.0, 0.8]])
    np.testing.assert_allclose(conv.A.reshape(2, 4), [[0, 0, 0, 2.5], [0.5, 0.5, 0.5, 0.5]])


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_max_norm_bounds_every_unit_after_each_step_and_leaves_biases(name):
    import mlpjit
    rng = np.random.default_rng(0)
    model = mlpjit.Sequential([mlpjit.Dense(5, 4, activation="relu", dtype=np.float64, seed=1),
                               mlpjit.Dense(4, 3, dtype=np.float64, seed=2)])
    free = mlpjit.Sequential([mlpjit.Dense(5, 4, activation="relu", dtype=np.float64, seed=1),
                              mlpjit.Dense(4, 3, dtype=np.float64, seed=2)])
    c = 0.5
    opt = make_optimizer(name, model, lr=0.5, max_norm=c)
    ref = make_optimizer(name, free, lr=0.5)
    for _ in range(3):
        for m in (model, free):
            for _, p, g in m.parameters():
                g[...] = 0.0
        g = rng.standard_normal
        for (_, _, g1), (_, _, g2) in zip(model.parameters(), free.parameters()):
            g1[...] = g2[...] = g(g1.shape)
        opt.step()
        ref.step()
        for _, A, _ in model.incoming_weights():
            assert np.all(np.linalg.norm(A, axis=0) <= c * (1 + 1e-12))
    assert np.max(np.linalg.norm(free.layers[0].A, axis=0)) > c    # the constraint did bind
    for (_, b1, _), (_, b2, _) in zip(model.parameters(), free.parameters()):
        if b1.ndim == 1 and name == "sgd":   # plain SGD: a bias's update does not see A's
            np.testing.assert_allclose(b1, b2)
    assert "max_norm=0.5" in repr(opt)


def test_max_norm_needs_the_model_and_a_positive_value():
    params = make_params()
    with pytest.raises(ValueError, match="max_norm needs the model"):
        SGD(params, lr=0.1, max_norm=3.0)
    with pytest.raises(ValueError, match="max_norm"):
        SGD(params, lr=0.1, max_norm=-1.0)
    cfg = resolved_dict(config_from_dict({"data": {"name": "xor"}, "loss": "cross_entropy",
                                          "model": {"layers": [{"type": "dense", "units": 2}]},
                                          "optimizer": {"type": "sgd", "max_norm": 3}}))
    assert cfg["optimizer"]["max_norm"] == 3
    with pytest.raises(Exception, match="optimizer.max_norm"):
        config_from_dict({"data": {"name": "xor"}, "loss": "cross_entropy",
                                          "model": {"layers": [{"type": "dense", "units": 2}]},
                          "optimizer": {"type": "sgd", "max_norm": 0}})
