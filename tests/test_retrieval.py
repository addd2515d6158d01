"""retrieval-coco / retrieval-flickr30k: readers of the official layouts, errors, synthetic data, runs."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from open_clip.tokenizer import SimpleTokenizer
from PIL import Image

from harmony_bench.cli import main
from harmony_bench.data.synth import synthesize
from harmony_bench.models.preprocess import eval_transform
from harmony_bench.results import validate_record
from harmony_bench.tasks.imagenet.common import preprocessing_for
from harmony_bench.tasks.retrieval.data import RetrievalDataError, parse_token_file, read_captions

from ._imagenet_util import TINY_PREPROCESSING, run_cli, use_cards, value, write_card
from ._models_util import TINY_TEXT, TINY_VIT, dino_style_vit_cls, perturb, reference_vit, text_reference
from .test_retrieval_metric import maps, reference_metrics

METRICS = [f"{d}.R@{k}" for d in ("image_to_text", "text_to_image") for k in (1, 5, 10)] + ["mean_recall"]


def jpeg(path, shade=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade, 40, 90)).save(path)


@pytest.fixture(scope="module")
def coco_synth(tmp_path_factory):
    return synthesize("coco-captions", tmp_path_factory.mktemp("cc") / "root", n=12, size=32).root


@pytest.fixture(scope="module")
def flickr_synth(tmp_path_factory):
    return synthesize("flickr30k", tmp_path_factory.mktemp("fl") / "root", n=8, size=32).root


# --------------------------------------------------------------------------- readers, official layouts


def test_coco_captions_reader_orders_like_torchvision_coco_captions(tmp_path):
    """Images by ascending id (CocoCaptions' sorted ids), each image's captions in the file's order."""
    for name in ("000000000010.jpg", "000000000020.jpg", "000000000030.jpg"):
        jpeg(tmp_path / "val2017" / name)
    payload = {
        "info": {},
        "licenses": [],
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": 8, "height": 8} for i in (30, 10, 20)],
        "annotations": [
            {"id": 7, "image_id": 20, "caption": "c0"},
            {"id": 3, "image_id": 10, "caption": "a0"},
            {"id": 9, "image_id": 30, "caption": "x0"},
            {"id": 1, "image_id": 10, "caption": "a1"},
            {"id": 2, "image_id": 20, "caption": "c1"},
        ],
    }
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "captions_val2017.json").write_text(json.dumps(payload))
    data = read_captions(tmp_path, "coco-captions", "annotations/captions_val2017.json", "val2017")
    assert [p.name for p in data.images] == ["000000000010.jpg", "000000000020.jpg", "000000000030.jpg"]
    assert data.captions == ["a0", "a1", "c0", "c1", "x0"]
    assert data.caption_image == [0, 0, 1, 1, 2]


def test_flickr_token_reader_restates_harmonys_read_captions(tmp_path):
    text = (
        "header line without a tab\nB.jpg#0\tb zero\nA.jpg#0\ta zero\tignored third field\nB.jpg#1\tb one\n\n"
    )
    assert parse_token_file(text) == {"B.jpg": ["b zero", "b one"], "A.jpg": ["a zero"]}
    (tmp_path / "results_20130124.token").write_text(text)
    jpeg(tmp_path / "B.jpg")
    jpeg(tmp_path / "A.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    data = read_captions(tmp_path, "flickr30k-token", "results_20130124.token", ".", dataset="flickr30k")
    assert [p.name for p in data.images] == ["A.jpg", "B.jpg"]  # sorted (the repo: glob order)
    assert data.captions == ["a zero", "b zero", "b one"]
    assert data.caption_image == [0, 1, 1]
    jpeg(tmp_path / "C.jpg")  # the repo fails with KeyError on an image the token file does not caption
    with pytest.raises(RetrievalDataError, match=r"1 images in .* have no captions in .*C\.jpg"):
        read_captions(tmp_path, "flickr30k-token", "results_20130124.token", ".", dataset="flickr30k")


def test_karpathy_reader_takes_one_split_in_file_order(tmp_path):
    def entry(name, split, captions):
        sentences = [{"raw": c, "tokens": c.split(), "imgid": 0, "sentid": 0} for c in captions]
        return {"filepath": "val2014", "filename": name, "split": split, "sentences": sentences, "cocoid": 1}

    entries = [
        entry("b.jpg", "test", ["b0", "b1", "b2", "b3", "b4"]),
        entry("t.jpg", "train", ["t0"]),
        entry("a.jpg", "test", ["a0", "a1", "a2", "a3", "a4", "a5"]),
        entry("r.jpg", "restval", ["r0"]),
    ]
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    for name in ("a.jpg", "b.jpg"):
        jpeg(tmp_path / "val2014" / name)
    data = read_captions(tmp_path, "karpathy", "dataset_coco.json", ".", split="test")
    assert [p.relative_to(tmp_path).as_posix() for p in data.images] == ["val2014/b.jpg", "val2014/a.jpg"]
    assert data.captions[:6] == ["b0", "b1", "b2", "b3", "b4", "a0"] and len(data.captions) == 11
    assert data.caption_image == [0] * 5 + [1] * 6
    assert data.files["split"] == "test"


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [
        ("no-root", r"no data root given \(--data-root DIR\).*captions_val2017\.json"),
        ("root-missing", r"does not exist or is not a directory"),
        (
            "annotations",
            r"captions_val2017\.json is missing \(config key annotations=.*data synth --kind coco-captions",
        ),
        ("image-dir", r"image folder .*val2017 is missing \(config key image_dir='val2017'\)"),
        ("one-image", r"1 of the 12 images listed in .*captions_val2017\.json are missing, e\.g\. .*\.jpg"),
        ("instances", r"has no 'caption' fields: it is not a captions file"),
        ("not-json", r"is not valid JSON"),
    ],
)
def test_missing_or_wrong_coco_files_are_named_with_the_fix(coco_synth, tmp_path, damage, pattern):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(coco_synth, root)
    ann = root / "annotations" / "captions_val2017.json"
    given = None if damage == "no-root" else (tmp_path / "nowhere" if damage == "root-missing" else root)
    if damage == "annotations":
        ann.unlink()
    elif damage == "image-dir":
        shutil.rmtree(root / "val2017")
    elif damage == "one-image":
        sorted((root / "val2017").iterdir())[3].unlink()
    elif damage == "instances":
        ann.write_text(json.dumps({"images": [], "annotations": [{"id": 1, "bbox": [0, 0, 1, 1]}]}))
    elif damage == "not-json":
        ann.write_text("{not json")
    with pytest.raises(RetrievalDataError, match=pattern):
        read_captions(given, "coco-captions", "annotations/captions_val2017.json", "val2017")


def test_missing_karpathy_and_flickr_files_are_named_with_the_fix(coco_synth, flickr_synth, tmp_path):
    with pytest.raises(RetrievalDataError, match=r"dataset_coco\.json is missing.*caption_datasets\.zip"):
        read_captions(tmp_path, "karpathy", "dataset_coco.json", ".", split="test")
    with pytest.raises(RetrievalDataError, match=r"no images in split 'testt' \(it has \['test', 'val'\]\)"):
        read_captions(coco_synth, "karpathy", "dataset_coco.json", ".", split="testt")
    with pytest.raises(RetrievalDataError, match=r"results_20130124\.token is missing.*flickr30k\.tar\.gz"):
        read_captions(tmp_path, "flickr30k-token", "results_20130124.token", ".", dataset="flickr30k")
    # the official archives unpack the images into flickr30k-images/, Harmony reads the folder as given
    with pytest.raises(RetrievalDataError, match=r"holds no \*jpg files.*--set image_dir=flickr30k-images"):
        read_captions(flickr_synth, "flickr30k-token", "results_20130124.token", ".", dataset="flickr30k")
    with pytest.raises(ValueError, match="split='test' only applies to reader=karpathy"):
        read_captions(
            coco_synth, "coco-captions", "annotations/captions_val2017.json", "val2017", split="test"
        )


# --------------------------------------------------------------------------- synthetic data


def test_synthetic_coco_captions_reads_the_same_through_both_readers(coco_synth):
    harmony = read_captions(coco_synth, "coco-captions", "annotations/captions_val2017.json", "val2017")
    karpathy = read_captions(coco_synth, "karpathy", "dataset_coco.json", ".", split="test")
    assert len(harmony.images) == len(karpathy.images) == 12
    assert harmony.captions == karpathy.captions and harmony.caption_image == karpathy.caption_image
    counts = np.bincount(harmony.caption_image)
    assert set(counts) == {5, 6}  # five captions per image, six for every seventh, as COCO's variable counts
    for a, b in zip(harmony.images, karpathy.images, strict=True):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    # captions name the drawn colours and shapes, the words a pretrained tiny model learned
    assert all(
        any(color in c for color in ("red", "green", "blue", "yellow", "magenta", "cyan"))
        for c in harmony.captions
    )
    assert len(read_captions(coco_synth, "karpathy", "dataset_coco.json", ".", split="val").images) == 3


def test_synthetic_flickr30k_has_the_archive_layout(flickr_synth):
    folder = read_captions(
        flickr_synth, "flickr30k-token", "results_20130124.token", "flickr30k-images", dataset="flickr30k"
    )
    test = read_captions(flickr_synth, "karpathy", "dataset_flickr30k.json", "flickr30k-images", split="test")
    assert len(folder.images) == 8 + 2 + 2 and len(test.images) == 8
    assert len(folder.captions) == 5 * 12 and len(test.captions) == 5 * 8
    names = {p.name: i for i, p in enumerate(folder.images)}
    for index, path in enumerate(test.images):  # the same five captions under both files
        mine = [c for c, i in zip(test.captions, test.caption_image, strict=True) if i == index]
        theirs = [
            c for c, i in zip(folder.captions, folder.caption_image, strict=True) if i == names[path.name]
        ]
        assert mine == theirs


# --------------------------------------------------------------------------- tokenization


def test_truncation_cut_is_harmonys_tokenizer_and_eot_is_open_clips():
    """Cut keeps the first 77 ids of [SOT] + caption + [EOT]; eot is open_clip's (last kept id = end-of-text).

    Cut restates Harmony's data/utils.py SimpleTokenizer.__call__ (L141-L153). Short captions are the
    same either way.
    """
    from harmony_bench import load_backbone
    from harmony_bench.tasks.retrieval.zeroshot import tokenize

    backbone = load_backbone("vit-tiny-random")
    plain = SimpleTokenizer(context_length=77)
    sot, eot = plain.sot_token_id, plain.eot_token_id
    captions = ["a red circle on a noise background.", " ".join(["a big blue square"] * 30)]
    cut, truncated = tokenize(backbone, captions, "cut")
    assert truncated == 1
    for row, caption in zip(cut, captions, strict=True):
        ids = ([sot] + plain.encode(caption) + [eot])[:77]  # Harmony: tokens[:context_length], zero padded
        assert row.tolist() == ids + [0] * (77 - len(ids))
    assert eot not in cut[1].tolist()  # the long caption lost its end-of-text token, as in the repo
    ends, _ = tokenize(backbone, captions, "eot")
    assert ends[1, -1] == eot and torch.equal(ends[1, :-1], cut[1, :-1]) and torch.equal(ends[0], cut[0])


# --------------------------------------------------------------------------- end to end


def test_cli_run_writes_a_valid_record(coco_synth, flickr_synth, tmp_path):
    out = tmp_path / "records"
    argv = ["run", "--backbone", "vit-tiny-random", "--task", "retrieval-coco", "--preset", "smoke"]
    assert main([*argv, "--data-root", str(coco_synth), "--output", str(out)]) == 0
    (path,) = out.glob("*.json")
    record = json.loads(path.read_text())
    assert validate_record(record) == []
    assert record["status"]["state"] == "completed" and record["task"]["preset"] == "smoke"
    assert record["dataset"]["name"] == "coco-captions-synthetic" and record["dataset"]["synthetic"] is True
    for name in METRICS:
        assert 0.0 <= value(record, name) <= 100.0
    assert value(record, "data.images") == 12 and value(record, "data.captions") == 12 * 5 + 2
    i2t = [value(record, f"image_to_text.R@{k}") for k in (1, 5, 10)]
    t2i = [value(record, f"text_to_image.R@{k}") for k in (1, 5, 10)]
    assert value(record, "mean_recall") == pytest.approx((sum(i2t) + sum(t2i)) / 6)
    karpathy = [
        "--set",
        "split=test",
        "--set",
        "reader=karpathy",
        "--set",
        "annotations=dataset_flickr30k.json",
    ]
    flickr = run_cli("retrieval-flickr30k", flickr_synth, tmp_path / "flickr", *karpathy)
    assert value(flickr, "data.images") == 8 and flickr["task"]["config"]["split"] == "test"


def test_a_corrupt_image_fails_the_run_naming_the_file(coco_synth, tmp_path, capsys):
    import shutil

    from ._imagenet_util import truncate

    root = shutil.copytree(coco_synth, tmp_path / "root")
    broken = sorted((root / "val2017").iterdir())[2]
    truncate(broken)
    argv = ["run", "--backbone", "vit-tiny-random", "--task", "retrieval-coco", "--preset", "smoke"]
    assert main([*argv, "--data-root", str(root), "--output", str(tmp_path / "r")]) == 1
    (path,) = (tmp_path / "r").glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"]["state"] == "failed" and record["metrics"] == {}
    assert broken.name in record["status"]["error"]["message"]


def test_cli_refuses_before_running(coco_synth, tmp_path, capsys):
    base = ["run", "--task", "retrieval-coco", "--preset", "smoke", "--output", str(tmp_path / "r")]
    assert main([*base, "--backbone", "ibot-vit-s16-in1k", "--data-root", str(coco_synth)]) == 2
    assert "no text tower and image projection" in capsys.readouterr().err
    assert main([*base, "--backbone", "vit-tiny-random", "--data-root", str(tmp_path)]) == 2
    assert "captions_val2017.json is missing" in capsys.readouterr().err
    assert (
        main([*base, "--backbone", "vit-tiny-random", "--data-root", str(coco_synth), "--set", "truncate=x"])
        == 2
    )
    assert "truncate = 'x' is not allowed: must be one of 'cut', 'eot'" in capsys.readouterr().err
    vit_only = tmp_path / "main_vit_checkpoint.pth"
    torch.save(reference_vit().state_dict(), vit_only)
    assert main([*base, "--backbone", "harmony-vit-b16-cc3m", "--checkpoint", str(vit_only)]) == 2
    assert "image-text retrieval needs harmony-vit-b16-cc3m's text tower" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # a run that never started writes no record


def test_harmony_towers_are_used_in_their_contrastive_spaces(coco_synth, tmp_path, monkeypatch):
    """A tiny Harmony checkpoint in the repo's file layout: recalls equal those of hand-computed embeddings.

    Images: the normed class token (written out from the state dict) @ contrastive_projection; captions: the
    end-of-text token @ text_projection (a reference encoder in Harmony's layout); both L2-normalised.
    """
    teacher = reference_vit()
    projection = torch.randn(64, 16, generator=torch.Generator().manual_seed(4)) * 0.5
    main_vit = {**teacher.state_dict(), "contrastive_projection": projection}
    text = perturb(text_reference("harmony", vocab=49409), scale=0.3, seed=5)
    torch.save(main_vit, tmp_path / "main_vit_checkpoint.pth")
    torch.save(text.state_dict(), tmp_path / "main_text_checkpoint.pth")
    cards = tmp_path / "cards"
    name = write_card(
        cards,
        "harmony-vit-b16-cc3m",
        "tiny-harmony",
        architecture={"overrides": {**TINY_VIT, "qkv_bias": True}, "projection_dim": 16},
        preprocessing=TINY_PREPROCESSING,
        text_tower={**TINY_TEXT, "vocab_size": 49409},
        checkpoint={"text_source": str(tmp_path / "main_text_checkpoint.pth")},
    )
    use_cards(monkeypatch, cards)
    checkpoint = ["--checkpoint", str(tmp_path / "main_vit_checkpoint.pth")]
    record = run_cli("retrieval-coco", coco_synth, tmp_path / "records", *checkpoint, backbone=name)

    data = read_captions(coco_synth, "coco-captions", "annotations/captions_val2017.json", "val2017")
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    transform = eval_transform(preprocessing_for(TINY_PREPROCESSING | imagenet, None))
    pixels = torch.stack([transform(Image.open(p).convert("RGB")) for p in data.images])
    with torch.no_grad():
        images = F.normalize(dino_style_vit_cls(main_vit, pixels, heads=2, patch=8) @ projection, dim=-1)
        texts = F.normalize(text(SimpleTokenizer(context_length=77)(data.captions)), dim=-1)
    expected = reference_metrics((images @ texts.T).numpy(), *maps(data.caption_image))
    for metric_name in METRICS:
        assert value(record, metric_name) == pytest.approx(expected[metric_name], abs=1e-6), metric_name
    assert len({value(record, m) for m in METRICS}) > 2  # not a degenerate all-equal result


def test_clip_openai_state_dict_card_runs_on_synthetic_data(coco_synth, tmp_path, monkeypatch):
    """clip-vit-b16-openai-sd's layout and converter (a tiny copy of its card and an OpenAI-layout file)."""
    from .test_models_clip import OVERRIDES, tiny_open_clip

    reference = tiny_open_clip(quick_gelu=True)
    torch.save(reference.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    cards = tmp_path / "cards"
    overrides = {k: v for k, v in OVERRIDES.items() if k != "num_classes"}
    name = write_card(
        cards,
        "clip-vit-b16-openai-sd",
        "tiny-clip-openai-sd",
        architecture={
            "overrides": {**overrides, "pre_norm": True, "act_layer": "quick_gelu"},
            "projection_dim": 16,
        },
        preprocessing=TINY_PREPROCESSING,
        text_tower=TINY_TEXT,
    )
    use_cards(monkeypatch, cards)
    checkpoint = ["--checkpoint", str(tmp_path / "open_clip_pytorch_model.bin")]
    record = run_cli("retrieval-coco", coco_synth, tmp_path / "records", *checkpoint, backbone=name)
    assert record["backbone"]["card"]["checkpoint"]["converter"] == "openai-clip"
    assert value(record, "data.captions_truncated") == 0
    with torch.no_grad():  # the record's numbers are those of open_clip's own encoders
        data = read_captions(coco_synth, "coco-captions", "annotations/captions_val2017.json", "val2017")
        mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
        transform = eval_transform(
            {**TINY_PREPROCESSING, "interpolation": "bicubic", "mean": mean, "std": std}
        )
        pixels = torch.stack([transform(Image.open(p).convert("RGB")) for p in data.images])
        images = F.normalize(reference.encode_image(pixels), dim=-1)
        texts = F.normalize(reference.encode_text(SimpleTokenizer(context_length=77)(data.captions)), dim=-1)
    expected = reference_metrics((images @ texts.T).numpy(), *maps(data.caption_image))
    assert value(record, "mean_recall") == pytest.approx(expected["mean_recall"], abs=1e-6)


# --------------------------------------------------------------------------- the protocol files


def config_paths(config: dict, prefix: str = "") -> set[str]:
    paths = set()
    for key, item in config.items():
        paths.add(prefix + key)
        if isinstance(item, dict):
            paths |= config_paths(item, f"{prefix}{key}.")
    return paths


@pytest.mark.parametrize("task", ["retrieval-coco", "retrieval-flickr30k"])
def test_protocol_files_follow_the_sources_contract(task):
    """Every source key is a config path, every top-level config key has a source, presets set known keys."""
    from harmony_bench.protocols import get_task

    spec = get_task(task)
    paths = config_paths(spec.config)
    assert set(spec.sources) <= paths and set(spec.config) <= set(spec.sources)
    assert set(spec.presets) == {"harmony", "karpathy", "smoke"} and spec.default_preset == "harmony"
    for name, overrides in spec.presets.items():
        assert config_paths(overrides) <= paths, name
        assert set(spec.preset_docs[name].get("sources", {})) <= paths, name
        assert spec.preset_docs[name]["summary"]
    assert spec.resolve_config("karpathy")["split"] == "test"
    assert "L336-L383 get_retrieval_metrics" in spec.sources["recall_at"]
