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

from harmony_bench.grid import to_html
from harmony_bench.leaderboard.board import FIGURE_DIR, Board, measured_grid, published_rows
from harmony_bench.leaderboard.comparison import Reproduction, SourceTable, published_text
from harmony_bench.leaderboard.markdown import VERDICT_TEXT

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; }
nav { margin: 0.5em 0 1.5em; }
nav a { margin-right: 1em; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; margin: 0.5em 0 1em; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #cbd5e0; padding: 4px 8px; text-align: left; vertical-align: top; }
thead th { background: #edf2f7; white-space: nowrap; }
table.sortable thead th { cursor: pointer; user-select: none; }
thead th[aria-sort="ascending"]::after { content: " \\25B2"; }
thead th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.best { background: #ebf8ff; }
tbody th { font-weight: normal; }
tr.measured td { background: #f0fff4; font-style: italic; }
tr.measured td.outside { background: #fff5f5; }
td a { font-size: 11px; margin-left: 2px; }
sup { font-size: 10px; }
caption { caption-side: top; text-align: left; font-weight: bold; padding: 0.3em 0; }
.note { color: #4a5568; }
.synthetic { color: #c05621; font-weight: bold; }
.ok { color: #276749; }
.outside { color: #c53030; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 1em; }
figure { margin: 0; }
figure img { width: 100%; max-width: 560px; height: auto; }
details { margin: 1em 0; }
ol.sources li { margin: 0.2em 0; }
.narrow { display: none; }
td.card { white-space: nowrap; }
@media (max-width: 700px) {
  .narrow { display: inline; }
  .wide { display: none; }
  table.comparison td.setting, table.comparison th.setting {
    position: sticky; left: 0; z-index: 1; background: #fff; min-width: 11em; max-width: 13em;
    white-space: normal; box-shadow: inset -1px 0 #a0aec0, inset 0 -1px #cbd5e0;
  }
  table.comparison thead th.setting { background: #edf2f7; }
  table.comparison tr.measured td.setting { background: #f0fff4; }
  .setting .narrow { color: #4a5568; font-size: 11px; }
  body { margin: 1em auto; padding: 0 0.5em; font-size: 13px; }
  table { font-size: 12px; }
  th, td { padding: 3px 5px; }
  h1 { font-size: 1.5em; }
}
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


def measured_table(summary: pd.DataFrame) -> str:
    """Backbone rows × task/metric columns, sortable, each cell linking its records."""
    return to_html(measured_grid(summary), attrs='id="measured" class="sortable"')


def published_table(reported: pd.DataFrame) -> str:
    """Every published number with its source, sortable (the flat list behind the comparison tables)."""
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
        tds += f'<td class="num" data-value="{float(r["value"])!r}">{published_text(float(r["value"]))}</td>'
        tds += f"<td>{_esc(r['paper'])}: {_esc(r['source'])}</td><td>{_esc(r['notes'] or '')}</td>"
        body.append(f"<tr>{tds}</tr>")
    return (
        '<div class="scroll"><table id="published" class="sortable">'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody></table></div>"
    )


def _sup(text: str | None, href: str | None = None) -> str:
    if not text:
        return ""
    return f'<sup><a href="{href}">{_esc(text)}</a></sup>' if href else f"<sup>{_esc(text)}</sup>"


def _reproduction_cell(r: Reproduction | None) -> str:
    if r is None:
        return "<td></td>"
    mark = "✓" if r.verdict == "ok" else "✗"
    css = "num" if r.verdict == "ok" else "num outside"
    return (
        f'<td class="{css}" title="{_esc(r.measured_text)}; published {published_text(r.published)}; '
        f'tolerance {_esc(r.tolerance_text)}">{r.mean:.2f}<br><small>Δ {r.delta:+.2f} '
        f"({_esc(r.tolerance_text)}) {mark}</small></td>"
    )


def source_table(table: SourceTable) -> str:
    """One source's comparison table; measured rows sit under the published row they reproduce."""
    n = table.number
    head = "".join(
        f"<th>{'<br>'.join(_esc(part) for part in c.rsplit(' ', 1))}{_sup(table.column_notes.get(c))}</th>"
        for c in table.columns
    )
    body = []
    for row in table.rows:
        cells = "".join(
            f'<td class="num">{published_text(row.cells[c].value)}{_sup(row.cells[c].note)}</td>'
            if c in row.cells
            else '<td class="num">—</td>'
            for c in table.columns
        )
        epochs = f" · {row.epochs} ep" if row.epochs else ""
        setting = f"{row.arch} · {row.data or '—'}{epochs}"
        body.append(
            f'<tr><td class="setting">{_esc(row.label)}<span class="narrow"><br>{_esc(setting)}</span></td>'
            f'<td class="wide">{_esc(row.arch)}</td><td class="wide">{_esc(row.data or "—")}</td>'
            f'<td class="wide">{_esc(row.epochs or "—")}</td>{cells}</tr>'
        )
        for card, measured in row.measured:
            cells = "".join(_reproduction_cell(measured.get(c)) for c in table.columns)
            body.append(
                f'<tr class="measured"><td class="setting">↳ measured<br><small>{_esc(card)}</small></td>'
                f'<td class="wide" colspan="3"></td>{cells}</tr>'
            )
    notes = "; ".join(f"<sup>{_esc(k)}</sup> {_esc(v)}" for k, v in table.notes.items())
    return (
        f'<h3 id="source-{n}">[{n}] {_esc(table.paper)}</h3>\n'
        f'<p class="note">Source: {_esc(table.source)}{_sup(str(n), f"#src-{n}")}</p>\n'
        f'<div class="scroll"><table class="comparison" id="comparison-{n}"><thead><tr>'
        '<th class="setting">method<span class="narrow"><br>backbone · data · epochs</span></th>'
        '<th class="wide">backbone</th><th class="wide">pretraining data</th><th class="wide">epochs</th>'
        f"{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody></table></div>"
        + (f'\n<p class="note">{notes}.</p>' if notes else "")
    )


def reproduction_table(board: Board, rows: list[Reproduction], table_id: str) -> str:
    """Suite expectations against the records: published, measured, Δ, tolerance, verdict, source."""
    names = [
        "suite",
        "backbone",
        "task",
        "metric",
        "published",
        "measured",
        "Δ",
        "tolerance",
        "verdict",
        "source",
    ]
    head = "".join(f'<th class="wide">{n}</th>' if n == "suite" else f"<th>{n}</th>" for n in names)
    body = []
    for r in rows:
        number = board.source_number(r.source)
        source = f'<a href="#source-{number}">[{number}]</a>' if number else _esc(r.source)
        delta = f"{r.delta:+.2f}" if r.delta is not None else "—"
        css = {"ok": "ok", "outside": "outside"}.get(r.verdict, "note")
        body.append(
            f'<tr><td class="wide">{_esc(r.suite)}</td><td class="card">{_esc(r.card)}</td>'
            f"<td>{_esc(r.task)}</td>"
            f'<td>{_esc(r.metric)}</td><td class="num">{published_text(r.published)}</td>'
            f"<td>{_esc(r.measured_text)}</td>"
            f'<td class="num">{delta}</td><td>{_esc(r.tolerance_text)}</td>'
            f'<td class="{css}">{_esc(VERDICT_TEXT.get(r.verdict, r.verdict))}</td><td>{source}</td></tr>'
        )
    return (
        f'<div class="scroll"><table id="{table_id}"><thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(body)
        + "\n</tbody></table></div>"
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


def _reproduction_section(board: Board) -> list[str]:
    if not board.reproductions:
        return []
    measured = [r for r in board.reproductions if r.mean is not None]
    pending = [r for r in board.reproductions if r.mean is None]
    suites = ", ".join(sorted({r.suite for r in board.reproductions}))
    parts = ['<h2 id="measured-vs-published">Measured vs published</h2>']
    if measured:
        ok = sum(r.verdict == "ok" for r in measured)
        parts.append(
            f'<p class="note">{len(measured)} of {len(board.reproductions)} published numbers measured, '
            f"{ok} within the suite's tolerance.</p>"
        )
        parts.append(reproduction_table(board, measured, "reproductions"))
    else:
        parts.append(
            f'<p class="note">Nothing measured yet on real data. The suites ({suites}) reproduce the '
            "published numbers below with these tolerances: <code>harmony-bench suite run SUITE --data "
            "imagenet=/data/imagenet …</code>, then <code>harmony-bench leaderboard</code>.</p>"
        )
    if pending:
        table = reproduction_table(board, pending, "pending")
        summary = f"{len(pending)} published numbers the suites reproduce, not run yet"
        parts.append(f"<details><summary>{summary}</summary>{table}</details>")
    return parts


def render_html(board: Board, figures: list[tuple[str, str]], files: dict[str, bytes], title: str) -> str:
    """The whole page as one string."""
    nav = (
        '<nav><a href="#measured-vs-published">measured vs published</a>'
        '<a href="#measured-results">measured</a>'
        '<a href="#published-comparison-tables">published comparison tables</a>'
        '<a href="#sources">sources</a></nav>'
    )
    sections = [f"<h1>{_esc(title)}</h1>", nav, *_reproduction_section(board)]
    sections.append(f'<h2 id="measured-results">Measured ({board.n_records} records)</h2>')
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
        sections.append(f'<div class="scroll">{measured_table(board.summary)}</div>')
        sections += [f'<p class="note">Note: {_esc(note)}.</p>' for note in board.notes]
    if figures:
        sections += ["<h2>Charts</h2>", f'<div class="charts">{_figures(figures, files)}</div>']
    if board.bad:
        items = "".join(f"<li><code>{_esc(p)}</code>: {_esc('; '.join(pr))}</li>" for p, pr in board.bad)
        sections.append(f"<h3>Unreadable records (not in the table)</h3><ul>{items}</ul>")
    sections += [
        '<h2 id="published-comparison-tables">Published comparison tables</h2>',
        '<p class="note">The published numbers in results/reported/ (only numbers read from a primary '
        "source), laid out as their source tables: one row per method · backbone · pretraining data · "
        "epochs, one column per task. Lettered notes are the source's; <em>measured</em> rows are "
        "harmony-bench's reproduction of the row above (mean over seeds, Δ = measured − published, the "
        "suite's tolerance).</p>",
        *(source_table(t) for t in board.tables),
        '<h2 id="sources">Sources</h2>',
        '<ol class="sources">'
        + "".join(
            f'<li id="src-{t.number}"><a href="#source-{t.number}">{_esc(t.citation)}</a></li>'
            for t in board.tables
        )
        + "</ol>",
        "<details><summary>All published numbers as one sortable list</summary>",
        published_table(board.reported),
        "</details>",
    ]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
