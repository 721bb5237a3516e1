"""Griffe extension for the API reference: mlpjit's docstrings, written for ``help()`` and
Sphinx-style readers, shown as Markdown without changing the code.

- a doctest (``>>>`` lines, their ``...`` continuations and the output up to a blank line)
  becomes a fenced ``pycon`` block, not a nest of block quotes;
- a role such as :class:`~mlpjit.errors.ConfigError` becomes ``ConfigError`` in code type
  (``~`` keeps the last name, as Sphinx does), :meth:`logits` becomes ``logits``;
- a paragraph ending in ``::`` ends in ``:`` (its indented block is code in Markdown too);
- an RST simple table (rows between ``====  ====`` borders) is shown as it is written, in a
  fenced ``text`` block (its ``code`` marks replaced by spaces, so the columns stay aligned).

``double backticks`` are code in Markdown as they are. mkdocs.yml loads this file
(``extensions:`` of the Python handler).
"""

from __future__ import annotations

import re

from griffe import Extension

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const|term):`(~?)([^`]+)`")
BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")


def _role(m: re.Match) -> str:
    tilde, target = m.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def markdown(text: str) -> str:
    """A docstring's text with its doctests fenced, its roles as code and ``::`` as ``:``."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            j = i
            while j < len(lines) and lines[j].strip():
                j += 1
            if out and out[-1].strip():
                out.append("")
            out += [f"{indent}```pycon", *lines[i:j], f"{indent}```"]
            i = j
            continue
        if BORDER.match(line):
            j = i + 1
            while j < len(lines) and not (BORDER.match(lines[j]) and (j + 1 == len(lines) or not lines[j + 1].strip())):
                j += 1
            table = [re.sub(r"``([^`]+)``", lambda m: m.group(1) + "    ", t) for t in lines[i:j + 1]]
            table = [re.sub(r":[a-z]+:`~?([^`]+)`", lambda m: m.group(1) + " " * (len(m.group(0)) - len(m.group(1))), t)
                     for t in table]
            if out and out[-1].strip():
                out.append("")
            out += ["```text", *table, "```"]
            i = j + 1
            continue
        line = ROLE.sub(_role, line)
        if line.rstrip().endswith("::") and len(line) - len(line.lstrip()) < 4:
            stripped = line.rstrip()[:-2].rstrip()
            line = stripped + ":" if stripped else ""
        out.append(line)
        i += 1
    return "\n".join(out)


class MarkdownDocstrings(Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
