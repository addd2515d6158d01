"""Aggregation of hand-made records: seeds, failed runs, malformed files, protocol versions, data kinds."""

import json
import re
import statistics
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from harmony_bench.cli import main
from harmony_bench.results import build_record, iter_records, metric, write_record
from harmony_bench.tables import (
    build_table,
    latex_escape,
    natural_key,
    pivot,
    records_to_frame,
    render,
    summarize,
    summary_grid,
    version_key,
)

START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def make_record(
    out: Path,
    backbone: str,
    task: str,
    seed: int,
    metrics: dict | None,
    version: str = "1",
    synthetic: bool = False,
    preset: str | None = "paper",
    config: dict | None = None,
    sha256: str | None = None,
    later: int = 0,
    root: str = "/data",
) -> Path:
    """Write one valid record (``metrics=None`` → a failed run) and return its path.

    ``sha256``: weights from a checkpoint with that hash (default: random init);
    ``later``: start that many hours after the default time (a rerun).
    """
    error = RuntimeError("out of memory") if metrics is None else None
    source = f"/ckpt/{sha256[:4]}.pth" if sha256 else None
    start = START + timedelta(minutes=seed, hours=later)
    record = build_record(
        backbone={
            "name": backbone,
            "card": None,
            "checkpoint": {"source": source, "sha256": sha256, "random_init": sha256 is None},
        },
        task={
            "name": task,
            "protocol_version": version,
            "preset": preset,
            "config": {"lr": 0.1} if config is None else config,
        },
        dataset={"name": "imagenet-1k", "root": root, "synthetic": synthetic, "manifest": None},
        seed=seed,
        metrics=metrics or {},
        start=start,
        end=start + timedelta(seconds=30),
        error=error,
    )
    return write_record(record, out)


def top1(value: float, per_class: float = 1.0) -> dict:
    return {"top1": metric(value), "top5": metric(value + 10), "per_class": {"cat": metric(per_class)}}


@pytest.fixture
def records_dir(tmp_path):
    """A: 3 seeds (+1 failed) under v1, one seed under v2, one synthetic run; B: one seed under v1."""
    out = tmp_path / "recs"
    for seed, value in enumerate([80.0, 82.0, 84.0]):
        make_record(out, "A", "imagenet-linear", seed, top1(value))
    make_record(out, "A", "imagenet-linear", 3, None)  # failed
    make_record(out, "A", "imagenet-linear", 0, top1(90.0), version="2")
    make_record(out, "A", "imagenet-linear", 0, top1(99.0), synthetic=True)
    make_record(out, "B", "imagenet-linear", 0, top1(85.0))
    return out


def _summary(records_dir, metrics=None):
    records, bad = iter_records([records_dir])
    assert bad == []
    return summarize(records_to_frame(records), metrics)


def _row(summary, backbone, version="1", synthetic=False, metric_name="top1", preset="paper"):
    rows = summary[
        (summary["backbone"] == backbone)
        & (summary["protocol_version"] == version)
        & (summary["synthetic"] == synthetic)
        & (summary["metric"] == metric_name)
        & (summary["preset"] == preset)
    ]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_mean_std_over_seeds_and_failed_runs_counted(records_dir):
    summary = _summary(records_dir)
    a = _row(summary, "A")
    assert a["mean"] == pytest.approx(statistics.mean([80, 82, 84]))
    assert a["std"] == pytest.approx(statistics.stdev([80, 82, 84]))
    assert (a["seeds"], a["failed"]) == (3, 1)
    assert len(a["records"]) == 3
    b = _row(summary, "B")
    assert (b["seeds"], b["failed"]) == (1, 0)
    # default metrics: top-level leaves only, no per-class group
    assert set(summary["metric"]) == {"top1", "top5"}


def test_protocol_versions_and_synthetic_runs_never_share_a_cell(records_dir):
    summary = _summary(records_dir)
    assert _row(summary, "A", version="2")["mean"] == 90.0
    assert _row(summary, "A", synthetic=True)["mean"] == 99.0
    table = pivot(summary)
    assert "imagenet-linear / top1 [v1, paper]" in table.columns
    assert "imagenet-linear / top1 [v2, paper]" in table.columns
    assert "imagenet-linear / top1 [v1, paper, synthetic]" in table.columns
    # A's v2 and synthetic numbers are higher than B's, but the best of the v1 column is B
    assert table.loc["B", "imagenet-linear / top1 [v1, paper]"] == "85.00 (n=1) *"
    assert table.loc["A", "imagenet-linear / top1 [v1, paper]"] == "82.00 ± 2.00 (n=3, 1 failed)"
    assert table.loc["B", "imagenet-linear / top1 [v2, paper]"] == "—"


def test_best_follows_higher_is_better(tmp_path):
    out = tmp_path / "recs"
    make_record(out, "A", "t", 0, {"loss": metric(0.5, higher_is_better=False)})
    make_record(out, "B", "t", 0, {"loss": metric(0.2, higher_is_better=False)})
    summary = _summary(out)
    assert bool(_row(summary, "B", metric_name="loss")["best"])
    assert not bool(_row(summary, "A", metric_name="loss")["best"])


def test_formats(records_dir):
    records, _ = iter_records([records_dir])
    md = build_table(records, ["top1"])
    assert "| B | — | **85.00 (n=1)** | — |" in md and "82.00 ± 2.00 (n=3, 1 failed)" in md
    latex = build_table(records, ["top1"], fmt="latex")
    assert r"\textbf{85.00 (n=1)}" in latex and r"82.00 $\pm$ 2.00" in latex and r"\end{tabular}" in latex
    html = build_table(records, ["top1"], fmt="html")
    assert "<strong>85.00 (n=1)</strong>" in html
    csv = build_table(records, ["top1"], fmt="csv")
    assert csv.splitlines()[0].startswith("backbone,")
    cells = json.loads(build_table(records, ["top1"], fmt="json"))
    a_v1 = [c for c in cells if c["backbone"] == "A" and c["protocol_version"] == "1" and not c["synthetic"]]
    assert a_v1[0]["seeds"] == 3 and a_v1[0]["failed"] == 1 and len(a_v1[0]["records"]) == 3
    flipped = pivot(summarize(records_to_frame(records), ["top1"]), rows="task", cols="backbone")
    assert list(flipped.columns) == ["A / top1", "B / top1"]
    assert render(summary_grid(summarize(records_to_frame([]))), "md") == "(no completed records)"


def test_rows_and_cols_keep_every_dimension_in_the_labels(records_dir):
    records, _ = iter_records([records_dir])
    table = pivot(summarize(records_to_frame(records), ["top1"]), rows="metric", cols="task")
    assert list(table.index) == ["top1"]
    assert "imagenet-linear / A [v1, paper]" in table.columns
    assert "imagenet-linear / B [v1, paper]" in table.columns
    with pytest.raises(ValueError, match="two different"):
        pivot(summarize(records_to_frame(records)), rows="task", cols="task")


def test_table_cli_reports_malformed_files_and_still_tabulates(records_dir, capsys):
    (records_dir / "truncated.json").write_text('{"schema_version": 1, "record_id": ')
    (records_dir / "wrong.json").write_text(json.dumps({"schema_version": 1, "status": "done"}))
    code = main(["table", str(records_dir), "--metric", "top1"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "truncated.json" in err and "not valid JSON" in err
    assert "wrong.json" in err
    assert "82.00 ± 2.00 (n=3, 1 failed)" in out


# --------------------------------------------------------------------------- identity of a cell


def test_a_rerun_of_a_seed_counts_once_newest_kept_and_is_reported(tmp_path, capsys):
    out = tmp_path / "recs"
    make_record(out, "A", "imagenet-linear", 0, top1(80.0))
    make_record(out, "A", "imagenet-linear", 0, top1(90.0), later=2)  # the rerun: newer, kept
    make_record(out, "A", "imagenet-linear", 1, top1(84.0))
    make_record(out, "A", "imagenet-linear", 0, top1(50.0), synthetic=True)  # other data kind: no duplicate
    summary = _summary(out)
    a = _row(summary, "A")
    assert (a["mean"], a["seeds"], len(a["records"])) == (87.0, 2, 2)
    assert a["std"] == pytest.approx(statistics.stdev([90, 84]))
    assert _row(summary, "A", synthetic=True)["mean"] == 50.0
    assert summary.attrs["duplicates_dropped"] == 1
    records, _ = iter_records([out])
    assert "Note: 1 duplicate run of an already-recorded seed dropped" in build_table(records, ["top1"])
    assert main(["table", str(out), "--format", "csv"]) == 0
    printed, err = capsys.readouterr()
    assert "note: 1 duplicate run" in err and "Note" not in printed  # CSV stays parseable


def test_presets_and_checkpoints_never_share_a_cell(tmp_path):
    out = tmp_path / "recs"
    sha_a, sha_b = "a" * 64, "b" * 64
    make_record(out, "C", "imagenet-linear", 0, top1(80.0), sha256=sha_a)
    make_record(out, "C", "imagenet-linear", 0, top1(70.0), sha256=sha_b)
    make_record(out, "C", "imagenet-linear", 0, top1(10.0), sha256=sha_a, preset="smoke")
    make_record(out, "D", "imagenet-linear", 0, top1(75.0), sha256="d" * 64)
    summary = _summary(out)
    assert summary.attrs["duplicates_dropped"] == 0  # same seed, but three different cells
    table = pivot(summary[summary["metric"] == "top1"])
    # two checkpoints of card C: one row each, tagged with the sha; D has one checkpoint: its plain name
    assert list(table.index) == ["C@aaaaaaaa", "C@bbbbbbbb", "D"]
    assert table.loc["C@aaaaaaaa", "imagenet-linear / top1 [v1, paper]"] == "80.00 (n=1) *"
    assert table.loc["C@bbbbbbbb", "imagenet-linear / top1 [v1, paper]"] == "70.00 (n=1)"
    assert table.loc["C@aaaaaaaa", "imagenet-linear / top1 [v1, smoke]"] == "10.00 (n=1)"
    assert table.loc["D", "imagenet-linear / top1 [v1, smoke]"] == "—"


def test_two_copies_of_the_data_are_never_reruns_of_one_seed(tmp_path, capsys):
    """Same card, task and seed on a clean and a damaged copy of the data: two cells, nothing dropped."""
    out = tmp_path / "recs"
    make_record(out, "A", "imagenet-linear", 0, top1(80.0), root="/data/imagenet")
    make_record(out, "A", "imagenet-linear", 0, top1(12.0), root="/scratch/imagenet-damaged", later=1)
    make_record(out, "A", "imagenet-linear", 1, top1(82.0), root="/data/imagenet")
    summary = _summary(out, ["top1"])
    assert summary.attrs["duplicates_dropped"] == 0
    table = pivot(summary)
    assert table.loc["A", "imagenet-linear / top1 [v1, paper, data /data/imagenet]"] == "81.00 ± 1.41 (n=2)"
    damaged = "imagenet-linear / top1 [v1, paper, data /scratch/imagenet-damaged]"
    assert table.loc["A", damaged] == "12.00 (n=1)"
    assert main(["table", str(out), "--format", "md"]) == 0
    printed = capsys.readouterr().out
    assert "81.00 ± 1.41 (n=2)" in printed and "12.00 (n=1)" in printed and "duplicate" not in printed
    one_copy = tmp_path / "one"  # a single copy adds no tag: tables of one dataset read as before
    make_record(one_copy, "A", "imagenet-linear", 0, top1(80.0), root="/data/imagenet")
    assert list(pivot(_summary(one_copy, ["top1"])).columns) == ["imagenet-linear / top1 [v1, paper]"]


def test_protocol_versions_sort_as_versions_not_text(tmp_path):
    assert version_key("10") > version_key("9") and version_key("1.10") > version_key("1.9")
    assert version_key("1.0rc1") < version_key("1.0") < version_key("1.0.post1")
    assert version_key("2024-06-beta") > version_key("99")  # unparseable: after every real version
    assert natural_key("top1 [v10]") > natural_key("top1 [v9]")
    out = tmp_path / "recs"
    for version in ("9", "10", "2"):
        make_record(out, "A", "imagenet-linear", 0, top1(80.0), version=version)
    table = pivot(_summary(out, ["top1"]))
    assert [c.split("[")[1] for c in table.columns] == ["v2, paper]", "v9, paper]", "v10, paper]"]


def test_latex_escapes_every_special_character(tmp_path):
    specials = "\\&%$#_{}~^"
    assert latex_escape(specials) == (r"\textbackslash{}\&\%\$\#\_\{\}\textasciitilde{}\textasciicircum{}")
    out = tmp_path / "recs"
    make_record(out, "net_{x}^2~$5", "task#1&50%", 0, {"top1": metric(80.0)})
    make_record(out, "back\\slash", "task#1&50%", 0, {"top1": metric(70.0)})
    records, _ = iter_records([out])
    latex = build_table(records, fmt="latex")
    assert r"net\_\{x\}\textasciicircum{}2\textasciitilde{}\$5" in latex  # a row label
    assert r"task\#1\&50\% / top1 [v1, paper]" in latex  # a header
    assert r"back\textbackslash{}slash" in latex
    escapes = re.compile(r"\\(textbackslash|textasciitilde|textasciicircum)\{\}|\\[&%$#_{}]|\$\\pm\$")
    for line in latex.splitlines()[2:-2]:  # the header and the rows, without the tabular markup
        for cell in line.removesuffix(r" \\").split(" & ") if line != r"\midrule" else []:
            bold = cell.startswith(r"\textbf{")
            text = escapes.sub("", cell[len(r"\textbf{") : -1] if bold else cell)
            assert not set(text) & set("\\&%$#_{}~^"), cell  # every special character was escaped
