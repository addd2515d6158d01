"""``suite report``: measured vs published, cell by cell, with deltas and a verdict.

A cell passes when ``|mean − expected| ≤ tolerance + sigma × std`` (std over
seeds; ``sigma`` defaults to 0, so a single-seed reproduction is held to the
plain tolerance).  Cells with no completed record are ``missing``: listed, and
a failure only with ``--require-all`` — a suite that has not run yet is not a
failed reproduction.  Synthetic records are never compared with published
numbers.

Only the records that are a cell's result count (``plan.record_matches``:
same card, checkpoint, task, preset, protocol version and resolved config),
so a smoke run, another checkpoint or a run with other hyper-parameters lying
in the same directory never stands in for the published setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harmony_bench.suites.plan import cell_identity, index_records, matching_records, step_outputs
from harmony_bench.suites.spec import Cell, Expectation, Suite
from harmony_bench.suites.state import suite_paths
from harmony_bench.tables import version_key

VERDICTS = ("ok", "outside", "missing", "synthetic")


@dataclass(frozen=True)
class Check:
    """One expectation against what was measured."""

    expectation: Expectation
    mean: float | None
    std: float | None
    seeds: int
    verdict: str

    @property
    def delta(self) -> float | None:
        """Measured minus published (None when missing)."""
        return None if self.mean is None else self.mean - self.expectation.value


def within(mean: float, std: float | None, expected: float, tolerance: float, sigma: float = 0.0) -> bool:
    """The tolerance rule; NaN std (one seed) counts as 0."""
    spread = 0.0 if std is None or math.isnan(std) else std
    return abs(mean - expected) <= tolerance + sigma * spread + 1e-9


def check(expectation: Expectation, summary: pd.DataFrame, backbone: str, synthetic: bool) -> Check:
    """Compare one expectation with the summary row of its cell (see ``tables.summarize``)."""
    e = expectation
    rows = summary[
        (summary["backbone"] == backbone) & (summary["task"] == e.task) & (summary["metric"] == e.metric)
    ]
    rows = rows[rows["synthetic"] == synthetic]
    if rows.empty:
        return Check(e, None, None, 0, "missing")
    if len(rows) > 1:  # several protocol versions: the newest (by version order, not text) is the suite's
        newest = max(version_key(v) for v in rows["protocol_version"])
        rows = rows[[version_key(v) == newest for v in rows["protocol_version"]]]
    if len(rows) > 1:  # one version measured on several copies of the data: no row speaks for all seeds
        roots = ", ".join(sorted(str(d) for d in rows["dataset"]))
        raise ValueError(
            f"the records of {backbone} on {e.task} ({e.metric}) come from {len(rows)} copies of the data "
            f"({roots}); a suite check compares one: move the records of the other copies out of the suite's "
            "records folder"
        )
    row = rows.iloc[0]
    std = None if pd.isna(row["std"]) else float(row["std"])
    if synthetic:
        return Check(e, float(row["mean"]), std, int(row["seeds"]), "synthetic")
    ok = within(float(row["mean"]), std, e.value, e.tolerance, e.sigma)
    return Check(e, float(row["mean"]), std, int(row["seeds"]), "ok" if ok else "outside")


def _expected_cells(suite: Suite, e: Expectation) -> list[Cell]:
    return [
        c
        for c in suite.cells
        if c.backbone.key == e.backbone and c.task.name == e.task and e.preset in (None, c.task.preset)
    ]


def suite_checks(suite: Suite, records: list[dict[str, Any]]) -> list[Check]:
    """Every expectation of the suite against the records that are results of its cells."""
    from harmony_bench.tables import records_to_frame, summarize

    paths, values = suite_paths(suite), {}
    for step in suite.steps.values():  # cards written by a step: named by the card file, once it exists
        values.update(step_outputs(step, paths, {}))
    index = index_records(records)
    checks = []
    for e in suite.expect:
        identities = [cell_identity(c, suite, values) for c in _expected_cells(suite, e)]
        mine = [r for i in identities for r in matching_records(index, i)]
        summary = summarize(records_to_frame(mine), [e.metric])
        checks.append(check(e, summary, identities[0].backbone, suite.synthetic))
    return checks


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def render_checks(checks: list[Check]) -> str:
    """Markdown table: cell, metric, published, measured (± std, n), delta, tolerance, verdict, source."""
    head = "| backbone | task | metric | published | measured | Δ | tolerance | verdict | source |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for c in checks:
        e = c.expectation
        measured = _fmt(c.mean)
        if c.mean is not None:
            measured += f" ± {c.std:.2f}" if c.std is not None else ""
            measured += f" (n={c.seeds})"
        tol = f"±{e.tolerance:g}" + (f" + {e.sigma:g}σ" if e.sigma else "")
        lines.append(
            f"| {e.backbone} | {e.task} | {e.metric} | {e.value:.2f} | {measured} | {_fmt(c.delta, True)} "
            f"| {tol} | {c.verdict} | {e.source} |"
        )
    return "\n".join(lines)
