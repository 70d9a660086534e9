"""The console's own modules, run in the browser they are written for (no Node.js): event
ordering, and that what a worker prints is never taken as markup."""

from __future__ import annotations

from typing import Any

import pytest

from tests.console.conftest import needs_chromium
from tests.support.running import Running

pytestmark = [pytest.mark.sqlite_only, needs_chromium]

_MARKUP_IN_OUTPUT = """
async () => {
  const { html, render } = await import('/console/vendor/preact-htm.module.js');
  const { ansi, markdown } = await import('/console/render.js');
  const box = document.createElement('div');
  document.body.append(box);
  const evil = '<img src=x onerror="window.hacked=1">';
  const coloured = ansi('\\x1b[31mred\\x1b[0m plain ' + evil);
  render(html`<div>${coloured}${markdown('**b** ' + evil)}</div>`, box);
  return {
    images: box.querySelectorAll('img').length,
    red: box.querySelector('.fg-31') && box.querySelector('.fg-31').textContent,
    bold: box.querySelector('strong') && box.querySelector('strong').textContent,
    text: box.textContent,
  };
}
"""


async def test_event_ids_order_as_the_stream_does(browser: Any, running: Running) -> None:
    page = await browser.new_page()
    await page.goto(running.gateway.url + "/")
    answers = await page.evaluate(
        """async () => {
          const { after } = await import('/console/live.js');
          return [after('10-0', '9-5'), after('9-5', '10-0'), after('5-2', '5-10'),
                  after('5-10', '5-2'), after('7-1', '7-1')];
        }"""
    )
    assert answers == [True, False, False, True, False]


async def test_worker_output_is_text_never_markup(browser: Any, running: Running) -> None:
    page = await browser.new_page()
    await page.goto(running.gateway.url + "/")
    result = await page.evaluate(_MARKUP_IN_OUTPUT)
    assert result["images"] == 0
    assert result["red"] == "red" and result["bold"] == "b"
    assert '<img src=x onerror="window.hacked=1">' in result["text"]
    assert await page.evaluate("window.hacked") is None
