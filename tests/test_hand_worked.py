"""One tiny example worked by hand (math.md §1, §4, §5): a 2-2-1 sigmoid network on one XOR point.

Input x = (1, 0), target y = 1, loss ``sum_squares`` E = (1/N) Σ ½‖ŷ − y‖² with N = 1.

Weights (rows = inputs, columns = units; M = X·A):

    A1 = [[1.0, -1.0],      b1 = [0, 0]        A2 = [[ 2.0],      b2 = [0.5]
          [0.5,  2.0]]                               [-1.0]]

Two sigmoid values recur: σ(1) = 1/(1 + e⁻¹) = 0.7310585786300049 and σ(−1) = 1 − σ(1) =
0.2689414213699951, and both have the same slope σ'(±1) = σ(1)·σ(−1) = 0.19661193324148185.

Forward
    layer 1: M1 = x·A1 = 1·[1, −1] + 0·[0.5, 2] = [1, −1]
             S1 = M1 + b1 = [1, −1]
             Y1 = σ(S1) = [0.7310585786300049, 0.2689414213699951]
    layer 2: M2 = Y1·A2 = 2·0.7310585786300049 − 1·0.2689414213699951 = 1.1931757358900148
             S2 = M2 + b2 = 1.6931757358900148
             Y2 = σ(S2) = 1/(1 + e^−1.69317573589) = 0.8446413436372657
    loss:    E = ½(Y2 − 1)² = ½·(−0.15535865636273427)² = 0.012068156053417076

Backward (dZ = ∂E/∂Z)
    loss:    dY2 = (Y2 − y)/N = −0.15535865636273427
    layer 2: dS2 = σ'(S2)·dY2 = Y2(1 − Y2)·dY2 = 0.8446413436·0.1553586564·(−0.1553586564)
                 = −0.020386527088364807
             dA2 = Y1ᵀ·dS2 = [0.7310585786·(−0.0203865271), 0.2689414214·(−0.0203865271)]ᵀ
                 = [[−0.014903745516422068], [−0.005482781571942739]]
             db2 = Σ dS2 = −0.020386527088364807
             dX2 = dS2·A2ᵀ = [2·(−0.0203865271), −1·(−0.0203865271)]
                 = [−0.04077305417672961, 0.020386527088364807]
    layer 1: dY1 = dX2 (the next layer's input is this layer's output)
             dS1 = σ'(S1) ∘ dY1 = 0.19661193324148185·[−0.0407730542, 0.0203865271]
                 = [−0.008016469005846485, 0.004008234502923242]
             dA1 = xᵀ·dS1 = [[1·dS1], [0·dS1]] = [[−0.008016469005846485, 0.004008234502923242],
                                                  [0, 0]]        (x₂ = 0: its weights get no gradient)
             db1 = dS1
             dX1 = dS1·A1ᵀ = [1·(−0.0080164690) − 1·0.0040082345, 0.5·(−0.0080164690) + 2·0.0040082345]
                 = [−0.012024703508769727, 0.004008234502923242]

One SGD step, θ ← θ − η·g with η = 0.5
    A2 = [[2 − 0.5·(−0.0149037455)], [−1 − 0.5·(−0.0054827816)]] = [[2.007451872758211], [−0.9972586092140286]]
    b2 = 0.5 − 0.5·(−0.0203865271) = 0.5101932635441824
    A1 = [[1 + 0.0040082345, −1 − 0.0020041173], [0.5, 2.0]]
       = [[1.0040082345029233, −1.0020041172514615], [0.5, 2.0]]
    b1 = [0.004008234502923242, −0.002004117251461621]
"""

import numpy as np

import mlpjit
from mlpjit.optim import sgd_update

ATOL = 1e-12


def build():
    l1 = mlpjit.Dense(2, 2, activation="sigmoid", dtype=np.float64, seed=0)
    l2 = mlpjit.Dense(2, 1, activation="sigmoid", dtype=np.float64, seed=0)
    l1.A[...] = [[1.0, -1.0], [0.5, 2.0]]
    l1.b[...] = [0.0, 0.0]
    l2.A[...] = [[2.0], [-1.0]]
    l2.b[...] = [0.5]
    return mlpjit.Sequential([l1, l2])


def close(got, expected):
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


def test_forward_and_backward_by_hand():
    model = build()
    l1, l2 = model.layers
    x, y = np.array([[1.0, 0.0]]), np.array([[1.0]])
    loss = mlpjit.losses.get("sum_squares")

    Y2 = model.forward(x, training=True)
    E = loss.forward(Y2, y)
    # forward, layer 1 (M1 = x·A1 is S1 − b1)
    close(l1.S - l1.b, [[1.0, -1.0]])
    close(l1.S, [[1.0, -1.0]])
    close(l1.Y, [[0.7310585786300049, 0.2689414213699951]])
    # forward, layer 2
    close(l2.S - l2.b, [[1.1931757358900148]])
    close(l2.S, [[1.6931757358900148]])
    close(l2.Y, [[0.8446413436372657]])
    close(Y2, [[0.8446413436372657]])
    close(E, 0.012068156053417076)

    dY2 = loss.backward()
    close(dY2, [[-0.15535865636273427]])
    dX1 = model.backward(dY2)
    # backward, layer 2
    close(l2.dS, [[-0.020386527088364807]])
    close(l2.dA, [[-0.014903745516422068], [-0.005482781571942739]])
    close(l2.db, [-0.020386527088364807])
    close(l2.dX, [[-0.04077305417672961, 0.020386527088364807]])
    # backward, layer 1
    close(l1.dS, [[-0.008016469005846485, 0.004008234502923242]])
    close(l1.dA, [[-0.008016469005846485, 0.004008234502923242], [0.0, 0.0]])
    close(l1.db, [-0.008016469005846485, 0.004008234502923242])
    close(dX1, [[-0.012024703508769727, 0.004008234502923242]])
    # the recurring slope: σ'(±1) = σ(1)σ(−1)
    close(l1.dS / l2.dX, [[0.19661193324148185, 0.19661193324148185]])


def test_one_sgd_step_by_hand():
    model = build()
    loss = mlpjit.losses.get("sum_squares")
    x, y = np.array([[1.0, 0.0]]), np.array([[1.0]])
    loss.forward(model.forward(x, training=True), y)
    model.backward(loss.backward())
    for _, param, grad in model.parameters():   # θ ← θ − η·g, η = 0.5, no momentum or decay
        velocity = np.zeros(param.size)
        sgd_update(param.reshape(-1), grad.reshape(-1), velocity, 0.5, 0.0, 0.0, 0.0, False, 1)
        assert not velocity.any()                # plain SGD leaves the momentum buffer alone
    l1, l2 = model.layers
    close(l2.A, [[2.007451872758211], [-0.9972586092140286]])
    close(l2.b, [0.5101932635441824])
    close(l1.A, [[1.0040082345029233, -1.0020041172514615], [0.5, 2.0]])
    close(l1.b, [0.004008234502923242, -0.002004117251461621])
    # the step went downhill: E was 0.012068156053417076
    assert loss.forward(model.forward(x), y) < 0.012068156053417076


def test_sgd_with_momentum_two_steps_by_hand():
    """torch.optim.SGD with μ = 0.9, η = 0.1 on θ = 1 with gradients 2 then −1:
    step 1: v = 0.9·0 + 2 = 2,       θ = 1 − 0.1·2 = 0.8
    step 2: v = 0.9·2 − 1 = 0.8,     θ = 0.8 − 0.1·0.8 = 0.72
    Nesterov uses g + μv instead of v:
    step 1: v = 2,   θ = 1 − 0.1·(2 + 0.9·2) = 0.62
    step 2: v = 0.8, θ = 0.62 − 0.1·(−1 + 0.9·0.8) = 0.648
    Weight decay λ = 0.5 adds λθ to g (plain SGD): θ = 1 − 0.1·(2 + 0.5·1) = 0.75."""
    for nesterov, expected in ((False, [0.8, 0.72]), (True, [0.62, 0.648])):
        theta, v = np.array([1.0]), np.zeros(1)
        for t, (g, e) in enumerate(zip((2.0, -1.0), expected), start=1):
            sgd_update(theta, np.array([g]), v, 0.1, 0.9, 0.0, 0.0, nesterov, t)
            close(theta, [e])
        close(v, [0.8])
    theta = np.array([1.0])
    sgd_update(theta, np.array([2.0]), np.zeros(1), 0.1, 0.0, 0.0, 0.5, False, 1)
    close(theta, [0.75])


def test_sgd_with_dampening_three_steps_by_hand():
    """torch.optim.SGD with μ = τ = 0.9 (dampening equal to the momentum: Hinton et al.'s
    Δw ← μΔw − (1 − μ)εg), η = 0.1, θ = 1, gradients 2, −1, 2:
    step 1: v = 2 (the first step takes g whole, as PyTorch), θ = 1 − 0.1·2 = 0.8
    step 2: v = 0.9·2 + 0.1·(−1) = 1.7,                        θ = 0.8 − 0.17 = 0.63
    step 3: v = 0.9·1.7 + 0.1·2 = 1.73,                        θ = 0.63 − 0.173 = 0.457
    (without dampening step 3 would move by 0.1·(0.9·0.8 + 2) = 0.272: v grows as 1/(1 − μ))."""
    theta, v = np.array([1.0]), np.zeros(1)
    for t, (g, ev, e) in enumerate(zip((2.0, -1.0, 2.0), (2.0, 1.7, 1.73), (0.8, 0.63, 0.457)), start=1):
        sgd_update(theta, np.array([g]), v, 0.1, 0.9, 0.9, 0.0, False, t)
        close(v, [ev])
        close(theta, [e])
