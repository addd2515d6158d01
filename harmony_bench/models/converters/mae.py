"""MAE checkpoints: ``mae_pretrain_vit_{base,large,huge}.pth`` = ``{"model": encoder}`` in timm names.

The released pre-training files hold the encoder only; the full "visualize"
checkpoints also hold the decoder and ``mask_token``, which are reported as
dropped.  The fixed 2-D sin-cos ``pos_embed`` is stored in the file and loads
as an ordinary parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
