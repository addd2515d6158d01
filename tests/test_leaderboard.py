"""Leaderboard: files generated from hand-made records, deterministic, `--check` catches staleness, and the
HTML page works in a real headless browser (Debian's chromium, driven over the DevTools protocol)."""

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from harmony_bench.cli import main
from harmony_bench.leaderboard import build_leaderboard
from tests.test_tables import make_record, top1

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture
def board(tmp_path):
    """Records of three backbones on two tasks (one with 2 seeds, one with a failed run) and an output dir."""
    recs, out = tmp_path / "records", tmp_path / "board"
    for seed, value in enumerate([81.0, 83.0]):
        make_record(recs, "alpha", "imagenet-linear", seed, top1(value))
    make_record(recs, "beta", "imagenet-linear", 0, top1(85.5))
    make_record(recs, "gamma", "imagenet-linear", 0, top1(79.0))
    make_record(recs, "gamma", "imagenet-linear", 1, None)
    make_record(recs, "alpha", "ade20k", 0, {"mIoU": {"value": 44.0, "higher_is_better": True}})
    make_record(recs, "beta", "ade20k", 0, {"mIoU": {"value": 41.0, "higher_is_better": True}})
    return recs, out


def _cli(recs, out, *extra):
    return main(["leaderboard", "--records", str(recs), "--out", str(out), *extra])


def test_generates_markdown_html_and_figures(board):
    recs, out = board
    assert _cli(recs, out) == 0
    md = (out / "LEADERBOARD.md").read_text()
    assert "**85.50 (n=1)**" in md and "82.00 ± 1.41 (n=2)" in md and "79.00 (n=1, 1 failed)" in md
    links = [line for line in md.splitlines() if line.startswith("| alpha")][0]
    for target in links.split("](")[1:]:
        assert (out / target.split(")")[0]).is_file()  # every record link resolves
    assert "## Published comparison tables" in md and "### [1] SLIP (arXiv 2112.12750)" in md
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == sorted(
        f"{stem}.{fmt}"
        for stem in ("ade20k-miou-v1-paper", "imagenet-linear-top1-v1-paper", "heatmap")
        for fmt in ("png", "svg")
    )
    assert (out / "figures" / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "leaderboard.html").read_text()
    assert "<script" in html and "data:image/svg+xml;base64," in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # self-contained


def test_generation_is_deterministic(board):
    recs, out = board
    first, _ = build_leaderboard([recs], out)
    second, _ = build_leaderboard([recs], out)
    assert first.keys() == second.keys() and all(first[k] == second[k] for k in first)


def test_check_catches_stale_files(board, capsys):
    recs, out = board
    assert _cli(recs, out) == 0
    assert _cli(recs, out, "--check") == 0
    make_record(recs, "delta", "ade20k", 0, {"mIoU": {"value": 50.0, "higher_is_better": True}})
    assert _cli(recs, out, "--check") == 1
    err = capsys.readouterr().err
    assert "LEADERBOARD.md: out of date" in err and "leaderboard.html: out of date" in err
    assert _cli(recs, out) == 0 and _cli(recs, out, "--check") == 0
    (out / "figures" / "old-task.svg").write_text("<svg/>")
    assert _cli(recs, out, "--check") == 1
    assert "old-task.svg: no longer generated" in capsys.readouterr().err


def test_versions_order_numerically_and_dropped_duplicates_are_noted(tmp_path):
    recs, out = tmp_path / "records", tmp_path / "board"
    for version in ("10", "9"):
        make_record(recs, "alpha", "imagenet-linear", 0, top1(80.0), version=version)
    make_record(recs, "alpha", "imagenet-linear", 0, top1(82.0), version="9", later=1)  # a rerun of seed 0
    assert _cli(recs, out) == 0
    md = (out / "LEADERBOARD.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| backbone"))
    assert header.index("[v9, paper]") < header.index("[v10, paper]")
    assert "| alpha | 82.00 (n=1)" in md  # the newest record of the seed, not the mean of both
    assert "Note: 1 duplicate run of an already-recorded seed dropped" in md
    assert "Note: 1 duplicate run" in (out / "leaderboard.html").read_text()
    figures = sorted(p.stem for p in (out / "figures").glob("*.svg"))
    assert "imagenet-linear-top1-v9-paper" in figures and "imagenet-linear-top1-v10-paper" in figures


def released_record(out, card: str, task: str, value: float, seed: int = 0, synthetic: bool = False) -> None:
    """A record that is the result of a cell of the `released` suite (same card, preset, config, seed)."""
    from harmony_bench.protocols import get_task
    from harmony_bench.results import build_record, write_record
    from harmony_bench.suites.spec import load_suite

    cell = next(c for c in load_suite("released").cells if c.backbone.key == card and c.task.name == task)
    spec = get_task(task)
    preset = cell.task.preset or spec.default_preset
    start = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=seed + 10 * synthetic)
    record = build_record(
        backbone={"name": card, "card": None, "checkpoint": {"source": "/c.pth", "sha256": "a" * 64,
                                                              "random_init": False}},
        task={"name": task, "protocol_version": spec.protocol_version, "preset": preset,
              "config": spec.resolve_config(preset, cell.task.overrides)},
        dataset={"name": "imagenet-1k", "root": "/data", "synthetic": synthetic, "manifest": None},
        seed=seed, metrics={"top1": {"value": value, "higher_is_better": True}}, start=start,
        end=start + timedelta(minutes=1),
    )  # fmt: skip
    write_record(record, out)


def test_published_numbers_are_pivoted_per_source_table(tmp_path):
    files, _ = build_leaderboard([tmp_path / "none"], tmp_path)
    md = files["LEADERBOARD.md"].decode()
    slip = md.split("### [1] SLIP (arXiv 2112.12750)")[1].split("### [2]")[0]
    header = (
        "| method | backbone | pretraining data | epochs | imagenet-zeroshot top1 | imagenet-linear top1 |"
    )
    assert header + " imagenet-finetune top1 |" in slip
    assert "| CLIP | ViT-S/16 | YFCC15M | 25 | 32.7 | 59.3 | 78.2 |" in slip
    assert "| SimCLR | ViT-S/16 | YFCC15M | 25 | — | 58.1 | 79.9 |" in slip  # no zero-shot for SimCLR
    assert sum(line.startswith("| ") for line in slip.splitlines()) == 1 + 19  # header + one line per setting
    mae = md.split("### [3] MAE")[1].split("### [4]")[0]
    assert (
        "| MAE (fine-tuned and evaluated at 448 px) | ViT-H/14 | IN-1K | — | 87.8 |" in mae
    )  # 2 numbers, 2 lines
    ibot = md.split("### [2] iBOT")[1].split("### [3]")[0]
    assert "imagenet-knn top1<sup>a</sup>" in ibot and "<sup>a</sup> block masking" in ibot  # a shared note
    assert "| 51.5<sup>e</sup> |" in ibot and "<sup>e</sup> random masking; Cascade Mask R-CNN" in ibot
    assert "| iBOT | ViT-L/16 | IN-1K | — | 78.0 | 81.0 | 84.8<sup>a</sup> |" in ibot  # README.md L184-L189
    mae_eval = md.split("### [5] MAE")[1].split("### [6]")[0]  # printed as FINETUNE.md prints them
    assert "| MAE (fine-tuned) | ViT-L/16 | IN-1K | — | 85.952 | 97.57 | 0.646 |" in mae_eval
    assert "| released | mae-vit-l16-in1k-ft | imagenet-eval | top1 | 85.952 | — |" in md
    sources = md.split("## Sources")[1]
    assert "1. SLIP (arXiv 2112.12750): facebookresearch/SLIP README" in sources and "7. Heuristic" in sources
    assert (
        "| released | ibot-vit-b16-in1k | imagenet-knn | top1 | 77.1 | — | — | ±0.3 | not run yet | [2] |"
        in md
    )


def test_measured_results_sit_next_to_the_published_value_they_reproduce(tmp_path):
    recs, out = tmp_path / "records", tmp_path / "board"
    released_record(recs, "slip-vit-b16-yfcc15m-25ep", "imagenet-zeroshot", 42.9)
    released_record(recs, "slip-vit-b16-yfcc15m-25ep", "imagenet-linear", 71.2)  # 0.9 below: outside ±0.5
    released_record(recs, "ibot-vit-b16-in1k", "imagenet-knn", 60.0, synthetic=True)  # never compared
    assert _cli(recs, out) == 0
    md = (out / "LEADERBOARD.md").read_text()
    slip = md.split("### [1] SLIP")[1].split("### [2]")[0].splitlines()
    row = slip.index("| SLIP | ViT-B/16 | YFCC15M | 25 | 42.8 | 72.1 | 82.6 |")
    assert slip[row + 1] == (
        "| ↳ *measured: slip-vit-b16-yfcc15m-25ep* | | | | *42.90 (Δ +0.10, ±0.3 ✓)* | "
        "*71.20 (Δ -0.90, ±0.5 ✗)* |  |"
    )
    assert "2 of 39 published numbers measured, 1 within the suite's tolerance." in md
    line = "| released | slip-vit-b16-yfcc15m-25ep | imagenet-linear | top1 | 72.1 | 71.20 (n=1) | -0.90 |"
    assert line + " ±0.5 | ✗ outside | [1] |" in md
    assert (
        "| released | ibot-vit-b16-in1k | imagenet-knn | top1 | 77.1 | — |" in md
    )  # synthetic: not a result
    assert (out / "figures" / "measured-vs-published.svg").is_file()
    html = (out / "leaderboard.html").read_text()
    assert html.count('<tr class="measured">') == 1 and "71.20<br><small>Δ -0.90 (±0.5) ✗" in html
    synthetic_board, _ = build_leaderboard([recs], out, compare=False)  # a synthetic suite's own board
    assert "Measured vs published" not in synthetic_board["LEADERBOARD.md"].decode()


def test_committed_leaderboard_is_current():
    """What CI runs: results/ must match the committed records and published numbers."""
    assert main(["leaderboard", "--check"]) == 0


# --------------------------------------------------------------------------- browser


class DevTools:
    """Minimal Chrome DevTools Protocol client over --remote-debugging-pipe (fd 3 in, fd 4 out)."""

    def __init__(self, browser: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds():  # the browser reads commands on fd 3 and writes replies on fd 4
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        args = [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "about:blank",
        ]
        self.proc = subprocess.Popen(args, preexec_fn=wire_fds, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer, self._next_id, self.events = b"", 0, []

    def _read_message(self, timeout: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], timeout)
            if not ready:
                raise TimeoutError("no reply from the browser")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: str | None = None, timeout: float = 30.0, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message(timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        while True:
            for event in self.events:
                if event.get("method") == method:
                    self.events.remove(event)
                    return event
            self.events.append(self._read_message(timeout))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.mark.skipif(
    _browser() is None,
    reason="no chromium on PATH: scripts/install.sh installs Debian's chromium when apt-get is usable "
    "(or: apt-get install chromium)",
)
def test_html_page_loads_sorts_and_renders_in_a_browser(board, tmp_path):
    recs, out = board
    assert _cli(recs, out) == 0
    tools = DevTools(_browser(), tmp_path / "profile")
    try:
        target = tools.send("Target.createTarget", url="about:blank")["targetId"]
        session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        tools.send("Page.enable", session)
        tools.send("Page.navigate", session, url=(out / "leaderboard.html").resolve().as_uri())
        tools.wait_event("Page.loadEventFired")

        def evaluate(expression: str):
            result = tools.send("Runtime.evaluate", session, expression=expression, returnByValue=True)
            assert "exceptionDetails" not in result, result
            return result["result"].get("value")

        first_column = (
            "Array.from(document.querySelectorAll('#measured tbody tr')).map(r => r.cells[0].textContent)"
        )
        header = "document.querySelectorAll('#measured thead th')"
        columns = evaluate(f"Array.from({header}).map(th => th.textContent)")
        linear = columns.index("imagenet-linear / top1 [v1, paper]")
        assert evaluate(first_column) == ["alpha", "beta", "gamma"]
        evaluate(f"{header}[{linear}].click()")  # numeric column: first click sorts descending
        assert evaluate(first_column) == ["beta", "alpha", "gamma"]
        assert evaluate(f"{header}[{linear}].getAttribute('aria-sort')") == "descending"
        evaluate(f"{header}[{linear}].click()")
        assert evaluate(first_column) == ["gamma", "alpha", "beta"]
        ade = columns.index("ade20k / mIoU [v1, paper]")
        evaluate(f"{header}[{ade}].click()")  # gamma has no ade20k cell: empty cells sort last
        assert evaluate(first_column) == ["alpha", "beta", "gamma"]
        images = evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        assert images and all(images)  # every embedded figure decoded
        published = evaluate("document.querySelectorAll('#published tbody tr').length")
        assert published > 100
        assert evaluate("document.querySelectorAll('table.comparison').length") == 7  # one per source table
        shot = base64.b64decode(tools.send("Page.captureScreenshot", session, format="png")["data"])
        # a phone: the page itself never scrolls sideways (wide tables scroll in their own box), and the
        # comparison tables fold backbone · data · epochs under the method
        tools.send("Emulation.setDeviceMetricsOverride", session, width=390, height=844, deviceScaleFactor=2,
                   mobile=True)  # fmt: skip
        assert evaluate("document.documentElement.scrollWidth") <= 390
        wide = "getComputedStyle(document.querySelector('table.comparison td.wide')).display"
        narrow = "getComputedStyle(document.querySelector('table.comparison .narrow')).display"
        assert evaluate(wide) == "none" and evaluate(narrow) == "inline"
        phone = base64.b64decode(tools.send("Page.captureScreenshot", session, format="png")["data"])
    finally:
        tools.close()
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000
    (tmp_path / "leaderboard.png").write_bytes(shot)
    (tmp_path / "leaderboard-phone.png").write_bytes(phone)


def test_record_strings_are_escaped_in_the_markdown_and_the_html(tmp_path):
    """A card name or preset carrying HTML or Markdown syntax shows as text, and cannot break a table row."""
    recs, out = tmp_path / "records", tmp_path / "board"
    evil = "<img src=x onerror=alert(1)>|*x*_[l](http://e.x)"
    make_record(recs, evil, "imagenet-linear", 0, top1(81.0), preset="`p`|<b>")
    make_record(recs, "plain", "imagenet-linear", 0, top1(80.0), preset="`p`|<b>")
    assert _cli(recs, out) == 0
    md = (out / "LEADERBOARD.md").read_text()
    html = (out / "leaderboard.html").read_text()
    for page in (md, html):
        assert "<img src=x" not in page and "<b>" not in page and "onerror=alert(1)>" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page
    row = next(line for line in md.splitlines() if "onerror" in line)
    assert row.startswith("| &lt;img src=x onerror=alert(1)&gt;\\|\\*x\\*\\_\\[l\\](http://e.x) | ")
    assert row.count(" | ") == md.splitlines()[md.splitlines().index(row) - 2].count(" | ")  # same columns
    header = next(line for line in md.splitlines() if line.startswith("| backbone"))
    assert "[v1, \\`p\\`\\|&lt;b&gt;]" in header


def _published(*rows: dict):
    import pandas as pd

    base = {
        "paper": "P",
        "source": "table 1",
        "method": "M",
        "arch": "ViT-B/16",
        "pretrain_data": "IN-1K",
        "epochs": "300",
        "task": "imagenet-knn",
        "metric": "top1",
        "value": 70.0,
        "notes": "",
        "id": "a",
    }
    return pd.DataFrame([{**base, **r} for r in rows])  # fmt: skip


def _reproduction(card: str, reported: str, mean: float):
    from harmony_bench.leaderboard.comparison import Reproduction

    return Reproduction(
        suite="s", backbone=card, card=card, task="imagenet-knn", metric="top1", preset=None,
        reported=reported, published=70.0, tolerance=1.0, sigma=0.0, source="s", mean=mean, std=None,
        seeds=1, verdict="ok",
    )  # fmt: skip


def test_every_card_reproducing_a_published_row_is_listed_under_it():
    from harmony_bench.leaderboard.comparison import source_tables

    found = [_reproduction("card-1", "a", 69.5), _reproduction("card-2", "a", 70.4)]
    (table,) = source_tables(_published({"id": "a"}), found)
    (line,) = table.rows
    assert [card for card, _ in line.measured] == ["card-1", "card-2"]


def test_two_published_rows_of_one_setting_must_be_told_apart():
    from harmony_bench.leaderboard.comparison import source_tables

    with pytest.raises(ValueError, match="published rows 'a' and 'b' .* tell them apart in their notes"):
        source_tables(_published({"id": "a"}, {"id": "b", "value": 71.0}), [])
    (table,) = source_tables(_published({"id": "a", "notes": "224 px"}, {"id": "b", "notes": "448 px"}), [])
    assert len(table.rows) == 2
