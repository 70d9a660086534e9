"""The console live: a permission prompt seen on two devices and answered once, and a
stream that survives the gateway being killed and started again."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import needs_chromium, signed_in
from tests.support.ai import FAKE_TOOLS, start_ai
from tests.support.processes import wait_for
from tests.support.running import Running

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "console"

pytestmark = [pytest.mark.sqlite_only, needs_chromium]


@FAKE_TOOLS
async def test_two_pages_see_one_prompt_and_one_answer_reaches_the_tool(
    browser: Any, running: Running, tmp_path: Path
) -> None:
    client = await running.client()
    try:
        # Our fake claude asks to run Bash (tests/fixtures/bin/claude, scenario permission).
        started, record = await start_ai(
            client, running.agent_id, tmp_path, "scenario: permission", join=False
        )
        session = f"{running.gateway.url}/#/s/{started['sessionId']}"
        phone, phone_errors = await signed_in(
            browser, running, viewport={"width": 375, "height": 740}
        )
        laptop, laptop_errors = await signed_in(browser, running)
        for page in (phone, laptop):
            await page.goto(session)
            await page.get_by_role("alertdialog", name="Permission for Bash").wait_for()
        card = laptop.get_by_role("alertdialog", name="Permission for Bash")
        assert "echo hi > out.txt" in await card.inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await phone.screenshot(path=str(ARTIFACTS / "4-permission-375px.png"), full_page=True)

        await card.get_by_role("button", name="Allow", exact=True).click()
        # The other device's card closes; both show the decision and the tool's result.
        await phone.get_by_role("alertdialog").wait_for(state="detached")
        for page in (phone, laptop):
            await page.get_by_role("log").get_by_text("Bash: allow").wait_for()
            await page.get_by_role("log").get_by_text("turn done").wait_for()
        asked = [line for line in record.received() if line.get("type") == "control_response"]
        assert len(asked) == 1, asked  # exactly one decision reached the tool
        assert asked[0]["response"]["response"]["behavior"] == "allow"
        assert phone_errors == [] and laptop_errors == []
    finally:
        await client.close()


async def test_every_line_once_in_order_across_a_gateway_restart(
    browser: Any, running: Running, tmp_path: Path
) -> None:
    page, _ = await signed_in(browser, running)
    lines = 60
    program = (
        "import time\n"
        f"for n in range(1, {lines} + 1):\n"
        "    print(f'line {n}', flush=True)\n"
        "    time.sleep(0.05)\n"
    )
    client = await running.client()
    try:
        started = await client.ok(
            "worker:start",
            {"agentId": running.agent_id, "tool": "custom",
             "command": [sys.executable, "-c", program], "workingDirectory": str(tmp_path)},
        )  # fmt: skip
    finally:
        await client.close()
    await page.goto(f"{running.gateway.url}/#/s/{started['sessionId']}")
    log = page.get_by_role("log")
    await log.get_by_text("line 5", exact=True).wait_for()

    # The gateway dies mid-stream and comes back on the same address.
    port = int(running.gateway.url.rsplit(":", 1)[1])
    running.gateway.kill()
    await page.get_by_role("status").filter(has_text="reconnecting").wait_for()
    running.gateway = await running.deployment.start_gateway("gw1", port=port)
    await page.get_by_role("status").filter(has_text="connected").wait_for()

    await log.get_by_text(f"line {lines}", exact=True).wait_for(timeout=60_000)

    async def all_there() -> bool:
        return len(await log.locator("pre.line").all_inner_texts()) >= lines

    await wait_for(all_there, what="every line")
    shown = await log.locator("pre.line").all_inner_texts()
    assert shown == [f"line {n}" for n in range(1, lines + 1)]
