"""The REST API (PROTOCOL.md §6), one blueprint per resource."""

from gateway.rest import (
    agents,
    ai_configs,
    alerts,
    audit,
    auth,
    docs,
    health,
    metrics,
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
    alerts.bp,
    agents.bp,
    ai_configs.bp,
    sessions.bp,
    tasks.bp,
    usage.bp,
    webhooks.bp,
    push.bp,
    health.bp,
    metrics.bp,
    docs.bp,
]
