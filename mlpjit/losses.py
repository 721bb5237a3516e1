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
``smape``                  mean |ŷ − y|/(|ŷ| + |y|)                                     see ``kernels.regression``
``soft_f1``                1 − macro-F1 of the soft confusion matrix of p = softmax(ŷ)  chain rule through the sums
=========================  ==========================================================  ===========================

Targets: class ids (int array of shape (N,)) or one-hot / probability rows (N, k) for the
classification losses; values (N, k), or (N,) when k = 1, for the regression losses (class
ids given to a regression loss with k > 1 outputs are one-hot encoded, as scikit-learn does).
"""

import numpy as np

from ._registry import lookup
from .kernels import misc as KM
from .kernels import regression as KR
from .kernels import softmax as KS


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
    """Base class.  Subclasses implement ``_forward(Yhat, target) -> float`` and
    ``_backward() -> dYhat``; ``forward`` validates and ``backward`` checks the order of calls."""

    name = "loss"
    classification = False     # targets are classes; accuracy applies

    def __init__(self):
        self._shape = None
        self._ready = False

    def forward(self, Yhat, target):
        """E(Ŷ, Y) as a float; keeps what ``backward`` needs."""
        Yhat = _as_output(Yhat, self.name)
        if Yhat.shape != self._shape or Yhat.dtype != self.dYhat.dtype:
            self._allocate(Yhat)
            self._shape = Yhat.shape
        value = self._forward(Yhat, target)
        self._ready = True
        return float(value)

    __call__ = forward

    def backward(self):
        """∂E/∂Ŷ for the last ``forward``."""
        if not self._ready:
            raise RuntimeError(f"{self.name}: backward() called before forward()")
        return self._backward()

    def _allocate(self, Yhat):
        self.dYhat = np.empty_like(Yhat)

    def check_outputs(self, k):
        """Raise ValueError if this loss cannot be used on k outputs."""

    def transform(self, Yhat):
        """The model's outputs as the user wants them: probabilities for classifiers."""
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


class MSE(Loss):
    """E = (1/(N·k)) Σᵢⱼ (ŷᵢⱼ − yᵢⱼ)²;  dŶ = 2(Ŷ − Y)/(N·k)."""
    name = "mse"
    _f, _b = KR.mse_forward, KR.mse_backward

    def _forward(self, Yhat, target):
        self.Yhat, self.T = Yhat, _targets(target, Yhat, self.name, True)
        return type(self)._f(Yhat, self.T)

    def _backward(self):
        type(self)._b(self.Yhat, self.T, self.dYhat)
        return self.dYhat


class SumSquares(MSE):
    """E = (1/N) Σᵢ ½‖ŷᵢ − yᵢ‖²;  dŶ = (Ŷ − Y)/N."""
    name = "sum_squares"
    _f, _b = KR.sum_squares_forward, KR.sum_squares_backward


class SMAPE(MSE):
    """E = mean |ŷ − y|/(|ŷ| + |y|) (0 where ŷ = y = 0);
    dŷ = [sign(ŷ − y)/(|ŷ| + |y|) − sign(ŷ)|ŷ − y|/(|ŷ| + |y|)²]/count."""
    name = "smape"
    _f, _b = KR.smape_forward, KR.smape_backward


class CrossEntropy(Loss):
    """Softmax cross-entropy on logits S, fused:

    E = −(1/N) Σᵢⱼ yᵢⱼ ln pᵢⱼ = (1/N) Σᵢ (LSE(sᵢ) − s_{i,yᵢ}),  p = softmax(S);
    dS = (p − y)/N  (for targets whose rows sum to 1; (p·Σⱼyᵢⱼ − y)/N in general).
    Targets: class ids (N,) or one-hot/probability rows (N, k).  Needs k ≥ 2 outputs.
    """
    name = "cross_entropy"
    classification = True

    def _allocate(self, Yhat):
        super()._allocate(Yhat)
        self.P = np.empty_like(Yhat)

    def check_outputs(self, k):
        if k < 2:
            raise ValueError("cross_entropy needs at least 2 outputs (one logit per class); "
                             "for one output use binary_cross_entropy")

    def _forward(self, Yhat, target):
        self.check_outputs(Yhat.shape[1])
        T = _targets(target, Yhat, self.name, False)
        self.T = T
        if T.ndim == 1:
            return KS.cross_entropy_labels_forward(Yhat, T, self.P)
        if (T < 0).any():
            raise ValueError(f"{self.name}: target probabilities must be ≥ 0")
        return KS.cross_entropy_probs_forward(Yhat, T, self.P)

    def _backward(self):
        if self.T.ndim == 1:
            KS.cross_entropy_labels_backward(self.P, self.T, self.dYhat)
        else:
            KS.cross_entropy_probs_backward(self.P, self.T, self.dYhat)
        return self.dYhat

    def transform(self, Yhat):
        P = np.empty_like(Yhat)
        KS.softmax_forward(np.ascontiguousarray(Yhat), P)
        return P

    def pred_rule(self, k):
        return KM.PRED_ARGMAX


class BinaryCrossEntropy(Loss):
    """Sigmoid cross-entropy on logits S, element-wise (one or several independent labels):

    E = −mean[y ln σ(s) + (1 − y) ln(1 − σ(s))] = mean[max(s, 0) − s·y + ln(1 + e^−|s|)];
    dS = (σ(S) − Y)/(N·k).   Targets: 0/1 labels (N,) for one output, or (N, k) in [0, 1].
    """
    name = "binary_cross_entropy"
    classification = True

    def _forward(self, Yhat, target):
        target = np.asarray(target)
        if target.ndim == 1 and Yhat.shape[1] != 1:
            raise ValueError(f"{self.name}: {Yhat.shape[1]} outputs need targets of shape "
                             f"(N, {Yhat.shape[1]}), got {target.shape}")
        self.S, self.T = Yhat, _targets(target, Yhat, self.name, True)
        if ((self.T < 0) | (self.T > 1)).any():
            raise ValueError(f"{self.name}: targets must lie in [0, 1]")
        return KS.binary_cross_entropy_forward(Yhat, self.T)

    def _backward(self):
        KS.binary_cross_entropy_backward(self.S, self.T, self.dYhat)
        return self.dYhat

    def transform(self, Yhat):
        return 1.0 / (1.0 + np.exp(-Yhat))

    def pred_rule(self, k):
        return KM.PRED_POSITIVE if k == 1 else KM.PRED_ARGMAX


class SoftF1(Loss):
    """1 − F1 on a "soft" confusion matrix, on logits S.

    k ≥ 2 outputs: p = softmax(s); each example adds its probability vector p to the row of its
    true class, C = Tᵀ·P; macro F1 = (1/k) Σⱼ 2Cⱼⱼ/(Σᵢ Cᵢⱼ + Σᵢ Cⱼᵢ);  E = 1 − macro F1.
    One output: p = σ(s), E = 1 − 2TP/(Σp + Σy) with TP = Σ pᵢyᵢ (F1 of the positive class).
    Backward: the chain rule through the sums, then through softmax (or σ).
    """
    name = "soft_f1"
    classification = True

    def _allocate(self, Yhat):
        super()._allocate(Yhat)
        self.P = np.empty_like(Yhat)
        self.dP = np.empty_like(Yhat)
        self.work = np.empty((3, Yhat.shape[1]), Yhat.dtype)

    def _forward(self, Yhat, target):
        self.T = _targets(target, Yhat, self.name, True)
        if Yhat.shape[1] == 1:
            KR.sigmoid_rows(Yhat, self.P)
            return KR.soft_f1_binary_forward(self.P, self.T, self.work)
        KS.softmax_forward(Yhat, self.P)
        return KR.soft_f1_forward(self.P, self.T, self.work)

    def _backward(self):
        if self.P.shape[1] == 1:
            KR.soft_f1_binary_backward(self.P, self.T, self.work, self.dYhat)
        else:
            KR.soft_f1_backward(self.P, self.T, self.work, self.dP)
            KS.softmax_backward(self.P, self.dP, self.dYhat)
        return self.dYhat

    def transform(self, Yhat):
        if Yhat.shape[1] == 1:
            return 1.0 / (1.0 + np.exp(-Yhat))
        return CrossEntropy.transform(self, Yhat)

    def pred_rule(self, k):
        return KM.PRED_POSITIVE if k == 1 else KM.PRED_ARGMAX


LOSSES = {cls.name: cls for cls in (MSE, SumSquares, CrossEntropy, BinaryCrossEntropy, SMAPE, SoftF1)}


def get(spec):
    """A loss from its name (``"cross_entropy"``) or a :class:`Loss` instance."""
    if isinstance(spec, Loss):
        return spec
    return lookup(LOSSES, "loss", spec)()


def names():
    return sorted(LOSSES)
