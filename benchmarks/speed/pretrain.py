"""Pretraining step: our fused ``harmony`` step vs the Harmony repo's loop structure, same model and batch.

- **ours** (``trainer.train_step``): every objective (CLIP + soft targets, iBOT, MAE, MLM, text distillation)
  runs in one forward that shares and batches what several objectives need (the EMA teacher on the global
  crops; the student's global-crop views in one ViT call, full and masked captions in one text call), then
  ONE backward over the weighted sum, foreach per-parameter clipping, fused AdamW and the foreach EMA
  update; bf16 autocast on CUDA.
- **ours+ckpt**: the same with ``model.grad_checkpointing`` (the student towers' blocks recomputed in the
  backward): what to run when the single backward's memory does not fit.
- **original** (``original_loop.original_step``): the repo's structure re-stated on the same modules: its
  paths (iBOT, CLIP, MLM + text distillation, MAE) each do their own forward and ``loss.backward()``, then
  its clipping loop, torch's default (non-fused) AdamW and its EMA loop; same autocast.

All start from the same weights (deep copies) and see the same batch; they are timed alternately in one
process and the ratios of median step times are printed (> 1: ours is faster).  Peak memory is what a step
needs on top of what was allocated before it (weights, AdamW state): on CUDA ``max_memory_allocated``; on a
CPU glibc's in-use heap bytes (``mallinfo2``), polled every 0.5 ms by a thread during one extra, untimed
step per variant.  FLOPs are the matrix FLOPs of one more untimed step (``torch.utils.flop_counter``).

On CUDA it also reports bf16 images/s and MFU of our step for ViT-S/16 and ViT-B/16 at full size (2 x 224
+ 8 x 96 crops, 12-layer text tower, iBOT head 8192) at the README's per-GPU batch (``--gpu-batch``).
MFU = model FLOPs per step (``torch.utils.flop_counter``, forward + backward) / step time / the GPU's
peak dense bf16 FLOP/s (``--peak-tflops``, known for A100/H100/H200).

Run: ``python benchmarks/speed/pretrain.py [--config small --batch 16 --steps 5]`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any

import numpy as np
import torch

# Batches cut their captions after the longest one (``trim_text_padding``, as the loader does).  The last
# caption is as long as the longest in a typical CC3M batch of 64 (~30 tokens; the mean is ~15), so the text
# towers see about the sequence length they see on real data, not all 77 positions.
CAPTIONS = (
    "a photo of a red circle on a blue background.",
    "two shapes: a green square and a yellow triangle drawn over a grey texture.",
    "an image showing a purple star, white background.",
    "actor attends the premiere of the film at the festival, wearing a dark suit and standing next to a "
    "friend on the red carpet in front of photographers.",
)

# ``--set`` overrides on top of benchmarks/pretrain/defaults.yaml.
CONFIGS: dict[str, list[str]] = {
    # A CPU-sized ViT (ViT-Ti width, 4 blocks) at 64 px: every objective at reduced width.
    "small": [
        "model.arch=vit_tiny_patch16_224",
        "model.overrides={img_size: 64, depth: 4}",
        "model.drop_path_rate=0.1",
        "model.text={embed_dim: 256, context_length: 32, vocab_size: 49409, width: 128, heads: 4, layers: 4, "
        "quick_gelu: true, norm_eps: 1.0e-5}",
        "crops.global_size=64",
        "crops.local_size=32",
        "crops.local_number=4",
        "model.projection_dim=256",
        "objectives.ibot={out_dim: 1024, patch_out_dim: 1024, hidden_dim: 512, bottleneck_dim: 128}",
        "objectives.mae={decoder_dim: 128, decoder_depth: 2, decoder_heads: 4}",
        "objectives.mlm.decoder_layers=2",
        "objectives.text_dist={out_dim: 512, hidden_dim: 512, bottleneck_dim: 128}",
    ],
    "smoke": [],  # the smoke preset's tiny ViT and text tower (benchmarks/pretrain/presets/smoke.yaml)
    "vit_s16": ["model.arch=vit_small_patch16_224"],  # the paper's setting, full size
    "vit_b16": ["model.arch=vit_base_patch16_224"],
}
GPU_PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0}  # dense bf16, SXM


def build(config: str, extra: list[str]) -> dict[str, Any]:
    from harmony_bench.pretrain.config import load_config

    return load_config("harmony", "smoke" if config == "smoke" else None, CONFIGS[config] + extra)


def make_batch(cfg: dict[str, Any], batch: int, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """A batch in the data pipeline's format: random pixels, iBOT block masks, MAE permutations, captions."""
    from harmony_bench.models.build import build_tokenizer
    from harmony_bench.pretrain.data import masking
    from harmony_bench.pretrain.data.dataset import trim_text_padding
    from harmony_bench.pretrain.trainer import to_device

    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    c = cfg["crops"]
    gs, ls, n_local = int(c["global_size"]), int(c["local_size"]), int(c["local_number"])
    patch = int((cfg["model"].get("overrides") or {}).get("patch_size", 16))
    grid = gs // patch
    crops = [torch.randn(batch, 3, gs, gs, generator=g) for _ in range(2)]
    crops += [torch.randn(batch, 3, ls, ls, generator=g) for _ in range(n_local)]
    ibot = cfg["objectives"]["ibot"]
    blocks = np.stack(
        [
            [
                masking.block_mask(
                    rng, (grid, grid), masking.pred_ratio(rng, ibot["pred_ratio"], ibot["pred_ratio_var"])
                )
                for _ in range(2)
            ]
            for _ in range(batch)
        ]
    )
    perms = np.stack([[masking.random_permutation(rng, grid * grid) for _ in range(2)] for _ in range(batch)])
    tok = build_tokenizer(cfg["model"]["text"])
    ids = tok([CAPTIONS[i % len(CAPTIONS)] for i in range(batch)])
    mask = np.stack(
        [masking.text_mask(rng, t.numpy(), 0.2, (tok.sot_token_id, tok.eot_token_id)) for t in ids]
    )
    masked = ids.clone()
    masked[torch.from_numpy(mask)] = tok.vocab_size
    out = {
        "crops": crops,
        "block_masks": torch.from_numpy(blocks),
        "perms": torch.from_numpy(perms),
        "text": ids,
        "text_masked": masked,
        "text_mask": torch.from_numpy(mask),
    }
    return to_device(trim_text_padding(out), device)  # as the data loader's collate does


VARIANTS = ("ours", "ours+ckpt", "original")


def variants(cfg: dict[str, Any], device: torch.device, which: tuple[str, ...] = VARIANTS):
    """``{name: (step_fn, model)}``, all from one seeded model (every variant but the last gets a deep copy).

    ``ours+ckpt`` is our step with ``model.grad_checkpointing`` on: the memory-saving setting.
    """
    from harmony_bench.pretrain import optim
    from harmony_bench.pretrain.model import PretrainModel
    from harmony_bench.pretrain.original_loop import build_default_adamw, original_step
    from harmony_bench.pretrain.towers import set_grad_checkpointing
    from harmony_bench.pretrain.trainer import train_step

    torch.manual_seed(0)
    base = PretrainModel(cfg).to(device).train()
    out = {}
    for name in ("ours", "ours+ckpt"):
        if name not in which:
            continue
        model = base if which[-1] == name else copy.deepcopy(base)
        set_grad_checkpointing(model.student, name == "ours+ckpt")
        opt = optim.build_optimizer(model, cfg, device)
        out[name] = (lambda b, s, m=model, o=opt: train_step(m, m, o, b, s, cfg, device), model)
    if "original" in which:
        opt_o = build_default_adamw(base, cfg)
        out["original"] = (lambda b, s, m=base, o=opt_o: original_step(m, o, b, s, cfg, device), base)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, batch, sched, device) -> tuple[float, float]:
    """(seconds, peak bytes above what was allocated before the step; CUDA only, else 0)."""
    sync(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    fn(batch, sched)
    sync(device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) - before if device.type == "cuda" else 0
    return elapsed, float(peak)


def schedule(cfg: dict[str, Any], batch: int) -> dict[str, float]:
    from harmony_bench.pretrain import optim

    # epoch 1 of 25 at 100 steps/epoch: warm-up lr, iBOT's last layer no longer frozen, soft CLIP on
    return optim.step_schedule(cfg, 150, 100, batch)


def compare(cfg: dict[str, Any], batch: int, steps: int, device: torch.device) -> dict[str, Any]:
    """Alternate ours / original for ``steps`` timed steps (after one warm-up each)."""
    data = make_batch(cfg, batch, device)
    sched = schedule(cfg, batch)
    runs = variants(cfg, device)
    times: dict[str, list[float]] = {k: [] for k in runs}
    peaks: dict[str, float] = {k: 0.0 for k in runs}
    for i in range(steps + 1):
        for name, (fn, _) in runs.items():
            elapsed, peak = timed(fn, data, sched, device)
            if i:
                times[name].append(elapsed)
                peaks[name] = max(peaks[name], peak)
    med = {k: statistics.median(v) for k, v in times.items()}
    if device.type == "cpu":
        peaks = cpu_memory(cfg, runs, data)
    flops = {name: step_flops(fn, data, sched) for name, (fn, _) in runs.items()}
    return {"median_s": med, "peak_bytes": peaks, "flops": flops, "params": _params(runs["ours"][1])}


def step_flops(fn, batch: dict[str, Any], sched: dict[str, float]) -> float:
    """Matrix FLOPs of one (untimed) step, forward + backward (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn(batch, sched)
    return float(counter.get_total_flops())


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class HeapPeak:
    """Peak of glibc's in-use heap bytes (``mallinfo2``: small blocks + mmapped chunks) above the start.

    CPU tensors are malloc'ed, so this follows tensor memory; RSS would not (freed pages stay mapped).
    """

    def __init__(self) -> None:
        import ctypes

        class MallInfo2(ctypes.Structure):
            _fields_ = [
                (name, ctypes.c_size_t)
                for name in (
                    "arena",
                    "ordblks",
                    "smblks",
                    "hblks",
                    "hblkhd",
                    "usmblks",
                    "fsmblks",
                    "uordblks",
                )
                + ("fordblks", "keepcost")
            ]

        self.libc = ctypes.CDLL("libc.so.6")
        self.libc.mallinfo2.restype = MallInfo2

    def in_use(self) -> int:
        info = self.libc.mallinfo2()
        return int(info.uordblks + info.hblkhd)

    def measure(self, fn) -> float:
        """Run ``fn()`` and return its peak heap growth in bytes."""
        import threading

        base = peak = self.in_use()
        done = threading.Event()

        def poll() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, self.in_use())
                time.sleep(0.0005)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            fn()
        finally:
            done.set()
            thread.join()
        return float(max(peak, self.in_use()) - base)


def cpu_memory(cfg: dict[str, Any], runs: dict, batch: dict[str, Any]) -> dict[str, float]:
    """One untimed step per variant under :class:`HeapPeak` (glibc only; else nothing)."""
    try:
        heap = HeapPeak()
    except (OSError, AttributeError):
        return {}
    sched = schedule(cfg, batch["text"].shape[0])
    return {name: heap.measure(lambda fn=fn: fn(batch, sched)) for name, (fn, _) in runs.items()}


def throughput(
    arch_config: str, batch: int, steps: int, device: torch.device, peak_tflops: float | None
) -> str:
    """bf16 images/s and MFU of our step at full size on CUDA."""
    cfg = build(arch_config, [f"batch_size={batch}"])
    data = make_batch(cfg, batch, device)
    sched = schedule(cfg, batch)
    fn, model = variants(cfg, device, ("ours",))["ours"]
    fn(data, sched)  # warm-up
    flops = step_flops(fn, data, sched)
    times = [timed(fn, data, sched, device)[0] for _ in range(steps)]
    med = statistics.median(times)
    line = (
        f"{arch_config}: batch {batch}, {batch / med:.0f} img/s, {1 / med:.2f} steps/s, "
        f"{flops / 1e12:.2f} TFLOP/step, peak mem {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
    )
    if peak_tflops:
        line += f", MFU {flops / med / (peak_tflops * 1e12) * 100:.1f}% of {peak_tflops:.0f} TFLOP/s"
    del model
    torch.cuda.empty_cache()
    return line


def main() -> None:
    """Compare the two step structures and print steps/s, peak memory and the ratio (plus CUDA throughput)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", choices=sorted(CONFIGS), default=None, help="default: small on CPU, vit_s16 on CUDA"
    )
    parser.add_argument("--batch", type=int, default=None, help="images per step (default 16 CPU, 64 CUDA)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], help="extra config override KEY=VALUE")
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--gpu-batch", type=int, nargs=2, default=[64, 96], help="ViT-S/16 and ViT-B/16 batch"
    )
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--no-throughput", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    args.config = args.config or ("vit_s16" if device.type == "cuda" else "small")
    args.batch = args.batch or (64 if device.type == "cuda" else 16)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cfg = build(args.config, args.set)
    result = compare(cfg, args.batch, args.steps, device)
    memory = result["peak_bytes"]
    med = result["median_s"]
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
        f"{torch.get_num_threads()} threads), config {args.config}, batch {args.batch}, "
        f"{result['params'] / 1e6:.2f} M trainable params, {args.steps} timed steps each"
    )
    for name in VARIANTS:
        mem = f", peak memory +{memory[name] / 2**20:.0f} MiB" if name in memory else ""
        gflop = result["flops"][name] / 1e9
        rate = f"{med[name] * 1e3:8.0f} ms/step  {1 / med[name]:6.2f} steps/s"
        print(f"  {name:9s} {rate}, {gflop:.1f} GFLOP{mem}")
    for name in ("ours", "ours+ckpt"):
        line = f"  ratio original / {name}: {med['original'] / med[name]:.2f}x speed"
        line += f", {result['flops']['original'] / result['flops'][name]:.2f}x FLOPs"
        if memory:
            line += f", {memory['original'] / max(memory[name], 1):.2f}x memory"
        print(line)
    if device.type == "cuda" and not args.no_throughput:
        name = torch.cuda.get_device_name(device)
        peak = args.peak_tflops or next((v for k, v in GPU_PEAK_TFLOPS.items() if k in name), None)
        for arch, batch in zip(("vit_s16", "vit_b16"), args.gpu_batch, strict=True):
            print("  " + throughput(arch, batch, args.steps, device, peak))


if __name__ == "__main__":
    main()
