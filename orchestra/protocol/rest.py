"""The REST API's answers as models (PROTOCOL.md §2, §6): the shapes `/api/openapi.json`
documents (`gateway.openapi`). The request bodies are the models the routes validate with.

Each model is a `View`: camelCase on the wire. A field with a default may be left out of an
answer; one typed `X | None` may be null.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, JsonValue

from orchestra.errors import BY_CODE
from orchestra.protocol.base import View
from orchestra.protocol.views import AgentView, SessionView, TaskView

_CODES: list[JsonValue] = [*sorted(BY_CODE)]


class Answer(View):
    """A REST answer's model: its fields' docstrings describe them in the document."""

    model_config = ConfigDict(use_attribute_docstrings=True)


# -- errors --------------------------------------------------------------------------------


class ErrorInfo(Answer):
    """What went wrong, by its protocol code (PROTOCOL.md §2)."""

    code: str = Field(json_schema_extra={"enum": _CODES})
    message: str
    details: dict[str, Any] | None = None
    timestamp: str
    stack: str | None = None
    """A bug's trace: development profile, signed-in callers only."""


class ErrorAnswer(Answer):
    """Every error answer: its HTTP status and `{"error": ErrorInfo}`."""

    error: ErrorInfo


class Empty(Answer):
    """`{}`: done."""


# -- users and sign-in ---------------------------------------------------------------------


class UserView(Answer):
    id: str
    username: str
    is_admin: bool
    disabled: bool
    created_at: str | None = None


class Tokens(Answer):
    """A sign-in: a short-lived access token (the bearer token of every other call) and a
    refresh token, which works once."""

    access_token: str
    refresh_token: str
    expires_in: int
    """Seconds the access token is valid for."""
    user: UserView


class UserAnswer(Answer):
    user: UserView


class UsersAnswer(Answer):
    users: list[UserView]


class AuditEntryView(Answer):
    id: int
    at: str
    action: str
    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    ip: str | None = None
    details: dict[str, Any] = {}


class AuditAnswer(Answer):
    entries: list[AuditEntryView]
    """Newest first."""


# -- agents --------------------------------------------------------------------------------


class AgentsAnswer(Answer):
    agents: list[AgentView]


class AgentSecret(Answer):
    """The agent's secret, shown this once."""

    agent_id: str
    agent_secret: str
    name: str | None = None


# -- AI configs ----------------------------------------------------------------------------


class AIConfigView(Answer):
    """Never the API key: only whether one is set."""

    id: str
    name: str
    tool: str
    model: str | None = None
    settings: dict[str, Any] = {}
    has_api_key: bool
    created_at: str
    updated_at: str


class AIConfigAnswer(Answer):
    ai_config: AIConfigView


class AIConfigsAnswer(Answer):
    ai_configs: list[AIConfigView]


# -- sessions and tasks --------------------------------------------------------------------


class SessionAnswer(Answer):
    session: SessionView


class SessionsAnswer(Answer):
    sessions: list[SessionView]


class Participants(Answer):
    participants: list[str]
    """User ids."""


class SessionEvent(Answer):
    event_id: str
    event: str
    data: dict[str, Any]


class EventsPage(Answer):
    """A page of a session's history. After `after` (or from the start): `lastEventId`, the
    id to ask after next. Before `before`: `firstEventId` and `hasMore`."""

    events: list[SessionEvent]
    last_event_id: str | None = None
    first_event_id: str | None = None
    has_more: bool | None = None


class TaskAnswer(Answer):
    task: TaskView


class TasksAnswer(Answer):
    tasks: list[TaskView]


class TaskStarted(Answer):
    task_id: str
    session_id: str
    agent_id: str | None = None
    status: str


# -- usage ---------------------------------------------------------------------------------


class UsageNumbers(Answer):
    tasks: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    first_at: str | None = None
    last_at: str | None = None


class UsageGroup(UsageNumbers):
    key: str
    """A session id, an agent id or a UTC date (`YYYY-MM-DD`)."""
    name: str | None = None


class UsageAnswer(Answer):
    by: Literal["session", "agent", "day"]
    since: str | None = Field(None, alias="from")
    until: str | None = Field(None, alias="to")
    all: bool
    groups: list[UsageGroup]
    totals: UsageNumbers
    truncated: bool


# -- webhooks and Web Push -----------------------------------------------------------------


class WebhookView(Answer):
    """Never the secret."""

    id: str
    url: str
    events: list[str]
    active: bool
    created_at: str


class WebhookAnswer(Answer):
    webhook: WebhookView


class WebhookCreated(Answer):
    webhook: WebhookView
    secret: str
    """Signs every delivery; shown in this answer only."""


class WebhooksAnswer(Answer):
    webhooks: list[WebhookView]


class PushKey(Answer):
    public_key: str
    """The VAPID application server key (base64url) a browser subscribes with."""


class PushSubscriptionView(Answer):
    """Never the endpoint or the keys."""

    id: str
    events: list[str]
    label: str
    host: str
    created_at: str


class PushSubscriptionAnswer(Answer):
    subscription: PushSubscriptionView


class PushSubscriptionsAnswer(Answer):
    subscriptions: list[PushSubscriptionView]


# -- health --------------------------------------------------------------------------------


class HealthStatus(Answer):
    """The design's HealthStatus: this node, and what it depends on."""

    status: Literal["healthy", "degraded", "unhealthy"]
    timestamp: str
    node: str | None = None
    partitions: list[int] | None = None
    """The actor partitions this node holds."""
    leader: bool | None = None
    """Whether this node runs the cluster-wide jobs."""
    checks: dict[str, Any] | None = None
    """Redis, SQL and an actor round trip: `{status: pass|fail, latencyMs?, message?}` each."""
    agents: dict[str, int] | None = None
    """`{total, healthy}`: the connected agents, and the healthy ones among them."""
    jobs: dict[str, Any] | None = None
    """Each job's runs on this node: `{clusterWide, runs, lastRunAt}`."""
    reasons: list[str] | None = None
    """Why the status is not healthy."""


class AgentHealth(Answer):
    agent_id: str
    name: str
    status: str
    healthy: bool
    latency: float | None = None
    """The last ping's round trip, in milliseconds."""
    last_check: str | None = None
    error: str | None = None
    """Why it is not healthy: `offline`, or its ping went unanswered."""


class AgentHealthSummary(Answer):
    """The design's AgentHealthSummary: every agent not revoked."""

    total_agents: int
    healthy_agents: int
    timestamp: str
    agents: list[AgentHealth]
