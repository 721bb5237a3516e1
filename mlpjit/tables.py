"""Tables as people bring them: a CSV file with a header, numbers and text, becomes model inputs.

:func:`read_csv` reads a file into its header and rows (every mistake a one-line
:class:`~mlpjit.errors.DataError` naming the file, line and column).  A
:class:`TableEncoding` is learned from the training file (:meth:`TableEncoding.fit`):

* a column whose cells are all numbers stays one feature;
* a column with text (or one listed in ``categorical``) becomes one-hot features, one per
  category seen in the training file, in sorted order (``color=blue``, ``color=green``, ...);
* an empty cell is an error naming its line and column, or, with ``missing: drop``, drops its
  row.

The encoding is stored in the model file (``model.metadata["encoding"]``), so ``mlpjit
predict`` on a raw CSV with the same columns encodes it the same way; a category the training
file did not have is an error naming the column and the value, or, with ``unknown: zeros``,
all-zero features.  The target column, when a file has it, is not a feature.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

__all__ = ["read_csv", "cell_float", "is_number", "TableEncoding", "MISSING", "UNKNOWN"]

MISSING = ("error", "drop")   # data.missing: what an empty cell does
UNKNOWN = ("error", "zeros")  # data.unknown: what a category unseen in training does


def read_csv(path: Path, label: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Read a CSV file with a header; return (columns, [(line number, cells)])."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{label}: CSV file not found" if not path.exists() else f"{label}: not a file"
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows = [(reader.line_num, row) for row in reader if row]
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: not a UTF-8 text file ({e.reason} at byte {e.start})") from e
    except csv.Error as e:
        raise DataError(f"{label}: malformed CSV: {e}") from e
    except OSError as e:
        raise DataError(f"{label}: cannot read: {e.strerror or e}") from e
    if not header:
        raise DataError(f"{label}: empty file, expected a header row of column names")
    columns = [c.strip() for c in header]
    if any(c == "" for c in columns):
        raise DataError(
            f"{label}: the header row has an empty column name (column {columns.index('') + 1})"
        )
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise DataError(f"{label}: duplicate column name(s) in the header: {', '.join(dupes)}")
    if all(is_number(c) for c in columns):
        raise DataError(
            f"{label}: a header row of column names is required but line 1 holds numbers "
            f"({', '.join(columns[:3])}, ...)"
        )
    if not rows:
        raise DataError(f"{label}: no data rows after the header")
    for line, row in rows:
        if len(row) != len(columns):
            raise DataError(
                f"{label} line {line}: {len(row)} fields but the header has {len(columns)} columns"
            )
    return columns, rows


def cell_float(label: str, line: int, column: str, cell: str,
               missing_hint: str = "set data.missing: drop to leave out rows with empty cells") -> float:
    """A cell as a finite float, or a DataError naming the file, line and column."""
    text = cell.strip()
    if text == "":
        raise DataError(f"{label} line {line}, column {column!r}: empty cell "
                        f"(or {missing_hint})")
    try:
        value = number(text)
    except ValueError:
        raise DataError(
            f"{label} line {line}, column {column!r}: {cell!r} is not a number"
        ) from None
    if math.isnan(value):
        raise DataError(f"{label} line {line}, column {column!r}: {cell!r} is NaN")
    if math.isinf(value):
        raise DataError(f"{label} line {line}, column {column!r}: {cell!r} is infinite")
    return value


# A number as a CSV cell writes it: ASCII digits, an optional sign, point and exponent, or
# inf/nan.  Python's float() also takes "1_000" and other scripts' digits ("١٢"): those are text.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                     r"|[+-]?(?:inf|infinity|nan)", re.IGNORECASE)


def number(text: str) -> float:
    """``text`` (stripped) as a float, or ValueError when it is not written as a number."""
    t = text.strip()
    if not _NUMBER.fullmatch(t):
        raise ValueError(f"not a number: {t!r}")
    return float(t)


def _parses(text: str) -> bool:
    """Whether ``text`` is written as a number (NaN and infinities included: a numeric column with a NaN
    is reported as such, not taken for text)."""
    try:
        number(text)
        return True
    except ValueError:
        return False


def is_number(text: str) -> bool:
    try:
        return math.isfinite(number(text))
    except ValueError:
        return False


class TableEncoding:
    """How the feature columns of a table become model inputs (see the module docstring).

    ``columns``: ``[{"name": ..., "kind": "number"}, {"name": ..., "kind": "category",
    "categories": [...]}]`` in file order; ``target``: the label column (None for none);
    ``unknown``: ``"error"`` or ``"zeros"``; ``missing``: ``"error"`` or ``"drop"``.
    """

    def __init__(self, columns: list[dict], target: str | None = None, unknown: str = "error",
                 missing: str = "error"):
        self.columns = [dict(c) for c in columns]
        self.target = target
        self.unknown = unknown
        self.missing = missing

    # --- learning it -------------------------------------------------------------------------
    @classmethod
    def fit(cls, columns: list[str], rows: list[tuple[int, list[str]]], target: str | None,
            label: str, categorical=(), unknown: str = "error", missing: str = "error"):
        """The encoding of the training file's feature columns (every column but ``target``)."""
        for name in categorical:
            if name not in columns:
                raise DataError(f"data.categorical: {label} has no column {name!r} "
                                f"(columns: {', '.join(columns)})")
            if name == target:
                raise DataError(f"data.categorical: {name!r} is the target column, not a feature")
        pos = {c: i for i, c in enumerate(columns)}
        out = []
        for name in columns:
            if name == target:
                continue
            cells = [(line, row[pos[name]].strip()) for line, row in rows]
            text = [(line, c) for line, c in cells if c != "" and not _parses(c)]
            numbers = sum(1 for _, c in cells if c != "" and _parses(c))
            if name in categorical or (text and not numbers):
                cats = sorted({c for _, c in cells if c != ""})
                if not cats:
                    raise DataError(f"{label}: column {name!r} is empty in every row")
                out.append({"name": name, "kind": "category", "categories": cats})
            elif text:   # numbers and text in one column: most likely a typo, never a guess
                line, cell = text[0]
                raise DataError(f"{label} line {line}, column {name!r}: {cell!r} is not a number "
                                f"(the column holds {numbers} numbers and {len(text)} text "
                                f"cells; list it under data.categorical to treat its values as "
                                f"categories)")
            else:
                out.append({"name": name, "kind": "number"})
        if not out:
            raise DataError(f"{label}: no feature columns besides the target {target!r}")
        return cls(out, target, unknown, missing)

    # --- using it ----------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return sum(len(c["categories"]) if c["kind"] == "category" else 1 for c in self.columns)

    @property
    def feature_names(self) -> list[str]:
        names = []
        for c in self.columns:
            if c["kind"] == "category":
                names += [f"{c['name']}={v}" for v in c["categories"]]
            else:
                names.append(c["name"])
        return names

    @property
    def categorical(self) -> list[str]:
        return [c["name"] for c in self.columns if c["kind"] == "category"]

    def check_columns(self, columns: list[str], label: str, target_required: bool) -> None:
        """The file must have every feature column (and the target, if required); no others
        but the target."""
        names = [c["name"] for c in self.columns]
        missing = [c for c in names if c not in columns]
        if target_required and self.target is not None and self.target not in columns:
            missing.append(self.target)
        extra = [c for c in columns if c not in names and c != self.target]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing column(s) {', '.join(missing)}")
            if extra:
                parts.append(f"unexpected column(s) {', '.join(extra)}")
            expected = names + ([self.target] if self.target else [])
            raise DataError(f"{label}: {'; '.join(parts)} (the model was trained on columns: "
                            f"{', '.join(expected)})")

    def usable_rows(self, columns: list[str], rows: list, label: str, also: tuple = ()):
        """The rows to keep: all of them, or, with ``missing: drop``, those without an empty
        cell in a feature column (or in the columns ``also``, such as the target)."""
        if self.missing != "drop":
            return rows
        pos = [columns.index(c["name"]) for c in self.columns] + [columns.index(a) for a in also
                                                                   if a in columns]
        kept = [(line, row) for line, row in rows if all(row[p].strip() != "" for p in pos)]
        if not kept:
            raise DataError(f"{label}: every row has an empty cell (data.missing: drop leaves none)")
        return kept

    def transform(self, columns: list[str], rows: list, label: str,
                  hint: str = "set data.unknown: zeros",
                  missing_hint: str = "set data.missing: drop to leave out rows with empty cells") -> np.ndarray:
        """The feature matrix (N, n_features), float64, of ``rows`` of a file with ``columns``;
        ``hint``, ``missing_hint``: how to ask for all-zero features of an unseen category, and
        to leave out rows with an empty cell, for the messages."""
        pos = {c: i for i, c in enumerate(columns)}
        X = np.zeros((len(rows), self.n_features))
        j = 0
        for c in self.columns:
            p = pos[c["name"]]
            if c["kind"] == "number":
                for r, (line, row) in enumerate(rows):
                    X[r, j] = cell_float(label, line, c["name"], row[p], missing_hint)
                j += 1
                continue
            index = {v: k for k, v in enumerate(c["categories"])}
            for r, (line, row) in enumerate(rows):
                v = row[p].strip()
                if v == "":
                    raise DataError(f"{label} line {line}, column {c['name']!r}: empty cell "
                                    f"(or {missing_hint})")
                k = index.get(v)
                if k is None:
                    if self.unknown == "zeros":
                        continue
                    raise DataError(f"{label} line {line}, column {c['name']!r}: category {v!r} "
                                    f"does not occur in the training data (categories: "
                                    f"{', '.join(c['categories'])}; or {hint})")
                X[r, j + k] = 1.0
            j += len(c["categories"])
        return X

    # --- storing it --------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"columns": self.columns, "target": self.target, "unknown": self.unknown,
                "missing": self.missing}

    @classmethod
    def from_json(cls, doc: dict) -> "TableEncoding":
        return cls(doc["columns"], doc.get("target"), doc.get("unknown", "error"),
                   doc.get("missing", "error"))

    def __repr__(self) -> str:
        return (f"TableEncoding({len(self.columns)} columns → {self.n_features} features, "
                f"categorical: {', '.join(self.categorical) or 'none'})")


def read_table(path: Any, encoding: TableEncoding, label: str | None = None,
               target_required: bool = False) -> tuple[np.ndarray, list | None, list[int]]:
    """(X, raw target cells or None, kept line numbers) of a raw CSV encoded as in training."""
    label = label or str(path)
    columns, rows = read_csv(Path(path), label)
    encoding.check_columns(columns, label, target_required)
    has_target = encoding.target is not None and encoding.target in columns
    rows = encoding.usable_rows(columns, rows, label, also=(encoding.target,) if has_target else ())
    X = encoding.transform(columns, rows, label)
    target = None
    if has_target:
        t = columns.index(encoding.target)
        target = [(line, row[t].strip()) for line, row in rows]
    return X, target, [line for line, _ in rows]
