"""A compiled training loop over a range of mini-batches (the fast path of the trainer).

``train_batches`` runs, for each batch, exactly what the layer-by-layer path runs — gather,
forward, loss, backward, gradient norms, clipping, optimizer step — by calling the same
kernels the layers, losses and optimizers call (``dense_forward``, ``activation_backward``,
``cross_entropy_labels_forward``, ``sgd_update``, ...), so the formulas live in one place and
both paths give the same numbers.  What it removes is the Python between the kernels.

The network is described by arrays (no objects cross into compiled code):
``kinds[l]`` (DENSE, DROPOUT, ACTIVATION, SOFTMAX, CONV, MAXPOOL, AVGPOOL, FLATTEN, RES_BEGIN,
RES_END), ``acts[l]``/``alphas[l]`` (activation code and parameter), ``ps[l]`` (dropout
probability), ``geo[l]`` (image sizes, see ``G_*``); per-layer buffers come in homogeneous
tuples.  Every activation buffer is a (batch, values) matrix; convolution and pooling view
theirs as (batch, C, H, W).  A residual block y = x + F(x) is laid out flat as RES_BEGIN (its
output is x), F's layers, RES_END (y = F's output + x, and its partner's index in ``geo``);
backward, RES_END passes dY to F and RES_BEGIN adds F's dX to it (x is used twice, so it
receives the sum of both derivatives).

The image kinds (CONV, MAXPOOL, AVGPOOL) run only when ``images`` is the ``geo`` array; for
networks without them the trainer passes None, and Numba prunes those branches before typing,
so an MLP run never compiles the image kernels (start-up time with a cold cache).  The other
kinds are written out in the loop itself, which was measurably faster on tiny networks than a
helper taking the buffer tuples.  The loop works on borrowed arrays (``intrinsics.borrowed``):
its caller keeps them alive, so the views it makes and the kernels it calls count no references.

A data set larger than ``PREFETCH_BYTES`` does not stay in cache, and a batch's rows are scattered
over it: each row gathered would wait for memory (10 µs for 32 MNIST rows).  The loop asks for the
next batch's rows (``prefetch_rows``) right after gathering the current one, so they arrive while
the current batch computes.
"""

import math

import numpy as np

from .._jit import jit
from .activations import IDENTITY, activation_backward, activation_forward
from .conv import (add_into, avgpool2d_backward, avgpool2d_forward, conv2d_backward_input,
                   conv2d_backward_params, conv2d_forward, maxpool2d_backward, maxpool2d_forward)
from .intrinsics import borrowed
from .linear import (dense_backward_input, dense_backward_params, dense_forward, sparse_cols,
                     sparse_dense_backward_params, sparse_dense_forward, sparse_pays, sparse_rows,
                     sparse_views)
from .misc import (PRED_NONE, adam_update, clip_norm_factor, clip_value_inplace, copy_into, count_correct,
                   dropout_forward, gather_rows, mul_into, prefetch_rows, scale_inplace, sgd_update,
                   sum_squares)
from .regression import mse_backward, mse_forward, sum_squares_backward, sum_squares_forward
from .softmax import (binary_cross_entropy_backward, binary_cross_entropy_forward,
                      cross_entropy_labels_backward, cross_entropy_labels_forward,
                      softmax_backward, softmax_forward)

DENSE, DROPOUT, ACTIVATION, SOFTMAX = 0, 1, 2, 3
CONV, MAXPOOL, AVGPOOL, FLATTEN, RES_BEGIN, RES_END = 4, 5, 6, 7, 8, 9
# geo[l]: input C, H, W; output O, OH, OW; window KH, KW; stride sh, sw; padding before ph, pw.
# For RES_BEGIN and RES_END, geo[l, 0] is the index of the other end of the block.
G_SIZE = 12
CROSS_ENTROPY, BINARY_CROSS_ENTROPY, MSE, SUM_SQUARES = 0, 1, 2, 3
CLIP_NONE, CLIP_NORM, CLIP_VALUE = 0, 1, 2
SGD, ADAM = 0, 1

# acc (float64[:]): 0 loss·m summed, 1 correct, 2 examples seen, 3 grad norm summed, 4 batches,
#                   5 the batch (1-based) where a NaN/Inf appeared, 6 the offending loss, 7 its norm
ACC_SIZE = 8
PREFETCH_BYTES = 4 * 2 ** 20  # data sets above this size have their next batch prefetched


@jit
def _geo(geo, l):
    g = geo[l]
    return g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11]


@jit
def _forward_image_layer(l, kind, xin, m, acts, alphas, geo, As, bs_, Ss, Ys, cols, STs):
    """Layer l's forward pass for CONV, MAXPOOL and AVGPOOL (buffers seen as (m, C, H, W))."""
    C, H, W, O, OH, OW, KH, KW, sh, sw, ph, pw = _geo(geo, l)
    X4 = xin.reshape((m, C, H, W))
    if kind == CONV:
        S = Ss[l][:m]
        cw = cols[l][:C * KH * KW * m * OH * OW].reshape((C * KH * KW, m * OH * OW))
        st = STs[l][:O * m * OH * OW].reshape((O, m * OH * OW))
        conv2d_forward(X4, As[l], bs_[l], KH, KW, sh, sw, ph, pw, cw, st, S.reshape((m, O, OH, OW)))
        if acts[l] != IDENTITY:
            activation_forward(acts[l], alphas[l], S.reshape(-1), Ys[l][:m].reshape(-1))
    elif kind == MAXPOOL:
        maxpool2d_forward(X4, KH, KW, sh, sw, Ys[l][:m].reshape((m, C, OH, OW)))
    else:
        avgpool2d_forward(X4, KH, KW, sh, sw, Ys[l][:m].reshape((m, C, OH, OW)))


@jit
def _backward_image_layer(l, kind, dY, m, acts, alphas, geo, As, dAs, dbs, Ss, Ys, dSs, dXs,
                          cols, STs, dcols):
    """Layer l's backward pass for CONV, MAXPOOL and AVGPOOL (its dX goes to dXs[l])."""
    C, H, W, O, OH, OW, KH, KW, sh, sw, ph, pw = _geo(geo, l)
    if kind == CONV:
        if acts[l] != IDENTITY:
            dS = dSs[l][:m]
            activation_backward(acts[l], alphas[l], Ss[l][:m].reshape(-1),
                                Ys[l][:m].reshape(-1), dY.reshape(-1), dS.reshape(-1))
        else:
            dS = dY
        cw = cols[l][:C * KH * KW * m * OH * OW].reshape((C * KH * KW, m * OH * OW))
        st = STs[l][:O * m * OH * OW].reshape((O, m * OH * OW))
        conv2d_backward_params(dS.reshape((m, O, OH, OW)), cw, st, dAs[l], dbs[l])
        if l > 0:
            dc = dcols[l][:C * KH * KW * m * OH * OW].reshape((C * KH * KW, m * OH * OW))
            conv2d_backward_input(st, As[l], KH, KW, sh, sw, ph, pw, OH, OW, dc,
                                  dXs[l][:m].reshape((m, C, H, W)))
    elif kind == MAXPOOL:
        # (l ≥ 1: the loop stops before a first layer without parameters)
        maxpool2d_backward(Ys[l - 1][:m].reshape((m, C, H, W)), Ys[l][:m].reshape((m, C, OH, OW)),
                           dY.reshape((m, C, OH, OW)), KH, KW, sh, sw,
                           dXs[l][:m].reshape((m, C, H, W)))
    else:
        avgpool2d_backward(dY.reshape((m, C, OH, OW)), KH, KW, sh, sw,
                           dXs[l][:m].reshape((m, C, H, W)))


@jit
def train_batches(X, x_scale, labels, targets, perm, bs, b_start, b_stop,
                  kinds, acts, alphas, ps, geo, images, As, bs_, dAs, dbs,
                  Xbuf, lbuf, tbuf, Ss, Ys, dSs, dXs, masks, Us, cols, STs, dcols,
                  sparse, sp_idx, sp_val, sp_int, sp_vals, loss_code, pred, P, dOut,
                  params, grads, weight_grad_index, slot1, slot2,
                  opt_code, lr, momentum, nesterov, weight_decay, beta1, beta2, eps, step0,
                  clip_code, clip_c, acc, layer_norms):
    """Train on batches ``b_start ≤ b < b_stop`` of ``perm``; returns the number of batches done
    (fewer when a NaN/Inf loss or gradient appeared: then ``acc[5]`` holds that batch).
    ``images``: ``geo`` for networks with image kinds, else None (``cols``, ``STs``,
    ``dcols`` are then unused).  ``sparse``: None, or per layer 1 where a dense layer has
    scratch for skipping its input's zeros (``sp_*``, see ``linear.sparse_views``), used on the
    batches where ``sparse_pays``, as ``Dense`` decides."""
    # the caller keeps every array alive for the whole call: no reference counting inside
    X, labels, targets, perm = borrowed(X), borrowed(labels), borrowed(targets), borrowed(perm)
    As, bs_, dAs, dbs = borrowed(As), borrowed(bs_), borrowed(dAs), borrowed(dbs)
    Xbuf, lbuf, tbuf, P, dOut = borrowed(Xbuf), borrowed(lbuf), borrowed(tbuf), borrowed(P), borrowed(dOut)
    Ss, Ys, dSs, dXs = borrowed(Ss), borrowed(Ys), borrowed(dSs), borrowed(dXs)
    masks, Us = borrowed(masks), borrowed(Us)
    cols, STs, dcols = borrowed(cols), borrowed(STs), borrowed(dcols)
    sp_idx, sp_val, sp_int, sp_vals = borrowed(sp_idx), borrowed(sp_val), borrowed(sp_int), borrowed(sp_vals)
    params, grads, slot1, slot2 = borrowed(params), borrowed(grads), borrowed(slot1), borrowed(slot2)
    acc, layer_norms = borrowed(acc), borrowed(layer_norms)
    n = perm.shape[0]
    L = kinds.shape[0]
    u_off = np.zeros(L, np.int64)
    skipped = np.zeros(L, np.bool_)  # whether layer l's forward pass skipped zeros
    sums = np.zeros(len(grads))
    far = X.size * X.itemsize > PREFETCH_BYTES  # a data set that does not stay in cache
    done = 0
    for b in range(b_start, b_stop):
        lo = b * bs
        hi = min(lo + bs, n)
        m = hi - lo
        idx = perm[lo:hi]
        xb = Xbuf[:m]
        gather_rows(X, idx, x_scale, xb)
        if far and b + 1 < b_stop:  # the next batch's rows travel from memory while this one computes
            prefetch_rows(X, perm[hi:min(hi + bs, n)])
        for r in range(m):
            lbuf[r] = labels[idx[r]]
            for j in range(tbuf.shape[1]):
                tbuf[r, j] = targets[idx[r], j]
        # forward
        for l in range(L):
            xin = xb if l == 0 else Ys[l - 1][:m]
            kind = kinds[l]
            if kind == DENSE:
                S = Ss[l][:m]
                skipped[l] = False
                if sparse is not None:  # (pruned for networks without large dense layers)
                    if sparse[l] != 0 and sparse_pays(xin, S.shape[1]):
                        idx, val, cnt, _, _, _ = sparse_views(sp_idx[l], sp_val[l], sp_int[l],
                                                               sp_vals[l], m)
                        sparse_rows(xin, idx, val, cnt)
                        sparse_dense_forward(idx, val, cnt, As[l], bs_[l], S)
                        skipped[l] = True
                if not skipped[l]:
                    dense_forward(xin, As[l], bs_[l], S)
                if acts[l] != IDENTITY:
                    activation_forward(acts[l], alphas[l], S.reshape(-1), Ys[l][:m].reshape(-1))
            elif kind == DROPOUT:
                size = xin.size
                U = Us[l][u_off[l]:u_off[l] + size]
                u_off[l] += size
                p = ps[l]
                dropout_forward(xin.reshape(-1), U, p, 1.0 / (1.0 - p), Ys[l][:m].reshape(-1),
                                masks[l][:m].reshape(-1))
            elif kind == ACTIVATION:
                activation_forward(acts[l], alphas[l], xin.reshape(-1), Ys[l][:m].reshape(-1))
            elif kind == SOFTMAX:
                softmax_forward(xin, Ys[l][:m])
            elif kind == RES_BEGIN:
                copy_into(xin.reshape(-1), Ys[l][:m].reshape(-1))
            elif kind == RES_END:
                add_into(xin.reshape(-1), Ys[geo[l, 0]][:m].reshape(-1), Ys[l][:m].reshape(-1))
            elif kind != FLATTEN:  # (a flatten's output buffer is its input buffer)
                if images is not None:
                    _forward_image_layer(l, kind, xin, m, acts, alphas, images, As, bs_, Ss, Ys,
                                         cols, STs)
        out = Ys[L - 1][:m]
        Pm = P[:m]
        dO = dOut[:m]
        lb = lbuf[:m]
        tb = tbuf[:m]
        if loss_code == CROSS_ENTROPY:
            value = cross_entropy_labels_forward(out, lb, Pm)
            cross_entropy_labels_backward(Pm, lb, dO)
        elif loss_code == BINARY_CROSS_ENTROPY:
            value = binary_cross_entropy_forward(out, tb)
            binary_cross_entropy_backward(out, tb, dO)
        elif loss_code == MSE:
            value = mse_forward(out, tb)
            mse_backward(out, tb, dO)
        else:
            value = sum_squares_forward(out, tb)
            sum_squares_backward(out, tb, dO)
        if pred != PRED_NONE:
            acc[1] += count_correct(out, lb, pred)
        # backward
        dY = dO
        for l in range(L - 1, -1, -1):
            xin = xb if l == 0 else Ys[l - 1][:m]
            kind = kinds[l]
            if l == 0 and kind != DENSE and kind != CONV:
                break  # nothing before the first layer needs its dX
            if kind == FLATTEN:
                continue  # a flatten's dX is dY, in the same buffer
            if kind == DENSE:
                if acts[l] != IDENTITY:
                    dS = dSs[l][:m]
                    activation_backward(acts[l], alphas[l], Ss[l][:m].reshape(-1),
                                        Ys[l][:m].reshape(-1), dY.reshape(-1), dS.reshape(-1))
                else:
                    dS = dY
                if sparse is not None:
                    if skipped[l]:
                        idx, val, cnt, ptr, rows, vals = sparse_views(
                            sp_idx[l], sp_val[l], sp_int[l], sp_vals[l], m)
                        sparse_cols(idx, val, cnt, ptr, rows, vals)
                        sparse_dense_backward_params(ptr, rows, vals, dS, dAs[l], dbs[l])
                if not skipped[l]:
                    dense_backward_params(xin, dS, dAs[l], dbs[l])
                if l > 0:
                    dense_backward_input(dS, As[l], dXs[l][:m])
            elif kind == DROPOUT:
                mul_into(dY.reshape(-1), masks[l][:m].reshape(-1), dXs[l][:m].reshape(-1))
            elif kind == ACTIVATION:
                activation_backward(acts[l], alphas[l], xin.reshape(-1), Ys[l][:m].reshape(-1),
                                    dY.reshape(-1), dXs[l][:m].reshape(-1))
            elif kind == SOFTMAX:
                softmax_backward(Ys[l][:m], dY, dXs[l][:m])
            elif kind == RES_END:
                copy_into(dY.reshape(-1), dXs[l][:m].reshape(-1))  # to F, and kept for the skip
            elif kind == RES_BEGIN:
                add_into(dY.reshape(-1), dXs[geo[l, 0]][:m].reshape(-1), dXs[l][:m].reshape(-1))
            elif images is not None:
                _backward_image_layer(l, kind, dY, m, acts, alphas, images, As, dAs, dbs, Ss, Ys,
                                      dSs, dXs, cols, STs, dcols)
            dY = dXs[l][:m]
        # gradient norms before clipping, one pass (as the trainer: per-parameter sums in order)
        total = 0.0
        for q in range(len(grads)):
            sums[q] = sum_squares(grads[q])
            total += sums[q]
        norm = math.sqrt(total)
        if not (math.isfinite(value) and math.isfinite(norm)):
            acc[5] = b + 1
            acc[6] = value
            acc[7] = norm
            return done
        for w in range(weight_grad_index.shape[0]):
            layer_norms[w] += math.sqrt(sums[weight_grad_index[w]])
        if clip_code == CLIP_NORM:
            c = clip_norm_factor(norm, clip_c)
            if c != 1.0:
                for q in range(len(grads)):
                    scale_inplace(grads[q], c)
        elif clip_code == CLIP_VALUE:
            for q in range(len(grads)):
                clip_value_inplace(grads[q], clip_c)
        step = step0 + done + 1
        for q in range(len(params)):
            if opt_code == SGD:
                sgd_update(params[q], grads[q], slot1[q], lr, momentum, weight_decay, nesterov)
            else:
                adam_update(params[q], grads[q], slot1[q], slot2[q], lr, beta1, beta2, eps,
                            weight_decay, step)
        acc[0] += value * m
        acc[2] += m
        acc[3] += norm
        acc[4] += 1
        done += 1
    return done
