"""The web console, served by the gateway: `/` is its page, `/console/...` its files,
`/sw.js` its service worker (Web Push notifications).

The console is static files shipped in the package (`gateway/console/`): ES modules and
vendored libraries (`gateway/console/vendor/VENDORED.md`), no build step, nothing of
Node.js at install or run time. It is a client of the public protocol only (REST under
`/api`, Socket.IO on `/web`). The page's Content-Security-Policy lets it load code and
styles from this origin only, and talk to this origin only.
"""

from __future__ import annotations

from pathlib import Path

from sanic import Request, Sanic
from sanic.response import HTTPResponse, file

CONSOLE_DIR = Path(__file__).with_name("console")

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page is small and changes with the package: always asked for again.
    "Cache-Control": "no-cache",
}


_WORKER_HEADERS = {
    "Content-Type": "text/javascript; charset=utf-8",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def add_console(app: Sanic) -> None:
    @app.get("/", name="console_page")
    async def page(request: Request) -> HTTPResponse:
        return await file(CONSOLE_DIR / "index.html", headers=PAGE_HEADERS)

    @app.get("/sw.js", name="console_service_worker")
    async def service_worker(request: Request) -> HTTPResponse:
        # At the root, so that its scope is the whole console.
        return await file(CONSOLE_DIR / "sw.js", headers=_WORKER_HEADERS)

    app.static(
        "/console",
        str(CONSOLE_DIR),
        name="console_files",
        use_content_range=False,
        stream_large_files=False,
    )
