"""The map-style pretraining dataset: image + caption -> crops, masks, caption tokens.

Unreadable images (missing file, truncated or corrupt bytes) are logged,
counted in the batch (``skipped``) and replaced by the next readable sample, so
a bad file never stops a multi-day run.  Each sample's randomness (crops,
masks) is seeded from (seed, epoch, index): see :class:`EpochSampler`.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
import torch
from PIL import Image

from harmony_bench.pretrain.data import masking
from harmony_bench.pretrain.data.augment import MultiCrop
from harmony_bench.pretrain.data.sources import Sample

log = logging.getLogger(__name__)

EPOCH_STRIDE = 1 << 32  # sampler items encode (epoch, index) as epoch * EPOCH_STRIDE + index


class PretrainDataset(torch.utils.data.Dataset):
    """Samples for every objective at once; objectives use what they need."""

    def __init__(
        self, samples: list[Sample], cfg: dict[str, Any], patch_size: int, tokenizer: Any | None
    ) -> None:
        self.samples = samples
        self.cfg = cfg
        self.seed = int(cfg["seed"])
        self.transform = MultiCrop(cfg["crops"])
        grid = int(cfg["crops"]["global_size"]) // patch_size
        self.grid = (grid, grid)
        self.tokenizer = tokenizer
        self.max_bad = int(cfg["data"]["max_bad_samples"])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int) -> dict[str, Any]:
        epoch, index = divmod(int(item), EPOCH_STRIDE)
        skipped = 0
        for attempt in range(self.max_bad + 1):
            ref, caption = self.samples[(index + attempt) % len(self.samples)]
            try:
                image = _decode(ref.read())
                break
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                skipped += 1
                log.warning("data: skipping unreadable image %s (%s)", ref.path, exc)
        else:
            raise RuntimeError(
                f"{self.max_bad + 1} unreadable images in a row from index {index}; check the data"
            )
        out = self._sample(image, caption, epoch, index)
        out["skipped"] = skipped
        return out

    def _sample(self, image: Image.Image, caption: str, epoch: int, index: int) -> dict[str, Any]:
        seed = [self.seed, epoch, index]
        rng = np.random.default_rng(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
            crops = self.transform(image)
        ibot = self.cfg["objectives"]["ibot"]
        ratios = [
            masking.pred_ratio(rng, _as_list(ibot["pred_ratio"]), _as_list(ibot["pred_ratio_var"]))
            for _ in range(2)
        ]
        if epoch < int(ibot["pred_start_epoch"]):
            ratios = [0.0, 0.0]
        out: dict[str, Any] = {
            "crops": crops,
            "block_masks": torch.from_numpy(
                np.stack([masking.block_mask(rng, self.grid, r, tuple(ibot["pred_aspect"])) for r in ratios])
            ),
            "perms": torch.from_numpy(
                np.stack([masking.random_permutation(rng, self.grid[0] * self.grid[1]) for _ in range(2)])
            ),
        }
        if self.tokenizer is not None:
            out.update(self._text(caption, rng))
        return out

    def _text(self, caption: str, rng: np.random.Generator) -> dict[str, Any]:
        tokens = self.tokenizer([caption])[0]
        sot, eot = self.tokenizer.sot_token_id, self.tokenizer.eot_token_id
        mask = masking.text_mask(rng, tokens.numpy(), float(self.cfg["data"]["text_mask_ratio"]), (sot, eot))
        masked = tokens.clone()
        masked[torch.from_numpy(mask)] = mask_token_id(self.tokenizer)
        return {"text": tokens, "text_masked": masked, "text_mask": torch.from_numpy(mask)}


def mask_token_id(tokenizer: Any) -> int:
    """[MASK] is the id after the BPE vocabulary (49408 for CLIP's), as in Harmony."""
    return int(tokenizer.vocab_size)


def _as_list(value: Any) -> list[float]:
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()  # decode now, so a truncated file fails here and not inside the transform
    return image.convert("RGB")


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples (crops stay a list: global and local crops differ in size); cut caption padding."""
    out: dict[str, Any] = {
        "crops": [torch.stack([it["crops"][i] for it in items]) for i in range(len(items[0]["crops"]))],
        "skipped": sum(int(it["skipped"]) for it in items),
    }
    for key in items[0]:
        if key not in out:
            out[key] = torch.stack([it[key] for it in items])
    return trim_text_padding(out)


TEXT_KEYS = ("text", "text_masked", "text_mask")


def trim_text_padding(batch: dict[str, Any]) -> dict[str, Any]:
    """Cut the caption tensors after the batch's longest caption (its EOT); the rest is padding (id 0).

    CLIP's tokenizer pads every caption to 77 ids; a CC3M caption has ~15.  The text towers are causal (no
    position attends to a later one), so every output a loss reads (EOT pooling, masked positions) is the
    same on the cut batch, and the student and teacher text towers do a fraction of the work.
    """
    if "text" not in batch:
        return batch
    used = (batch["text"] != 0).any(dim=0).nonzero()
    length = int(used.max()) + 1 if len(used) else 1
    return {**batch, **{key: batch[key][:, :length] for key in TEXT_KEYS if key in batch}}


class EpochSampler(torch.utils.data.Sampler[int]):
    """DistributedSampler order (seeded by seed + epoch), encoding the epoch into each item, resumable.

    ``start`` skips the first ``start`` items of this rank's epoch, so a run resumed mid-epoch sees
    exactly the samples it would have seen.
    """

    def __init__(self, size: int, rank: int, world: int, seed: int, batch_size: int) -> None:
        self.size, self.rank, self.world, self.seed = size, rank, world, seed
        self.per_rank = (size // (world * batch_size)) * batch_size  # full batches only (drop_last)
        if self.per_rank == 0:
            raise ValueError(
                f"{size} samples are fewer than one global batch ({world} x {batch_size}); lower --batch-size"
            )
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """The epoch to draw, and how many of this rank's items were already consumed."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.per_rank - self.start

    def __iter__(self):  # type: ignore[no-untyped-def]
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=g)[: self.per_rank * self.world]
        mine = order[self.rank :: self.world][self.start :]
        return iter((self.epoch * EPOCH_STRIDE + mine).tolist())
