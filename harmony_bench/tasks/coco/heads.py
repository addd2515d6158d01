"""Narrower detector heads for CPU smoke runs, for both detectors' config structures.

At 256 channels the R-CNN heads, not the backbone, dominate a CPU step: Cascade Mask R-CNN runs
three 4conv1fc box heads and three 4-conv mask heads on 512 sampled RoIs per image, roughly 40 s
per 4-image step on two cores.  A smoke run only has to show the pipeline trains and scores, so the
``heads`` setting (None in the paper protocol) narrows every width after the pyramid and samples
fewer proposals and RoIs.  It walks the config instead of listing dotted ``cfg_options`` keys
because Mask R-CNN has one box head and Cascade a list of three.
"""

from __future__ import annotations

from typing import Any


def shrink_heads(cfg: Any, heads: dict[str, int] | None) -> None:
    """Narrow every head of ``cfg.model`` in place (no-op for ``heads=None``).

    FPN, RPN and RoI widths become ``heads['channels']``, the box-head fc ``fc_channels``; the RPN
    keeps ``proposals`` per image and the R-CNN stages sample ``rois_per_image``.
    """
    if not heads:
        return
    width, model = int(heads["channels"]), cfg.model
    fpn = model.neck[-1] if isinstance(model.neck, list) else model.neck
    fpn.out_channels = width
    model.rpn_head.in_channels = model.rpn_head.feat_channels = width
    roi = model.roi_head
    for extractor in _each(roi.bbox_roi_extractor) + _each(roi.mask_roi_extractor):
        extractor.out_channels = width
    for head in _each(roi.bbox_head):
        head.in_channels = head.conv_out_channels = width
        head.fc_out_channels = int(heads["fc_channels"])
    for head in _each(roi.mask_head):
        head.in_channels = head.conv_out_channels = width
    proposals = int(heads["proposals"])
    for stage in (model.train_cfg.rpn_proposal, model.test_cfg.rpn):
        stage.nms_pre = stage.max_per_img = proposals
    for stage in _each(model.train_cfg.rcnn):
        stage.sampler.num = int(heads["rois_per_image"])


def _each(part: Any) -> list[Any]:
    return list(part) if isinstance(part, list) else [part]
