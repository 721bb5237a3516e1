"""The trainer's fast path: whole runs of mini-batches in compiled code.

:class:`CompiledLoop` describes a :class:`~mlpjit.Sequential` of built-in layers as arrays and
tuples of buffers (allocated once), and calls :func:`mlpjit.kernels.epoch.train_batches`
on chunks of batches.  Between chunks Python updates the progress bar and checks for Ctrl-C;
inside a chunk no Python runs.  The layers' own kernels do the work, so this path computes what
the layer-by-layer path computes (tested to agree).

Used when every layer is a built-in ``Dense``/``Dropout``/``Activation``/``Softmax`` with a
built-in activation and the loss is ``cross_entropy`` (class ids), ``binary_cross_entropy``
(one output), ``mse`` or ``sum_squares``; otherwise the trainer runs the layers from Python.
"""

import numpy as np

from . import activations as _acts
from .kernels import epoch as KE
from .kernels import misc as KM
from .layers import Activation, Dense, Dropout, Softmax
from .losses import MSE, BinaryCrossEntropy, CrossEntropy, SumSquares
from .optim import SGD, Adam

CHUNK_EXAMPLES = 16384  # examples per compiled call: Ctrl-C and the progress bar react within one


def _builtin_activation(act):
    return type(act) in _acts.ACTIVATIONS.values()


def unsupported_reason(model, loss, optimizer, task, y):
    """None if the compiled loop can train this combination, else why not."""
    for i, layer in enumerate(model.layers):
        if type(layer) not in (Dense, Dropout, Activation, Softmax):
            return f"layer {i} ({type(layer).__name__}) is not a built-in layer"
        if isinstance(layer, (Dense, Activation)) and not _builtin_activation(layer.activation):
            return f"layer {i} has a custom activation"
    if type(optimizer) not in (SGD, Adam):
        return "custom optimizer"
    k = model.layers[-1].out_features if isinstance(model.layers[-1], Dense) else None
    if type(loss) is CrossEntropy:
        return None if task == "classification" else "cross_entropy needs class ids"
    if type(loss) is BinaryCrossEntropy:
        return None if task == "classification" and k == 1 else "binary_cross_entropy with several outputs"
    if type(loss) in (MSE, SumSquares):
        return None
    return f"loss {loss.name}"


class CompiledLoop:
    """Buffers and arrays for :func:`~mlpjit.kernels.epoch.train_batches` (built once per run)."""

    def __init__(self, model, loss, optimizer, X, y, x_scale, task, batch_size, clip):
        dtype = model.dtype
        self.model, self.optimizer = model, optimizer
        self.X, self.x_scale, self.bs = X, float(x_scale), int(batch_size)
        layers = model.layers
        L = len(layers)
        bs = self.bs
        self.kinds = np.zeros(L, np.int64)
        self.acts = np.zeros(L, np.int64)
        self.alphas = np.zeros(L, np.float64)
        self.ps = np.zeros(L, np.float64)
        dummy2 = np.zeros((1, 1), dtype)
        # per-layer arrays travel as homogeneous tuples (Numba indexes them at run time; unlike
        # typed lists they need no compilation at start-up and cache with the loop)
        As, bvec, dAs, dbs = [], [], [], []
        Ss, Ys, dSs, dXs, masks, Us = [], [], [], [], [], []
        width = X.shape[1]
        self.dropouts = []
        for l, layer in enumerate(layers):
            w_in = width
            if isinstance(layer, Dense):
                self.kinds[l] = KE.DENSE
                act = layer.activation
                self.acts[l], self.alphas[l] = act.code, act._alpha()
                width = layer.out_features
                As.append(layer.A), bvec.append(layer.b), dAs.append(layer.dA), dbs.append(layer.db)
                S = np.zeros((bs, width), dtype)
                Ss.append(S)
                Ys.append(S if act.code == _acts.Identity.code else np.zeros((bs, width), dtype))
                dSs.append(np.zeros((bs, width), dtype))
            else:
                As.append(dummy2), bvec.append(np.zeros(1, dtype))
                dAs.append(dummy2), dbs.append(np.zeros(1, dtype))
                Ss.append(dummy2), dSs.append(dummy2)
                Ys.append(np.zeros((bs, width), dtype))
                if isinstance(layer, Dropout):
                    self.kinds[l] = KE.DROPOUT
                    self.ps[l] = layer.p
                elif isinstance(layer, Activation):
                    self.kinds[l] = KE.ACTIVATION
                    self.acts[l], self.alphas[l] = layer.activation.code, layer.activation._alpha()
                else:
                    self.kinds[l] = KE.SOFTMAX
            dXs.append(np.zeros((bs, w_in), dtype) if l > 0 else dummy2)
            if isinstance(layer, Dropout):
                masks.append(np.zeros((bs, width), dtype))
                chunk = max(1, CHUNK_EXAMPLES // bs) * bs
                Us.append(np.zeros(chunk * width, np.float64))
                self.dropouts.append((l, layer, width))
            else:
                masks.append(dummy2)
                Us.append(np.zeros(1, np.float64))
        self.As, self.bvec, self.dAs, self.dbs = tuple(As), tuple(bvec), tuple(dAs), tuple(dbs)
        self.Ss, self.Ys, self.dSs, self.dXs = tuple(Ss), tuple(Ys), tuple(dSs), tuple(dXs)
        self.masks, self.Us = tuple(masks), tuple(Us)
        k = width
        n = X.shape[0]
        # targets: class ids for cross-entropy and accuracy, float rows for the other losses
        if task == "classification":
            self.labels = np.ascontiguousarray(y, dtype=np.int64)
        else:
            self.labels = np.zeros(n, np.int64)
        if type(loss) is CrossEntropy:
            self.loss_code = KE.CROSS_ENTROPY
            self.targets = np.zeros((n, 0), dtype)
        elif type(loss) is BinaryCrossEntropy:
            self.loss_code = KE.BINARY_CROSS_ENTROPY
            self.targets = self.labels.reshape(n, 1).astype(dtype)
        else:
            self.loss_code = KE.MSE if type(loss) is MSE else KE.SUM_SQUARES
            if task == "classification":
                if k > 1:
                    self.targets = np.zeros((n, k), dtype)
                    self.targets[np.arange(n), self.labels] = 1
                else:
                    self.targets = self.labels.reshape(n, 1).astype(dtype)
            else:
                self.targets = np.ascontiguousarray(np.asarray(y).reshape(n, -1), dtype=dtype)
        # accuracy: the loss's own rule, as the layer-by-layer path counts it
        self.pred = loss.pred_rule(k) if task == "classification" else KM.PRED_NONE
        self.Xbuf = np.zeros((bs, X.shape[1]), dtype)
        self.lbuf = np.zeros(bs, np.int64)
        self.tbuf = np.zeros((bs, self.targets.shape[1]), dtype)
        self.P = np.zeros((bs, k), dtype)
        self.dOut = np.zeros((bs, k), dtype)
        # parameters, gradients and optimizer state as flat views, in model.parameters() order
        names = [name for name, _, _ in model.parameters()]
        self.params = tuple(p.reshape(-1) for _, p, _ in model.parameters())
        self.grads = tuple(g.reshape(-1) for _, _, g in model.parameters())
        self.weight_names = [nm for nm in names if nm.endswith(".A")]
        self.weight_grad_index = np.array([names.index(nm) for nm in self.weight_names], np.int64)
        if isinstance(optimizer, SGD):
            self.opt = (KE.SGD, optimizer.momentum, optimizer.nesterov, optimizer.weight_decay,
                        0.0, 0.0, 0.0)
            self.slot1 = tuple(optimizer.state["velocity"][nm].reshape(-1) for nm in names)
            self.slot2 = self.slot1  # unused by SGD
        else:
            self.opt = (KE.ADAM, 0.0, False, optimizer.weight_decay, optimizer.beta1,
                        optimizer.beta2, optimizer.eps)
            self.slot1 = tuple(optimizer.state["m"][nm].reshape(-1) for nm in names)
            self.slot2 = tuple(optimizer.state["v"][nm].reshape(-1) for nm in names)
        clip = clip or {}
        if clip.get("norm") is not None:
            self.clip = (KE.CLIP_NORM, float(clip["norm"]))
        elif clip.get("value") is not None:
            self.clip = (KE.CLIP_VALUE, float(clip["value"]))
        else:
            self.clip = (KE.CLIP_NONE, 0.0)
        self.acc = np.zeros(KE.ACC_SIZE)
        self.layer_norms = np.zeros(len(self.weight_names))
        self.chunk_batches = max(1, CHUNK_EXAMPLES // bs)

    def run(self, perm, b_start, b_stop, lr, acc):
        """Train batches [b_start, b_stop) of ``perm``; update the trainer's ``acc`` dict.

        Returns (batches done, None) or, on a NaN/Inf, (batches done, (batch, loss, norm))."""
        n = perm.shape[0]
        for l, layer, width in self.dropouts:  # the same draws the Dropout layer would make
            total = (min(b_stop * self.bs, n) - b_start * self.bs) * width
            layer.rng.random(out=self.Us[l][:total])
        a = self.acc
        a[:] = 0.0
        a[0], a[1], a[2], a[3], a[4] = acc["loss"], acc["correct"], acc["seen"], acc["grad_norm"], acc["batches"]
        self.layer_norms[:] = [acc["layer_norms"][nm] for nm in self.weight_names]
        opt, mom, nest, wd, b1, b2, eps = self.opt
        done = KE.train_batches(
            self.X, self.x_scale, self.labels, self.targets, perm, self.bs, b_start, b_stop,
            self.kinds, self.acts, self.alphas, self.ps, self.As, self.bvec, self.dAs, self.dbs,
            self.Xbuf, self.lbuf, self.tbuf, self.Ss, self.Ys, self.dSs, self.dXs, self.masks, self.Us,
            self.loss_code, self.pred, self.P, self.dOut,
            self.params, self.grads, self.weight_grad_index, self.slot1, self.slot2,
            opt, lr, mom, nest, wd, b1, b2, eps, self.optimizer.t,
            self.clip[0], self.clip[1], a, self.layer_norms)
        self.optimizer.t += done
        acc["loss"], acc["correct"], acc["seen"] = float(a[0]), int(a[1]), int(a[2])
        acc["grad_norm"], acc["batches"] = float(a[3]), int(a[4])
        for nm, v in zip(self.weight_names, self.layer_norms):
            acc["layer_norms"][nm] = float(v)
        bad = (int(a[5]), float(a[6]), float(a[7])) if a[5] > 0 else None
        return done, bad
