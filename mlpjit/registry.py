"""The registries: config names → the classes and functions that implement them.

Everything a config can name registers once, where it is defined, with a decorator::

    @register_layer("dense")
    class Dense(Layer): ...

    @register_activation("relu")
    class Relu(Activation): ...

The config schema (``mlpjit config show``), the "valid: ..." lists of error messages, ``--help``
and the model files read these tables; no other module lists the names.  A user's module
registers its own layers, activations, losses, initializers, optimizers and schedules the same
way, and a config names that module under ``imports:`` (see :mod:`mlpjit.config`).

Registering a name that another class already holds is an error naming both; registering the
same class again (a module imported twice, a notebook cell run again) replaces the entry.
"""

import difflib

from .errors import MlpjitError

__all__ = ["Registry", "RegistryError", "layers", "activations", "losses", "initializers",
           "optimizers", "schedules", "register_layer", "register_activation", "register_loss",
           "register_initializer", "register_optimizer", "register_schedule", "register_logger", "unknown_name",
           "generation", "qualified_name"]


class RegistryError(MlpjitError, ValueError):
    """A name registered twice by different classes or functions."""


def unknown_name(kind, name, valid):
    """The error message for an unknown ``kind`` name, with a suggestion when one is close."""
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {kind} '{name}'{hint}; valid: {', '.join(valid)}"


def qualified_name(obj):
    """``module.QualName`` of a class or function (what a clash message shows)."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


_generation = [0]


def generation():
    """A number that changes whenever any registry changes (the config schema is rebuilt)."""
    return _generation[0]


class Registry:
    """Names of one kind (``"layer type"``, ``"activation"``, ...) mapped to what implements them.

    ``register(name, aliases=())`` is a decorator; ``get(name)`` returns the entry or raises
    ValueError listing the valid names; ``names()`` lists them (aliases not included).
    """

    def __init__(self, kind, schema=True):
        self.kind = kind
        self._items = {}
        self._aliases = {}
        self.schema = schema   # whether the config schema is built from it (rebuilt on a change)

    def register(self, name, obj=None, *, aliases=()):
        if obj is None:
            return lambda o: self.register(name, o, aliases=aliases)
        if not isinstance(name, str) or not name.isidentifier():
            raise RegistryError(f"{self.kind} name must be an identifier such as 'my_layer', "
                                f"got {name!r}")
        for key in (name, *aliases):
            held = self._items.get(key) or self._items.get(self._aliases.get(key))
            if held is not None and qualified_name(held) != qualified_name(obj):
                raise RegistryError(f"{self.kind} '{key}' is already registered by "
                                    f"{qualified_name(held)}; register "
                                    f"{qualified_name(obj)} under another name")
        self._items[name] = obj
        for alias in aliases:
            self._aliases[alias] = name
        if self.schema:
            _generation[0] += 1
        if hasattr(obj, "__dict__") and isinstance(obj, type):
            obj.registered_name = name
        return obj

    def canonical(self, name):
        """The registered name for ``name`` or one of its aliases (``name`` itself if unknown)."""
        return self._aliases.get(name, name)

    def get(self, name):
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} must be given by name (a str), got {type(name).__name__}")
        try:
            return self._items[self.canonical(name)]
        except KeyError:
            raise ValueError(unknown_name(self.kind, name, self.names() + self.aliases())) from None

    def __contains__(self, name):
        return self.canonical(name) in self._items

    def names(self):
        return sorted(self._items)

    def aliases(self):
        return sorted(self._aliases)

    def alias_map(self):
        return dict(self._aliases)

    def items(self):
        return list(self._items.items())

    def __repr__(self):
        return f"Registry({self.kind!r}: {', '.join(self.names())})"


layers = Registry("layer type")
activations = Registry("activation")
losses = Registry("loss")
initializers = Registry("initializer")
optimizers = Registry("optimizer")
schedules = Registry("schedule")
loggers = Registry("logger", schema=False)   # train.log checks it by name when it validates

register_layer = layers.register
register_activation = activations.register
register_loss = losses.register
register_initializer = initializers.register
register_optimizer = optimizers.register
register_logger = loggers.register
def register_schedule(name, obj=None, *, aliases=(), depends_on_plan=None):
    """Register a schedule class under ``name`` (a decorator without ``obj``).

    ``depends_on_plan``: whether its values depend on the planned number of epochs (cosine,
    a linear decay to zero, one-cycle do; constant, step, exponential do not).  A resume that
    changes ``train.epochs`` re-plans such a schedule and says so.  Left out: the class's own
    ``depends_on_plan`` attribute, else it is found by comparing the rates of the two plans."""
    if obj is None:
        return lambda o: register_schedule(name, o, aliases=aliases, depends_on_plan=depends_on_plan)
    if depends_on_plan is not None:
        if not isinstance(depends_on_plan, bool):
            raise RegistryError(f"schedule '{name}': depends_on_plan must be True or False, "
                                f"got {depends_on_plan!r}")
        obj.depends_on_plan = depends_on_plan
    return schedules.register(name, obj, aliases=aliases)


def optimizer_value(optimizer, name):
    """Hyperparameter ``name`` of a resolved config's ``optimizer`` section (a dict); one left out
    of the dump at its default (an optimizer's ``quiet_defaults``) reads as the registered
    class's default."""
    import inspect
    if name in optimizer:
        return float(optimizer[name])
    return float(inspect.signature(optimizers.get(optimizer["type"]).__init__).parameters[name].default)
