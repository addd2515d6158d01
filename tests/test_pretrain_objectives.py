"""Each objective's loss equals a direct computation from its definition on a tiny model and fixed inputs.

The references use timm's / open_clip's own forwards or explicit conv + blocks for the towers, and
explicit soft-max / log-soft-max arithmetic for the losses, never the objective code under test.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harmony_bench.pretrain.objectives.mae import sincos_2d

from ._pretrain_util import (
    fixed_batch,
    ref_distill_head,
    ref_encoder,
    ref_global_tokens,
    ref_h,
    ref_patch_embed,
    ref_soft_ce,
    sched,
    tiny_cfg,
    tiny_model,
)

ATOL = 1e-5


def run(model, name, batch, step_sched):
    ctx = model.context(batch, step_sched)
    return model.objectives[name](ctx)


@pytest.fixture(scope="module")
def harmony():
    cfg = tiny_cfg("harmony")
    return cfg, fixed_batch(cfg, batch=4, seed=3)


# ---- CLIP ------------------------------------------------------------------------------------------------


def clip_embeddings(towers, batch):
    vit = towers.vit
    image = vit.forward_head(vit.forward_features(batch["crops"][0]))
    text = towers.text(batch["text"])  # open_clip: pooled at the EOT (argmax id) and projected
    return F.normalize(image, dim=-1), F.normalize(text, dim=-1)


@pytest.mark.parametrize("hard_weight", [1.0, 0.6])
def test_clip_hard_and_soft_loss(harmony, hard_weight):
    cfg, batch = harmony
    model = tiny_model(cfg)
    objective = model.objectives["clip"]
    with torch.no_grad():
        objective.logit_scale.fill_(math.log(20.0))
    loss, terms = run(model, "clip", batch, sched(hard_weight=hard_weight))

    image, text = clip_embeddings(model.student, batch)
    logits = 20.0 * image @ text.t()
    b = logits.shape[0]
    eye = torch.eye(b)
    hard = (ref_soft_ce(logits, eye) + ref_soft_ce(logits.t(), eye)) / 2
    with torch.no_grad():
        image_t, text_t = clip_embeddings(model.teacher, batch)
        target_i = torch.softmax(image_t @ text_t.t() / 0.1, dim=1)
        target_t = torch.softmax(text_t @ image_t.t() / 0.1, dim=1)
    soft = (ref_soft_ce(logits, target_i) + ref_soft_ce(logits.t(), target_t)) / 2
    expected = hard_weight * hard + (1 - hard_weight) * soft
    assert torch.allclose(terms["clip_hard"], hard, atol=ATOL)
    assert torch.allclose(loss, expected, atol=ATOL), (float(loss), float(expected))
    if hard_weight < 1:
        assert torch.allclose(terms["clip_soft"], soft, atol=ATOL)
        assert (
            abs(float(soft.detach()) - float(hard.detach())) > 1e-3
        )  # the soft targets are not the identity


def test_clip_soft_targets_off_for_plain_clip():
    cfg = tiny_cfg("clip")
    batch = fixed_batch(cfg, batch=4, seed=1)
    model = tiny_model(cfg)
    loss, terms = run(model, "clip", batch, sched(hard_weight=0.2))
    assert "clip_soft" not in terms
    assert torch.allclose(loss, terms["clip_hard"])


def test_clip_logit_scale_is_clamped_at_100(harmony):
    cfg, batch = harmony
    model = tiny_model(cfg)
    with torch.no_grad():
        model.objectives["clip"].logit_scale.fill_(6.0)  # exp(6) = 403 > 100
    _, terms = run(model, "clip", batch, sched())
    image, text = clip_embeddings(model.student, batch)
    logits = 100.0 * image @ text.t()
    eye = torch.eye(logits.shape[0])
    hard = (ref_soft_ce(logits, eye) + ref_soft_ce(logits.t(), eye)) / 2
    assert torch.allclose(terms["clip_hard"], hard, atol=ATOL)
    assert float(terms["logit_scale"]) == pytest.approx(100.0)


# ---- iBOT ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("epoch", [0, 1, 4])
def test_ibot_cls_and_patch_losses(harmony, epoch):
    cfg, batch = harmony
    model = tiny_model(cfg)
    objective = model.objectives["ibot"]
    spec = cfg["objectives"]["ibot"]
    center, center2 = objective.center.clone(), objective.center2.clone()
    loss, terms = run(model, "ibot", batch, sched(epoch=epoch))

    # teacher temperatures: np.linspace(warmup, final, warmup_epochs)[epoch], then final
    warm = int(spec["warmup_teacher_temp_epochs"])
    cls_sched = np.concatenate([np.linspace(0.04, 0.04, warm), np.full(10, 0.04)])
    patch_sched = np.concatenate([np.linspace(0.04, 0.07, warm), np.full(10, 0.07)])
    t_cls_temp, t_patch_temp = float(cls_sched[epoch]), float(patch_sched[epoch])

    crops, masks = batch["crops"], batch["block_masks"]
    student, teacher = model.student, model.teacher
    s_out = [
        ref_distill_head(
            objective.head, ref_global_tokens(student.vit, crops[q], masks[:, q], student.mask_token)
        )
        for q in range(2)
    ]
    s_cls = [o[:, 0] for o in s_out] + [
        ref_distill_head(objective.head, student.vit.forward_features(c)[:, 0]) for c in crops[2:]
    ]
    with torch.no_grad():
        t_out = [
            ref_distill_head(objective.teacher_head, ref_global_tokens(teacher.vit, crops[q]))
            for q in range(2)
        ]
    cls_terms, patch_terms = [], []
    for q in range(2):
        for v in range(len(s_cls)):
            if v != q:
                cls_terms.append(ref_h(t_out[q][:, 0], s_cls[v], center, t_cls_temp, 0.1).mean())
        per_patch = ref_h(t_out[q][:, 1:], s_out[q][:, 1:], center2, t_patch_temp, 0.1)  # (B, N)
        m = masks[:, q].flatten(1).float()
        patch_terms.append((per_patch * m).sum(1).div(m.sum(1).clamp(min=1)).mean())
    cls_loss = sum(cls_terms) / len(cls_terms)
    patch_loss = sum(patch_terms) / 2
    assert len(cls_terms) == 2 * (len(crops) - 1)
    assert torch.allclose(terms["ibot_cls"], cls_loss, atol=ATOL)
    assert torch.allclose(terms["ibot_patch"], patch_loss, atol=ATOL)
    assert torch.allclose(loss, 0.5 * cls_loss + 0.5 * patch_loss, atol=ATOL)

    # centring: c <- 0.9 c + 0.1 mean(teacher output), cls over both views, patches over views and tokens
    t_all = torch.cat(t_out)
    assert torch.allclose(objective.center, 0.9 * center + 0.1 * t_all[:, 0].mean(0, keepdim=True), atol=1e-6)
    expected2 = 0.9 * center2 + 0.1 * t_all[:, 1:].mean(dim=(0, 1)).view(1, 1, -1)
    assert torch.allclose(objective.center2, expected2, atol=1e-6)


def test_ibot_last_layer_frozen_in_first_epoch(harmony):
    cfg, batch = harmony
    model = tiny_model(cfg)
    loss, _ = run(model, "ibot", batch, sched())
    loss.backward()
    assert model.objectives["ibot"].head.last_layer.weight.grad is not None
    model.after_backward(epoch=0)
    assert model.objectives["ibot"].head.last_layer.weight.grad is None
    assert model.student.mask_token.grad is not None and model.student.mask_token.grad.abs().sum() > 0


# ---- MAE -------------------------------------------------------------------------------------------------


def ref_sincos(dim: int, grid: int) -> torch.Tensor:
    """MAE's 2-D table: first half of the channels from the column index, second half from the row."""
    quarter = dim // 4
    omega = [1.0 / 10000 ** (i / quarter) for i in range(quarter)]
    rows = [[0.0] * dim]
    for r in range(grid):
        for c in range(grid):
            row = [math.sin(c * w) for w in omega] + [math.cos(c * w) for w in omega]
            row += [math.sin(r * w) for w in omega] + [math.cos(r * w) for w in omega]
            rows.append(row)
    return torch.tensor(rows)


def test_mae_decoder_positions_are_sincos_not_zero(harmony):
    cfg, _ = harmony
    model = tiny_model(cfg)
    decoder = model.objectives["mae"].decoder
    dim = int(cfg["objectives"]["mae"]["decoder_dim"])
    assert torch.allclose(decoder.pos_embed[0], ref_sincos(dim, 4), atol=1e-6)
    assert torch.allclose(sincos_2d(16, 14), ref_sincos(16, 14), atol=1e-6)
    assert decoder.pos_embed.abs().sum() > 1  # the Harmony repo leaves these at zero
    assert not any(p is decoder.pos_embed for p in decoder.parameters())  # fixed, not learned


def ref_patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    b, c, h, w = images.shape
    out = []
    for i in range(h // p):
        for j in range(w // p):
            out.append(
                images[:, :, i * p : (i + 1) * p, j * p : (j + 1) * p].permute(0, 2, 3, 1).reshape(b, -1)
            )
    return torch.stack(out, dim=1)


def ref_mae_crop(vit, decoder, images, perm, ratio=0.75, patch=8):
    b, n = perm.shape
    keep_n = int(n * (1 - ratio))
    x = ref_patch_embed(vit, images) + vit.pos_embed[:, 1:]
    keep = perm[:, :keep_n]
    visible = torch.stack([x[i, keep[i]] for i in range(b)])
    latent = ref_encoder(
        vit, visible, torch.cat([vit.pos_embed[:, :1], torch.zeros_like(visible[:1])], dim=1)
    )
    # ref_encoder adds pos to [cls; visible]: cls gets pos[0], the visible ones already carry theirs
    h = latent @ decoder.embed.weight.t() + decoder.embed.bias
    full = decoder.mask_token.expand(b, n, -1).clone()
    for i in range(b):
        full[i, keep[i]] = h[i, 1:]
    z = torch.cat([h[:, :1], full], dim=1) + decoder.pos_embed
    for block in decoder.blocks:
        z = block(z)
    pred = decoder.pred(decoder.norm(z))[:, 1:]
    target = ref_patchify(images, patch)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    removed = torch.ones(b, n)
    for i in range(b):
        removed[i, keep[i]] = 0
    per_patch = ((pred - target) ** 2).mean(-1)
    return (per_patch * removed).sum() / removed.sum(), pred, removed


def test_mae_normalized_pixel_loss_on_masked_patches(harmony):
    cfg, batch = harmony
    model = tiny_model(cfg)
    objective = model.objectives["mae"]
    loss, _ = run(model, "mae", batch, sched())
    expected = 0.0
    for c in (0, 1):
        part, _, removed = ref_mae_crop(
            model.student.vit, objective.decoder, batch["crops"][c], batch["perms"][:, c]
        )
        assert removed.mean() == pytest.approx(0.75)
        expected = expected + part
    assert torch.allclose(loss, expected, atol=ATOL), (float(loss), float(expected))


def test_mae_loss_ignores_visible_patches(harmony):
    """Predictions at kept positions get no gradient: only the masked 75% are reconstructed."""
    cfg, batch = harmony
    model = tiny_model(cfg)
    pred_grads = []
    decoder = model.objectives["mae"].decoder

    def keep_grad(module, inputs, output):
        output.register_hook(pred_grads.append)

    handle = decoder.pred.register_forward_hook(keep_grad)
    loss, _ = run(model, "mae", batch, sched())
    loss.backward()
    handle.remove()
    grad = pred_grads[0][:, 1:].abs().sum(-1)  # (2B, N), both crops stacked
    perm = torch.cat([batch["perms"][:, 0], batch["perms"][:, 1]])
    kept = torch.zeros_like(grad, dtype=torch.bool)
    kept.scatter_(1, perm[:, : int(perm.shape[1] * 0.25)], True)
    assert grad[kept].abs().max() == 0
    assert (grad[~kept] > 0).all()


# ---- text: MLM and text self-distillation ------------------------------------------------------------------


def test_text_tokens_match_open_clip_forward(harmony):
    """Our token-level text forward (pooled at the given EOT) equals open_clip's encode on clean captions."""
    from harmony_bench.pretrain.towers import eot_positions, text_tokens

    cfg, batch = harmony
    model = tiny_model(cfg)
    _, pooled = text_tokens(model.student.text, batch["text"], eot_positions(batch["text"], 49407))
    assert torch.allclose(pooled, model.student.text(batch["text"]), atol=1e-6)
    assert int(batch["text_masked"].max()) == 49408  # [MASK] is the id after CLIP's 49408 BPE tokens
    assert model.student.text.token_embedding.num_embeddings == 49409


def masked_text_features(towers, ids):
    """Token features of the [MASK]ed captions: embedding + positions, causal blocks, final LayerNorm."""
    text = towers.text
    n = ids.shape[1]
    x = text.token_embedding(ids) + text.positional_embedding[:n]
    causal = torch.full((n, n), float("-inf")).triu(1)
    x = text.transformer(x, attn_mask=causal)
    return text.ln_final(x)


def test_mlm_cross_entropy_on_masked_tokens_only(harmony):
    cfg, batch = harmony
    model = tiny_model(cfg)
    objective = model.objectives["mlm"]
    loss, _ = run(model, "mlm", batch, sched())
    feats = masked_text_features(model.student, batch["text_masked"])
    logits = objective.decoder(feats)
    log_p = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    picked = [
        -log_p[b, t, batch["text"][b, t]]
        for b in range(logits.shape[0])
        for t in range(logits.shape[1])
        if batch["text_mask"][b, t]
    ]
    expected = torch.stack(picked).mean()
    assert torch.allclose(loss, expected, atol=ATOL)
    # targets at unmasked positions do not matter
    other = dict(batch)
    other["text"] = batch["text"].clone()
    other["text"][~batch["text_mask"] & (batch["text"] != 49407)] = 1234
    loss2, _ = run(model, "mlm", other, sched())
    assert torch.allclose(loss, loss2, atol=1e-6)


def test_mlm_decoder_is_causal(harmony):
    cfg, batch = harmony
    model = tiny_model(cfg)
    decoder = model.objectives["mlm"].decoder
    feats = masked_text_features(model.student, batch["text_masked"]).detach()
    changed = feats.clone()
    changed[:, 10] += 1.0
    a, b = decoder(feats), decoder(changed)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6)
    assert not torch.allclose(a[:, 10:], b[:, 10:])


@pytest.mark.parametrize("epoch", [0, 1, 3])
def test_text_distillation(harmony, epoch):
    cfg, batch = harmony
    model = tiny_model(cfg)
    objective = model.objectives["text_dist"]
    center = objective.center.clone()
    loss, _ = run(model, "text_dist", batch, sched(epoch=epoch))
    warm = int(cfg["objectives"]["text_dist"]["warmup_teacher_temp_epochs"])
    temp = float(np.concatenate([np.linspace(0.04, 0.07, warm), np.full(10, 0.07)])[epoch])
    student = ref_distill_head(objective.head, masked_text_features(model.student, batch["text_masked"]))
    with torch.no_grad():
        teacher = ref_distill_head(objective.teacher_head, masked_text_features(model.teacher, batch["text"]))
    per_token = ref_h(teacher, student, center, temp, 0.1)
    m = batch["text_mask"].float()
    expected = ((per_token * m).sum(1) / m.sum(1)).mean()
    assert torch.allclose(loss, expected, atol=ATOL)
    masked_mean = teacher[batch["text_mask"]].mean(0).view(1, 1, -1)
    assert torch.allclose(objective.center, 0.9 * center + 0.1 * masked_mean, atol=1e-6)


# ---- SimCLR (SLIP) and MaskCLIP's masked distillation -----------------------------------------------------


def test_simclr_nt_xent():
    cfg = tiny_cfg("slip")
    batch = fixed_batch(cfg, batch=5, seed=2)
    model = tiny_model(cfg)
    objective = model.objectives["simclr"]
    loss, _ = run(model, "simclr", batch, sched())
    vit = model.student.vit
    # SLIP: image_mlp on each view's image feature (its own BatchNorm batch), then NT-Xent at tau 0.1
    za = F.normalize(objective.mlp(vit.forward_features(batch["crops"][0])[:, 0]), dim=-1)
    zb = F.normalize(objective.mlp(vit.forward_features(batch["crops"][1])[:, 0]), dim=-1)
    b = za.shape[0]

    def one_side(q, other, same):
        terms = []
        for i in range(b):
            pos = q[i] @ other[i] / 0.1
            negatives = [q[i] @ other[j] / 0.1 for j in range(b)] + [
                q[i] @ same[j] / 0.1 for j in range(b) if j != i
            ]
            terms.append(torch.logsumexp(torch.stack(negatives), 0) - pos)
        return torch.stack(terms).mean()

    expected = (one_side(za, zb, za) + one_side(zb, za, zb)) / 2
    assert torch.allclose(loss, expected, atol=ATOL), (float(loss), float(expected))


def test_mask_dist_masked_self_distillation():
    cfg = tiny_cfg("maskclip")
    batch = fixed_batch(cfg, batch=4, seed=4)
    model = tiny_model(cfg)
    objective = model.objectives["mask_dist"]
    center, center2 = objective.center.clone(), objective.center2.clone()
    loss, terms = run(model, "mask_dist", batch, sched(epoch=1))
    vit, decoder = model.student.vit, objective.decoder
    images, perm = batch["crops"][0], batch["perms"][:, 0]
    b, n = perm.shape
    keep = perm[:, : int(n * 0.25)]
    x = ref_patch_embed(vit, images) + vit.pos_embed[:, 1:]
    visible = torch.stack([x[i, keep[i]] for i in range(b)])
    latent = ref_encoder(vit, visible, torch.cat([vit.pos_embed[:, :1], torch.zeros_like(visible[:1])], 1))
    h = decoder.embed(latent)
    full = decoder.mask_token.expand(b, n, -1).clone()
    for i in range(b):
        full[i, keep[i]] = h[i, 1:]
    z = torch.cat([h[:, :1], full], 1) + decoder.pos_embed
    for block in decoder.blocks:
        z = block(z)
    decoded = decoder.pred(decoder.norm(z))[:, 1:]
    student = ref_distill_head(objective.head, torch.cat([latent[:, :1], decoded], 1))
    with torch.no_grad():
        teacher = ref_distill_head(objective.teacher_head, ref_global_tokens(model.teacher.vit, images))
    warm = int(cfg["objectives"]["mask_dist"]["warmup_teacher_temp_epochs"])
    t_patch = float(np.linspace(0.04, 0.07, warm)[1])
    removed = torch.ones(b, n)
    for i in range(b):
        removed[i, keep[i]] = 0
    per_patch = ref_h(teacher[:, 1:], student[:, 1:], center2, t_patch, 0.1)
    patch = ((per_patch * removed).sum(1) / removed.sum(1)).mean()
    cls = ref_h(teacher[:, 0], student[:, 0], center, 0.04, 0.1).mean()
    assert torch.allclose(terms["mask_dist_patch"], patch, atol=ATOL)
    assert torch.allclose(terms["mask_dist_cls"], cls, atol=ATOL)
    assert torch.allclose(loss, patch + cls, atol=ATOL)


def test_mean_over_masked_rows_equals_the_masked_mean_over_all_rows():
    """The heads run on masked rows only; the per-sample mean over those rows is iBOT's masked mean."""
    from harmony_bench.pretrain.objectives import distill

    g = torch.Generator().manual_seed(0)
    values = torch.rand(5, 3, 4, generator=g)
    mask = torch.rand(5, 3, 4, generator=g) < 0.4
    mask[2] = False  # a sample with nothing masked counts as zero, as in iBOT (count clamped at 1)
    tokens = torch.arange(5 * 12.0).view(5, 12, 1)
    rows = distill.masked_rows(tokens, mask)
    assert rows.shape == (int(mask.sum()), 1)
    assert torch.equal(rows[:, 0], tokens.flatten()[mask.flatten()])  # row-major: sample, then position
    got = distill.masked_rows_mean(values[mask], mask)
    per_sample = (values * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1)
    assert torch.allclose(got, per_sample.mean(), atol=1e-7)
    assert torch.allclose(got, distill.masked_mean(values, mask), atol=1e-7)
