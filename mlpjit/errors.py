"""Errors mlpjit raises for user mistakes.

Every error a user can cause (a bad config, a missing file, a wrong shape) is an
:class:`MlpjitError`.  The CLI prints such an error as one line and exits non-zero;
anything else is a bug and keeps its traceback.  The subclasses also derive from
``ValueError`` so that library users can catch them the usual way.
"""


class MlpjitError(Exception):
    """Base class of every user-facing mlpjit error (printed as one line by the CLI)."""


class ConfigError(MlpjitError, ValueError):
    """A config file, a ``--set`` override or a CLI option is wrong."""


class DataError(MlpjitError, ValueError):
    """A data file is missing, corrupted, or does not fit the model."""


class ModelFileError(MlpjitError, ValueError):
    """A saved model or checkpoint is missing, truncated or not an mlpjit file."""


class FileWriteError(MlpjitError, OSError):
    """A file could not be written (a full disk, a read-only folder): nothing half-written is
    left, and the file's previous version (a checkpoint) is still there."""


class ResourceError(MlpjitError, MemoryError):
    """A config needs more memory than the process may use."""


class TrainingDiverged(MlpjitError, FloatingPointError):
    """The loss or a gradient became NaN or Inf during training."""


class ExportError(MlpjitError, ValueError):
    """A model cannot be written in the format asked for (a layer of your own that does not say
    how it exports to ONNX): nothing is written."""
