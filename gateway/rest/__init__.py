"""The REST API (PROTOCOL.md §6), one blueprint per resource."""

from gateway.rest import agents, ai_configs, auth, health, sessions, tasks, webhooks

BLUEPRINTS = [auth.bp, agents.bp, ai_configs.bp, sessions.bp, tasks.bp, webhooks.bp, health.bp]
