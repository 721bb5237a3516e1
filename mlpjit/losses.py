"""Losses: a scalar objective E over a batch of N examples with k outputs (math.md §4).

Each loss is used as::

    value = loss.forward(Yhat, target)   # E, a Python float
    dYhat = loss.backward()              # ∂E/∂Ŷ, shape of Yhat (the loss's own buffer)

=========================  ==========================================================  ===========================
name                       E                                                           dŶ
=========================  ==========================================================  ===========================
``mse``                    (1/(N·k)) Σ (ŷ − y)²                                         2(Ŷ − Y)/(N·k)
``sum_squares``            (1/N) Σᵢ ½‖ŷᵢ − yᵢ‖²                                         (Ŷ − Y)/N
``cross_entropy``          −(1/N) Σᵢⱼ yᵢⱼ ln pᵢⱼ, p = softmax(ŷ), ŷ the logits          (p − y)/N
``binary_cross_entropy``   −mean[y ln σ(ŷ) + (1 − y) ln(1 − σ(ŷ))], ŷ the logits        (σ(ŷ) − y)/(N·k)
``smape``                  mean |ŷ − y|/(|ŷ| + |y|)                                     see :class:`SMAPE`
``soft_f1``                1 − macro-F1 of the soft confusion matrix of p = softmax(ŷ)  chain rule through the sums
=========================  ==========================================================  ===========================

Targets: class ids (int array of shape (N,)) or one-hot / probability rows (N, k) for the
classification losses; values (N, k), or (N,) when k = 1, for the regression losses (class
ids given to a regression loss with k > 1 outputs are one-hot encoded, as scikit-learn does).

Each loss is a registered class with its kernels beside it.  Like a layer, it lists the kernel
calls of its forward and backward passes (:class:`~mlpjit.layers.base.Call`, arguments by name:
``Yhat``, ``labels`` (class ids) or ``T`` (target rows), ``dYhat``, and its own buffers), which
both ``forward``/``backward`` here and the compiled training step run.  ``ln p`` comes from
log-sum-exp, never from ``ln(softmax)``, so no ``ln 0`` can occur.
"""

import math

import numpy as np

from ._jit import jit
from .kernels import misc as KM
from .kernels.softmax import softmax_backward, softmax_forward
from .layers.base import Call
from .registry import losses as _registry
from .registry import register_loss

__all__ = ["Loss", "MSE", "SumSquares", "SMAPE", "CrossEntropy", "BinaryCrossEntropy", "SoftF1",
           "get", "names"]


def _as_output(Yhat, name):
    if not isinstance(Yhat, np.ndarray):
        Yhat = np.asarray(Yhat, dtype=np.float64)
    if Yhat.dtype not in (np.float32, np.float64):      # the dtypes the kernels compile for
        Yhat = Yhat.astype(np.float64)
    if Yhat.ndim != 2:
        raise ValueError(f"{name}: predictions must be 2-D (batch, outputs), got shape {Yhat.shape}")
    if Yhat.shape[0] == 0:
        raise ValueError(f"{name}: empty batch")
    if Yhat.shape[1] == 0:
        raise ValueError(f"{name}: predictions have no outputs (shape {Yhat.shape})")
    return np.ascontiguousarray(Yhat)


def _check_labels(labels, n, k, name):
    if labels.shape != (n,):
        raise ValueError(f"{name}: {n} predictions but labels of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        bad = labels[(labels < 0) | (labels >= k)][0]
        raise ValueError(f"{name}: labels must be class ids in [0, {k}), got {bad}")
    return np.ascontiguousarray(labels, dtype=np.int64)


def _targets(target, Yhat, name, one_hot_labels):
    """Target as float (N, k) of Yhat's dtype, or int64 labels (N,) where allowed."""
    target = np.asarray(target)
    n, k = Yhat.shape
    if target.dtype.kind in "iub" and target.ndim == 1:
        labels = _check_labels(target.astype(np.int64), n, max(k, 2), name)
        if not one_hot_labels:
            return labels
        if k == 1:
            return labels.reshape(n, 1).astype(Yhat.dtype)
        T = np.zeros((n, k), Yhat.dtype)
        T[np.arange(n), labels] = 1
        return T
    if target.dtype.kind not in "fiub":
        raise TypeError(f"{name}: targets must be numeric, got dtype {target.dtype}")
    if target.ndim == 1 and k == 1:
        target = target.reshape(n, 1) if target.shape[0] == n else target
    if target.shape != Yhat.shape:
        raise ValueError(f"{name}: predictions of shape {Yhat.shape} but targets of shape {target.shape}")
    T = np.ascontiguousarray(target, dtype=Yhat.dtype)
    if not np.isfinite(T).all():
        raise ValueError(f"{name}: targets contain NaN or Inf")
    return T


class Loss:
    """Base class.  A loss declares

    * ``targets(target, Yhat)``: the target in the form its kernels take, validated: class ids
      (``"labels"``, int64 (N,)) or rows (``"T"``, (N, k) of Yhat's dtype);
    * ``target_kind(k)``: which of the two the compiled step gives it for class ids;
    * ``buffers(k)`` / ``scratch(k)``: arrays per example / whole, as a layer's;
    * ``forward_calls(k, kind)``: kernel calls, one of them ``returns="E"``, the loss value;
    * ``backward_calls(k, kind)``: kernel calls that write ``dYhat``;
    * ``row_mean``: whether E is the mean over the batch's rows of a term of each row alone
      (then a sharded step computes it shard by shard, see :mod:`mlpjit.step`).
    """

    classification = False     # targets are classes; accuracy applies
    accepts_class_ids = False  # a regression loss that takes class ids as one-hot rows
    one_output_for_two_classes = False  # two classes may be one output (a 0/1 target)
    on_logits = False          # applies softmax/σ itself (a final softmax layer is a mistake)
    row_mean = False           # E = mean over rows of a per-row term (shards can split the batch)

    def __init__(self):
        self._key = None
        self._ns = None

    @property
    def name(self):
        return getattr(type(self), "registered_name", type(self).__name__.lower())

    # --- declarations ---------------------------------------------------------------------------
    def targets(self, target, Yhat):
        return "T", _targets(target, Yhat, self.name, True)

    def target_kind(self, k):
        return "T"

    def buffers(self, k):
        return {}

    def scratch(self, k):
        return {}

    def forward_calls(self, k, kind):
        raise NotImplementedError

    def backward_calls(self, k, kind):
        raise NotImplementedError

    # --- the layer-by-layer path ---------------------------------------------------------------
    def forward(self, Yhat, target):
        """E(Ŷ, Y) as a float; keeps what ``backward`` needs."""
        Yhat = _as_output(Yhat, self.name)
        kind, targ = self.targets(target, Yhat)
        n, k = Yhat.shape
        if self._key != (Yhat.shape, Yhat.dtype):
            self._arrays = {name: np.empty((n,) + tuple(shape), Yhat.dtype)
                            for name, shape in self.buffers(k).items()}
            self._arrays.update({name: np.empty(tuple(shape), Yhat.dtype)
                                 for name, shape in self.scratch(k).items()})
            self.dYhat = np.empty_like(Yhat)
            self._key = (Yhat.shape, Yhat.dtype)
        ns = dict(self._arrays, Yhat=Yhat, dYhat=self.dYhat)
        ns[kind] = targ
        _run(self.forward_calls(k, kind), ns)
        self._ns = (ns, k, kind)
        return float(ns["E"])

    __call__ = forward

    def backward(self):
        """∂E/∂Ŷ for the last ``forward``."""
        if self._ns is None:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        ns, k, kind = self._ns
        _run(self.backward_calls(k, kind), ns)
        return self.dYhat

    def __getattr__(self, name):
        ns = self.__dict__.get("_ns")
        if ns is not None and name in ns[0]:
            return ns[0][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def check_outputs(self, k):
        """Raise ValueError if this loss cannot be used on k outputs."""

    def transform(self, Yhat):
        """The model's outputs as the user wants them: probabilities for classifiers."""
        return Yhat

    def onnx_nodes(self, g, Yhat, k):
        """``transform`` as ONNX nodes (:mod:`mlpjit.export`) on the k outputs named ``Yhat``;
        returns the result's name.  Here the identity: a loss that changes ``transform`` says
        how it exports too, or the export refuses it."""
        return Yhat

    def pred_rule(self, k):
        """How k outputs become a class (a ``kernels.misc.PRED_*`` code): the largest output, or
        for one output, output > 0.5 (logit > 0 for the losses on logits)."""
        return KM.PRED_ARGMAX if k > 1 else KM.PRED_HALF

    def predict_classes(self, Yhat):
        """Predicted class ids for a classification loss."""
        Yhat = np.ascontiguousarray(Yhat)
        classes = np.empty(Yhat.shape[0], np.int64)
        KM.predict_classes_into(Yhat, self.pred_rule(Yhat.shape[1]), classes)
        return classes

    def get_config(self):
        return self.name

    def __repr__(self):
        return f"{type(self).__name__}()"


def _run(calls, ns):
    for call in calls:
        value = call.kernel(*[ns[a] if isinstance(a, str) else a for a in call.args])
        if call.returns:
            ns[call.returns] = value


def get(spec):
    """A loss from its name (``"cross_entropy"``) or a :class:`Loss` instance."""
    if isinstance(spec, Loss):
        return spec
    return _registry.get(spec)()


def names():
    return _registry.names()


# --- the losses, each with its kernels ---------------------------------------------------------
# Kernels: forward (Yhat: (n, k), target, buffers...) -> E;  backward (..., dYhat: (n, k)) -> None

@jit
def mse_forward(Yh, T):
    """E = (1/(N·k)) Σᵢⱼ (ŷᵢⱼ − yᵢⱼ)²."""
    n, k = Yh.shape
    total = 0.0
    for i in range(n):
        for j in range(k):
            d = Yh[i, j] - T[i, j]
            total += d * d
    return total / (n * k)


@jit
def mse_backward(Yh, T, dYh):
    """dŶ = 2(Ŷ − Y)/(N·k)."""
    n, k = Yh.shape
    c = 2.0 / (n * k)
    for i in range(n):
        for j in range(k):
            dYh[i, j] = c * (Yh[i, j] - T[i, j])


@register_loss("mse")
class MSE(Loss):
    """E = (1/(N·k)) Σᵢⱼ (ŷᵢⱼ − yᵢⱼ)²;  dŶ = 2(Ŷ − Y)/(N·k)."""
    row_mean = True
    _f, _b = mse_forward, mse_backward
    accepts_class_ids = True
    one_output_for_two_classes = True

    def forward_calls(self, k, kind):
        return [Call(type(self)._f, "Yhat", "T", returns="E")]

    def backward_calls(self, k, kind):
        return [Call(type(self)._b, "Yhat", "T", "dYhat")]


@jit
def sum_squares_forward(Yh, T):
    """E = (1/N) Σᵢ ½‖ŷᵢ − yᵢ‖²."""
    n, k = Yh.shape
    total = 0.0
    for i in range(n):
        for j in range(k):
            d = Yh[i, j] - T[i, j]
            total += d * d
    return 0.5 * total / n


@jit
def sum_squares_backward(Yh, T, dYh):
    """dŶ = (Ŷ − Y)/N."""
    n, k = Yh.shape
    c = 1.0 / n
    for i in range(n):
        for j in range(k):
            dYh[i, j] = c * (Yh[i, j] - T[i, j])


@register_loss("sum_squares")
class SumSquares(MSE):
    """E = (1/N) Σᵢ ½‖ŷᵢ − yᵢ‖²;  dŶ = (Ŷ − Y)/N."""
    _f, _b = sum_squares_forward, sum_squares_backward


@jit
def smape_forward(Yh, T):
    """E = mean of |ŷ − y| / (|ŷ| + |y|); a term with ŷ = y = 0 counts as 0."""
    n, k = Yh.shape
    total = 0.0
    for i in range(n):
        for j in range(k):
            d = abs(Yh[i, j]) + abs(T[i, j])
            if d > 0:
                total += abs(Yh[i, j] - T[i, j]) / d
    return total / (n * k)


@jit
def smape_backward(Yh, T, dYh):
    """dŷ = [sign(ŷ − y)/(|ŷ| + |y|) − sign(ŷ)·|ŷ − y|/(|ŷ| + |y|)²] / count (0 where ŷ = y = 0)."""
    n, k = Yh.shape
    c = 1.0 / (n * k)
    for i in range(n):
        for j in range(k):
            yh = Yh[i, j]
            diff = yh - T[i, j]
            d = abs(yh) + abs(T[i, j])
            if d > 0:
                sd = 1.0 if diff > 0 else (-1.0 if diff < 0 else 0.0)
                sy = 1.0 if yh > 0 else (-1.0 if yh < 0 else 0.0)
                dYh[i, j] = c * (sd / d - sy * abs(diff) / (d * d))
            else:
                dYh[i, j] = 0.0


@register_loss("smape")
class SMAPE(MSE):
    """E = mean |ŷ − y|/(|ŷ| + |y|) (0 where ŷ = y = 0);
    dŷ = [sign(ŷ − y)/(|ŷ| + |y|) − sign(ŷ)|ŷ − y|/(|ŷ| + |y|)²]/count."""
    _f, _b = smape_forward, smape_backward
    accepts_class_ids = False
    one_output_for_two_classes = False


@jit
def cross_entropy_labels_forward(S, labels, P):
    """E = −(1/N) Σᵢ ln p_{i,yᵢ} = (1/N) Σᵢ (LSE(sᵢ) − s_{i,yᵢ}); also fills P = softmax(S)."""
    n, k = S.shape
    total = 0.0
    for i in range(n):
        m = S[i, 0]
        for j in range(1, k):
            if S[i, j] > m:
                m = S[i, j]
        z = 0.0
        for j in range(k):
            e = math.exp(S[i, j] - m)
            P[i, j] = e
            z += e
        inv = 1.0 / z
        for j in range(k):
            P[i, j] *= inv
        total += m + math.log(z) - S[i, labels[i]]
    return total / n


@jit
def cross_entropy_labels_backward(P, labels, dS):
    """dS = (P − onehot(y)) / N."""
    n, k = P.shape
    inv = 1.0 / n
    for i in range(n):
        for j in range(k):
            dS[i, j] = P[i, j] * inv
        dS[i, labels[i]] -= inv


@jit
def cross_entropy_probs_forward(S, T, P):
    """E = −(1/N) Σᵢⱼ tᵢⱼ (sᵢⱼ − LSE(sᵢ)) for target distributions T; also fills P."""
    n, k = S.shape
    total = 0.0
    for i in range(n):
        m = S[i, 0]
        for j in range(1, k):
            if S[i, j] > m:
                m = S[i, j]
        z = 0.0
        for j in range(k):
            e = math.exp(S[i, j] - m)
            P[i, j] = e
            z += e
        lse = m + math.log(z)
        inv = 1.0 / z
        for j in range(k):
            P[i, j] *= inv
            total -= T[i, j] * (S[i, j] - lse)
    return total / n


@jit
def cross_entropy_probs_backward(P, T, dS):
    """dS = (P·Σⱼtᵢⱼ − T) / N, which is (P − T)/N when each row of T sums to 1."""
    n, k = P.shape
    inv = 1.0 / n
    for i in range(n):
        rowsum = 0.0
        for j in range(k):
            rowsum += T[i, j]
        for j in range(k):
            dS[i, j] = (P[i, j] * rowsum - T[i, j]) * inv


@register_loss("cross_entropy")
class CrossEntropy(Loss):
    """Softmax cross-entropy on logits S, fused:

    E = −(1/N) Σᵢⱼ yᵢⱼ ln pᵢⱼ = (1/N) Σᵢ (LSE(sᵢ) − s_{i,yᵢ}),  p = softmax(S);
    dS = (p − y)/N  (for targets whose rows sum to 1; (p·Σⱼyᵢⱼ − y)/N in general).
    Targets: class ids (N,) or one-hot/probability rows (N, k).  Needs k ≥ 2 outputs.
    Kept for backward: P = softmax(S) (N, k).
    """
    row_mean = True
    classification = True
    on_logits = True

    def targets(self, target, Yhat):
        self.check_outputs(Yhat.shape[1])
        T = _targets(target, Yhat, self.name, False)
        if T.ndim == 1:
            return "labels", T
        if (T < 0).any():
            raise ValueError(f"{self.name}: target probabilities must be ≥ 0")
        return "T", T

    def target_kind(self, k):
        return "labels"

    def buffers(self, k):
        return {"P": (k,)}

    def check_outputs(self, k):
        if k < 2:
            raise ValueError("cross_entropy needs at least 2 outputs (one logit per class); "
                             "for one output use binary_cross_entropy")

    def forward_calls(self, k, kind):
        if kind == "labels":
            return [Call(cross_entropy_labels_forward, "Yhat", "labels", "P", returns="E")]
        return [Call(cross_entropy_probs_forward, "Yhat", "T", "P", returns="E")]

    def backward_calls(self, k, kind):
        if kind == "labels":
            return [Call(cross_entropy_labels_backward, "P", "labels", "dYhat")]
        return [Call(cross_entropy_probs_backward, "P", "T", "dYhat")]

    def transform(self, Yhat):
        P = np.empty_like(Yhat)
        softmax_forward(np.ascontiguousarray(Yhat), P)
        return P

    def onnx_nodes(self, g, Yhat, k):
        return g.op("Softmax", Yhat, out="softmax", axis=-1)

    def pred_rule(self, k):
        return KM.PRED_ARGMAX


@jit
def binary_cross_entropy_forward(S, T):
    """E = −mean[t ln σ(s) + (1 − t) ln(1 − σ(s))] = mean[max(s, 0) − s·t + ln(1 + e^−|s|)]."""
    n, k = S.shape
    total = 0.0
    for i in range(n):
        for j in range(k):
            s = S[i, j]
            total += max(s, 0.0) - s * T[i, j] + math.log1p(math.exp(-abs(s)))
    return total / (n * k)


@jit
def binary_cross_entropy_backward(S, T, dS):
    """dS = (σ(S) − T) / (N·k)."""
    n, k = S.shape
    inv = 1.0 / (n * k)
    for i in range(n):
        for j in range(k):
            s = S[i, j]
            if s >= 0:
                g = 1.0 / (1.0 + math.exp(-s))
            else:
                e = math.exp(s)
                g = e / (1.0 + e)
            dS[i, j] = (g - T[i, j]) * inv


@register_loss("binary_cross_entropy")
class BinaryCrossEntropy(Loss):
    """Sigmoid cross-entropy on logits S, element-wise (one or several independent labels):

    E = −mean[y ln σ(s) + (1 − y) ln(1 − σ(s))] = mean[max(s, 0) − s·y + ln(1 + e^−|s|)];
    dS = (σ(S) − Y)/(N·k).   Targets: 0/1 labels (N,) for one output, or (N, k) in [0, 1].
    """
    row_mean = True
    classification = True
    on_logits = True
    one_output_for_two_classes = True

    def targets(self, target, Yhat):
        target = np.asarray(target)
        if target.ndim == 1 and Yhat.shape[1] != 1:
            raise ValueError(f"{self.name}: {Yhat.shape[1]} outputs need targets of shape "
                             f"(N, {Yhat.shape[1]}), got {target.shape}")
        T = _targets(target, Yhat, self.name, True)
        if ((T < 0) | (T > 1)).any():
            raise ValueError(f"{self.name}: targets must lie in [0, 1]")
        return "T", T

    def forward_calls(self, k, kind):
        return [Call(binary_cross_entropy_forward, "Yhat", "T", returns="E")]

    def backward_calls(self, k, kind):
        return [Call(binary_cross_entropy_backward, "Yhat", "T", "dYhat")]

    def transform(self, Yhat):
        return 1.0 / (1.0 + np.exp(-Yhat))

    def onnx_nodes(self, g, Yhat, k):
        return g.op("Sigmoid", Yhat, out="sigmoid")

    def pred_rule(self, k):
        return KM.PRED_POSITIVE if k == 1 else KM.PRED_ARGMAX


@jit
def soft_f1_forward(P, T, work):
    """E = 1 − (1/k) Σⱼ F1ⱼ on the soft confusion matrix C = Tᵀ·P.

    TPⱼ = Σᵢ tᵢⱼ pᵢⱼ,  predictedⱼ = Σᵢ pᵢⱼ,  actualⱼ = Σᵢ tᵢⱼ,
    F1ⱼ = 2 TPⱼ / (predictedⱼ + actualⱼ).  ``work`` rows receive TP, predicted + actual, F1.
    """
    n, k = P.shape
    for j in range(k):
        work[0, j] = 0.0
        work[1, j] = 0.0
    for i in range(n):
        for j in range(k):
            work[0, j] += T[i, j] * P[i, j]
            work[1, j] += P[i, j] + T[i, j]
    f1 = 0.0
    for j in range(k):
        work[2, j] = 2.0 * work[0, j] / work[1, j] if work[1, j] > 0 else 0.0
        f1 += work[2, j]
    return 1.0 - f1 / k


@jit
def soft_f1_backward(P, T, work, dP):
    """dE/dpᵢⱼ = −(2/k) [tᵢⱼ/Dⱼ − TPⱼ/Dⱼ²] with Dⱼ = predictedⱼ + actualⱼ."""
    n, k = P.shape
    for i in range(n):
        for j in range(k):
            D = work[1, j]
            if D > 0:
                dP[i, j] = -(2.0 / k) * (T[i, j] / D - work[0, j] / (D * D))
            else:
                dP[i, j] = 0.0


@jit
def sigmoid_rows(S, P):
    n, k = S.shape
    for i in range(n):
        for j in range(k):
            s = S[i, j]
            if s >= 0:
                P[i, j] = 1.0 / (1.0 + math.exp(-s))
            else:
                e = math.exp(s)
                P[i, j] = e / (1.0 + e)


@jit
def soft_f1_binary_forward(P, T, work):
    """E = 1 − 2TP/(Σp + Σt), TP = Σ pᵢtᵢ."""
    n = P.shape[0]
    tp = 0.0
    d = 0.0
    for i in range(n):
        tp += P[i, 0] * T[i, 0]
        d += P[i, 0] + T[i, 0]
    work[0, 0] = tp
    work[1, 0] = d
    f1 = 2.0 * tp / d if d > 0 else 0.0
    work[2, 0] = f1
    return 1.0 - f1


@jit
def soft_f1_binary_backward(P, T, work, dS):
    """dE/dsᵢ = −2[tᵢ/D − TP/D²]·pᵢ(1 − pᵢ), D = Σp + Σt (chain rule through σ)."""
    n = P.shape[0]
    tp = work[0, 0]
    D = work[1, 0]
    for i in range(n):
        p = P[i, 0]
        if D > 0:
            dS[i, 0] = -2.0 * (T[i, 0] / D - tp / (D * D)) * p * (1.0 - p)
        else:
            dS[i, 0] = 0.0


@register_loss("soft_f1")
class SoftF1(Loss):
    """1 − F1 on a "soft" confusion matrix, on logits S.

    k ≥ 2 outputs: p = softmax(s); each example adds its probability vector p to the row of its
    true class, C = Tᵀ·P; macro F1 = (1/k) Σⱼ 2Cⱼⱼ/(Σᵢ Cᵢⱼ + Σᵢ Cⱼᵢ);  E = 1 − macro F1.
    One output: p = σ(s), E = 1 − 2TP/(Σp + Σy) with TP = Σ pᵢyᵢ (F1 of the positive class).
    Backward: the chain rule through the sums, then through softmax (or σ).
    Kept for backward: P (N, k), dP (N, k), and the sums (work, (3, k)).
    """
    classification = True
    on_logits = True
    one_output_for_two_classes = True

    def buffers(self, k):
        return {"P": (k,), "dP": (k,)}

    def scratch(self, k):
        return {"work": (3, k)}

    def forward_calls(self, k, kind):
        if k == 1:
            return [Call(sigmoid_rows, "Yhat", "P"),
                    Call(soft_f1_binary_forward, "P", "T", "work", returns="E")]
        return [Call(softmax_forward, "Yhat", "P"),
                Call(soft_f1_forward, "P", "T", "work", returns="E")]

    def backward_calls(self, k, kind):
        if k == 1:
            return [Call(soft_f1_binary_backward, "P", "T", "work", "dYhat")]
        return [Call(soft_f1_backward, "P", "T", "work", "dP"),
                Call(softmax_backward, "P", "dP", "dYhat")]

    def transform(self, Yhat):
        if Yhat.shape[1] == 1:
            return 1.0 / (1.0 + np.exp(-Yhat))
        return CrossEntropy.transform(self, Yhat)

    def onnx_nodes(self, g, Yhat, k):
        if k == 1:
            return g.op("Sigmoid", Yhat, out="sigmoid")
        return g.op("Softmax", Yhat, out="softmax", axis=-1)

    def pred_rule(self, k):
        return KM.PRED_POSITIVE if k == 1 else KM.PRED_ARGMAX


def check_loss_fits(loss_name, last_layer, width, task, n_outputs, *, last, data):
    """The loss ``loss_name`` for a model whose last layer (``last_layer``, named ``last`` in
    errors) gives ``width`` outputs, on data (named ``data``) of ``task`` with ``n_outputs``
    classes or target columns; returns the loss.
    Raises ConfigError naming the key (a config) or the argument (code)."""
    from .errors import ConfigError
    loss = get(loss_name)
    if task == "classification":
        if not loss.classification and not loss.accepts_class_ids:
            raise ConfigError(f"loss: '{loss_name}' is a regression loss but {data} "
                              f"is a classification task (use cross_entropy)")
        ok = width == n_outputs or (width == 1 and n_outputs == 2 and loss.one_output_for_two_classes)
        if not ok:
            raise ConfigError(f"{last}: the last layer gives {width} outputs but {data} "
                              f"has {n_outputs} classes (set its units to {n_outputs})")
    else:
        if loss.classification:
            raise ConfigError(f"loss: '{loss_name}' needs class labels but {data} "
                              f"is a regression task (use mse)")
        if width != n_outputs:
            raise ConfigError(f"{last}: the last layer gives {width} outputs but {data} "
                              f"has {n_outputs} target columns")
    try:
        loss.check_outputs(width)
    except ValueError as e:
        raise ConfigError(f"loss: {e}") from None
    if loss.on_logits and getattr(last_layer, "outputs_probabilities", False):
        raise ConfigError(f"{last}: '{loss_name}' works on logits and applies softmax "
                          f"itself; remove the final softmax layer")
    return loss
