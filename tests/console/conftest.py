"""A real browser for the console's tests: Debian's Chromium, driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.support.console import sign_in
from tests.support.running import Running

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = os.environ.get("ORCHESTRA_TEST_CHROMIUM") or shutil.which("chromium") or ""

needs_chromium = pytest.mark.skipif(not CHROMIUM, reason="Chromium is not installed (.ci/run does)")


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            await chromium.close()


async def signed_in(
    browser: Any, running: Running, *, user: str = "alice", **context: Any
) -> tuple[Any, list[str]]:
    """A page of the console in a context of its own, signed in (as alice unless `user`
    says otherwise; every test user has the same password) and connected; and the errors
    its console reports, as they come."""
    page = await (await browser.new_context(**context)).new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    await sign_in(page, running.gateway.url, user)
    return page, errors
