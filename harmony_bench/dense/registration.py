"""Register our modules into the OpenMMLab registries, importing mmseg / mmdet only on demand."""

from __future__ import annotations

import functools


@functools.cache
def register_into(scope: str) -> None:
    """Make our modules buildable from ``scope``'s configs.

    ``RegistryBackbone`` (and its frozen variant), ``TimmLayerDecayOptimizerConstructor``,
    ``TrainableOnlyOptimWrapperConstructor``, ``MMCV1PolyLR`` and, for mmdet, the ViT pyramid neck.

    Args:
        scope: ``"mmseg"`` or ``"mmdet"``; the toolbox is imported here, not before.
    """
    from mmengine.registry import PARAM_SCHEDULERS

    from harmony_bench.dense.adapter import RegistryBackbone
    from harmony_bench.dense.frozen import FrozenRegistryBackbone, TrainableOnlyOptimWrapperConstructor
    from harmony_bench.dense.layer_decay import TimmLayerDecayOptimizerConstructor
    from harmony_bench.dense.schedules import MMCV1PolyLR

    if scope == "mmseg":
        from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
        from mmseg.utils import register_all_modules
    elif scope == "mmdet":
        from mmdet.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
        from mmdet.utils import register_all_modules
        from mmseg.models.necks import Feature2Pyramid  # the iBOT/BEiT pyramid; mmdet has none

        MODELS.register_module("Feature2Pyramid", module=Feature2Pyramid, force=True)
    else:
        raise ValueError(f"unknown OpenMMLab scope {scope!r}; expected 'mmseg' or 'mmdet'")
    register_all_modules(init_default_scope=False)
    MODELS.register_module("RegistryBackbone", module=RegistryBackbone, force=True)
    MODELS.register_module("FrozenRegistryBackbone", module=FrozenRegistryBackbone, force=True)
    if scope == "mmseg":
        from mmseg.registry import METRICS

        from harmony_bench.dense.seg_metric import PerClassIoUMetric

        METRICS.register_module("PerClassIoUMetric", module=PerClassIoUMetric, force=True)
    OPTIM_WRAPPER_CONSTRUCTORS.register_module(
        "TimmLayerDecayOptimizerConstructor", module=TimmLayerDecayOptimizerConstructor, force=True
    )
    OPTIM_WRAPPER_CONSTRUCTORS.register_module(
        "TrainableOnlyOptimWrapperConstructor", module=TrainableOnlyOptimWrapperConstructor, force=True
    )
    PARAM_SCHEDULERS.register_module("MMCV1PolyLR", module=MMCV1PolyLR, force=True)  # the root registry
