"""The Orchestra agent daemon: connects to a gateway and runs workers (DESIGN.md §6).

Run it with `asyncio.run(run_agent(settings))`; it runs until cancelled or until SIGINT or
SIGTERM, then stops its workers and disconnects.
"""

from __future__ import annotations

from agent_client.daemon import AgentDaemon, run_agent

__all__ = ["AgentDaemon", "run_agent"]
