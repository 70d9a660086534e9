"""The REST API (PROTOCOL.md §6, §7) against real gateway processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from orchestra.codec import parse_event_id
from tests.e2e.test_handshake import agent_auth, agent_gets_in, refused_code, user_token
from tests.support.processes import Deployment, wait_for
from tests.support.running import PASSWORD, Running

MIB = 1024 * 1024
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@dataclass
class Answer:
    status: int
    text: str

    @property
    def body(self) -> Any:
        return json.loads(self.text) if self.text else {}

    @property
    def error(self) -> dict[str, Any]:
        """The ErrorInfo of an error answer (fails the test if it is not one)."""
        body = self.body
        assert isinstance(body, dict) and isinstance(body.get("error"), dict), self.text[:500]
        info: dict[str, Any] = body["error"]
        assert info.get("code") and info.get("message"), info
        assert TIMESTAMP.match(str(info.get("timestamp"))), info
        assert "stack" not in info, "only a bug's ErrorInfo carries a stack"
        return info

    def refused(self, status: int, code: str) -> dict[str, Any]:
        assert (self.status, self.error["code"]) == (status, code), (self.status, self.text[:500])
        return self.error


def _request(
    method: str, url: str, data: bytes | None, token: str | None, content_type: str
) -> Answer:
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", content_type)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return Answer(answer.status, answer.read().decode())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read().decode())


async def api(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    *,
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> Answer:
    """One HTTP request as any client would send it; the raw answer text is kept."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    return await asyncio.to_thread(_request, method, url, data, token, content_type)


async def ok(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    answer = await api(method, url, body, token)
    assert 200 <= answer.status < 300, (method, url, answer.status, answer.text[:500])
    return answer.body


async def log_in(url: str, username: str, password: str) -> dict[str, Any]:
    login: dict[str, Any] = await ok(
        "POST", url + "/api/auth/login", {"username": username, "password": password}
    )
    return login


# -- auth -----------------------------------------------------------------------------------


async def test_login(running: Running) -> None:
    url = running.gateway.url
    answer = await api("POST", url + "/api/auth/login", {"username": "alice", "password": PASSWORD})
    assert answer.status == 200, answer.text
    login = answer.body
    assert isinstance(login["accessToken"], str) and login["accessToken"]
    assert isinstance(login["refreshToken"], str) and login["refreshToken"]
    assert login["accessToken"] != login["refreshToken"]
    assert isinstance(login["expiresIn"], int) and login["expiresIn"] > 0
    user = login["user"]
    assert user["username"] == "alice" and user["id"]
    assert user.get("isAdmin") is False
    created = datetime.fromisoformat(user["createdAt"].replace("Z", "+00:00"))
    assert created.utcoffset() == timedelta(0), "timestamps on the wire are UTC"
    # Nothing of the password, hashed or not, anywhere in the answer.
    assert not [key for key in user if "password" in key.lower() or "hash" in key.lower()]
    assert "scrypt" not in answer.text and PASSWORD not in answer.text
    assert "password" not in answer.text.lower()

    wrong = await api("POST", url + "/api/auth/login", {"username": "alice", "password": "nope"})
    wrong_info = wrong.refused(401, "AUTH_001")
    # Unknown users get the same answer: no telling which usernames exist.
    nobody = await api("POST", url + "/api/auth/login", {"username": "bob", "password": "nope"})
    assert nobody.refused(401, "AUTH_001")["message"] == wrong_info["message"]

    (await api("POST", url + "/api/auth/login", {"username": "alice"})).refused(400, "PARAM_001")
    (await api("POST", url + "/api/auth/login", {})).refused(400, "PARAM_001")
    (await api("POST", url + "/api/auth/login", {"username": 5, "password": []})).refused(
        400, "PARAM_001"
    )


async def test_refresh_rotates_the_tokens_and_a_used_refresh_token_stops_working(
    running: Running,
) -> None:
    url = running.gateway.url
    first = await log_in(url, "alice", PASSWORD)
    answer = await api("POST", url + "/api/auth/refresh", {"refreshToken": first["refreshToken"]})
    assert answer.status == 200, answer.text
    second = answer.body
    assert second["refreshToken"] != first["refreshToken"]
    assert second["accessToken"] and second["expiresIn"] > 0
    assert second["user"]["username"] == "alice"
    me = await ok("GET", url + "/api/auth/me", token=second["accessToken"])
    assert me["user"]["id"] == first["user"]["id"]

    # The new one works, once.
    third = await ok("POST", url + "/api/auth/refresh", {"refreshToken": second["refreshToken"]})
    assert third["accessToken"]
    await ok("GET", url + "/api/auth/me", token=third["accessToken"])

    # A used one coming back means it was copied: it is refused, and every token descended
    # from the same sign-in stops working with it (refresh and access alike).
    again = await api("POST", url + "/api/auth/refresh", {"refreshToken": first["refreshToken"]})
    again.refused(401, "AUTH_001")
    for token in (second["accessToken"], third["accessToken"]):
        (await api("GET", url + "/api/auth/me", token=token)).refused(401, "AUTH_001")
    stolen = await api("POST", url + "/api/auth/refresh", {"refreshToken": third["refreshToken"]})
    stolen.refused(401, "AUTH_001")
    # Another sign-in of the same user is not touched.
    other = await log_in(url, "alice", PASSWORD)
    await ok("GET", url + "/api/auth/me", token=other["accessToken"])


async def test_a_refresh_token_used_twice_at_once_works_once(running: Running) -> None:
    url = running.gateway.url
    login = await log_in(url, "alice", PASSWORD)
    answers = await asyncio.gather(
        *(
            api("POST", url + "/api/auth/refresh", {"refreshToken": login["refreshToken"]})
            for _ in range(8)
        )
    )
    assert sorted(a.status for a in answers) == [200] + [401] * 7, [a.text for a in answers]
    assert all(a.error["code"] == "AUTH_001" for a in answers if a.status == 401)


async def test_token_kinds_are_not_interchangeable(running: Running) -> None:
    url = running.gateway.url
    login = await log_in(url, "alice", PASSWORD)
    as_refresh = await api(
        "POST", url + "/api/auth/refresh", {"refreshToken": login["accessToken"]}
    )
    as_refresh.refused(401, "AUTH_001")
    as_access = await api("GET", url + "/api/auth/me", token=login["refreshToken"])
    as_access.refused(401, "AUTH_001")
    garbage = await api("POST", url + "/api/auth/refresh", {"refreshToken": "not-a-jwt"})
    garbage.refused(401, "AUTH_001")
    (await api("POST", url + "/api/auth/refresh", {})).refused(400, "PARAM_001")
    # The refresh token was not spent by being shown to /me.
    assert (await ok("POST", url + "/api/auth/refresh", {"refreshToken": login["refreshToken"]}))[
        "accessToken"
    ]


async def test_logout_ends_the_refresh_tokens(running: Running) -> None:
    url = running.gateway.url
    login = await log_in(url, "alice", PASSWORD)
    (await api("POST", url + "/api/auth/logout")).refused(401, "AUTH_001")
    await ok("POST", url + "/api/auth/logout", {}, token=login["accessToken"])
    after = await api("POST", url + "/api/auth/refresh", {"refreshToken": login["refreshToken"]})
    after.refused(401, "AUTH_001")


async def test_me(running: Running) -> None:
    url = running.gateway.url
    me = await api("GET", url + "/api/auth/me", token=running.token)
    assert me.status == 200, me.text
    user = me.body["user"]
    assert user["username"] == "alice"
    assert "password" not in me.text.lower()

    jwt_secret = running.deployment.env["ORCHESTRA_JWT_SECRET"]
    past = int(time.time()) - 3600
    uid = user["id"]
    refusals = {
        "no token": None,
        "garbage": "not-a-jwt",
        "forged with another key": user_token("another-key-" + "k" * 40, uid),
        "unsigned": jwt.encode({"sub": uid, "typ": "access", "exp": past + 7200}, "", "none"),
        "expired": user_token(jwt_secret, uid, iat=past, exp=past + 60),
        "tampered": running.token[:-4] + ("AAAA" if not running.token.endswith("AAAA") else "BBBB"),
    }
    for what, token in refusals.items():
        answer = await api("GET", url + "/api/auth/me", token=token)
        assert (answer.status, answer.error["code"]) == (401, "AUTH_001"), (what, answer.text)
    # A scheme other than Bearer is no token.
    basic = await asyncio.to_thread(
        _with_header, url + "/api/auth/me", "authorization", f"Basic {running.token}"
    )
    basic.refused(401, "AUTH_001")


def _with_header(url: str, name: str, value: str) -> Answer:
    request = urllib.request.Request(url, method="GET")
    request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return Answer(answer.status, answer.read().decode())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read().decode())


# -- agents ---------------------------------------------------------------------------------


async def test_agents_secret_is_shown_once_and_only_to_its_owner(running: Running) -> None:
    url, token = running.gateway.url, running.token
    await running.deployment.create_user("bob", "bob's password")
    bob = (await log_in(url, "bob", "bob's password"))["accessToken"]

    created = await api("POST", url + "/api/agents", {"name": "laptop"}, token)
    assert created.status == 201, created.text
    agent_id, secret = created.body["agentId"], created.body["agentSecret"]
    assert agent_id and isinstance(secret, str) and len(secret) >= 16

    listed = await api("GET", url + "/api/agents", token=token)
    assert listed.status == 200, listed.text
    assert {a["id"] for a in listed.body["agents"]} == {agent_id, running.agent_id}
    view = next(a for a in listed.body["agents"] if a["id"] == agent_id)
    assert view["name"] == "laptop" and view["status"] == "offline"
    daemon = next(a for a in listed.body["agents"] if a["id"] == running.agent_id)
    assert daemon["status"] == "online"
    assert {"connectedAt", "lastHeartbeat", "capabilities", "version", "load"} <= set(daemon)
    assert "custom" in daemon["capabilities"]
    assert daemon["load"]["running"] == 0 and daemon["load"]["max"] >= 1
    # Neither secret, of the new agent or of the CLI-made one, is anywhere in the listing.
    assert secret not in listed.text
    assert running.secret_file.read_text().strip() not in listed.text
    # (the word, outside the test's own folder: the agent reports its roots, which lie there)
    assert "secret" not in listed.text.lower().replace(str(running.deployment.root).lower(), "")
    sync = await api("GET", url + "/api/auth/me", token=token)
    assert secret not in sync.text

    # Another user sees none of alice's agents and may do nothing with them.
    theirs = await api("GET", url + "/api/agents", token=bob)
    assert theirs.status == 200 and theirs.body["agents"] == [], theirs.text
    assert secret not in theirs.text
    (await api("DELETE", f"{url}/api/agents/{agent_id}", token=bob)).refused(403, "AUTH_002")
    rotate = await api("POST", f"{url}/api/agents/{agent_id}/rotate-secret", {}, bob)
    rotate.refused(403, "AUTH_002")
    # ... and the agent still works for alice.
    assert await agent_gets_in(url, agent_auth(agent_id, secret), token)

    (await api("GET", url + "/api/agents")).refused(401, "AUTH_001")
    (await api("POST", url + "/api/agents", {"name": "x"})).refused(401, "AUTH_001")
    (await api("POST", url + "/api/agents", {}, token)).refused(400, "PARAM_001")
    (await api("POST", url + "/api/agents", {"name": ""}, token)).refused(400, "PARAM_001")


async def test_a_deleted_agent_is_revoked(running: Running) -> None:
    url, token = running.gateway.url, running.token
    created = await ok("POST", url + "/api/agents", {"name": "old box"}, token)
    agent_id, secret = created["agentId"], created["agentSecret"]
    assert await agent_gets_in(url, agent_auth(agent_id, secret), token)

    deleted = await api("DELETE", f"{url}/api/agents/{agent_id}", token=token)
    assert deleted.status == 200, deleted.text
    listed = await ok("GET", url + "/api/agents", token=token)
    assert agent_id not in [a["id"] for a in listed["agents"]]
    # Its correctly signed handshake is refused from now on.
    assert await refused_code(url, "/agent", agent_auth(agent_id, secret)) == "AUTH_001"
    # And its secret cannot be renewed.
    rotate = await api("POST", f"{url}/api/agents/{agent_id}/rotate-secret", {}, token)
    assert rotate.status in (403, 404), rotate.text
    assert rotate.error["code"] in ("AUTH_002", "TASK_002")


async def test_a_revoked_agent_daemon_never_comes_online(running: Running) -> None:
    """The daemon of `running` is online; revoked and restarted, it stays out."""
    url, token = running.gateway.url, running.token
    await ok("DELETE", f"{url}/api/agents/{running.agent_id}", token=token)
    running.agent.stop()
    seen = len(running.agent.log())  # the new daemon appends to the same log file
    agent = running.deployment.start_agent(running.agent_id, running.secret_file, url)

    def refused_in_log() -> bool:
        return "AUTH_001" in agent.log()[seen:]

    await wait_for(refused_in_log, what="the daemon's handshake to be refused", timeout_s=60)
    assert "registered as" not in agent.log()[seen:]
    listed = await ok("GET", url + "/api/agents", token=token)
    assert running.agent_id not in [a["id"] for a in listed["agents"]]
    secret = running.secret_file.read_text().strip()
    assert await refused_code(url, "/agent", agent_auth(running.agent_id, secret)) == "AUTH_001"


async def test_rotating_a_secret(running: Running) -> None:
    url, token = running.gateway.url, running.token
    created = await ok("POST", url + "/api/agents", {"name": "rotating"}, token)
    agent_id, old = created["agentId"], created["agentSecret"]
    answer = await api("POST", f"{url}/api/agents/{agent_id}/rotate-secret", {}, token)
    assert answer.status == 200, answer.text
    new = answer.body["agentSecret"]
    assert answer.body["agentId"] == agent_id
    assert new and new != old
    assert await refused_code(url, "/agent", agent_auth(agent_id, old)) == "AUTH_001"
    assert await agent_gets_in(url, agent_auth(agent_id, new), token)
    listed = await api("GET", url + "/api/agents", token=token)
    assert new not in listed.text and old not in listed.text


# -- sessions -------------------------------------------------------------------------------


async def test_sessions(running: Running) -> None:
    url, token = running.gateway.url, running.token
    await running.deployment.create_user("bob", "bob's password")
    bob = (await log_in(url, "bob", "bob's password"))["accessToken"]
    alice_id = (await ok("GET", url + "/api/auth/me", token=token))["user"]["id"]

    created = await api("POST", url + "/api/sessions", {"title": "refactor"}, token)
    assert created.status == 201, created.text
    session = created.body["session"]
    sid = session["id"]
    assert session["title"] == "refactor"
    assert session["ownerId"] == alice_id
    assert session["status"] == "active"
    assert session["participants"] == [alice_id]
    assert session["epoch"] and session["createdAt"]
    assert session["tasks"] == []

    with_agent = await ok("POST", url + "/api/sessions", {"agentId": running.agent_id}, token)
    assert with_agent["session"]["agentId"] == running.agent_id

    listed = await ok("GET", url + "/api/sessions", token=token)
    assert {s["id"] for s in listed["sessions"]} == {sid, with_agent["session"]["id"]}
    got = await ok("GET", f"{url}/api/sessions/{sid}", token=token)
    assert got["session"] == session

    # Bob: not his, so AUTH_002 for everything, and nothing in his list.
    (await api("GET", f"{url}/api/sessions/{sid}", token=bob)).refused(403, "AUTH_002")
    (await api("POST", f"{url}/api/sessions/{sid}/end", {}, bob)).refused(403, "AUTH_002")
    (await api("GET", f"{url}/api/sessions/{sid}/events", token=bob)).refused(403, "AUTH_002")
    (await api("GET", f"{url}/api/tasks?sessionId={sid}", token=bob)).refused(403, "AUTH_002")
    assert (await ok("GET", url + "/api/sessions", token=bob))["sessions"] == []
    bobs_agent = await ok("POST", url + "/api/agents", {"name": "bob's"}, bob)
    on_bobs = await api("POST", url + "/api/sessions", {"agentId": bobs_agent["agentId"]}, token)
    on_bobs.refused(403, "AUTH_002")
    (await api("GET", f"{url}/api/sessions/{sid}")).refused(401, "AUTH_001")

    # Ending it.
    ended = await api("POST", f"{url}/api/sessions/{sid}/end", {}, token)
    assert ended.status == 200, ended.text
    assert ended.body["session"]["status"] == "ended"
    assert (await ok("GET", f"{url}/api/sessions/{sid}", token=token))["session"]["status"] == (
        "ended"
    )
    late = await api(
        "POST",
        url + "/api/tasks",
        {"sessionId": sid, "agentId": running.agent_id, "tool": "custom", "command": "true"},
        token,
    )
    assert 400 <= late.status < 500 and late.error["code"] == "PARAM_001", late.text


async def test_unknown_ids_are_not_found_for_an_admin(running: Running) -> None:
    url = running.gateway.url
    await running.deployment.create_user("root", "root's password", admin=True)
    root = (await log_in(url, "root", "root's password"))["accessToken"]
    for method, path in [
        ("GET", "/api/sessions/no-such-session"),
        ("GET", "/api/sessions/no-such-session/events"),
        ("POST", "/api/sessions/no-such-session/end"),
        ("GET", "/api/tasks/no-such-task"),
        ("DELETE", "/api/agents/no-such-agent"),
        ("GET", "/api/users/no-such-user"),
        ("PATCH", "/api/users/no-such-user"),
        ("DELETE", "/api/users/no-such-user"),
    ]:
        answer = await api(method, url + path, {} if method == "POST" else None, root)
        assert (answer.status, answer.error["code"]) == (404, "TASK_002"), (path, answer.text)
    # An admin sees alice's things.
    theirs = await ok("POST", url + "/api/sessions", {"title": "alice's"}, running.token)
    sid = theirs["session"]["id"]
    assert (await ok("GET", f"{url}/api/sessions/{sid}", token=root))["session"]["id"] == sid
    assert running.agent_id in [
        a["id"] for a in (await ok("GET", url + "/api/agents", token=root))["agents"]
    ]


async def test_an_unknown_id_looks_like_someone_elses_to_a_user(running: Running) -> None:
    """§7: what is not yours answers AUTH_002 (403) "and never leaks whether the thing
    exists": for an id that does not exist a user gets exactly what they get for someone
    else's (as /api/agents already does)."""
    url, token = running.gateway.url, running.token
    await running.deployment.create_user("root", "root's password", admin=True)
    root = (await log_in(url, "root", "root's password"))["accessToken"]
    theirs = (await ok("POST", url + "/api/sessions", {"title": "root's"}, root))["session"]["id"]
    roots_agent = (await ok("POST", url + "/api/agents", {"name": "root's"}, root))["agentId"]
    for method, path in [
        ("GET", f"/api/sessions/{theirs}"),
        ("DELETE", f"/api/agents/{roots_agent}"),
        ("DELETE", "/api/agents/no-such-agent"),
        ("GET", "/api/sessions/no-such-session"),
        ("GET", "/api/sessions/no-such-session/events"),
        ("POST", "/api/sessions/no-such-session/end"),
        ("GET", "/api/tasks/no-such-task"),
        ("GET", "/api/tasks?sessionId=no-such-session"),
        # Administrators' routes: a user learns nothing there, not even what exists.
        ("GET", "/api/users"),
        ("GET", "/api/users/no-such-user"),
        ("DELETE", "/api/users/no-such-user"),
        ("GET", "/api/audit"),
    ]:
        answer = await api(method, url + path, {} if method == "POST" else None, token)
        assert (answer.status, answer.error["code"]) == (403, "AUTH_002"), (path, answer.text)


async def test_participants(running: Running) -> None:
    url, token = running.gateway.url, running.token
    await running.deployment.create_user("bob", "bob's password")
    bob_login = await log_in(url, "bob", "bob's password")
    bob, bob_id = bob_login["accessToken"], bob_login["user"]["id"]
    sid = (await ok("POST", url + "/api/sessions", {"title": "pairing"}, token))["session"]["id"]

    path = f"{url}/api/sessions/{sid}/participants"
    (await api("POST", path, {"userId": bob_id}, bob)).refused(403, "AUTH_002")
    (await api("POST", path, {}, token)).refused(400, "PARAM_001")
    (await api("POST", path, {"userId": "no-such-user"}, token)).refused(400, "PARAM_001")
    added = await api("POST", path, {"userId": bob_id}, token)
    assert added.status == 200, added.text

    session = (await ok("GET", f"{url}/api/sessions/{sid}", token=bob))["session"]
    assert bob_id in session["participants"]

    async def listed_for_bob() -> bool:
        sessions = (await ok("GET", url + "/api/sessions", token=bob))["sessions"]
        return sid in [s["id"] for s in sessions]

    await wait_for(listed_for_bob, what="the session in bob's list")
    assert (await ok("GET", f"{url}/api/sessions/{sid}/events", token=bob))["events"] is not None
    # Taking part is not owning.
    (await api("POST", f"{url}/api/sessions/{sid}/end", {}, bob)).refused(403, "AUTH_002")


# -- tasks and history ----------------------------------------------------------------------


async def test_a_task_over_rest_and_its_history(running: Running, tmp_path: Path) -> None:
    url, token = running.gateway.url, running.token
    created = await api(
        "POST",
        url + "/api/tasks",
        {
            "agentId": running.agent_id,
            "tool": "custom",
            "command": "echo hi",
            "workingDirectory": str(tmp_path),
        },
        token,
    )
    assert created.status == 201, created.text
    task_id, sid = created.body["taskId"], created.body["sessionId"]
    assert created.body["agentId"] == running.agent_id
    assert created.body["status"]

    async def completed() -> bool:
        task = (await ok("GET", f"{url}/api/tasks/{task_id}", token=token))["task"]
        return bool(task["status"] == "completed")

    await wait_for(completed, what="the task to complete over REST", timeout_s=60)
    task = (await ok("GET", f"{url}/api/tasks/{task_id}", token=token))["task"]
    assert task["id"] == task_id and task["sessionId"] == sid
    assert task["agentId"] == running.agent_id and task["tool"] == "custom"
    assert task["createdAt"] and task["finishedAt"]

    by_session = await ok("GET", f"{url}/api/tasks?sessionId={sid}", token=token)
    assert [t["id"] for t in by_session["tasks"]] == [task_id]
    everything = await ok("GET", url + "/api/tasks", token=token)
    assert task_id in [t["id"] for t in everything["tasks"]]
    done = await ok("GET", url + "/api/tasks?status=completed", token=token)
    assert task_id in [t["id"] for t in done["tasks"]]
    running_now = await ok("GET", url + "/api/tasks?status=running", token=token)
    assert task_id not in [t["id"] for t in running_now["tasks"]]
    (await api("GET", url + "/api/tasks?status=bogus", token=token)).refused(400, "PARAM_001")
    session = (await ok("GET", f"{url}/api/sessions/{sid}", token=token))["session"]
    assert [t["id"] for t in session["tasks"]] == [task_id]

    # The session's history: every event, in order, with the output among them.
    async def history() -> list[dict[str, Any]]:
        answer = await ok("GET", f"{url}/api/sessions/{sid}/events", token=token)
        return list(answer["events"])

    async def has_result() -> list[dict[str, Any]] | None:
        events = await history()
        return events if any(e["event"] == "task:result" for e in events) else None

    events = await wait_for(has_result, what="task:result in the history")
    ids = [e["eventId"] for e in events]
    keys = [parse_event_id(i) for i in ids]
    assert keys == sorted(set(keys)), "eventIds must strictly increase"
    streams = [e for e in events if e["event"] == "task:stream"]
    assert [(e["data"]["type"], e["data"]["data"]) for e in streams] == [("stdout", "hi")]
    line = streams[0]["data"]
    assert line["taskId"] == task_id and line["sessionId"] == sid and line["seq"] == 1
    assert line["eventId"] == streams[0]["eventId"]
    statuses = [e["data"]["status"] for e in events if e["event"] == "worker:status"]
    assert statuses[-1] == "completed"
    names = [e["event"] for e in events]
    assert names.index("task:result") > names.index("task:stream")
    assert all(e["data"].get("sessionId") == sid for e in events)

    # Paging with `after` gives the same events, each once.
    paged: list[str] = []
    after = ""
    for _ in range(len(events) + 2):
        page = await ok(
            "GET", f"{url}/api/sessions/{sid}/events?limit=2&after={after}", token=token
        )
        if not page["events"]:
            break
        assert len(page["events"]) <= 2
        paged += [e["eventId"] for e in page["events"]]
        after = page["lastEventId"]
        assert after == page["events"][-1]["eventId"]
    assert paged == ids
    middle = ids[len(ids) // 2]
    rest = await ok("GET", f"{url}/api/sessions/{sid}/events?after={middle}", token=token)
    assert [e["eventId"] for e in rest["events"]] == ids[len(ids) // 2 + 1 :]
    bad_after = await api("GET", f"{url}/api/sessions/{sid}/events?after=yesterday", token=token)
    bad_after.refused(400, "PARAM_001")
    bad_limit = await api("GET", f"{url}/api/sessions/{sid}/events?limit=many", token=token)
    bad_limit.refused(400, "PARAM_001")


async def test_cancelling_a_task(running: Running, tmp_path: Path) -> None:
    url, token = running.gateway.url, running.token
    await running.deployment.create_user("bob", "bob's password")
    bob = (await log_in(url, "bob", "bob's password"))["accessToken"]
    started = await ok(
        "POST",
        url + "/api/tasks",
        {
            "agentId": running.agent_id,
            "tool": "custom",
            "command": "echo sleeping; exec sleep 600",
            "workingDirectory": str(tmp_path),
        },
        token,
    )
    task_id = started["taskId"]

    async def task() -> dict[str, Any]:
        found: dict[str, Any] = (await ok("GET", f"{url}/api/tasks/{task_id}", token=token))["task"]
        return found

    async def is_running() -> bool:
        return (await task())["status"] == "running"

    await wait_for(is_running, what="the task to run")
    cancel = f"{url}/api/tasks/{task_id}/cancel"
    (await api("POST", cancel, {}, bob)).refused(403, "AUTH_002")
    answer = await api("POST", cancel, {}, token)
    assert answer.status == 200, answer.text
    assert answer.body["task"]["id"] == task_id

    async def is_cancelled() -> bool:
        return (await task())["status"] == "cancelled"

    await wait_for(is_cancelled, what="the task to be cancelled")


async def test_starting_tasks_that_cannot_run(running: Running) -> None:
    url, token = running.gateway.url, running.token
    no_command = await api(
        "POST", url + "/api/tasks", {"agentId": running.agent_id, "tool": "custom"}, token
    )
    no_command.refused(400, "PARAM_001")
    no_tool = await api("POST", url + "/api/tasks", {"agentId": running.agent_id}, token)
    no_tool.refused(400, "PARAM_001")
    bad_types = await api("POST", url + "/api/tasks", {"tool": 5, "priority": "urgent"}, token)
    fields = {p["field"] for p in bad_types.refused(400, "PARAM_001")["details"]["errors"]}
    assert fields == {"tool", "priority"}, bad_types.text
    unknown_agent = await api(
        "POST",
        url + "/api/tasks",
        {"agentId": "no-such-agent", "tool": "custom", "command": "true"},
        token,
    )
    assert unknown_agent.error["code"] == "AGENT_001", unknown_agent.text
    offline = await ok("POST", url + "/api/agents", {"name": "never connected"}, token)
    on_offline = await api(
        "POST",
        url + "/api/tasks",
        {"agentId": offline["agentId"], "tool": "custom", "command": "true"},
        token,
    )
    assert on_offline.error["code"] == "AGENT_001", on_offline.text
    no_token = await api("POST", url + "/api/tasks", {"tool": "custom", "command": "true"})
    no_token.refused(401, "AUTH_001")


# -- malformed requests, limits, routes, health ---------------------------------------------


async def test_a_body_that_is_not_json_is_param_001(running: Running) -> None:
    url = running.gateway.url
    for raw in (b'{"username": "alice", "password": ', b"not json at all", b"\xff\xfe\x00"):
        (await api("POST", url + "/api/auth/login", raw=raw)).refused(400, "PARAM_001")
        answer = await api("POST", url + "/api/sessions", raw=raw, token=running.token)
        answer.refused(400, "PARAM_001")
    # A JSON value that is not an object is no better.
    (await api("POST", url + "/api/auth/login", ["alice", PASSWORD])).refused(400, "PARAM_001")
    (await api("POST", url + "/api/tasks", "echo hi", running.token)).refused(400, "PARAM_001")


async def test_a_body_over_the_limit_is_res_001(running: Running) -> None:
    url = running.gateway.url
    huge = {"title": "x" * (MIB + 100)}
    answer = await api("POST", url + "/api/sessions", huge, running.token)
    answer.refused(413, "RES_001")
    # The gateway is fine afterwards.
    assert (await ok("GET", url + "/api/sessions", token=running.token))["sessions"] == []


async def test_unknown_routes_and_methods_answer_with_an_error_object(running: Running) -> None:
    url = running.gateway.url
    missing = await api("GET", url + "/api/no-such-thing", token=running.token)
    assert missing.status == 404, missing.text
    assert missing.error["code"]
    nowhere = await api("GET", url + "/no/such/page")
    assert nowhere.status == 404 and nowhere.error["code"], nowhere.text
    wrong_method = await api("PUT", url + "/api/auth/login", {})
    assert 400 <= wrong_method.status < 500 and wrong_method.error["code"], wrong_method.text


async def test_health(deployment: Deployment) -> None:
    gateway = await deployment.start_gateway("gw-health")
    answer = await api("GET", gateway.url + "/health")
    assert answer.status == 200, answer.text
    health = answer.body
    assert health["status"] == "healthy"
    assert health["node"] == "gw-health"
    assert isinstance(health["partitions"], list)
    assert all(isinstance(p, int) for p in health["partitions"])
    assert health["timestamp"]

    # A lone node comes to hold every partition.
    async def all_partitions() -> bool:
        body = (await api("GET", gateway.url + "/health")).body
        return len(body["partitions"]) == 16

    await wait_for(all_partitions, what="the node to hold all 16 partitions", timeout_s=30)


async def test_health_of_the_agents_is_for_admins(running: Running) -> None:
    url = running.gateway.url + "/health/agents"
    assert (await api("GET", url)).status == 401
    refused = await api("GET", url, token=running.token)  # alice is no admin
    assert (refused.status, refused.body["error"]["code"]) == (403, "AUTH_002")
    await running.deployment.create_user("root", "root's long password", admin=True)
    root = (await log_in(running.gateway.url, "root", "root's long password"))["accessToken"]

    async def measured() -> Any:
        body = await ok("GET", url, token=root)
        return body if body["agents"] and body["agents"][0]["latency"] is not None else None

    summary = await wait_for(measured, what="the agent's ping measured")
    assert (summary["totalAgents"], summary["healthyAgents"]) == (1, 1)
    (agent,) = summary["agents"]
    assert (agent["agentId"], agent["name"], agent["status"]) == (running.agent_id, "box", "online")
    assert agent["healthy"] is True and 0 <= agent["latency"] < 5000 and agent["lastCheck"]

    # Its daemon gone, the agent is offline, and not healthy.
    running.agent.kill()

    async def offline() -> Any:
        body = await ok("GET", url, token=root)
        return body if body["agents"][0]["status"] == "offline" else None

    summary = await wait_for(offline, what="the agent offline", timeout_s=90)
    assert summary["healthyAgents"] == 0 and summary["agents"][0]["healthy"] is False
