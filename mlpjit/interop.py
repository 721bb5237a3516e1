"""Weights to and from PyTorch: :func:`to_torch` and :func:`from_torch`.

PyTorch is not a dependency of mlpjit; these functions import it when called (``pip install
torch``; CPU only: ``pip install torch --index-url https://download.pytorch.org/whl/cpu``).

What maps to what (``to_torch`` left to right, ``from_torch`` right to left):

==========================================  =================================================
mlpjit layer                                torch module
==========================================  =================================================
``Dense(n, m, activation=f)``               ``Linear(n, m)`` (+ the module of f): mlpjit
                                            computes X·A + b with A (n, m), torch
                                            x·Wᵀ + b with W (m, n): W = Aᵀ
``Conv2D(C, O, k, stride, padding, f)``     ``Conv2d(C, O, k, stride, padding)`` (+ f);
                                            the same kernel layout (O, C, KH, KW), the same
                                            cross-correlation.  padding ``valid`` → 0, an
                                            integer p → p, ``full`` → k − 1, ``same`` →
                                            (k − 1)/2 (odd k) or ``ZeroPad2d`` + an unpadded
                                            ``Conv2d`` (even k: the odd row at the bottom/
                                            right); from torch, ``padding="same"`` too
``MaxPool2D(k, stride)``                    ``MaxPool2d(k, stride)``
``AvgPool2D(k, stride)``                    ``AvgPool2d(k, stride)``
``BatchNorm(F, momentum, eps)``             ``BatchNorm1d`` (rows) or ``BatchNorm2d``
                                            (images): γ = weight, β = bias, the running mean
                                            and (unbiased) variance, the same momentum and
                                            ε conventions (PyTorch's)
``Dropout(p)``                              ``Dropout(p)``
``Softmax()``                               ``Softmax(dim=1)`` (``dim=-1`` too)
``Flatten()``                               ``Flatten()`` (start_dim 1: NCHW, row-major)
``Standardize(F)``                          :class:`TorchStandardize` (this module's: (x −
                                            mean)/std with fixed buffers)
``Residual([...])``                         :class:`TorchResidual` (this module's: x + body(x))
activation (a layer, or a Dense/Conv2D's)   ``ReLU``, ``Tanh``, ``Sigmoid``, ``LeakyReLU(α)``
                                            (0 ≤ α ≤ 1), ``ELU(α)``, ``Softplus()`` (β = 1;
                                            torch returns x above ``threshold`` = 20, where
                                            the two differ by less than e⁻²⁰), ``GELU()``
                                            (exact, not ``approximate="tanh"``), ``SiLU``
                                            (swish), ``Softsign``; identity → nothing
                                            (``Identity`` is skipped)
==========================================  =================================================

Anything else (an ``arctan`` or ``tanh_linear`` activation, a layer of your own; an ``LSTM``,
a dilated or grouped convolution, pooling with padding, a module that is not an
``nn.Sequential``) is a one-line ValueError naming the layer or module.  The dtype is kept:
float32 ↔ ``torch.float32``, float64 ↔ ``torch.float64``.

``to_torch`` gives the network in evaluation mode (dropout off, batch norm on its running
estimates), so ``to_torch(model)(torch.from_numpy(X))`` equals ``model.forward(X)``: the raw
outputs (logits for a classifier trained with cross_entropy).  It takes the inputs as the
network does: ``model.logits`` and ``model.predict`` first multiply raw inputs by the
model's ``metadata["x_scale"]`` (MNIST pixels: 1/255); do the same before the torch module.
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_torch", "from_torch"]   # and TorchStandardize, TorchResidual (made on first use)

INSTALL = ("pip install torch (CPU only: pip install torch --index-url "
           "https://download.pytorch.org/whl/cpu)")


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError(f"mlpjit.interop needs PyTorch: {INSTALL}") from None
    return torch


# --- this module's torch modules (made when torch is first needed) --------------------------

_CLASSES = {}


def _classes():
    if _CLASSES:
        return _CLASSES
    torch = _torch()
    nn = torch.nn

    class TorchStandardize(nn.Module):
        """mlpjit's ``standardize`` layer: ``(x − mean)/std`` per feature, with ``mean`` and
        ``std`` fixed buffers (saved in the state dict, not trained)."""

        def __init__(self, num_features, dtype=torch.float32):
            super().__init__()
            self.register_buffer("mean", torch.zeros(num_features, dtype=dtype))
            self.register_buffer("std", torch.ones(num_features, dtype=dtype))

        def forward(self, x):
            return (x - self.mean) / self.std

        def extra_repr(self):
            return str(self.mean.shape[0])

    class TorchResidual(nn.Module):
        """mlpjit's ``residual`` block: ``x + body(x)``, ``body`` an ``nn.Sequential``."""

        def __init__(self, *modules):
            super().__init__()
            self.body = nn.Sequential(*modules)

        def forward(self, x):
            return x + self.body(x)

    for cls in (TorchStandardize, TorchResidual):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    _CLASSES.update(TorchStandardize=TorchStandardize, TorchResidual=TorchResidual)
    return _CLASSES


def __getattr__(name):   # mlpjit.interop.TorchStandardize: made (importing torch) when asked for
    if name in ("TorchStandardize", "TorchResidual"):
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- mlpjit → torch ------------------------------------------------------------------------

def _torch_dtype(torch, dtype):
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return torch.float32
    if dtype == np.float64:
        return torch.float64
    raise ValueError(f"to_torch: the model computes in {dtype}; PyTorch modules here are float32 or float64")


def _activation_module(torch, act, where):
    """The torch module of an mlpjit activation, or None for the identity."""
    from . import activations as A
    nn = torch.nn
    kind = type(act)
    if kind is A.Identity:
        return None
    simple = {A.Relu: nn.ReLU, A.Tanh: nn.Tanh, A.Sigmoid: nn.Sigmoid, A.Softplus: nn.Softplus,
              A.Gelu: nn.GELU, A.Swish: nn.SiLU, A.Softsign: nn.Softsign}
    if kind in simple:
        return simple[kind]()
    if kind is A.LeakyRelu:
        return nn.LeakyReLU(act.alpha)
    if kind is A.Elu:
        return nn.ELU(act.alpha)
    raise ValueError(f"to_torch: {where}: activation {act.name!r} has no PyTorch module of the same "
                     f"formula (relu, tanh, sigmoid, leaky_relu, elu, softplus, gelu, swish, softsign)")


def _set(param, array):
    import torch
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(array)))


def _conv_to_torch(torch, layer, tdtype):
    nn = torch.nn
    (pt, pb), (pl, pr) = layer.pads
    pad = []
    if pt == pb and pl == pr:
        padding = (pt, pl)
    else:   # "same" with an even kernel: the odd row at the bottom/right (torch's padding="same"
        padding = 0     # does the same, for stride 1 only, and warns that it copies the input)
        pad = [nn.ZeroPad2d((pl, pr, pt, pb))]
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                     padding=padding, dtype=tdtype)
    _set(conv.weight, layer.A)
    _set(conv.bias, layer.b)
    return pad + [conv]


def _layers_to_torch(torch, layers, tdtype, images, prefix):
    """([torch modules], images after) of mlpjit layers; ``images``: whether their input is
    (N, C, H, W)."""
    from .layers import (Activation, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten,
                         MaxPool2D, Residual, Softmax, Standardize)
    nn = torch.nn
    out = []
    for i, layer in enumerate(layers):
        where = f"layer {prefix}{i} ({layer!r})"
        kind = type(layer)
        act = None
        if kind is Dense:
            lin = nn.Linear(layer.in_features, layer.units, dtype=tdtype)
            _set(lin.weight, layer.A.T)
            _set(lin.bias, layer.b)
            out.append(lin)
            act, images = layer.activation, False
        elif kind is Conv2D:
            out += _conv_to_torch(torch, layer, tdtype)
            act, images = layer.activation, True
        elif kind is Activation:
            act = layer.activation
            if _activation_module(torch, act, where) is None:
                out.append(nn.Identity())
        elif kind is MaxPool2D:
            out.append(nn.MaxPool2d(layer.size, stride=layer.stride))
            images = True
        elif kind is AvgPool2D:
            out.append(nn.AvgPool2d(layer.size, stride=layer.stride))
            images = True
        elif kind is Flatten:
            out.append(nn.Flatten())
            images = False
        elif kind is Dropout:
            out.append(nn.Dropout(layer.p))
        elif kind is Softmax:
            out.append(nn.Softmax(dim=1))
        elif kind is BatchNorm:
            cls = nn.BatchNorm2d if images else nn.BatchNorm1d
            bn = cls(layer.num_features, eps=layer.eps, momentum=layer.momentum, dtype=tdtype)
            _set(bn.weight, layer.gamma)
            _set(bn.bias, layer.beta)
            _set(bn.running_mean, layer.running_mean)
            _set(bn.running_var, layer.running_var)
            out.append(bn)
        elif kind is Standardize:
            if layer.num_features is None:
                raise ValueError(f"to_torch: {where} is not adapted yet (call model.adapt(X) or train it)")
            st = _classes()["TorchStandardize"](layer.num_features, dtype=tdtype)
            _set(st.mean, layer.mean)
            _set(st.std, layer.std)
            out.append(st)
            images = False
        elif kind is Residual:
            inner, images = _layers_to_torch(torch, layer.layers, tdtype, images, f"{prefix}{i}.")
            out.append(_classes()["TorchResidual"](*inner))
        else:
            raise ValueError(f"to_torch: {where}: no PyTorch module for mlpjit's {kind.__name__} here "
                             f"(supported: Dense, Conv2D, MaxPool2D, AvgPool2D, BatchNorm, Dropout, "
                             f"Softmax, Flatten, Standardize, Residual, Activation)")
        if act is not None:
            module = _activation_module(torch, act, where)
            if module is not None:
                out.append(module)
    return out, images


def to_torch(model):
    """A ``torch.nn.Sequential`` computing what ``model`` (an mlpjit Sequential) computes, with
    copies of its weights, in the model's dtype, in evaluation mode (see the module docstring
    for what maps to what).  Raises ValueError naming a layer PyTorch has no module for."""
    torch = _torch()
    tdtype = _torch_dtype(torch, model.dtype)
    meta = getattr(model, "metadata", None) or {}
    images = model.takes_images or len(meta.get("input_shape") or ()) == 3
    modules, _ = _layers_to_torch(torch, model.layers, tdtype, images, "")
    return torch.nn.Sequential(*modules).eval()


# --- torch → mlpjit ------------------------------------------------------------------------

SUPPORTED = ("Linear, Conv2d (+ ZeroPad2d), MaxPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Dropout, "
             "Softmax, Flatten, ReLU, Tanh, Sigmoid, LeakyReLU, ELU, Softplus, GELU, SiLU, Softsign, "
             "Identity, TorchStandardize, TorchResidual, nested nn.Sequential")


def _numpy_dtype(torch, module):
    kinds = {t.dtype for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()}
    if not kinds:
        return np.float32
    if len(kinds) > 1:
        raise ValueError(f"from_torch: the module mixes {', '.join(sorted(str(k) for k in kinds))}; "
                         f"convert it first (module.float() or module.double())")
    kind = kinds.pop()
    if kind == torch.float32:
        return np.float32
    if kind == torch.float64:
        return np.float64
    raise ValueError(f"from_torch: the module holds {kind}; mlpjit computes in float32 or float64 "
                     f"(module.float() or module.double() first)")


def _leaves(torch, module, prefix=""):
    """[(path, module)] of an nn.Sequential's modules in order, nested Sequentials opened."""
    if type(module) is torch.nn.Sequential:
        out = []
        for name, child in module.named_children():
            out += _leaves(torch, child, f"{prefix}{name}.")
        return out
    return [(prefix[:-1] if prefix else type(module).__name__, module)]


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(int(v) for v in value)


def _activation_spec(torch, m, path):
    """An mlpjit activation spec for a torch activation module, "identity" for ``Identity``,
    None when ``m`` is not an activation module."""
    nn = torch.nn
    kind = type(m)
    simple = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.SiLU: "swish",
              nn.Softsign: "softsign", nn.Identity: "identity"}
    if kind in simple:
        return simple[kind]
    if kind is nn.LeakyReLU:
        if not 0 <= m.negative_slope <= 1:
            raise ValueError(f"from_torch: module {path} (LeakyReLU): negative_slope {m.negative_slope} "
                             f"is outside mlpjit's leaky_relu range 0 to 1")
        return {"name": "leaky_relu", "alpha": float(m.negative_slope)}
    if kind is nn.ELU:
        return {"name": "elu", "alpha": float(m.alpha)}
    if kind is nn.Softplus:
        if m.beta != 1 or m.threshold < 20:
            raise ValueError(f"from_torch: module {path} (Softplus): only beta=1 with threshold ≥ 20 is "
                             f"mlpjit's softplus (got beta={m.beta}, threshold={m.threshold})")
        return "softplus"
    if kind is nn.GELU:
        if m.approximate != "none":
            raise ValueError(f"from_torch: module {path} (GELU): approximate={m.approximate!r} is not "
                             f"mlpjit's gelu (exact, with erf)")
        return "gelu"
    return None


def _refuse(path, m, why):
    raise ValueError(f"from_torch: module {path} ({type(m).__name__}): {why}")


def _padding_from(pads, KH, KW, path, m):
    """mlpjit's padding for ((top, bottom), (left, right))."""
    from .layers.conv2d import padding_sizes
    for name in ("valid", "same", "full"):
        if pads == padding_sizes(name, KH, KW):
            return name
    (t, b), (l, r) = pads
    if t == b == l == r:
        return t
    _refuse(path, m, f"padding {pads} is none of mlpjit's (valid, same, full, or the same p on every side)")


def _conv_from(torch, path, m, dtype, act, pad=None):
    from .layers import Conv2D
    if m.groups != 1 or _pair(m.dilation) != (1, 1) or m.padding_mode != "zeros":
        _refuse(path, m, "only groups=1, dilation=1 and padding_mode='zeros' are mlpjit's conv2d")
    KH, KW = _pair(m.kernel_size)
    if pad is not None:           # ZeroPad2d (left, right, top, bottom) before an unpadded Conv2d
        if m.padding not in ("valid", 0, (0, 0)):
            _refuse(path, m, "padded by the ZeroPad2d before it and by itself")
        left, right, top, bottom = pad
        padding = _padding_from(((top, bottom), (left, right)), KH, KW, path, m)
    elif m.padding == "same":
        padding = "same"
    elif m.padding == "valid":
        padding = "valid"
    else:
        ph, pw = _pair(m.padding)
        padding = _padding_from(((ph, ph), (pw, pw)), KH, KW, path, m)
    layer = Conv2D(m.in_channels, m.out_channels, (KH, KW), stride=_pair(m.stride), padding=padding,
                   activation=act, dtype=dtype, seed=0)
    layer.A = _array(m.weight)
    layer.b = np.zeros(m.out_channels) if m.bias is None else _array(m.bias)
    return layer


def _array(t):
    return t.detach().cpu().numpy()


def _layer_from(torch, path, m, dtype, act):
    """The mlpjit layer of one torch module (``act``: the activation folded into a Linear or a
    Conv2d)."""
    from . import layers as L
    nn = torch.nn
    kind = type(m)
    if kind is nn.Linear:
        layer = L.Dense(m.in_features, m.out_features, activation=act, dtype=dtype, seed=0)
        layer.A = _array(m.weight).T
        layer.b = np.zeros(m.out_features) if m.bias is None else _array(m.bias)
        return layer
    if kind is nn.Conv2d:
        return _conv_from(torch, path, m, dtype, act)
    if kind in (nn.MaxPool2d, nn.AvgPool2d):
        pads = _pair(m.padding)
        if pads != (0, 0) or m.ceil_mode:
            _refuse(path, m, "mlpjit's pooling has no padding and no ceil_mode")
        if kind is nn.MaxPool2d and (_pair(m.dilation) != (1, 1) or m.return_indices):
            _refuse(path, m, "mlpjit's maxpool2d has no dilation and returns no indices")
        if kind is nn.AvgPool2d and m.divisor_override is not None:
            _refuse(path, m, "mlpjit's avgpool2d divides by the window's size (no divisor_override)")
        cls = L.MaxPool2D if kind is nn.MaxPool2d else L.AvgPool2D
        stride = m.stride if m.stride not in (None, ()) else m.kernel_size
        return cls(_pair(m.kernel_size), stride=_pair(stride))
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d):
        if not m.track_running_stats or m.running_mean is None or m.momentum is None:
            _refuse(path, m, "mlpjit's batchnorm keeps running estimates with a momentum "
                             "(track_running_stats=True, momentum not None)")
        layer = L.BatchNorm(m.num_features, momentum=m.momentum, eps=m.eps, dtype=dtype)
        if m.affine:
            layer.gamma[...] = _array(m.weight)
            layer.beta[...] = _array(m.bias)
        layer.running_mean[...] = _array(m.running_mean)
        layer.running_var[...] = _array(m.running_var)
        return layer
    if kind is nn.Dropout:
        return L.Dropout(m.p, seed=0)
    if kind is nn.Softmax:
        if m.dim not in (1, -1):
            _refuse(path, m, f"mlpjit's softmax is over each row (dim=1), not dim={m.dim}")
        return L.Softmax()
    if kind is nn.Flatten:
        if m.start_dim != 1 or m.end_dim != -1:
            _refuse(path, m, "mlpjit's flatten keeps the batch axis and flattens the rest "
                             "(start_dim=1, end_dim=-1)")
        return L.Flatten()
    classes = _classes()
    if kind is classes["TorchStandardize"]:
        layer = L.Standardize(m.mean.shape[0], dtype=dtype)
        layer.mean[...] = _array(m.mean)
        layer.std[...] = _array(m.std)
        layer.adapted = True
        return layer
    if kind is classes["TorchResidual"]:
        return L.Residual(_layers_from(torch, _leaves(torch, m.body, f"{path}.body."), dtype))
    _refuse(path, m, f"no mlpjit layer for it (supported: {SUPPORTED})")


def _layers_from(torch, items, dtype):
    from .layers import Activation
    nn = torch.nn
    layers = []
    i = 0
    while i < len(items):
        path, m = items[i]
        nxt = items[i + 1] if i + 1 < len(items) else None
        if type(m) is nn.ZeroPad2d:
            if nxt is None or type(nxt[1]) is not nn.Conv2d:
                _refuse(path, m, "mlpjit pads inside conv2d: a ZeroPad2d must come right before a Conv2d")
            after = items[i + 2] if i + 2 < len(items) else None
            act = _activation_spec(torch, after[1], after[0]) if after is not None else None
            try:
                layers.append(_conv_from(torch, nxt[0], nxt[1], dtype, act or "identity",
                                         pad=_pair4(m.padding)))
            except (TypeError, ValueError) as e:
                raise _named(e, nxt[0], nxt[1]) from None
            i += 3 if act is not None else 2
            continue
        spec = _activation_spec(torch, m, path)
        if spec is not None:
            if spec != "identity":
                layers.append(Activation(spec))
            i += 1
            continue
        act = None
        if type(m) in (nn.Linear, nn.Conv2d) and nxt is not None:
            act = _activation_spec(torch, nxt[1], nxt[0])
        try:
            layers.append(_layer_from(torch, path, m, dtype, act or "identity"))
        except (TypeError, ValueError) as e:
            raise _named(e, path, m) from None
        i += 2 if act is not None else 1
    return layers


def _pair4(padding):
    return (padding,) * 4 if isinstance(padding, int) else tuple(int(p) for p in padding)


def _named(e, path, m):
    text = " ".join(str(e).split())
    if text.startswith("from_torch:"):
        return ValueError(text)
    return ValueError(f"from_torch: module {path} ({type(m).__name__}): {text}")


def from_torch(module):
    """An mlpjit Sequential computing what the torch module computes (an ``nn.Sequential`` of the
    modules in the module docstring's table, nested Sequentials allowed, or one such module),
    with copies of its weights, in its dtype (float32 or float64).  An activation right after a
    ``Linear`` or ``Conv2d`` becomes that layer's activation; one elsewhere an ``Activation``
    layer.  Raises ValueError naming a module mlpjit has no layer for."""
    torch = _torch()
    from .model import Sequential
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}")
    dtype = _numpy_dtype(torch, module)
    layers = _layers_from(torch, _leaves(torch, module), dtype)
    if not layers:
        raise ValueError("from_torch: the module computes nothing mlpjit keeps as a layer (only Identity)")
    try:
        return Sequential(layers)
    except (TypeError, ValueError) as e:
        raise ValueError(f"from_torch: the modules do not fit together: {' '.join(str(e).split())}") from None
