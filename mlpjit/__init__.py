"""mlpjit: multilayer perceptrons with hand-derived forward and backward passes, compiled with Numba.

>>> import numpy as np, mlpjit
>>> model = mlpjit.Sequential([mlpjit.Dense(2, 8, activation="tanh", seed=0),
...                            mlpjit.Dense(8, 1, seed=1)])
>>> loss = mlpjit.losses.get("binary_cross_entropy")
"""

__version__ = "0.1.0"

from . import activations, initializers, losses  # noqa: E402
from .errors import ConfigError, DataError, MlpjitError, ModelFileError, TrainingDiverged  # noqa: E402
from .gradcheck import gradcheck, relative_error  # noqa: E402
from .layers import (Activation, AvgPool2D, Conv2D, Dense, Dropout, Flatten, Layer,  # noqa: E402
                     MaxPool2D, Residual, Softmax)
from .model import Sequential  # noqa: E402

__all__ = [
    "Activation", "AvgPool2D", "ConfigError", "Conv2D", "DataError", "Dense", "Dropout", "Flatten",
    "Layer", "MaxPool2D", "MlpjitError", "ModelFileError", "Residual", "Sequential", "Softmax", "TrainingDiverged", "__version__", "activations",
    "gradcheck", "initializers", "losses", "relative_error",
]
