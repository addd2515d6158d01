"""The smoke preset's check: losses that have fixed targets must go down over the run."""

from __future__ import annotations

from pathlib import Path

from harmony_bench.pretrain.logger import read_log

# Terms whose targets do not move (the distillation terms chase a moving teacher and may rise early on).
FIXED_TARGET_TERMS = ("clip_hard", "mae", "mlm", "simclr")


def check_losses_decrease(log_path: Path, window: int = 2) -> str:
    """Compare the mean of the first and last ``window`` logged values of each fixed-target term.

    Raises:
        AssertionError: a term did not decrease (the smoke run did not learn).
    """
    records = read_log(log_path)
    if len(records) < 2 * window:
        raise AssertionError(
            f"{log_path}: only {len(records)} log records; the smoke run is too short to judge"
        )
    terms = [t for t in FIXED_TARGET_TERMS if t in records[0]] or ["loss"]
    lines = []
    for term in terms:
        first = sum(r[term] for r in records[:window]) / window
        last = sum(r[term] for r in records[-window:]) / window
        lines.append(f"{term}: {first:.4f} -> {last:.4f}")
        if not last < first:
            raise AssertionError(f"smoke check failed: {term} did not decrease ({first:.4f} -> {last:.4f})")
    return "smoke check passed: " + ", ".join(lines)
