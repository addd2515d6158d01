"""Frozen features: extracted once per (weights, protocol, transform, data), cached on disk (fp16 or fp32).

Feature variants (names used in protocol files and metric names):

- ``cls`` — the class token after the final norm;
- ``clsN`` — the normed class tokens of the last ``N`` blocks, concatenated (DINO's ``n_last_blocks``);
- ``avgpool`` — the mean of the last block's normed patch tokens;
- ``cls+avgpool``, ``clsN+avgpool`` — the above with the mean patch token appended
  (DINO's ``--avgpool_patchtokens``, what Harmony's README uses with ``n_last_blocks 1``).

One extraction pass stores what every requested variant needs (class tokens of the last ``max N`` blocks,
and the last block's mean patch token), so a whole grid of variants reads from one cache entry.

The cache key is the sha256 of the canonical JSON of: the weights (checkpoint sha256, or
``random-init:<card>:seed<N>``), the card architecture and input size, the feature config (blocks,
avgpool, autocast, and the storage precision when it is not fp16), the transform (its ``repr``), the
timm version, and the dataset identity with a hash of its file list (relative path, size, class of every
image).  Entries are ``<dir>/<key>.pt`` files
written atomically (temp file + ``os.replace``) and read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony_bench.atomic import atomic_write
from harmony_bench.results.canonical import config_hash
from harmony_bench.runtime import autocast
from harmony_bench.tasks.imagenet.common import batches, make_loader

if TYPE_CHECKING:
    import torch

    from harmony_bench.data.imagenet import ImageNetFolder
    from harmony_bench.models.backbone import Backbone
    from harmony_bench.runner import TaskContext

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
STORAGE_DTYPES = {"fp16": "float16", "fp32": "float32"}
_VARIANT = re.compile(r"^(?:cls(?P<blocks>[1-9]\d*)?(?P<plus>\+avgpool)?|(?P<avg>avgpool))$")


@dataclass(frozen=True)
class Variant:
    """A feature variant: class tokens of the last ``blocks`` blocks (0: none), maybe the mean patch token."""

    blocks: int
    avgpool: bool

    @classmethod
    def parse(cls, name: str) -> Variant:
        """``cls``, ``cls4``, ``avgpool``, ``cls+avgpool``, ``cls4+avgpool`` → Variant."""
        match = _VARIANT.match(name)
        if match is None:
            raise ValueError(
                f"unknown feature variant {name!r}; use cls, clsN (last N blocks), avgpool, cls+avgpool or "
                "clsN+avgpool"
            )
        if match.group("avg"):
            return cls(blocks=0, avgpool=True)
        return cls(blocks=int(match.group("blocks") or 1), avgpool=bool(match.group("plus")))

    @property
    def name(self) -> str:
        """The canonical name (``cls1`` is written ``cls``)."""
        cls_part = "" if not self.blocks else ("cls" if self.blocks == 1 else f"cls{self.blocks}")
        if not self.avgpool:
            return cls_part
        return f"{cls_part}+avgpool" if cls_part else "avgpool"


@dataclass(frozen=True)
class FeatureSpec:
    """What one extraction stores: class tokens of the last ``cls_blocks`` blocks, the mean patch token."""

    cls_blocks: int
    avgpool: bool
    amp: str = "none"
    storage: str = "fp16"  # fp16 | fp32: the dtype the extracted features are kept (and cached) in

    @classmethod
    def covering(cls, variants: list[Variant], amp: str = "none", storage: str = "fp16") -> FeatureSpec:
        """The smallest spec from which every variant can be built."""
        if not variants:
            raise ValueError("features.variants must name at least one variant")
        if storage not in STORAGE_DTYPES:
            raise ValueError(f"features.storage must be one of {sorted(STORAGE_DTYPES)}, got {storage!r}")
        return cls(max(v.blocks for v in variants), any(v.avgpool for v in variants), amp, storage)

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype of :attr:`storage`."""
        import torch

        return getattr(torch, STORAGE_DTYPES[self.storage])


# --------------------------------------------------------------------------- extraction


def batch_features(backbone: Backbone, x: torch.Tensor, spec: FeatureSpec) -> dict[str, torch.Tensor]:
    """Per-image features for one batch: ``cls`` ``(B, n, D)`` and/or ``avgpool`` ``(B, D)``."""
    import torch

    if not backbone.is_vit:
        if spec.cls_blocks:
            raise ValueError(f"{backbone.card.name} has no class token; use the avgpool feature variant")
        return {"avgpool": backbone.pooled(x, "avgpool")}
    outs = backbone.model.forward_intermediates(
        x,
        indices=max(spec.cls_blocks, 1),
        norm=True,
        return_prefix_tokens=True,
        output_fmt="NLC",
        intermediates_only=True,
    )
    result = {}
    if spec.cls_blocks:
        result["cls"] = torch.stack([prefix[:, 0] for _, prefix in outs], dim=1)
    if spec.avgpool:
        result["avgpool"] = outs[-1][0].mean(dim=1)
    return result


def extract(
    backbone: Backbone,
    dataset: ImageNetFolder,
    spec: FeatureSpec,
    device: torch.device,
    batch_size: int,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Run the backbone once over ``dataset`` (in order); corrupt images are skipped and listed.

    Returns:
        ``{"cls"?: (N, n, D), "avgpool"?: (N, D), "labels": int64 (N,), "count": N,
        "corrupt": [[path, error], ...]}`` for the N readable images, features in ``spec.storage``.
    """
    import torch

    backbone.to(device).eval()
    capacity = len(dataset)
    payload: dict[str, Any] = {"labels": torch.zeros(capacity, dtype=torch.long)}
    filled = 0
    with torch.no_grad():
        for images, targets in batches(make_loader(dataset, batch_size, num_workers, device)):
            with autocast(device, spec.amp):
                out = batch_features(backbone, images.to(device, non_blocking=True), spec)
            for name, tensor in out.items():
                if name not in payload:  # preallocated once the feature size is known: no 2x peak at the end
                    payload[name] = torch.zeros((capacity, *tensor.shape[1:]), dtype=spec.dtype)
                payload[name][filled : filled + len(tensor)] = tensor.to("cpu", spec.dtype)
            payload["labels"][filled : filled + len(targets)] = targets
            filled += len(targets)
    for name, tensor in list(payload.items()):
        if filled < capacity:  # corrupt images were skipped; clone so the saved file holds only the rows
            payload[name] = tensor[:filled].clone()
    payload["count"] = filled
    payload["corrupt"] = [list(event) for event in dataset.corrupt]
    return payload


def variant_features(store: dict[str, Any], variant: Variant, index: Any = None) -> torch.Tensor:
    """Float32 features ``(N, D_v)`` of ``variant`` from a stored extraction (optionally rows ``index``)."""
    import torch

    parts = []
    if variant.blocks:
        cls = store["cls"] if index is None else store["cls"][index]
        parts.append(cls[:, -variant.blocks :].flatten(1))
    if variant.avgpool:
        parts.append(store["avgpool"] if index is None else store["avgpool"][index])
    return torch.cat(parts, dim=-1).float()


# --------------------------------------------------------------------------- cache


def weights_identity(backbone: Backbone) -> str:
    """The checkpoint's sha256, or ``random-init:<card>:seed<N>`` for random-init cards."""
    from harmony_bench.models.build import INIT_SEED

    if backbone.report.random_init or not backbone.report.sha256:
        return f"random-init:{backbone.card.name}:seed{INIT_SEED}"
    return str(backbone.report.sha256)


def cache_key(
    backbone: Backbone,
    spec: FeatureSpec,
    transform: Any,
    dataset_id: dict[str, Any],
    files_hash: str,
    split: str,
) -> str:
    """sha256 naming one cache entry (see the module docstring for what goes in)."""
    import timm

    features = asdict(spec)
    if spec.storage == "fp16":  # the format before fp32 storage existed: its entries keep their keys
        features.pop("storage")
    parts = {
        "format": CACHE_FORMAT,
        "weights": weights_identity(backbone),
        "card": backbone.card.name,
        "architecture": backbone.card.architecture,
        "input_size": backbone.input_size,
        "features": features,
        "transform": repr(transform),
        "timm": timm.__version__,
        "dataset": {k: v for k, v in dataset_id.items() if k != "root"},
        "split": split,
        "files": files_hash,
    }
    return config_hash(parts)


class FeatureCache:
    """A directory of ``<key>.pt`` feature files; ``directory=None`` disables caching."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = Path(directory).expanduser() if directory else None

    def path(self, key: str) -> Path | None:
        """Where the entry for ``key`` lives (None when disabled)."""
        return self.directory / f"{key}.pt" if self.directory else None

    def load(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or None on a miss (a damaged entry is logged and treated as a miss)."""
        import torch

        path = self.path(key)
        if path is None or not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: re-extract rather than fail the run
            log.warning("feature cache entry %s is unreadable (%s); extracting again", path, exc)
            return None
        return payload if isinstance(payload, dict) and payload.get("key") == key else None

    def save(self, key: str, payload: dict[str, Any]) -> Path | None:
        """Write the entry atomically (:func:`harmony_bench.atomic.atomic_write`)."""
        import torch

        path = self.path(key)
        if path is None:
            return None
        return atomic_write(path, lambda handle: torch.save({**payload, "key": key}, handle))


def cache_for(context: TaskContext) -> FeatureCache:
    """The run's cache: ``cache.dir``, or ``$HARMONY_BENCH_CACHE/features``, or ``<output>/feature-cache``."""
    settings = context.config.get("cache") or {}
    if not settings.get("enabled", True):
        return FeatureCache(None)
    if settings.get("dir"):
        return FeatureCache(Path(settings["dir"]))
    if os.environ.get("HARMONY_BENCH_CACHE"):
        return FeatureCache(Path(os.environ["HARMONY_BENCH_CACHE"]) / "features")
    from harmony_bench.paths import default_results_dir

    return FeatureCache((context.options.output or default_results_dir()) / "feature-cache")


def cached_features(
    cache: FeatureCache,
    backbone: Backbone,
    dataset: ImageNetFolder,
    spec: FeatureSpec,
    transform: Any,
    split: str,
    device: torch.device,
    batch_size: int,
    num_workers: int = 0,
) -> tuple[dict[str, Any], str, bool]:
    """Features of ``dataset`` from the cache, or extracted and stored.

    Returns:
        ``(payload, key, hit)``; the payload is what :func:`extract` returns.
    """
    from harmony_bench.data.imagenet import dataset_identity, file_list_hash

    root = Path(dataset.root).parent
    key = cache_key(backbone, spec, transform, dataset_identity(root), file_list_hash(dataset), split)
    payload = cache.load(key)
    if payload is not None:
        log.info("feature cache hit: %s features from %s", split, cache.path(key))
        return payload, key, True
    log.info("feature cache miss: extracting %s features (%d images, key %s)", split, len(dataset), key[:16])
    payload = extract(backbone, dataset, spec, device, batch_size, num_workers)
    saved = cache.save(key, payload)
    if saved:
        log.info("feature cache: stored %s", saved)
    return payload, key, False


def split_features(
    context: TaskContext, root: Path, variants: list[Variant], device: torch.device
) -> tuple[dict[str, dict[str, Any]], dict[str, str], dict[str, bool], int]:
    """Train and val features for the protocol (cached), as the linear probe and k-NN need them.

    Reads the protocol's ``transform``, ``features.amp``, ``extract.batch_size`` / ``num_workers`` and
    ``cache`` settings.

    Returns:
        ``(payloads by split, cache keys by split, cache hits by split, number of classes)``.
    """
    from harmony_bench.tasks.imagenet.common import load_for_protocol, open_split

    config = context.config
    spec = FeatureSpec.covering(variants, (config.get("features") or {}).get("amp", "none"))
    backbone, transform = load_for_protocol(context, config.get("transform"))
    extract_cfg = config.get("extract") or {}
    cache = cache_for(context)
    payloads, keys, hits = {}, {}, {}
    classes: dict[str, list[str]] = {}
    for split in ("train", "val"):
        dataset = open_split(context, root, split, transform)
        classes[split] = list(dataset.classes)
        payloads[split], keys[split], hits[split] = cached_features(
            cache,
            backbone,
            dataset,
            spec,
            transform,
            split,
            device,
            int(extract_cfg.get("batch_size", 256)),
            int(extract_cfg.get("num_workers", 0)),
        )
    for split, payload in payloads.items():
        if payload["count"] == 0:
            raise ValueError(f"no readable image in {root / split} ({len(payload['corrupt'])} corrupt)")
    if classes["train"] != classes["val"]:
        raise ValueError(
            f"train/ and val/ of {root} have different class folders "
            f"({len(classes['train'])} vs {len(classes['val'])}); they must hold the same wnids"
        )
    return payloads, keys, hits, len(classes["train"])
