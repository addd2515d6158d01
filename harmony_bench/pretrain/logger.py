"""Logging every loss term, throughput and memory: a JSONL file always, TensorBoard / W&B when installed."""

from __future__ import annotations

import json
import logging
import resource
import sys
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


def memory_mb(device: torch.device) -> float:
    """Peak memory: CUDA max allocated, else this process's max resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


class RunLogger:
    """Rank-0 sink for scalars: ``log.jsonl`` + optional TensorBoard and W&B."""

    def __init__(
        self, output: Path, cfg: dict[str, Any], enabled: bool, start_step: int | None = None
    ) -> None:
        """Open the sinks; ``start_step``: where the run starts (later lines of earlier runs are dropped)."""
        self.enabled = enabled
        self.path = output / "log.jsonl"
        self.tb = self.wandb = None
        if not enabled:
            return
        if start_step is not None:
            truncate_log(self.path, start_step)
        if cfg["log"]["tensorboard"]:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = {"purge_step": start_step + 1} if start_step is not None else {}
                self.tb = SummaryWriter(str(output / "tensorboard"), **purge)
            except ImportError:
                log.info("tensorboard is not installed; logging to %s only", self.path)
        if cfg["log"]["wandb"]:
            try:
                import wandb

                self.wandb = wandb.init(
                    project="harmony-bench-pretrain", config=cfg, dir=str(output), resume="allow"
                )
            except ImportError:
                log.warning("log.wandb is on but wandb is not installed; skipping it")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Append one record (rank 0 only); every sink gets the same values."""
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **values}) + "\n")
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def close(self) -> None:
        """Flush and close TensorBoard and W&B."""
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def truncate_log(path: Path, step: int) -> int:
    """Keep only the records up to ``step`` (a resumed run repeats the steps after its checkpoint).

    Returns:
        How many records were dropped.  The file is rewritten atomically; a torn last line (the
        kill hit a write) is dropped too.
    """
    from harmony_bench.atomic import atomic_write_text

    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if int(record.get("step", 0)) <= step:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "".join(f"{line}\n" for line in kept))
        log.info(
            "log.jsonl: dropped %d records after step %d (computed again after the resume)", dropped, step
        )
    return dropped


def read_log(path: Path) -> list[dict[str, Any]]:
    """The JSONL records of a run (for the smoke check and tests); a torn line is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # blank, or the last line of a run killed mid-write
            continue
    return records
