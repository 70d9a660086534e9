"""One frozen, typed `Settings`, read from the environment only at the entry point.

Values come, lowest precedence first, from the profile (`development` or `production`,
carrying the original design's §9.1 values), an optional TOML file (`ORCHESTRA_CONFIG` or
`--config`), environment variables with the prefix `ORCHESTRA_`, and explicit overrides
from the command line. The result is passed explicitly to whatever needs it.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from orchestra.files import make_private_dir

__all__ = ["PROFILES", "Settings", "SettingsError"]

ENV_PREFIX = "ORCHESTRA_"

PROFILES: dict[str, dict[str, Any]] = {
    "development": {
        "heartbeat_interval_s": 10.0,
        "connection_timeout_s": 30.0,
        "agent_grace_period_s": 30.0,
        "compression_threshold_bytes": 1024,
        "transports": ("websocket", "polling"),
        "allowed_origins": ("http://localhost:5173", "http://localhost:3000"),
        "max_reconnect_attempts": 10,
        "reconnect_delay_s": 1.0,
        "batch_size": 10,
        "flush_interval_ms": 100,
        "message_queue_size": 1000,
        "log_level": "DEBUG",
        "expose_stack": True,
    },
    "production": {
        "heartbeat_interval_s": 30.0,
        "connection_timeout_s": 60.0,
        "agent_grace_period_s": 60.0,
        "compression_threshold_bytes": 512,
        "transports": ("websocket",),
        "allowed_origins": (),
        "max_reconnect_attempts": 5,
        "reconnect_delay_s": 5.0,
        "batch_size": 50,
        "flush_interval_ms": 50,
        "message_queue_size": 10000,
        "log_level": "INFO",
        "expose_stack": False,
    },
}


class SettingsError(ValueError):
    """Raised when the environment or the TOML file holds a setting that does not validate."""


class Settings(BaseModel):
    """Everything configurable, for the gateway, the agent daemon and the CLI."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: Literal["development", "production"] = "development"

    # Gateway
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    node_id: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Redis Cluster (`redis+cluster://h1:p1,h2:p2`): a write that must not be lost to a
    # master's failover is followed by `WAIT redis_wait_replicas redis_wait_timeout_ms` on
    # its connection before anything leaves the slot (`orchestra.redis_client`
    # `call_replicated`). 0: no WAIT (single Redis, or asynchronous replication accepted).
    # A WAIT that times out is counted (`orchestra_redis_wait_timeouts_total`), not an error.
    redis_wait_replicas: int = Field(0, ge=0)
    redis_wait_timeout_ms: int = Field(500, gt=0)
    database_url: str = ""  # default: SQLite in the data folder
    data_dir: Path = Path(".orchestra")
    jwt_secret: str = Field(default="", repr=False)
    # Master key of secrets kept at rest (agent secrets, AI config API keys, webhook
    # secrets): base64 of 32 bytes. Required in production; in development one is kept in
    # the data folder.
    secrets_key: str = Field(default="", repr=False)
    # Where users reach the web console, for links in notifications; empty: host and port.
    public_url: str = ""
    # Webhook notifications: each delivery is tried this often (1 s, 2 s, 4 s... apart),
    # waits this long for an answer, and an entry left unacknowledged this long by a node
    # that died is taken over by another. The event stream keeps about this many entries.
    webhook_max_attempts: int = Field(8, gt=0, le=30)
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_claim_idle_s: float = Field(30.0, gt=0)
    webhook_stream_max_len: int = Field(10_000, gt=0)
    # Web Push to users' devices (`gateway.web_push`; deliveries tried and taken over as
    # webhooks' are). The VAPID key: base64url of a P-256 private key's 32 bytes, the same
    # on every node (subscriptions are bound to its public half); when unset, one is made
    # at first start and kept in the data folder. The subject is a contact the push
    # services may use: `mailto:` or an https URL. A push waits at most `push_ttl_s` at
    # the push service for a device that is off. Plain-http subscription endpoints are
    # refused unless `push_insecure_endpoints` (tests with a local push service).
    push_vapid_private_key: str = Field(default="", repr=False)
    push_subject: str = "mailto:orchestra@localhost"
    push_ttl_s: int = Field(24 * 3600, ge=0, le=28 * 24 * 3600)
    push_insecure_endpoints: bool = False
    access_token_ttl_s: int = Field(900, gt=0)
    refresh_token_ttl_s: int = Field(7 * 24 * 3600, gt=0)
    allowed_origins: tuple[str, ...] = ()
    transports: tuple[str, ...] = ("websocket", "polling")
    max_payload_bytes: int = Field(1024 * 1024, gt=0)
    compression_threshold_bytes: int = Field(1024, ge=0)
    rate_limit_requests: int = Field(100, gt=0)
    rate_limit_window_s: float = Field(60.0, gt=0)
    # Events one agent may send a second, sustained, and in one burst: a token bucket in
    # the memory of the node it is connected to (no Redis round trip per event). Generous:
    # a busy worker's output, in batches, stays far below it.
    agent_rate_limit_per_s: float = Field(2000.0, gt=0)
    agent_rate_limit_burst: int = Field(10_000, gt=0)
    # Sockets one user may hold open on `/web`, and one agent on `/agent`, across all
    # nodes (an agent that reconnects may hold its old socket a moment longer).
    max_sockets_per_user: int = Field(32, gt=0)
    max_sockets_per_agent: int = Field(2, gt=0)
    # A socket's slot outlives the last refresh by its node this long (each node refreshes
    # its slots every third of it): how long the slots of a node that died stay taken.
    socket_slot_ttl_s: float = Field(60.0, gt=0)
    # Failed logins before `POST /api/auth/login` answers RATE_001 without checking the
    # password: per account (username, case-folded) and per address, in a fixed window.
    # A successful login clears the account's count.
    login_max_failures_per_account: int = Field(10, gt=0)
    login_max_failures_per_address: int = Field(50, gt=0)
    login_failure_window_s: float = Field(900.0, gt=0)
    handshake_max_skew_s: float = Field(300.0, gt=0)
    partitions: int = Field(16, gt=0, le=4096)
    ask_timeout_s: float = Field(10.0, gt=0)
    # How long a stopping gateway waits for requests in flight before it closes them.
    shutdown_timeout_s: float = Field(3.0, ge=0)
    lease_ttl_s: float = Field(6.0, gt=0)
    dispatch_strategy: str = "least-connections"
    # The newest events a session's Redis stream keeps; older ones are archived to SQL
    # first, then trimmed, by a cluster-wide job every `stream_trim_interval_s`.
    session_stream_max_events: int = Field(10_000, gt=0)
    stream_trim_interval_s: float = Field(10.0, gt=0)
    # How long a worker's permission request waits for an answer before it is denied.
    permission_timeout_s: float = Field(1800.0, gt=0)
    expose_stack: bool = False
    log_level: str = "INFO"
    # Logs (issue 12, `orchestra/logs.py`): `json`, one sanitised JSON object a line with
    # the trace id and the ids of the request; `text` for a terminal; `auto`: text when
    # stderr is a terminal, JSON otherwise (`orchestra up` runs its children with text).
    log_format: Literal["auto", "json", "text"] = "auto"
    # Warn (with the stack) when the event loop is held longer than this; 0: no watch.
    loop_stall_warn_ms: int = Field(0, ge=0)
    # Health checks and cleanup (issue 12, leader-run jobs). Every online agent is pinged
    # this often; one whose pong takes longer than `agent_pong_timeout_s` is unhealthy
    # until a pong comes (silent for three heartbeats, it goes offline). Cleanup runs every
    # `cleanup_interval_s`: dead nodes' leftovers, queue entries of tasks that are gone,
    # and the event streams of sessions ended longer than `session_stream_retention_s`
    # ago (archived to SQL first, still readable from there).
    agent_ping_interval_s: float = Field(10.0, gt=0)
    agent_pong_timeout_s: float = Field(5.0, gt=0)
    cleanup_interval_s: float = Field(60.0, gt=0)
    session_stream_retention_s: float = Field(7 * 24 * 3600.0, ge=0)
    # Metrics (issue 12, `GET /metrics`). Every `metrics_interval_s` each node times a
    # Redis and a SQL round trip and counts its mailboxes' depth, and the leader counts
    # tasks by status, the dispatch queue and the archive's lag. With a token set,
    # scrapes must send `Authorization: Bearer <metrics_token>`.
    metrics_interval_s: float = Field(15.0, gt=0)
    metrics_token: str = Field(default="", repr=False)
    # Alerts (issue 12, `gateway.alerts`): the leader evaluates the rules every
    # `alert_interval_s`: an agent offline; the online agents' average latency over
    # `alert_latency_ms`; over `alert_error_rate` of the socket requests of the last
    # `alert_window_s` answered with an error (once at least `alert_error_min_requests`
    # came); a permission request waiting longer than `alert_permission_wait_s`; tasks
    # queued longer than `alert_queue_wait_s`. An alert fires once, and resolves once
    # its condition clears; the same alert does not fire again within
    # `alert_cooldown_s` of its last firing. Firing and resolved alerts go to the log,
    # to SQL and to each of `alert_webhooks` (comma-separated URLs), signed with
    # `alert_webhook_secret` (required when any URL is given) as users' webhooks are.
    alert_interval_s: float = Field(60.0, gt=0)
    alert_cooldown_s: float = Field(600.0, ge=0)
    alert_window_s: float = Field(300.0, gt=0)
    alert_latency_ms: float = Field(5000.0, gt=0)
    alert_error_rate: float = Field(0.1, gt=0, le=1)
    alert_error_min_requests: int = Field(20, gt=0)
    alert_permission_wait_s: float = Field(600.0, gt=0)
    alert_queue_wait_s: float = Field(300.0, gt=0)
    alert_webhook_secret: str = Field(default="", repr=False)
    alert_webhooks: tuple[str, ...] = Field(default=(), repr=False)

    # Agents (both sides use the heartbeat figures)
    heartbeat_interval_s: float = Field(10.0, gt=0)
    connection_timeout_s: float = Field(30.0, gt=0)
    # How long a disconnected agent's tasks wait for it to come back before they are lost.
    agent_grace_period_s: float = Field(30.0, gt=0)
    # A command an agent leaves unacknowledged this long (up to twice) is sent again.
    command_resend_after_s: float = Field(10.0, gt=0)
    max_reconnect_attempts: int = 10
    reconnect_delay_s: float = Field(1.0, gt=0)
    reconnect_max_delay_s: float = Field(30.0, gt=0)
    batch_size: int = Field(10, gt=0)
    flush_interval_ms: int = Field(100, ge=0)
    message_queue_size: int = Field(1000, gt=0)

    # Agent daemon. `server_url` may list several gateways, comma-separated: the agent
    # connects to one and moves to another when it loses it.
    server_url: str = "http://127.0.0.1:8080"
    agent_id: str = ""
    agent_secret: str = Field(default="", repr=False)
    agent_secret_file: Path | None = None
    agent_name: str = ""
    agent_state_dir: Path = Path(".orchestra/agent")
    agent_max_concurrency: int = Field(4, gt=0)
    # Working directories must lie under these (links and `..` resolved); none given:
    # the home directory of the user the agent runs as.
    agent_allowed_roots: tuple[Path, ...] = ()
    # Capabilities beyond the tools found (`gpu`, say); the tools are listed by themselves.
    agent_capabilities: tuple[str, ...] = ()
    # The tools this agent offers, of those installed here (none given: every one found).
    agent_tools: tuple[str, ...] = ()
    worker_stop_grace_s: float = Field(5.0, gt=0)

    @field_validator(
        "allowed_origins", "transports", "agent_capabilities", "agent_tools", mode="before"
    )
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("secrets_key")
    @classmethod
    def _check_secrets_key(cls, value: str) -> str:
        if value and not _is_key(value):
            # Never echo the value: it is a secret, even when malformed.
            raise ValueError("must be the base64 encoding of 32 bytes")
        return value

    @field_validator("alert_webhooks", mode="before")
    @classmethod
    def _split_alert_webhooks(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("alert_webhooks")
    @classmethod
    def _check_alert_webhooks(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                # Never echo the URL: it may carry a token.
                raise ValueError("each URL must be http:// or https://")
        if value and not info.data.get("alert_webhook_secret"):
            raise ValueError("ORCHESTRA_ALERT_WEBHOOK_SECRET must be set to sign alerts")
        return value

    @field_validator("agent_allowed_roots", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(Path(p) for p in value.split(os.pathsep) if p)
        return value

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        config_file: Path | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build the settings for an entry point: profile < TOML < environment < overrides."""
        env = os.environ if env is None else env
        # The environment is shared with other tools (ORCHESTRA_TEST_*, say): only names
        # of settings are read from it, while a TOML file must hold nothing unknown.
        from_env = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in env.items()
            if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in cls.model_fields
        }
        config_path = env.get(ENV_PREFIX + "CONFIG")
        path = config_file or (Path(config_path) if config_path else None)
        from_file: dict[str, Any] = {}
        if path is not None:
            try:
                from_file = tomllib.loads(path.read_text())
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise SettingsError(f"cannot read the configuration file {path}: {exc}") from exc
        given = {**from_file, **from_env, **{k: v for k, v in overrides.items() if v is not None}}
        profile = str(given.get("profile", "development"))
        if profile not in PROFILES:
            raise SettingsError(f"unknown profile {profile!r}: use development or production")
        values = {**PROFILES[profile], **given}
        try:
            settings = cls(**values)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None
        return settings.with_defaults()

    def with_defaults(self) -> Settings:
        """Fill what is derived: the SQLite file in the data folder, a node id, and a JWT
        secret and a secrets key kept in the data folder (development profile only).

        The production profile refuses to start without a JWT secret, a secrets key and an
        explicit list of allowed origins (not "*")."""
        changes: dict[str, Any] = {}
        if not self.database_url:
            changes["database_url"] = f"sqlite+aiosqlite:///{self.data_dir / 'orchestra.db'}"
        if not self.node_id:
            changes["node_id"] = f"node-{secrets.token_hex(4)}"
        if not self.jwt_secret:
            if self.profile == "production":
                raise SettingsError("ORCHESTRA_JWT_SECRET must be set in the production profile")
            changes["jwt_secret"] = _dev_secret(
                self.data_dir, "jwt-secret", lambda: secrets.token_urlsafe(48)
            )
        if not self.secrets_key:
            if self.profile == "production":
                raise SettingsError("ORCHESTRA_SECRETS_KEY must be set in the production profile")
            changes["secrets_key"] = _dev_secret(
                self.data_dir, "secrets-key", lambda: base64.b64encode(os.urandom(32)).decode()
            )
        if self.profile == "production":
            # Browsers from anywhere must not talk to a production gateway by default.
            if not self.allowed_origins:
                raise SettingsError(
                    "ORCHESTRA_ALLOWED_ORIGINS must list the web console's origins in the "
                    "production profile"
                )
            if "*" in self.allowed_origins:
                raise SettingsError(
                    'ORCHESTRA_ALLOWED_ORIGINS may not hold "*" in the production profile: '
                    "list the web console's origins"
                )
        return self.model_copy(update=changes) if changes else self

    def vapid_private_key(self) -> str:
        """`push_vapid_private_key`, or the one kept in the data folder (made the first
        time: only a gateway asks)."""
        return self.push_vapid_private_key or _dev_secret(
            self.data_dir, "vapid-private-key", _new_vapid_key
        )

    @property
    def console_url(self) -> str:
        """The web console's address for links: `public_url`, or this gateway's own."""
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"

    @property
    def server_urls(self) -> tuple[str, ...]:
        """The gateways an agent may connect to, from `server_url`."""
        urls = tuple(u.strip().rstrip("/") for u in self.server_url.split(",") if u.strip())
        return urls or ("http://127.0.0.1:8080",)

    def read_agent_secret(self) -> str:
        """The agent's HMAC secret, from the environment or from its secret file."""
        if self.agent_secret:
            return self.agent_secret
        if self.agent_secret_file is not None:
            return self.agent_secret_file.read_text().strip()
        raise SettingsError("no agent secret: set ORCHESTRA_AGENT_SECRET or --secret-file")


def _is_key(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def _new_vapid_key() -> str:
    """A P-256 private key for VAPID: its 32 bytes, base64url without padding."""
    from cryptography.hazmat.primitives.asymmetric import ec

    number = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
    return base64.urlsafe_b64encode(number.to_bytes(32, "big")).rstrip(b"=").decode()


def _dev_secret(data_dir: Path, name: str, make: Callable[[], str]) -> str:
    """A development secret kept in the data folder (file `name`, mode 600; the folder made
    mode 700), made by `make` the first time, so that tokens and encrypted records survive
    restarts."""
    path = data_dir / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        make_private_dir(data_dir)
        value = make()
        # Write to a private temporary file, then link it into place: two processes starting
        # together agree on whichever secret landed first.
        tmp = data_dir / f".{name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        return path.read_text().strip()


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        parts.append(f"{ENV_PREFIX}{where.upper()}: {error['msg']}")
    return "invalid settings: " + "; ".join(parts)
