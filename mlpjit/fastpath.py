"""The trainer's fast path: whole runs of mini-batches in compiled code.

:class:`CompiledLoop` describes a :class:`~mlpjit.Sequential` of built-in layers as arrays and
tuples of buffers (allocated once), and calls :func:`mlpjit.kernels.epoch.train_batches`
on chunks of batches.  Between chunks Python updates the progress bar and checks for Ctrl-C;
inside a chunk no Python runs.  The layers' own kernels do the work, so this path computes what
the layer-by-layer path computes (tested to agree).

Used when every layer is a built-in layer (``Dense``, ``Conv2D``, pooling, ``Flatten``,
``Residual``, ``Dropout``, ``Activation``, ``Softmax``) with a built-in activation and the loss is ``cross_entropy`` (class ids), ``binary_cross_entropy``
(one output), ``mse`` or ``sum_squares``; otherwise the trainer runs the layers from Python.
"""

import numpy as np

from . import activations as _acts
from . import _memory
from .kernels import epoch as KE
from .kernels import linear as KL
from .kernels import misc as KM
from .layers import (Activation, AvgPool2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Residual,
                     Softmax, sparse_scratch)
from .losses import MSE, BinaryCrossEntropy, CrossEntropy, SumSquares
from .optim import SGD, Adam

CHUNK_EXAMPLES = 16384  # examples per compiled call: Ctrl-C and the progress bar react within one
DRAW_BUDGET = 32 * 2 ** 20  # bytes of dropout draws made ahead of one call (float64 each)


def _builtin_activation(act):
    return type(act) in _acts.ACTIVATIONS.values()


BUILTIN = (Dense, Dropout, Activation, Softmax, Conv2D, MaxPool2D, AvgPool2D, Flatten, Residual)


def unsupported_reason(model, loss, optimizer, task, y):
    """None if the compiled loop can train this combination, else why not."""
    for i, layer in enumerate(model.walk()):
        if type(layer) not in BUILTIN:
            return f"layer {type(layer).__name__} is not a built-in layer"
        if isinstance(layer, (Dense, Conv2D, Activation)) and not _builtin_activation(layer.activation):
            return f"layer {layer!r} has a custom activation"
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


def _flat(layers):
    """The layers in compiled-loop order: a residual block becomes (block, "begin"), its layers,
    (block, "end")."""
    out = []
    for layer in layers:
        if isinstance(layer, Residual):
            out.append((layer, "begin"))
            out.extend(_flat(layer.layers))
            out.append((layer, "end"))
        else:
            out.append((layer, None))
    return out


class CompiledLoop:
    """Buffers and arrays for :func:`~mlpjit.kernels.epoch.train_batches` (built once per run).

    ``X`` is (N, d): image data comes as rows of C·H·W values, and ``input_shape`` gives the
    shape of one example, e.g. (1, 28, 28)."""

    def __init__(self, model, loss, optimizer, X, y, x_scale, task, batch_size, clip,
                 input_shape=None):
        dtype = model.dtype
        self.model, self.optimizer = model, optimizer
        self.X, self.x_scale, self.bs = X, float(x_scale), int(batch_size)
        flat = _flat(model.layers)
        L = len(flat)
        bs = self.bs
        self.kinds = np.zeros(L, np.int64)
        self.acts = np.zeros(L, np.int64)
        self.alphas = np.zeros(L, np.float64)
        self.ps = np.zeros(L, np.float64)
        self.geo = np.zeros((L, KE.G_SIZE), np.int64)
        dummy2 = np.zeros((1, 1), dtype)
        dummy1 = np.zeros(1, dtype)
        # per-layer arrays travel as homogeneous tuples (Numba indexes them at run time; unlike
        # typed lists they need no compilation at start-up and cache with the loop)
        As, bvec, dAs, dbs = [], [], [], []
        Ss, Ys, dSs, dXs, masks, Us = [], [], [], [], [], []
        cols, STs, dcols = [], [], []
        sp_idx, sp_val, sp_int, sp_vals = [], [], [], []
        self.sparse = np.zeros(L, np.int64)
        shape = tuple(input_shape) if input_shape is not None else (X.shape[1],)
        self.Xbuf = _memory.zeros((bs, X.shape[1]), dtype)
        self.dropouts = []
        begins = {}
        for l, (layer, end) in enumerate(flat):
            in_shape = shape
            w_in = int(np.prod(in_shape))
            if end is None:
                shape = layer.output_shape(in_shape)
            width = int(np.prod(shape))
            A, b, dA, db, S, dS = dummy2, dummy1, dummy2, dummy1, dummy2, dummy2
            Y = None
            col = ST = dcol = dummy1
            if isinstance(layer, (Dense, Conv2D)):
                act = layer.activation
                self.acts[l], self.alphas[l] = act.code, act._alpha()
                S = _memory.zeros((bs, width), dtype)
                Y = S if act.code == _acts.Identity.code else _memory.zeros((bs, width), dtype)
                dS = _memory.zeros((bs, width), dtype)
                b, db = layer.b, layer.db
                if isinstance(layer, Dense):
                    self.kinds[l] = KE.DENSE
                    A, dA = layer.A, layer.dA
                    if bs * w_in * width > KL.SMALL:  # may skip its input's zeros (Dense's rule)
                        self.sparse[l] = 1
                else:
                    self.kinds[l] = KE.CONV
                    A, dA = layer.A2, layer.dA.reshape(layer.out_channels, -1)
                    C, H, W = in_shape
                    OH, OW, ph, pw = layer.geometry(H, W)
                    self.geo[l] = (C, H, W, layer.out_channels, OH, OW, *layer.kernel_size,
                                   *layer.stride, ph, pw)
                    ckk = C * layer.kernel_size[0] * layer.kernel_size[1]
                    col = np.zeros(ckk * bs * OH * OW, dtype)
                    ST = np.zeros(layer.out_channels * bs * OH * OW, dtype)
                    dcol = np.zeros(ckk * bs * OH * OW, dtype) if l > 0 else dummy1
            elif isinstance(layer, (MaxPool2D, AvgPool2D)):
                self.kinds[l] = KE.MAXPOOL if isinstance(layer, MaxPool2D) else KE.AVGPOOL
                C, H, W = in_shape
                _, OH, OW = shape
                self.geo[l] = (C, H, W, C, OH, OW, *layer.size, *layer.stride, 0, 0)
            elif isinstance(layer, Flatten):
                self.kinds[l] = KE.FLATTEN
                Y = self.Xbuf if l == 0 else Ys[l - 1]  # the same values, seen as rows
            elif isinstance(layer, Residual):
                if end == "begin":
                    self.kinds[l] = KE.RES_BEGIN
                    begins[id(layer)] = l
                else:
                    self.kinds[l] = KE.RES_END
                    l_b = begins[id(layer)]
                    self.geo[l, 0], self.geo[l_b, 0] = l_b, l
            elif isinstance(layer, Dropout):
                self.kinds[l] = KE.DROPOUT
                self.ps[l] = layer.p
            elif isinstance(layer, Activation):
                self.kinds[l] = KE.ACTIVATION
                self.acts[l], self.alphas[l] = layer.activation.code, layer.activation._alpha()
            else:
                self.kinds[l] = KE.SOFTMAX
            scratch = sparse_scratch(*((bs, w_in) if self.sparse[l] else (1, 1)), dtype)
            for group, array in zip((sp_idx, sp_val, sp_int, sp_vals), scratch):
                group.append(array)
            if Y is None:
                Y = _memory.zeros((bs, width), dtype)
            As.append(A), bvec.append(b), dAs.append(dA), dbs.append(db)
            Ss.append(S), Ys.append(Y), dSs.append(dS)
            dXs.append(_memory.zeros((bs, w_in), dtype) if l > 0 else dummy2)
            cols.append(col), STs.append(ST), dcols.append(dcol)
            if isinstance(layer, Dropout):
                masks.append(np.zeros((bs, width), dtype))
                Us.append(None)  # sized below, once the chunk length is known
                self.dropouts.append((l, layer, width))
            else:
                masks.append(dummy2)
                Us.append(np.zeros(1, np.float64))
        self.As, self.bvec, self.dAs, self.dbs = tuple(As), tuple(bvec), tuple(dAs), tuple(dbs)
        self.Ss, self.Ys, self.dSs, self.dXs = tuple(Ss), tuple(Ys), tuple(dSs), tuple(dXs)
        # a call's dropout draws are made ahead (see run): wide feature maps shorten the chunk
        drop_width = sum(width for _, _, width in self.dropouts)
        self.chunk_batches = max(1, CHUNK_EXAMPLES // bs)
        if drop_width:
            self.chunk_batches = max(1, min(self.chunk_batches, DRAW_BUDGET // (8 * bs * drop_width)))
        for l, _, width in self.dropouts:
            Us[l] = np.zeros(self.chunk_batches * bs * width, np.float64)
        self.masks, self.Us = tuple(masks), tuple(Us)
        self.cols, self.STs, self.dcols = tuple(cols), tuple(STs), tuple(dcols)
        self.sp = (tuple(sp_idx), tuple(sp_val), tuple(sp_int), tuple(sp_vals))
        width = int(np.prod(shape))
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
        # the image kinds' kernels are compiled only for networks that have them
        has_images = any(k in (KE.CONV, KE.MAXPOOL, KE.AVGPOOL) for k in self.kinds)
        self.images = self.geo if has_images else None
        # the sparse-input kernels are compiled only for networks with a layer large enough
        self.sparse_flags = self.sparse if self.sparse.any() else None

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
            self.kinds, self.acts, self.alphas, self.ps, self.geo, self.images, self.As, self.bvec,
            self.dAs, self.dbs, self.Xbuf, self.lbuf, self.tbuf, self.Ss, self.Ys, self.dSs, self.dXs,
            self.masks, self.Us, self.cols, self.STs, self.dcols,
            self.sparse_flags, *self.sp, self.loss_code, self.pred, self.P, self.dOut,
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
