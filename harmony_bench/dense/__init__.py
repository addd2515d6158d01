"""Dense-prediction plumbing shared by ADE20K (mmseg) and COCO (mmdet).

One backbone adapter wraps any registry backbone for both OpenMMLab toolboxes; the layer-decay
optimizer constructor knows timm's parameter names; ``engine`` holds the mmengine pieces both tasks
need (launcher, AMP, resume, ``--cfg-options``).  Nothing here imports mmseg or mmdet at import time:
``register_into(scope)`` does, when a dense task actually runs.
"""

from harmony_bench.dense.quiet import silence_known_warnings
from harmony_bench.dense.registration import register_into

silence_known_warnings()  # the OpenMMLab stack's known-harmless notices (scoped filters, see quiet.py)

__all__ = ["register_into"]
