"""Random search for ``mlpjit sweep``: ``--sample N`` trials drawn from ``--space`` distributions.

``--space KEY.PATH=DIST`` names one config key and the distribution its value is drawn from:

=====================  ============================================================================
``uniform(a, b)``      a float uniform in ``[a, b)``
``loguniform(a, b)``   ``exp(u)`` with ``u`` uniform in ``[log a, log b)`` (``0 < a < b``): every
                       decade between a and b is drawn equally often (learning rates, decays)
``randint(a, b)``      an integer uniform in ``{a, ..., b}`` (both ends included)
``choice(x, y, ...)``  one of the values, each equally likely; values are read like ``--set``
                       values (``choice(relu, tanh, {name: leaky_relu, alpha: 0.1})``)
=====================  ============================================================================

Floats are rounded to :data:`SIGNIFICANT_DIGITS` significant digits, so that run folder names
stay readable and the value in a folder name is exactly the value in its config.

The draws are reproducible: trial ``k`` draws key ``K`` from
``numpy.random.default_rng([seed, k, crc32(K)])``, where ``seed`` is the config's seed.  The
same command therefore draws the same trials; ``--sample 16`` after ``--sample 8`` draws the
same first 8 trials (whose finished runs are skipped), and adding or reordering ``--space``
items does not change the draws of the other keys.

The same ``--space`` items describe the parameters of an Optuna search (``mlpjit sweep
--search tpe|random|cmaes|grid``, :mod:`mlpjit.sweep.search`): each distribution maps onto
Optuna's (:meth:`Uniform.to_optuna`): ``uniform`` onto ``FloatDistribution(a, b)``,
``loguniform`` onto ``FloatDistribution(a, b, log=True)``, ``randint`` onto
``IntDistribution(a, b)`` and ``choice`` onto ``CategoricalDistribution``; Optuna's samplers
then draw the values (unrounded).  :func:`draw_trials` stays for ``--sample``, whose folder
names and resumable trials depend on its draws.

Python API: :func:`parse_space` (one ``--space`` item), :func:`draw_trials`.
"""

from __future__ import annotations

import math
import re
import zlib
from typing import Any

import numpy as np
import yaml

from .errors import ConfigError

__all__ = ["Uniform", "LogUniform", "RandInt", "Choice", "DISTRIBUTIONS", "parse_space",
           "draw_trials", "split_values", "parse_value", "SIGNIFICANT_DIGITS"]

#: Significant digits kept of a drawn float.
SIGNIFICANT_DIGITS = 4

#: The most values ``--search grid`` visits for one ``randint(a, b)``.
MAX_GRID = 10_000


def parse_value(text: str, where: str) -> Any:
    """One value as YAML reads it (``0.1``, ``relu``, ``[1, 2]``); a clear error naming ``where``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{where}: invalid value {text!r}: {problem}") from None


def split_values(text: str, brackets: str = "[{") -> list[str]:
    """Split on commas outside brackets and quotes: ``a,[1, 2],{x: 1, y: 2}`` -> 3 items.

    ``brackets`` are the opening brackets that nest (their closing partners are implied).
    """
    closing = {"[": "]", "{": "}", "(": ")"}
    opening, closers = set(brackets), {closing[b] for b in brackets}
    items, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in opening:
            depth += 1
        elif ch in closers:
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    items.append("".join(cur))
    return [s.strip() for s in items]


def _round(x: float) -> float:
    """``x`` rounded to SIGNIFICANT_DIGITS significant digits."""
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 9, sort_keys=False)
    return text.strip().removesuffix("...").strip()


class Uniform:
    """``uniform(a, b)``: ``x = a + (b - a) u`` with ``u ~ U[0, 1)``, rounded."""

    name = "uniform"

    def __init__(self, a: float, b: float):
        self.a, self.b = a, b

    def check(self, where: str) -> None:
        if not self.a < self.b:
            raise ConfigError(f"{where}: expected a < b (got a={_text(self.a)}, b={_text(self.b)})")

    def sample(self, rng: np.random.Generator) -> float:
        while True:  # rounding can reach b; draw again, so values stay in [a, b)
            x = _round(self.a + (self.b - self.a) * rng.random())
            if x < self.b:
                return x

    def __repr__(self) -> str:
        return f"{self.name}({_text(self.a)}, {_text(self.b)})"

    def to_optuna(self):
        """The Optuna distribution of this ``--space`` item."""
        from optuna.distributions import FloatDistribution
        return FloatDistribution(float(self.a), float(self.b))

    def grid_values(self, where: str) -> list:
        """The values a grid search visits (only discrete distributions have them)."""
        raise ConfigError(f"{where}: --search grid needs a list of values; {self.name}(a, b) is "
                          f"continuous (use choice(x, y, ...) or --grid key.path=x,y,...)")

    def decode(self, value: Any) -> Any:
        """The config value of an Optuna parameter value."""
        return value


class LogUniform(Uniform):
    """``loguniform(a, b)``: ``x = exp(log a + (log b - log a) u)``, ``0 < a < b``, rounded."""

    name = "loguniform"

    def check(self, where: str) -> None:
        if self.a <= 0:
            raise ConfigError(f"{where}: expected 0 < a < b (got a={_text(self.a)})")
        super().check(where)

    def sample(self, rng: np.random.Generator) -> float:
        lo, hi = math.log(self.a), math.log(self.b)
        while True:  # rounding can reach b; draw again, so values stay in [a, b)
            x = _round(math.exp(lo + (hi - lo) * rng.random()))
            if x < self.b:
                return x

    def to_optuna(self):
        from optuna.distributions import FloatDistribution
        return FloatDistribution(float(self.a), float(self.b), log=True)


class RandInt(Uniform):
    """``randint(a, b)``: an integer uniform in ``{a, ..., b}``."""

    name = "randint"

    def check(self, where: str) -> None:
        if not all(isinstance(v, int) for v in (self.a, self.b)):
            raise ConfigError(f"{where}: expected integer bounds (got a={_text(self.a)}, b={_text(self.b)})")
        if self.a > self.b:
            raise ConfigError(f"{where}: expected a <= b (got a={self.a}, b={self.b})")
        if not -2 ** 63 <= self.a <= self.b < 2 ** 63 - 1:
            raise ConfigError(f"{where}: bounds must be 64-bit integers (got a={self.a}, b={self.b})")

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.a, self.b, endpoint=True))

    def to_optuna(self):
        from optuna.distributions import IntDistribution
        return IntDistribution(int(self.a), int(self.b))

    def grid_values(self, where: str) -> list:
        if self.b - self.a >= MAX_GRID:
            raise ConfigError(f"{where}: --search grid would visit {self.b - self.a + 1} values "
                              f"(at most {MAX_GRID}); give a list with choice(x, y, ...)")
        return list(range(self.a, self.b + 1))


class Choice:
    """``choice(x, y, ...)``: one of the values, each with probability 1/n."""

    name = "choice"

    def __init__(self, *values: Any):
        self.values = list(values)

    def check(self, where: str) -> None:
        seen = []
        for v in self.values:
            if v in seen:
                raise ConfigError(f"{where}: value {_text(v)!r} is given twice")
            seen.append(v)
        encoded = []
        for v, e in zip(self.values, self.encoded()):
            if any(e == o and type(e) is type(o) for o in encoded):
                raise ConfigError(f"{where}: value {_text(v)!r} is given twice")
            encoded.append(e)

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def encoded(self) -> list:
        """The values as Optuna's categories: None, bools, numbers and strings as they are,
        anything else (a list, a mapping) as its YAML text."""
        return [v if v is None or isinstance(v, (bool, int, float, str)) else _text(v)
                for v in self.values]

    def to_optuna(self):
        from optuna.distributions import CategoricalDistribution
        return CategoricalDistribution(self.encoded())

    def grid_values(self, where: str) -> list:
        return self.encoded()

    def decode(self, value: Any) -> Any:
        for v, e in zip(self.values, self.encoded()):
            if e == value and type(e) is type(value):
                return v
        raise ValueError(f"{value!r} is not one of {self!r}")

    def __repr__(self) -> str:
        return f"choice({', '.join(_text(v) for v in self.values)})"


#: Distribution names of ``--space`` -> classes.
DISTRIBUTIONS = {"uniform": Uniform, "loguniform": LogUniform, "randint": RandInt, "choice": Choice}

_USAGE = "expected key.path=uniform(a,b), loguniform(a,b), randint(a,b) or choice(x,y,...)"


def parse_space(item: str) -> tuple[str, Any]:
    """``"optimizer.lr=loguniform(1e-3, 0.3)"`` -> ``("optimizer.lr", LogUniform(0.001, 0.3))``.

    Raises :class:`ConfigError` naming the ``--space`` item.
    """
    where = f"--space {item}"
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not p.strip() for p in key.split(".")):
        raise ConfigError(f"{where}: {_USAGE}")
    m = re.fullmatch(r"\s*([A-Za-z_]+)\s*\((.*)\)\s*", raw, flags=re.S)
    if not m:
        raise ConfigError(f"{where}: {_USAGE}")
    kind, inner = m.group(1).lower(), m.group(2)
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: unknown distribution {m.group(1)!r} "
                          f"(valid: {', '.join(DISTRIBUTIONS)})")
    texts = split_values(inner, brackets="[{(") if inner.strip() else []
    values = []
    for text in texts:
        if not text:
            raise ConfigError(f"{where}: empty value in {kind}(...)")
        values.append(parse_value(text, where))
    cls = DISTRIBUTIONS[kind]
    if cls is Choice:
        if not values:
            raise ConfigError(f"{where}: choice() needs at least one value")
        dist = Choice(*values)
    else:
        if len(values) != 2:
            raise ConfigError(f"{where}: {kind}(a, b) takes two numbers (got {len(values)})")
        for i, v in enumerate(values):
            if isinstance(v, str):  # YAML reads 1e-3 (no dot) as a string
                try:
                    v = values[i] = float(v)
                except ValueError:
                    pass
            if (isinstance(v, bool) or not isinstance(v, (int, float))
                    or not math.isfinite(float(v) if abs(v) < 1e300 else math.inf)):
                raise ConfigError(f"{where}: {kind}(a, b) takes two finite numbers "
                                  f"(got {texts[i]!r})")
        dist = cls(*values)
    dist.check(where)
    return key, dist


def draw_trials(space: dict[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` trials, each a dict {key path: drawn value} in the order of ``space``.

    Trial ``k`` draws key ``K`` with ``default_rng([seed, k, crc32(K)])``: the same ``space``,
    ``n`` and ``seed`` give the same trials, and the first trials do not depend on ``n``.

    >>> draw_trials({"optimizer.lr": LogUniform(1e-3, 1e-1)}, 2, seed=0)
    [{'optimizer.lr': 0.0336}, {'optimizer.lr': 0.067}]
    """
    seed = int(seed)
    return [{key: dist.sample(np.random.default_rng([seed, k, zlib.crc32(key.encode("utf-8"))]))
             for key, dist in space.items()}
            for k in range(n)]
