"""``leaderboard.html``: one self-contained static page (inline CSS, JS and figures; no network).

The tables sort by clicking a header (numeric cells carry ``data-value``, so
"81.20 ± 0.15 (n=3)" sorts by 81.20; empty cells sort last).  Figures are
embedded as data URIs so the page works from a file, a CI artifact or any
static host.  Record links are relative to the page.
"""

from __future__ import annotations

import base64
import html

import pandas as pd

from harmony_bench.leaderboard.build import FIGURE_DIR, Board, published_rows
from harmony_bench.tables import format_cell, natural_key

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #cbd5e0; padding: 4px 8px; text-align: left; vertical-align: top; }
thead th { background: #edf2f7; cursor: pointer; user-select: none; white-space: nowrap; }
thead th[aria-sort="ascending"]::after { content: " \\25B2"; }
thead th[aria-sort="descending"]::after { content: " \\25BC"; }
td.best { font-weight: bold; background: #ebf8ff; }
td a { font-size: 11px; margin-left: 2px; }
.note { color: #4a5568; }
.synthetic { color: #c05621; font-weight: bold; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 560px; }
"""

SCRIPT = """
function cellKey(cell) {
  if (!cell) return null;
  const value = cell.dataset.value;
  if (value !== undefined) return value === "" ? null : parseFloat(value);
  return cell.textContent.trim().toLowerCase();
}
function sortTable(table, column, direction) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const sign = direction === "ascending" ? 1 : -1;
  rows.sort((a, b) => {
    const x = cellKey(a.cells[column]), y = cellKey(b.cells[column]);
    if (x === null && y === null) return 0;
    if (x === null) return 1;
    if (y === null) return -1;
    return (x < y ? -1 : x > y ? 1 : 0) * sign;
  });
  rows.forEach((row) => body.appendChild(row));
  Array.from(table.tHead.rows[0].cells).forEach((th, i) => {
    if (i === column) th.setAttribute("aria-sort", direction); else th.removeAttribute("aria-sort");
  });
}
document.querySelectorAll("table.sortable").forEach((table) => {
  Array.from(table.tHead.rows[0].cells).forEach((th, i) => {
    th.addEventListener("click", () => {
      const numeric = th.dataset.type === "number";
      const current = th.getAttribute("aria-sort");
      const next = current ? (current === "ascending" ? "descending" : "ascending")
                           : (numeric ? "descending" : "ascending");
      sortTable(table, i, next);
    });
  });
});
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _measured_cell(row: pd.Series | None) -> str:
    if row is None:
        return '<td data-value="">—</td>'
    text = _esc(format_cell(row["mean"], row["std"], row["seeds"], row["failed"]))
    links = "".join(
        f'<a href="{_esc(link)}" title="{_esc(link)}">[{i}]</a>' for i, link in enumerate(row["links"], 1)
    )
    css = ' class="best"' if row["best"] else ""
    return f'<td{css} data-value="{float(row["mean"])!r}">{text} {links}</td>'


def measured_table(summary: pd.DataFrame) -> str:
    """Backbone rows × task/metric columns, sortable, each cell linking its records."""
    columns = sorted(summary["column"].unique(), key=natural_key)
    labels = sorted(summary["label"].unique(), key=natural_key)
    cells = {(r["label"], r["column"]): r for _, r in summary.iterrows()}
    head = '<th data-type="text">backbone</th>' + "".join(
        f'<th data-type="number">{_esc(c)}</th>' for c in columns
    )
    body = []
    for label in labels:
        tds = "".join(_measured_cell(cells.get((label, c))) for c in columns)
        body.append(f"<tr><td>{_esc(label)}</td>{tds}</tr>")
    return (
        f'<table id="measured" class="sortable"><thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(body)
        + "\n</tbody></table>"
    )


def published_table(reported: pd.DataFrame) -> str:
    """Every published number with its source, sortable."""
    names = ["task", "metric", "method", "backbone", "pretraining data", "epochs", "value", "source", "notes"]
    head = "".join(f'<th data-type="{"number" if n == "value" else "text"}">{n}</th>' for n in names)
    body = []
    for r in published_rows(reported):
        cells = [
            r["task"],
            r["metric"],
            r["method"],
            r["arch"],
            r["pretrain_data"] or "—",
            r["epochs"] or "—",
        ]
        tds = "".join(f"<td>{_esc(c)}</td>" for c in cells)
        tds += f'<td data-value="{float(r["value"])!r}">{float(r["value"]):.1f}</td>'
        tds += f"<td>{_esc(r['paper'])}: {_esc(r['source'])}</td><td>{_esc(r['notes'] or '')}</td>"
        body.append(f"<tr>{tds}</tr>")
    return (
        f'<table id="published" class="sortable"><thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(body)
        + "\n</tbody></table>"
    )


def _figures(figures: list[tuple[str, str]], files: dict[str, bytes]) -> str:
    parts = []
    for stem, title in figures:
        data = base64.b64encode(files[f"{FIGURE_DIR}/{stem}.svg"]).decode("ascii")
        parts.append(
            f'<figure><img alt="{_esc(title)}" src="data:image/svg+xml;base64,{data}">'
            f'<figcaption><a href="{FIGURE_DIR}/{stem}.png">{_esc(title)}</a></figcaption></figure>'
        )
    return "\n".join(parts)


def render_html(board: Board, figures: list[tuple[str, str]], files: dict[str, bytes], title: str) -> str:
    """The whole page as one string."""
    sections = [f"<h1>{_esc(title)}</h1>", f"<h2>Measured ({board.n_records} records)</h2>"]
    if board.summary.empty:
        sections.append('<p class="note">No completed result records yet.</p>')
    else:
        if board.summary["synthetic"].any():
            sections.append(
                '<p class="synthetic">Rows marked [synthetic] ran on generated smoke-test data: '
                "not benchmark numbers.</p>"
            )
        sections.append(
            '<p class="note">Mean ± std over seeds (n = seeds; failed runs counted); best per column '
            "highlighted; [1], [2], … link each record. Click a header to sort.</p>"
        )
        sections.append(measured_table(board.summary))
        sections += [f'<p class="note">Note: {_esc(note)}.</p>' for note in board.notes]
        sections += ["<h2>Per-task charts</h2>", _figures(figures, files)]
    if board.bad:
        items = "".join(f"<li><code>{_esc(p)}</code>: {_esc('; '.join(pr))}</li>" for p, pr in board.bad)
        sections.append(f"<h3>Unreadable records (not in the table)</h3><ul>{items}</ul>")
    sections += [
        "<h2>Published numbers</h2>",
        '<p class="note">From results/reported/: only numbers read from a primary source.</p>',
        published_table(board.reported),
    ]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
