"""mmseg's ``IoUMetric`` plus what a result record needs: per-class IoU/accuracy and a trivial baseline.

The summary numbers (aAcc, mIoU, mAcc) are mmseg's own, computed by its code; this subclass only
keeps the per-class arrays it otherwise just prints, and the mIoU of predicting the most frequent
class everywhere (``max_c freq_c / #classes present``), which says what "learned something" means on
a given validation set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mmseg.evaluation import IoUMetric


class PerClassIoUMetric(IoUMetric):
    """``IoUMetric`` that also keeps ``per_class`` ({class: {IoU, Acc}}) and ``constant_baseline_mIoU``."""

    def compute_metrics(self, results: list) -> dict[str, float]:
        """The summary is mmseg's; per-class scores and the baseline are kept on the metric object."""
        summary = super().compute_metrics(results)
        intersect, union, _, label = (sum(r[i] for r in results).numpy() for i in range(4))
        classes = self.dataset_meta["classes"]
        present = label > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            iou, acc = intersect / union, intersect / label
        self.per_class: dict[str, dict[str, Any]] = {
            name: {"IoU": _pct(iou[i]), "Acc": _pct(acc[i])} for i, name in enumerate(classes) if present[i]
        }
        freq = label / max(label.sum(), 1)
        self.constant_baseline_mIoU = _pct(freq.max() / max(int(present.sum()), 1))
        return summary


def _pct(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x) * 100, 2)
