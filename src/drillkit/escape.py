"""One escaper per output kind, for text that comes from evidence or from the user (scenario and
phase names, abort reasons, check messages, file names):

- `terminal`: what the command line prints. Every character that is not printable (NUL, BEL,
  BS, CR, LF, TAB, ESC, the C1 controls, bidirectional overrides, ...) is shown as its escape
  (`\\x00`, `\\x07`, `\\x08`, `\\r`, `\\x1b`, `\\u202e`), so nothing read from a file can move the
  cursor, ring, recolour or rewrite the line, and every message stays one line.
- `markdown`: summary.md (CI job pages, PR comments). Text is inline: control and line-breaking
  characters become spaces, HTML is entity-escaped, and every character that could start
  structure (headings, lists, tables, emphasis, links, images, code) is backslash-escaped.
- HTML: report.html and history.html are rendered by jinja2 with autoescape (drillkit.report.pages).
"""

from __future__ import annotations

import re
from typing import Any


def terminal(text: Any) -> str:
    """`text` on one line, every non-printable character shown as its Python escape."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MD_PUNCTUATION = frozenset("\\`*_{}[]()#+!|~$^")
"""ASCII punctuation CommonMark/GFM give a meaning inline or in tables; each may be backslash-escaped."""
_MD_LINE_START = re.compile(r"^(-(?=\s|$)|=+$|\d+\.(?=\s|$))")
"""What would open a list, a setext heading underline or an ordered list at the start of a line."""


def markdown(text: Any) -> str:
    """`text` as inline Markdown that renders as the same characters and creates no structure."""
    flat = "".join(c if c.isprintable() else " " for c in str(text)).strip()
    out = "".join(_MD_ENTITIES.get(c) or ("\\" + c if c in _MD_PUNCTUATION else c) for c in flat)
    return _MD_LINE_START.sub(lambda m: m.group(1)[:-1] + "\\" + m.group(1)[-1], out)
