"""Backbone cards generated from timm / open_clip / Hugging Face model names.

``timm:NAME[.TAG]``, ``open_clip:ARCH/TAG`` (or ``open_clip:hf-hub:ORG/NAME``) and ``hf-hub:ORG/NAME``
name a model those libraries know with its pretrained weights.  The card written here is what a
hand-written card would say, read from the model's own pretrained config: the timm architecture
(the tag resolved, so the record names the exact weights), the eval preprocessing (mean, std,
interpolation, resize and crop), and for open_clip the text tower.  The weights come through the
libraries' own mechanism (``hub_files``; converter ``timm-pretrained`` runs timm's own loading, and
open_clip files go through the ``open-clip`` converter), and the card goes into every record.

What a card cannot describe is refused with the reason instead of being approximated: timm models
that are not ViTs or Swin, open_clip towers that are not OpenAI-style ViTs, and eval transforms other
than "resize the shorter side, center-crop" (timm ``crop_mode`` center, open_clip ``resize_mode``
shortest).  An open_clip text tower harmony-bench cannot rebuild exactly leaves a vision-only card
with a note saying why.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from harmony_bench.cards import BackboneCard

TIMM_PREFIX = "timm:"
OPEN_CLIP_PREFIX = "open_clip:"
HF_PREFIX = "hf-hub:"
HUB_PREFIXES = (TIMM_PREFIX, OPEN_CLIP_PREFIX, HF_PREFIX)
TIMM_FORMAT = "timm-hub"
OPEN_CLIP_FORMAT = "open_clip-hub"

# open_clip ViT towers by (width, patch): the timm entry point whose name says the size (the card's
# overrides set every dimension anyway).
CLIP_ENTRYPOINTS = {
    (384, 16): "vit_xsmall_patch16_clip_224",
    (512, 16): "vit_medium_patch16_clip_224",
    (512, 32): "vit_medium_patch32_clip_224",
    (768, 16): "vit_base_patch16_clip_224",
    (768, 32): "vit_base_patch32_clip_224",
    (1024, 14): "vit_large_patch14_clip_224",
    (1280, 14): "vit_huge_patch14_clip_224",
}
# open_clip vision/text config keys harmony-bench rebuilds; any other key must keep its default.
VISION_MAPPED = {"image_size", "layers", "width", "head_width", "mlp_ratio", "patch_size", "no_ln_pre"}
VISION_IGNORED = {"patch_dropout", "output_tokens", "timm_model_pretrained"}  # training-only / output form
TEXT_MAPPED = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}
TEXT_IGNORED = {"output_tokens", "hf_model_pretrained", "hf_proj_type", "hf_pooler_type"}


class UnsupportedModelError(ValueError):
    """The named model exists, but harmony-bench cannot evaluate it faithfully; the message says why."""


def is_hub_name(name: str) -> bool:
    """True for ``timm:``, ``open_clip:`` and ``hf-hub:`` backbone names."""
    return name.startswith(HUB_PREFIXES)


def is_hub_source(source: str | None) -> bool:
    """True for a card's ``checkpoint.source`` that the libraries fetch (a generated card's own name).

    ``hf-hub:ORG/REPO/FILE`` (three or more parts) is a hand-written card's plain file on the hub,
    fetched by ``checkpoint_io``; ``hf-hub:ORG/NAME`` is a whole model.
    """
    if not source:
        return False
    if source.startswith(HF_PREFIX):
        return source[len(HF_PREFIX) :].count("/") == 1
    return source.startswith((TIMM_PREFIX, OPEN_CLIP_PREFIX))


def hub_card(name: str) -> BackboneCard:
    """The generated card for a hub name (no weights are fetched; ``hf-hub:`` fetches the small config)."""
    if name.startswith(TIMM_PREFIX):
        return timm_card(name[len(TIMM_PREFIX) :])
    if name.startswith(OPEN_CLIP_PREFIX):
        rest = name[len(OPEN_CLIP_PREFIX) :]
        if rest.startswith(HF_PREFIX):
            return open_clip_hf_card(rest[len(HF_PREFIX) :], name)
        arch, sep, tag = rest.partition("/")
        return open_clip_card(arch, tag if sep else "")
    if name.startswith(HF_PREFIX):
        repo = name[len(HF_PREFIX) :]
        _check_repo(repo, name)
        kind, config = hf_config(repo, name)
        if kind == "open_clip":
            return open_clip_hf_card(repo, name, config)
        return timm_hf_card(repo, name, config)
    raise ValueError(f"{name!r} is not a timm:, open_clip: or hf-hub: name")


# --------------------------------------------------------------------------- timm


def timm_pretrained_cfg(model: str) -> Any:
    """The pretrained config timm has for ``NAME[.TAG]`` (the default tag when none is given), or an error."""
    import timm
    from timm.models import get_pretrained_cfg

    from harmony_bench.registry import UnknownNameError, suggest

    arch, _, tag = model.partition(".")
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:400] if arch else []
        raise UnknownNameError(suggest(arch, close, "timm model") + " (all: timm.list_models())")
    try:
        cfg = get_pretrained_cfg(model)
    except RuntimeError:
        tags = timm.list_pretrained(f"{arch}.*")
        raise UnknownNameError(
            f"timm has no pretrained tag {tag!r} for {arch}; tags with weights: {', '.join(tags) or 'none'}"
        ) from None
    if cfg is None or not (cfg.hf_hub_id or (cfg.url and not cfg.custom_load)):
        tags = timm.list_pretrained(f"{arch}.*")
        raise UnsupportedModelError(
            f"timm has no downloadable pretrained weights for {model} (it would be a random init, a "
            f"meaningless number); tags with weights: {', '.join(tags) or 'none'}"
        )
    return cfg


def timm_card(model: str) -> BackboneCard:
    """The card of timm model ``NAME[.TAG]`` with its pretrained weights."""
    cfg = timm_pretrained_cfg(model)
    full = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else str(cfg.architecture)
    where = f"hf-hub {cfg.hf_hub_id}" if cfg.hf_hub_id else str(cfg.url)
    return _timm_based_card(
        name=f"{TIMM_PREFIX}{full}",
        timm_model=full,
        model_args={},
        pretrained=cfg.to_dict(),
        notes=f"Generated from timm's pretrained config of {full} (timm weights: {where}).",
    )


def timm_hf_card(repo: str, name: str, config: dict[str, Any]) -> BackboneCard:
    """The card of a timm model published on the hub (``config.json`` with its architecture)."""
    from timm.models._hub import _parse_model_cfg

    pretrained, arch, model_args = _parse_model_cfg(dict(config), {"hf_hub_id": repo, "source": "hf-hub"})
    return _timm_based_card(
        name=name,
        timm_model=arch,
        model_args=dict(model_args or {}),
        pretrained=pretrained,
        notes=f"Generated from config.json of the hub repository {repo} (timm architecture {arch}).",
    )


def _timm_based_card(
    name: str, timm_model: str, model_args: dict[str, Any], pretrained: dict[str, Any], notes: str
) -> BackboneCard:
    import timm
    import torch
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    with torch.device("meta"):
        model = timm.create_model(timm_model, pretrained=False, num_classes=0, **model_args)
    if isinstance(model, VisionTransformer):
        family = "timm"
        overrides = {
            "embed_dim": int(model.embed_dim),
            "depth": len(model.blocks),
            "num_heads": int(model.blocks[0].attn.num_heads),
        }
        out = _evenly_spaced(len(model.blocks))
    elif isinstance(model, SwinTransformer):
        family = "swin"
        overrides = {"embed_dim": int(model.embed_dim)}
        out = list(range(len(model.layers)))
    else:
        raise UnsupportedModelError(
            f"{name} is a {type(model).__name__}; harmony-bench evaluates ViTs (timm VisionTransformer) and "
            "Swin (timm SwinTransformer), whose features, pooling and dense adapters it implements"
        )
    crop_mode = pretrained.get("crop_mode") or "center"
    if crop_mode != "center":
        raise UnsupportedModelError(
            f"{name} is evaluated with timm crop_mode {crop_mode!r}; harmony-bench's eval transform is "
            "resize-shorter-side + center-crop, so its numbers would not be the model's"
        )
    size = int(pretrained.get("input_size", (3, 224, 224))[-1])
    crop_pct = float(pretrained.get("crop_pct") or 0.875)
    classifier = pretrained.get("classifier") or "head"
    options: dict[str, Any] = {"model": timm_model}
    if model_args:
        options["model_args"] = model_args
    options["classifier"] = list(classifier) if isinstance(classifier, (list, tuple)) else [classifier]
    return BackboneCard(
        name=name,
        family=family,
        description=f"{timm_model} with its pretrained weights, built by timm",
        architecture={"timm_model": timm_model, "overrides": {**model_args, **overrides}, "out_indices": out},
        checkpoint={
            "source": name,
            "format": TIMM_FORMAT,
            "converter": "timm-pretrained",
            "weights": "final",
            "sha256": None,
            "options": options,
        },
        preprocessing={
            "input_size": size,
            "resize": math.floor(size / crop_pct),  # timm's eval scale: floor(img_size / crop_pct)
            "crop": size,
            "interpolation": str(pretrained.get("interpolation") or "bicubic"),
            "mean": [float(v) for v in pretrained.get("mean", (0.485, 0.456, 0.406))],
            "std": [float(v) for v in pretrained.get("std", (0.229, 0.224, 0.225))],
        },
        license=str(pretrained.get("license") or "see the model's page"),
        paper=pretrained.get("paper_name") or None,
        notes=notes,
        tags=["generated", "timm"],
    )


def _evenly_spaced(depth: int) -> list[int]:
    """Blocks 3/5/7/11 (iBOT's dense features) for 12 blocks, else four evenly spaced ending at the last.

    The same rule as ``pretrain.export.out_indices`` (the dense protocols pick their own for 12/24 blocks).
    """
    if depth == 12:
        return [3, 5, 7, 11]
    return sorted({max(0, round(depth * k / 4) - 1) for k in range(1, 5)})


# --------------------------------------------------------------------------- open_clip


def open_clip_card(arch: str, tag: str) -> BackboneCard:
    """The card of open_clip model ``ARCH`` with the weights of pretrained tag ``TAG``."""
    import open_clip

    from harmony_bench.registry import UnknownNameError, suggest

    models = open_clip.list_models()
    if arch not in models:
        raise UnknownNameError(suggest(arch, models, "open_clip model"))
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if not tag or tag not in tags:
        what = "needs a pretrained tag" if not tag else f"has no pretrained tag {tag!r}"
        raise UnknownNameError(
            f"open_clip:{arch} {what}: write open_clip:{arch}/TAG with TAG one of "
            f"{', '.join(tags) or '(none)'}"
        )
    pretrained = dict(open_clip.get_pretrained_cfg(arch, tag))
    model_cfg = open_clip.get_model_config(arch)
    where = pretrained.get("hf_hub") or pretrained.get("url")
    return _open_clip_based_card(
        f"{OPEN_CLIP_PREFIX}{arch}/{tag}",
        model_cfg,
        {**model_cfg.get("preprocess_cfg", {}), **pretrained},
        f"Generated from open_clip's config of {arch} and pretrained tag {tag} (weights: {where}).",
    )


def open_clip_hf_card(repo: str, name: str, config: dict[str, Any] | None = None) -> BackboneCard:
    """The card of an open_clip model published on the hub (``open_clip_config.json``)."""
    if config is None:
        _check_repo(repo, name)
        config = _json(_config_file(repo, "open_clip_config.json", name))
    if "model_cfg" not in config:
        raise UnsupportedModelError(f"{name}: open_clip_config.json has no 'model_cfg'")
    return _open_clip_based_card(
        name,
        config["model_cfg"],
        dict(config.get("preprocess_cfg") or {}),
        f"Generated from open_clip_config.json of the hub repository {repo}.",
    )


def _open_clip_based_card(
    name: str, model_cfg: dict[str, Any], preprocess: dict[str, Any], notes: str
) -> BackboneCard:
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    vision = dict(model_cfg.get("vision_cfg") or {})
    quick_gelu = bool(preprocess.get("quick_gelu", model_cfg.get("quick_gelu", False)))
    arch = _clip_vision_architecture(name, vision, model_cfg, quick_gelu)
    resize_mode = preprocess.get("resize_mode") or "shortest"
    if resize_mode != "shortest":
        raise UnsupportedModelError(
            f"{name} is evaluated with open_clip resize_mode {resize_mode!r}; harmony-bench's eval transform "
            "is resize-shorter-side + center-crop, so its numbers would not be the model's"
        )
    size = int(vision.get("image_size", 224))
    text, why_not = _clip_text_tower(model_cfg, quick_gelu)
    if why_not:
        notes += f" Vision only: the text tower is not rebuilt ({why_not})."
    if "quick_gelu" in preprocess and bool(model_cfg.get("quick_gelu", False)) != quick_gelu:
        notes += f" QuickGELU={quick_gelu}, as the pretrained tag was trained (the model config differs)."
    return BackboneCard(
        name=name,
        family="clip",
        description=f"open_clip {name.split(':', 1)[1]}, built from open_clip's config",
        architecture=arch,
        checkpoint={
            "source": name,
            "format": OPEN_CLIP_FORMAT,
            "converter": "open-clip",
            "weights": "final",
            "sha256": None,
        },
        preprocessing={
            "input_size": size,
            "resize": size,
            "crop": size,
            "interpolation": str(preprocess.get("interpolation") or "bicubic"),
            "mean": [float(v) for v in preprocess.get("mean") or OPENAI_DATASET_MEAN],
            "std": [float(v) for v in preprocess.get("std") or OPENAI_DATASET_STD],
        },
        license="see the model's page (open_clip pretrained weights)",
        text_tower=text,
        notes=notes,
        tags=["generated", "open_clip"] + (["text-tower"] if text else []),
    )


def _non_default(cfg: dict[str, Any], defaults: dict[str, Any], allowed: set[str]) -> list[str]:
    return sorted(k for k, v in cfg.items() if k not in allowed and v != defaults.get(k, object()))


def _clip_vision_architecture(
    name: str, vision: dict[str, Any], model_cfg: dict[str, Any], quick_gelu: bool
) -> dict[str, Any]:
    """The timm ``VisionTransformer`` arguments of an OpenAI-style open_clip ViT, or why it is not one."""
    from open_clip.model import CLIPVisionCfg

    defaults = dataclasses.asdict(CLIPVisionCfg())
    layers = vision.get("layers", defaults["layers"])
    if vision.get("timm_model_name") or not isinstance(layers, int):
        tower = vision.get("timm_model_name") or "a ModifiedResNet"
        raise UnsupportedModelError(
            f"{name}: the image tower is {tower}, not an OpenAI-style ViT; harmony-bench rebuilds "
            "open_clip's own VisionTransformer only (use the timm: name of that tower for image tasks)"
        )
    other = _non_default(vision, defaults, VISION_MAPPED | VISION_IGNORED)
    if other:
        raise UnsupportedModelError(
            f"{name}: its image tower sets {other}, which harmony-bench's timm rebuild does not reproduce"
        )
    width, patch = int(vision.get("width", defaults["width"])), int(vision.get("patch_size", 16))
    overrides: dict[str, Any] = {
        "patch_size": patch,
        "embed_dim": width,
        "depth": int(layers),
        "num_heads": width // int(vision.get("head_width", defaults["head_width"])),
        "mlp_ratio": float(vision.get("mlp_ratio", defaults["mlp_ratio"])),
        "pre_norm": not bool(vision.get("no_ln_pre", False)),
        "act_layer": "quick_gelu" if quick_gelu else "gelu",
    }
    size = int(vision.get("image_size", 224))
    if size != 224:
        overrides["img_size"] = size
    depth = int(layers)
    return {
        "timm_model": CLIP_ENTRYPOINTS.get((width, patch), "vit_base_patch16_clip_224"),
        "overrides": overrides,
        "norm_eps": 1.0e-5,
        "projection_dim": int(model_cfg["embed_dim"]),
        "out_indices": _evenly_spaced(depth),
    }


def _clip_text_tower(model_cfg: dict[str, Any], quick_gelu: bool) -> tuple[dict[str, Any] | None, str]:
    """The card's ``text_tower`` for an open_clip CLIP text transformer, or ``(None, why not)``."""
    from open_clip.model import CLIPTextCfg

    text = dict(model_cfg.get("text_cfg") or {})
    if not text:
        return None, "the model has none"
    if model_cfg.get("custom_text"):
        return None, "custom_text towers keep another key layout"
    defaults = dataclasses.asdict(CLIPTextCfg())
    other = _non_default(text, defaults, TEXT_MAPPED | TEXT_IGNORED)
    if other:
        return None, f"it sets {other}"
    return {
        "embed_dim": int(model_cfg["embed_dim"]),
        "context_length": int(text.get("context_length", defaults["context_length"])),
        "vocab_size": int(text.get("vocab_size", defaults["vocab_size"])),
        "width": int(text.get("width", defaults["width"])),
        "heads": int(text.get("heads", defaults["heads"])),
        "layers": int(text.get("layers", defaults["layers"])),
        "mlp_ratio": float(text.get("mlp_ratio", defaults["mlp_ratio"])),
        "quick_gelu": quick_gelu,
        "norm_eps": 1.0e-5,
        "tokenizer": "open_clip",
    }, ""


# --------------------------------------------------------------------------- hf-hub


def _check_repo(repo: str, name: str) -> None:
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"{name!r}: a hub model is named hf-hub:ORG/NAME (one slash), got {repo!r}")


def _config_file(repo: str, filename: str, name: str) -> Path:
    from harmony_bench.models.hub_files import hf_file

    return hf_file(repo, [filename], what=name)


def _json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def hf_config(repo: str, name: str) -> tuple[str, dict[str, Any]]:
    """``("open_clip", open_clip_config.json)`` or ``("timm", config.json)`` of a hub repository.

    open_clip repositories often also carry a transformers ``config.json``, so open_clip's own config
    is looked for first; a ``config.json`` is timm's when it names an ``architecture``.
    """
    from harmony_bench.models.hub_files import HubFileMissing, hf_file, hub_cache_dir, offline, repo_folder

    reasons = []
    try:
        return "open_clip", _json(hf_file(repo, ["open_clip_config.json"], what=name))
    except HubFileMissing as exc:
        reasons.append(str(exc).rsplit("Details: ", 1)[-1])
    try:
        config = _json(hf_file(repo, ["config.json"], what=name))
    except HubFileMissing as exc:
        reasons.append(str(exc).rsplit("Details: ", 1)[-1])
        mode = "downloads are off (HF_HUB_OFFLINE)" if offline() else "it could not be downloaded"
        raise HubFileMissing(
            f"{name} needs the hub repository {repo} (its config, open_clip_config.json for an open_clip "
            f"model or config.json for a timm model, and its weights), which is not in the hub cache "
            f"({hub_cache_dir()}) and {mode}. Get it where there is network with `hf download {repo}` "
            f"(huggingface_hub's CLI), then copy the folder {repo_folder(repo)} to this machine's hub cache "
            f"(or point HF_HUB_CACHE at a copy). Details: {'; '.join(reasons)}"
        ) from None
    if "architecture" not in config and "architecture" not in (config.get("pretrained_cfg") or {}):
        raise UnsupportedModelError(
            f"{name}: the repository is neither an open_clip model (no open_clip_config.json) nor a timm "
            "model (its config.json names no timm architecture); harmony-bench builds models through timm "
            "or open_clip"
        )
    return "timm", config


# --------------------------------------------------------------------------- weights


def hub_weights(source: str, *, local_only: bool = False) -> Path:
    """The local weights file of a generated card's source, from the library's cache or downloaded into it.

    The file choice is the library's: timm reads ``hf_hub_filename`` (default ``pytorch_model.bin``) and
    prefers its safetensors twin; open_clip reads the tag's ``hf_hub`` file (default
    ``open_clip_pytorch_model.bin``, safetensors twin first) or, without one, its URL into ``~/.cache/clip``.
    ``local_only`` looks in the caches without downloading.
    """
    from harmony_bench.models.hub_files import hf_file, url_file

    if source.startswith(TIMM_PREFIX):
        cfg = timm_pretrained_cfg(source[len(TIMM_PREFIX) :])
        if cfg.hf_hub_id:
            repo, _, revision = cfg.hf_hub_id.partition("@")
            return hf_file(
                repo,
                _timm_files(cfg.hf_hub_filename),
                what=source,
                revision=revision or None,
                local_only=local_only,
            )
        import torch.hub

        return url_file(
            str(cfg.url), Path(torch.hub.get_dir()) / "checkpoints", what=source, local_only=local_only
        )
    if source.startswith(OPEN_CLIP_PREFIX) and not source.startswith(OPEN_CLIP_PREFIX + HF_PREFIX):
        import open_clip

        arch, _, tag = source[len(OPEN_CLIP_PREFIX) :].partition("/")
        cfg = open_clip.get_pretrained_cfg(arch, tag)
        if cfg.get("hf_hub"):
            repo, _, filename = str(cfg["hf_hub"]).strip().rpartition("/")
            return hf_file(repo, _open_clip_files(filename), what=source, local_only=local_only)
        return url_file(
            str(cfg["url"]), Path("~/.cache/clip").expanduser(), what=source, local_only=local_only
        )
    repo = source.split(HF_PREFIX, 1)[1]
    kind, config = hf_config(repo, source)
    if kind == "open_clip" or source.startswith(OPEN_CLIP_PREFIX):
        return hf_file(repo, _open_clip_files(""), what=source, local_only=local_only)
    from timm.models._hub import _parse_model_cfg

    pretrained, _, _ = _parse_model_cfg(dict(config), {"hf_hub_id": repo, "source": "hf-hub"})
    return hf_file(repo, _timm_files(pretrained.get("hf_hub_filename")), what=source, local_only=local_only)


def _timm_files(filename: str | None) -> list[str]:
    from timm.models._hub import HF_WEIGHTS_NAME, _get_safe_alternatives

    name = filename or HF_WEIGHTS_NAME
    return [*_get_safe_alternatives(name), name]


def _open_clip_files(filename: str) -> list[str]:
    from open_clip.constants import HF_WEIGHTS_NAME
    from open_clip.pretrained import _get_safe_alternatives

    name = filename or HF_WEIGHTS_NAME
    return [*_get_safe_alternatives(name), name]
