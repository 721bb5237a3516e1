"""Slow, plain NumPy twins of every mlpjit kernel, written from docs/math.md.

Each twin returns new arrays (the kernels write into buffers) and computes in float64; the
tests cast the result to the kernel's dtype.  Nothing here imports mlpjit, so a formula copied
wrongly into a kernel cannot be copied into its twin by accident.
"""

import numpy as np
from scipy.special import erf

# ---------------------------------------------------------------- activations (math.md §2)


def _sigmoid(x):
    """σ(x) = 1/(1 + e⁻ˣ), as e^(−log(1 + e⁻ˣ)) via logaddexp (no overflow for large |x|)."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def _Phi(x):
    return 0.5 * (1.0 + erf(x / np.sqrt(2.0)))


def _phi(x):
    return np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


# name -> (f(x, alpha), f'(x, alpha)); derivatives at the kinks follow mlpjit's documented
# choice: relu'(0) = 0, leaky_relu'(0) = α, elu'(0) = 1.
ACTIVATIONS = {
    "identity": (lambda x, a: x, lambda x, a: np.ones_like(x)),
    "sigmoid": (lambda x, a: _sigmoid(x), lambda x, a: _sigmoid(x) * (1.0 - _sigmoid(x))),
    "tanh": (lambda x, a: np.tanh(x), lambda x, a: 1.0 - np.tanh(x) ** 2),
    "relu": (lambda x, a: np.maximum(0.0, x), lambda x, a: np.where(x > 0, 1.0, 0.0)),
    "leaky_relu": (lambda x, a: np.where(x > 0, x, a * x), lambda x, a: np.where(x > 0, 1.0, a)),
    "softplus": (lambda x, a: np.logaddexp(0.0, x), lambda x, a: _sigmoid(x)),
    "arctan": (lambda x, a: np.arctan(x), lambda x, a: 1.0 / (1.0 + x * x)),
    "softsign": (lambda x, a: x / (1.0 + np.abs(x)), lambda x, a: 1.0 / (1.0 + np.abs(x)) ** 2),
    "elu": (lambda x, a: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0.0))),
            lambda x, a: np.where(x >= 0, 1.0, a * np.exp(np.minimum(x, 0.0)))),
    "swish": (lambda x, a: x * _sigmoid(x),
              lambda x, a: _sigmoid(x) + x * _sigmoid(x) * (1.0 - _sigmoid(x))),
    "gelu": (lambda x, a: x * _Phi(x), lambda x, a: _Phi(x) + x * _phi(x)),
    "tanh_linear": (lambda x, a: np.tanh(x) + a * x, lambda x, a: 1.0 - np.tanh(x) ** 2 + a),
}

# the default parameter of each parametrized activation
DEFAULT_PARAM = {"leaky_relu": 0.01, "elu": 1.0, "tanh_linear": 0.1}


def activation(name, x, alpha=None):
    """f(x)."""
    alpha = DEFAULT_PARAM.get(name, 0.0) if alpha is None else alpha
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(ACTIVATIONS[name][0](np.asarray(x, dtype=np.float64), alpha), dtype=np.float64)


def activation_derivative(name, x, alpha=None):
    """f'(x)."""
    alpha = DEFAULT_PARAM.get(name, 0.0) if alpha is None else alpha
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(ACTIVATIONS[name][1](np.asarray(x, dtype=np.float64), alpha), dtype=np.float64)


def activation_backward(name, x, dy, alpha=None):
    """dS = f'(S) ∘ dY."""
    return activation_derivative(name, x, alpha) * np.asarray(dy, dtype=np.float64)


# ---------------------------------------------------------------- dense layer (math.md §1)


def matmul(X, A):
    """C = X·A by the definition cᵢⱼ = Σₚ xᵢₚ aₚⱼ (einsum, no BLAS)."""
    return np.einsum("ip,pj->ij", np.asarray(X, np.float64), np.asarray(A, np.float64))


def dense_forward(X, A, b):
    """S = X·A + b."""
    return matmul(X, A) + np.asarray(b, np.float64)


def dense_backward(X, A, dS):
    """(dA, db, dX) = (Xᵀ·dS, Σ_rows dS, dS·Aᵀ)."""
    X, A, dS = (np.asarray(a, np.float64) for a in (X, A, dS))
    return matmul(X.T, dS), dS.sum(axis=0), matmul(dS, A.T)


# ---------------------------------------------------------------- softmax (math.md §3)


def logsumexp(S):
    S = np.asarray(S, np.float64)
    m = S.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(S - m).sum(axis=1, keepdims=True)))[:, 0]


def softmax(S):
    S = np.asarray(S, np.float64)
    E = np.exp(S - S.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def softmax_backward(Y, dY):
    """dX = J·dY with the full Jacobian Jᵢⱼ = yᵢ(𝟙[i = j] − yⱼ), built explicitly per row."""
    Y, dY = np.asarray(Y, np.float64), np.asarray(dY, np.float64)
    dX = np.empty_like(Y)
    for r in range(Y.shape[0]):
        y = Y[r]
        J = np.diag(y) - np.outer(y, y)
        dX[r] = J.T @ dY[r]
    return dX


# ---------------------------------------------------------------- losses (math.md §4)


def one_hot(labels, k):
    T = np.zeros((len(labels), k))
    T[np.arange(len(labels)), labels] = 1.0
    return T


def mse(Yh, T):
    Yh, T = np.asarray(Yh, np.float64), np.asarray(T, np.float64)
    n, k = Yh.shape
    return np.sum((Yh - T) ** 2) / (n * k), 2.0 * (Yh - T) / (n * k)


def sum_squares(Yh, T):
    Yh, T = np.asarray(Yh, np.float64), np.asarray(T, np.float64)
    n = Yh.shape[0]
    return np.sum(0.5 * np.sum((T - Yh) ** 2, axis=1)) / n, (Yh - T) / n


def cross_entropy(S, T):
    """E = −(1/N) Σᵢⱼ tᵢⱼ ln pᵢⱼ with ln p = s − LSE(s); dS = (p·Σⱼtᵢⱼ − t)/N.

    ``T`` is (N, k) targets, or int labels (N,) which are one-hot encoded.
    (p − y)/N of math.md is the case Σⱼ tᵢⱼ = 1; the general form is ∂E/∂s of the same E.
    """
    S = np.asarray(S, np.float64)
    n, k = S.shape
    T = np.asarray(T)
    if T.ndim == 1:
        T = one_hot(T, k)
    T = T.astype(np.float64)
    logp = S - logsumexp(S)[:, None]
    E = -np.sum(T * logp) / n
    P = softmax(S)
    return E, (P * T.sum(axis=1, keepdims=True) - T) / n


def binary_cross_entropy(S, T):
    """E = −mean[t ln σ(s) + (1 − t) ln(1 − σ(s))] over all N·k elements (= math.md's 1/N for
    k = 1; mlpjit averages over every output as torch's BCEWithLogitsLoss); dS = (σ(s) − t)/(N·k).

    ln σ(s) = −log(1 + e⁻ˢ) and ln(1 − σ(s)) = −log(1 + eˢ), both via logaddexp.
    """
    S, T = np.asarray(S, np.float64), np.asarray(T, np.float64)
    count = S.size
    E = np.sum(T * np.logaddexp(0.0, -S) + (1.0 - T) * np.logaddexp(0.0, S)) / count
    return E, (_sigmoid(S) - T) / count


def smape(Yh, T):
    Yh, T = np.asarray(Yh, np.float64), np.asarray(T, np.float64)
    count = Yh.size
    d = np.abs(Yh) + np.abs(T)
    safe = np.where(d > 0, d, 1.0)
    E = np.sum(np.where(d > 0, np.abs(Yh - T) / safe, 0.0)) / count
    g = np.where(d > 0, np.sign(Yh - T) / safe - np.sign(Yh) * np.abs(Yh - T) / safe ** 2, 0.0)
    return E, g / count


def soft_confusion(P, T):
    """C[a, b] = Σᵢ tᵢₐ pᵢᵦ: each example adds its probability vector to the row of its class."""
    return np.asarray(T, np.float64).T @ np.asarray(P, np.float64)


def soft_f1_probs(P, T):
    """E = 1 − macro-F1 of the soft confusion matrix, and dE/dP, for k ≥ 2 probability columns.

    F1ⱼ = 2Cⱼⱼ / Dⱼ with Dⱼ = Σₐ Cₐⱼ + Σᵦ Cⱼᵦ (column sum = predicted, row sum = actual).
    The gradient treats every pᵢₗ as free (the chain rule through C = TᵀP):
    ∂Cⱼⱼ/∂pᵢₗ = 𝟙[l = j]·tᵢⱼ,  ∂Dⱼ/∂pᵢₗ = 𝟙[l = j]·Σₐtᵢₐ + tᵢⱼ.
    (A kernel that uses Σᵦpᵢᵦ = 1 first differs by a constant per row, which the softmax
    Jacobian removes; compare gradients after softmax_backward.)
    """
    P, T = np.asarray(P, np.float64), np.asarray(T, np.float64)
    n, k = P.shape
    C = soft_confusion(P, T)
    tp = np.diag(C)
    D = C.sum(axis=0) + C.sum(axis=1)
    E = 1.0 - np.mean(2.0 * tp / D)
    r = T.sum(axis=1, keepdims=True)
    dP = -(2.0 / k) * (T / D - r * tp / D ** 2 - (T * (tp / D ** 2)).sum(axis=1, keepdims=True))
    return E, dP


def soft_f1(S, T):
    """soft F1 on logits: p = softmax(s) for k ≥ 2 (T one-hot / labels), p = σ(s) for k = 1."""
    S = np.asarray(S, np.float64)
    n, k = S.shape
    T = np.asarray(T)
    if k == 1:
        t = T.reshape(n).astype(np.float64)
        p = _sigmoid(S[:, 0])
        tp, D = np.sum(p * t), np.sum(p) + np.sum(t)
        E = 1.0 - 2.0 * tp / D
        dp = -2.0 * (t / D - tp / D ** 2)
        return E, (dp * p * (1.0 - p))[:, None]
    if T.ndim == 1:
        T = one_hot(T, k)
    P = softmax(S)
    E, dP = soft_f1_probs(P, T)
    return E, softmax_backward(P, dP)


# ---------------------------------------------------------------- training (math.md §5)


def dropout(X, U, p):
    """(Y, mask): mask = [U ≥ p]/(1 − p), Y = X ∘ mask."""
    mask = np.where(np.asarray(U) >= p, 1.0 / (1.0 - p), 0.0)
    return np.asarray(X, np.float64) * mask, mask


def gather_rows(X, idx, scale):
    return np.asarray(X, np.float64)[np.asarray(idx)] * scale


def clip_value(g, c):
    """Each |gᵢ| > c becomes sign(gᵢ)·c."""
    g = np.asarray(g, np.float64)
    return np.where(np.abs(g) > c, np.sign(g) * c, g)


def clip_norm(g, c):
    """g·c/‖g‖ if ‖g‖ > c (the global rule, here on one vector); returns (g, ‖g‖)."""
    g = np.asarray(g, np.float64)
    norm = np.sqrt(np.sum(g * g))
    return (g * (c / norm) if norm > c else g), norm


def sgd_step(theta, g, v, lr, momentum=0.0, weight_decay=0.0, nesterov=False, dampening=0.0, t=1):
    """One torch.optim.SGD step (t counts from 1), returning new (θ, v).

    d = g + λθ;  if μ ≠ 0: buf = d at the first step, else μ·buf + (1 − τ)·d,
    d = d + μ·buf (Nesterov) or buf;  θ ← θ − η·d.
    """
    theta, g, v = (np.array(a, np.float64) for a in (theta, g, v))
    d = g + weight_decay * theta
    if momentum != 0.0:
        v = d.copy() if t == 1 else momentum * v + (1.0 - dampening) * d
        d = d + momentum * v if nesterov else v
    return theta - lr * d, v


def adam_step(theta, g, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    """One torch.optim.Adam step (t counts from 1), returning new (θ, m, v)."""
    theta, g, m, v = (np.array(a, np.float64) for a in (theta, g, m, v))
    g = g + weight_decay * theta
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g ** 2
    m_hat = m / (1.0 - beta1 ** t)
    v_hat = v / (1.0 - beta2 ** t)
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


# ---------------------------------------------------------------- convolution and pooling (math.md §6)


def pad_image(X, top, bottom, left, right):
    """Zeros around the (H, W) axes of (N, C, H, W)."""
    return np.pad(np.asarray(X, np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))


def conv2d(X, A, b, stride=(1, 1), pads=((0, 0), (0, 0))):
    """S[n, o, i, j] = b[o] + Σ_{c,p,q} Xpad[n, c, i·sh + p, j·sw + q]·A[o, c, p, q], summed
    explicitly over each window (one np.sum per output position)."""
    Xp = pad_image(X, *pads[0], *pads[1])
    N, C, Hp, Wp = Xp.shape
    O, _, KH, KW = A.shape
    sh, sw = stride
    OH, OW = (Hp - KH) // sh + 1, (Wp - KW) // sw + 1
    S = np.empty((N, O, OH, OW))
    for n in range(N):
        for o in range(O):
            for i in range(OH):
                for j in range(OW):
                    window = Xp[n, :, i * sh:i * sh + KH, j * sw:j * sw + KW]
                    S[n, o, i, j] = b[o] + np.sum(window * A[o])
    return S


def conv2d_backward(X, A, dS, stride=(1, 1), pads=((0, 0), (0, 0))):
    """(dX, dA, db): each window's share, dS[n, o, i, j]·A[o] to the window of dXpad and
    dS[n, o, i, j]·window to dA[o]; the padding is cut off at the end."""
    Xp = pad_image(X, *pads[0], *pads[1])
    N, C, Hp, Wp = Xp.shape
    O, _, KH, KW = A.shape
    sh, sw = stride
    dXp = np.zeros_like(Xp)
    dA = np.zeros(A.shape)
    for n in range(N):
        for o in range(O):
            for i in range(dS.shape[2]):
                for j in range(dS.shape[3]):
                    g = dS[n, o, i, j]
                    dXp[n, :, i * sh:i * sh + KH, j * sw:j * sw + KW] += g * A[o]
                    dA[o] += g * Xp[n, :, i * sh:i * sh + KH, j * sw:j * sw + KW]
    (t, bt), (l, r) = pads
    dX = dXp[:, :, t:Hp - bt, l:Wp - r]
    return dX, dA, np.asarray(dS, np.float64).sum(axis=(0, 2, 3))


def pool2d(X, size, stride, kind):
    """Max or mean of each window (np.max / np.mean over the window)."""
    X = np.asarray(X, np.float64)
    N, C, H, W = X.shape
    (KH, KW), (sh, sw) = size, stride
    OH, OW = (H - KH) // sh + 1, (W - KW) // sw + 1
    Y = np.empty((N, C, OH, OW))
    f = np.max if kind == "max" else np.mean
    for i in range(OH):
        for j in range(OW):
            Y[:, :, i, j] = f(X[:, :, i * sh:i * sh + KH, j * sw:j * sw + KW], axis=(2, 3))
    return Y


def pool2d_backward(X, dY, size, stride, kind):
    """Max: dY to the first maximum of each window (np.argmax order); mean: dY/(KH·KW) to all."""
    X = np.asarray(X, np.float64)
    (KH, KW), (sh, sw) = size, stride
    dX = np.zeros_like(X)
    N, C = X.shape[:2]
    for i in range(dY.shape[2]):
        for j in range(dY.shape[3]):
            if kind == "max":
                for n in range(N):
                    for c in range(C):
                        win = X[n, c, i * sh:i * sh + KH, j * sw:j * sw + KW]
                        p, q = np.unravel_index(np.argmax(win), win.shape)
                        dX[n, c, i * sh + p, j * sw + q] += dY[n, c, i, j]
            else:
                dX[:, :, i * sh:i * sh + KH, j * sw:j * sw + KW] += (
                    dY[:, :, i, j][:, :, None, None] / (KH * KW))
    return dX
