"""Config keys from constructors: the annotated types a constructor states its arguments with,
and the pydantic models derived from those signatures.

A layer (or activation, optimizer, schedule, initializer) says what its config keys are by its
constructor's signature, e.g. ``Dense.__init__(self, in_features: Size, units: Size, activation:
ActivationSpec = "identity", ...)``; :func:`config_model` turns such a signature into the
pydantic model that validates ``{type: dense, units: 256, ...}``, and :func:`validated` checks
the same annotations when the class is built from code, so a range is written once.

Conventions (as everywhere in mlpjit's configs): ints reject floats, strings and booleans;
floats accept ints and ``1e-3`` written without a dot; booleans accept only true/false.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import typing
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt,
                      StrictStr, TypeAdapter, ValidationError, create_model, model_serializer,
                      model_validator)
from pydantic_core import PydanticCustomError

from . import registry

__all__ = ["Float", "Int", "Bool", "Str", "Size", "SizePair", "Unit", "Positive", "NonNegative",
           "ConfigIssue", "ActivationSpec", "InitSpec", "config_model", "validated",
           "signature_fields", "fmt_value", "error_message", "ConfigModel"]

# PyYAML (YAML 1.1) reads ``1e-3`` (no dot) as a *string*; accept exactly that form.
_EXP_FLOAT = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+$")


def _coerce_float(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("float_type", "Input should be a valid number")
    if isinstance(value, str) and _EXP_FLOAT.match(value.strip()):
        return float(value)
    return value


Float = Annotated[float, BeforeValidator(_coerce_float), Field(strict=True)]
Int = StrictInt
Bool = StrictBool
Str = StrictStr
Size = Annotated[Int, Field(ge=1)]
SizePair = Union[Size, Annotated[list[Size], Field(min_length=2, max_length=2)]]
Unit = Annotated[Float, Field(ge=0, lt=1)]            # [0, 1)
Positive = Annotated[Float, Field(gt=0)]
NonNegative = Annotated[Float, Field(ge=0)]


class ConfigIssue(ValueError):
    """A validation problem found by a class's own check.

    ``message`` is complete (it names the value); ``key`` is an optional path (``"nesterov"``)
    relative to the place the check runs, added to the key path of the final message.
    """

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.message = message
        self.key = key


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --- messages ------------------------------------------------------------------------------

def fmt_value(value: Any, limit: int = 80) -> str:
    """A value as it would be written in YAML, on one line."""
    if isinstance(value, str):
        text = repr(value)
    elif value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, default=repr)
        except (TypeError, ValueError):
            text = repr(value)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def error_message(err: dict) -> str | None:
    """The one-line message of a pydantic error of a scalar (type, bound, length, literal), or
    None for the kinds that need the key path to explain (unknown keys, unions)."""
    etype = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    got = f"(got {fmt_value(value)})"
    if etype in ("value_error", "assertion_error") and isinstance(ctx.get("error"), ConfigIssue):
        return ctx["error"].message
    if etype in _TYPE_MESSAGES:
        return f"{_TYPE_MESSAGES[etype]} {got}"
    if etype in _BOUNDS:
        bound = next(iter(ctx.values())) if ctx else "?"
        return f"must be {_BOUNDS[etype]} {fmt_value(bound)} {got}"
    if etype in ("too_short", "too_long"):
        n = ctx.get("actual_length", len(value) if hasattr(value, "__len__") else "?")
        if etype == "too_short":
            lo = ctx.get("min_length")
            return f"must have at least {lo} item{'s' if lo != 1 else ''} (got {n})"
        return f"must have at most {ctx.get('max_length')} items (got {n})"
    if etype == "literal_error":
        return f"must be one of {ctx.get('expected', '')} {got}"
    return None


# --- activation and initializer specs: a name, or {name: ..., <param>: ...} ----------------

def _param_annotations(fn, skip):
    """{name: (annotation, default)} of ``fn``'s keyword parameters after those in ``skip``."""
    hints = typing.get_type_hints(fn, include_extras=True)
    out = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[p.name] = (hints.get(p.name, Any), p.default)
    return out


def _spec_params(kind):
    """{name: {param: (annotation, default)}} for activations or initializers."""
    reg = registry.activations if kind == "activation" else registry.initializers
    out = {}
    for name, obj in reg.items():
        if kind == "activation":
            out[name] = _param_annotations(obj.__init__, ("self",))
        else:
            out[name] = _param_annotations(obj, ("shape", "rng", "dtype", "out"))
    return out


_SPEC_CACHE: dict = {}


def spec_params(kind):
    key = (kind, registry.generation())
    if key not in _SPEC_CACHE:
        _SPEC_CACHE.clear() if len(_SPEC_CACHE) > 8 else None
        _SPEC_CACHE[key] = _spec_params(kind)
    return _SPEC_CACHE[key]


def normalize_spec(value: Any, kind: str) -> dict:
    """``"relu"`` or ``{name: elu, alpha: 0.5}`` → ``{"name": canonical, **params with defaults}``,
    each parameter checked against its annotation.  Raises ConfigIssue (with the key)."""
    reg = registry.activations if kind == "activation" else registry.initializers
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ConfigIssue(f"must be an {kind} name or a mapping with 'name' (got {fmt_value(value)})")
    name = value.get("name")
    if not isinstance(name, str):
        if "name" not in value:
            raise ConfigIssue(f"missing required key 'name' (the {kind})")
        raise ConfigIssue(f"must be a string (got {fmt_value(name)})", "name")
    name = reg.canonical(name)
    if name not in reg:
        raise ConfigIssue(_unknown(kind, name, reg.names() + reg.aliases()))
    params = spec_params(kind)[name]
    out = {"name": name}
    for key, v in value.items():
        if key == "name":
            continue
        if key not in params:
            if not params:
                raise ConfigIssue(f"{kind} {name!r} takes no parameters (got {key}: {fmt_value(v)})", key)
            raise ConfigIssue(f"{kind} {name!r} takes {', '.join(repr(p) for p in params)}, "
                              f"not {key!r} (got {fmt_value(v)})", key)
    for key, (ann, default) in params.items():
        v = value.get(key, default)
        if v is inspect.Parameter.empty:
            raise ConfigIssue(f"missing required key {key!r} of {kind} {name!r}", key)
        out[key] = check_value(ann, v, key)
    return out


def _unknown(kind, value, options):
    from difflib import get_close_matches
    close = get_close_matches(str(value), list(options), n=1, cutoff=0.6)
    valid = "valid: " + ", ".join(sorted(options))
    if close:
        return f"unknown {kind} {fmt_value(value)} (did you mean {fmt_value(close[0])}? {valid})"
    return f"unknown {kind} {fmt_value(value)} ({valid})"


_ADAPTERS: dict = {}


def check_value(annotation, value, key=None):
    """``value`` validated by ``annotation`` (a pydantic type); ConfigIssue with a one-line
    message otherwise."""
    try:
        adapter = _ADAPTERS.get(id(annotation))
        if adapter is None:
            adapter = _ADAPTERS[id(annotation)] = (TypeAdapter(annotation), annotation)
        return adapter[0].validate_python(value)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        msg = error_message(err) or f"invalid value (got {fmt_value(value)})"
        raise ConfigIssue(msg, key) from None


class _NamedSpec(ConfigModel):
    """Base of ActivationSpec / InitSpec: holds the normalized dict; dumps as a bare name when
    there is no parameter."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    name: Str
    kind: typing.ClassVar[str] = "activation"

    @model_validator(mode="before")
    @classmethod
    def _before(cls, value: Any) -> Any:
        if hasattr(value, "get_config") and not isinstance(value, dict):  # an Activation object
            value = value.get_config()
        return normalize_spec(value, cls.kind)

    @model_serializer(mode="plain")
    def _dump(self) -> Any:
        params = {k: v for k, v in (self.model_extra or {}).items()}
        return self.name if not params else {"name": self.name, **params}

    def as_dict(self):
        return {"name": self.name, **(self.model_extra or {})}


class ActivationSpec(_NamedSpec):
    """An activation: ``relu`` or ``{name: leaky_relu, alpha: 0.2}`` (aliases resolved, the
    parameter's default filled in, its range checked by the activation's own annotation)."""
    kind: typing.ClassVar[str] = "activation"


class InitSpec(_NamedSpec):
    """A weight initializer: ``he_normal`` or ``{name: normal, std: 0.02}``."""
    kind: typing.ClassVar[str] = "initializer"


# --- models from signatures ------------------------------------------------------------------

RUNTIME_ARGS = ("self", "dtype", "seed", "rng", "params")


def signature_fields(fn, skip=RUNTIME_ARGS, optional=()):
    """[(name, annotation, default)] of ``fn``'s config keys: every parameter but the runtime
    ones; those in ``optional`` (sizes taken from the input) become Optional with default None."""
    hints = typing.get_type_hints(fn, include_extras=True)
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = hints.get(p.name, Any)
        default = p.default
        if p.name in optional:
            ann, default = Optional[ann], None
        out.append((p.name, ann, default))
    return out


def config_model(cls, tag: str, tag_key: str = "type", fn=None, optional=(), replace=None,
                 check=None):
    """The pydantic model of ``{tag_key: tag, ...}`` whose keys are ``fn``'s (default:
    ``cls.__init__``) parameters with their annotations and defaults.  ``replace`` maps a key to
    another annotation (a residual block's list of layer configs); ``check(values)`` runs after
    the fields (the class's own cross-field rule) and raises ConfigIssue."""
    fn = fn or cls.__init__
    fields: dict[str, Any] = {tag_key: (Literal[tag], ...)}
    for name, ann, default in signature_fields(fn, optional=optional):
        if replace and name in replace:
            ann = replace[name]
        if default is inspect.Parameter.empty:
            fields[name] = (ann, ...)
        else:
            fields[name] = (ann, Field(default=default, validate_default=True))
    validators = {}
    if check is not None:
        def _check(self):
            check({k: getattr(self, k) for k in type(self).model_fields if k != tag_key})
            return self
        validators["_check"] = model_validator(mode="after")(_check)
    model = create_model(f"{cls.__name__}Config", __base__=ConfigModel, __validators__=validators,
                         **fields)
    model.__doc__ = f"Config of {registry.qualified_name(cls)} ({tag_key}: {tag})."
    model.implementation = cls
    return model


def validated(init):
    """Check a constructor's arguments against its annotations (the same rules a config
    follows), raising ValueError("Dense: units must be >= 1 (got -3)").  Arguments annotated
    with an activation or initializer spec are left to the constructor (which also takes
    objects), as are those without a pydantic annotation."""
    sig = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        bound = sig.bind(self, *args, **kwargs)
        hints = _hints(init)
        for name, value in list(bound.arguments.items())[1:]:
            ann = hints.get(name)
            if ann is None or _is_spec(ann) or value is None and _optional(ann):
                continue
            try:
                check_value(ann, value, name)
            except ConfigIssue as e:
                raise ValueError(f"{type(self).__name__}: {name} {e.message}") from None
        return init(self, *args, **kwargs)

    # help() and inspect show plain types (lr: float = 0.01), not the validators behind them;
    # signature_fields still reads the full annotations (typing.get_type_hints)
    hints = typing.get_type_hints(init, include_extras=True)
    wrapper.__signature__ = sig.replace(parameters=[
        p.replace(annotation=plain_type(hints[p.name])) if p.name in hints else p
        for p in sig.parameters.values()])
    return wrapper


def plain_type(ann):
    """An annotation without its validators: ``Annotated[float, Gt(0)]`` → ``float``, and so
    inside ``Optional``, ``Union`` and ``list``."""
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return plain_type(typing.get_args(ann)[0])
    if origin is typing.Union:
        return typing.Union[tuple(plain_type(a) for a in typing.get_args(ann))]
    if origin is list and typing.get_args(ann):
        return list[plain_type(typing.get_args(ann)[0])]
    return ann


@functools.lru_cache(maxsize=None)
def _hints(fn):
    hints = typing.get_type_hints(fn, include_extras=True)
    return {k: v for k, v in hints.items() if k not in RUNTIME_ARGS and v is not Any
            and _is_pydantic_type(v)}


def _is_pydantic_type(ann):
    origin = typing.get_origin(ann)
    if origin is Annotated:
        return True
    if origin in (Union, list, tuple, Literal):
        return True
    return ann in (int, float, bool, str) or _is_spec(ann)


def _is_spec(ann):
    base = typing.get_args(ann)[0] if typing.get_origin(ann) is Annotated else ann
    if typing.get_origin(base) is Union:
        return any(_is_spec(a) for a in typing.get_args(base))
    return isinstance(base, type) and issubclass(base, _NamedSpec)


def _optional(ann):
    if typing.get_origin(ann) is Union:
        return type(None) in typing.get_args(ann)
    return False
