"""Result records: layout, schema validation, atomic never-overwriting writes, clear errors, provenance."""

import copy
import errno
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from harmony_bench.provenance import collect_hardware, collect_software, git_state, sha256_file
from harmony_bench.results import (
    SCHEMA_VERSION,
    RecordError,
    build_record,
    config_hash,
    flatten_metrics,
    iter_records,
    load_record,
    load_schema,
    metric,
    record_filename,
    validate_file,
    validate_record,
    write_record,
)
from harmony_bench.results import record as record_module

START = datetime(2025, 1, 31, 12, 0, 0, 250000, tzinfo=timezone.utc)
END = START + timedelta(minutes=3, seconds=2.5)
LIBRARIES = {
    "torch",
    "torchvision",
    "timm",
    "open_clip_torch",
    "mmcv",
    "mmengine",
    "mmsegmentation",
    "mmdet",
    "pandas",
    "numpy",
    "harmony-bench",
}


def make_record(error=None, backbone="vit-tiny-random", start=START, end=END, **task_overrides):
    task = {
        "name": "ade20k",
        "protocol_version": "1",
        "preset": "smoke",
        "config": {"crop": [512, 512], "schedule": {"iters": 160000, "lr": 1e-4}, "tta": False},
        **task_overrides,
    }
    return build_record(
        backbone={
            "name": backbone,
            "card": {
                "name": backbone,
                "family": "vit",
                "architecture": {"timm_model": "vit_tiny_patch16_224"},
            },
            "checkpoint": {"source": None, "sha256": None, "random_init": True},
        },
        task=task,
        dataset={
            "name": "ade20k",
            "root": "/data/ade",
            "synthetic": True,
            "manifest": {"kind": "ade20k", "n": 8},
        },
        seed=3,
        metrics={
            "mIoU": metric(41.5, unit="%"),
            "aAcc": metric(80.25, unit="%"),
            "loss": metric(0.75, higher_is_better=False),
            "per_class_iou": {"wall": metric(72.0, unit="%"), "sky": metric(float("nan"), unit="%")},
        },
        start=start,
        end=end,
        error=error,
        output_dir="/tmp/work/run",
        artifacts={"log": "/tmp/work/run/run.log"},
    )


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --------------------------------------------------------------------------- layout and round trip


def test_round_trip_build_write_load(tmp_path):
    record = make_record()
    assert validate_record(record) == []
    path = write_record(record, tmp_path / "records")
    assert path.parent == tmp_path / "records" and path.suffix == ".json"
    assert load_record(path) == record
    assert validate_file(path) == []
    assert listing(tmp_path / "records") == [path.name]  # no temp file left behind


def test_record_layout():
    record = make_record()
    assert record["schema_version"] == SCHEMA_VERSION == 1
    assert re.fullmatch(r"[0-9a-f]{32}", record["record_id"])
    assert record["status"] == {"state": "completed", "error": None}
    assert record["task"]["config_hash"] == config_hash(record["task"]["config"])
    assert record["timing"] == {
        "start": "2025-01-31T12:00:00.250000Z",
        "end": "2025-01-31T12:03:02.750000Z",
        "duration_s": 182.5,
    }
    assert record["dataset"]["synthetic"] is True
    assert record["metrics"]["per_class_iou"]["sky"] == {"value": None, "higher_is_better": True, "unit": "%"}
    assert set(record["hardware"]) == {"cpu_model", "cpu_count", "gpu_model", "gpu_count", "memory_gb"}
    assert set(record["software"]["libraries"]) == LIBRARIES
    assert set(record["git"]) == {"commit", "dirty"}
    json.dumps(record, allow_nan=False)  # strict JSON throughout


def test_schema_ships_as_package_data_and_is_valid():
    from jsonschema import Draft202012Validator

    schema = load_schema(1)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_failed_run_record(tmp_path):
    def task_body():
        raise RuntimeError("CUDA out of memory while evaluating")

    try:
        task_body()
    except RuntimeError as exc:
        error = exc
    record = make_record(error=error)
    assert record["status"]["state"] == "failed"
    err = record["status"]["error"]
    assert err["type"] == "RuntimeError"
    assert err["message"] == "CUDA out of memory while evaluating"
    assert (
        err["traceback"].startswith("Traceback (most recent call last)") and "task_body" in err["traceback"]
    )
    assert load_record(write_record(record, tmp_path)) == record


def test_status_and_error_must_agree():
    completed_with_error = make_record()
    completed_with_error["status"]["error"] = {"type": "X", "message": "m", "traceback": "t"}
    assert any(p.startswith("status.error:") for p in validate_record(completed_with_error))
    failed_without_error = make_record()
    failed_without_error["status"]["state"] = "failed"
    assert any(p.startswith("status.error:") for p in validate_record(failed_without_error))
    failed_incomplete = make_record(error=ValueError("x"))
    del failed_incomplete["status"]["error"]["traceback"]
    assert "status.error: 'traceback' is a required property" in validate_record(failed_incomplete)


def test_random_init_means_no_checkpoint():
    record = make_record()
    record["backbone"]["checkpoint"]["source"] = "hf-hub:org/model"
    assert any(p.startswith("backbone.checkpoint.source:") for p in validate_record(record))
    record["backbone"]["checkpoint"]["random_init"] = False
    assert validate_record(record) == []


def test_build_record_normalises_python_values():
    record = make_record(config={"root": Path("/data"), "size": (224, 224), "classes": {0: "wall"}})
    assert record["task"]["config"] == {"root": "/data", "size": [224, 224], "classes": {"0": "wall"}}
    assert record["task"]["protocol_version"] == "1"
    assert validate_record(record) == []
    with pytest.raises(TypeError, match=r"task\.config\.model"):
        make_record(config={"model": object()})


# --------------------------------------------------------------------------- atomic, never-overwriting writes


def test_failed_dump_leaves_no_file(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(json, "dump", boom)
    with pytest.raises(OSError, match="No space left"):
        write_record(make_record(), tmp_path)
    assert listing(tmp_path) == []


def test_failed_link_leaves_no_file(tmp_path, monkeypatch):
    def boom(src, dst):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "link", boom)
    with pytest.raises(OSError, match="I/O error"):
        write_record(make_record(), tmp_path)
    assert listing(tmp_path) == []


def test_filesystem_without_hard_links_still_writes(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    record = make_record()
    path = write_record(record, tmp_path)
    assert listing(tmp_path) == [path.name] and load_record(path) == record


def test_same_timestamp_gives_two_files(tmp_path):
    first, second = make_record(), make_record()
    assert first["timing"] == second["timing"]
    paths = {write_record(first, tmp_path), write_record(second, tmp_path)}
    assert len(paths) == 2 and len(listing(tmp_path)) == 2


def _write_in_a_process(args: tuple[Path, dict]) -> str:
    out, record = args
    try:
        return str(write_record(record, out))
    except FileExistsError:
        return "exists"


def test_parallel_writers_never_clobber_or_tear_a_record(tmp_path):
    """Processes writing at once: distinct records all land whole; one record written twice lands once."""
    import multiprocessing

    pool = multiprocessing.get_context("fork").Pool(6)
    try:
        distinct = [make_record() for _ in range(12)]  # same timing: only the record id differs
        paths = pool.map(_write_in_a_process, [(tmp_path / "a", r) for r in distinct])
        same = make_record()
        outcomes = pool.map(_write_in_a_process, [(tmp_path / "b", same)] * 6)
    finally:
        pool.close()
        pool.join()
    assert len(set(paths)) == 12 and sorted(load_record(Path(p))["record_id"] for p in paths) == sorted(
        r["record_id"] for r in distinct
    )
    (written,) = [o for o in outcomes if o != "exists"]
    assert outcomes.count("exists") == 5 and load_record(Path(written)) == same
    assert (
        listing(tmp_path / "a") == sorted(Path(p).name for p in paths) and len(listing(tmp_path / "b")) == 1
    )


def test_existing_record_is_never_overwritten(tmp_path, monkeypatch):
    record = make_record()
    path = write_record(record, tmp_path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_record(record, tmp_path)  # same record again: same file name
    monkeypatch.setattr(record_module, "record_filename", lambda r: path.name)
    with pytest.raises(FileExistsError):
        write_record(make_record(), tmp_path)  # a different record forced onto the same name
    assert path.read_bytes() == before
    assert listing(tmp_path) == [path.name]


def test_invalid_record_is_refused(tmp_path):
    record = make_record()
    record["status"]["state"] = "done"
    with pytest.raises(RecordError, match=r"status\.state: 'done' is not one of \['completed', 'failed'\]"):
        write_record(record, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_record_filename_is_readable_and_safe():
    record = make_record(backbone="org/model:v2 (eva)", name="coco det")
    name = record_filename(record)
    assert name == f"org-model-v2-eva__coco-det__seed3__20250131T120000Z__{record['record_id'][:8]}.json"


# --------------------------------------------------------------------------- malformed files


def _write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    return path


def _mutated(change):
    record = copy.deepcopy(make_record())
    change(record)
    return record


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("truncated", r"^not valid JSON: .* at line \d+ column \d+$"),
        ("wrong_type", r"^seed: 'three' is not of type 'integer'$"),
        ("missing_field", r"^\(root\): 'metrics' is a required property$"),
        ("bad_status", r"^status\.state: 'done' is not one of \['completed', 'failed'\]$"),
        ("unknown_version", r"^schema_version: 2 is not supported \(supported versions: 1\)"),
        ("not_object", r"^\(root\): expected a JSON object \(a result record\), got an array$"),
        ("bad_metric", r"^metrics\.mIoU\.value: '41\.5' is not of type 'number', 'null'$"),
        ("edited_config", r"^task\.config_hash: .* does not match task\.config"),
        ("nan", r"^not valid JSON: non-standard JSON constant NaN$"),
        ("not_utf8", r"^not UTF-8 text: byte 0xff at offset \d+$"),
        ("empty", r"^empty file"),
        ("missing_file", r"^file not found$"),
    ],
)
def test_malformed_files_give_clear_errors(tmp_path, case, expected):
    path = tmp_path / f"{case}.json"
    good = json.dumps(make_record(), indent=2)
    if case == "truncated":
        path.write_text(good[: len(good) // 2], encoding="utf-8")
    elif case == "wrong_type":
        _write_json(path, _mutated(lambda r: r.update(seed="three")))
    elif case == "missing_field":
        _write_json(path, _mutated(lambda r: r.pop("metrics")))
    elif case == "bad_status":
        _write_json(path, _mutated(lambda r: r["status"].update(state="done")))
    elif case == "unknown_version":
        _write_json(path, _mutated(lambda r: r.update(schema_version=2)))
    elif case == "not_object":
        _write_json(path, [1, 2])
    elif case == "bad_metric":
        _write_json(path, _mutated(lambda r: r["metrics"]["mIoU"].update(value="41.5")))
    elif case == "edited_config":
        _write_json(path, _mutated(lambda r: r["task"]["config"].update(tta=True)))
    elif case == "nan":
        path.write_text(good.replace('"duration_s": 182.5', '"duration_s": NaN'), encoding="utf-8")
    elif case == "not_utf8":
        path.write_bytes(good.encode("utf-8").replace(b'"ade20k"', b'"ade\xff"', 1))
    elif case == "empty":
        path.write_text("", encoding="utf-8")
    problems = validate_file(path)
    assert len(problems) == 1 and re.search(expected, problems[0]), problems
    with pytest.raises(RecordError) as info:
        load_record(path)
    assert str(path) in str(info.value) and problems[0] in str(info.value)


def test_every_problem_is_reported_sorted_by_path():
    record = make_record()
    record["status"]["state"] = "done"
    record["seed"] = "three"
    record["hardware"]["gpu_count"] = -1
    problems = validate_record(record)
    assert [p.split(":")[0] for p in problems] == ["hardware.gpu_count", "seed", "status.state"]


def test_python_objects_that_are_not_json_are_reported():
    record = make_record()
    record["metrics"]["mIoU"]["value"] = math.inf
    record["dataset"]["root"] = Path("/data")
    assert validate_record(record) == [
        f"dataset.root: {type(Path('/data')).__name__} is not a JSON type",
        "metrics.mIoU.value: inf is not valid JSON (use null for a value that could not be computed)",
    ]


def test_iter_records_reports_malformed_and_skips_work_dirs(tmp_path):
    out = tmp_path / "records"
    good = [write_record(make_record(), out), write_record(make_record(error=KeyError("k")), out / "sub")]
    (out / "broken.json").write_text('{"schema_version": 1,', encoding="utf-8")
    (out / ".partial.json.tmp").write_text("{", encoding="utf-8")
    (out / "work" / "run").mkdir(parents=True)
    (out / "work" / "run" / "scalars.json").write_text('{"loss": 1}', encoding="utf-8")
    shutil.copy(good[0], out / "copy.json")
    records, bad = iter_records([out, good[0]])  # a file inside a given directory is read once
    assert len(records) == 2 and {r["status"]["state"] for r in records} == {"completed", "failed"}
    assert str(good[1]) in {r["_path"] for r in records}
    problems = {p.name: msgs for p, msgs in bad}
    assert len(bad) == 2 and problems.pop("broken.json")[0].startswith("not valid JSON")
    # the original and its copy share a record_id: whichever is read second is reported, naming the first
    ((second, (message,)),) = problems.items()
    assert second in {"copy.json", good[0].name} and "a copied record" in message


def test_iter_records_reports_missing_paths(tmp_path):
    records, bad = iter_records([tmp_path / "nope.json"])
    assert records == [] and bad == [(tmp_path / "nope.json", ["file not found"])]


# --------------------------------------------------------------------------- metrics and config hash


def test_config_hash_ignores_key_order_and_sees_values():
    a = {"lr": 1e-4, "schedule": {"iters": 10, "warmup": 2}, "crop": [512, 512]}
    b = {"crop": [512, 512], "schedule": {"warmup": 2, "iters": 10}, "lr": 1e-4}
    assert config_hash(a) == config_hash(b) == config_hash({**b, "crop": (512, 512)})
    assert re.fullmatch(r"[0-9a-f]{64}", config_hash(a))
    assert config_hash(a) != config_hash({**a, "lr": 2e-4})
    assert config_hash(a) != config_hash({**a, "schedule": {"iters": 11, "warmup": 2}})
    assert config_hash(a) != config_hash({**a, "crop": [224, 512]})
    canonical = json.dumps(a, sort_keys=True, separators=(",", ":")).encode()
    assert config_hash(a) == hashlib.sha256(canonical).hexdigest()


def test_metric_helper():
    assert metric(81) == {"value": 81.0, "higher_is_better": True}
    assert metric(0.5, False, unit="nats") == {"value": 0.5, "higher_is_better": False, "unit": "nats"}
    assert metric(float("nan"))["value"] is None and metric(None)["value"] is None
    np = pytest.importorskip("numpy")
    value = metric(np.float32(0.25))["value"]
    assert value == 0.25 and type(value) is float
    with pytest.raises(TypeError):
        metric(True)
    with pytest.raises(TypeError):
        metric("81.2")


def test_flatten_metrics():
    metrics = {
        "top1": metric(81.2),
        "per_class_iou": {"wall": metric(72.0), "sky": metric(None)},
        "by_size": {"small": {"ap": metric(20.0)}},
        "empty_group": {},
    }
    assert flatten_metrics(metrics) == {
        "top1": 81.2,
        "per_class_iou.wall": 72.0,
        "per_class_iou.sky": None,
        "by_size.small.ap": 20.0,
    }
    assert list(flatten_metrics(metrics)) == [
        "top1",
        "per_class_iou.wall",
        "per_class_iou.sky",
        "by_size.small.ap",
    ]
    with pytest.raises(TypeError, match="'top1'"):
        flatten_metrics({"top1": 81.2})


def test_metric_names_may_not_contain_dots_or_reserved_words():
    record = make_record()
    record["metrics"]["per_class_iou"]["a.b"] = metric(1.0)
    record["metrics"]["group"] = {"unit": metric(1.0)}
    problems = validate_record(record)
    assert any(p.startswith("metrics.per_class_iou:") and "'a.b'" in p for p in problems), problems
    assert any(p.startswith("metrics.group:") and "'unit'" in p for p in problems), problems


# --------------------------------------------------------------------------- provenance


def test_collect_software_does_not_import_mm_stack():
    probe = (
        "import sys\n"
        "from harmony_bench.provenance import collect_hardware, collect_software\n"
        "software = collect_software()\n"
        "collect_hardware()\n"
        "heavy = {'mmcv', 'mmdet', 'mmseg', 'mmengine', 'torch'}\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "assert 'mmcv' not in sys.modules, heavy\n"
        "assert not heavy, heavy\n"
        "print(sorted(software['libraries']))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert set(eval(result.stdout)) == LIBRARIES


def test_collect_software_and_hardware_shapes():
    software = collect_software()
    assert software["python"] == ".".join(map(str, sys.version_info[:3]))
    assert all(v is None or isinstance(v, str) for v in software["libraries"].values())
    hardware = collect_hardware()
    assert hardware["cpu_count"] == os.cpu_count() and hardware["gpu_count"] >= 0


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_state(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}  # not a checkout
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q", str(tmp_path)], check=True)
    assert git_state(tmp_path) == {"commit": None, "dirty": False}  # no commit yet
    (tmp_path / "a.txt").write_text("1")
    subprocess.run([*git, "add", "a.txt"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], cwd=tmp_path, check=True)
    state = git_state(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", state["commit"]) and state["dirty"] is False
    (tmp_path / "untracked.json").write_text("{}")  # e.g. a record written into the checkout
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "a.txt").write_text("2")
    assert git_state(tmp_path) == {"commit": state["commit"], "dirty": True}


def test_sha256_file(tmp_path):
    data = os.urandom(10_000)
    path = tmp_path / "ckpt.pth"
    path.write_bytes(data)
    assert sha256_file(path, chunk=1000) == hashlib.sha256(data).hexdigest()
