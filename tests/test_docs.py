"""Docs that cannot drift: every command and Python block of README.md and docs/**/*.md runs, and
the documentation site (guides + API reference from the docstrings) builds with no warning.

How a document runs (``test_document_runs``, one test per document)
------------------------------------------------------------------
Its fenced blocks run in order, in a new empty folder outside the checkout (so a path such as
``configs/xor.yaml`` that exists only in a checkout fails), with the installed mlpjit: ``mlpjit``
and ``python`` on PATH are the console script and the Python running the tests.

- ``bash`` / ``sh`` / ``shell`` blocks: each command (a line; a line ending in ``\\`` continues on
  the next; comment lines skipped) runs with ``bash -c`` in that folder, so a later block sees
  the run folders an earlier one made. It must exit 0, or N when its comment says ``(exit N)``.
- ``python`` blocks: one Python process per document runs them one after the other in one
  namespace (``__main__``), as a script or a notebook would, from the same folder.
- ``yaml`` blocks must parse. ``text`` / ``console`` blocks are output, never run.
- Fences need a language; indented code blocks are formulas and are not run.

Markers: HTML comments on the lines right above a fence (not shown on GitHub or in the site),
one or more, each one of:

    <!-- not tested: REASON -->            the block is not run
    <!-- not tested "TEXT": REASON -->     the block's commands that contain TEXT are not run
    <!-- tested from "TEXT": REASON -->    a command that contains TEXT runs from TEXT on; what comes
                                           before it on the line is not run (the README's Quick
                                           start makes a venv and installs: the test's own
                                           environment stands in for them)
    <!-- tested with ARGS -->              ARGS are added after ``mlpjit train`` in each command
                                           that trains a config (not ``--resume``), to keep the
                                           test short (e.g. ``--epochs 1``)
    <!-- saved as NAME -->                 the block is written to NAME in the folder (after what
                                           earlier blocks saved there) instead of being run; a
                                           later block imports or trains it

A marker that skips anything must give its reason; an unknown ``<!-- tested …`` or
``<!-- not tested …`` comment fails ``test_markers``. A failure names the file and the line of
the command or block.

The site (``test_site_builds_strictly``): ``mkdocs build --strict`` with mkdocs.yml into a
temporary folder; skipped only when mkdocs or mkdocstrings is not installed (the ``test`` and
``docs`` extras have them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md"] + sorted((REPO / "docs").rglob("*.md"))
SHELL, PYTHON, YAML, OUTPUT = {"bash", "sh", "shell"}, {"python", "py"}, {"yaml", "yml"}, {"text", "console", ""}
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*((?:not )?tested\b.*?|saved as\b.*?)\s*-->\s*$")
EXIT = re.compile(r"\(exit (\d+)\)")
TIMEOUT = 180   # seconds, one command or one Python block


@dataclass
class Block:
    doc: Path
    line: int               # line of the fence's first code line, 1-based
    lang: str
    code: str
    skip: str | None = None                        # not tested: reason
    skip_text: list = field(default_factory=list)  # [(TEXT, reason)]
    run_from: list = field(default_factory=list)   # [TEXT]
    train_args: str = ""
    save_as: str | None = None


def _ids(doc: Path) -> str:
    return str(doc.relative_to(REPO)) if doc.is_relative_to(REPO) else doc.name


def _parse_marker(text: str, block: Block) -> str | None:
    """Apply one marker's text to ``block``; return an error message for a bad marker."""
    if m := re.fullmatch(r'not tested "([^"]+)":\s*(.*)', text):
        if not m.group(2).strip():
            return f"{text!r}: give a reason after the colon"
        block.skip_text.append((m.group(1), m.group(2)))
    elif m := re.fullmatch(r"not tested(?::\s*(.*))?", text):
        if not (m.group(1) or "").strip():
            return f"{text!r}: give a reason (<!-- not tested: REASON -->)"
        block.skip = m.group(1)
    elif m := re.fullmatch(r'tested from "([^"]+)"(?::\s*(.*))?', text):
        if not (m.group(2) or "").strip():
            return f"{text!r}: give a reason after the colon"
        block.run_from.append(m.group(1))
    elif m := re.fullmatch(r"tested with (\S.*)", text):
        block.train_args = f"{block.train_args} {m.group(1)}".strip()
    elif m := re.fullmatch(r"saved as (\S+)", text):
        block.save_as = m.group(1)
    else:
        return f"{text!r}: not a marker this test knows (see the top of tests/test_docs.py)"
    return None


def parse(doc: Path) -> tuple[list[Block], list[str]]:
    """The fenced blocks of ``doc`` with their markers, and the errors found on the way."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks, errors, i = [], [], 0
    rel = _ids(doc)
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence[0] * len(fence))
                                      and lines[j].strip().strip(fence[0]) == ""):
            j += 1
        code = "\n".join(ln[len(indent):] if ln.startswith(indent) else ln for ln in lines[i + 1:j])
        block = Block(doc, i + 2, lang, code + "\n")
        k = i - 1
        while k >= 0 and lines[k].strip().startswith("<!--"):
            mm = MARKER.match(lines[k])
            if mm:
                err = _parse_marker(mm.group(1), block)
                if err:
                    errors.append(f"{rel}:{k + 1}: {err}")
            k -= 1
        if lang not in SHELL | PYTHON | YAML | OUTPUT:
            errors.append(f"{rel}:{i + 1}: a fence of language {lang!r}: use bash, python, yaml or text")
        elif not lang:
            errors.append(f"{rel}:{i + 1}: a fence without a language: use bash, python, yaml or text")
        if block.save_as and lang in SHELL:
            errors.append(f"{rel}:{i + 1}: 'saved as' on a shell block")
        blocks.append(block)
        i = j + 1
    # a marker comment that is not right above a fence is a mistake too
    for n, line in enumerate(lines):
        if MARKER.match(line) or re.match(r"^\s*<!--\s*(not )?tested", line):
            nxt = n + 1
            while nxt < len(lines) and lines[nxt].strip().startswith("<!--"):
                nxt += 1
            if nxt >= len(lines) or not FENCE.match(lines[nxt]):
                errors.append(f"{rel}:{n + 1}: a marker must be right above a fence")
            elif not MARKER.match(line):
                errors.append(f"{rel}:{n + 1}: a malformed marker: {line.strip()}")
    return blocks, errors


def commands(block: Block) -> list[tuple[int, str]]:
    """(line, command) of a shell block, continuation lines joined."""
    out, buf, start = [], "", None
    for n, line in enumerate(block.code.splitlines(), start=block.line):
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        start = start if buf else n
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        out.append((start, buf + line))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


def transform(block: Block, command: str) -> tuple[str | None, str]:
    """The command as the markers say it runs (None: not run), and why it is not run."""
    for text, reason in block.skip_text:
        if text in command:
            return None, reason
    for text in block.run_from:
        if text in command:
            command = command[command.index(text):]
    if block.train_args and "--resume" not in command:
        command = re.sub(r"(\bmlpjit train)(?=\s)", rf"\1 {block.train_args}", command)
    return command, ""


# Runs python blocks sent as JSON lines on stdin in __main__'s namespace; after each, a line
# with the sentinel and "ok" or "error". Blocks are compiled with the document's path and their
# line there, so a traceback names the document's line.
DRIVER = r"""
import json as _json, sys as _sys, traceback as _tb
for _line in _sys.stdin:
    _b = _json.loads(_line)
    try:
        exec(compile("\n" * (_b["line"] - 1) + _b["code"], _b["file"], "exec"), globals())
        _status = "ok"
    except BaseException:
        _tb.print_exc(file=_sys.stdout)
        _status = "error"
    _sys.stdout.flush(); _sys.stderr.flush()
    print("\n@@docs-block-done@@", _status, flush=True)
"""


class PythonSession:
    def __init__(self, cwd: Path, env: dict):
        self.proc = subprocess.Popen([sys.executable, "-u", "-c", DRIVER], cwd=cwd, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, encoding="utf-8")

    def run(self, block: Block) -> tuple[bool, str]:
        timer = threading.Timer(TIMEOUT, self.proc.kill)
        timer.start()
        try:
            self.proc.stdin.write(json.dumps({"file": str(block.doc), "line": block.line,
                                              "code": block.code}) + "\n")
            self.proc.stdin.flush()
            out = []
            for line in self.proc.stdout:
                if line.startswith("@@docs-block-done@@"):
                    return line.split()[1] == "ok", "".join(out)
                out.append(line)
            return False, "".join(out) + f"\n(the Python process ended, or took over {TIMEOUT} s)"
        finally:
            timer.cancel()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _environment(tmp: Path) -> dict:
    """PATH with ``mlpjit`` and ``python`` of the Python running the tests first."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    script = Path(sys.executable).parent / "mlpjit"
    for name, target in (("python", [sys.executable]), ("python3", [sys.executable]),
                         ("mlpjit", [str(script)] if script.exists() else [sys.executable, "-m", "mlpjit"])):
        shim = bin_dir / name
        shim.write_text("#!/bin/sh\nexec " + " ".join(f"'{t}'" for t in target) + ' "$@"\n')
        shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)        # the installed mlpjit, not a checkout on the path
    return env


def test_markers():
    """Every marker is known, right above a fence and, when it skips something, says why."""
    errors = [e for doc in DOCS for e in parse(doc)[1]]
    assert not errors, "\n".join(errors)


def test_markers_are_read_as_documented(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("""Text.

<!-- not tested -->
```bash
mlpjit train xor
```

<!-- tested from "mlpjit train": the install is the test's own -->
<!-- tested with --epochs 1 -->
<!-- not tested "pytest": the whole suite -->
```bash
python3 -m venv .venv && .venv/bin/mlpjit train xor --out runs/x   # (exit 0)
mlpjit train --resume runs/x \\
    --quiet
python -m pytest
```

<!-- tested with --epochs 1 -->

```python
print(1)
```
<!-- saved as sine.py -->
```
x = 1
```
""")
    blocks, errors = parse(doc)
    assert [b.line for b in blocks] == [5, 12, 21, 25]
    assert errors == [
        "doc.md:3: 'not tested': give a reason (<!-- not tested: REASON -->)",
        "doc.md:24: a fence without a language: use bash, python, yaml or text",
        "doc.md:18: a marker must be right above a fence"]
    shell = blocks[1]
    assert [(n, transform(shell, c)[0]) for n, c in commands(shell)] == [
        (12, "mlpjit train --epochs 1 xor --out runs/x   # (exit 0)"),
        (13, "mlpjit train --resume runs/x      --quiet"),
        (15, None)]
    assert blocks[3].save_as == "sine.py"


@pytest.mark.parametrize("doc", [d for d in DOCS if any(b.lang in SHELL | PYTHON | YAML and not b.skip
                                                       for b in parse(d)[0])], ids=_ids)
def test_document_runs(doc, tmp_path):
    run_document(doc, tmp_path)


def run_document(doc: Path, tmp_path: Path):
    """Run ``doc``'s blocks as the top of this file says; an AssertionError names the line."""
    folder = tmp_path / "work"
    folder.mkdir(parents=True)
    assert REPO not in folder.resolve().parents, "the test's folder must be outside the checkout"
    env = _environment(tmp_path)
    rel = _ids(doc)
    session = None
    try:
        for block in parse(doc)[0]:
            where = f"{rel}:{block.line}"
            if block.skip or block.lang in OUTPUT:
                continue
            if block.save_as:
                with open(folder / block.save_as, "a", encoding="utf-8") as f:
                    f.write(block.code)
                if block.lang in YAML:
                    yaml.safe_load((folder / block.save_as).read_text(encoding="utf-8"))
                continue
            if block.lang in YAML:
                try:
                    yaml.safe_load(block.code)
                except yaml.YAMLError as e:
                    pytest.fail(f"{where}: the YAML block does not parse: {e}")
            elif block.lang in PYTHON:
                session = session or PythonSession(folder, env)
                ok, out = session.run(block)
                assert ok, f"{where}: the Python block failed:\n{out}"
            else:
                for line, command in commands(block):
                    run, why = transform(block, command)
                    if run is None:
                        continue
                    m = EXIT.search(command)
                    expected = int(m.group(1)) if m else 0
                    proc = subprocess.run(["bash", "-c", run], cwd=folder, env=env, capture_output=True,
                                          text=True, timeout=TIMEOUT)
                    assert proc.returncode == expected, (
                        f"{rel}:{line}: `{run}` exited {proc.returncode} (expected {expected}):\n"
                        f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    finally:
        if session:
            session.close()


def test_site_builds_strictly(tmp_path):
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers", "pymdownx"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: the site needs the docs extra "
                        f"(pip install -e \".[docs]\"; the test extra has it too)")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(REPO / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = tmp_path / "site"
    for page in ("index.html", "experiments/index.html", "api/mlpjit/index.html",
                 "api/layers/index.html", "api/sklearn/index.html", "writing-a-layer/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "mlpjit" / "index.html").read_text(encoding="utf-8")
    assert "Sequential" in api and "gradcheck" in api


def test_a_failure_names_the_document_and_line(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("```bash\necho one > one.txt\ncat one.txt   # (exit 0)\nexit 3\n```\n")
    with pytest.raises(AssertionError, match=r"doc.md:4: `exit 3` exited 3 \(expected 0\)"):
        run_document(doc, tmp_path / "a")
    doc.write_text("```bash\nexit 75   # (exit 75)\n```\n\n```python\nx = 1\n\nraise ValueError(x)\n```\n")
    with pytest.raises(AssertionError, match=r'(?s)doc.md:6: the Python block failed.*doc.md", line 8.*ValueError: 1'):
        run_document(doc, tmp_path / "b")
