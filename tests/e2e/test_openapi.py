"""The REST API's OpenAPI document (`/api/openapi.json`) against a real gateway: public, a
valid OpenAPI document, covering every REST route, rendered at `/api/docs`, and a
schemathesis run from it (an admin's token, positive and negative examples) finds no
server error and no answer the document does not describe.

One gateway (SQLite; the SQL backend is not what is tested) serves the whole module.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from orchestra.settings import Settings
from tests.support.processes import Deployment, Gateway, http
from tests.support.redis import redis_server
from tests.support.running import PASSWORD
from tests.support.web import login

pytestmark = pytest.mark.asyncio(loop_scope="module")

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "console"
CHROMIUM = os.environ.get("ORCHESTRA_TEST_CHROMIUM") or shutil.which("chromium") or ""

#: examples per operation and generation mode: ~50 operations in well under a minute
EXAMPLES = 12
#: what would end the run's own sign-in: every other operation is exercised
EXCLUDED = {("POST", "/api/auth/logout")}


@dataclass
class Served:
    deployment: Deployment
    gateway: Gateway
    token: str
    ids: dict[str, str]
    """Path parameter -> the id of a record that exists (made by `_records`)."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    root: Path = tmp_path_factory.mktemp("openapi")
    async with redis_server(root) as redis:
        deployment = Deployment(
            root=root, redis_url=redis.url, database_url=f"sqlite+aiosqlite:///{root / 'o.db'}"
        )
        try:
            await deployment.create_user("root", PASSWORD, admin=True)
            gateway = await deployment.start_gateway("gw1")
            token = await login(gateway.url, "root", PASSWORD)
            yield Served(deployment, gateway, token, await _records(gateway.url, token))
        except BaseException as exc:
            exc.add_note(deployment.logs())
            raise
        finally:
            deployment.stop_all()


async def _records(url: str, token: str) -> dict[str, str]:
    """One record of each kind a path names, for the run to change and delete: a user
    (not the one signed in), an agent, an AI config, a webhook, a push subscription, a
    session and a task in it (queued: no agent runs it)."""

    async def make(path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, answer = await asyncio.to_thread(http, "POST", url + path, body, token)
        assert status == 201, (path, answer)
        return answer

    user = await make("/api/users", {"username": "someone", "password": PASSWORD})
    agent = await make("/api/agents", {"name": "box"})
    config = await make("/api/ai-configs", {"name": "c", "tool": "claude", "apiKey": "sk-1"})
    webhook = await make(
        "/api/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["task.completed"]}
    )
    keys = {"p256dh": "B" + "A" * 86, "auth": "A" * 22}
    push = await make(
        "/api/push/subscriptions",
        {"subscription": {"endpoint": "https://127.0.0.1:9/push", "keys": keys}},
    )
    session = await make("/api/sessions", {"title": "t"})
    task = await make(
        "/api/tasks", {"tool": "custom", "command": ["true"], "sessionId": session["session"]["id"]}
    )
    return {
        "user_id": user["user"]["id"],
        "agent_id": agent["agentId"],
        "config_id": config["aiConfig"]["id"],
        "webhook_id": webhook["webhook"]["id"],
        "subscription_id": push["subscription"]["id"],
        "session_id": session["session"]["id"],
        "task_id": task["taskId"],
    }


async def _document(served: Served) -> dict[str, Any]:
    status, document = await asyncio.to_thread(
        http, "GET", served.gateway.url + "/api/openapi.json"
    )
    assert status == 200, document  # no token needed
    return document


async def test_the_document_is_public_and_valid_openapi(served: Served) -> None:
    document = await _document(served)
    validate(document)  # raises on anything that is not OpenAPI 3.1
    assert document["openapi"].startswith("3.1")
    schemas = document["components"]["schemas"]
    bearer = document["components"]["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")

    create = document["paths"]["/api/agents"]["post"]
    assert create["security"] == [{"bearerAuth": []}]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CreateAgent"}
    assert schemas["CreateAgent"]["required"] == ["name"]
    assert "id" not in schemas["CreateAgent"]["properties"]  # the envelope is not the body's
    answer = create["responses"]["201"]["content"]["application/json"]["schema"]
    assert schemas[answer["$ref"].rsplit("/", 1)[1]]["required"] == ["agentId", "agentSecret"]
    # Errors: ErrorInfo, by status, naming their codes.
    error = create["responses"]["401"]
    assert error["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorAnswer")
    assert "AUTH_001" in error["description"]
    assert "PARAM_001" in create["responses"]["400"]["description"]
    info = schemas["ErrorInfo"]
    assert {"code", "message", "timestamp"} <= set(info["required"])
    assert "PARAM_001" in info["properties"]["code"]["enum"]

    # Path and query parameters, a handler's docstring, public operations.
    events = document["paths"]["/api/sessions/{session_id}/events"]["get"]
    where = {(p["name"], p["in"]) for p in events["parameters"]}
    assert {("session_id", "path"), ("after", "query"), ("limit", "query")} <= where
    assert "whole history" in events["description"]
    assert document["paths"]["/api/auth/login"]["post"]["security"] == []
    assert document["paths"]["/health"]["get"]["security"] == []


async def test_every_rest_route_is_in_the_document(served: Served) -> None:
    from gateway.app import create_app

    document = await _document(served)
    app = create_app(Settings.load(served.deployment.env), name="routes")
    app.router.finalize()
    routes = set()
    for route in app.router.routes:
        path = "/" + route.path
        if path.startswith(("/api/", "/health", "/metrics")):
            path = re.sub(r"<([^:>]+)(:[^>]*)?>", r"{\1}", path)
            routes |= {(method, path) for method in route.methods - {"HEAD", "OPTIONS"}}
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert len(routes) > 40
    assert routes - documented == set()
    assert documented - routes == set()


async def test_the_docs_page_is_served_under_the_console_policy(served: Served) -> None:
    def fetch(path: str) -> requests.Response:
        return requests.get(served.gateway.url + path, timeout=30)

    page, script = await asyncio.gather(
        asyncio.to_thread(fetch, "/api/docs"), asyncio.to_thread(fetch, "/console/docs.js")
    )
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/console/docs.js">' in page.text
    assert script.status_code == 200 and "/api/openapi.json" in script.text


@pytest.mark.skipif(not CHROMIUM, reason="Chromium is not installed (.ci/run does)")
async def test_the_docs_page_renders_every_operation(served: Served) -> None:
    from playwright.async_api import async_playwright

    document = await _document(served)
    count = sum(len(operations) for operations in document["paths"].values())
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(served.gateway.url + "/api/docs")
            create = page.locator("section#agents\\.create_agent")
            await create.wait_for()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "api-docs.png"))
            assert await page.locator("section.operation[id*='.']").count() == count
            text = await create.inner_text()
            assert "POST" in text and "/api/agents" in text and "AgentSecret" in text
            assert "PARAM_001" in text and "name" in text
            # The schemas it links to are on the page too.
            await page.locator("section#schema-CreateAgent").wait_for()
            await page.get_by_label("Filter operations").fill("rotate")
            assert await page.locator("section.operation[id*='.']").count() == 1
            assert errors == []  # nothing refused by the Content-Security-Policy either
        finally:
            await browser.close()


async def test_schemathesis_finds_no_server_error(served: Served) -> None:
    started = time.monotonic()
    problems, calls = await asyncio.to_thread(
        _schemathesis, served.gateway.url, served.token, served.ids
    )
    took_s = time.monotonic() - started
    print(f"schemathesis: {calls} calls in {took_s:.1f} s, {len(problems)} problems")
    assert calls > 300, f"only {calls} requests were made"
    assert not problems, f"{len(problems)} problems in {calls} calls ({took_s:.0f} s):\n" + (
        "\n\n".join(problems[:20]) + "\n----- gateway -----\n" + served.gateway.log()[-4000:]
    )
    # Bad input is refused, not a bug: no stack in the gateway's log.
    assert "Traceback" not in served.gateway.log()


def _schemathesis(base_url: str, token: str, ids: dict[str, str]) -> tuple[list[str], int]:
    """Every operation but EXCLUDED, EXAMPLES positive and EXAMPLES negative examples each,
    as an admin, with ids made up and, again, with the ids of records that exist (deletions
    last): the 5xx answers, and the answers whose status or body the document does not
    describe."""
    schema = schemathesis.openapi.from_url(base_url + "/api/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    problems: list[str] = []
    calls = 0
    session = requests.Session()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    rounds: list[tuple[Any, dict[str, str] | None]] = []
    for operation in sorted(operations, key=lambda op: op.method.upper() == "DELETE"):
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        rounds.append((operation, None))
        names = re.findall(r"{([^}]+)}", operation.path)
        if names and all(name in ids for name in names):
            rounds.append((operation, {name: ids[name] for name in names}))
    for operation, path_parameters in rounds:
        strategy = st.one_of(
            *(
                operation.as_strategy(mode, path_parameters=path_parameters)
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            )
        )

        @settings(
            max_examples=EXAMPLES * 2,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: every problem is kept
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            response = case.call(base_url=base_url, headers=headers, session=session, timeout=60)
            where = f"{case.method} {case.formatted_path}"
            if response.status_code >= 500:
                problems.append(
                    f"{where} -> {response.status_code} {response.text[:400]}\n"
                    f"  {case.as_curl_command(headers=headers)}"
                )
                return
            try:
                case.validate_response(
                    response, checks=[status_code_conformance, response_schema_conformance]
                )
            except (Failure, FailureGroup) as exc:
                problems.append(f"{where} -> {response.status_code}: {str(exc)[:600]}")

        run()
    return problems, calls
