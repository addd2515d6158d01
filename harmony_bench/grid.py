r"""One table model and its renderers, shared by ``harmony-bench table`` and the leaderboard.

A :class:`Grid` is rows × columns of :class:`Cell` (text, whether it is the best of its column, the
number it sorts by, links to the records behind it), with :class:`Label` row and column names.  Who
decides what is best is the caller (``tables.mark_best``, once per column, by the metric's
``higher_is_better``); how best is *shown* is decided here, once, per output format:

- Markdown: ``**bold**``; LaTeX: ``\textbf{}``; HTML: ``<td class="best"><strong>`` (bold without a
  stylesheet, and a class a stylesheet or a script can pick up);
- plain text (CSV, the ``pivot`` frame): a `` *`` suffix, since the text has no other way to mark it.

Every renderer escapes record text for its format, so a card name or preset can never break a row or
inject markup.  A label is its text plus a bracketed tag (``imagenet-linear / top1 [v1, paper]``); the
tag's parts are escaped one by one and its brackets are markup.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

EMPTY = "—"
PLAIN_BEST = " *"  # how plain text (CSV, the pivot frame) marks the best cell of a column
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|])")
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "—": "--",
}
_LATEX_PATTERN = re.compile("|".join(re.escape(c) for c in _LATEX_SPECIAL))


def natural_key(text: object) -> tuple[tuple[int, Any], ...]:
    """Sort key that orders digit runs as numbers: ``v9`` < ``v10``, ``1.9`` < ``1.10``.

    Labels carry protocol versions, and plain text order would put ``v10``
    before ``v9``.  Each part is tagged so numbers and words never compare.
    """
    parts = re.findall(r"\d+|\D+", str(text))
    return tuple((0, int(p)) if p[0].isdecimal() else (1, p) for p in parts)


# --------------------------------------------------------------------------- escaping


def md_escape(text: object) -> str:
    """Record text safe in a Markdown table cell (the leaderboard page, which is published).

    HTML is escaped (``<script>`` shows as text), Markdown's inline syntax (emphasis, code, links) and
    the table's ``|`` are backslash-escaped, and line breaks (which would end the row) become spaces.
    """
    text = html.escape(" ".join(str(text).split()), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_cell_safe(text: object) -> str:
    """Record text that cannot break a Markdown row or add markup: ``|`` escaped, ``<>&`` as entities.

    For ``harmony-bench table`` (and a suite's TABLE.md), read as text in a terminal or pasted into a
    draft: metric names such as ``image_to_text.R@1`` stay as typed, but a record's strings never become
    markup when the file is rendered.  Line breaks (which would end the row) become spaces.
    """
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", r"\|")


def latex_escape(text: str) -> str:
    r"""Escape every LaTeX special character (``\ & % $ # _ { } ~ ^``) in one pass.

    One pass, because replacing ``\`` by ``\textbackslash{}`` first and then
    ``{``/``}`` would escape the braces the first replacement wrote.
    """
    return _LATEX_PATTERN.sub(lambda m: _LATEX_SPECIAL[m.group(0)], str(text))


def _html(text: object) -> str:
    return html.escape(str(text), quote=True)


def link_target(path: str) -> str:
    """A record path as a Markdown link target (spaces and parentheses percent-encoded)."""
    return urllib.parse.quote(str(path), safe="/.-_~")


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Label:
    """A row or column name: ``text``, then ``tag`` parts in brackets (``alpha [synthetic]``)."""

    text: str
    tag: tuple[str, ...] = ()

    def render(self, escape: Callable[[str], str]) -> str:
        """The label with ``escape`` applied to the text and to each tag part (not to the brackets)."""
        tag = f" [{', '.join(escape(p) for p in self.tag)}]" if self.tag else ""
        return escape(self.text) + tag

    def __str__(self) -> str:
        return self.render(str)


@dataclass(frozen=True)
class Cell:
    """One value: its display text, whether it is the best of its column, its sort value, its records."""

    text: str
    best: bool = False
    value: float | None = None
    links: tuple[str, ...] = ()

    @property
    def plain(self) -> str:
        """The text with the plain-text best mark (CSV and the pivot frame)."""
        return self.text + (PLAIN_BEST if self.best else "")


@dataclass(frozen=True)
class Grid:
    """Rows × columns of cells (``None`` where nothing was measured), ordered for display."""

    corner: str
    columns: list[Label]
    rows: list[tuple[Label, list[Cell | None]]]

    @property
    def empty(self) -> bool:
        """True when there is no row to show."""
        return not self.rows


class CellCollision(ValueError):
    """Two cells were given the same row and column label."""


def build_grid(cells: Iterable[tuple[Label, Label, Cell]], corner: str) -> Grid:
    """``(row, column, cell)`` triples → a grid, rows and columns in :func:`natural_key` order.

    Raises :class:`CellCollision` when two cells land on one row × column: that would hide a number.
    """
    placed: dict[tuple[Label, Label], Cell] = {}
    for row, column, cell in cells:
        if (row, column) in placed:
            raise CellCollision(f"two cells at row {row} × column {column}")
        placed[(row, column)] = cell
    rows = sorted({r for r, _ in placed}, key=lambda label: natural_key(str(label)))
    columns = sorted({c for _, c in placed}, key=lambda label: natural_key(str(label)))
    return Grid(corner, columns, [(r, [placed.get((r, c)) for c in columns]) for r in rows])


# --------------------------------------------------------------------------- renderers


def to_frame(grid: Grid) -> pd.DataFrame:
    """Plain text: one string per cell (best marked `` *``, nothing measured ``—``), rows indexed by label."""
    frame = pd.DataFrame(
        [[cell.plain if cell else EMPTY for cell in cells] for _, cells in grid.rows],
        index=pd.Index([str(label) for label, _ in grid.rows], name=grid.corner),
        columns=[str(c) for c in grid.columns],
    )
    return frame


def to_csv(grid: Grid) -> str:
    """CSV of :func:`to_frame` (the label column first)."""
    return to_frame(grid).to_csv()


def to_markdown(grid: Grid, escape: Callable[[str], str] = md_escape) -> str:
    """A Markdown table: best in bold, record links ``[1](path)`` after the value."""

    def cell(c: Cell | None) -> str:
        if c is None:
            return EMPTY
        text = f"**{escape(c.text)}**" if c.best else escape(c.text)
        links = " ".join(f"[{i}]({link_target(link)})" for i, link in enumerate(c.links, 1))
        return f"{text} {links}".strip()

    header = [escape(grid.corner), *(c.render(escape) for c in grid.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, cells in grid.rows:
        lines.append("| " + " | ".join([label.render(escape), *map(cell, cells)]) + " |")
    return "\n".join(lines)


def to_latex(grid: Grid) -> str:
    r"""A booktabs ``tabular``: best in ``\textbf``; links are left out (a paper cites the records)."""

    def cell(c: Cell | None) -> str:
        if c is None:
            return latex_escape(EMPTY)
        return rf"\textbf{{{latex_escape(c.text)}}}" if c.best else latex_escape(c.text)

    header = [latex_escape(grid.corner), *(c.render(latex_escape) for c in grid.columns)]
    lines = [r"\begin{tabular}{l" + "r" * len(grid.columns) + "}", r"\toprule"]
    lines += [" & ".join(header) + r" \\", r"\midrule"]
    for label, cells in grid.rows:
        lines.append(" & ".join([label.render(latex_escape), *map(cell, cells)]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def to_html(grid: Grid, attrs: str = "") -> str:
    """A ``<table>``: best as ``<td class="best"><strong>``, ``data-value`` for sorting, record links.

    ``attrs`` goes into the ``<table>`` tag as given (e.g. ``id="measured" class="sortable"``).
    """

    def cell(c: Cell | None) -> str:
        if c is None:
            return f'<td data-value="">{EMPTY}</td>'
        text = f"<strong>{_html(c.text)}</strong>" if c.best else _html(c.text)
        links = "".join(
            f'<a href="{_html(x)}" title="{_html(x)}">[{i}]</a>' for i, x in enumerate(c.links, 1)
        )
        value = f' data-value="{float(c.value)!r}"' if c.value is not None else ""
        css = ' class="best"' if c.best else ""
        return f"<td{css}{value}>{f'{text} {links}'.strip()}</td>"

    head = f'<th data-type="text">{_html(grid.corner)}</th>' + "".join(
        f'<th data-type="number">{c.render(_html)}</th>' for c in grid.columns
    )
    body = [
        f'<tr><th scope="row">{label.render(_html)}</th>{"".join(map(cell, cells))}</tr>'
        for label, cells in grid.rows
    ]
    open_tag = f"<table {attrs}>" if attrs else "<table>"
    return f"{open_tag}\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"
