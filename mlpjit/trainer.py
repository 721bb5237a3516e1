"""``mlpjit train``'s runs: a resolved config's model built for its data, trained by the core.

:func:`build_model` builds the Sequential of a config's ``model`` section for a data set (its
errors name the config key); :class:`Trainer` loads the config's data, builds its model and
optimizer, and trains them with :class:`mlpjit.core.TrainingCore` (the loop ``model.fit`` and
the scikit-learn estimators run too), keeping the run folder (see :mod:`mlpjit.core`).
"""

from . import losses as _losses
# the core's names, where the CLI, the sweeps and the experiments have always found them
from .core import (CHECKPOINT_FORMAT, DTYPES, EXIT_STOPPED, PROBES, Interrupted, Stopped,  # noqa: F401
                   Terminated, TrainingCore, _seeds, _Signals, activation_stats, append_metrics,
                   cpu_model, evaluate, make_optimizer_from, parse_duration, read_metrics, versions,
                   write_metrics)
from .data import load_dataset
from .errors import ConfigError
from .layers import build_layers
from .model import Sequential
from .registry import layers as _layer_types


# --- building the model ------------------------------------------------------------------

def _first_type(specs):
    """The type of the first layer that sees the input (looking inside containers such as
    residual blocks)."""
    spec = specs[0]
    cls = _layer_types.get(spec["type"])
    return _first_type(spec["layers"]) if getattr(cls, "container", False) else spec["type"]


def takes_images(cfg):
    """True when the config's model starts with a layer that reads images (a convolution or
    pooling)."""
    cls = _layer_types.get(_first_type(cfg["model"]["layers"]))
    return bool(getattr(cls, "image_input", False))


def _placed(layers, where):
    """(config key, layer) of every layer, inside residual blocks too."""
    for i, layer in enumerate(layers):
        yield f"{where}.{i}", layer
        yield from _placed(getattr(layer, "layers", ()), f"{where}.{i}.layers")


def build_model(cfg, n_features, n_outputs, task, image_shape=None):
    """The Sequential of ``cfg["model"]["layers"]`` for ``n_features`` inputs (or, when the model
    starts with a convolution or pooling, one ``image_shape`` (C, H, W) per example), checked
    against the data (``n_outputs`` classes or targets) and the loss.  Errors name the config key."""
    dtype = DTYPES[cfg["dtype"]]
    init_ss, _, dropout_ss = _seeds(cfg["seed"])
    specs = cfg["model"]["layers"]
    if takes_images(cfg):
        if image_shape is None:
            raise ConfigError(f"model.layers.0: {_first_type(specs)} needs images, but data "
                              f"'{cfg['data']['name']}' has flat rows of {n_features} features "
                              f"(image data: mnist, or an npz file whose X is (N, C, H, W))")
        shape = tuple(image_shape)
    else:
        shape = (n_features,)
    from .config import import_modules
    import_modules(cfg.get("imports"), path=cfg.get("import_path"))
    layers, out_shape = build_layers(specs, shape, "model.layers", dtype,
                                     init_ss.spawn(len(specs)), dropout_ss.spawn(len(specs)))
    last = len(specs) - 1
    if len(out_shape) != 1:
        raise ConfigError(f"model.layers.{last}: the model ends with images of shape {tuple(out_shape)}; "
                          f"add {{type: flatten}} and a dense layer with one unit per class or target")
    width = out_shape[0]
    for where, layer in _placed(layers, "model.layers"):
        if getattr(layer, "must_be_first", False) and where != "model.layers.0":
            raise ConfigError(f"{where}: {layer.type_name} must be the first layer (it is fitted "
                              f"to the inputs themselves, before the first epoch)")
    if not any(layer.parameters() for layer in layers):
        raise ConfigError("model.layers: the model needs at least one layer with parameters "
                          "(dense, conv2d, ...)")
    loss = _losses.check_loss_fits(cfg["loss"], layers[-1], width, task, n_outputs,
                           last=f"model.layers.{last}", data=f"data '{cfg['data']['name']}'")
    return Sequential(layers), loss


def model_for_data(cfg, data):
    """(model, loss, data) for a config and its loaded data set: the data as images (N, C, H, W)
    when the model starts with a convolution or pooling, as rows otherwise."""
    model, loss = build_model(cfg, data.n_features, data.n_outputs, data.task, data.image_shape)
    return model, loss, (data.as_images() if takes_images(cfg) else data)


class Trainer(TrainingCore):
    """A run of a resolved config: its data (loaded, unless ``dataset`` is given), its model built
    for that data (unless ``model`` is given, built in code), trained by the core.  Keyword
    arguments are :class:`~mlpjit.core.TrainingCore`'s."""

    def __init__(self, cfg, run_dir, dataset=None, log=print, progress=True, *, model=None, **core):
        data = dataset if dataset is not None else load_dataset(dict(cfg["data"]), cfg["seed"])
        if model is None:
            model, _, data = model_for_data(cfg, data)
        super().__init__(cfg, run_dir, data, log, progress, model=model, **core)
