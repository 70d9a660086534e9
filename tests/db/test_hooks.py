"""The webhook methods of the SQL store, on SQLite and PostgreSQL (`store` fixture)."""

from __future__ import annotations

import secrets

import pytest

from orchestra.db import DuplicateError, Store


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


async def test_webhook_crud(store: Store) -> None:
    owner = unique("owner")
    hook = await store.create_webhook(owner, "https://h.example/x", ["task.failed"], "v1.cipher")
    assert hook.active and hook.events == ["task.failed"]
    assert "v1.cipher" not in repr(hook)
    assert [h.id for h in await store.list_webhooks(owner)] == [hook.id]
    updated = await store.update_webhook(hook.id, events=["task.completed"], active=False)
    assert updated is not None and updated.events == ["task.completed"] and not updated.active
    fetched = await store.get_webhook(hook.id)
    assert fetched is not None and fetched.events == ["task.completed"]
    with pytest.raises(TypeError):
        await store.update_webhook(hook.id, owner_id="someone else")
    assert await store.update_webhook(unique("nobody")) is None
    assert await store.delete_webhook(hook.id)
    assert not await store.delete_webhook(hook.id)
    assert await store.get_webhook(hook.id) is None


async def test_a_given_id_is_kept_and_not_taken_twice(store: Store) -> None:
    owner, hook_id = unique("owner"), unique("hook")
    hook = await store.create_webhook(owner, "https://h/", ["task.failed"], "c", webhook_id=hook_id)
    assert hook.id == hook_id
    with pytest.raises(DuplicateError):
        await store.create_webhook(owner, "https://h/", ["task.failed"], "c", webhook_id=hook_id)


async def test_webhooks_for_an_event(store: Store) -> None:
    owner, other = unique("owner"), unique("other")
    both = await store.create_webhook(owner, "https://a/", ["task.completed", "task.failed"], "c")
    failed = await store.create_webhook(owner, "https://b/", ["task.failed"], "c")
    off = await store.create_webhook(owner, "https://c/", ["task.failed"], "c")
    await store.update_webhook(off.id, active=False)
    await store.create_webhook(other, "https://d/", ["task.failed"], "c")
    assert [h.id for h in await store.webhooks_for(owner, "task.failed")] == [both.id, failed.id]
    assert [h.id for h in await store.webhooks_for(owner, "task.completed")] == [both.id]
    assert await store.webhooks_for(owner, "permission.requested") == []
    # A kind that is a substring of a subscribed one does not match.
    assert await store.webhooks_for(owner, "task") == []
