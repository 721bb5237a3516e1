"""YAML run configs: schema, loading, ``--set`` overrides and one-line error messages.

A config is a YAML mapping validated by pydantic models (every model forbids unknown keys; ints
reject floats, strings and booleans; floats accept ints; booleans accept only ``true``/``false``).
The parts that name something — layers, activations, initializers, the loss, the optimizer, the
schedule — are built from the registries (:mod:`mlpjit.registry`): a layer's keys are its
constructor's arguments (:mod:`mlpjit.schema`), so a layer registered by a user's module
(``imports: [my_layers]`` at the top of the config) is configured like a built-in one.

Every user mistake raises :class:`~mlpjit.errors.ConfigError` with a single line naming the file
(or the ``--set`` item), the key path and the offending value, e.g.::

    configs/x.yaml: optimizer.lr: must be > 0 (got -0.1)
    configs/x.yaml: unknown key 'optimizr' (did you mean 'optimizer'?)
    --set optimizer.lrr=0.1: no such key 'lrr' under 'optimizer' (did you mean 'lr'?)

Public API: :func:`schema` (the current models: ``schema().Config``, ``.layers["dense"]``, ...),
:func:`load_config`, :func:`config_from_dict`, :func:`resolved_dict`, :func:`dump_yaml`,
:func:`import_modules`.
"""

from __future__ import annotations

import copy
import difflib
import importlib
import re
import stat
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Sequence, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    create_model,
    model_serializer,
    model_validator,
)

from . import registry
from .errors import ConfigError
from .schema import (Bool, ConfigIssue, ConfigModel, Float, Int, Str, config_model, error_message,
                     fmt_value)

__all__ = ["schema", "load_config", "config_from_dict", "resolved_dict", "dump_yaml",
           "apply_overrides", "import_modules", "DATA_SOURCES"]

_Issue = ConfigIssue
_Model = ConfigModel
_fmt = fmt_value

DATA_SOURCES: tuple[str, ...] = ("mnist", "xor", "spirals", "sine", "csv", "npz")
DTYPES: tuple[str, ...] = ("float32", "float64")
TASKS: tuple[str, ...] = ("auto", "classification", "regression")
XOR_FUNCTIONS: tuple[str, ...] = ("xor", "and", "or", "nand", "nor", "xnor")
EARLY_STOPPING_METRICS: tuple[str, ...] = (
    "train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
)

# ---------------------------------------------------------------------------
# Message helpers
# ---------------------------------------------------------------------------


def _suggest(word: Any, options: Sequence[str]) -> list[str]:
    return difflib.get_close_matches(str(word), list(options), n=3, cutoff=0.6)


def _unknown_name(kind: str, value: Any, options: Sequence[str]) -> str:
    """``unknown activation 'rleu' (did you mean 'relu'? valid: arctan, elu, ...)``."""
    close = _suggest(value, options)
    valid = "valid: " + ", ".join(sorted(options))
    if close:
        return f"unknown {kind} {_fmt(value)} (did you mean {_fmt(close[0])}? {valid})"
    return f"unknown {kind} {_fmt(value)} ({valid})"


def _unknown_key(key: Any, options: Sequence[str]) -> str:
    """``unknown key 'optimizr' (did you mean 'optimizer'?)``."""
    close = _suggest(key, options)
    if close:
        return f"unknown key {_fmt(key)} (did you mean {_fmt(close[0])}?)"
    return f"unknown key {_fmt(key)} (valid keys: {', '.join(options)})"


# ---------------------------------------------------------------------------
# Field types
# ---------------------------------------------------------------------------


def _choice(kind: str, options: Sequence[str]):
    """A before-validator giving ``unknown <kind> 'x' (valid: ...)`` for bad names."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and value not in options:
            raise _Issue(_unknown_name(kind, value, options))
        return value

    return BeforeValidator(check)


def _as_list(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    return value


DType = Annotated[Literal["float32", "float64"], _choice("dtype", DTYPES)]
Task = Annotated[Literal["auto", "classification", "regression"], _choice("task", TASKS)]
XorFunction = Annotated[
    Literal["xor", "and", "or", "nand", "nor", "xnor"], _choice("function", XOR_FUNCTIONS)
]
MetricName = Annotated[
    Literal["train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy"],
    _choice("metric", EARLY_STOPPING_METRICS),
]


# ---------------------------------------------------------------------------
# Data sources (discriminated by ``name``)
# ---------------------------------------------------------------------------

Validation = Annotated[Int, Field(ge=0)]


class MnistData(_Model):
    name: Literal["mnist"]
    path: Optional[Str] = None
    validation: Validation = 0
    subset: Optional[Annotated[Int, Field(ge=1)]] = None
    test_subset: Optional[Annotated[Int, Field(ge=1)]] = None


class XorData(_Model):
    name: Literal["xor"]
    function: XorFunction = "xor"
    validation: Validation = 0


class SpiralsData(_Model):
    name: Literal["spirals"]
    classes: Annotated[Int, Field(ge=2)] = 3
    points: Annotated[Int, Field(ge=1)] = 3000
    test_points: Annotated[Int, Field(ge=0)] = 1000
    noise: Annotated[Float, Field(ge=0)] = 0.2
    validation: Validation = 0


class SineData(_Model):
    name: Literal["sine"]
    points: Annotated[Int, Field(ge=1)] = 1000
    test_points: Annotated[Int, Field(ge=0)] = 200
    a: Annotated[list[Float], Field(min_length=4, max_length=4)] = Field(
        default_factory=lambda: [1.0, 0.0, 1.0, 0.0]
    )
    noise: Annotated[Float, Field(ge=0)] = 0.1
    x_min: Float = -3.0
    x_max: Float = 3.0
    validation: Validation = 0

    @model_validator(mode="after")
    def _range(self) -> "SineData":
        if not self.x_min < self.x_max:
            raise _Issue(
                f"must be greater than x_min (got x_min={_fmt(self.x_min)}, x_max={_fmt(self.x_max)})",
                "x_max",
            )
        return self


class CsvData(_Model):
    name: Literal["csv"]
    train: Str
    test: Optional[Str] = None
    target: Str
    task: Task = "auto"
    validation: Validation = 0
    # columns to one-hot encode even though they hold numbers (text columns always are)
    categorical: Annotated[list[Str], BeforeValidator(_as_list)] = Field(default_factory=list)
    missing: Annotated[Literal["error", "drop"], _choice("missing", ("error", "drop"))] = "error"
    unknown: Annotated[Literal["error", "zeros"], _choice("unknown", ("error", "zeros"))] = "error"
    # a regression target standardized on the training split (null: when the model starts with
    # standardize); predictions are scaled back
    scale_target: Optional[bool] = None


class NpzData(_Model):
    name: Literal["npz"]
    path: Str
    task: Task = "auto"
    validation: Validation = 0
    scale_target: Optional[bool] = None   # as for csv


DataConfig = Annotated[
    Union[MnistData, XorData, SpiralsData, SineData, CsvData, NpzData],
    Field(discriminator="name"),
]

# ---------------------------------------------------------------------------
# Clipping, early stopping, training loop
# ---------------------------------------------------------------------------


class ClipConfig(_Model):
    """Gradient clipping: exactly one of ``norm`` (global L2 norm) or ``value`` (elementwise)."""

    norm: Optional[Annotated[Float, Field(gt=0)]] = None
    value: Optional[Annotated[Float, Field(gt=0)]] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "ClipConfig":
        given = {k: v for k, v in (("norm", self.norm), ("value", self.value)) if v is not None}
        if len(given) != 1:
            raise _Issue(f"set exactly one of 'norm' or 'value' (got {_fmt(given)})")
        return self

    @model_serializer(mode="plain")
    def _dump(self) -> Any:
        return {"norm": self.norm} if self.norm is not None else {"value": self.value}


class EarlyStoppingConfig(_Model):
    patience: Annotated[Int, Field(ge=1)] = 5
    metric: MetricName = "val_loss"
    min_delta: Annotated[Float, Field(ge=0)] = 0.0


def _count_or(word):
    """A validator of an integer >= 1 or the string ``word`` (batch_size: 'full', threads: 'auto')."""
    def check(value: Any) -> Any:
        if value == word and isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if value >= 1:
                return value
            raise _Issue(f"must be >= 1 or '{word}' (got {_fmt(value)})")
        raise _Issue(f"must be an integer >= 1 or '{word}' (got {_fmt(value)})")
    return check


MAX_EPOCHS = 1_000_000   # a plan beyond this is a typo, not a run (no run could finish it)
# train.epochs: auto (the default): at most AUTO_EPOCHS epochs, stopping once the loss (the
# validation loss with a validation split, else the training loss) has not improved by
# AUTO_STOP's min_delta for its patience epochs, as scikit-learn's MLP does by default
AUTO_EPOCHS = 200
AUTO_STOP = {"patience": 10, "min_delta": 1e-4}


def _logger_names(value: Any) -> Any:
    """train.log: a logger's name or a list of them, each registered (mlpjit.loggers)."""
    import importlib
    importlib.import_module("mlpjit.loggers")   # registers the shipped ones
    from .registry import loggers
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _Issue(f"must be a list of logger names (valid: {', '.join(loggers.names())}; got {_fmt(value)})")
    for n in names:
        if n not in loggers.names():
            raise _Issue(_unknown_name("logger", n, loggers.names()))
    return names


def _epochs(value: Any) -> Any:
    if value == "auto" and isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= MAX_EPOCHS:
            return value
        raise _Issue(f"must be {'>= 1' if value < 1 else f'<= {MAX_EPOCHS}'} or 'auto' (got {_fmt(value)})")
    raise _Issue(f"must be an integer >= 1 or 'auto' (got {_fmt(value)})")


class TrainConfig(_Model):
    # auto: up to AUTO_EPOCHS, stopping when the loss stops improving (see AUTO_STOP); a
    # resolved config says what that became (epochs: 200 and its early_stopping)
    epochs: Annotated[Union[int, Literal["auto"]], BeforeValidator(_epochs)] = "auto"
    batch_size: Annotated[Union[int, Literal["full"]], BeforeValidator(_count_or("full"))] = 32
    shuffle: Bool = True
    eval_batch_size: Annotated[Int, Field(ge=1)] = 1000
    # Each hidden layer's activation mean and std on a fixed probe batch (the first probe_rows
    # training examples) go into metrics.jsonl after every epoch, and with probe_every: k into
    # probes.jsonl every k batches (0: off); probe_rows: 0 turns both off.
    probe_rows: Annotated[Int, Field(ge=0)] = 256
    probe_every: Annotated[Int, Field(ge=0)] = 0
    early_stopping: Optional[EarlyStoppingConfig] = None
    # where the run is also logged: registered loggers (mlpjit.loggers), e.g. [tensorboard, mlflow]
    log: Annotated[list[Str], BeforeValidator(_logger_names)] = Field(default_factory=list)
    # the test figures in each epoch's line (every_epoch), or only in the final line (end);
    # metrics.jsonl has them every epoch either way
    print_test: Annotated[Literal["end", "every_epoch"], _choice("print_test", ("end", "every_epoch"))] = "end"
    # Run whole chunks of batches in one compiled loop (same numbers as the layer-by-layer
    # path); false runs each layer from Python, as a custom layer always does.
    compiled: Bool = True
    # Threads of a run: "auto" (the cores this process may use) or a number.  A batch is split
    # into that many shards (fewer for a small model); the result depends on the number of
    # shards, never on how many threads are free to run them (see docs/performance.md).
    threads: Annotated[Union[int, Literal["auto"]], BeforeValidator(_count_or("auto"))] = "auto"


def _shorthand_type(value: Any) -> Any:
    """``optimizer: adam`` / ``schedule: cosine`` mean ``{type: adam}`` / ``{type: cosine}``."""
    return {"type": value} if isinstance(value, str) else value


def _check_name(value: str) -> str:
    if isinstance(value, str) and value and set(value) == {"."}:
        raise _Issue(f"must not be only dots (got {_fmt(value)})")
    return value


class Schema:
    """The config models built from the registries as they are now.

    ``Config`` validates a whole file; ``layers``, ``optimizers`` and ``schedules`` map each
    registered name to the model of its entry (keys from the constructor, see
    :func:`mlpjit.schema.config_model`); ``tagged`` records each tagged union for the error
    messages (``frozenset(members) -> (label, discriminator, {tag: model})``).
    """

    def __init__(self):
        self.tagged: dict[frozenset, tuple[str, str, dict[str, type[BaseModel]]]] = {}
        self._register("data source", "name", MnistData, XorData, SpiralsData, SineData, CsvData,
                       NpzData)
        self.layers = {}
        for name, cls in registry.layers.items():
            replace = {f: _LAYER_LIST for f, ann, _ in _fields(cls) if _is_layer_list(ann)}
            self.layers[name] = config_model(cls, name, optional=tuple(cls.inferred),
                                             replace=replace,
                                             check=getattr(cls, "check_config", None))
            self.layers[name].inferred = tuple(cls.inferred)
            if cls.inferred:
                self.layers[name] = _dropping_unset(self.layers[name], tuple(cls.inferred))
        layer_union = _union(list(self.layers.values()), "type")
        for model in self.layers.values():
            if any(_is_layer_list_field(f) for f in model.model_fields.values()):
                model.model_rebuild(_types_namespace={"LayerConfig": layer_union}, force=True)
        self.LayerConfig = layer_union
        self._register("layer type", "type", *self.layers.values())
        self.optimizers = {name: _without_values(config_model(cls, name, check=getattr(cls, "check_config", None)),
                                                 getattr(cls, "quiet_defaults", {}))
                           for name, cls in registry.optimizers.items()}
        self._register("optimizer", "type", *self.optimizers.values())
        self.schedules = {name: _with_per(config_model(cls, name)) for name, cls in registry.schedules.items()}
        self._register("schedule", "type", *self.schedules.values())
        losses = tuple(registry.losses.names())
        LossName = Annotated[Literal[losses], _choice("loss", losses)]

        ModelConfig = create_model("ModelConfig", __base__=_Model,
                                   layers=(Annotated[list[layer_union], Field(min_length=1)], ...))
        # Adam at its default rate (1e-3), as scikit-learn's MLP: a config that leaves the
        # optimizer out trains (measured: docs/config.md "Defaults")
        default_opt = "adam" if "adam" in self.optimizers else next(iter(self.optimizers))
        default_sched = "constant" if "constant" in self.schedules else next(iter(self.schedules))
        opt_default = self.optimizers[default_opt](type=default_opt)
        sched_default = self.schedules[default_sched](type=default_sched)
        self.Config = create_model(
            "Config", __base__=_Model,
            imports=(Annotated[list[Str], BeforeValidator(_as_list)], Field(default_factory=list)),
            import_path=(Annotated[list[Str], BeforeValidator(_as_list)], Field(default_factory=list)),
            name=(Annotated[Str, Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=100),
                        BeforeValidator(_check_name)], "run"),
            seed=(Annotated[Int, Field(ge=0, le=2**32 - 1)], 0),  # numba's np.random.seed takes uint32
            dtype=(DType, "float32"),
            data=(DataConfig, ...),
            model=(ModelConfig, ...),
            loss=(LossName, ...),
            optimizer=(Annotated[_union(list(self.optimizers.values()), "type"),
                                 BeforeValidator(_shorthand_type)],
                       Field(default_factory=lambda: opt_default.model_copy())),
            schedule=(Annotated[_union(list(self.schedules.values()), "type"),
                                BeforeValidator(_shorthand_type)],
                      Field(default_factory=lambda: sched_default.model_copy())),
            # schedules of the optimizer's other hyperparameters, by epoch, from the value the
            # optimizer section gives: {momentum: {type: linear, start: 0.5, over: 500}}
            schedules=(dict[Str, Annotated[_union(list(self.schedules.values()), "type"),
                                           BeforeValidator(_shorthand_type)]],
                       Field(default_factory=dict)),
            clip=(Optional[ClipConfig], None),
            train=(TrainConfig, Field(default_factory=TrainConfig)),
            __validators__={"_scheduled": model_validator(mode="after")(_check_scheduled)},
        )
        self.Config.__doc__ = "A whole run config (the root of the YAML file)."
        self.Config = _without_empty(self.Config, ("imports", "import_path", "schedules"))
        self.ModelConfig = ModelConfig

    def _register(self, label: str, key: str, *classes: type[BaseModel]) -> None:
        variants = {}
        for c in classes:
            (tag,) = typing.get_args(c.model_fields[key].annotation)
            variants[tag] = c
        self.tagged[frozenset(classes)] = (label, key, variants)


_LAYER_LIST = Annotated[list["LayerConfig"], Field(min_length=1)]


def _fields(cls):
    from .schema import signature_fields
    return signature_fields(cls.__init__)


def _is_layer_list(ann) -> bool:
    from .layers.residual import LayerList
    base = typing.get_args(ann)[0] if typing.get_origin(ann) is Annotated else ann
    return base is LayerList


def _is_layer_list_field(field) -> bool:
    ann = field.annotation
    return typing.get_origin(ann) is list and "LayerConfig" in repr(typing.get_args(ann))


def _union(models: list, key: str):
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator=key)]


def _dropping_unset(model, keys):
    """``model`` whose dump leaves out the sizes taken from the input while they are unset."""
    def _dump(self, handler):
        out = handler(self)
        for k in keys:
            if out.get(k) is None:
                out.pop(k, None)
        return out
    sub = create_model(model.__name__, __base__=model,
                       __validators__={"_dump": model_serializer(mode="wrap")(_dump)})
    sub.implementation = model.implementation
    sub.inferred = keys
    return sub


def _check_scheduled(config):
    """``schedules``' keys are float hyperparameters of the chosen optimizer (not ``lr``: that
    is ``schedule``)."""
    if not config.schedules:
        return config
    opt = config.optimizer
    valid = [k for k in type(opt).model_fields
             if k not in ("type", "lr", "max_norm") and isinstance(getattr(opt, k), float)]
    for key in config.schedules:
        if key == "lr":
            raise _Issue("the learning rate's schedule is the 'schedule' key (schedules is for "
                         "the optimizer's other hyperparameters)", "schedules.lr")
        if key not in valid:
            raise _Issue(f"the {opt.type} optimizer has no hyperparameter {key!r} to schedule "
                         f"(valid: {', '.join(valid)})", f"schedules.{key}")
    # the optimizer's own check, on the values of the first update too (nesterov refuses a
    # dampening that a schedule starts away from 0)
    check = getattr(registry.optimizers.get(opt.type), "check_config", None)
    if check is not None:
        from .schedules import schedule_from_config
        values = {k: getattr(opt, k) for k in type(opt).model_fields if k != "type"}
        for key, sched in config.schedules.items():
            first = schedule_from_config(sched.model_dump()).lr(values[key], 0, 1)
            try:
                check(dict(values, **{key: first}))
            except ConfigIssue as e:
                where = f"optimizer.{e.key} " if e.key else ""
                raise _Issue(f"{where}{e.message} (schedules.{key} starts at {first:g})",
                             f"schedules.{key}") from None
    return config


def _with_per(model):
    """A schedule's config model with the key ``per: epoch | update`` (what its epoch counts;
    see mlpjit.schedules), left out of a dump while it is the default ``epoch`` (so a config
    written before the key existed reads back the same)."""
    from .schedules import PER

    def _dump(self, handler):
        out = handler(self)
        if out.get("per") == "epoch":
            out.pop("per")
        return out
    sub = create_model(model.__name__, __base__=model,
                       per=(Annotated[Literal[PER], _choice("per", PER)], "epoch"),
                       __validators__={"_dump": model_serializer(mode="wrap")(_dump)})
    sub.__doc__ = model.__doc__
    sub.implementation = model.implementation
    return sub


def _without_empty(model, keys):
    """``model`` whose dump leaves out the keys in ``keys`` while they are empty (lists, dicts)."""
    return _without_values(model, {k: ([], {}) for k in keys})


def _without_values(model, values):
    """``model`` whose dump leaves out each key of ``values`` while it holds that value (or one
    of a tuple of values): a key added after configs were written, at its default, so that
    those configs (and run folders' resolved configs) read back the same."""
    if not values:
        return model
    quiet = {k: v if isinstance(v, tuple) else (v,) for k, v in values.items()}

    def _dump(self, handler):
        out = handler(self)
        for k, vs in quiet.items():
            if k in out and any(out[k] == v and type(out[k]) is type(v) for v in vs):
                out.pop(k)
        return out
    sub = create_model(model.__name__, __base__=model,
                       __validators__={"_dump": model_serializer(mode="wrap")(_dump)})
    sub.__doc__ = model.__doc__
    return sub


_SCHEMA: dict = {}


def schema() -> Schema:
    """The config models for the registries as they are now (rebuilt when something registers)."""
    gen = registry.generation()
    if gen not in _SCHEMA:
        _SCHEMA.clear()
        _SCHEMA[gen] = Schema()
    return _SCHEMA[gen]


_current = schema


def _tagged() -> dict:
    return _current().tagged


# ---------------------------------------------------------------------------
# Schema walking (for clean key paths and the valid keys at a place)
# ---------------------------------------------------------------------------


def _unwrap(ann: Any):
    """Strip Annotated / Optional.  Returns (annotation, tagged-union info or None)."""
    while True:
        origin = typing.get_origin(ann)
        if origin is Annotated:
            ann = typing.get_args(ann)[0]
            continue
        if origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if len(args) == 1:
                ann = args[0]
                continue
            inner = [_unwrap(a)[0] for a in args]
            try:
                return ann, _tagged().get(frozenset(inner))
            except TypeError:
                return ann, None
        return ann, None


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _walk_loc(loc: Sequence[Any]):
    """Turn a pydantic error location into a clean key path.

    Drops the tags pydantic inserts for discriminated unions and the member
    labels of other unions.  Returns (path, model class owning the last key or
    None, tagged-union info of that owner or None).
    """
    schema: Any = _current().Config
    path: list[str] = []
    owner = None
    owner_union = None
    current_union = None
    for item in loc:
        ann, tagged = _unwrap(schema) if schema is not None else (None, None)
        if tagged is not None:
            if isinstance(item, str) and item in tagged[2]:
                schema = tagged[2][item]
                current_union = tagged
                continue
            schema = None
            ann = None
        if _is_model(ann):
            owner, owner_union = ann, current_union
            current_union = None
            path.append(str(item))
            field = ann.model_fields.get(item) if isinstance(item, str) else None
            schema = field.annotation if field is not None else None
        elif typing.get_origin(ann) is list:
            owner, owner_union, current_union = None, None, None
            path.append(str(item))
            schema = typing.get_args(ann)[0]
        else:
            # a scalar / non-tagged union: pydantic's member labels ('int', "literal['full']")
            schema = None
            if isinstance(item, int):
                path.append(str(item))
    return path, owner, owner_union


def _model_at(schema: Any, node: Any):
    """The model class that describes ``node`` (a dict) at ``schema``, and its union info."""
    ann, tagged = _unwrap(schema)
    if tagged is not None:
        if isinstance(node, dict):
            return tagged[2].get(node.get(tagged[1])), tagged
        return None, tagged
    if _is_model(ann):
        return ann, None
    return None, None


# ---------------------------------------------------------------------------
# Error translation
# ---------------------------------------------------------------------------

def _describe_error(err: dict) -> tuple[list[str], str]:
    """One pydantic error -> (key path, message that names the value)."""
    etype = err["type"]
    loc = err.get("loc", ())
    value = err.get("input")
    ctx = err.get("ctx") or {}
    path, owner, owner_union = _walk_loc(loc)
    got = f"(got {_fmt(value)})"

    if etype == "extra_forbidden":
        key = path.pop() if path else str(loc[-1])
        valid = list(owner.model_fields) if owner is not None else []
        msg = _unknown_key(key, valid)
        if owner_union is not None and not _suggest(key, valid):
            label, tag_key, variants = owner_union
            others = [t for t, c in variants.items() if key in c.model_fields and c is not owner]
            if others:
                msg += f"; {key!r} is only for {tag_key}: {', '.join(others)}"
        return path, msg
    if etype == "invalid_key":
        key = path.pop() if path else loc[-1]
        return path, f"keys must be strings (got key {_fmt(key)})"
    if etype == "missing":
        key = path.pop() if path else str(loc[-1])
        return path, f"missing required key {key!r}"
    if etype in ("union_tag_invalid", "union_tag_not_found"):
        # loc points at the union itself; find which union from the schema
        schema: Any = _current().Config
        for item in path:
            ann, _ = _unwrap(schema)
            if _is_model(ann) and item in ann.model_fields:
                schema = ann.model_fields[item].annotation
            elif typing.get_origin(ann) is list:
                schema = typing.get_args(ann)[0]
            else:
                schema = None
                break
        tagged = _unwrap(schema)[1] if schema is not None else None
        if tagged is None:  # pragma: no cover - every tagged union is registered
            return path, f"{err.get('msg', 'invalid value')} {got}"
        label, tag_key, variants = tagged
        if etype == "union_tag_not_found":
            return path, f"missing required key {tag_key!r} (the {label}: {', '.join(variants)})"
        tag = value.get(tag_key) if isinstance(value, dict) else ctx.get("tag")
        return path + [tag_key], _unknown_name(label, tag, tuple(variants))
    if etype in ("value_error", "assertion_error") and isinstance(ctx.get("error"), _Issue):
        issue = ctx["error"]
        if issue.key:
            path = path + issue.key.split(".")
        return path, issue.message
    if etype == "too_short" and owner is SineData and path and path[-1] == "a":
        n = ctx.get("actual_length", len(value) if hasattr(value, "__len__") else "?")
        return path, f"must have exactly 4 items (got {n}: {_fmt(value)})"
    if etype == "too_long" and owner is SineData and path and path[-1] == "a":
        return path, f"must have exactly 4 items (got {len(value)}: {_fmt(value)})"
    scalar = error_message(err)
    if scalar is not None:
        return path, scalar
    if etype == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "").strip("^$")
        return path, f"must match {pattern} (letters, digits, '_', '.', '-') {got}"
    msg = str(err.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return path, f"{msg} {got}"


def _first_error(exc: ValidationError) -> tuple[list[str], str]:
    errors = exc.errors(include_url=False)
    if not errors:  # pragma: no cover - pydantic always reports at least one
        return [], "invalid config"
    path, msg = _describe_error(errors[0])
    if len(errors) > 1:
        n = len(errors) - 1
        msg += f" (and {n} more error{'s' if n != 1 else ''})"
    return path, msg


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(prefix: str, path: Sequence[str], msg: str) -> ConfigError:
    where = ".".join(str(p) for p in path)
    text = f"{prefix}: {where}: {msg}" if where else f"{prefix}: {msg}"
    return ConfigError(_one_line(text))


def _validate(data: Any, prefix: str, base: Path | None = None, trust=None):
    if not isinstance(data, dict):
        raise ConfigError(
            _one_line(f"{prefix}: top level must be a mapping of keys (got {_kind(data)})")
        )
    try:
        if data.get("imports") and trust is not None:   # a run folder's config: data, not code
            from .modelfile import check_modules
            check_modules(_as_list(data.get("imports")), trust, prefix)
        elif data.get("imports"):
            data = dict(data)
            data["import_path"] = _import_path(data.get("import_path"), base, prefix)
            import_modules(data.get("imports"), prefix, data["import_path"])
        return _current().Config.model_validate(data)
    except ValidationError as exc:
        path, msg = _first_error(exc)
        raise _fail(prefix, path, msg) from None


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return f"a list: {_fmt(value, 40)}"
    if isinstance(value, str):
        return f"a string: {_fmt(value, 40)}"
    return f"{type(value).__name__} {_fmt(value, 40)}"


# ---------------------------------------------------------------------------
# YAML reading
# ---------------------------------------------------------------------------

_TAG_RE = re.compile(r"tag '([^']*)'")


def _tag_name(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag


# --- bounded YAML (1.2 numbers) ---------------------------------------------------------

MAX_CONFIG_BYTES = 1 << 20      # a config file larger than this is refused
MAX_DEPTH = 64                  # nesting levels
MAX_VALUES = 200_000            # values after aliases are expanded


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's numbers: ``010`` is ten (1.1 read it as octal 8),
    ``0o10`` is octal, ``1_000`` and ``0b10`` are text (and so refused where a number belongs),
    ``1e-3`` is a float."""


_Loader.yaml_implicit_resolvers = {k: [(tag, rx) for tag, rx in v
                                       if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:int",
                              re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+.0123456789"))


def _yaml12_int(loader, node):
    text = loader.construct_scalar(node)
    if len(text) > 100:   # no setting needs it; Python refuses past 4,300 digits anyway
        raise yaml.constructor.ConstructorError(None, None, f"a number of {len(text):,} digits",
                                                node.start_mark)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


_Loader.add_constructor("tag:yaml.org,2002:int", _yaml12_int)


def safe_yaml(text: str, source: str) -> Any:
    """``text`` as YAML (1.2 numbers, see :class:`_Loader`), bounded: at most ``MAX_DEPTH``
    levels of nesting and ``MAX_VALUES`` values once aliases are expanded (an alias bomb is
    refused, not expanded), else one ConfigError line starting with ``source``.  YAML errors are
    left to the caller."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):   # iterative: no recursion on deep input
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(_one_line(f"{source}: nested more than {MAX_DEPTH} levels deep "
                                            f"(line {event.start_mark.line + 1})"))
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
    root = yaml.compose(text, Loader=_Loader)
    if root is not None:
        _count_values(root, source)
    return yaml.load(text, Loader=_Loader)


def _count_values(root, source):
    """The number of values of a composed document with its aliases expanded, counted once per
    node (memo), refused above MAX_VALUES."""
    sizes: dict = {}
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = ([v for pair in node.value for v in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        if done:
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_VALUES:
                raise ConfigError(_one_line(f"{source}: more than {MAX_VALUES:,} values once its aliases "
                                            f"are expanded (an alias bomb?)"))
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)


def _check_duplicate_keys(text: str, source: str) -> None:
    """Refuse a key given twice in one mapping (``safe_load`` silently keeps the last)."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return  # reported by safe_load
    stack = [(root, [])]
    seen_nodes: set = set()   # an alias is checked once, not once per use
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is not None:
                    if key in seen:
                        where = ".".join(path + [key])
                        raise ConfigError(
                            _one_line(
                                f"{source}: {where}: key given twice "
                                f"(line {key_node.start_mark.line + 1})"
                            )
                        )
                    seen.add(key)
                stack.append((value_node, path + [str(key)]))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                stack.append((item, path + [str(i)]))


def _read_yaml(path: str | Path) -> Any:
    source = str(path)
    p = Path(path)
    try:
        st = p.stat()
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(st.st_mode):
            from .io import file_kind
            raise ConfigError(f"{source}: not a regular file (a {file_kind(st.st_mode)}); a config is a YAML file")
        with open(p, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES // 1024} KiB; a config is a short YAML file")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(_one_line(f"{source}: cannot read ({exc.strerror or exc})")) from None
    if not text.strip():
        raise ConfigError(f"{source}: file is empty")
    try:
        data = safe_yaml(text, source)
    except yaml.constructor.ConstructorError as exc:
        line = f" (line {exc.problem_mark.line + 1})" if exc.problem_mark is not None else ""
        m = _TAG_RE.search(exc.problem or "")
        if m:
            raise ConfigError(
                _one_line(f"{source}: YAML tag {_tag_name(m.group(1))!r} is not allowed{line}")
            ) from None
        raise ConfigError(_one_line(f"{source}: invalid YAML{line}: {exc.problem}")) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
        raise ConfigError(_one_line(f"{source}: invalid YAML{where}: {problem}")) from None
    if data is None:
        raise ConfigError(f"{source}: file is empty (only comments)")
    _check_duplicate_keys(text, source)
    return data


# ---------------------------------------------------------------------------
# --set overrides
# ---------------------------------------------------------------------------


def _field_default(cls: type[BaseModel], key: str) -> Any:
    field = cls.model_fields[key]
    if field.is_required():
        return _NO_DEFAULT
    default = field.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        return default.model_dump(mode="json")
    return default


_NO_DEFAULT = object()


def _apply_override(tree: dict, item: str) -> list[str]:
    """Apply one ``key.path=value`` to the resolved dict ``tree`` in place.

    Returns the key path (list of parts).
    """
    prefix = f"--set {item}"
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(_one_line(f"{prefix}: expected key.path=value"))
    parts = key.split(".")
    if any(not p.strip() for p in parts):
        raise ConfigError(_one_line(f"{prefix}: empty key in {key!r} (expected key.path=value)"))
    parts = [p.strip() for p in parts]
    try:
        value = safe_yaml(raw, prefix)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        m = _TAG_RE.search(problem)
        if m:
            problem = f"YAML tag {_tag_name(m.group(1))!r} is not allowed"
        raise ConfigError(_one_line(f"{prefix}: invalid value: {problem}")) from None

    node: Any = tree
    schema: Any = _current().Config
    done: list[str] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        here = ".".join(done) or "top level"
        if isinstance(node, list):
            try:
                idx = int(part)
            except ValueError:
                raise ConfigError(
                    _one_line(f"{prefix}: {here} is a list; {part!r} is not an index")
                ) from None
            if not 0 <= idx < len(node):
                raise ConfigError(
                    _one_line(
                        f"{prefix}: index {idx} out of range ({here} has {len(node)} "
                        f"item{'s' if len(node) != 1 else ''})"
                    )
                )
            ann, _ = _unwrap(schema)
            child_schema = typing.get_args(ann)[0] if typing.get_origin(ann) is list else None
            if last:
                node[idx] = value
                break
            child = _prepare_child(node[idx], child_schema, prefix, done + [part])
            node[idx] = child
            node, schema = child, child_schema
        elif isinstance(node, dict) and _mapping_values(schema) is not None:
            # a mapping of free keys (schedules: {momentum: ...}): any key, each a value schema
            child_schema = _mapping_values(schema)
            if last:
                if value is None:    # schedules.momentum=null: no schedule for momentum
                    node.pop(part, None)
                else:
                    node[part] = value
                break
            child = _prepare_child(node.get(part), child_schema, prefix, done + [part])
            node[part] = child
            node, schema = child, child_schema
        elif isinstance(node, dict):
            cls, tagged = _model_at(schema, node)
            fields = _keys_at(cls, node)
            if part not in node and part not in fields and not (tagged is not None and part == tagged[1]):
                # (the discriminator of a new entry, schedules.momentum.type, is always a key)
                options = list(dict.fromkeys(list(node) + fields))
                where = f"under {here!r}" if done else "at the top level"
                close = _suggest(part, options)
                hint = (
                    f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(options)}"
                    if options else f"give {here}.{tagged[1]} first" if tagged else "it has no keys"
                )
                raise ConfigError(_one_line(f"{prefix}: no such key {part!r} {where} ({hint})"))
            if last:
                if tagged is not None and part == tagged[1] and cls is not None:
                    _switch_variant(node, tagged, cls, value)
                if cls is ClipConfig and value is not None:
                    # clip.norm=... replaces a clip.value from the file, and vice versa
                    node.update({k: None for k in ("norm", "value") if k != part})
                node[part] = value
                break
            child_schema = cls.model_fields[part].annotation if part in fields else None
            child = _prepare_child(node.get(part), child_schema, prefix, done + [part])
            node[part] = child
            node, schema = child, child_schema
        else:
            raise ConfigError(
                _one_line(f"{prefix}: {here} is {_fmt(node)}, not a mapping; cannot set {part!r}")
            )
        done.append(part)
    return parts


def _keys_at(cls: Any, node: dict) -> list[str]:
    """The keys the model ``cls`` knows for ``node``: its fields, and for an activation or
    initializer spec the parameters of the one it names."""
    if cls is None:
        return []
    fields = list(cls.model_fields)
    kind = getattr(cls, "kind", None)
    if kind in ("activation", "initializer") and isinstance(node.get("name"), str):
        from .schema import spec_params
        reg = registry.activations if kind == "activation" else registry.initializers
        fields += list(spec_params(kind).get(reg.canonical(node["name"]), {}))
    return fields


def _mapping_values(schema: Any) -> Any:
    """The value schema of a ``dict[str, X]`` field (X), else None."""
    if schema is None:
        return None
    ann, _ = _unwrap(schema)
    if typing.get_origin(ann) is dict:
        return typing.get_args(ann)[1]
    return None


def _prepare_child(child: Any, schema: Any, prefix: str, path: list[str]) -> Any:
    """Make a None / shorthand-string child descendable when the schema has a model there."""
    if schema is None:
        return child
    if child is None and _mapping_values(schema) is not None:
        return {}
    ann, tagged = _unwrap(schema)
    if child is None and (tagged is not None or _is_model(ann)):
        return {}
    if isinstance(child, str) and tagged is not None:
        return {tagged[1]: child}  # optimizer=adam / schedule=cosine shorthand
    if isinstance(child, str) and _is_model(ann) and "name" in ann.model_fields:
        return {"name": child}  # activation / init given as a bare name
    return child


def _switch_variant(node: dict, tagged, old_cls: type[BaseModel], new_tag: Any) -> None:
    """Changing ``data.name`` / ``layers.N.type`` / ``optimizer.type``: drop keys that
    the new variant lacks and keys still at the old variant's default."""
    label, tag_key, variants = tagged
    new_cls = variants.get(new_tag) if isinstance(new_tag, str) else None
    if new_cls is None or new_cls is old_cls:
        return
    kept = {}
    for k, v in node.items():
        if k == tag_key or k not in new_cls.model_fields:
            continue
        if k in old_cls.model_fields and _field_default(old_cls, k) == v:
            continue
        kept[k] = v
    node.clear()
    node[tag_key] = new_tag
    node.update(kept)


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if str(x) != str(y):
            break
        n += 1
    return n


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def _import_path(given: Any, base: Path | None, prefix: str) -> list[str]:
    """The folders where ``imports`` are looked for, absolute: ``import_path`` entries (relative
    to the config file's folder), then that folder itself.  The resolved config records them,
    so a run folder's config.yaml finds the modules from anywhere."""
    if given is None:
        given = []
    if isinstance(given, str):
        given = [given]
    if not isinstance(given, list) or not all(isinstance(g, str) for g in given):
        raise ConfigError(_one_line(f"{prefix}: import_path: must be a list of folders (got {_fmt(given)})"))
    base = base or Path.cwd()
    out = [str((base / g).resolve()) for g in given]
    if given == []:
        out.append(str(base.resolve()))
    return list(dict.fromkeys(out))


def import_modules(names: Any, prefix: str = "imports", path: Sequence[str] | None = None) -> None:
    """Import the modules a config names under ``imports:`` (they register layers, activations,
    losses, ...), looking first in the folders of ``path`` (``import_path``: the config file's
    folder unless it says otherwise).  A module that cannot be imported, or registers a name
    that is taken, is a one-line ConfigError."""
    if not names:
        return
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list):
        raise ConfigError(_one_line(f"{prefix}: imports: must be a list of module names (got {_fmt(names)})"))
    for folder in reversed(list(path or ())):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    base = ", ".join(path) if path else None
    for name in names:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w.]*", name):
            raise ConfigError(_one_line(f"{prefix}: imports: {_fmt(name)} is not a module name "
                                        f"(such as my_layers or package.layers)"))
        try:
            importlib.import_module(name)
        except registry.RegistryError as exc:
            raise ConfigError(_one_line(f"{prefix}: imports: {name}: {exc}")) from None
        except ImportError as exc:
            where = f" (looked in {base} and on sys.path)" if base else ""
            raise ConfigError(_one_line(f"{prefix}: imports: cannot import {name!r}: {exc}{where}")) from None
        except Exception as exc:  # the module itself fails: its error, on one line
            raise ConfigError(_one_line(f"{prefix}: imports: importing {name!r} failed: "
                                        f"{type(exc).__name__}: {exc}")) from None


def config_from_dict(d: dict, source: str = "<config>"):
    """Validate a plain dict (as read from YAML) into a :class:`Config`.

    Raises :class:`ConfigError` (one line, starting with ``source``) on any mistake.
    """
    return _validate(d, source)


def resolved_dict(config) -> dict:
    """A plain JSON/YAML-safe dict with every default filled in; ``train.epochs: auto`` becomes
    what it means: ``AUTO_EPOCHS`` epochs, with early stopping on the loss (validation loss
    with a validation split, else training loss) unless the config sets its own."""
    d = config.model_dump(mode="json")
    train = d.get("train") or {}
    if train.get("epochs") == "auto":
        train["epochs"] = AUTO_EPOCHS
        if train.get("early_stopping") is None:
            metric = "val_loss" if (d.get("data") or {}).get("validation") else "train_loss"
            train["early_stopping"] = {"patience": AUTO_STOP["patience"], "metric": metric,
                                       "min_delta": AUTO_STOP["min_delta"]}
    return d


def dump_yaml(config) -> str:
    """The resolved config as YAML (keys in schema order)."""
    return yaml.safe_dump(resolved_dict(config), sort_keys=False)


def load_config(path: str | Path, overrides: Sequence[str] = (), trust=None):
    """Read a YAML config file (or a shipped config by name: ``mnist_mlp``), validate it, then
    apply ``--set key.path=value`` overrides.

    Each override's value is parsed as YAML (``0.1`` -> float, ``true`` -> bool,
    ``full`` -> str, ``[1, 2]`` -> list).  Overrides act on the resolved config
    (defaults filled in), so any key the schema knows at that place can be set even
    when the file omits it; a null section (``clip``, ``train.early_stopping``) may
    be given children (``clip.norm=5``).  Setting a discriminator (``data.name``,
    ``model.layers.N.type``, ``optimizer.type``, ``schedule.type``) drops the keys
    the new variant does not have and those left at the old variant's defaults.

    ``trust`` (a list of module names) marks a config that is data, not the user's own: a run
    folder's ``config.yaml``.  Its ``imports`` are then not imported and ``sys.path`` is not
    changed: each module must be imported already or named in ``trust``.
    """
    from .packaged import config_file
    path = config_file(path)   # a file, or the name of a shipped config (mnist_mlp)
    return apply_overrides(_validate(_read_yaml(path), str(path), Path(path).resolve().parent, trust),
                           overrides)


def apply_overrides(config, overrides: Sequence[str] = ()):
    """``config`` with ``key.path=value`` overrides applied (as ``--set``; see :func:`load_config`)."""
    if isinstance(overrides, str):  # a single "k=v" passed by mistake
        overrides = (overrides,)
    if not overrides:
        return config
    tree = copy.deepcopy(config.model_dump(mode="json"))   # train.epochs: auto stays auto
    applied: list[tuple[str, list[str]]] = []
    for item in overrides:
        applied.append((item, _apply_override(tree, str(item))))
    try:
        return _current().Config.model_validate(tree)
    except ValidationError as exc:
        err_path, msg = _first_error(exc)
    # blame the override closest to the error's key path (the last one on ties)
    best, best_n = None, 0
    for item, parts in applied:
        n = _common_prefix(parts, err_path)
        if n >= best_n and n > 0:
            best, best_n = item, n
    if best is None:
        prefix = ", ".join(f"--set {item}" for item, _ in applied)
    else:
        prefix = f"--set {best}"
    raise _fail(prefix, err_path, msg)
