"""``harmony-bench run --task ade20k-linear``: iBOT's/Harmony's frozen-backbone linear segmentation on ADE20K.

The cheapest dense signal: the backbone is frozen (``FrozenRegistryBackbone``: no gradients, eval mode,
features under ``no_grad``) and a single 1x1 convolution over its four block maps, concatenated, is
trained for the UperNet protocol's 160k iterations on the same data, pipeline and slide evaluation.
Everything but the model and the optimizer is the ``ade20k`` task's: dataset checks, size resolution,
backbone configuration, training and the record (``harmony_bench.tasks.ade20k.upernet``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harmony_bench.dense import protocol
from harmony_bench.runner import TaskContext, TaskOutcome, TaskRunner
from harmony_bench.tasks.ade20k import upernet


def preflight(context: TaskContext) -> None:
    """The ``ade20k`` checks (dataset, annotations, size, config), with this task's config."""
    upernet.check_inputs(context, build_config)


def build_config(
    context: TaskContext, root: Path | None = None, sources: dict[str, str] | None = None
) -> Any:
    """The complete mmengine config of this run (``root``: the checked ADEChallengeData2016 folder).

    The head takes the four maps concatenated: ``in_channels`` = the backbone's widths, ``channels`` =
    their sum (mmseg's FCNHead with ``num_convs=0`` requires it).  The protocol file's ``sources`` are
    popped; pass a dict as ``sources`` to receive them.
    """
    from mmengine.config import Config

    if context.card.family == "swin":
        raise ValueError(
            f"ade20k-linear is iBOT's frozen-ViT protocol (four block maps of one resolution, concatenated); "
            f"{context.card.name} is a Swin with four stages of different resolutions: use --task ade20k"
        )
    size = protocol.resolve_size(context)
    cfg = Config.fromfile(str(protocol_file(context)))
    cited = protocol.take_sources(cfg)
    if sources is not None:
        sources.update(cited)
    widths = protocol.configure_backbone(cfg, context, size)
    cfg.model.decode_head.in_channels = widths
    cfg.model.decode_head.channels = sum(widths)
    upernet.set_data_root(cfg, root)
    protocol.finish(cfg, context)
    return cfg


def describe(context: TaskContext) -> str:
    """The resolved mmengine config (``harmony-bench protocol show ade20k-linear``)."""
    return protocol.describe(context, build_config)


def protocol_rows(context: TaskContext) -> list[tuple[str, Any, str]]:
    """Every cited hyper-parameter of the resolved mmengine config (benchmarks/PROTOCOLS.md)."""
    return protocol.hyperparameters(context, build_config)


protocol_file = upernet.protocol_file  # benchmarks/ade20k/<the size's file> for this run's preset
sheet_variants = upernet.sheet_variants  # one variant per size that has a file, as ade20k


def run(context: TaskContext) -> TaskOutcome:
    """Train the linear head over the frozen backbone; return mIoU, mAcc, aAcc and per-class IoU."""
    return upernet.train_segmentor(context, build_config)


RUNNER = TaskRunner(run=run, preflight=preflight)
