"""Small, learnable, deterministic datasets in the real benchmarks' on-disk layouts.

``synthesize("coco", out)`` writes COCO 2017 folders and instance json that
pycocotools and mmdet read as they read the real thing; likewise ImageFolder
for ImageNet, ``ADEChallengeData2016`` for ADE20K, image–caption pairs for
pretraining, and COCO / Flickr30k caption files for retrieval.  Tests and the
demo run on these, so the same code path serves real and synthetic data.  Each
root carries ``harmony_bench_synth.json`` so results on synthetic data are
never mistaken for benchmark numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harmony_bench.data.identity import MANIFEST_NAME
from harmony_bench.data.synth._writer import SynthSummary
from harmony_bench.registry import Registry

Writer = Callable[..., SynthSummary]

SYNTH_KINDS: Registry[Writer] = Registry("synthetic dataset kind")
SYNTH_KINDS.register("imagenet", "harmony_bench.data.synth.imagenet:write")
SYNTH_KINDS.register("ade20k", "harmony_bench.data.synth.ade20k:write")
SYNTH_KINDS.register("coco", "harmony_bench.data.synth.coco:write")
SYNTH_KINDS.register("captions", "harmony_bench.data.synth.captions:write")
SYNTH_KINDS.register("coco-captions", "harmony_bench.data.synth.retrieval:write_coco_captions")
SYNTH_KINDS.register("flickr30k", "harmony_bench.data.synth.retrieval:write_flickr30k")


def synthesize(
    kind: str, out: Path, *, n: int | None = None, size: int | None = None, seed: int = 0
) -> SynthSummary:
    """Write a synthetic ``kind`` dataset under ``out`` (must not exist or be empty) and describe it.

    Args:
        kind: one of ``SYNTH_KINDS`` (imagenet, ade20k, coco, captions, coco-captions, flickr30k).
        out: output directory.
        n: number of training images (default: small, per kind).
        size: image side in pixels (default: per kind).
        seed: the same seed gives byte-identical files.
    """
    writer = SYNTH_KINDS.get(kind)
    return writer(Path(out), n=n, size=size, seed=seed)


__all__ = ["MANIFEST_NAME", "SYNTH_KINDS", "SynthSummary", "synthesize"]
