"""Name → class lookup tables whose errors list the valid names."""

import difflib


def unknown_name(kind, name, valid):
    """The error message for an unknown ``kind`` name, with a suggestion when one is close."""
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {kind} '{name}'{hint}; valid: {', '.join(valid)}"


def lookup(table, kind, name):
    """``table[name]``, or a ValueError naming the valid keys."""
    if not isinstance(name, str):
        raise TypeError(f"{kind} must be given by name (a str), got {type(name).__name__}")
    try:
        return table[name]
    except KeyError:
        raise ValueError(unknown_name(kind, name, table)) from None
