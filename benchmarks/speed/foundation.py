"""Speed of the foundation pieces, as ratios against a reference measured in the same process.

- synthetic data: seconds per image of each kind vs. the bare cost of encoding a
  same-size random JPEG with PIL (the floor any writer pays);
- result records: ``write_record`` (validate + temp file + fsync + no-clobber link)
  vs. a plain ``json.dump`` of the same record to a file.

Run: ``python benchmarks/speed/foundation.py`` (or ``make bench``).
"""

from __future__ import annotations

import io
import json
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from harmony_bench.data.synth import synthesize
from harmony_bench.results import build_record, metric, write_record

KINDS = {"imagenet": (200, 64), "ade20k": (40, 128), "coco": (40, 128), "captions": (100, 64)}


def best_of(repeats: int, fn) -> float:
    """Fastest of ``repeats`` wall-clock runs (seconds): the least disturbed by other load."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def jpeg_reference(size: int, count: int) -> float:
    """Seconds per image to encode random pixels as JPEG."""
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(count)]

    def encode() -> None:
        for array in pixels:
            Image.fromarray(array).save(io.BytesIO(), format="JPEG", quality=92)

    return best_of(3, encode) / count


def synth_ratios(work: Path) -> None:
    """Per kind: seconds per training image and the ratio to the JPEG floor."""
    counter = iter(range(1000))  # each run needs a fresh output dir: synthesize never overwrites
    for kind, (n, size) in KINDS.items():
        seconds = best_of(
            3, lambda k=kind, n=n, s=size: synthesize(k, work / f"{k}-{next(counter)}", n=n, size=s)
        )
        per_image = seconds / n
        floor = jpeg_reference(size, 50)
        ms, ratio = per_image * 1e3, per_image / floor
        print(f"synth {kind:<9} {n:4d} imgs @{size}px: {ms:6.2f} ms/img = {ratio:5.1f}× JPEG encode")


def record_ratio(work: Path) -> None:
    """write_record vs json.dump of the same record."""
    now = datetime.now(timezone.utc)
    record = build_record(
        backbone={
            "name": "bench",
            "card": None,
            "checkpoint": {"source": None, "sha256": None, "random_init": True},
        },
        task={"name": "bench", "protocol_version": "1", "preset": None, "config": {"lr": 1e-3}},
        dataset={"name": "bench", "root": None, "synthetic": True, "manifest": None},
        seed=0,
        metrics={"top1": metric(1.0), "per_class": {f"c{i}": metric(float(i)) for i in range(150)}},
        start=now,
        end=now,
    )
    out = work / "records"
    count = 50
    copies = [[{**record, "record_id": uuid.uuid4().hex} for _ in range(count)] for _ in range(3)]
    batches = iter(copies)  # each write needs its own id: records are never overwritten
    ours = best_of(3, lambda: [write_record(r, out) for r in next(batches)]) / count

    def plain() -> None:
        for i in range(count):
            with open(work / f"plain-{i}.json", "w") as handle:
                json.dump(record, handle)

    reference = best_of(3, plain) / count
    ms, ratio = ours * 1e3, ours / reference
    print(f"write_record: {ms:.2f} ms/record = {ratio:.1f}× plain json.dump ({reference * 1e3:.2f} ms)")


def main() -> None:
    """Print every measurement."""
    with tempfile.TemporaryDirectory() as tmp:
        synth_ratios(Path(tmp))
        record_ratio(Path(tmp))


if __name__ == "__main__":
    main()
