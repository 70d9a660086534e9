"""Agents' secrets kept encrypted in SQL (AES-256-GCM under the master key, the agent's id as
associated data), and the rows of earlier versions encrypted in place when a store opens.

Each test runs on a fresh SQLite file and a fresh PostgreSQL database (`database_url`).
"""

from __future__ import annotations

import asyncio
import base64

import pytest
from sqlmodel import col

from orchestra.crypto import CryptoError, decrypt_field
from orchestra.db import Store
from orchestra.db.agent_secrets import SecretsKeyMissing
from orchestra.db.models import Agent
from orchestra.db.store import StoreError
from tests.db.conftest import SECRETS_KEY

OTHER_KEY = base64.b64encode(b"o" * 32).decode()


async def stored_secret(url: str, agent_id: str) -> str:
    """What the agent's row holds, read by a store without any key."""
    async with Store(url) as bare:
        agent = await bare.get_agent(agent_id)
    assert agent is not None
    return agent.secret


async def test_a_created_agent_row_holds_only_ciphertext(database_url: str) -> None:
    async with Store(database_url, secrets_key=SECRETS_KEY) as store:
        owner = await store.create_user("gina", "pw")
        agent, secret = await store.create_agent("box", owner.id)
        other, _ = await store.create_agent("other box", owner.id)
        assert agent.secret != secret and secret not in repr(agent)
        assert SECRETS_KEY not in repr(store)

        stored = await stored_secret(database_url, agent.id)
        assert stored.startswith("v1.") and secret not in stored
        assert decrypt_field(SECRETS_KEY, agent.id, stored) == secret
        with pytest.raises(CryptoError):  # the agent id is bound in: no other row opens it
            decrypt_field(SECRETS_KEY, other.id, stored)
        assert await store.agent_secret(agent.id) == secret

        rotated = await store.rotate_agent_secret(agent.id)
        assert rotated is not None and rotated != secret
        again = await stored_secret(database_url, agent.id)
        assert again.startswith("v1.") and again != stored and rotated not in again
        assert decrypt_field(SECRETS_KEY, agent.id, again) == rotated
        assert await store.agent_secret(agent.id) == rotated


async def test_plain_rows_are_encrypted_once_when_stores_open_with_the_key(
    database_url: str,
) -> None:
    plain = "a-secret-of-an-earlier-version-" + "p" * 12
    async with Store(database_url) as bare:
        # As an earlier version wrote them: the secret itself in the row (one revoked).
        # (`_add` is the store's own insert: no public method writes a plain secret now.)
        live = await bare._add(Agent(name="old", owner_id="u1", secret=plain))
        gone = await bare._add(Agent(name="gone", owner_id="u1", secret=plain + "x"))
        assert await bare.revoke_agent(gone.id)
        assert await bare.agent_secret(live.id) == plain  # a keyless store still reads them

    # Two gateways upgrading at once: each row is encrypted exactly once.
    stores = await asyncio.gather(
        *(Store.connect(database_url, secrets_key=SECRETS_KEY) for _ in range(3))
    )
    try:
        for agent_id, secret in ((live.id, plain), (gone.id, plain + "x")):
            stored = await stored_secret(database_url, agent_id)
            assert stored.startswith("v1.") and secret not in stored
            assert decrypt_field(SECRETS_KEY, agent_id, stored) == secret
        assert await stores[0].agent_secret(live.id) == plain
        assert await stores[1].agent_secret(gone.id) is None  # revoked stays revoked
        # Running it again changes nothing.
        assert await stores[2]._encrypt_plain_agent_secrets() == 0
        assert await stores[2].agent_secret(live.id) == plain
        assert await stores[0]._list(Agent, col(Agent.secret) == plain) == []
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_store_without_the_key_neither_makes_nor_reads_secrets(
    database_url: str,
) -> None:
    async with Store(database_url, secrets_key=SECRETS_KEY) as store:
        agent, secret = await store.create_agent("box", "u1")
    async with Store(database_url) as bare:
        for attempt in (
            bare.create_agent("new", "u1"),
            bare.agent_secret(agent.id),
            bare.rotate_agent_secret(agent.id),
        ):
            with pytest.raises(SecretsKeyMissing) as caught:
                await attempt
            assert "ORCHESTRA_SECRETS_KEY" in str(caught.value)
            assert secret not in str(caught.value)
        assert [a.name for a in await bare.list_agents("u1")] == ["box"]  # nothing made
    async with Store(database_url, secrets_key=SECRETS_KEY) as store:
        assert await store.agent_secret(agent.id) == secret  # nor changed


async def test_another_key_does_not_open_a_secret(database_url: str) -> None:
    async with Store(database_url, secrets_key=SECRETS_KEY) as store:
        agent, secret = await store.create_agent("box", "u1")
    stored = await stored_secret(database_url, agent.id)
    async with Store(database_url, secrets_key=OTHER_KEY) as other:
        with pytest.raises(StoreError) as caught:
            await other.agent_secret(agent.id)
    message = str(caught.value)
    assert agent.id in message and secret not in message and stored not in message
    assert OTHER_KEY not in message
