import pytest

from harmony_bench.registry import Registry, UnknownNameError, import_object


def test_lookup_and_lazy_import():
    registry: Registry[object] = Registry("thing")
    registry.register("join", "os.path:join")
    registry.register("direct", 42)
    import os.path

    assert registry.get("join") is os.path.join
    assert registry.get("direct") == 42
    assert registry.names() == ["direct", "join"]
    assert "join" in registry and len(registry) == 2


def test_unknown_name_suggests_and_lists_choices():
    registry: Registry[int] = Registry("backbone")
    for name in ["clip-vit-b16-openai", "ibot-vit-b16-in1k", "mae-vit-b16-in1k"]:
        registry.register(name, 1)
    with pytest.raises(UnknownNameError) as info:
        registry.get("ibot-vit-b16-in1")
    message = str(info.value)
    assert "Unknown backbone 'ibot-vit-b16-in1'" in message
    assert "Did you mean 'ibot-vit-b16-in1k'" in message
    assert "mae-vit-b16-in1k" in message  # the full list of choices


def test_duplicate_registration_fails_loudly():
    registry: Registry[int] = Registry("task")
    registry.register("ade20k", 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("ade20k", 2)
    registry.register("ade20k", 3, replace=True)
    assert registry.get("ade20k") == 3


def test_bad_lazy_spec():
    with pytest.raises(ValueError, match="module:attr"):
        import_object("no_colon_here")
