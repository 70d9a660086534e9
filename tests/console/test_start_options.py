"""The console in Chromium: the start form offers the agent's allowed roots and recent
working directories and the user's AI configs, and a worker started with them runs there
with that config; the usage page shows what it used; the agents page shows latency and
system info. Screenshots at 1280 and 375 px go to `test-artifacts/console/`."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import needs_chromium, playwright_api, signed_in
from tests.support.ai import FAKE_TOOLS, Recording
from tests.support.processes import http, wait_for
from tests.support.running import Running
from tests.support.web import WebClient

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "console"
PHONE = {"width": 375, "height": 740}

pytestmark = [pytest.mark.sqlite_only, needs_chromium, FAKE_TOOLS]

expect = playwright_api.expect


async def _post(running: Running, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = await asyncio.to_thread(
        http, "POST", running.gateway.url + path, body, running.token
    )
    assert status in (200, 201), answer
    return answer


async def _used(client: WebClient, running: Running, directory: Path) -> None:
    """A custom task in `directory`, to its end; then the agent lists it as recent."""
    started = await client.ok(
        "worker:start",
        {"agentId": running.agent_id, "tool": "custom", "command": "true",
         "workingDirectory": str(directory)},
    )  # fmt: skip
    await client.ok("session:join", {"sessionId": started["sessionId"]})
    await client.wait_for_event("task:result", lambda d: d["taskId"] == started["taskId"])

    async def listed() -> bool:
        agents = (await client.ok("agents:list", {}))["agents"]
        return str(directory) in ((agents[0].get("workdirs") or {}).get("recent") or [])

    await wait_for(listed, what="the directory among the agent's recent ones")


async def _fits(page: Any) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide: something is cut off"


async def _totals(page: Any) -> dict[str, str]:
    found: dict[str, str] = await page.locator("dl.usage-totals").evaluate(
        "dl => Object.fromEntries([...dl.querySelectorAll('div')].map("
        "d => [d.querySelector('dt').textContent, d.querySelector('dd').textContent]))"
    )
    return found


async def test_start_with_a_recent_directory_and_an_ai_config_then_see_usage_and_agents(
    browser: Any, running: Running, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    project = (tmp_path / "project").resolve()
    project.mkdir()
    root = str(tmp_path.resolve())  # the agent's allowed root in the tests
    record = tmp_path / "claude-record.jsonl"
    (tmp_path / "home").mkdir()
    await _post(running, "/api/ai-configs", {
        "name": "fake claude", "tool": "claude", "model": "config-model",
        "apiKey": "sk-test-not-a-secret",
        "settings": {"env": {"HOME": str(tmp_path / "home"), "FAKE_CLAUDE_RECORD": str(record)}},
    })  # fmt: skip
    await _post(running, "/api/ai-configs", {"name": "a codex key", "tool": "codex"})
    client = await running.client()
    try:
        await _used(client, running, project)
    finally:
        await client.close()

    page, errors = await signed_in(browser, running)
    pick = page.get_by_label("Recent directories and allowed roots")
    # "Any agent": the online agents' directories, here the one agent's.
    await pick.locator("optgroup[label='Recent directories'] option").first.wait_for(
        state="attached"
    )
    await page.get_by_label("Agent").select_option(label="box (online)")
    assert await _options(pick, "Recent directories") == [str(project)]
    assert await _options(pick, "Allowed roots") == [root]
    suggested = await page.locator("#workdir-options option").evaluate_all(
        "options => options.map(o => o.value)"
    )
    assert suggested == [str(project), root]  # also suggested while typing
    await page.get_by_label("Tool").select_option("claude")
    configs = page.get_by_label("AI config")
    # Only the configs for the chosen tool.
    assert await configs.locator("option").all_inner_texts() == [
        "none: the tool's own login",
        "fake claude (config-model)",
    ]
    await configs.select_option(label="fake claude (config-model)")
    assert (
        await page.get_by_label("Model", exact=True).get_attribute("placeholder") == "config-model"
    )
    await page.get_by_label("Model", exact=True).fill("typed-model")
    await pick.select_option(str(project))
    assert await page.get_by_label("Working directory").input_value() == str(project)
    await page.get_by_label("Prompt").fill("scenario: tools")
    await page.screenshot(path=str(ARTIFACTS / "start-options-1280px.png"), full_page=True)
    await page.get_by_role("button", name="Start").click()

    # The fake runs `pwd` as its first tool: the worker runs in the chosen directory.
    log = page.get_by_role("log")
    await log.get_by_text("turn done").wait_for()
    pwd = log.locator("details.tool-result").first
    await pwd.locator("summary").click()
    await pwd.get_by_text(str(project), exact=True).wait_for()
    argv = Recording(record).entries()[0]["argv"]
    assert "typed-model" in argv and "config-model" not in argv  # the field wins
    assert Recording(record).entries()[0]["anthropic_api_key_set"] is True  # the config's key

    # Usage: the worker still runs (it waits for the next message); its turn counts.
    await page.get_by_role("link", name="Usage").click()
    await page.get_by_role("heading", name="Usage").wait_for()
    expected = {"Tasks": "1", "Input tokens": "33", "Output tokens": "21", "Cache read": "0",
                "Cache write": "0", "Cost": "$0.000552"}  # fmt: skip
    await wait_for(lambda: _totals_are(page, expected), what="the usage totals")
    table = page.locator("table.usage-table")
    today = (await table.locator("tbody th").all_inner_texts())[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", today)
    for grouping, name in (
        ("By session", re.compile(r"^session [0-9a-f]{8}$")),
        ("By agent", "box"),
    ):
        await page.get_by_role("button", name=grouping).click()
        row = table.locator("tbody tr")
        await expect(row.locator("th")).to_have_text(name)
        await expect(row.locator('td[data-label="Cost"]')).to_have_text("$0.000552")
        await expect(row.locator('td[data-label="Input"]')).to_have_text("33")
    await page.screenshot(path=str(ARTIFACTS / "usage-1280px.png"), full_page=True)

    # Agents: latency (each heartbeat's ping) and system info, refreshed while shown.
    await page.get_by_role("link", name="Agents").click()
    agent = page.get_by_role("row").filter(has_text="box")
    await expect(agent.locator('td[data-label="Latency"]')).to_have_text(
        re.compile(r"^\d+(\.\d)? ms$"), timeout=60_000
    )
    await expect(agent.locator('td[data-label="System"]')).to_have_text(
        re.compile(r"^CPU \d+% · memory \d+% · disk \d+%$"), timeout=60_000
    )
    await expect(agent.locator('td[data-label="Tools"]')).to_contain_text("claude 2.1.332")
    await expect(agent.locator('td[data-label="Load"]')).to_have_text("1/4 running")
    await page.screenshot(path=str(ARTIFACTS / "agents-1280px.png"), full_page=True)
    assert errors == []

    # The same pages on a phone: nothing cut off.
    phone, phone_errors = await signed_in(browser, running, viewport=PHONE)
    await phone.get_by_label("Agent").select_option(label="box (online)")
    await phone.get_by_label("Tool").select_option("claude")
    await phone.get_by_label("Recent directories and allowed roots").select_option(root)
    await _fits(phone)
    await phone.screenshot(path=str(ARTIFACTS / "start-options-375px.png"), full_page=True)
    for route, shot in (("#/usage", "usage-375px.png"), ("#/agents", "agents-375px.png")):
        await phone.goto(f"{running.gateway.url}/{route}")
        await phone.locator("table.usage-table, table.agent-list").first.wait_for()
        await _fits(phone)
        await phone.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    assert phone_errors == []


async def _options(pick: Any, group: str) -> list[str]:
    found: list[str] = await pick.locator(f"optgroup[label='{group}'] option").evaluate_all(
        "options => options.map(o => o.value)"
    )
    return found


async def _totals_are(page: Any, expected: dict[str, str]) -> bool:
    if await page.locator("dl.usage-totals").count() == 0:
        return False
    return await _totals(page) == expected
