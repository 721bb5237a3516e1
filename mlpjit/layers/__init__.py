"""The layers, one file each: formulas, parameters, buffers, kernels and config together.

=================  ======================================  =============================
config ``type``    class                                   file
=================  ======================================  =============================
``dense``          :class:`~mlpjit.layers.dense.Dense`      ``layers/dense.py``
``activation``     :class:`Activation`                     ``layers/activation.py``
``softmax``        :class:`Softmax`                        ``layers/softmax.py``
``dropout``        :class:`Dropout`                        ``layers/dropout.py``
``conv2d``         :class:`Conv2D`                         ``layers/conv2d.py``
``maxpool2d``      :class:`MaxPool2D`                      ``layers/maxpool2d.py``
``avgpool2d``      :class:`AvgPool2D`                      ``layers/avgpool2d.py``
``flatten``        :class:`Flatten`                        ``layers/flatten.py``
``residual``       :class:`Residual`                       ``layers/residual.py``
``batchnorm``      :class:`BatchNorm`                      ``layers/batchnorm.py``
``standardize``    :class:`Standardize`                    ``layers/standardize.py``
=================  ======================================  =============================

Importing this package registers them (:mod:`mlpjit.registry`); :mod:`mlpjit.layers.base`
holds what they share (the :class:`Layer` protocol, :class:`Call`).  A layer of your own is
one file of the same form (``docs/writing-a-layer.md``).
"""

import numpy as np

from ..registry import layers as _registry
from .base import Call, Layer, LayerKernelError, Ref, build_layers
from .activation import Activation
from .avgpool2d import AvgPool2D
from .batchnorm import BatchNorm
from .conv2d import Conv2D
from .dense import Dense
from .dropout import Dropout
from .flatten import Flatten
from .maxpool2d import MaxPool2D
from .residual import Residual
from .softmax import Softmax
from .standardize import Standardize

__all__ = ["Layer", "Call", "Ref", "LayerKernelError", "Activation", "AvgPool2D", "BatchNorm", "Conv2D",
           "Dense", "Dropout", "Flatten", "MaxPool2D", "Residual", "Softmax", "Standardize",
           "layer_from_config",
           "build_layers", "DTYPES"]

DTYPES = {"float32": np.float32, "float64": np.float64}


def layer_from_config(config, dtype=np.float32, seed=None):
    """Build a layer from ``get_config()`` output (``{"type": "dense", ...}``)."""
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"layer config must be a dict with a 'type', got {config!r}")
    return _registry.get(config["type"]).from_config(config, dtype=dtype, seed=seed)
