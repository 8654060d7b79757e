"""Configuration from the environment: modes, passwords of any characters, half-set errors."""

from __future__ import annotations

import itertools
import ssl

import pytest
import sqlalchemy
from hypothesis import given
from hypothesis import strategies as st

from casdb import ConfigurationError, config_from_env
from casdb.config import CONNECTION_VARIABLES

TCP = {"DB_HOST": "db.example", "DB_PORT": "6543", "DB_USER": "cas", "DB_PASSWORD": "pw",
       "DB_NAME": "cas"}
SOCKET = {"DB_INSTANCE_UNIX_SOCKET": "/cloudsql/proj:region:inst", "DB_USER": "cas",
          "DB_PASSWORD": "pw", "DB_NAME": "cas"}

passwords = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00"), min_size=0, max_size=64
) | st.text(alphabet="@:/%#?&'\" +=", min_size=1, max_size=16)


def _connect_kwargs(env: dict[str, str]) -> dict[str, object]:
    config = config_from_env(env)
    assert config is not None
    dialect = sqlalchemy.create_engine(config.url).dialect
    _args, kwargs = dialect.create_connect_args(config.url)
    return {**kwargs, **config.connect_args()}


def test_nothing_set_means_local_default() -> None:
    assert config_from_env({}) is None
    assert config_from_env({"DB_POOL_SIZE": "3"}) is None


@given(password=passwords)
def test_any_password_survives_tcp_mode(password: str) -> None:
    kwargs = _connect_kwargs({**TCP, "DB_PASSWORD": password})
    # The dialect leaves out an empty password, which pg8000 treats the same way.
    assert kwargs.get("password", "") == password
    assert (kwargs["host"], kwargs["port"], kwargs["user"], kwargs["database"]) == (
        "db.example", 6543, "cas", "cas"
    )


@given(password=passwords)
def test_any_password_survives_unix_socket_mode(password: str) -> None:
    kwargs = _connect_kwargs({**SOCKET, "DB_PASSWORD": password})
    assert kwargs.get("password", "") == password
    assert kwargs["unix_sock"] == "/cloudsql/proj:region:inst/.s.PGSQL.5432"
    assert "host" not in kwargs


@given(socket_dir=st.text(st.characters(codec="utf-8", exclude_characters="\x00/"), min_size=1,
                          max_size=30))
def test_unix_socket_path(socket_dir: str) -> None:
    config = config_from_env({**SOCKET, "DB_INSTANCE_UNIX_SOCKET": f"/sockets/{socket_dir}/"})
    assert config is not None and config.mode == "unix_socket"
    assert config.unix_sock == f"/sockets/{socket_dir}/.s.PGSQL.5432"


def test_uri_wins_over_both_modes() -> None:
    env = {**TCP, **{k: v for k, v in SOCKET.items() if k == "DB_INSTANCE_UNIX_SOCKET"},
           "SQLALCHEMY_DATABASE_URI": "postgresql://u:p@h:1/d"}
    config = config_from_env(env)
    assert config is not None and config.mode == "url"
    assert config.url.drivername == "postgresql+pg8000"
    assert (config.url.host, config.url.port, config.url.database) == ("h", 1, "d")


def test_default_port_is_5432() -> None:
    env = {k: v for k, v in TCP.items() if k != "DB_PORT"}
    config = config_from_env(env)
    assert config is not None and config.url.port == 5432


HALF_SETS = [
    dict(subset)
    for size in range(1, len(TCP))
    for subset in itertools.combinations(TCP.items(), size)
    if {"DB_HOST", "DB_USER", "DB_PASSWORD", "DB_NAME"} - {k for k, _ in subset}
] + [
    dict(subset)
    for size in range(1, len(SOCKET))
    for subset in itertools.combinations(SOCKET.items(), size)
    if ("DB_INSTANCE_UNIX_SOCKET", SOCKET["DB_INSTANCE_UNIX_SOCKET"]) in subset
]


@pytest.mark.parametrize("env", HALF_SETS, ids=lambda env: "+".join(sorted(env)))
def test_half_set_environment_names_the_missing_variables(env: dict[str, str]) -> None:
    required = (
        {"DB_INSTANCE_UNIX_SOCKET", "DB_USER", "DB_PASSWORD", "DB_NAME"}
        if "DB_INSTANCE_UNIX_SOCKET" in env
        else {"DB_HOST", "DB_USER", "DB_PASSWORD", "DB_NAME"}
    )
    with pytest.raises(ConfigurationError) as raised:
        config_from_env(env)
    message = str(raised.value)
    missing_part = message.split(" set but ")[1].split(" missing")[0]
    for name in required - set(env):
        assert name in missing_part
    assert "pw" not in message


def test_both_host_and_socket_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="both DB_HOST and DB_INSTANCE_UNIX_SOCKET"):
        config_from_env({**TCP, **SOCKET})


@pytest.mark.parametrize(
    "name,value",
    [("DB_PORT", "x"), ("DB_PORT", "70000"), ("DB_POOL_SIZE", "-1"), ("DB_POOL_PRE_PING", "maybe"),
     ("DB_STATEMENT_TIMEOUT_MS", "soon")],
)
def test_malformed_settings(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        config_from_env({**TCP, name: value})


def test_pool_ssl_and_timeouts_are_settable() -> None:
    config = config_from_env({**TCP, "DB_POOL_SIZE": "7", "DB_MAX_OVERFLOW": "0",
                              "DB_POOL_TIMEOUT": "5", "DB_POOL_RECYCLE": "60",
                              "DB_POOL_PRE_PING": "false", "DB_SSL": "true",
                              "DB_STATEMENT_TIMEOUT_MS": "1500", "DB_LOCK_TIMEOUT_MS": "200"})
    assert config is not None
    assert (config.pool_size, config.max_overflow, config.pool_timeout, config.pool_recycle,
            config.pool_pre_ping) == (7, 0, 5.0, 60, False)
    args = config.connect_args()
    context = args["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert args["startup_params"] == {"options": "-c statement_timeout=1500 -c lock_timeout=200"}


@given(password=passwords.map(lambda p: "s3cr\u20acT" + p))
def test_repr_never_shows_the_password(password: str) -> None:
    config = config_from_env({**TCP, "DB_PASSWORD": password})
    assert password not in repr(config)
    assert password not in str(config)


def test_known_variables_are_documented() -> None:
    with open("README.md", encoding="utf-8") as readme:
        text = readme.read()
    for name in (*CONNECTION_VARIABLES, "DB_POOL_SIZE", "DB_MAX_OVERFLOW", "DB_POOL_TIMEOUT",
                 "DB_POOL_RECYCLE", "DB_POOL_PRE_PING", "DB_SSL", "DB_SSL_ROOT_CERT",
                 "DB_STATEMENT_TIMEOUT_MS", "DB_LOCK_TIMEOUT_MS", "CASDB_TEST_DATABASE_URL"):
        assert f"`{name}`" in text, name
