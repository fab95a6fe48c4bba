"""The town board in a real browser: Debian's headless Chromium, driven by Playwright's Python package.

Playwright is told where Debian's Chromium is (`executable_path`): it downloads
no browser. The board runs in this process against the test's Temporal and a
real worker; the polecats are real (tmux, git, the scripted agent).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright, expect

from board.server import Board
from bridge.reconcile import Reconciler
from client.settings import Settings
from crds import BeadStore, Convoy, Polecat
from tests.helpers import (
    GitRig,
    beadstore_manifest,
    convoy_manifest,
    parsed,
    reach,
    rig,
    rig_manifest,
    write_beads,
)
from worker.ports import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As this machine's notes say: no first-run, background networking or sync, which a closed network refuses.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script> & "quotes"'


@pytest.fixture
async def board(reconciler: Reconciler, settings: Settings, worker: None) -> AsyncIterator[str]:
    """The board, served on a port of its own while the test runs; its URL."""
    runner = web.AppRunner(
        Board(reconciler, settings, interval=0.2).app(), access_log=None, shutdown_timeout=2.0
    )
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), "the board's tests need Debian's chromium (apt-get install chromium)"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        yield launched
        await launched.close()


def cell(page: Page, polecat: str) -> Any:
    return page.locator(f'.cell[data-key="default/{polecat}"]')


async def test_the_board_shows_a_convoy_live_nudges_shows_a_diff_and_escapes_user_text(
    board: str, browser: Browser, reconciler: Reconciler, git_rig: GitRig, rig_name: str, tmp_path: Path
) -> None:
    """A convoy's polecats appear on the open page and turn green as they finish, with no reload;
    a nudge on a Succeeded one turns it Working again; its page shows its diff and its log as it
    grows; and a bead title of HTML and script is shown as text, running nothing."""
    source = tmp_path / "issues.jsonl"
    write_beads(source, [{"id": "gt-1", "title": XSS}, {"id": "gt-2"}])
    await reconciler.apply(rig(rig_manifest(rig_name, git_rig, beadsPrefix="gt")))
    await reconciler.apply(parsed(BeadStore, beadstore_manifest("beads", rig_name, str(source))))
    await reach(reconciler, BeadStore, "beads", "Synced")
    gate = tmp_path / "gate"  # the agents work until it exists
    page = await browser.new_page()
    await page.goto(board)
    await page.evaluate("window.__loaded = 'once'")  # gone if the page were loaded again
    await expect(page.locator("#live")).to_have_text("live")

    manifest = convoy_manifest(
        "wave", rig_name, ["gt-1", "gt-2"], "--commit", "{bead}.md=done", "--wait-for", str(gate)
    )
    await reconciler.apply(parsed(Convoy, manifest))
    cells = page.locator(".cell")
    await expect(cells).to_have_count(2, timeout=30_000)
    await expect(page.locator(".cell.phase-Working")).to_have_count(2, timeout=30_000)
    gate.touch()
    await expect(page.locator(".cell.phase-Succeeded")).to_have_count(2, timeout=30_000)
    assert await page.evaluate("window.__loaded") == "once"  # pushed, not reloaded

    titled = page.locator(".cell", has_text="gt-1")
    await expect(titled.locator(".title")).to_have_text(" " + XSS)  # the title's text, as it is
    assert await page.evaluate("window.__xss") is None  # nothing of it ran
    name = (await titled.get_attribute("data-key") or "").split("/", 1)[1]

    gate.unlink()  # the follow-up's run waits again
    await titled.locator("input[name=message]").fill("also <b>add</b> tests")
    await titled.locator("form.nudge button").click()
    await expect(page.locator("#notice")).to_contain_text("the agent's session is resumed with it")
    await expect(cell(page, name)).to_have_attribute("data-phase", "Working", timeout=30_000)

    await cell(page, name).locator("a.name").click()
    await expect(page.locator("h1")).to_contain_text(f"Polecat {name}")
    await expect(page.locator("#diff")).to_contain_text("+++ b/gt-1.md")
    await expect(page.locator(".title")).to_have_text(XSS)
    assert await page.evaluate("window.__xss") is None
    gate.touch()
    await expect(page.locator("#phase")).to_have_text("Succeeded", timeout=30_000)
    # Its follow-ups and diff follow the phase change: the follow-up's outcome, without a reload.
    await expect(page.locator("#follow-ups")).to_contain_text("Succeeded")
    # The log tail grows live: the second run's end, after the first's.
    await expect(page.locator("#log")).to_have_text(re.compile(r"exiting with 0[\s\S]*exiting with 0"))
    followed = await reconciler.get(Polecat, "default", name)
    assert followed.status is not None and followed.status.follow_ups == 1
    assert [(e.message, e.source) for e in followed.status.conversation] == [
        ("also <b>add</b> tests", "board")
    ]


async def test_actions_need_the_boards_token(board: str, browser: Browser) -> None:
    """A request without the board's token (another site's page posting to localhost, say) is refused."""
    page = await browser.new_page()
    answer = await page.request.post(f"{board}/api/polecats/default/nux/terminate", data={})
    assert answer.status == 403
    assert "needs the board's token" in await answer.text()
