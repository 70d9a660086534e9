"""Settings: profiles, environment, TOML file and their refusals (DESIGN.md §7)."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest

from orchestra.files import PRIVATE_DIR, tighten
from orchestra.settings import Settings, SettingsError

SECRET = "a-jwt-secret-that-must-never-be-printed-" + "q" * 16
KEY = base64.b64encode(b"k" * 32).decode()  # ORCHESTRA_SECRETS_KEY
CONSOLE = "https://console.example.com"  # ORCHESTRA_ALLOWED_ORIGINS


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment of our own: the data folder in tmp, so nothing is written elsewhere."""
    return {"ORCHESTRA_DATA_DIR": str(tmp_path / "data")}


def test_development_profile_is_the_default(env: dict[str, str]) -> None:
    settings = Settings.load(env)
    assert settings.profile == "development"
    assert settings.heartbeat_interval_s == 10
    assert settings.connection_timeout_s == 30
    assert settings.compression_threshold_bytes == 1024
    assert settings.transports == ("websocket", "polling")
    assert settings.max_payload_bytes == 1024 * 1024
    assert settings.rate_limit_requests == 100
    assert settings.rate_limit_window_s == 60


def test_production_profile(env: dict[str, str]) -> None:
    settings = Settings.load(
        env
        | {
            "ORCHESTRA_PROFILE": "production",
            "ORCHESTRA_JWT_SECRET": SECRET,
            "ORCHESTRA_SECRETS_KEY": KEY,
            "ORCHESTRA_ALLOWED_ORIGINS": CONSOLE,
        }
    )
    assert settings.profile == "production"
    assert settings.heartbeat_interval_s == 30
    assert settings.connection_timeout_s == 60
    assert settings.compression_threshold_bytes == 512
    assert settings.transports == ("websocket",)
    assert settings.expose_stack is False
    assert settings.jwt_secret == SECRET


def test_environment_overrides_the_profile(env: dict[str, str]) -> None:
    settings = Settings.load(
        env
        | {
            "ORCHESTRA_PROFILE": "production",
            "ORCHESTRA_JWT_SECRET": SECRET,
            "ORCHESTRA_SECRETS_KEY": KEY,
            "ORCHESTRA_ALLOWED_ORIGINS": CONSOLE,
            "ORCHESTRA_HEARTBEAT_INTERVAL_S": "2.5",
            "ORCHESTRA_COMPRESSION_THRESHOLD_BYTES": "100",
            "ORCHESTRA_TRANSPORTS": "websocket, polling",
            "ORCHESTRA_PORT": "9000",
        }
    )
    assert settings.heartbeat_interval_s == 2.5
    assert settings.compression_threshold_bytes == 100
    assert settings.transports == ("websocket", "polling")
    assert settings.port == 9000


def test_only_the_prefix_counts(env: dict[str, str]) -> None:
    settings = Settings.load(
        env | {"HEARTBEAT_INTERVAL_S": "3", "orchestra_port": "1", "ORCHESTRA_TEST_THING": "x"}
    )
    assert settings.heartbeat_interval_s == 10
    assert settings.port == 8080


def test_explicit_overrides_win_over_the_environment(env: dict[str, str]) -> None:
    settings = Settings.load(env | {"ORCHESTRA_PORT": "9000"}, port=9100, host=None)
    assert settings.port == 9100
    assert settings.host == "127.0.0.1"


def test_a_toml_file(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "orchestra.toml"
    config.write_text(
        'profile = "production"\n'
        f'jwt_secret = "{SECRET}"\n'
        f'secrets_key = "{KEY}"\n'
        f'allowed_origins = ["{CONSOLE}"]\n'
        "port = 9200\n"
        'transports = ["websocket", "polling"]\n'
        "heartbeat_interval_s = 12\n"
    )
    settings = Settings.load(env, config_file=config)
    assert settings.profile == "production"
    assert settings.port == 9200
    assert settings.transports == ("websocket", "polling")
    assert settings.heartbeat_interval_s == 12
    # Profile values the file does not set still come from the file's profile.
    assert settings.compression_threshold_bytes == 512


def test_the_environment_wins_over_the_toml_file_named_by_orchestra_config(
    env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "orchestra.toml"
    config.write_text("port = 9200\nheartbeat_interval_s = 12\n")
    settings = Settings.load(
        env | {"ORCHESTRA_CONFIG": str(config), "ORCHESTRA_HEARTBEAT_INTERVAL_S": "4"}
    )
    assert settings.port == 9200
    assert settings.heartbeat_interval_s == 4


def test_an_unknown_key_in_the_toml_file_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "orchestra.toml"
    config.write_text("port = 9200\nheartbeat_intervall_s = 12\n")
    with pytest.raises(SettingsError) as caught:
        Settings.load(env, config_file=config)
    assert "heartbeat_intervall_s".upper() in str(caught.value).upper()


def test_a_broken_or_missing_toml_file_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("port = = 1\n")
    with pytest.raises(SettingsError):
        Settings.load(env, config_file=broken)
    with pytest.raises(SettingsError):
        Settings.load(env, config_file=tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ORCHESTRA_PORT", "eighty"),
        ("ORCHESTRA_PORT", "70000"),
        ("ORCHESTRA_HEARTBEAT_INTERVAL_S", "soon"),
        ("ORCHESTRA_HEARTBEAT_INTERVAL_S", "0"),
        ("ORCHESTRA_MAX_PAYLOAD_BYTES", "-1"),
        ("ORCHESTRA_EXPOSE_STACK", "perhaps"),
        ("ORCHESTRA_PROFILE", "staging"),
    ],
)
def test_a_wrong_value_is_refused_naming_the_variable(
    env: dict[str, str], name: str, value: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.load(env | {name: value})
    message = str(caught.value)
    assert name in message or value in message, message
    if name != "ORCHESTRA_PROFILE":
        assert name in message, message


def test_production_without_a_jwt_secret_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.load(env | {"ORCHESTRA_PROFILE": "production"})
    assert "ORCHESTRA_JWT_SECRET" in str(caught.value)


def test_development_makes_a_jwt_secret_and_keeps_it(env: dict[str, str], tmp_path: Path) -> None:
    first = Settings.load(env)
    second = Settings.load(env)
    assert len(first.jwt_secret) >= 32
    assert first.jwt_secret == second.jwt_secret
    assert (tmp_path / "data" / "jwt-secret").exists()


def test_secrets_never_appear_in_repr_or_str(env: dict[str, str]) -> None:
    agent_secret = "agent-secret-" + "z" * 30
    settings = Settings.load(
        env
        | {
            "ORCHESTRA_PROFILE": "production",
            "ORCHESTRA_JWT_SECRET": SECRET,
            "ORCHESTRA_SECRETS_KEY": KEY,
            "ORCHESTRA_ALLOWED_ORIGINS": CONSOLE,
            "ORCHESTRA_AGENT_SECRET": agent_secret,
        }
    )
    assert settings.jwt_secret == SECRET
    for text in (repr(settings), str(settings), f"{settings}", f"{settings!r}"):
        assert SECRET not in text
        assert agent_secret not in text
        assert KEY not in text


def test_settings_are_frozen(env: dict[str, str]) -> None:
    settings = Settings.load(env)
    with pytest.raises(ValueError):
        settings.port = 1


def test_node_id_is_derived_unless_given(env: dict[str, str]) -> None:
    assert Settings.load(env).node_id
    assert Settings.load(env | {"ORCHESTRA_NODE_ID": "gw7"}).node_id == "gw7"


def test_agent_secret_from_its_file(env: dict[str, str], tmp_path: Path) -> None:
    secret_file = tmp_path / "agent.secret"
    secret_file.write_text("from-the-file\n")
    settings = Settings.load(env | {"ORCHESTRA_AGENT_SECRET_FILE": str(secret_file)})
    assert settings.read_agent_secret() == "from-the-file"
    with pytest.raises(SettingsError):
        Settings.load(env).read_agent_secret()


def test_production_without_a_secrets_key_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.load(env | {"ORCHESTRA_PROFILE": "production", "ORCHESTRA_JWT_SECRET": SECRET})
    assert "ORCHESTRA_SECRETS_KEY" in str(caught.value)


def test_development_makes_a_secrets_key_and_keeps_it(env: dict[str, str], tmp_path: Path) -> None:
    first = Settings.load(env)
    second = Settings.load(env)
    assert len(base64.b64decode(first.secrets_key)) == 32
    assert first.secrets_key == second.secrets_key
    kept = tmp_path / "data" / "secrets-key"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert first.jwt_secret != first.secrets_key


def test_a_malformed_secrets_key_is_refused_without_echoing_it(env: dict[str, str]) -> None:
    wrong = "not-a-32-byte-key-but-still-a-secret"
    with pytest.raises(SettingsError) as caught:
        Settings.load(env | {"ORCHESTRA_SECRETS_KEY": wrong})
    assert "ORCHESTRA_SECRETS_KEY" in str(caught.value)
    assert wrong not in str(caught.value)


def test_the_console_url_defaults_to_host_and_port(env: dict[str, str]) -> None:
    assert Settings.load(env | {"ORCHESTRA_PORT": "9001"}).console_url == "http://127.0.0.1:9001"
    given = Settings.load(env | {"ORCHESTRA_PUBLIC_URL": "https://orchestra.example/"})
    assert given.console_url == "https://orchestra.example"


def production(env: dict[str, str], **more: str) -> dict[str, str]:
    """A production environment with its required secrets, and ``more``."""
    return env | {
        "ORCHESTRA_PROFILE": "production",
        "ORCHESTRA_JWT_SECRET": SECRET,
        "ORCHESTRA_SECRETS_KEY": KEY,
        **more,
    }


def test_production_without_allowed_origins_is_refused(env: dict[str, str]) -> None:
    for origins in ({}, {"ORCHESTRA_ALLOWED_ORIGINS": ""}, {"ORCHESTRA_ALLOWED_ORIGINS": " , "}):
        with pytest.raises(SettingsError) as caught:
            Settings.load(production(env, **origins))
        assert str(caught.value) == (
            "ORCHESTRA_ALLOWED_ORIGINS must list the web console's origins in the "
            "production profile"
        )


def test_production_refuses_any_origin(env: dict[str, str]) -> None:
    for origins in ("*", f"{CONSOLE},*"):
        with pytest.raises(SettingsError) as caught:
            Settings.load(production(env, ORCHESTRA_ALLOWED_ORIGINS=origins))
        assert "ORCHESTRA_ALLOWED_ORIGINS" in str(caught.value) and '"*"' in str(caught.value)


def test_production_takes_the_listed_origins(env: dict[str, str]) -> None:
    given = f"{CONSOLE}, https://other.example.com"
    settings = Settings.load(production(env, ORCHESTRA_ALLOWED_ORIGINS=given))
    assert settings.allowed_origins == (CONSOLE, "https://other.example.com")


def test_development_lists_localhost_origins_and_may_allow_any(env: dict[str, str]) -> None:
    assert Settings.load(env).allowed_origins == (
        "http://localhost:5173",
        "http://localhost:3000",
    )
    assert Settings.load(env | {"ORCHESTRA_ALLOWED_ORIGINS": "*"}).allowed_origins == ("*",)


def test_the_socket_server_allows_the_listed_origins_or_only_its_own(env: dict[str, str]) -> None:
    from gateway.node import Node  # the gateway, only for this test

    own = {"wsgi.url_scheme": "http", "HTTP_HOST": "gateway.example.com:8080"}

    def allows(settings: Settings, origin: str | None) -> bool:
        check = Node(settings).sio.eio.cors_allowed_origins
        assert callable(check)
        return bool(check(origin, own))

    listed = Settings.load(production(env, ORCHESTRA_ALLOWED_ORIGINS=CONSOLE))
    assert allows(listed, CONSOLE)
    assert allows(listed, "http://gateway.example.com:8080")  # the console it serves
    assert not allows(listed, "https://evil.example.com")
    assert allows(listed, None)  # not a browser: no Origin to check
    # An empty list means the gateway's own origin only, never any origin.
    none_listed = Settings.load(env | {"ORCHESTRA_ALLOWED_ORIGINS": ""})
    assert allows(none_listed, "http://gateway.example.com:8080")
    assert not allows(none_listed, CONSOLE)


def test_the_data_folder_is_made_for_its_owner_only(env: dict[str, str], tmp_path: Path) -> None:
    Settings.load(env)  # development: keeps its secrets in the data folder, made now
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


def test_a_data_folder_open_to_others_is_tightened_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    with caplog.at_level(logging.INFO, logger="orchestra.files"):
        assert tighten(folder, PRIVATE_DIR, "data folder")
        assert not tighten(folder, PRIVATE_DIR, "data folder")  # once is enough
        assert not tighten(tmp_path / "missing", PRIVATE_DIR, "data folder")
    assert folder.stat().st_mode & 0o777 == 0o700
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert f"the data folder {folder} was open to others (mode 755)" in record.getMessage()
