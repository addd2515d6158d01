"""The BEiT/iBOT/Harmony fine-tuning recipe from timm's parts: head, transforms, mixup, optimizer, schedule.

Each builder takes one block of the ``imagenet-finetune`` protocol config (see
``benchmarks/imagenet/imagenet-finetune.yaml``) and hands it to the timm utility the reference
scripts themselves use (``run_class_finetuning.py`` in iBOT/Harmony calls timm's ``create_transform``,
``Mixup`` and ``SoftTargetCrossEntropy``); the optimizer and schedule, which BEiT wrote by hand, come
from timm's equivalents:

- layer-wise lr decay: timm's ``param_groups_layer_decay`` (what ``create_optimizer_v2(...,
  layer_decay=d)`` calls) groups the ViT — stem (patch/pos embed, cls token) = layer 0, ``blocks.i`` =
  layer i+1, everything else (final norm, head) = the top layer — with lr scale ``d ** (top - layer)``,
  the values of BEiT's ``LayerDecayValueAssigner`` (``d ** (depth + 1 - layer_id)``).  timm's own
  ViT ``group_matcher`` would put the final norm into the last block's layer (scale ``d`` instead of
  1); :class:`_BeitLayers` keeps BEiT's assignment.  1-D parameters and the model's
  ``no_weight_decay()`` (pos embed, cls token) get no weight decay, as in BEiT;
- schedule: ``create_scheduler_v2`` cosine, stepped per optimizer update, with the warmup as a
  prefix (``warmup_prefix=True`` over ``epochs - warmup_epochs`` cosine epochs), which is the shape of
  BEiT's ``utils.cosine_scheduler``: linear warmup, then a cosine from ``lr`` to ``min_lr`` over the
  remaining updates (and of MAE's ``util/lr_sched.py``, which evaluates the same curve per iteration).

Which recipe a preset runs is data, selected by config keys, so another recipe is a preset, not a fork:

- ``model.global_pool`` (``token`` | ``avg``) and ``model.fc_norm``: with ``fc_norm: true`` the final norm
  moves after the pooling as a fresh LayerNorm (timm's ``fc_norm``), the pre-trained final norm is dropped
  (MAE ``models_vit.py``: ``global_pool`` deletes ``self.norm``);
- ``optim.opt`` (any timm optimizer), ``optim.lr_scaling`` (``none``: ``lr`` is absolute, BEiT/iBOT/SLIP;
  ``batch/256``: ``lr`` is MAE's base lr, ``lr * train.batch_size / 256``);
- ``optim.layer_decay_rule``: how parameters map to layers for the lr decay (:data:`LAYER_RULES`;
  ``beit`` is BEiT's ``get_num_layer_for_vit`` and MAE's ``get_layer_id_for_vit``, which agree;
  ``simmim-swin`` is SimMIM's ``get_swin_layer`` restated for timm's Swin names, :func:`simmim_swin_layer`);
- ``optim.lr_scaling_scope`` (``all``: SimMIM scales the warm-up and minimum lr with the peak),
  ``optim.no_weight_decay_keywords`` (SimMIM's ``no_weight_decay_keywords()``), ``schedule.warmup_prefix``
  (``false``: timm's ``CosineLRScheduler`` default, which SimMIM uses: the cosine spans the whole run and the
  warm-up overrides its start) and ``schedule.step: iteration-after`` (SimMIM steps the schedule after each
  update, so update k runs at the lr of k - 1 and the first at the warm-up lr).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from harmony_bench.models.backbone import Backbone
    from harmony_bench.runner import TaskContext

log = logging.getLogger(__name__)

GLOBAL_POOLS = ("token", "avg")
NORMALIZE = ("imagenet", "card")
LR_SCALINGS = ("none", "batch/256", "batch/512")
LR_SCALING_SCOPES = ("peak", "all")
SCHEDULE_STEPS = ("iteration", "epoch", "iteration-after")


def preprocessing(context: TaskContext) -> dict[str, Any]:
    """The card's preprocessing with the protocol's eval transform (resize/crop/interpolation) and mean/std.

    ``normalize: imagenet`` uses timm's ImageNet mean/std (the recipe's ``--imagenet_default_mean_and_std``),
    ``card`` the card's own.
    """
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from harmony_bench.tasks.imagenet.common import preprocessing_for

    config = context.config
    merged = preprocessing_for(context.card.preprocessing, config["transform"])
    if config["normalize"] not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {config['normalize']!r}")
    if config["normalize"] == "imagenet":
        merged["mean"], merged["std"] = list(IMAGENET_DEFAULT_MEAN), list(IMAGENET_DEFAULT_STD)
    return merged


def input_size(prep: dict[str, Any]) -> int:
    """The training and evaluation crop."""
    return int(prep.get("crop") or prep["input_size"])


def train_transform(augment: dict[str, Any], prep: dict[str, Any]) -> Any:
    """The timm ImageNet train transform: RandomResizedCrop, flip, RandAugment, normalize, random erasing."""
    from timm.data import create_transform

    transform = create_transform(
        input_size=input_size(prep),
        is_training=True,
        scale=tuple(augment["scale"]),
        hflip=float(augment["hflip"]),
        color_jitter=None if augment["color_jitter"] is None else float(augment["color_jitter"]),
        auto_augment=augment["auto_augment"] or None,
        interpolation=augment["interpolation"],
        re_prob=float(augment["re_prob"]),
        re_mode=augment["re_mode"],
        re_count=int(augment["re_count"]),
        mean=tuple(prep["mean"]),
        std=tuple(prep["std"]),
    )
    _patch_posterize(transform)
    return transform


def _posterize(img: Any, bits_to_keep: int, **kwargs: Any) -> Any:
    """The timm ``posterize`` op, where keeping 0 bits gives a black image, as older Pillow did.

    RandAugment's ``PosterizeIncreasing`` keeps ``4 - int(4 * m / 10)`` bits, 0 when the sampled
    magnitude reaches its cap of 10 (about 2 % of draws at ``m9-mstd0.5``).  Older Pillow masked every
    bit away (a black image); Pillow 13 (installed here) raises ``ValueError: bits must be between or
    equal to 1 and 8``, which would end a fine-tuning run at the first such draw.
    """
    from PIL import Image
    from timm.data import auto_augment

    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return auto_augment.posterize(img, bits_to_keep, **kwargs)


def _patch_posterize(transform: Any) -> None:
    """Point this transform's RandAugment posterize ops at :func:`_posterize` (timm itself is untouched)."""
    from timm.data import auto_augment

    for step in getattr(transform, "transforms", []):
        for op in getattr(step, "ops", []) if isinstance(step, auto_augment.RandAugment) else []:
            if op.aug_fn is auto_augment.posterize:
                op.aug_fn = _posterize


def eval_transform(prep: dict[str, Any]) -> Any:
    """Resize, center crop, normalize (the protocol's ``transform`` over the card's preprocessing)."""
    from harmony_bench.models.preprocess import eval_transform as card_eval_transform

    return card_eval_transform(prep)


def build_classifier(
    context: TaskContext, n_classes: int, prep: dict[str, Any]
) -> tuple[nn.Module, Backbone]:
    """Load the backbone with drop path at the protocol's input size and give it a fresh classifier head.

    The head reads the class token after the final norm (``global_pool: token``, BEiT ``--use_cls``) or
    the mean of the patch tokens (``avg``); with ``fc_norm: true`` the mean is taken before a fresh
    LayerNorm and the final norm is dropped (MAE).  The head is initialised as BEiT does: truncated
    normal (std 0.02) scaled by ``head_init_scale``, zero bias, drawn from a generator seeded with the
    run's seed (MAE's ``trunc_normal_(std=2e-5)`` is the same distribution: the +-2 bounds never bind).
    Any projection head of the card (CLIP-style ``head``) is replaced.
    """
    import torch

    from harmony_bench.models.backbone import load_backbone

    spec = context.config["model"]
    pool = spec["global_pool"]
    if pool not in GLOBAL_POOLS:
        raise ValueError(f"model.global_pool must be one of {GLOBAL_POOLS}, got {pool!r}")
    size = input_size(prep)
    native = int(context.card.preprocessing.get("crop") or context.card.preprocessing["input_size"])
    overrides: dict[str, Any] = {"drop_path_rate": float(spec["drop_path_rate"])}
    if size != native:
        overrides["img_size"] = size
    backbone = load_backbone(
        context.card,
        context.options.checkpoint,
        trust_checkpoint=context.options.trust_checkpoint,
        **overrides,
    )
    model = backbone.model
    check_rule_fits(backbone, context.config["optim"]["layer_decay_rule"])
    if pool == "token" and not getattr(model, "has_class_token", False):
        raise ValueError(f"{context.card.name} has no class token; use --set model.global_pool=avg")
    model.reset_classifier(n_classes, global_pool=pool)
    if spec.get("fc_norm"):
        move_norm_after_pool(model)
    head = model.get_classifier()  # ViT: head; Swin: head.fc
    generator = torch.Generator().manual_seed(context.options.seed)
    with torch.no_grad():
        torch.nn.init.trunc_normal_(head.weight, std=0.02, generator=generator)
        head.weight.mul_(float(spec["head_init_scale"]))
        head.bias.zero_()
    return model, backbone


def rule_architecture(rule: str) -> str:
    """The architecture a layer-decay rule is defined over: ``swin`` for ``simmim-swin``, else ``vit``."""
    return "swin" if rule == "simmim-swin" else "vit"


def card_architecture(card: Any) -> str:
    """``swin`` for a card whose timm model is a Swin Transformer, else ``vit``."""
    return "swin" if str(card.architecture.get("timm_model", "")).startswith("swin") else "vit"


def check_rule_fits(backbone: Backbone, rule: str) -> None:
    """Refuse a layer-decay rule defined over another architecture than the backbone's (before training)."""
    from timm.models.swin_transformer import SwinTransformer

    want = rule_architecture(rule)
    fits = isinstance(backbone.model, SwinTransformer) if want == "swin" else backbone.is_vit
    if not fits:
        raise ValueError(
            f"optim.layer_decay_rule {rule!r} is defined over {want.upper()} layers, but "
            f"{backbone.card.name} is a {type(backbone.model).__name__}; {RULE_HINT}"
        )


RULE_HINT = (
    "ViT backbones run the BEiT/MAE presets (layer_decay_rule beit), Swin backbones simmim-swin-b "
    "(layer_decay_rule simmim-swin; `--preset smoke` picks smoke-swin for them)"
)


def move_norm_after_pool(model: nn.Module) -> None:
    """MAE's ``global_pool``: drop the final norm, normalise the pooled features with a fresh ``fc_norm``.

    timm builds the same module when created with ``global_pool='avg', fc_norm=True`` (``norm`` is then an
    ``Identity`` and ``fc_norm`` a LayerNorm applied in ``forward_head`` after the pooling); here the
    loaded model is changed in place, so the card's checkpoint loads as usual.  The new LayerNorm has the
    final norm's epsilon and the default initialisation (weight 1, bias 0), as in MAE's ``models_vit.py``.
    """
    import copy

    from torch import nn

    if getattr(model, "global_pool", None) != "avg":
        raise ValueError("model.fc_norm needs model.global_pool avg (it normalises the pooled patch tokens)")
    fresh = copy.deepcopy(model.norm)
    fresh.reset_parameters()
    model.fc_norm = fresh
    model.norm = nn.Identity()


def build_mixup(spec: dict[str, Any], n_classes: int) -> tuple[Any, nn.Module]:
    """``(timm Mixup or None, criterion)``: soft-target CE with mixup/cutmix, else label-smoothing CE."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if float(spec["mixup_alpha"]) > 0 or float(spec["cutmix_alpha"]) > 0:
        mixup = Mixup(
            mixup_alpha=float(spec["mixup_alpha"]),
            cutmix_alpha=float(spec["cutmix_alpha"]),
            prob=float(spec["prob"]),
            switch_prob=float(spec["switch_prob"]),
            mode=spec["mode"],
            label_smoothing=float(spec["label_smoothing"]),
            num_classes=n_classes,
        )
        return mixup, SoftTargetCrossEntropy()  # smoothing is in the mixed targets
    if float(spec["label_smoothing"]) > 0:
        return None, LabelSmoothingCrossEntropy(smoothing=float(spec["label_smoothing"]))
    import torch

    return None, torch.nn.CrossEntropyLoss()


# How a model's parameters map to layers for layer-wise lr decay: a wrapper that timm's
# ``param_groups_layer_decay`` reads (``named_parameters`` + ``group_matcher``).  Another architecture's rule
# (e.g. Swin stages) is one more entry.
LAYER_RULES: dict[str, type] = {}


class _BeitLayers:
    """A ViT as timm's ``param_groups_layer_decay`` sees it, with BEiT's layer ids.

    timm's ``VisionTransformer.group_matcher`` puts the final ``norm`` into the last block's layer (lr
    scale ``d``); BEiT's ``get_num_layer_for_vit`` gives everything that is neither stem nor block (final
    norm, ``fc_norm``, head) the top layer (scale 1).  Dropping timm's ``^norm`` rule leaves those
    parameters unmatched, which timm maps to the top layer: stem = 0, ``blocks.i`` = i + 1, the rest =
    depth + 1, i.e. BEiT's assignment, computed by timm.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def named_parameters(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.named_parameters(*args, **kwargs)

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return {"stem": self.model.group_matcher(coarse=False)["stem"], "blocks": [(r"^blocks\.(\d+)", None)]}


LAYER_RULES["beit"] = _BeitLayers


def simmim_swin_layer(name: str, depths: tuple[int, ...] | list[int]) -> int:
    """SimMIM's Swin layer id of a timm ``SwinTransformer`` parameter (ids 0 .. sum(depths) + 1).

    SimMIM ``optimizer.py`` ``get_swin_layer`` on SimMIM's names: ``patch_embed`` (and ``mask_token``) 0;
    ``layers.i.blocks.j`` ``sum(depths[:i]) + j + 1``; the patch merging that closes stage i
    (``layers.i.downsample.{reduction,norm}``) ``sum(depths[:i + 1])``, the id of stage i's last block;
    everything else (final ``norm``, ``head``, and ``absolute_pos_embed``, which it does not name) the top,
    ``sum(depths) + 1``.  timm keeps that patch merging at the start of the next stage
    (``layers.<i+1>.downsample``), so timm's ``layers.s.downsample`` gets ``sum(depths[:s])``.
    """
    parts = name.split(".")
    if name == "mask_token" or parts[0] == "patch_embed":
        return 0
    if parts[0] == "layers":
        stage = int(parts[1])
        if parts[2] == "downsample":  # SimMIM's layers.<stage-1>.downsample: its last block's id
            return sum(depths[:stage])
        if parts[2] == "blocks":
            return sum(depths[:stage]) + int(parts[3]) + 1
    return sum(depths) + 1


class _SimmimSwinLayers:
    """A timm Swin as ``param_groups_layer_decay`` sees it, with SimMIM's ids (:func:`simmim_swin_layer`).

    timm's ``SwinTransformer.group_matcher`` gives each stage's patch merging its own group before the
    stage's blocks (an extra layer per stage) and the final norm the last block's layer; SimMIM's rule has
    sum(depths) + 2 layers, patch merging sharing the previous block's.  timm accepts a callable matcher
    (name -> ordinal); every id from 0 to the top occurs in a Swin, so timm's renumbering keeps them.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.depths = [len(stage.blocks) for stage in model.layers]

    def named_parameters(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.named_parameters(*args, **kwargs)

    def group_matcher(self, coarse: bool = False) -> Any:
        return lambda name: simmim_swin_layer(name, self.depths)


LAYER_RULES["simmim-swin"] = _SimmimSwinLayers


def lr_factor(spec: dict[str, Any], batch_size: int) -> float:
    """The factor of ``optim.lr_scaling``: 1 (``none``), ``batch / 256`` (MAE), ``batch / 512`` (SimMIM)."""
    rule = spec.get("lr_scaling", "none")
    if rule not in LR_SCALINGS:
        raise ValueError(f"optim.lr_scaling must be one of {LR_SCALINGS}, got {rule!r}")
    return 1.0 if rule == "none" else batch_size / int(rule.partition("/")[2])


def peak_lr(spec: dict[str, Any], batch_size: int) -> float:
    """The optimizer's lr: ``optim.lr`` as given (``lr_scaling: none``) or times :func:`lr_factor`."""
    return float(spec["lr"]) * lr_factor(spec, batch_size)


def schedule_lr_factor(spec: dict[str, Any], batch_size: int) -> float:
    """The factor on ``schedule.warmup_lr`` and ``min_lr``: :func:`lr_factor` for scope ``all``, else 1.

    SimMIM ``main_finetune.py`` scales BASE_LR, WARMUP_LR and MIN_LR alike; MAE scales only the peak.
    """
    scope = spec.get("lr_scaling_scope", "peak")
    if scope not in LR_SCALING_SCOPES:
        raise ValueError(f"optim.lr_scaling_scope must be one of {LR_SCALING_SCOPES}, got {scope!r}")
    return lr_factor(spec, batch_size) if scope == "all" else 1.0


def no_weight_decay_names(model: nn.Module, spec: dict[str, Any]) -> set[str]:
    """``model.no_weight_decay()`` and each parameter named with a ``no_weight_decay_keywords`` entry."""
    names = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    keywords = list(spec.get("no_weight_decay_keywords") or [])
    names |= {name for name, _ in model.named_parameters() if any(k in name for k in keywords)}
    return names


def build_optimizer(model: nn.Module, spec: dict[str, Any], batch_size: int = 256) -> torch.optim.Optimizer:
    """AdamW (or ``opt``) from timm ``create_optimizer_v2``, param groups from ``param_groups_layer_decay``.

    Each group carries ``lr_scale = layer_decay ** (depth + 1 - layer)`` (applied by the timm scheduler)
    and ``weight_decay`` (0 for 1-D parameters and ``model.no_weight_decay()``).  The lr is
    :func:`peak_lr` of the global ``batch_size``.
    """
    from timm.optim import create_optimizer_v2, param_groups_layer_decay

    lr = peak_lr(spec, batch_size)
    rule = spec.get("layer_decay_rule", "beit")
    if rule not in LAYER_RULES:
        raise ValueError(f"optim.layer_decay_rule must be one of {sorted(LAYER_RULES)}, got {rule!r}")
    layers = LAYER_RULES[rule]
    kwargs: dict[str, Any] = {}
    if spec.get("eps") is not None:
        kwargs["eps"] = float(spec["eps"])
    if spec.get("betas") is not None:
        kwargs["betas"] = tuple(float(b) for b in spec["betas"])
    weight_decay = float(spec["weight_decay"])
    layer_decay = spec.get("layer_decay")
    if layer_decay is None:
        return create_optimizer_v2(model, opt=spec["opt"], lr=lr, weight_decay=weight_decay, **kwargs)

    def groups(module: nn.Module) -> list[dict[str, Any]]:
        return param_groups_layer_decay(
            layers(module),
            weight_decay=weight_decay,
            no_weight_decay_list=no_weight_decay_names(module, spec),
            layer_decay=float(layer_decay),
        )

    return create_optimizer_v2(
        model,
        opt=spec["opt"],
        lr=lr,
        weight_decay=weight_decay,
        param_group_fn=groups,
        **kwargs,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, spec: dict[str, Any], updates_per_epoch: int, scale: float = 1.0
) -> Any:
    """A timm cosine schedule with a linear warmup, stepped per update (``step: iteration*``) or epoch.

    ``warmup_prefix`` true: the cosine runs over the epochs after the warm-up (BEiT, MAE); false: over the
    whole run, the warm-up replacing its start (SimMIM).  ``scale`` multiplies ``warmup_lr`` and
    ``min_lr`` (:func:`schedule_lr_factor`).
    """
    from timm.scheduler import create_scheduler_v2

    epochs, warmup = int(spec["epochs"]), int(spec["warmup_epochs"])
    if not 0 <= warmup < epochs:
        raise ValueError(f"schedule.warmup_epochs must be in [0, epochs={epochs}), got {warmup}")
    if spec["step"] not in SCHEDULE_STEPS:
        raise ValueError(f"schedule.step must be one of {SCHEDULE_STEPS}, got {spec['step']!r}")
    per_iteration = spec["step"] != "epoch"
    prefix = bool(spec.get("warmup_prefix", True))
    scheduler, total = create_scheduler_v2(
        optimizer,
        sched=spec["sched"],
        num_epochs=epochs - warmup if prefix else epochs,
        warmup_epochs=warmup,
        warmup_lr=float(spec["warmup_lr"]) * scale,
        min_lr=float(spec["min_lr"]) * scale,
        warmup_prefix=prefix,
        step_on_epochs=not per_iteration,
        updates_per_epoch=updates_per_epoch if per_iteration else 0,
    )
    if total != epochs:  # e.g. a scheduler with cooldown: the run length must still be `epochs`
        raise ValueError(f"schedule {spec['sched']!r} spans {total} epochs, the protocol says {epochs}")
    return scheduler


def param_group_table(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """One row per optimizer param group: lr scale, weight decay and parameter names (for audit/tests)."""
    names = {id(param): name for name, param in model.named_parameters()}
    return [
        {
            "lr_scale": float(group.get("lr_scale", 1.0)),
            "weight_decay": float(group["weight_decay"]),
            "params": [names[id(param)] for param in group["params"]],
        }
        for group in optimizer.param_groups
    ]
