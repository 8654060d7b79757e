"""What the command modules share: database options and connections, output, JSON."""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import attrs
import click
from sqlalchemy import Connection, Engine

import casdb.engine
from casdb._checks import translated_errors
from casdb.cli._app import State
from casdb.config import DatabaseConfig, config_for_url, config_from_env, normalise_url
from casdb.demo import format_table
from casdb.errors import CasdbError, DatabaseError
from casdb.local import LocalServer
from casdb.queries import users

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("casdb")
pass_state = click.make_pass_decorator(State, ensure=True)


# --- options ----------------------------------------------------------------------------


def _store(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is not None:
            setattr(ctx.ensure_object(State), name, value)

    return callback


def database_options(function: F) -> F:
    """--url (and the hidden --data-dir of tests) after the command name, too."""
    function = click.option(
        "--url",
        metavar="URL",
        expose_value=False,
        callback=_store("url"),
        help="database URL (overrides SQLALCHEMY_DATABASE_URI and DB_*)",
    )(function)
    return local_options(function)


def local_options(function: F) -> F:
    """The hidden --data-dir of tests: a local server of their own."""
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        expose_value=False,
        callback=_store("data_dir"),
        hidden=True,
    )(function)


def json_option(function: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="print JSON (for scripts) instead of text"
    )(function)


def command_options(function: F) -> F:
    """--json and the database options of a command; its first argument is the State."""
    return json_option(database_options(cast(F, pass_state(function))))


# --- configuration and connections ---------------------------------------------------------


def url_config(raw: str) -> DatabaseConfig:
    """The configuration of a --url (an unencoded ``@`` in the password is read as a browser
    reads it: the last ``@`` ends the credentials)."""
    return config_for_url(normalise_url(raw, source="--url"))


def resolve_config(state: State) -> DatabaseConfig:
    """--url, else the environment, else the local server (said on stderr)."""
    if state.url is not None:
        return url_config(state.url)
    if state.data_dir is None:
        return casdb.engine.resolve_config(None, allow_local=True)
    from_env = config_from_env()
    if from_env is not None:
        return from_env
    server = LocalServer(state.data_dir)
    url = server.start()
    log.info(
        "nothing configured: using the local PostgreSQL at %s (data in %s)",
        url.render_as_string(hide_password=True),
        server.data_dir,
    )
    return DatabaseConfig(url=url, mode="local")


def local_server(state: State) -> LocalServer:
    if state.data_dir is not None:
        return LocalServer(state.data_dir)
    return casdb.local.default_server()


def describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


@contextlib.contextmanager
def database(state: State) -> Iterator[Engine]:
    engine = casdb.engine.create_engine(resolve_config(state))
    try:
        yield engine
    finally:
        engine.dispose()


@contextlib.contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    try:
        with translated_errors():
            connection = engine.connect()
    except DatabaseError as error:
        raise CasdbError(
            f"cannot connect to {describe(engine)}: {error} "
            "(check --url, SQLALCHEMY_DATABASE_URI or the DB_* variables)"
        ) from error
    with connection:
        yield connection


@contextlib.contextmanager
def connection(state: State) -> Iterator[tuple[Engine, Connection]]:
    """A connection to the configured database, and its engine."""
    with database(state) as engine, connect(engine) as connection_:
        yield engine, connection_


@contextlib.contextmanager
def transaction(state: State) -> Iterator[tuple[Engine, Connection]]:
    """A connection in a transaction, committed when the block succeeds."""
    with connection(state) as (engine, connection_), connection_.begin():
        yield engine, connection_


def find_user(connection: Connection, ref: str) -> users.User:
    """The user with this email, or this id when ``ref`` is a number."""
    if ref.isdigit():
        return users.get_user(connection, user_id=int(ref))
    return users.get_user_by_email(connection, email=ref)


# --- output ----------------------------------------------------------------------------


def out(line: str = "") -> None:
    click.echo(line)


def note(line: str) -> None:
    """A message for the person, not the data: on stderr."""
    click.echo(line, err=True)


def jsonable(value: Any) -> Any:
    """Records, times, UUIDs and enums as plain JSON values."""
    if attrs.has(type(value)):
        return {
            field.name: jsonable(getattr(value, field.name))
            for field in attrs.fields(type(value))
            if field.repr is not False
        }
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.name
    return value


def emit_json(value: Any) -> None:
    click.echo(json.dumps(jsonable(value), indent=2, ensure_ascii=False))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    out(format_table(headers, rows))


def emit(record: Any, as_json: bool, line: str | None = None) -> None:
    """``record`` as JSON with --json, else ``line``, else as ``name: value`` lines."""
    if as_json:
        emit_json(record)
    elif line is None:
        fields_text(record)
    else:
        out(line)


def emit_table(
    records: Sequence[Any], as_json: bool, headers: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """``records`` as JSON with --json, else ``rows`` as a table under ``headers``."""
    if as_json:
        emit_json(records)
    else:
        table(headers, rows)


def fields_text(record: Any, *, skip: Sequence[str] = ()) -> None:
    """A record as ``name: value`` lines."""
    values = jsonable(record)
    width = max(len(name) for name in values)
    for name, value in values.items():
        if name not in skip:
            out(f"{name.ljust(width)}  {'-' if value is None else value}")
