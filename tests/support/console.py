"""Signing in to the console in a browser page (Playwright), for tests and benchmarks."""

from __future__ import annotations

from typing import Any

from tests.support.running import PASSWORD


async def sign_in(page: Any, url: str, user: str = "alice") -> None:
    """Open the console at `url`, sign in as `user` (every test user has the same
    password) and wait until its socket is connected."""
    await page.goto(url + "/")
    await page.get_by_label("Username").fill(user)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("status").filter(has_text="connected").wait_for()
