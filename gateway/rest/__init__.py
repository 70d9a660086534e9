"""The REST API (PROTOCOL.md §6), one blueprint per resource."""

from gateway.rest import (
    agents,
    ai_configs,
    audit,
    auth,
    health,
    push,
    sessions,
    tasks,
    usage,
    users,
    webhooks,
)

BLUEPRINTS = [
    auth.bp,
    users.bp,
    audit.bp,
    agents.bp,
    ai_configs.bp,
    sessions.bp,
    tasks.bp,
    usage.bp,
    webhooks.bp,
    push.bp,
    health.bp,
]
