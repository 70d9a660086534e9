"""The REST API (PROTOCOL.md §6), one blueprint per resource."""

from gateway.rest import agents, auth, health, sessions, tasks

BLUEPRINTS = [auth.bp, agents.bp, sessions.bp, tasks.bp, health.bp]
