"""The protocol file is the schema: override keys must exist, values must fit defaults and constraints."""

import textwrap

import pytest

from harmony_bench.protocol_schema import (
    Constraint,
    ProtocolKeyError,
    ProtocolValueError,
    check_config,
    merge_overrides,
)
from harmony_bench.protocols import get_task, task_registry
from harmony_bench.yaml_io import DataFileError

DEFAULTS = {
    "knn": {"ks": [10, 20], "temperature": 0.07, "report_k": 20},
    "transform": {"resize": 256, "crop": 224},
    "train": {"learning_rates": [1.0e-5, 0.1], "epochs": 100, "amp": "none", "resume": True},
    "cfg_options": {},
    "heads": None,
}


def test_unknown_key_is_refused_naming_the_closest_real_one():
    with pytest.raises(
        ProtocolKeyError,
        match=r"unknown key 'knn\.temprature' in --set \(did you mean 'knn\.temperature'\?\)",
    ):
        merge_overrides(DEFAULTS, {"knn": {"temprature": 0.1}}, "--set")
    with pytest.raises(ProtocolKeyError, match="'train.learning_rate'.*did you mean 'train.learning_rates'"):
        merge_overrides(DEFAULTS, {"train.learning_rate": [0.1]}, "--set")  # a dotted key is expanded
    merged = merge_overrides(DEFAULTS, {"knn.temperature": 0.1}, "--set")
    assert merged["knn"] == {"ks": [10, 20], "temperature": 0.1, "report_k": 20}


def test_a_plus_adds_a_key_on_purpose_and_free_form_keys_take_anything():
    merged = merge_overrides(DEFAULTS, {"+knn": {"+extra": 1}, "+new.deep": 2}, "--set")
    assert merged["knn"]["extra"] == 1 and merged["new"] == {"deep": 2}
    # below a {} or null default anything goes, and mmengine's dotted keys stay one key
    merged = merge_overrides(
        DEFAULTS, {"cfg_options": {"model.decode_head.channels": 32}, "heads": {"x": 1}}, "x"
    )
    assert merged["cfg_options"] == {"model.decode_head.channels": 32} and merged["heads"] == {"x": 1}
    merged = merge_overrides(merged, {"cfg_options.optim_wrapper.optimizer.lr": 0.5}, "x", DEFAULTS)
    assert merged["cfg_options"] == {"model.decode_head.channels": 32, "optim_wrapper.optimizer.lr": 0.5}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"knn": {"temperature": "hot"}},
            r"knn\.temperature = 'hot' is not allowed: expected a number \(default 0\.07\)",
        ),
        ({"train": {"epochs": 1.5}}, r"train\.epochs = 1\.5 is not allowed: expected an integer"),
        (
            {"train": {"resume": "yes please"}},
            r"train\.resume = 'yes please' is not allowed: expected true or false",
        ),
        ({"train": {"learning_rates": 0.1}}, r"train\.learning_rates = 0\.1 is not allowed: expected a list"),
        ({"train": {"learning_rates": [0.1, "x"]}}, r"train\.learning_rates\[1\] = 'x' is not allowed"),
        ({"knn": {"temperature": None}}, r"knn\.temperature = null is not allowed"),
        ({"knn": 5}, r"knn = 5 is not allowed: it is a group of settings"),
    ],
)
def test_values_must_have_the_type_of_their_default(override, message):
    merged = merge_overrides(DEFAULTS, override, "--set")
    with pytest.raises(ProtocolValueError, match=message):
        check_config(DEFAULTS, merged, {}, "toy")


def test_numbers_yaml_reads_as_strings_are_numbers_and_null_defaults_take_anything():
    merged = merge_overrides(DEFAULTS, {"knn": {"temperature": "1e-2"}, "train": {"epochs": "1e2"}}, "--set")
    checked = check_config(DEFAULTS, merged, {}, "toy")
    assert checked["knn"]["temperature"] == 0.01 and checked["train"]["epochs"] == 100
    assert isinstance(checked["train"]["epochs"], int)
    assert check_config(DEFAULTS, {**DEFAULTS, "heads": [1, "a"]}, {}, "toy")["heads"] == [1, "a"]


def test_constraints_ranges_choices_items_and_nullable():
    rules = {
        "knn.temperature": Constraint.parse({"gt": 0}, "t"),
        "knn.ks": Constraint.parse({"items": {"min": 1}, "min_items": 1}, "t"),
        "train.learning_rates": Constraint.parse({"items": {"gt": 0}}, "t"),
        "train.amp": Constraint.parse({"choices": ["none", "bf16", "fp16"]}, "t"),
        "transform.resize": Constraint.parse({"type": "int", "min": 1, "nullable": True}, "t"),
    }
    bad = [
        ({"knn": {"temperature": 0}}, r"knn\.temperature = 0 is not allowed: must be > 0"),
        ({"knn": {"ks": []}}, r"knn\.ks = \[\] is not allowed: needs at least 1 item"),
        ({"knn": {"ks": [5, 0]}}, r"knn\.ks\[1\] = 0 is not allowed: must be >= 1"),
        (
            {"train": {"learning_rates": [-0.1]}},
            r"train\.learning_rates\[0\] = -0\.1 is not allowed: must be > 0",
        ),
        (
            {"train": {"amp": "fp8"}},
            r"train\.amp = 'fp8' is not allowed: must be one of 'none', 'bf16', 'fp16'",
        ),
        ({"transform": {"resize": 0}}, r"transform\.resize = 0 is not allowed: must be >= 1"),
    ]
    for override, message in bad:
        with pytest.raises(ProtocolValueError, match=message):
            check_config(DEFAULTS, merge_overrides(DEFAULTS, override, "x"), rules, "toy")
    ok = merge_overrides(DEFAULTS, {"transform": {"resize": None}, "train": {"amp": "bf16"}}, "x")
    assert check_config(DEFAULTS, ok, rules, "toy")["transform"]["resize"] is None


def _task_file(tmp_path, monkeypatch, body: str) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir(exist_ok=True)
    head = """
    name: toy
    description: a toy protocol
    runner: "nowhere:run"
    protocol_version: "1"
    dataset: {name: toy}
    metrics: [{name: score, higher_is_better: true}]
    """
    (tasks / "toy.yaml").write_text(textwrap.dedent(head) + textwrap.dedent(body))
    monkeypatch.setenv("HARMONY_BENCH_TASKS", str(tasks))
    task_registry.cache_clear()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "config: {knn: {temperature: 0.07}}\npresets: {smoke: {knn: {temprature: 1.0}}}\n",
            r"toy\.yaml: unknown key 'knn\.temprature' in preset 'smoke' "
            r"\(did you mean 'knn\.temperature'\?\).*every key a preset sets must exist in config",
        ),
        (
            "config: {knn: {temperature: 0.07}}\npresets: {smoke: {knn: {temperature: cold}}}\n",
            r"toy\.yaml: preset 'smoke': toy: knn\.temperature = 'cold' is not allowed",
        ),
        (
            "config: {knn: {temperature: 0.07}}\npresets: {smoke: {knn: {+extra: 1}}}\n",
            r"toy\.yaml: preset 'smoke' adds '\+extra': a preset may only set keys of config",
        ),
        (
            "config: {knn: {temperature: 0.07}}\nconstraints: {knn.temprature: {gt: 0}}\n",
            r"toy\.yaml: constraint for 'knn\.temprature', which is not a key of config",
        ),
        (
            "config: {knn: {temperature: 0.07}}\nconstraints: {knn.temperature: {above: 0}}\n",
            r"unknown constraint keys \['above'\]",
        ),
        (
            "config: {knn: {temperature: 0.07}}\nconstraints: {knn.temperature: {gt: 0}}\n"
            "presets: {smoke: {knn: {temperature: -1.0}}}\n",
            r"preset 'smoke'.*knn\.temperature = -1\.0 is not allowed: must be > 0",
        ),
    ],
)
def test_protocol_files_are_checked_when_read(tmp_path, monkeypatch, body, message):
    _task_file(tmp_path, monkeypatch, body)
    with pytest.raises(DataFileError, match=message):
        get_task("toy")


def test_every_shipped_preset_resolves_and_the_important_keys_are_constrained():
    registry = task_registry()
    for name in registry.names():
        spec = registry.get(name)
        for preset in spec.presets:
            spec.resolve_config(preset)  # raises on a bad key or value
    linear = get_task("imagenet-linear")
    with pytest.raises(
        ProtocolValueError, match=r"train\.learning_rates\[0\] = -0\.1 is not allowed: must be > 0"
    ):
        linear.resolve_config("smoke", {"train": {"learning_rates": [-0.1]}})
    with pytest.raises(ProtocolValueError, match=r"knn\.temperature = 0 is not allowed: must be > 0"):
        get_task("imagenet-knn").resolve_config("smoke", {"knn": {"temperature": 0}})
    with pytest.raises(ProtocolValueError, match=r"amp = 'fp8' is not allowed: must be one of"):
        get_task("imagenet-finetune").resolve_config("smoke", {"amp": "fp8"})
    with pytest.raises(ProtocolValueError, match=r"schedule\.epochs = 0 is not allowed: must be >= 1"):
        get_task("imagenet-finetune").resolve_config("smoke", {"schedule": {"epochs": 0}})


def test_a_suite_set_with_an_unknown_key_is_refused_when_the_suite_is_read(tmp_path):
    from harmony_bench.suites import load_suite

    suite = tmp_path / "s.yaml"
    suite.write_text(
        textwrap.dedent("""
        name: s
        description: a suite with a typo
        backbones: {vit-tiny-random: }
        tasks: [{name: imagenet-knn, preset: smoke, set: {knn: {temprature: 0.1}}}]
        """)
    )
    with pytest.raises(DataFileError, match=r"s\.yaml: task 'imagenet-knn': unknown key 'knn\.temprature'"):
        load_suite(suite)
