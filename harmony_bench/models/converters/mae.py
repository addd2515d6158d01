"""MAE checkpoints: ``mae_pretrain_vit_{base,large,huge}.pth`` = ``{"model": encoder}`` in timm names.

The released pre-training files hold the encoder only; the full "visualize"
checkpoints also hold the decoder and ``mask_token``, which are reported as
dropped.  The fixed 2-D sin-cos ``pos_embed`` is stored in the file and loads
as an ordinary parameter.

The fine-tuned classifiers (``mae_finetuned_vit_{base,large,huge}.pth``, FINETUNE.md) are
``{"model": ...}`` in timm names too, with the classifier kept: ``fc_norm`` (the LayerNorm after global
average pooling; the final ``norm`` was deleted by ``models_vit.py``) and ``head`` (1000 classes).  A timm
ViT built with ``global_pool='avg', fc_norm=True, num_classes=1000`` holds exactly these keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harmony_bench.models.checkpoint_io import CheckpointError
from harmony_bench.models.converters._common import ConvertResult, apply_rules, unwrap

MAE_DROPS = [
    (r"mask_token", "MAE decoder mask token (pre-training only)"),
    (r"decoder_.+", "MAE pixel decoder (pre-training only)"),
]


def convert_mae(state_dict: Mapping[str, Any]) -> ConvertResult:
    """``{"model": {...}}`` with timm key names; decoder parts are dropped."""
    state, dropped = unwrap(state_dict, ("model",), "mae")
    out, more, _ = apply_rules(state, [], MAE_DROPS)
    dropped.update(more)
    return out, dropped


def convert_mae_finetuned(state_dict: Mapping[str, Any]) -> ConvertResult:
    """``{"model": {...}}`` of a fine-tuned MAE classifier: every key kept, ``fc_norm`` and ``head`` too."""
    state, dropped = unwrap(state_dict, ("model",), "mae-finetuned")
    missing = [
        key for key in ("head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias") if key not in state
    ]
    if missing:
        raise CheckpointError(
            f"converter 'mae-finetuned' expects a fine-tuned MAE classifier (fc_norm and head); {missing} "
            "are absent. A pre-training checkpoint (mae_pretrain_vit_*.pth) belongs to the mae-vit-*-in1k "
            "cards"
        )
    out, more, _ = apply_rules(state, [], MAE_DROPS)
    dropped.update(more)
    return out, dropped
