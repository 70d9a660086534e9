"""`/api/ai-configs` (PROTOCOL.md §6, §7) against a real gateway, on SQLite and PostgreSQL:
each user's own, the API key write-only and kept only as ciphertext."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from gateway.ai_configs import resolve_ai_config
from orchestra.crypto import decrypt_field
from orchestra.db import Store
from orchestra.errors import Forbidden, InvalidParameters
from orchestra.settings import Settings
from tests.e2e.test_rest import Answer, api, ok
from tests.support.processes import Deployment, Gateway
from tests.support.web import login

PASSWORD = "correct horse battery staple"
API_KEY = "sk-ant-api03-PLAINTEXT-MUST-NOT-LEAK-" + "k" * 24
OTHER_KEY = "sk-other-PLAINTEXT-ALSO-SECRET-" + "j" * 24
SETTINGS = {
    "permissionMode": "acceptEdits",
    "allowedTools": ["Read", "Edit", "Bash(git:*)"],
    "baseUrl": "https://llm-proxy.example.com/v1",
    "env": {"HTTPS_PROXY": "http://proxy.local:3128", "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "8000"},
}


@dataclass
class Users:
    gateway: Gateway
    alice: str
    bob: str
    root: str  # an admin

    @property
    def url(self) -> str:
        return self.gateway.url + "/api/ai-configs"


@pytest.fixture
async def users(deployment: Deployment) -> Users:
    for name, admin in (("alice", False), ("bob", False), ("root", True)):
        await deployment.create_user(name, PASSWORD, admin=admin)
    gateway = await deployment.start_gateway("gw1")
    tokens = [await login(gateway.url, name, PASSWORD) for name in ("alice", "bob", "root")]
    return Users(gateway, *tokens)


def secrets_key(deployment: Deployment) -> str:
    """The master key the gateway made for itself in the data folder (development)."""
    return (deployment.root / "data" / "secrets-key").read_text().strip()


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text
    assert "apiKey" not in text and "api_key" not in text and "v1." not in text


async def test_create_list_get_update_delete(users: Users) -> None:
    created = await api(
        "POST",
        users.url,
        {
            "name": "work",
            "tool": "claude",
            "model": "opus",
            "apiKey": API_KEY,
            "settings": SETTINGS,
        },
        users.alice,
    )
    assert created.status == 201, created.text
    assert_no_secret(created.text, API_KEY)
    config = created.body["aiConfig"]
    assert set(config) == {
        "id", "name", "tool", "model", "settings", "hasApiKey", "createdAt", "updatedAt"
    }  # fmt: skip
    assert (config["name"], config["tool"], config["model"]) == ("work", "claude", "opus")
    assert config["settings"] == SETTINGS
    assert config["hasApiKey"] is True
    assert config["createdAt"].endswith("Z") and config["createdAt"] == config["updatedAt"]

    plain = await api("POST", users.url, {"name": "bare", "tool": "qwcoder"}, users.alice)
    assert plain.status == 201, plain.text
    bare = plain.body["aiConfig"]
    assert (bare["model"], bare["settings"], bare["hasApiKey"]) == (None, {}, False)

    listed = await api("GET", users.url, token=users.alice)
    assert [c["id"] for c in listed.body["aiConfigs"]] == [config["id"], bare["id"]]
    assert_no_secret(listed.text, API_KEY)
    fetched = await api("GET", f"{users.url}/{config['id']}", token=users.alice)
    assert fetched.body["aiConfig"] == config
    assert_no_secret(fetched.text, API_KEY)

    # Fields left out stay as they were, the key among them.
    renamed = await ok("PATCH", f"{users.url}/{config['id']}", {"name": "job"}, users.alice)
    assert renamed["aiConfig"]["name"] == "job"
    assert renamed["aiConfig"]["hasApiKey"] is True
    assert renamed["aiConfig"]["settings"] == SETTINGS
    assert renamed["aiConfig"]["updatedAt"] >= config["updatedAt"]
    # `null` clears the key and the model; settings are replaced whole.
    cleared = await ok(
        "PATCH",
        f"{users.url}/{config['id']}",
        {"apiKey": None, "model": None, "settings": {"permissionMode": "plan"}},
        users.alice,
    )
    assert cleared["aiConfig"]["hasApiKey"] is False
    assert cleared["aiConfig"]["model"] is None
    assert cleared["aiConfig"]["settings"] == {"permissionMode": "plan"}
    again = await api("PUT", f"{users.url}/{config['id']}", {"apiKey": OTHER_KEY}, users.alice)
    assert again.status == 200 and again.body["aiConfig"]["hasApiKey"] is True
    assert_no_secret(again.text, OTHER_KEY)

    assert await ok("DELETE", f"{users.url}/{config['id']}", token=users.alice) == {}
    (await api("GET", f"{users.url}/{config['id']}", token=users.alice)).refused(403, "AUTH_002")
    listed = await ok("GET", users.url, token=users.alice)
    assert [c["id"] for c in listed["aiConfigs"]] == [bare["id"]]


async def test_the_key_is_kept_only_as_ciphertext(deployment: Deployment, users: Users) -> None:
    config = (
        await ok("POST", users.url, {"name": "w", "tool": "claude", "apiKey": API_KEY}, users.alice)
    )["aiConfig"]
    async with Store(deployment.database_url) as store:
        record = await store.get_ai_config(config["id"])
    assert record is not None and record.api_key_encrypted
    stored = record.api_key_encrypted
    assert stored.startswith("v1.") and API_KEY not in stored
    assert API_KEY not in repr(record) and stored not in repr(record)
    # It is the key, encrypted for this record under the gateway's master key.
    assert decrypt_field(secrets_key(deployment), config["id"], stored) == API_KEY

    # Updating the key encrypts the new one afresh, for the same record.
    await ok("PATCH", f"{users.url}/{config['id']}", {"apiKey": OTHER_KEY}, users.alice)
    async with Store(deployment.database_url) as store:
        record = await store.get_ai_config(config["id"])
    assert record is not None and record.api_key_encrypted not in (None, stored)
    assert decrypt_field(secrets_key(deployment), config["id"], record.api_key_encrypted or "")
    # Nothing of either key, or of their ciphertexts, in the gateway's log.
    log = users.gateway.log()
    for secret in (API_KEY, OTHER_KEY, stored, record.api_key_encrypted or "-"):
        assert secret not in log
    assert "PLAINTEXT" not in log


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"tool": "claude"}, "name"),
        ({"name": "", "tool": "claude"}, "name"),
        ({"name": "x"}, "tool"),
        ({"name": "x", "tool": "Claude Code!"}, "tool"),
        ({"name": "x", "tool": "claude", "model": 5}, "model"),
        ({"name": "x", "tool": "claude", "settings": {"colour": "red"}}, "settings.colour"),
        ({"name": "x", "tool": "claude", "settings": []}, "settings"),
        ({"name": "x", "tool": "claude", "settings": {"permissionMode": ""}}, "permissionMode"),
        ({"name": "x", "tool": "claude", "settings": {"allowedTools": "Read"}}, "allowedTools"),
        ({"name": "x", "tool": "claude", "settings": {"allowedTools": [1]}}, "allowedTools"),
        ({"name": "x", "tool": "claude", "settings": {"baseUrl": "ftp://h/x"}}, "baseUrl"),
        ({"name": "x", "tool": "claude", "settings": {"baseUrl": "https://"}}, "baseUrl"),
        ({"name": "x", "tool": "claude", "settings": {"baseUrl": "not a url"}}, "baseUrl"),
        ({"name": "x", "tool": "claude", "settings": {"env": {"A": 1}}}, "env"),
        ({"name": "x", "tool": "claude", "settings": {"env": {"1BAD": "x"}}}, "env"),
        ({"name": "x", "tool": "claude", "settings": {"env": ["A=b"]}}, "env"),
        ({"name": "x", "tool": "claude", "settings": {"env": {"OPENAI_API_KEY": "x"}}}, "env"),
    ],
)
async def test_what_does_not_validate_is_refused(
    users: Users, payload: dict[str, Any], field: str
) -> None:
    answer = await api("POST", users.url, {**payload, "apiKey": API_KEY}, users.alice)
    info = answer.refused(400, "PARAM_001")
    fields = [e["field"] for e in info["details"]["errors"]]
    assert any(field in f for f in fields), fields
    assert API_KEY not in answer.text
    assert (await ok("GET", users.url, token=users.alice))["aiConfigs"] == []


async def test_refusals_never_echo_a_secret(users: Users) -> None:
    password = "hunter2-in-the-url"
    answer = await api(
        "POST",
        users.url,
        {"name": "x", "tool": "claude", "settings": {"baseUrl": f"https://u:{password}@h.example"}},
        users.alice,
    )
    answer.refused(400, "PARAM_001")
    assert password not in answer.text
    wrong_type = await api(
        "POST", users.url, {"name": "x", "tool": "c", "apiKey": [API_KEY]}, users.alice
    )
    wrong_type.refused(400, "PARAM_001")
    assert API_KEY not in wrong_type.text
    config = (await ok("POST", users.url, {"name": "x", "tool": "c"}, users.alice))["aiConfig"]
    for change in ({"name": None}, {"tool": None}, {"apiKey": ""}, {"settings": {"env": 1}}):
        refused = await api("PATCH", f"{users.url}/{config['id']}", change, users.alice)
        refused.refused(400, "PARAM_001")
    assert password not in users.gateway.log() and API_KEY not in users.gateway.log()


async def test_each_user_sees_only_their_own(users: Users) -> None:
    mine = (
        await ok("POST", users.url, {"name": "a", "tool": "claude", "apiKey": API_KEY}, users.alice)
    )["aiConfig"]
    theirs = (await ok("POST", users.url, {"name": "b", "tool": "claude"}, users.bob))["aiConfig"]
    assert [c["id"] for c in (await ok("GET", users.url, token=users.bob))["aiConfigs"]] == [
        theirs["id"]
    ]
    # An admin too sees only their own.
    assert (await ok("GET", users.url, token=users.root))["aiConfigs"] == []

    def same_refusal(answer: Answer) -> str:
        return str(answer.refused(403, "AUTH_002")["message"])

    target = f"{users.url}/{mine['id']}"
    unknown = f"{users.url}/{'0' * 32}"
    for token in (users.bob, users.root):
        messages = set()
        for url in (target, unknown):
            messages.add(same_refusal(await api("GET", url, token=token)))
            messages.add(same_refusal(await api("PATCH", url, {"name": "mine now"}, token)))
            messages.add(same_refusal(await api("DELETE", url, token=token)))
        assert len(messages) == 1, "another's config and an unknown one answer alike"
    # Nothing changed.
    assert (await ok("GET", target, token=users.alice))["aiConfig"] == mine
    (await api("GET", users.url)).refused(401, "AUTH_001")
    (await api("POST", users.url, {"name": "a", "tool": "claude"})).refused(401, "AUTH_001")


async def test_resolving_a_config_for_a_worker(deployment: Deployment, users: Users) -> None:
    config = (
        await ok(
            "POST",
            users.url,
            {
                "name": "w",
                "tool": "claude",
                "model": "opus",
                "apiKey": API_KEY,
                "settings": SETTINGS,
            },
            users.alice,
        )
    )["aiConfig"]
    bare = (await ok("POST", users.url, {"name": "b", "tool": "custom"}, users.alice))["aiConfig"]
    settings = Settings.load(
        {"ORCHESTRA_DATA_DIR": str(deployment.root / "data"), **deployment.extra_env},
        database_url=deployment.database_url,
    )
    me = (await ok("GET", users.gateway.url + "/api/auth/me", token=users.alice))["user"]["id"]
    bob = (await ok("GET", users.gateway.url + "/api/auth/me", token=users.bob))["user"]["id"]
    async with Store(deployment.database_url) as store:
        resolved = await resolve_ai_config(store, settings, me, config["id"])
        assert (resolved.tool, resolved.model, resolved.api_key) == ("claude", "opus", API_KEY)
        assert resolved.permission_mode == "acceptEdits"
        assert resolved.allowed_tools == ("Read", "Edit", "Bash(git:*)")
        assert resolved.base_url == "https://llm-proxy.example.com/v1"
        assert resolved.env == SETTINGS["env"]
        assert API_KEY not in repr(resolved) and API_KEY not in str(resolved)
        nothing = await resolve_ai_config(store, settings, me, bare["id"])
        assert (nothing.api_key, nothing.env, nothing.base_url) == (None, {}, None)
        with pytest.raises(Forbidden):
            await resolve_ai_config(store, settings, bob, config["id"])
        with pytest.raises(Forbidden):
            await resolve_ai_config(store, settings, me, "f" * 32)
        with pytest.raises(InvalidParameters):
            await resolve_ai_config(store, settings, me, "")
        # Under another master key the key does not open: PARAM_001, and no key in it.
        other = settings.model_copy(update={"secrets_key": "A" * 43 + "="})
        with pytest.raises(InvalidParameters) as caught:
            await resolve_ai_config(store, other, me, config["id"])
        assert API_KEY not in str(caught.value) and API_KEY not in str(caught.value.details)
