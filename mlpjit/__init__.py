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
from .layers import Activation, Dense, Dropout, Layer, Softmax  # noqa: E402
from .model import Sequential  # noqa: E402

__all__ = [
    "Activation", "ConfigError", "DataError", "Dense", "Dropout", "Layer", "MlpjitError",
    "ModelFileError", "Sequential", "Softmax", "TrainingDiverged", "__version__", "activations",
    "gradcheck", "initializers", "losses", "relative_error",
]
