"""Users, passwords and the audit log against real gateway processes, on SQLite and
PostgreSQL: `/api/users` and `/api/audit` (administrators only), `PATCH /api/auth/me`,
old password hashes replaced at login, and the audit entries the gateway writes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from orchestra.db import Store, User
from orchestra.db.passwords import needs_rehash
from tests.db.test_passwords import scrypt_hash
from tests.e2e.test_rest import api, log_in, ok
from tests.support.ai import FAKE_TOOLS, answer_request, start_ai
from tests.support.processes import Deployment
from tests.support.running import Running

ROOT_PASSWORD = "root's long password"
ALICE_PASSWORD = "alice's long password"


@dataclass
class Site:
    """A gateway with an administrator (root) and a user (alice), both logged in."""

    deployment: Deployment
    url: str
    root: str
    root_id: str
    alice: str
    alice_id: str


@pytest_asyncio.fixture
async def site(deployment: Deployment) -> Site:
    await deployment.create_user("root", ROOT_PASSWORD, admin=True)
    await deployment.create_user("alice", ALICE_PASSWORD)
    gateway = await deployment.start_gateway("gw1")
    root = await log_in(gateway.url, "root", ROOT_PASSWORD)
    alice = await log_in(gateway.url, "alice", ALICE_PASSWORD)
    return Site(
        deployment,
        gateway.url,
        root["accessToken"],
        root["user"]["id"],
        alice["accessToken"],
        alice["user"]["id"],
    )


async def audit_entries(site: Site, query: str = "") -> list[dict[str, Any]]:
    answer = await ok("GET", f"{site.url}/api/audit{query}", token=site.root)
    entries: list[dict[str, Any]] = answer["entries"]
    return entries


async def stored_user(deployment: Deployment, username: str) -> User:
    async with Store(deployment.database_url) as store:
        user = await store.get_user_by_name(username)
    assert user is not None
    return user


# -- users ----------------------------------------------------------------------------------


async def test_an_admin_manages_users(site: Site) -> None:
    url, root = site.url + "/api/users", site.root
    created = await api("POST", url, {"username": "bob", "password": "bob's password"}, root)
    assert created.status == 201, created.text
    bob = created.body["user"]
    assert (bob["username"], bob["isAdmin"], bob["disabled"]) == ("bob", False, False)
    assert bob["id"] and bob["createdAt"].endswith("Z")
    assert "password" not in created.text.lower() and "argon2" not in created.text
    bob_id = bob["id"]
    assert (await log_in(site.url, "bob", "bob's password"))["user"]["id"] == bob_id

    listed = (await ok("GET", url, token=root))["users"]
    assert {u["username"] for u in listed} == {"root", "alice", "bob"}
    assert next(u for u in listed if u["username"] == "root")["isAdmin"] is True
    assert (await ok("GET", f"{url}/{bob_id}", token=root))["user"] == bob

    promoted = (await ok("PATCH", f"{url}/{bob_id}", {"isAdmin": True}, root))["user"]
    assert promoted["isAdmin"] is True and promoted["disabled"] is False
    disabled = (await ok("PATCH", f"{url}/{bob_id}", {"disabled": True}, root))["user"]
    assert disabled["isAdmin"] is True and disabled["disabled"] is True
    both = {"isAdmin": False, "disabled": False}
    assert (await ok("PATCH", f"{url}/{bob_id}", both, root))["user"] | both == bob | both
    assert (await ok("PATCH", f"{url}/{bob_id}", {}, root))["user"]["isAdmin"] is False

    reset = await ok("POST", f"{url}/{bob_id}/password", {"password": "a new password"}, root)
    assert reset["user"]["id"] == bob_id
    (
        await api(
            "POST", site.url + "/api/auth/login", {"username": "bob", "password": "bob's password"}
        )
    ).refused(401, "AUTH_001")
    await log_in(site.url, "bob", "a new password")

    assert (await api("DELETE", f"{url}/{bob_id}", token=root)).status == 200
    for method, path, body in [
        ("GET", f"{url}/{bob_id}", None),
        ("PATCH", f"{url}/{bob_id}", {"isAdmin": True}),
        ("POST", f"{url}/{bob_id}/password", {"password": "yet another one"}),
        ("DELETE", f"{url}/{bob_id}", None),
    ]:
        (await api(method, path, body, root)).refused(404, "TASK_002")
    assert "bob" not in {u["username"] for u in (await ok("GET", url, token=root))["users"]}


async def test_what_an_admin_may_not_do(site: Site) -> None:
    url, root = site.url + "/api/users", site.root
    for body in [
        {},
        {"username": "carol"},
        {"username": "carol", "password": "short"},  # under 8 characters
        {"username": "carol", "password": "x" * 1025},
        {"username": "", "password": "long enough"},
        {"username": "alice", "password": "long enough"},  # taken
        {"username": "carol", "password": "long enough", "isAdmin": None},
    ]:
        (await api("POST", url, body, root)).refused(400, "PARAM_001")
    assert (await ok("POST", url, {"username": "carol", "password": "x" * 1024}, root))["user"]
    alice = f"{url}/{site.alice_id}"
    (await api("PATCH", alice, {"isAdmin": None}, root)).refused(400, "PARAM_001")
    (await api("POST", f"{alice}/password", {"password": "short"}, root)).refused(400, "PARAM_001")
    (await api("POST", f"{alice}/password", {}, root)).refused(400, "PARAM_001")

    # Never demote, disable or delete oneself: there is always an administrator.
    me = f"{url}/{site.root_id}"
    (await api("PATCH", me, {"isAdmin": False}, root)).refused(400, "PARAM_001")
    (await api("PATCH", me, {"disabled": True}, root)).refused(400, "PARAM_001")
    (await api("DELETE", me, token=root)).refused(400, "PARAM_001")
    assert (await ok("PATCH", me, {"isAdmin": True, "disabled": False}, root))["user"]["isAdmin"]
    assert (await ok("GET", site.url + "/api/auth/me", token=root))["user"]["isAdmin"] is True


async def test_only_admins_reach_users_and_audit(site: Site) -> None:
    url = site.url
    routes = [
        ("GET", "/api/users", None),
        ("POST", "/api/users", {"username": "mallory", "password": "long enough"}),
        ("GET", f"/api/users/{site.root_id}", None),
        ("PATCH", f"/api/users/{site.root_id}", {"disabled": True}),
        ("PATCH", f"/api/users/{site.alice_id}", {"isAdmin": True}),
        ("POST", f"/api/users/{site.root_id}/password", {"password": "long enough"}),
        ("DELETE", f"/api/users/{site.root_id}", None),
        ("GET", "/api/users/no-such-user", None),
        ("DELETE", "/api/users/no-such-user", None),
        ("GET", "/api/audit", None),
        ("GET", "/api/audit?limit=5&action=auth.login", None),
    ]
    for method, path, body in routes:
        answer = await api(method, url + path, body, site.alice)
        assert (answer.status, answer.error["code"]) == (403, "AUTH_002"), (path, answer.text)
        nobody = await api(method, url + path, body)
        assert (nobody.status, nobody.error["code"]) == (401, "AUTH_001"), (path, nobody.text)
    # Nothing changed.
    users = (await ok("GET", url + "/api/users", token=site.root))["users"]
    assert {(u["username"], u["isAdmin"], u["disabled"]) for u in users} == {
        ("root", True, False),
        ("alice", False, False),
    }
    await log_in(url, "root", ROOT_PASSWORD)


async def test_disabled_and_deleted_users_cannot_log_in(site: Site) -> None:
    url, root = site.url, site.root
    bob_id = (
        await ok("POST", url + "/api/users", {"username": "bob", "password": "bob's pw!"}, root)
    )["user"]["id"]
    login = await log_in(url, "bob", "bob's pw!")
    credentials = {"username": "bob", "password": "bob's pw!"}

    await ok("PATCH", f"{url}/api/users/{bob_id}", {"disabled": True}, root)
    refused = await api("POST", url + "/api/auth/login", credentials)
    wrong = await api("POST", url + "/api/auth/login", {"username": "bob", "password": "nope"})
    assert refused.refused(401, "AUTH_001")["message"] == wrong.refused(401, "AUTH_001")["message"]
    again = await api("POST", url + "/api/auth/refresh", {"refreshToken": login["refreshToken"]})
    again.refused(401, "AUTH_001")

    await ok("PATCH", f"{url}/api/users/{bob_id}", {"disabled": False}, root)
    login = await log_in(url, "bob", "bob's pw!")

    await ok("DELETE", f"{url}/api/users/{bob_id}", token=root)
    (await api("POST", url + "/api/auth/login", credentials)).refused(401, "AUTH_001")
    gone = await api("POST", url + "/api/auth/refresh", {"refreshToken": login["refreshToken"]})
    gone.refused(401, "AUTH_001")


# -- passwords ------------------------------------------------------------------------------


async def test_an_old_scrypt_hash_is_replaced_at_login(site: Site) -> None:
    async with Store(site.deployment.database_url) as store:
        await store._add(User(username="elder", password_hash=scrypt_hash("from long ago")))
    assert (await stored_user(site.deployment, "elder")).password_hash.startswith("scrypt$")

    wrong = {"username": "elder", "password": "from long agO"}
    (await api("POST", site.url + "/api/auth/login", wrong)).refused(401, "AUTH_001")
    assert (await stored_user(site.deployment, "elder")).password_hash.startswith("scrypt$")

    first = await log_in(site.url, "elder", "from long ago")
    stored = (await stored_user(site.deployment, "elder")).password_hash
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$") and not needs_rehash(stored)
    second = await log_in(site.url, "elder", "from long ago")
    assert second["user"]["id"] == first["user"]["id"]
    assert (await stored_user(site.deployment, "elder")).password_hash == stored


async def test_changing_ones_own_password(site: Site) -> None:
    url, me = site.url, site.url + "/api/auth/me"
    before = await log_in(url, "alice", ALICE_PASSWORD)
    token = before["accessToken"]
    new = "alice's brand new password"

    wrong = await api("PATCH", me, {"currentPassword": "not it", "newPassword": new}, token)
    wrong.refused(401, "AUTH_001")
    short = await api(
        "PATCH", me, {"currentPassword": ALICE_PASSWORD, "newPassword": "short"}, token
    )
    short.refused(400, "PARAM_001")
    (await api("PATCH", me, {"newPassword": new}, token)).refused(400, "PARAM_001")
    (await api("PATCH", me, {"currentPassword": ALICE_PASSWORD, "newPassword": new})).refused(
        401, "AUTH_001"
    )
    await log_in(url, "alice", ALICE_PASSWORD)  # none of that changed it

    changed = await api("PATCH", me, {"currentPassword": ALICE_PASSWORD, "newPassword": new}, token)
    assert changed.status == 200, changed.text
    fresh = changed.body
    assert fresh["accessToken"] and fresh["refreshToken"] and fresh["expiresIn"] > 0
    assert fresh["user"]["id"] == site.alice_id and new not in changed.text
    assert (await ok("GET", me, token=fresh["accessToken"]))["user"]["id"] == site.alice_id
    assert (await ok("POST", url + "/api/auth/refresh", {"refreshToken": fresh["refreshToken"]}))[
        "accessToken"
    ]

    old = {"username": "alice", "password": ALICE_PASSWORD}
    (await api("POST", url + "/api/auth/login", old)).refused(401, "AUTH_001")
    await log_in(url, "alice", new)
    # Every other sign-in ends: the refresh token from before the change is refused.
    stale = await api("POST", url + "/api/auth/refresh", {"refreshToken": before["refreshToken"]})
    stale.refused(401, "AUTH_001")
    [entry] = await audit_entries(site, "?action=auth.password_changed")
    assert (entry["actorId"], entry["targetId"]) == (site.alice_id, site.alice_id)


# -- the audit log --------------------------------------------------------------------------


async def test_the_audit_log(site: Site) -> None:
    url, root = site.url, site.root
    wrong = {"username": "root", "password": "guessing at it"}
    (await api("POST", url + "/api/auth/login", wrong)).refused(401, "AUTH_001")
    unknown = {"username": "nobody-here", "password": "guessing at it"}
    (await api("POST", url + "/api/auth/login", unknown)).refused(401, "AUTH_001")
    bob_id = (
        await ok("POST", url + "/api/users", {"username": "bob", "password": "bob's pw!"}, root)
    )["user"]["id"]
    await ok("PATCH", f"{url}/api/users/{bob_id}", {"isAdmin": True}, root)
    await ok("PATCH", f"{url}/api/users/{bob_id}", {"disabled": True}, root)
    await ok("PATCH", f"{url}/api/users/{bob_id}", {"disabled": True}, root)  # no change
    await ok("POST", f"{url}/api/users/{bob_id}/password", {"password": "another pw"}, root)
    await ok("DELETE", f"{url}/api/users/{bob_id}", token=root)
    agent = await ok("POST", url + "/api/agents", {"name": "laptop"}, site.alice)
    agent_id, secret = agent["agentId"], agent["agentSecret"]
    rotated = await ok("POST", f"{url}/api/agents/{agent_id}/rotate-secret", {}, site.alice)
    await ok("DELETE", f"{url}/api/agents/{agent_id}", token=site.alice)
    await ok("POST", url + "/api/auth/logout", {}, site.alice)

    answer = await api("GET", url + "/api/audit", token=root)
    assert answer.status == 200, answer.text
    for kept_out in (secret, rotated["agentSecret"], "guessing at it", "bob's pw!", "another pw"):
        assert kept_out not in answer.text
    entries = answer.body["entries"]
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True), "newest first"
    for entry in entries:
        assert set(entry) == {
            "id",
            "at",
            "action",
            "actorId",
            "targetType",
            "targetId",
            "ip",
            "details",
        }
        assert entry["at"].endswith("Z") and entry["ip"] == "127.0.0.1"
    actions = [(e["action"], e["actorId"], e["targetId"]) for e in reversed(entries)]
    assert actions == [
        ("auth.login", site.root_id, site.root_id),
        ("auth.login", site.alice_id, site.alice_id),
        ("auth.login_failed", None, None),
        ("auth.login_failed", None, None),
        ("user.created", site.root_id, bob_id),
        ("user.updated", site.root_id, bob_id),
        ("user.disabled", site.root_id, bob_id),
        ("user.password_reset", site.root_id, bob_id),
        ("user.deleted", site.root_id, bob_id),
        ("agent.created", site.alice_id, agent_id),
        ("agent.secret_rotated", site.alice_id, agent_id),
        ("agent.revoked", site.alice_id, agent_id),
        ("auth.logout", site.alice_id, site.alice_id),
    ]
    by_action = {e["action"]: e for e in entries}
    failed = [e for e in entries if e["action"] == "auth.login_failed"]
    assert [e["details"] for e in failed] == [{"username": "nobody-here"}, {"username": "root"}]
    assert by_action["user.created"]["details"] == {"username": "bob", "isAdmin": False}
    assert by_action["user.updated"]["details"] == {
        "before": {"isAdmin": False},
        "after": {"isAdmin": True},
    }
    assert by_action["user.disabled"]["details"]["after"] == {"disabled": True}
    assert by_action["agent.created"]["targetType"] == "agent"

    # Filters, limits and pages.
    assert [e["targetId"] for e in await audit_entries(site, f"?targetId={bob_id}")] == [bob_id] * 5
    mine = await audit_entries(site, f"?actorId={site.alice_id}")
    assert {e["action"] for e in mine} == {
        "auth.login",
        "agent.created",
        "agent.secret_rotated",
        "agent.revoked",
        "auth.logout",
    }
    logins = await audit_entries(site, f"?action=auth.login&actorId={site.root_id}")
    assert [e["id"] for e in logins] == [entries[-1]["id"]]
    page = await audit_entries(site, "?limit=3")
    assert page == entries[:3]
    rest = await audit_entries(site, f"?limit=1000&before={page[-1]['id']}")
    assert rest == entries[3:]
    at = entries[0]["at"]
    assert entries[0] not in await audit_entries(site, f"?before={at}")
    for query in ("?limit=0", "?limit=1001", "?limit=ten", "?before=yesterday", "?before=-1"):
        (await api("GET", url + "/api/audit" + query, token=root)).refused(400, "PARAM_001")


@pytest.mark.sqlite_only
@FAKE_TOOLS
async def test_a_permission_decision_is_audited(running: Running, tmp_path: Path) -> None:
    url = running.gateway.url
    await running.deployment.create_user("root", ROOT_PASSWORD, admin=True)
    root = (await log_in(url, "root", ROOT_PASSWORD))["accessToken"]
    client = await running.client()
    try:
        started, _ = await start_ai(client, running.agent_id, tmp_path, "scenario: permission")
        asked = await client.wait_for_event(
            "worker:permission", lambda d: d["sessionId"] == started["sessionId"]
        )
        await answer_request(client, started, asked, "allow", scope="session")
        await answer_request(client, started, asked, "deny")  # too late: the first one won
    finally:
        await client.close()
    query = f"?action=permission.decided&targetId={started['taskId']}"
    entries = (await ok("GET", f"{url}/api/audit{query}", token=root))["entries"]
    alice = (await ok("GET", url + "/api/auth/me", token=running.token))["user"]["id"]
    assert [(e["actorId"], e["targetType"], e["details"]) for e in reversed(entries)] == [
        (
            alice,
            "task",
            {
                "taskId": started["taskId"],
                "permissionId": asked["permissionId"],
                "decision": "allow",
                "scope": "session",
                "won": True,
                "outcome": "allowed",
            },
        ),
        (
            alice,
            "task",
            {
                "taskId": started["taskId"],
                "permissionId": asked["permissionId"],
                "decision": "deny",
                "scope": "once",
                "won": False,
                "outcome": "allowed",
            },
        ),
    ]
