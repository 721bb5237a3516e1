"""mlpjit: multilayer perceptrons with hand-derived forward and backward passes, compiled with Numba.

>>> import numpy as np, mlpjit
>>> model = mlpjit.Sequential([mlpjit.Dense(2, 8, activation="tanh", seed=0),
...                            mlpjit.Dense(8, 1, seed=1)])
>>> loss = mlpjit.losses.get("binary_cross_entropy")
"""

__version__ = "0.2.0"

from ._jit import jit  # noqa: E402
from .errors import ConfigError, DataError, MlpjitError, ModelFileError, TrainingDiverged  # noqa: E402
from .registry import (register_activation, register_initializer, register_layer,  # noqa: E402
                       register_loss, register_optimizer, register_schedule)
from . import activations, initializers  # noqa: E402
from .layers import (Activation, AvgPool2D, BatchNorm, Call, Conv2D, Dense, Dropout, Flatten,  # noqa: E402
                     Layer, MaxPool2D, Residual, Softmax, Standardize)
from . import losses, optim, schedules  # noqa: E402
from .gradcheck import gradcheck, relative_error  # noqa: E402
from .model import Sequential  # noqa: E402
from .fitting import History, fit  # noqa: E402

__all__ = [
    "Activation", "AvgPool2D", "BatchNorm", "Call", "ConfigError", "Conv2D", "DataError", "Dense", "Dropout",
    "Flatten", "History", "Layer", "MaxPool2D", "MlpjitError", "ModelFileError", "Residual", "Sequential",
    "Softmax", "Standardize", "TrainingDiverged", "__version__", "activations", "fit", "gradcheck", "initializers", "jit",
    "losses", "optim", "register_activation", "register_initializer", "register_layer",
    "register_loss", "register_optimizer", "register_schedule", "relative_error", "schedules",
]
