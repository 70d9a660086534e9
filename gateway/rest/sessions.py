"""`/api/sessions`: a user's sessions, their participants and their whole event history."""

from __future__ import annotations

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from actors import session_address
from gateway.auth import Principal
from gateway.openapi import documented, integer, text
from gateway.rest.common import body, caller, node_of
from orchestra.codec import valid_event_id
from orchestra.errors import Forbidden, InvalidParameters, OrchestraError
from orchestra.protocol import Payload
from orchestra.protocol.rest import EventsPage, Participants, SessionAnswer, SessionsAnswer

bp = Blueprint("sessions", url_prefix="/api/sessions")

MAX_PAGE = 1000


class CreateSession(Payload):
    title: str = Field("", max_length=512)
    agent_id: str | None = Field(None, max_length=128)


class AddParticipant(Payload):
    user_id: str = Field(min_length=1, max_length=128)


@bp.get("/")
@documented(answer=SessionsAnswer)
async def list_sessions(request: Request) -> HTTPResponse:
    who = caller(request)
    node = node_of(request)
    views = []
    for record in await node.store.list_sessions(who.user_id, admin=who.is_admin):
        try:
            views.append(await node.ops.session_view(await node.ops.session_for(who, record.id)))
        except OrchestraError:
            continue
    return json({"sessions": views})


@bp.post("/")
@documented(body=CreateSession, answer=SessionAnswer, status=201, errors=["AUTH_002", "AGENT_001"])
async def create_session(request: Request) -> HTTPResponse:
    who = caller(request)
    node = node_of(request)
    request_body = body(request, CreateSession)
    state = await node.ops.create_session(
        who, title=request_body.title, agent_id=request_body.agent_id
    )
    return json({"session": await node.ops.session_view(state)}, status=201)


@bp.get("/<session_id:str>")
@documented(answer=SessionAnswer, errors=["AUTH_002", "TASK_002"])
async def get_session(request: Request, session_id: str) -> HTTPResponse:
    who = caller(request)
    node = node_of(request)
    state = await node.ops.session_for(who, session_id)
    return json({"session": await node.ops.session_view(state)})


async def _as_owner(request: Request, session_id: str) -> Principal:
    """The caller, if they own the session (or are an admin)."""
    who = caller(request)
    state = await node_of(request).ops.session_for(who, session_id)
    if not (who.is_admin or state["ownerId"] == who.user_id):
        raise Forbidden("only the session's owner may do this")
    return who


@bp.post("/<session_id:str>/end")
@documented(answer=SessionAnswer, errors=["AUTH_002", "TASK_002"])
async def end_session(request: Request, session_id: str) -> HTTPResponse:
    who = await _as_owner(request, session_id)
    node = node_of(request)
    await node.system.ref(session_address(session_id)).ask("end")
    return json(
        {"session": await node.ops.session_view(await node.ops.session_for(who, session_id))}
    )


@bp.post("/<session_id:str>/participants")
@documented(body=AddParticipant, answer=Participants, errors=["AUTH_002", "TASK_002"])
async def add_participant(request: Request, session_id: str) -> HTTPResponse:
    await _as_owner(request, session_id)
    node = node_of(request)
    user_id = body(request, AddParticipant).user_id
    if await node.store.get_user(user_id) is None:
        raise InvalidParameters("unknown user")
    answer = await node.system.ref(session_address(session_id)).ask(
        "participant:add", {"userId": user_id}
    )
    return json(answer)


@bp.get("/<session_id:str>/events")
@documented(
    answer=EventsPage,
    query={
        "after": text("the page after this eventId (from the start without it)"),
        "before": text("the page just before this eventId"),
        "limit": integer("at most this many events (500 when absent)", 1, MAX_PAGE),
    },
    errors=["AUTH_002", "TASK_002"],
)
async def session_events(request: Request, session_id: str) -> HTTPResponse:
    """The whole history, archived then live, in order: the page after `after` (from the
    start without it), or, with `before`, the page just before that eventId."""
    who = caller(request)
    node = node_of(request)
    await node.ops.session_for(who, session_id)
    after = request.args.get("after") or None
    before = request.args.get("before") or None
    if after is not None and not valid_event_id(after):
        raise InvalidParameters("after must be an eventId")
    if before is not None and not valid_event_id(before):
        raise InvalidParameters("before must be an eventId")
    if after is not None and before is not None:
        raise InvalidParameters("give after or before, not both")
    try:
        limit = int(request.args.get("limit", "500"))
    except ValueError:
        raise InvalidParameters("limit must be a number") from None
    limit = max(1, min(limit, MAX_PAGE))
    if before is not None:
        earlier, more = await node.history.page_before(session_id, before, limit)
        return json(
            {
                "events": [event.wire() for event in earlier],
                "firstEventId": earlier[0].event_id if earlier else before,
                "hasMore": more,
            }
        )
    events = await node.history.page(session_id, after, limit)
    return json(
        {
            "events": [event.wire() for event in events],
            "lastEventId": events[-1].event_id if events else after,
        }
    )
