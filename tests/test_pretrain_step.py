"""One backward over the weighted sum equals per-objective backwards; EMA math; the step schedules."""

import copy
import math

import numpy as np
import pytest
import torch

from harmony_bench.pretrain import optim, schedules
from harmony_bench.pretrain.config import load_config
from harmony_bench.pretrain.original_loop import (
    backward_per_path,
    build_default_adamw,
    objective_paths,
    original_step,
)
from harmony_bench.pretrain.trainer import train_step

from ._pretrain_util import fixed_batch, sched, tiny_cfg, tiny_model, without_key_bias


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", ["harmony", "slip", "maskclip"])
def test_single_backward_equals_sum_of_per_objective_gradients(method):
    cfg = tiny_cfg(method)
    batch = fixed_batch(cfg, batch=4, seed=5)
    step = sched(epoch=1, hard_weight=0.5)
    model = tiny_model(cfg)
    buffers = copy.deepcopy(dict(model.named_buffers()))

    total, _ = model(batch, step)
    total.backward()
    fused = grads(model)

    model.zero_grad(set_to_none=True)
    accumulated: dict[str, torch.Tensor] = {}
    for objective in model.objectives.values():
        with torch.no_grad():  # every objective sees the same centres / BN state as in the fused pass
            for key, buf in model.named_buffers():
                buf.copy_(buffers[key])
        ctx = model.context(batch, step)
        loss, _ = objective(ctx)
        (objective.weight * loss).backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                accumulated[n] = accumulated.get(n, 0) + p.grad
        model.zero_grad(set_to_none=True)

    assert set(fused) == set(accumulated)
    assert len(fused) > 10
    for n in fused:  # float32 sums in a different order: equal to ~1e-6 of each gradient's scale
        scale = float(fused[n].abs().max())
        assert float((fused[n] - accumulated[n]).abs().max()) <= 1e-5 * scale + 1e-9, n
    # every objective contributes: the shared ViT's gradient is not any single objective's gradient
    assert fused["student.vit.blocks.0.attn.qkv.weight"].abs().sum() > 0


def test_train_step_equals_original_per_path_loop():
    """The fused step (one backward, fused AdamW) lands on the same weights as the Harmony repo's loop."""
    cfg = tiny_cfg("harmony")
    batches = [fixed_batch(cfg, batch=4, seed=s) for s in (6, 7)]
    ours = tiny_model(cfg)
    theirs = copy.deepcopy(ours)
    device = torch.device("cpu")
    opt_ours = optim.build_optimizer(ours, cfg, device)
    opt_theirs = build_default_adamw(theirs, cfg)
    assert opt_ours.defaults["fused"]
    assert not opt_theirs.defaults["fused"] and not opt_theirs.defaults["foreach"]
    for i, batch in enumerate(batches):
        step = optim.step_schedule(cfg, i + 30, 24, 16)  # epoch 1: past iBOT's frozen last layer
        terms = train_step(ours, ours, opt_ours, batch, step, cfg, device)
        total = original_step(theirs, opt_theirs, batch, step, cfg)
        # the loss after an update also checks the updated weights (key biases do not change the function)
        assert float(terms["loss"]) == pytest.approx(float(total), rel=1e-5)
        for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
            assert (a.grad is None) == (b.grad is None), name
            if a.grad is not None:  # the clipped gradients the optimizer used
                scale = float(a.grad.abs().max())
                assert float((a.grad - b.grad).abs().max()) <= 1e-5 * scale + 1e-9, name
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        a, b = without_key_bias(name, a), without_key_bias(name, b)
        assert torch.allclose(a.float(), b.float(), atol=1e-5, rtol=1e-4), name
    assert objective_paths(list(ours.objectives)) == [["ibot"], ["clip"], ["mlm", "text_dist"], ["mae"]]


def test_train_step_runs_one_backward(monkeypatch):
    cfg = tiny_cfg("harmony")
    model = tiny_model(cfg)
    calls = []
    original = torch.Tensor.backward

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "backward", counting)
    opt = optim.build_optimizer(model, cfg, torch.device("cpu"))
    train_step(
        model, model, opt, fixed_batch(cfg), optim.step_schedule(cfg, 0, 24, 16), cfg, torch.device("cpu")
    )
    assert len(calls) == 1


def test_fused_step_runs_the_teacher_once_and_the_original_twice():
    """The EMA teacher's global-crop forward is shared by iBOT and the soft CLIP targets in our step only."""
    cfg = tiny_cfg("harmony")
    batch = fixed_batch(cfg, batch=4)
    model = tiny_model(cfg)
    seen: list[int] = []
    model.teacher.vit.patch_embed.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    step = sched(epoch=1, hard_weight=0.5)
    model(batch, step)
    assert seen == [8]  # both global crops in one batch
    seen.clear()
    backward_per_path(model, batch, step)
    assert seen == [8, 4]  # iBOT path: both crops; CLIP path: crop 0 again (the repo's structure)


def test_fused_step_batches_the_student_forwards_the_original_runs_per_path():
    """Our step batches the student forwards; the repo's loop runs them per path.

    Ours: the global-crop views (CLIP's plain crop 0, iBOT's masked crops) in ONE ViT call, both caption
    versions in ONE text call, and the iBOT head only on [CLS] and masked rows.
    """
    cfg = tiny_cfg("harmony")
    batch = fixed_batch(cfg, batch=4)
    model = tiny_model(cfg)
    images: list[tuple[int, int]] = []  # (batch, tokens) per student ViT call
    texts: list[int] = []
    head_rows: list[int] = []
    model.student.vit.patch_embed.register_forward_hook(lambda m, i, o: images.append(tuple(o.shape[:2])))
    model.student.text.token_embedding.register_forward_hook(lambda m, i, o: texts.append(o.shape[0]))
    model.objectives["ibot"].head.register_forward_hook(lambda m, i, o: head_rows.append(i[0].shape[0]))
    step = sched(epoch=1, hard_weight=0.5)
    model(batch, step)
    n_local = int(cfg["crops"]["local_number"])
    masked = int(batch["block_masks"].sum())
    assert 0 < masked < batch["block_masks"].numel()
    # ViT calls: [plain 0 + masked 0 + masked 1], the local crops, MAE's visible patches of both globals
    assert [b for b, _ in images] == [12, 4 * n_local, 8]
    assert texts == [8]  # full and masked captions together
    assert head_rows == [4 * (2 + n_local) + masked]  # every crop's [CLS], then the masked patches only
    images.clear(), texts.clear(), head_rows.clear()
    backward_per_path(model, batch, step)
    assert [b for b, _ in images] == [8, 4 * n_local, 4, 8]  # iBOT globals, locals; CLIP crop 0; MAE
    assert texts == [4, 4]  # the CLIP path, then the text path


# ---- EMA ---------------------------------------------------------------------------------------------------


def test_ema_update_math():
    cfg = tiny_cfg("harmony")
    model = tiny_model(cfg)
    pairs = model.ema_pairs()
    assert len(pairs) == 3  # towers, iBOT head, text-distillation head
    before = [([p.clone() for p in s.parameters()], [p.clone() for p in t.parameters()]) for s, t in pairs]
    m = 0.9963
    model.ema_update(m)
    for (s_params, t_params), (_, teacher) in zip(before, pairs, strict=True):
        for s, t_old, t_new in zip(s_params, t_params, teacher.parameters(), strict=True):
            assert torch.allclose(t_new, m * t_old + (1 - m) * s, atol=1e-7)
            assert not t_new.requires_grad
    model.ema_update(1.0)  # momentum 1 (the end of the schedule) freezes the teacher
    again = [p.clone() for p in model.teacher.parameters()]
    model.ema_update(1.0)
    assert all(torch.equal(a, b) for a, b in zip(again, model.teacher.parameters(), strict=True))


def dino_cosine(base, final, epochs, niter, warmup_epochs=0, start_warmup=0.0):
    """DINO's ``utils.cosine_scheduler`` as described: linspace warm-up, then a cosine over the rest."""
    warmup = np.linspace(start_warmup, base, warmup_epochs * niter) if warmup_epochs else np.array([])
    iters = np.arange(epochs * niter - warmup_epochs * niter)
    cos = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate([warmup, cos])


def test_momentum_schedule_cosine_0996_to_1():
    cfg = load_config("harmony", None, ["epochs=5"])  # the defaults (the smoke preset uses a faster EMA)
    per_epoch = 7
    expected = dino_cosine(0.996, 1.0, 5, per_epoch)
    got = [optim.step_schedule(cfg, i, per_epoch, 16)["momentum"] for i in range(5 * per_epoch)]
    assert np.allclose(got, expected, atol=1e-12)
    assert got[0] == pytest.approx(0.996) and got[-1] < 1.0 and got[-1] > 0.99999
    assert all(b >= a for a, b in zip(got[:-1], got[1:], strict=True))


def test_lr_weight_decay_and_hard_weight_schedules():
    cfg = tiny_cfg("harmony", ["epochs=6", "warmup_epochs=2", "objectives.clip.hard_weight_epochs=3"])
    per_epoch, global_batch = 5, 32
    peak = float(cfg["optim"]["lr"]) * global_batch / 256
    lr = dino_cosine(peak, 1e-6, 6, per_epoch, warmup_epochs=2)
    wd = dino_cosine(0.04, 0.4, 6, per_epoch)
    hard = np.concatenate([dino_cosine(1.0, 0.2, 3, per_epoch), np.full(3 * per_epoch, 0.2)])
    got = [optim.step_schedule(cfg, i, per_epoch, global_batch) for i in range(6 * per_epoch)]
    assert np.allclose([g["lr"] for g in got], lr, atol=1e-12)
    assert np.allclose([g["weight_decay"] for g in got], wd, atol=1e-12)
    assert np.allclose([g["hard_weight"] for g in got], hard, atol=1e-12)
    assert [g["epoch"] for g in got][::per_epoch] == [0, 1, 2, 3, 4, 5]
    assert schedules.linear(5, 10, 1.0, 0.2) == pytest.approx(0.6)


def test_weight_decay_only_on_matrices_and_gradient_clipping():
    cfg = tiny_cfg("harmony")
    model = tiny_model(cfg)
    groups = optim.param_groups(model)
    # DINO/Harmony get_params_groups: no decay on biases and 1-d tensors; everything else decays, including
    # 3-d tokens (cls, pos, [MASK]) and the 0-d CLIP logit scale, as in the Harmony repo
    named = {id(p): n for n, p in model.named_parameters()}
    decayed = {named[id(p)] for p in groups[0]["params"]}
    expected = {
        n for n, p in model.named_parameters() if p.requires_grad and not n.endswith(".bias") and p.ndim != 1
    }
    assert decayed == expected and "objectives.clip.logit_scale" in decayed
    assert all(p.ndim == 1 for p in groups[1]["params"]) and groups[1]["weight_decay"] == 0.0
    assert not any(p is model.student.vit.head.bias for g in groups for p in g["params"])  # frozen zero bias

    def fill_grads():
        for p in model.parameters():
            p.grad = torch.full_like(p, 1.0) if p.requires_grad else None
        # norms in float64: torch's float32 CPU norm of a 1.6M-element tensor is off by ~1e-3
        return {n: p.grad.double().norm() for n, p in model.named_parameters() if p.grad is not None}

    # the Harmony repo clips its image ``student`` only: the ViT (+ [MASK]) and the iBOT head
    image_student = ("student.vit.", "student.mask_token", "objectives.ibot.head.")
    norms = fill_grads()
    total = optim.clip_gradients(model.clipped_parameters("image-student"), 3.0, "per-param")
    clipped = {n for n in norms if n.startswith(image_student)}
    assert "student.vit.blocks.0.attn.qkv.weight" in clipped and "student.mask_token" in clipped
    assert "objectives.ibot.head.last_layer.weight" in clipped
    assert not any(n.startswith(("student.text.", "objectives.mae.", "objectives.mlm.")) for n in clipped)
    expected = math.sqrt(sum(float(norms[n]) ** 2 for n in clipped))
    assert float(total) == pytest.approx(expected, rel=1e-5)
    for n, p in model.named_parameters():
        if p.grad is not None:
            bound = min(float(norms[n]), 3.0) if n in clipped else float(norms[n])
            assert float(p.grad.double().norm()) == pytest.approx(bound, rel=1e-4), n
    assert any(float(norms[n]) > 3.0 for n in norms if n not in clipped)  # some unclipped one is over 3

    norms = fill_grads()
    total = optim.clip_gradients(model.clipped_parameters("all"), 3.0, "per-param")
    assert float(total) == pytest.approx(math.sqrt(sum(float(v) ** 2 for v in norms.values())), rel=1e-5)
    for n, p in model.named_parameters():
        if p.grad is not None:
            assert float(p.grad.double().norm()) == pytest.approx(min(float(norms[n]), 3.0), rel=1e-4), n
    with pytest.raises(ValueError, match="clip_scope"):
        model.clipped_parameters("text")


def test_grad_checkpointing_gives_the_plain_gradients_with_less_memory_kept():
    """Recomputed blocks replay drop path's RNG: the same gradients as storing activations."""
    cfg = tiny_cfg("harmony", ["model.drop_path_rate=0.2"])
    cfg_ckpt = tiny_cfg("harmony", ["model.drop_path_rate=0.2", "model.grad_checkpointing=true"])
    batch = fixed_batch(cfg, batch=4, seed=8)
    step = sched(epoch=1, hard_weight=0.5)
    results = []
    for c in (cfg, cfg_ckpt):
        model = tiny_model(c)
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        saved: list[int] = []  # activations autograd keeps for the backward (not the weights it keeps)

        def pack(t, weights=weights, saved=saved):
            if t.untyped_storage().data_ptr() not in weights:
                saved.append(t.numel())
            return t

        torch.manual_seed(3)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            total, _ = model(batch, step)
        total.backward()
        results.append((grads(model), sum(saved), float(total.detach())))
    (plain, kept_plain, loss_plain), (ckpt, kept_ckpt, loss_ckpt) = results
    assert loss_ckpt == pytest.approx(loss_plain, rel=1e-6)
    assert set(plain) == set(ckpt)
    for n in plain:
        scale = float(plain[n].abs().max())
        assert float((plain[n] - ckpt[n]).abs().max()) <= 1e-5 * scale + 1e-9, n
    # measured 0.63: the heads, decoders and losses outside the towers' blocks keep their activations
    assert kept_ckpt < 0.75 * kept_plain, (kept_ckpt, kept_plain)
    assert tiny_model(cfg_ckpt).student.vit.grad_checkpointing


@pytest.mark.parametrize("causal", [True, False])
def test_captions_cut_after_the_longest_give_the_same_losses_and_gradients(causal):
    """The loader cuts the 0-padding after the batch's longest caption: exact for the causal towers, and a
    bidirectional tower (no causal mask) gets its padding back."""
    from harmony_bench.pretrain.data.dataset import trim_text_padding

    cfg = tiny_cfg("harmony")
    batch = fixed_batch(cfg, batch=4, seed=9)
    cut = trim_text_padding(batch)
    longest = int((batch["text"] != 0).sum(1).max())
    assert cut["text"].shape[1] == longest < batch["text"].shape[1]
    assert cut["text_mask"].shape[1] == cut["text_masked"].shape[1] == longest
    assert torch.equal(cut["text"], batch["text"][:, :longest]) and bool(
        (batch["text"][:, longest:] == 0).all()
    )
    step = sched(epoch=1, hard_weight=0.5)
    results = []
    for b in (batch, cut):
        model = tiny_model(cfg)
        if not causal:
            model.student.text.attn_mask = model.teacher.text.attn_mask = None
        total, terms = model(b, step)
        total.backward()
        results.append((grads(model), {k: float(v) for k, v in terms.items()}))
    (full_grads, full_terms), (cut_grads, cut_terms) = results
    for k in full_terms:
        assert cut_terms[k] == pytest.approx(full_terms[k], rel=1e-5, abs=1e-6), k
    for n in full_grads:
        scale = float(full_grads[n].abs().max())
        assert float((full_grads[n] - cut_grads[n]).abs().max()) <= 1e-5 * scale + 1e-9, n


@pytest.mark.parametrize("method", ["harmony", "slip", "maskclip"])
def test_a_bf16_autocast_step_gives_the_fp32_losses(method, monkeypatch):
    """CUDA runs the step under bf16 autocast; CPU autocast takes the same dtype paths (casts, masked rows,
    heads, the fused optimizer on bf16-produced gradients), so dtype bugs show up here without a GPU."""
    from harmony_bench.pretrain import trainer

    cfg = tiny_cfg(method)
    batch = fixed_batch(cfg, batch=4, seed=10)
    step = optim.step_schedule(cfg, 30, 24, 16)
    cpu = torch.device("cpu")
    results = []
    for dtype in (None, torch.bfloat16):
        model = tiny_model(cfg)
        opt = optim.build_optimizer(model, cfg, cpu)
        if dtype is not None:
            monkeypatch.setattr(
                trainer, "autocast", lambda device, *_, **__: torch.autocast("cpu", dtype=torch.bfloat16)
            )
        terms = train_step(model, model, opt, batch, step, cfg, cpu)
        assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
        results.append({k: float(v) for k, v in terms.items()})
    fp32, bf16 = results
    assert set(fp32) == set(bf16)
    for key in fp32:
        if key.startswith("loss"):  # bf16 keeps ~3 significant digits
            assert bf16[key] == pytest.approx(fp32[key], rel=0.03, abs=0.02), key
