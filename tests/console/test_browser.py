"""The console in a real browser (Debian's Chromium driven by Playwright) against a real
gateway, Redis and agent daemon: sign in, start a worker, see its lines, type to it.

Screenshots of each step go to `test-artifacts/console/` (CI keeps them)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import needs_chromium, signed_in
from tests.support.processes import http
from tests.support.running import PASSWORD, Running

WORKER = Path(__file__).parents[1] / "e2e" / "echo_worker.py"
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "console"

pytestmark = [pytest.mark.sqlite_only, needs_chromium]


async def test_sign_in_start_a_worker_see_its_lines_and_type_to_it(
    browser: Any, running: Running, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, errors = await signed_in(browser, running)
    await page.screenshot(path=str(ARTIFACTS / "1-start-form.png"), full_page=True)

    await page.get_by_label("Agent").select_option(label="box (online)")
    await page.get_by_label("Tool").select_option("custom")
    await page.get_by_label("Working directory").fill(str(tmp_path))
    await page.get_by_label("Command").fill(f"{sys.executable} {WORKER}")
    await page.get_by_role("button", name="Start").click()

    log = page.get_by_role("log")
    await log.get_by_text("worker: waiting for 2 lines").wait_for()
    assert "#/s/" in page.url
    box = page.get_by_label("Input to the worker")
    await box.fill("hello")
    await box.press("Enter")
    await log.get_by_text("echo 1: hello").wait_for()
    await box.fill("world")
    await box.press("Enter")
    await log.get_by_text("echo 2: world").wait_for()
    await log.get_by_text("worker: bye").wait_for()
    await log.get_by_text("done in").wait_for()
    await page.screenshot(path=str(ARTIFACTS / "2-session.png"), full_page=True)

    # Every line once, in order (stdout and stderr are two pipes: each in its own order).
    assert await log.locator("pre.line.stdout").all_inner_texts() == [
        "worker: started",
        "worker: waiting for 2 lines",
        "echo 1: hello",
        "echo 2: world",
        "worker: bye",
    ]
    assert await log.locator("pre.line.stderr").all_inner_texts() == ["worker: done"]
    # The session is in the list; the page reported no error on its console.
    assert await page.get_by_role("navigation", name="Sessions").get_by_role("link").count() >= 3
    assert errors == []


async def test_the_console_fits_a_375_px_wide_screen(browser: Any, running: Running) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, errors = await signed_in(browser, running, viewport={"width": 375, "height": 740})
    await page.goto(running.gateway.url + "/#/agents")
    await page.get_by_role("heading", name="Agents").wait_for()
    await page.screenshot(path=str(ARTIFACTS / "3-agents-375px.png"), full_page=True)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page is {width} px wide: something is cut off"
    assert errors == []


async def test_interrupt_from_the_page_reaches_the_worker(
    browser: Any, running: Running, tmp_path: Path
) -> None:
    page, errors = await signed_in(browser, running)
    program = (
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(130)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "print('working', flush=True)\n"
        "time.sleep(120)\n"
    )
    script = tmp_path / "interruptible.py"
    script.write_text(program)
    await page.get_by_label("Agent").select_option(label="box (online)")
    await page.get_by_label("Working directory").fill(str(tmp_path))
    await page.get_by_label("Command").fill(f"{sys.executable} {script}")
    await page.get_by_role("button", name="Start").click()
    log = page.get_by_role("log")
    await log.get_by_text("working", exact=True).wait_for()
    await page.get_by_role("button", name="Interrupt").click()
    await log.get_by_text("interrupted", exact=True).wait_for()
    # The worker is gone: nothing is left to type to.
    await page.get_by_placeholder("No worker running").wait_for()
    assert errors == []


async def test_an_agent_created_in_the_page_comes_online_from_the_command_shown(
    browser: Any, running: Running, tmp_path: Path
) -> None:
    page, errors = await signed_in(browser, running)
    await page.goto(running.gateway.url + "/#/agents")
    await page.get_by_label("New agent").fill("desk")
    await page.get_by_role("button", name="Create").click()
    shown = await page.locator(".secret pre").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert "orchestra agent --server" in shown and "--secret-file desk.secret" in shown
    await page.screenshot(path=str(ARTIFACTS / "5-agent-created.png"), full_page=True)
    # The lines as a user would paste them on the new machine (here: this one).
    env = {**running.deployment.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    agent = subprocess.Popen(
        ["bash", "-c", shown], cwd=tmp_path, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        row = page.get_by_role("row").filter(has_text="desk")
        await row.get_by_text("online").wait_for(timeout=60_000)
        assert oct((tmp_path / "desk.secret").stat().st_mode & 0o777) == "0o600"
        # A new secret: the running agent, on the old one, is cut off; a new command shows.
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await row.get_by_role("button", name="New secret").click()
        await page.locator(".secret pre").filter(has_not_text=shown.split("'")[3]).wait_for()
        await row.get_by_text("offline").wait_for(timeout=60_000)
    finally:
        os.killpg(agent.pid, signal.SIGTERM)
        agent.wait(timeout=30)
    assert errors == []


async def test_an_admin_creates_and_disables_a_user_and_sees_the_gateway_healthy(
    browser: Any, running: Running
) -> None:
    await running.deployment.create_user("root", PASSWORD, admin=True)
    page, errors = await signed_in(browser, running, user="root")
    await page.get_by_role("link", name="Admin").click()
    form = page.get_by_role("form", name="New user")
    await form.get_by_label("Username").fill("bob")
    await form.get_by_label("Password").fill("bob's long password")
    await form.get_by_role("button", name="Create user").click()
    await page.get_by_role("status").filter(has_text="bob created").wait_for()
    login = running.gateway.url + "/api/auth/login"
    credentials = {"username": "bob", "password": "bob's long password"}
    assert (await asyncio.to_thread(http, "POST", login, credentials))[0] == 200

    await page.get_by_role("button", name="Disable bob").click()
    await page.get_by_role("status").filter(has_text="bob disabled").wait_for()
    assert (await asyncio.to_thread(http, "POST", login, credentials))[0] == 401
    await page.get_by_role("button", name="Enable bob").wait_for()
    # This node's health at a glance, and the agents' (alice's box is online).
    await page.locator("dl.health").get_by_text("healthy", exact=True).wait_for()
    await page.get_by_role("status").filter(has_text="1 of 1 healthy").wait_for()
    await page.locator(".agent-health li").filter(has_text="box").get_by_text("healthy").wait_for()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "6-admin.png"), full_page=True)
    # Someone who is not an admin has no admin page.
    alice, _ = await signed_in(browser, running)
    assert await alice.get_by_role("link", name="Admin").count() == 0
    assert errors == []
