"""`--method harmony` trains what the Harmony repo (MohammedSB/Harmony@848f7ac) trains.

Each test restates one upstream rule (the file and line are in its docstring) and checks ours against it;
the last one sums the restated per-path losses of one step (the repo's discriminative, contrastive, text
and generative paths) and compares the loss, every gradient and every centre with our fused step.
"""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harmony_bench.pretrain import towers as T
from harmony_bench.pretrain.config import DOC_KEYS, load_config, lookup, protocol_docs
from harmony_bench.pretrain.data.dataset import trim_text_padding
from harmony_bench.pretrain.objectives.ibot import teacher_temps

from ._pretrain_util import (
    fixed_batch,
    quick_gelu,
    ref_dino_pos_embed,
    ref_distill_head,
    ref_global_tokens,
    ref_h,
    ref_local_tokens,
    ref_mae_crop,
    ref_mlm_logits,
    ref_soft_ce,
    ref_text_embedding,
    ref_text_features,
    sched,
    tiny_cfg,
    tiny_model,
)

# ---- 1. text features before ln_final -------------------------------------------------------------------


def test_mlm_and_text_distillation_read_the_text_features_before_ln_final():
    """``TextEncoder(..., return_without_proj=True)`` returns ``x`` from before ``text_norm``
    (``models/text_encoder.py`` L56-L70): MLM (``models/harmony.py`` L133-L138) and the text-distillation
    teacher (``models/utils.py`` L41-L44) read it, so ``ln_final`` gets no gradient from either."""
    cfg = tiny_cfg("mlm+text_dist")
    batch = fixed_batch(cfg, batch=4, seed=2)
    model = tiny_model(cfg)
    ctx = model.context(batch, sched(epoch=1))
    tokens, _ = ctx.student_text_masked()
    assert torch.allclose(tokens, ref_text_features(model.student, batch["text_masked"]), atol=1e-6)
    after_ln = model.student.text.ln_final(tokens)
    assert not torch.allclose(tokens, after_ln, atol=1e-2)  # the two really differ
    total, _ = model(batch, sched(epoch=1))
    total.backward()
    ln = model.student.text.ln_final
    assert ln.weight.grad is None and ln.bias.grad is None
    assert model.student.text.transformer.resblocks[-1].mlp.c_proj.weight.grad.abs().sum() > 0

    clip = tiny_model(tiny_cfg("clip+mlm"))  # CLIP's pooled embedding still goes through ln_final
    total, _ = clip(fixed_batch(clip_cfg := tiny_cfg("clip+mlm"), batch=4, seed=2), sched())
    total.backward()
    assert clip.student.text.ln_final.bias.grad.abs().sum() > 0
    assert clip_cfg["objective_names"] == ["clip", "mlm"]


def test_pooled_text_embedding_is_still_clips():
    cfg = tiny_cfg("harmony")
    batch = fixed_batch(cfg, batch=4, seed=2)
    model = tiny_model(cfg)
    _, pooled = T.text_tokens(model.student.text, batch["text"], T.eot_positions(batch["text"], 49407))
    assert torch.allclose(pooled, ref_text_embedding(model.student, batch["text"]), atol=1e-6)


def test_image_tower_starts_as_harmonys():
    """Harmony's ``VisionTransformer`` init (``models/vision_transformer.py`` L160-L198): [CLS] trunc normal
    0.02, ``contrastive_projection`` N(0, D^-0.5) (L181-L184), ``masked_embed`` zeros (L189); timm's own
    init would give the [CLS] N(0, 1e-6) and the projection trunc normal 0.02."""
    from harmony_bench.pretrain.towers import build_towers

    cfg = load_config("harmony", sets=["model.overrides={embed_dim: 192, depth: 1, num_heads: 3}"])
    towers = build_towers(cfg, text=False, mask_token=True, projection=True)
    assert 0.015 < float(towers.vit.cls_token.std()) < 0.025
    assert float(towers.vit.head.weight.std()) == pytest.approx(192**-0.5, rel=0.05)
    assert towers.vit.head.weight.shape == (512, 192) and float(towers.vit.head.bias.abs().sum()) == 0
    assert float(towers.mask_token.abs().sum()) == 0


# ---- 3. QuickGELU in the MLM decoder ----------------------------------------------------------------------


def test_mlm_decoder_blocks_use_quick_gelu():
    """Harmony's ``TextDecoder`` is built from CLIP's ``ResidualAttentionBlock`` with ``QuickGELU``
    (``models/transformer.py`` L18-L20, L31): ``x * sigmoid(1.702 x)``, not the erf GELU."""
    cfg = tiny_cfg("harmony")
    decoder = tiny_model(cfg).objectives["mlm"].decoder
    feats = torch.randn(3, 7, int(cfg["model"]["text"]["width"])) * 3
    ours = decoder(feats)
    assert torch.allclose(ours, ref_mlm_logits(decoder, feats), atol=1e-5)
    x = torch.linspace(-4, 4, 101)
    assert torch.allclose(decoder.transformer.resblocks[0].mlp.gelu(x), quick_gelu(x), atol=1e-7)
    assert (quick_gelu(x) - F.gelu(x)).abs().max() > 1e-2  # a GELU decoder would fail the line above


# ---- 4 and 5. MAE decoder: zero position table, LayerNorm eps ---------------------------------------------


def test_zero_decoder_table_gives_every_masked_patch_of_an_image_the_same_prediction():
    """``decoder_pos_embed`` and ``mask_token`` stay zero in the repo (``models/generative.py`` L21-L22; the
    initialiser at L31-L36 is never called): the masked patches enter the decoder as one identical vector and
    attention is permutation-equivariant, so they all come out the same.  ``sincos`` breaks the tie."""
    cfg = tiny_cfg("harmony")
    batch = fixed_batch(cfg, batch=3, seed=4)
    for table, same in (("zeros", True), ("sincos", False)):
        model = tiny_model(tiny_cfg("harmony", [f"objectives.mae.decoder_pos_embed={table}"]))
        _, pred, removed = ref_mae_crop(
            model.student.vit, model.objectives["mae"].decoder, batch["crops"][0], batch["perms"][:, 0]
        )
        ours = model.objectives["mae"].decoder(
            T.visible_tokens(model.student.vit, batch["crops"][0], batch["perms"][:, 0, :4]),
            torch.argsort(batch["perms"][:, 0], dim=1),
        )[:, 1:]
        assert torch.allclose(ours, pred, atol=1e-5)
        for i in range(3):
            masked = pred[i, removed[i].bool()]
            spread = float((masked - masked[0]).abs().max().detach())
            assert (spread < 1e-5) == same, (table, spread)
        assert not torch.allclose(pred[0, removed[0].bool()][0], pred[1, removed[1].bool()][0])


@pytest.mark.parametrize("method, name", [("harmony", "mae"), ("maskclip", "mask_dist")])
def test_decoder_layer_norms_use_eps_1e5(method, name):
    """The repo builds its decoders with ``norm_layer=nn.LayerNorm`` (``models/generative.py`` L11, L25, L28;
    ``models/maskclip.py`` L104, L113, L116): eps 1e-5, not timm's 1e-6."""
    decoder = tiny_model(tiny_cfg(method)).objectives[name].decoder
    norms = [m for m in decoder.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * len(decoder.blocks) + 1
    assert all(m.eps == 1e-5 for m in norms)


# ---- 6. local-crop position embeddings ---------------------------------------------------------------------


@pytest.mark.parametrize("side, grid", [(14, 6), (4, 2), (14, 14), (7, 3)])
def test_local_crop_positions_follow_dinos_interpolate_pos_encoding(side, grid):
    """``interpolate_pos_encoding`` (``models/vision_transformer.py`` L200-L220): bicubic with scale factor
    ``(n + 0.1) / sqrt(N)``, PyTorch's source mapping by that factor, no antialias; the table itself for
    the ViT's own grid.  timm's ``resample_abs_pos_embed`` (what we used before) is a different table."""
    from timm.layers import resample_abs_pos_embed

    g = torch.Generator().manual_seed(side * 10 + grid)
    vit = torch.nn.Module()
    vit.pos_embed = torch.nn.Parameter(torch.randn(1, side * side + 1, 5, generator=g))
    ours = T.pos_embed_for(vit, (grid, grid))
    ref = ref_dino_pos_embed(vit.pos_embed, grid, grid)
    assert ours.shape == (1, grid * grid + 1, 5)
    assert torch.allclose(ours, ref, atol=1e-5)
    if grid == side:
        assert ours is vit.pos_embed
        return
    timm_table = resample_abs_pos_embed(vit.pos_embed, [grid, grid], [side, side], num_prefix_tokens=1)
    assert (timm_table - ours).norm() > 0.05 * ours.norm()
    # the +0.1 matters: mapping back with n / sqrt(N) (interpolate(size=...)) is another table
    exact = F.interpolate(
        vit.pos_embed[:, 1:].reshape(1, side, side, 5).permute(0, 3, 1, 2), size=(grid, grid)
    )
    assert not torch.allclose(exact.permute(0, 2, 3, 1).reshape(1, -1, 5), ours[:, 1:], atol=1e-4)


def test_local_crops_go_through_the_vit_with_dinos_table():
    cfg = tiny_cfg("harmony")
    batch = fixed_batch(cfg, batch=2, seed=1)
    model = tiny_model(cfg)
    local = batch["crops"][2]
    assert torch.allclose(
        T.image_tokens(model.student.vit, local), ref_local_tokens(model.student.vit, local), atol=1e-5
    )


# ---- 8. text-distillation head width --------------------------------------------------------------------


def test_text_distillation_head_hidden_width_is_1024():
    """``TextDistillationHead(..., hidden_dim=1024, bottleneck_dim=256, nlayers=2)`` (``models/heads/
    text_dist_head.py`` L60), not overridden by ``models/text_distillation.py`` L13-L18."""
    from harmony_bench.pretrain.objectives.text_dist import TextDistObjective

    cfg = load_config("harmony")
    spec = cfg["objectives"]["text_dist"]
    assert (spec["hidden_dim"], spec["bottleneck_dim"], spec["out_dim"]) == (1024, 256, 8192 // 4)
    head = TextDistObjective(cfg, spec, None).head
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 1024), (1024, 256)]
    assert head.last_layer.out_features == 2048


# ---- 9. delayed patch-temperature warm-up -----------------------------------------------------------------


@pytest.mark.parametrize("delay", [0, 1, 3])
def test_patch_temperature_warm_up_starts_at_pred_start_epoch(delay):
    """iBOTLoss's ``teacher_temp2_schedule`` (``losses/ibot_loss.py`` L34-L43) with ``mim_start_epoch`` =
    ``pred_start_epoch`` (``models/discriminative.py`` L93): ``delay`` epochs at the warm-up value, then the
    linspace; the [CLS] schedule is not delayed."""
    spec = {
        "warmup_teacher_temp_epochs": 4,
        "warmup_teacher_temp": 0.02,
        "teacher_temp": 0.05,
        "warmup_teacher_patch_temp": 0.04,
        "teacher_patch_temp": 0.07,
    }
    epochs = 12
    cls = np.concatenate([np.linspace(0.02, 0.05, 4), np.ones(epochs - 4) * 0.05])
    if delay == 0:
        patch = np.concatenate([np.linspace(0.04, 0.07, 4), np.ones(epochs - 4) * 0.07])
    else:
        patch = np.concatenate(
            [np.ones(delay) * 0.04, np.linspace(0.04, 0.07, 4), np.ones(epochs - 4 - delay) * 0.07]
        )
    for epoch in range(epochs):
        got = teacher_temps(spec, epoch, delay)
        assert got == pytest.approx((cls[epoch], patch[epoch]), abs=1e-12), epoch


def test_ibot_objective_delays_its_patch_temperature():
    """pred_start_epoch=2 at epoch 2 is the undelayed epoch 0 for the patches (the cls temp is constant)."""
    batch = fixed_batch(tiny_cfg("ibot"), batch=3, seed=6)
    losses = []
    for delay, epoch in ((2, 2), (0, 0), (0, 2)):
        model = tiny_model(tiny_cfg("ibot", [f"objectives.ibot.pred_start_epoch={delay}"]))
        _, terms = model(batch, sched(epoch=epoch))
        losses.append(float(terms["ibot_patch"]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert losses[0] != pytest.approx(losses[2], rel=1e-3)


# ---- issue 14 item 6: defaults ----------------------------------------------------------------------------


def test_pretraining_defaults_follow_the_readme_and_each_methods_source():
    """README ``--batch_size_per_gpu 96``; no logit-scale clamp but in ``slip`` (Harmony's
    ``models/contrastive.py`` L78 never clamps; SLIP ``main.py`` L314-L318 does); MaskCLIP's
    ``warmup_teacher_temp_epochs`` 10 (``main_maskclip.py`` L92)."""
    assert load_config("harmony")["batch_size"] == 96
    for method in ("harmony", "clip", "maskclip", "ibot", "mae", "clip+ibot"):
        assert load_config(method)["objectives"]["clip"]["max_logit_scale"] is None, method
    assert load_config("slip")["objectives"]["clip"]["max_logit_scale"] == pytest.approx(
        math.log(100), abs=1e-6
    )
    maskclip = load_config("maskclip")["objectives"]["mask_dist"]
    assert maskclip["warmup_teacher_temp_epochs"] == 10
    assert (maskclip["head"], maskclip["cls"]) == (False, False)  # main_maskclip.py L123-L124


# ---- protocol documentation in the config files -----------------------------------------------------------


def leaves(node, prefix=""):
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key != "overrides":
            yield from leaves(value, path + ".")
        else:
            yield path


def covered(path, sources):
    parts = path.split(".")
    return any(".".join(parts[:i]) in sources for i in range(len(parts), 0, -1))


@pytest.mark.parametrize("method", ["harmony", "clip", "slip", "maskclip", "ibot", "mae"])
def test_every_pretraining_value_cites_its_source(method):
    docs = protocol_docs(method)
    cfg, sources = docs["config"], docs["sources"]
    for key in sources:  # every citation names a real setting
        if key != "objective_names":
            lookup(cfg, key)
        assert sources[key].startswith(
            ("MohammedSB/Harmony@848f7ac ", "facebookresearch/SLIP@c6faf5d ", "harmony-bench: ")
        ), key
    missing = [
        p
        for p in leaves({k: v for k, v in cfg.items() if k not in ("method", "preset", "deviations")})
        if not covered(p, sources)
    ]
    assert not missing
    assert "objective_names" in sources
    for key in docs["fixes"]:  # fixes name a real setting and a value it accepts
        path, _, value = key.partition("=")
        assert lookup(cfg, path) != value
        load_config(method, sets=[key])
    assert all(isinstance(d, str) and d for d in docs["deviations"])
    if method == "maskclip":
        assert any("main_maskclip.py" in d for d in docs["deviations"])


def test_documentation_keys_are_not_settings():
    cfg = load_config("harmony", "smoke")
    assert not set(DOC_KEYS) & (set(cfg) - {"deviations"})
    assert isinstance(cfg["deviations"], list) and cfg["deviations"]
    assert not any("[--set" in d for d in cfg["deviations"])  # no fix chosen
    for bad in ("sources.epochs=3", "fixes=1", "deviations=[]"):
        with pytest.raises(ValueError, match="unknown pretraining setting"):
            load_config("harmony", sets=[bad])
    for not_a_method in ("sources", "deviations"):
        with pytest.raises(ValueError, match="unknown method"):
            load_config(not_a_method)
    chosen = load_config("harmony", sets=["objectives.mae.decoder_pos_embed=sincos"])["deviations"]
    assert sum("[--set objectives.mae.decoder_pos_embed=sincos]" in d for d in chosen) == 1


def test_export_records_the_runs_deviations(tmp_path):
    import json

    from safetensors import safe_open

    from harmony_bench.pretrain.export import export

    cfg = tiny_cfg("harmony", ["objectives.text_dist.center=logits-masked"])
    weights, card = export(tiny_model(cfg), cfg, tmp_path, 3)
    with safe_open(str(weights), "pt") as f:
        recorded = json.loads(f.metadata()["deviations"])
    assert recorded == cfg["deviations"] and any("DINO's rule" in d for d in recorded)
    assert "deviation: " in card.read_text()


# ---- end to end: one step equals the repo's paths, restated ----------------------------------------------


def repo_step_losses(model, batch, cfg, step):
    """The Harmony repo's four paths on one batch, written from its rules (not with our objectives).

    Returns ``(d, c, t, g)`` losses and the centres the repo's losses would hold afterwards.
    """
    s, t = model.student, model.teacher
    ibot, clip = model.objectives["ibot"], model.objectives["clip"]
    mlm, tdist, mae = model.objectives["mlm"], model.objectives["text_dist"], model.objectives["mae"]
    spec = cfg["objectives"]
    epoch = int(step["epoch"])
    crops, masks = batch["crops"], batch["block_masks"]
    warm = int(spec["ibot"]["warmup_teacher_temp_epochs"])
    t_cls = float(np.linspace(0.04, 0.04, warm)[min(epoch, warm - 1)])
    t_patch = float(np.linspace(0.04, 0.07, warm)[min(epoch, warm - 1)])
    centres = {}

    # d: iBOT (losses/ibot_loss.py), local crops with DINO's position table
    s_out = [
        ref_distill_head(ibot.head, ref_global_tokens(s.vit, crops[q], masks[:, q], s.mask_token))
        for q in range(2)
    ]
    s_cls = [o[:, 0] for o in s_out] + [
        ref_distill_head(ibot.head, ref_local_tokens(s.vit, c)[:, 0]) for c in crops[2:]
    ]
    with torch.no_grad():
        t_out = [ref_distill_head(ibot.teacher_head, ref_global_tokens(t.vit, crops[q])) for q in range(2)]
    cls_terms, patch_terms = [], []
    for q in range(2):
        for v in range(len(s_cls)):
            if v != q:
                cls_terms.append(ref_h(t_out[q][:, 0], s_cls[v], ibot.center, t_cls, 0.1).mean())
        per = ref_h(t_out[q][:, 1:], s_out[q][:, 1:], ibot.center2, t_patch, 0.1)
        m = masks[:, q].flatten(1).float()
        patch_terms.append(((per * m).sum(-1) / m.sum(-1).clamp(min=1.0)).mean())
    d = 0.5 * sum(cls_terms) / len(cls_terms) + 0.5 * sum(patch_terms) / 2
    t_all = torch.cat(t_out)
    centres["ibot.center"] = 0.9 * ibot.center + 0.1 * t_all[:, 0].mean(0, keepdim=True)
    centres["ibot.center2"] = 0.9 * ibot.center2 + 0.1 * t_all[:, 1:].mean(1).mean(0).view(1, 1, -1)

    # c: CLIP with soft targets (losses/clip_loss.py), logit_scale.exp() unclamped
    full_ids = batch["text_full"]
    image = F.normalize(ref_global_tokens(s.vit, crops[0])[:, 0] @ s.vit.head.weight.t(), dim=-1)
    text = F.normalize(ref_text_embedding(s, full_ids), dim=-1)
    logits = clip.logit_scale.exp() * image @ text.t()
    eye = torch.eye(image.shape[0])
    hard = (ref_soft_ce(logits, eye) + ref_soft_ce(logits.t(), eye)) / 2
    with torch.no_grad():
        image_t = F.normalize(ref_global_tokens(t.vit, crops[0])[:, 0] @ t.vit.head.weight.t(), dim=-1)
        text_t = F.normalize(ref_text_embedding(t, full_ids), dim=-1)
    soft = (
        ref_soft_ce(logits, torch.softmax(image_t @ text_t.t() / 0.1, 1))
        + ref_soft_ce(logits.t(), torch.softmax(text_t @ image_t.t() / 0.1, 1))
    ) / 2
    w = step["hard_weight"]
    c = w * hard + (1 - w) * soft

    # t: MLM + text distillation on the pre-ln_final features (models/harmony.py L130-L150)
    mask = batch["text_mask_full"]
    feats = ref_text_features(s, batch["text_masked_full"])
    logp = torch.log_softmax(ref_mlm_logits(mlm.decoder, feats), dim=-1)
    mlm_loss = -logp[mask, full_ids[mask]].mean()
    temp = float(np.linspace(0.04, 0.07, int(spec["text_dist"]["warmup_teacher_temp_epochs"]))[min(epoch, 1)])
    student = ref_distill_head(tdist.head, feats)
    with torch.no_grad():
        teacher = ref_distill_head(tdist.teacher_head, ref_text_features(t, full_ids))
    per = ref_h(teacher, student, tdist.center, temp, 0.1)
    m = mask.float()
    dist = ((per * m).sum(-1) / m.sum(-1).clamp(min=1.0)).mean()
    probs = torch.softmax((teacher - tdist.center) / temp, dim=-1)
    centres["text_dist.center"] = 0.9 * tdist.center + 0.1 * probs.mean(1).sum(0, keepdim=True) / len(probs)
    tl = mlm_loss + dist

    # g: MAE on both global crops, zero decoder table (models/generative.py)
    g = sum(ref_mae_crop(s.vit, mae.decoder, crops[k], batch["perms"][:, k])[0] for k in (0, 1))
    return (d, c, tl, g), centres


def test_one_step_equals_the_sum_of_the_repos_paths_restated():
    """Loss, every gradient and every centre of our fused step on a tiny ``harmony`` model equal the sum of
    the restated repo paths (d: iBOT, c: CLIP + soft, t: MLM + text distillation, g: MAE)."""
    cfg = tiny_cfg("harmony")
    full = fixed_batch(cfg, batch=4, seed=12)
    batch = trim_text_padding(full)  # the loader's cut batch: the text-dist centre must restore the padding
    step = sched(epoch=1, hard_weight=0.6)
    model = tiny_model(cfg)
    with torch.no_grad():
        model.objectives["clip"].logit_scale.fill_(5.0)  # above ln 100: nothing clamps in Harmony
    ref = copy.deepcopy(model)

    total, terms = model(batch, step)
    total.backward()

    ref_batch = dict(
        batch, text_full=full["text"], text_masked_full=full["text_masked"], text_mask_full=full["text_mask"]
    )
    (d, c, tl, g), centres = repo_step_losses(ref, ref_batch, cfg, step)
    for part in (d, c, tl, g):  # the repo's per-path backward passes
        part.backward()
    expected = float((d + c + tl + g).detach())
    assert float(total) == pytest.approx(expected, rel=1e-5)
    assert float(terms["loss_ibot"]) == pytest.approx(float(d.detach()), rel=1e-5)
    assert float(terms["loss_clip"]) == pytest.approx(float(c.detach()), rel=1e-5)
    assert float(terms["loss_mlm"] + terms["loss_text_dist"]) == pytest.approx(float(tl.detach()), rel=1e-5)
    assert float(terms["loss_mae"]) == pytest.approx(float(g.detach()), rel=1e-5)

    ours = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    theirs = {n: p.grad for n, p in ref.named_parameters() if p.grad is not None}
    assert set(ours) == set(theirs) and len(ours) > 50
    for name in ours:
        scale = float(theirs[name].abs().max())
        assert float((ours[name] - theirs[name]).abs().max()) <= 2e-5 * scale + 1e-9, name  # measured 3e-6
    assert "student.text.ln_final.weight" in ours  # CLIP's gradient only
    for key, value in centres.items():
        objective, buffer = key.split(".")
        assert torch.allclose(getattr(model.objectives[objective], buffer), value, atol=1e-6), key


def test_fixes_are_declared_in_defaults_only(tmp_path):
    """A `fixes:` block in methods.yaml would never be recorded as a run's deviation: it is refused."""
    import shutil

    import yaml

    from harmony_bench.paths import REPO_ROOT

    config_dir = tmp_path / "pretrain"
    shutil.copytree(REPO_ROOT / "benchmarks" / "pretrain", config_dir)
    methods = yaml.safe_load((config_dir / "methods.yaml").read_text())
    methods["fixes"] = {"objectives.mae.decoder_pos_embed": {"sincos": "a fix declared in the wrong file"}}
    (config_dir / "methods.yaml").write_text(yaml.safe_dump(methods, sort_keys=False))
    with pytest.raises(ValueError, match=r"methods\.yaml: 'fixes:' belongs in defaults\.yaml"):
        load_config("mae", config_dir=config_dir)
