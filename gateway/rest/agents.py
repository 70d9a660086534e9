"""`/api/agents`: the agents a user may see; creating one shows its secret once."""

from __future__ import annotations

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from gateway.audit import audit_request
from gateway.openapi import documented
from gateway.rest.common import body, caller, node_of
from orchestra.errors import Forbidden, NotFound
from orchestra.protocol import Payload
from orchestra.protocol.rest import AgentsAnswer, AgentSecret, Empty

bp = Blueprint("agents", url_prefix="/api/agents")


class CreateAgent(Payload):
    name: str = Field(min_length=1, max_length=256)
    capabilities: list[str] = Field(default_factory=lambda: ["custom"], max_length=64)


@bp.get("/")
@documented(answer=AgentsAnswer)
async def list_agents(request: Request) -> HTTPResponse:
    who = caller(request)
    agents = await node_of(request).ops.visible_agents(who)
    return json({"agents": [a.wire() for a in agents]})


@bp.post("/")
@documented(body=CreateAgent, answer=AgentSecret, status=201)
async def create_agent(request: Request) -> HTTPResponse:
    who = caller(request)
    request_body = body(request, CreateAgent)
    agent, secret = await node_of(request).store.create_agent(
        request_body.name, who.user_id, request_body.capabilities
    )
    await audit_request(
        request,
        "agent.created",
        actor_id=who.user_id,
        target_type="agent",
        target_id=agent.id,
        name=agent.name,
    )
    return json({"agentId": agent.id, "agentSecret": secret, "name": agent.name}, status=201)


async def _owned(request: Request, agent_id: str) -> None:
    who = caller(request)
    record = await node_of(request).store.get_agent(agent_id)
    if record is None or record.revoked:
        if who.is_admin:
            raise NotFound("unknown agent")
        raise Forbidden("not your agent")
    if not (who.is_admin or record.owner_id == who.user_id):
        raise Forbidden("not your agent")


@bp.delete("/<agent_id:str>")
@documented(answer=Empty, errors=["AUTH_002", "TASK_002"])
async def revoke_agent(request: Request, agent_id: str) -> HTTPResponse:
    await _owned(request, agent_id)
    await node_of(request).store.revoke_agent(agent_id)
    await node_of(request).credentials.revoke_agent(agent_id)
    await audit_request(
        request,
        "agent.revoked",
        actor_id=caller(request).user_id,
        target_type="agent",
        target_id=agent_id,
    )
    return json({})


@bp.post("/<agent_id:str>/rotate-secret")
@documented(answer=AgentSecret, errors=["AUTH_002", "TASK_002"])
async def rotate_secret(request: Request, agent_id: str) -> HTTPResponse:
    await _owned(request, agent_id)
    secret = await node_of(request).store.rotate_agent_secret(agent_id)
    await node_of(request).credentials.revoke_agent(agent_id)
    await audit_request(
        request,
        "agent.secret_rotated",
        actor_id=caller(request).user_id,
        target_type="agent",
        target_id=agent_id,
    )
    return json({"agentId": agent_id, "agentSecret": secret})
