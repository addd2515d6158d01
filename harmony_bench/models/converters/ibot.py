"""iBOT checkpoints: the released teacher/student backbone files and the full training ``checkpoint.pth``.

Backbone key names already equal timm's.  The backbone files are
``{"state_dict": {...}}`` (from iBOT's ``extract_backbone_weights.py``); the
full checkpoint holds ``teacher`` (``backbone.*`` + ``head.*``, not DDP
wrapped) and ``student`` (``module.backbone.*`` + ``module.head.*``) next to
optimizer state and the pickled ``args``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harmony_bench.models.converters._common import ConvertResult, apply_rules, take_prefix, unwrap

REASON_MASKED_EMBED = "masked-image-modeling token (pre-training only)"
REASON_HEAD = "self-distillation projection head (pre-training only)"

BACKBONE_DROPS = [(r"masked_embed", REASON_MASKED_EMBED), (r"head\..+", REASON_HEAD)]

# Where each branch's backbone and head sit inside a full DINO/iBOT checkpoint.
BRANCH_PREFIXES = {"teacher": "backbone.", "student": "module.backbone."}


def convert_ibot_teacher_backbone(state_dict: Mapping[str, Any]) -> ConvertResult:
    """``checkpoint_teacher.pth`` / ``checkpoint_student.pth``: ``{"state_dict": backbone}``."""
    state, dropped = unwrap(state_dict, ("state_dict",), "ibot-teacher-backbone")
    out, more, _ = apply_rules(state, [], BACKBONE_DROPS)
    dropped.update(more)
    return out, dropped


def convert_teacher_student(
    state_dict: Mapping[str, Any], *, branch: str, converter: str, head_reason: str
) -> ConvertResult:
    """Shared by iBOT and DINO full checkpoints: take one branch's backbone, report the rest."""
    if branch not in BRANCH_PREFIXES:
        raise ValueError(f"{converter}: branch must be one of {sorted(BRANCH_PREFIXES)}, got {branch!r}")
    weights, dropped = unwrap(state_dict, (branch,), converter)
    backbone, rest = take_prefix(weights, BRANCH_PREFIXES[branch])
    out, more, _ = apply_rules(backbone, [], [(r"masked_embed", REASON_MASKED_EMBED)], label=f"{branch}.")
    dropped.update(more)
    dropped.update({f"{branch}.{k}": head_reason for k in rest})
    return out, dropped


def convert_ibot_full_checkpoint(state_dict: Mapping[str, Any], *, branch: str = "teacher") -> ConvertResult:
    """The full ``checkpoint.pth``: the EMA ``teacher`` backbone by default (or ``branch="student"``)."""
    return convert_teacher_student(
        state_dict, branch=branch, converter="ibot-full-checkpoint", head_reason=REASON_HEAD
    )
