"""One report model: a report is a list of blocks (heading, paragraph, table, figure), built once
from its JSON and rendered to Markdown or to self-contained HTML (figures embedded, no network)."""

import base64
import html
import re
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    level: int  # relative: 1 is a section of the report it belongs to
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Table:
    head: list
    rows: list


@dataclass(frozen=True)
class Figure:
    title: str
    file: str  # relative to the folder the report is rendered into


# A block's text may mark emphasis and code as Markdown does; each renderer renders them its way.
INLINE = [(re.compile(r"\*\*(.+?)\*\*"), "strong"), (re.compile(r"`([^`]+)`"), "code")]


def inline_html(text: str) -> str:
    """A block's text as HTML: escaped, with its ``**strong**`` and ```code``` as tags."""
    out = html.escape(text)
    for pattern, tag in INLINE:
        out = pattern.sub(rf"<{tag}>\1</{tag}>", out)
    return out


def plain(text: str) -> str:
    """A block's text without its marks (for attributes such as an image's alt text)."""
    for pattern, _ in INLINE:
        text = pattern.sub(r"\1", text)
    return text


def under(blocks: list, folder: str) -> list:
    """The blocks with each figure's file seen from the parent folder."""
    return [replace(b, file=f"{folder}/{b.file}") if isinstance(b, Figure) else b for b in blocks]


def markdown(blocks: list, base: int = 1) -> str:
    """Markdown; a block heading of level ``n`` becomes ``base + n`` hashes."""
    lines = []
    for b in blocks:
        if isinstance(b, Heading):
            lines += [f"{'#' * (base + b.level)} {b.text}", ""]
        elif isinstance(b, Para):
            lines += [b.text, ""]
        elif isinstance(b, Table):
            lines += ["| " + " | ".join(b.head) + " |", "|" + "---|" * len(b.head)]
            lines += ["| " + " | ".join(row) + " |" for row in b.rows] + [""]
        else:
            lines += [f"![{b.title}]({b.file})", ""]
    return "\n".join(lines)


def html_blocks(blocks: list, root: Path, base: int = 1, link=None) -> str:
    """HTML of the blocks, figures read from ``root`` and embedded; ``link(text)`` gives an anchor
    for a table's first column (None: no links)."""
    e, out = html.escape, []
    for b in blocks:
        if isinstance(b, Heading):
            level = min(base + b.level, 6)
            out.append(f"<h{level}>{inline_html(b.text)}</h{level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{inline_html(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{inline_html(h)}</th>" for h in b.head)
            rows = "".join("<tr>" + "".join(
                f"<td><a href='#{link(c)}'>{inline_html(c)}</a></td>" if link and i == 0 else f"<td>{inline_html(c)}</td>"
                for i, c in enumerate(row)) + "</tr>" for row in b.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            data = base64.b64encode((root / b.file).read_bytes()).decode()
            out.append(f"<figure><img alt='{e(plain(b.title))}' data-file='{e(b.file)}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{inline_html(b.title)}</figcaption></figure>")
    return "".join(out)
