"""`/api/tasks`: start, list, look at and cancel tasks, with the fields of `worker:start`."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from actors.views import task_view
from gateway.openapi import documented, text
from gateway.rest.common import body, caller, node_of
from orchestra.errors import InvalidParameters
from orchestra.protocol import WorkerStart
from orchestra.protocol.rest import TaskAnswer, TasksAnswer, TaskStarted

bp = Blueprint("tasks", url_prefix="/api/tasks")

STATUSES = {
    "queued",
    "assigned",
    "accepted",
    "running",
    "completed",
    "error",
    "cancelled",
    "rejected",
    "lost",
}


@bp.get("/")
@documented(
    answer=TasksAnswer,
    query={
        "status": text("only the tasks in this status", enum=sorted(STATUSES)),
        "sessionId": text("only the tasks of this session"),
    },
    errors=["AUTH_002", "TASK_002"],
)
async def list_tasks(request: Request) -> HTTPResponse:
    who = caller(request)
    node = node_of(request)
    status = request.args.get("status")
    if status is not None and status not in STATUSES:
        raise InvalidParameters(f"unknown status {status[:32]!r}")
    session_id = request.args.get("sessionId")
    if session_id is not None:
        await node.ops.session_for(who, session_id)
        records = await node.store.list_tasks(session_id=session_id, status=status)
    else:
        records = await node.store.list_tasks(
            owner_id=None if who.is_admin else who.user_id, status=status
        )
    views = []
    for record in records:
        try:
            views.append(task_view(await node.ops.task_for(who, record.id)).wire())
        except Exception:
            continue  # history only: the live state is gone
    return json({"tasks": views})


@bp.post("/")
@documented(
    body=WorkerStart,
    answer=TaskStarted,
    status=201,
    errors=["AUTH_002", "TASK_002", "AGENT_001"],
)
async def create_task(request: Request) -> HTTPResponse:
    who = caller(request)
    started = await node_of(request).ops.start_worker(who, body(request, WorkerStart))
    return json(started, status=201)


@bp.get("/<task_id:str>")
@documented(answer=TaskAnswer, errors=["AUTH_002", "TASK_002"])
async def get_task(request: Request, task_id: str) -> HTTPResponse:
    who = caller(request)
    return json({"task": task_view(await node_of(request).ops.task_for(who, task_id)).wire()})


@bp.post("/<task_id:str>/cancel")
@documented(answer=TaskAnswer, errors=["AUTH_002", "TASK_002"])
async def cancel_task(request: Request, task_id: str) -> HTTPResponse:
    who = caller(request)
    node = node_of(request)
    await node.ops.task_command(who, task_id, "stop", {"mode": "interrupt"})
    return json({"task": task_view(await node.ops.task_for(who, task_id)).wire()})
