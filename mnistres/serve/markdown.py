"""The report's Markdown as HTML, for `serve`: the few constructs `reporting.report` writes, every character
of text escaped.

The report quotes run names, settings and messages, which are the user's text: a general Markdown
library passes HTML inside them through to the page, so this renders only what the report uses
(headings, paragraphs, lists, GitHub tables, fenced code, images, `code` and **bold**) and escapes
the rest. An image's address goes through `image_src`, which names the served figure or drops it.
"""

from __future__ import annotations

import html
import re
from typing import Callable, Optional

_INLINE = re.compile(r"`([^`]*)`|!\[([^\]]*)\]\(([^)\s]+)\)|\*\*([^*]+)\*\*")
_HEADING = re.compile(r"(#{1,6}) (.*)")


def to_html(text: str, image_src: Callable[[str], Optional[str]]) -> str:
    """The HTML of a report's Markdown `text`; `image_src(name)` is a figure's address (None: left out)."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
            out.append(f"<pre><code>{html.escape(chr(10).join(lines[i + 1:end]))}</code></pre>")
            i = end + 1
        elif _HEADING.fullmatch(line):
            hashes, title = _HEADING.fullmatch(line).groups()  # type: ignore[union-attr]
            out.append(f"<h{len(hashes)}>{_inline(title, image_src)}</h{len(hashes)}>")
            i += 1
        elif line.startswith("|"):
            end = _block_end(lines, i, lambda text: text.startswith("|"))
            out.append(_table(lines[i:end], image_src))
            i = end
        elif line.startswith("- "):
            end = _block_end(lines, i, lambda text: text.startswith("- "))
            items = "".join(f"<li>{_inline(item[2:], image_src)}</li>" for item in lines[i:end])
            out.append(f"<ul>{items}</ul>")
            i = end
        else:
            end = _block_end(lines, i, lambda text: bool(text.strip()) and not text.startswith(("|", "- ", "```", "#")))
            out.append(f"<p>{_inline(' '.join(lines[i:end]), image_src)}</p>")
            i = end
    return "\n".join(out)


def _block_end(lines: list[str], start: int, belongs: Callable[[str], bool]) -> int:
    end = start + 1
    while end < len(lines) and belongs(lines[end]):
        end += 1
    return end


def _cells(row: str) -> list[str]:
    """A table row's cells: split on the pipes that are not escaped."""
    inner = row.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def _table(rows: list[str], image_src: Callable[[str], Optional[str]]) -> str:
    body = [row for row in rows if not re.fullmatch(r"\|?[\s:|-]+\|?", row.strip())]  # the |---| line
    if not body:
        return ""
    head = "".join(f"<th>{_inline(cell, image_src)}</th>" for cell in _cells(body[0]))
    rest = "".join("<tr>" + "".join(f"<td>{_inline(cell, image_src)}</td>" for cell in _cells(row)) + "</tr>"
                   for row in body[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rest}</tbody></table>"


def _inline(text: str, image_src: Callable[[str], Optional[str]]) -> str:
    out, at = [], 0
    for found in _INLINE.finditer(text):
        out.append(html.escape(text[at:found.start()]))
        code, alt, src, bold = found.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif src is not None:
            address = image_src(src)
            if address is not None:
                out.append(f'<img src="{html.escape(address)}" alt="{html.escape(alt)}">')
        else:
            out.append(f"<strong>{html.escape(bold)}</strong>")
        at = found.end()
    out.append(html.escape(text[at:]))
    return "".join(out)
