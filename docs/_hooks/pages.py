"""MkDocs hook: the README is the site's home page and EXPERIMENTS.md its "Experiments" page.

Both are read from the checkout's root when the site is built (never copied into docs/, so they
cannot drift). Links are written for GitHub, relative to the file they are in; here each one is
resolved to a path in the checkout and pointed at the page or file the site has for it:
docs/X → X, README.md → index.md, EXPERIMENTS.md → experiments.md. A link to anything else in
the checkout (a folder of examples, a source file) is not part of the site: its text stays,
the link goes. Fenced code is left alone.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
GENERATED = {"README.md": "index.md", "EXPERIMENTS.md": "experiments.md"}   # checkout path → page
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def _site_path(repo_path: str) -> str | None:
    """The path in the site of a file of the checkout, None when the site has no such file."""
    if repo_path in GENERATED:
        return GENERATED[repo_path]
    if repo_path.startswith("docs/") and (ROOT / repo_path).exists():
        return repo_path[len("docs/"):]
    return None


def rewrite(markdown: str, origin: str, page: str) -> str:
    """``markdown`` of the checkout file ``origin``, its links made right for the site page ``page``."""
    def fix(m: re.Match) -> str:
        bang, text, target = m.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return m.group(0)                                      # a URL, mailto:, an anchor
        path, _, anchor = target.partition("#")
        repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(origin), path))
        site = _site_path(repo_path)
        if site is None:
            return m.group(0) if bang else text                    # not in the site: the text only
        rel = posixpath.relpath(site, posixpath.dirname(page) or ".")
        return f"{bang}[{text}]({rel}{'#' + anchor if anchor else ''})"

    out, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line):
            fenced = not fenced
        out.append(line if fenced or FENCE.match(line) else LINK.sub(fix, line))
    return "".join(out)


def on_files(files, config):
    for origin, page in GENERATED.items():
        text = (ROOT / origin).read_text(encoding="utf-8")
        files.append(File.generated(config, page, content=rewrite(text, origin, page)))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri in GENERATED.values():
        return markdown                                            # rewritten in on_files
    return rewrite(markdown, "docs/" + page.file.src_uri, page.file.src_uri)
