"""`import harmony_bench` and the CLI's help must never pull in the OpenMMLab stack."""

import subprocess
import sys

HEAVY = ("mmcv", "mmdet", "mmseg", "mmengine")


def modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_import_does_not_load_mm_stack():
    loaded = modules_after("import harmony_bench")
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_cli_help_and_list_do_not_load_mm_stack():
    code = (
        "from harmony_bench.cli import main\n"
        "main(['list', 'backbones'])\nmain(['list', 'tasks'])\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    )
    loaded = modules_after(code)
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]
