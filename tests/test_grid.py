"""The one table model: best is shown one way per format, for `table` and the leaderboard alike."""

import pytest

from harmony_bench.grid import (
    Cell,
    CellCollision,
    Label,
    build_grid,
    md_cell_safe,
    to_csv,
    to_frame,
    to_html,
    to_latex,
    to_markdown,
)
from harmony_bench.leaderboard.board import measured_grid
from harmony_bench.tables import records_to_frame, summarize, summary_grid
from tests.test_tables import make_record, top1


def _grid():
    cells = [
        (Label("b"), Label("t / top1", ("v10", "paper")), Cell("85.00 (n=1)", True, 85.0, ("r/b 1.json",))),
        (Label("a"), Label("t / top1", ("v10", "paper")), Cell("80.00 (n=1)", False, 80.0)),
        (Label("a"), Label("t / top1", ("v9", "paper")), Cell("70.00 (n=1)", False, 70.0)),
    ]
    return build_grid(cells, corner="backbone")


def test_rows_and_columns_sort_naturally_and_gaps_are_empty():
    grid = _grid()
    assert [str(r) for r, _ in grid.rows] == ["a", "b"]
    assert [str(c) for c in grid.columns] == ["t / top1 [v9, paper]", "t / top1 [v10, paper]"]
    assert to_frame(grid).loc["b", "t / top1 [v9, paper]"] == "—"


def test_best_is_marked_one_way_per_format():
    grid = _grid()
    assert to_frame(grid).loc["b", "t / top1 [v10, paper]"] == "85.00 (n=1) *"
    assert "85.00 (n=1) *" in to_csv(grid) and "80.00 (n=1) *" not in to_csv(grid)
    assert "| b | — | **85.00 (n=1)** [1](r/b%201.json) |" in to_markdown(grid)
    assert r"\textbf{85.00 (n=1)}" in to_latex(grid) and r"\textbf{80.00" not in to_latex(grid)
    page = to_html(grid)
    assert '<td class="best" data-value="85.0"><strong>85.00 (n=1)</strong> <a href="r/b 1.json"' in page
    assert '<td data-value="80.0">80.00 (n=1)</td>' in page and page.count("<strong>") == 1


def test_two_cells_in_one_place_are_refused():
    with pytest.raises(CellCollision):
        build_grid([(Label("a"), Label("c"), Cell("1")), (Label("a"), Label("c"), Cell("2"))], "backbone")


def test_markdown_labels_escape_their_parts_not_the_tag_brackets():
    label = Label("x|_y", ("v1", "`p`"))
    assert label.render(md_cell_safe) == r"x\|_y [v1, `p`]"  # the CLI table: the row breaker, no markup
    assert md_cell_safe("<img src=x onerror=alert(1)>&") == "&lt;img src=x onerror=alert(1)&gt;&amp;"
    grid = build_grid([(Label("x|_y"), label, Cell("1"))], "backbone")
    assert r"| x\|\_y | 1 |" in to_markdown(grid) and r"x\|\_y [v1, \`p\`]" in to_markdown(grid)


def test_table_and_leaderboard_render_best_the_same_way(tmp_path):
    """`table --format html` and leaderboard.html mark the same best cell with the same markup."""
    out = tmp_path / "recs"
    make_record(out, "alpha", "imagenet-linear", 0, top1(81.0))
    make_record(out, "beta", "imagenet-linear", 0, top1(85.5))
    summary = summarize(records_to_frame(_read(out)), ["top1"])
    table = to_html(summary_grid(summary))
    board = to_html(measured_grid(summary.assign(links=[[]] * len(summary))))
    best = '<td class="best" data-value="85.5"><strong>85.50 (n=1)</strong></td>'
    assert best in table and best in board
    assert table.count('class="best"') == board.count('class="best"') == 1


def _read(out):
    from harmony_bench.results import iter_records

    return iter_records([out])[0]
