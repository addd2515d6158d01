"""Continue training from Harmony-repo checkpoints (MohammedSB/Harmony).

Accepted files:

- the full ``checkpoint.pth`` (``model`` = the whole Harmony module): student and teacher ViTs
  (``student.backbone.*`` / ``teacher.backbone.*``, ``contrastive_projection`` -> ``head``, ``masked_embed``
  -> iBOT's [MASK] token) and text towers (``text_student.backbone.*`` / ``text_teacher.backbone.*``);
- ``main_vit_checkpoint.pth`` (+ ``--init-text main_text_checkpoint.pth``): the EMA teacher, copied into
  both student and teacher.

Heads (iBOT, text distillation, MAE and MLM decoders), centres and the optimizer state are not carried over:
their layouts differ (weight-normed ``last_layer``, per-path duplicates), so they restart, as a log line
says.  The key renames are the registry's own converters (``models/converters/harmony.py``).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from harmony_bench.models.checkpoint_io import read_checkpoint
from harmony_bench.models.converters._common import take_prefix
from harmony_bench.models.converters.harmony import convert_harmony_main_text, convert_harmony_main_vit

log = logging.getLogger(__name__)


def _vit_state(raw: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    mask = raw.get("masked_embed")
    state, _ = convert_harmony_main_vit(raw)
    return state, mask


def _text_state(raw: dict[str, Any]) -> dict[str, torch.Tensor]:
    state, _ = convert_harmony_main_text(raw)
    return {k[len("text.") :]: v for k, v in state.items()}


def _load(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> int:
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(usable))
    missing = sorted(set(own) - set(usable))
    if not usable:
        raise ValueError(f"{what}: no tensor of the Harmony checkpoint fits this model (wrong --arch?)")
    module.load_state_dict(usable, strict=False)
    if skipped or missing:
        log.warning(
            "%s: loaded %d tensors; not in the file: %s; unused: %s",
            what,
            len(usable),
            missing[:8],
            skipped[:8],
        )
    return len(usable)


def load_harmony_repo(
    model: torch.nn.Module, path: str, text_path: str | None = None, *, trust: bool = False
) -> None:
    """Initialise ``model`` (a ``PretrainModel``) from Harmony-repo files; see the module docstring."""
    raw = dict(read_checkpoint(path, trust=trust))
    if "model" in raw:
        full = raw["model"]
        pairs = [("student.backbone.", model.student), ("teacher.backbone.", model.teacher)]
        for prefix, towers in pairs:
            vit, _ = take_prefix(full, prefix)
            state, mask = _vit_state(vit)
            _load(towers.vit, state, f"{path} [{prefix}]")
            if mask is not None and towers.mask_token is not None:
                towers.mask_token.data.copy_(mask.reshape_as(towers.mask_token))
        for prefix, towers in [
            ("text_student.backbone.", model.student),
            ("text_teacher.backbone.", model.teacher),
        ]:
            text, _ = take_prefix(full, prefix)
            if text and towers.text is not None:
                _load(towers.text, _text_state(text), f"{path} [{prefix}]")
    else:
        state, _ = _vit_state(raw)
        for towers in (model.student, model.teacher):
            _load(towers.vit, state, path)
    if text_path:
        text = _text_state(dict(read_checkpoint(text_path, trust=trust)))
        for towers in (model.student, model.teacher):
            if towers.text is not None:
                _load(towers.text, text, text_path)
    log.info(
        "initialised from Harmony-repo weights %s; heads, decoders and optimizer state start fresh", path
    )
