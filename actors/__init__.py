"""The actor runtime on Redis and Orchestra's actors (DESIGN.md §2).

The public surface: an `ActorSystem` per gateway node, `ActorRef` with `tell` and `ask`,
the `Actor` base, and the addresses of the three actor kinds.
"""

from actors.actor import Actor, ActorEnv, ActorRef, Outlet
from actors.addresses import Address, agent_address, session_address, task_address
from actors.agent import AgentActor
from actors.dispatcher import DISPATCHER, DispatcherActor
from actors.probe import ProbeActor
from actors.runtime import ActorSystem
from actors.scripts import Scripts
from actors.session import SessionActor
from actors.task import TaskActor

KINDS = {
    "agent": AgentActor,
    "session": SessionActor,
    "task": TaskActor,
    "dispatcher": DispatcherActor,
    "probe": ProbeActor,
}

__all__ = [
    "DISPATCHER",
    "KINDS",
    "Actor",
    "ActorEnv",
    "ActorRef",
    "ActorSystem",
    "Address",
    "AgentActor",
    "DispatcherActor",
    "Outlet",
    "ProbeActor",
    "Scripts",
    "SessionActor",
    "TaskActor",
    "agent_address",
    "session_address",
    "task_address",
]
