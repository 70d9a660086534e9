"""The REST API (PROTOCOL.md §6), one blueprint per resource."""

from gateway.rest import (
    agents,
    ai_configs,
    audit,
    auth,
    health,
    sessions,
    tasks,
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
    webhooks.bp,
    health.bp,
]
