"""The console in Chromium: a user adds an AI config (its key typed once, never shown or
sent back), finds it offered when starting a worker of its tool, replaces its key and
deletes it; at 375 px nothing is cut off. Screenshots go to `test-artifacts/console/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import needs_chromium, playwright_api, signed_in
from tests.support.ai import FAKE_TOOLS
from tests.support.running import Running

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "console"
PHONE = {"width": 375, "height": 740}
KEY = "sk-ant-console-test-0123456789abcdef"
NEW_KEY = "sk-ant-console-test-replaced-fedcba9876543210"

pytestmark = [pytest.mark.sqlite_only, needs_chromium, FAKE_TOOLS]  # the agent has claude

expect = playwright_api.expect


async def test_add_an_ai_config_use_it_replace_its_key_and_delete_it(
    browser: Any, running: Running
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, errors = await signed_in(browser, running, viewport=PHONE)
    answers: list[str] = []

    async def keep(response: Any) -> None:
        if "/api/ai-configs" in response.url:
            answers.append(await response.text())

    page.on("response", keep)
    said = page.locator("main").get_by_role("status")
    await page.get_by_role("link", name="AI configs").click()
    await page.get_by_text("No AI config yet.").wait_for()
    form = page.get_by_role("form", name="New AI config")
    await form.get_by_label("Name").fill("work claude")
    await form.get_by_label("Tool", exact=True).fill("claude")
    await form.get_by_label("Model (optional)").fill("claude-sonnet-4-5")
    await form.get_by_label("API key (optional)").fill(KEY)
    await form.get_by_label("Permission mode").select_option("acceptEdits")
    await form.get_by_role("button", name="Save AI config").click()
    await expect(said).to_have_text("work claude saved.")

    row = page.get_by_role("row").filter(has_text="work claude")
    await expect(row.locator('td[data-label="Tool"]')).to_have_text("claude")
    await expect(row.locator('td[data-label="Model"]')).to_have_text("claude-sonnet-4-5")
    await expect(row.locator('td[data-label="Key"]')).to_have_text("set")
    await expect(row.locator('td[data-label="Options"]')).to_have_text("mode acceptEdits")
    # The form was cleared, and the key is nowhere on the page.
    await expect(form.get_by_label("API key (optional)")).to_have_value("")
    assert KEY not in await page.content()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide: something is cut off"
    await page.screenshot(path=str(ARTIFACTS / "ai-configs-375.png"), full_page=True)

    # Offered when starting a worker of its tool, with a link back here.
    await page.get_by_role("link", name="Start a worker").click()
    await page.locator("form.start select[name=tool]").select_option("claude")
    await expect(page.get_by_label("AI config")).to_contain_text("work claude (claude-sonnet-4-5)")
    await expect(page.get_by_role("link", name="Add or change AI configs")).to_be_visible()

    # A new key, typed into the browser's prompt.
    await page.get_by_role("link", name="Add or change AI configs").click()
    page.once("dialog", lambda dialog: dialog.accept(NEW_KEY))
    await page.get_by_role("button", name="Replace key of work claude").click()
    await expect(said).to_have_text("work claude: key replaced.")
    await expect(row.locator('td[data-label="Key"]')).to_have_text("set")

    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Delete work claude").click()
    await expect(said).to_have_text("work claude deleted.")
    await page.get_by_text("No AI config yet.").wait_for()

    assert answers, "the page read its AI configs"
    for answer in answers:
        assert KEY not in answer and NEW_KEY not in answer, answer
    assert errors == []
