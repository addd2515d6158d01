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
    ref_global_tokens,
    ref_h,
    ref_local_tokens,
    ref_mae_crop,
    ref_mae_decode,
    ref_mae_encode,
    ref_mlm_logits,
    ref_soft_ce,
    ref_text_features,
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


def test_clip_logit_scale_is_never_clamped_for_harmony(harmony):
    """Harmony uses ``logit_scale.exp()`` as is (``models/contrastive.py`` L78), before and after a step."""
    cfg, batch = harmony
    assert cfg["objectives"]["clip"]["max_logit_scale"] is None
    model = tiny_model(cfg)
    objective = model.objectives["clip"]
    with torch.no_grad():
        objective.logit_scale.fill_(6.0)  # exp(6) = 403 > 100
    _, terms = run(model, "clip", batch, sched())
    image, text = clip_embeddings(model.student, batch)
    logits = math.exp(6.0) * image @ text.t()
    eye = torch.eye(logits.shape[0])
    hard = (ref_soft_ce(logits, eye) + ref_soft_ce(logits.t(), eye)) / 2
    assert torch.allclose(terms["clip_hard"], hard, rtol=1e-5)
    assert float(terms["logit_scale"]) == pytest.approx(math.exp(6.0))
    model.after_step()
    assert float(objective.logit_scale.detach()) == 6.0


@pytest.mark.parametrize("value", [6.0, -0.5, 3.0])
def test_slip_clamps_the_logit_scale_parameter_after_each_step(value):
    """SLIP ``main.py`` L314-L318: ``logit_scale.data.clamp_(0, 4.6052)`` after the optimizer step; the
    forward itself uses ``exp(logit_scale)``."""
    cfg = tiny_cfg("slip")
    batch = fixed_batch(cfg, batch=4, seed=1)
    model = tiny_model(cfg)
    objective = model.objectives["clip"]
    with torch.no_grad():
        objective.logit_scale.fill_(value)
    _, terms = run(model, "clip", batch, sched())
    assert float(terms["logit_scale"]) == pytest.approx(math.exp(value))  # no clamp in the forward
    model.after_step()
    assert float(objective.logit_scale.detach()) == pytest.approx(min(max(value, 0.0), 4.6051702))


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
    s_cls = (
        [o[:, 0] for o in s_out]
        + [  # local crops: DINO's resampled position table
            ref_distill_head(objective.head, ref_local_tokens(student.vit, c)[:, 0]) for c in crops[2:]
        ]
    )
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


def test_mae_decoder_positions_are_zero_by_default_and_sincos_on_request(harmony):
    """The repo's ``decoder_pos_embed`` stays zero (its initialiser is never called); sincos is the fix."""
    cfg, _ = harmony
    decoder = tiny_model(cfg).objectives["mae"].decoder
    assert cfg["objectives"]["mae"]["decoder_pos_embed"] == "zeros"
    assert decoder.pos_embed.abs().sum() == 0 and decoder.mask_token.abs().sum() == 0
    fixed = tiny_cfg("harmony", ["objectives.mae.decoder_pos_embed=sincos"])
    decoder = tiny_model(fixed).objectives["mae"].decoder
    dim = int(cfg["objectives"]["mae"]["decoder_dim"])
    assert torch.allclose(decoder.pos_embed[0], ref_sincos(dim, 4), atol=1e-6)
    assert torch.allclose(sincos_2d(16, 14), ref_sincos(16, 14), atol=1e-6)
    assert 0.005 < float(decoder.mask_token.std()) < 0.05  # the initialiser's N(0, 0.02)
    assert not any(p is decoder.pos_embed for p in decoder.parameters())  # fixed, not learned
    assert any("sincos" in d and "initialize_deocder_weights" in d for d in fixed["deviations"])
    assert not any("initialize_deocder_weights" in d for d in cfg["deviations"])


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
    """Token features of the [MASK]ed captions BEFORE the final LayerNorm (Harmony's return_without_proj)."""
    return ref_text_features(towers, ids)


def test_mlm_cross_entropy_on_masked_tokens_only(harmony):
    cfg, batch = harmony
    model = tiny_model(cfg)
    objective = model.objectives["mlm"]
    loss, _ = run(model, "mlm", batch, sched())
    feats = masked_text_features(model.student, batch["text_masked"])
    logits = ref_mlm_logits(objective.decoder, feats)
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
@pytest.mark.parametrize("trim", [False, True])
def test_text_distillation(harmony, epoch, trim):
    """Loss on masked tokens; centre = EMA of the teacher's softmax probabilities over EVERY position of the
    full context (Harmony ``losses/text_dist_loss.py`` L43-L58), also when the loader cut the padding."""
    from harmony_bench.pretrain.data.dataset import trim_text_padding

    cfg, full = harmony
    batch = trim_text_padding(full) if trim else full
    assert (batch["text"].shape[1] < full["text"].shape[1]) == trim
    model = tiny_model(cfg)
    objective = model.objectives["text_dist"]
    center = objective.center.clone()
    loss, _ = run(model, "text_dist", batch, sched(epoch=epoch))
    warm = int(cfg["objectives"]["text_dist"]["warmup_teacher_temp_epochs"])
    temp = float(np.concatenate([np.linspace(0.04, 0.07, warm), np.full(10, 0.07)])[epoch])
    student = ref_distill_head(objective.head, masked_text_features(model.student, full["text_masked"]))
    with torch.no_grad():
        teacher = ref_distill_head(objective.teacher_head, masked_text_features(model.teacher, full["text"]))
    per_token = ref_h(teacher, student, center, temp, 0.1)
    m = full["text_mask"].float()
    expected = ((per_token * m).sum(1) / m.sum(1).clamp(min=1)).mean()
    assert torch.allclose(loss, expected, atol=ATOL)
    assert teacher.shape[1] == cfg["model"]["text"]["context_length"]  # padding positions included
    probs = torch.softmax((teacher - center) / temp, dim=-1)
    expected_center = 0.9 * center + 0.1 * probs.mean(1).mean(0).view(1, 1, -1)
    assert torch.allclose(objective.center, expected_center, atol=1e-6)
    assert abs(float(objective.center.sum()) - (0.9 * float(center.sum()) + 0.1)) < 1e-4  # a probability


def test_text_distillation_centre_fix_is_dinos_rule_and_recorded(harmony):
    cfg = tiny_cfg("harmony", ["objectives.text_dist.center=logits-masked"])
    _, batch = harmony
    model = tiny_model(cfg)
    objective = model.objectives["text_dist"]
    center = objective.center.clone()
    run(model, "text_dist", batch, sched(epoch=1))
    with torch.no_grad():
        teacher = ref_distill_head(objective.teacher_head, masked_text_features(model.teacher, batch["text"]))
    masked_mean = teacher[batch["text_mask"]].mean(0).view(1, 1, -1)
    assert torch.allclose(objective.center, 0.9 * center + 0.1 * masked_mean, atol=1e-6)
    assert any("DINO's rule" in d for d in cfg["deviations"])
    with pytest.raises(ValueError, match="center"):
        tiny_model(tiny_cfg("harmony", ["objectives.text_dist.center=mean"]))


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


@pytest.mark.parametrize("head_cls", [(False, False), (True, True), (False, True)])
def test_mask_dist_masked_self_distillation(head_cls):
    """Harmony's MaskCLIP (``models/maskclip.py`` L152-L217, ``losses/mask_self_dist.py``): the decoder has no
    input projection and no predictor; its [CLS] output (not the encoder's) is the student [CLS]; an iBOT
    head only with ``--with_head``, the [CLS] term only with ``--with_cls`` (both off by default)."""
    head, with_cls = head_cls
    sets = [
        f"objectives.mask_dist.head={str(head).lower()}",
        f"objectives.mask_dist.cls={str(with_cls).lower()}",
    ]
    cfg = tiny_cfg("maskclip", sets)
    batch = fixed_batch(cfg, batch=4, seed=4)
    model = tiny_model(cfg)
    objective = model.objectives["mask_dist"]
    center, center2 = objective.center.clone(), objective.center2.clone()
    loss, terms = run(model, "mask_dist", batch, sched(epoch=1))
    vit, decoder = model.student.vit, objective.decoder
    assert isinstance(decoder.embed, torch.nn.Identity) and isinstance(decoder.pred, torch.nn.Identity)
    images, perm = batch["crops"][0], batch["perms"][:, 0]
    b, n = perm.shape
    keep = perm[:, : int(n * 0.25)]
    decoded = ref_mae_decode(decoder, ref_mae_encode(vit, images, keep), keep, n)  # (B, 1 + N, D)
    with torch.no_grad():
        teacher = ref_global_tokens(model.teacher.vit, images)
    if head:
        student = ref_distill_head(objective.head, decoded)
        teacher = ref_distill_head(objective.teacher_head, teacher)
    else:
        student = decoded
    warm = int(cfg["objectives"]["mask_dist"]["warmup_teacher_temp_epochs"])
    t_patch = float(np.linspace(0.04, 0.07, warm)[1])
    removed = torch.ones(b, n)
    for i in range(b):
        removed[i, keep[i]] = 0
    per_patch = ref_h(teacher[:, 1:], student[:, 1:], center2, t_patch, 0.1)
    patch = ((per_patch * removed).sum(1) / removed.sum(1)).mean()
    assert torch.allclose(terms["mask_dist_patch"], patch, atol=ATOL)
    expected = patch
    if with_cls:
        cls = ref_h(teacher[:, 0], student[:, 0], center, 0.04, 0.1).mean()
        assert torch.allclose(terms["mask_dist_cls"], cls, atol=ATOL)
        expected = patch + cls
    else:
        assert "mask_dist_cls" not in terms
    assert torch.allclose(loss, expected, atol=ATOL)
    assert torch.allclose(
        objective.center, 0.9 * center + 0.1 * teacher[:, 0].mean(0, keepdim=True), atol=1e-6
    )


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
