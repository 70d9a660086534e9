"""A real browser for the console's tests: Debian's Chromium, driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

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
