"""``casdb db``: migrations on the configured database (casdb.migrate does the work)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import click
from alembic.script import ScriptDirectory

from casdb import migrate
from casdb._checks import translated_errors
from casdb.adopt import AdoptRefused, adopt
from casdb.cli._app import ExitCode, State, UsageError
from casdb.cli._progress import MigrationBar
from casdb.cli._shared import (
    command_options,
    connect,
    connection,
    database,
    database_options,
    describe,
    emit_json,
    out,
    pass_state,
)
from casdb.errors import CasdbError, DatabaseError

BASELINE = migrate.BASELINE_REVISION


@click.group()
def db() -> None:
    """Migrations: upgrade, downgrade, current, history, sql, check, adopt."""


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(migrate.alembic_config())


def _label(script: ScriptDirectory, revision: str) -> str:
    """``rev (head, baseline)  doc`` for one revision."""
    try:
        found = script.get_revision(revision)
    except Exception:  # noqa: BLE001 - an unknown id in alembic_version is only described
        found = None
    if found is None:
        return f"{revision} (unknown to casdb: not in its migration chain)"
    marks = [m for m, on in (("head", found.is_head), ("baseline", revision == BASELINE)) if on]
    mark = f" ({', '.join(marks)})" if marks else ""
    return f"{revision}{mark}  {found.doc}"


def _revisions_text(revisions: Sequence[str]) -> str:
    return ", ".join(revisions) if revisions else "no revision (empty)"


quiet_option = click.option("--quiet", "-q", is_flag=True, help="no progress on stderr")


def _migrate(state: State, command_name: str, revision: str, quiet: bool, yes: bool = True) -> None:
    """Upgrade or downgrade with a progress bar; say where the database was and is."""
    downgrade = command_name == "downgrade"
    with database(state) as engine:
        with connect(engine) as conn:
            before = migrate.current_revisions(conn)
            if not yes and migrate.downgrade_drops_the_schema(conn, revision):
                raise CasdbError(
                    f"downgrading to {revision} drops every CAS table and all its rows; nothing "
                    "was changed: add --yes to do it"
                )
        bar = MigrationBar(
            quiet=quiet, total=migrate.steps_between(before, revision, downgrade=downgrade)
        )
        with bar.shown(), _resumable(command_name):
            (migrate.downgrade if downgrade else migrate.upgrade)(engine, revision)
        with connect(engine) as conn:
            after = migrate.current_revisions(conn)
    if before == after:
        out(f"{describe(engine)} is already at {_revisions_text(after)}: nothing to do")
    else:
        out(
            f"{command_name}d {describe(engine)}: {_revisions_text(before)} -> "
            f"{_revisions_text(after)}"
        )


@contextlib.contextmanager
def _resumable(command_name: str) -> Iterator[None]:
    """A step the database refused: say that the steps before it stay and a re-run resumes."""
    try:
        with translated_errors():
            yield
    except DatabaseError as error:
        raise CasdbError(
            f"the migration stopped at a step the database refused: {error}; the steps "
            "before it are committed and every step is idempotent: fix the cause and run "
            f"`casdb db {command_name}` again to resume"
        ) from error


@db.command(
    epilog=f"\b\nexamples:\n  casdb db upgrade\n  casdb db upgrade {BASELINE}\n"
    "  casdb --url postgresql://u:p@host/cas db upgrade"
)
@click.argument("revision", default="head", metavar="[REV]")
@quiet_option
@database_options
@pass_state
def upgrade(state: State, revision: str, quiet: bool) -> None:
    """Migrate the database up to REV (default: head, or +N), with a progress bar.

    Online: each step commits on its own, under a short lock_timeout with retries; a step the
    database refuses stops the run, and running the command again resumes from there.
    """
    _migrate(state, "upgrade", revision, quiet)


@db.command(
    context_settings={"ignore_unknown_options": True},  # REV may be -N
    epilog=f"\b\nexamples:\n  casdb db downgrade -1\n  casdb db downgrade {BASELINE}\n"
    "  casdb db downgrade base --yes",
)
@click.argument("revision", metavar="REV")
@click.option("--yes", is_flag=True, help="confirm a downgrade that drops the CAS tables")
@quiet_option
@database_options
@pass_state
def downgrade(state: State, revision: str, yes: bool, quiet: bool) -> None:
    """Migrate the database down to REV (a revision, -N, or base).

    Going below the baseline drops every CAS table with its rows: it needs --yes, and
    without it nothing is done at all.
    """
    _migrate(state, "downgrade", revision, quiet, yes=yes)


@db.command()
@command_options
def current(state: State, as_json: bool) -> None:
    """Show the revision the database is at."""
    with connection(state) as (engine, conn):
        revisions = migrate.current_revisions(conn)
    head = migrate.head_revision()
    if as_json:
        emit_json(
            {
                "database": describe(engine),
                "revisions": list(revisions),
                "head": head,
                "at_head": revisions == (head,),
            }
        )
        return
    if not revisions:
        out(
            f"{describe(engine)} has no revision: create the schema with `casdb db upgrade` "
            "(or, for a live CAS database without alembic_version, `casdb db adopt`)"
        )
        return
    script = _script()
    for revision in revisions:
        out(_label(script, revision))


@db.command()
@click.option(
    "--current",
    "show_current",
    is_flag=True,
    help="mark the revision the database is at (connects to it)",
)
@command_options
def history(state: State, show_current: bool, as_json: bool) -> None:
    """List casdb's migration chain, oldest first (no database needed without --current)."""
    current_revisions: tuple[str, ...] = ()
    if show_current:
        with connection(state) as (_, conn):
            current_revisions = migrate.current_revisions(conn)
    script = _script()
    chain = list(reversed(list(script.walk_revisions())))
    if as_json:
        emit_json(
            [
                {
                    "revision": rev.revision,
                    "down_revision": rev.down_revision,
                    "doc": rev.doc,
                    "head": rev.is_head,
                    "baseline": rev.revision == BASELINE,
                    **({"current": rev.revision in current_revisions} if show_current else {}),
                }
                for rev in chain
            ]
        )
        return
    for rev in chain:
        down = rev.down_revision
        down_text = (
            "<base>" if down is None else (down if isinstance(down, str) else ", ".join(down))
        )
        mark = "  <- current" if rev.revision in current_revisions else ""
        out(f"{down_text} -> {_label(script, rev.revision)}{mark}")


@db.command(
    epilog=f"\b\nexamples:\n  casdb db sql                  # base:head, the whole schema\n"
    f"  casdb db sql {BASELINE}:head   # adopt a live database\n"
    f"  casdb db sql --downgrade head:{BASELINE}"
)
@click.argument("revision_range", default=None, required=False, metavar="[RANGE]")
@click.option("--downgrade", "down", is_flag=True, help="the SQL of a downgrade (FROM:TO)")
def sql(revision_range: str | None, down: bool) -> None:
    """Print the SQL of a migration range, offline: no database or server is needed.

    RANGE is TO or FROM:TO (default head, i.e. base:head; with --downgrade: head:base).
    """
    if down:
        revision_range = revision_range or "head:base"
        if ":" not in revision_range:
            raise UsageError(f"--downgrade needs a range FROM:TO, e.g. head:{BASELINE}")
    click.echo(migrate.offline_sql(revision_range or "head", downgrade=down), nl=False)


@db.command()
@command_options
def check(state: State, as_json: bool) -> int:
    """Fail (exit 1) unless the database is at head and matches casdb.tables.

    Run it on a database at head after changing casdb.tables: a difference means a
    migration is missing.
    """
    head = migrate.head_revision()
    with connection(state) as (engine, conn):
        revisions = migrate.current_revisions(conn)
        differences = migrate.describe_differences(migrate.schema_differences(conn))
    problems = []
    if revisions != (head,):
        problems.append(
            f"the database is at {_revisions_text(revisions)}, not at head {head} "
            "(run `casdb db upgrade`)"
        )
    problems += differences
    code = ExitCode.FAILURE if problems else ExitCode.OK
    if as_json:
        emit_json(
            {
                "ok": not problems,
                "database": describe(engine),
                "revisions": list(revisions),
                "head": head,
                "problems": problems,
            }
        )
        return int(code)
    if not problems:
        out(f"ok: {describe(engine)} is at head {head} and matches casdb.tables")
        return int(code)
    out(f"drift: {describe(engine)} and casdb.tables disagree ({len(problems)}):")
    for line in problems:
        out(f"  {line}")
    if differences and revisions == (head,):
        out(
            "fix: write a migration for the change to casdb.tables "
            '(alembic -c alembic.ini revision --autogenerate -m "...") and run '
            "`casdb db upgrade`, or undo the change"
        )
    return int(code)


@db.command(
    name="adopt",
    epilog="exit codes: 0 adopted, 1 refused or failed (nothing "
    "changed), 2 usage or configuration error",
)
@click.option("--dry-run", is_flag=True, help="do everything, then roll back: change nothing")
@quiet_option
@database_options
@pass_state
def adopt_command(state: State, dry_run: bool, quiet: bool) -> None:
    """Take over a live CAS database: check it, stamp the baseline, upgrade to head.

    Compares its schema with the live CAS schema and reports every difference; refuses,
    changing nothing, when a difference could lose data; otherwise stamps the baseline if
    needed and upgrades to head online (one short step at a time), keeping every row.
    """
    with database(state) as engine:
        target = describe(engine)
        try:
            with MigrationBar(quiet=quiet, total=None).shown():
                if dry_run:  # one transaction, rolled back
                    with connect(engine) as conn, conn.begin() as transaction_:
                        report = adopt(conn)
                        transaction_.rollback()
                else:  # check and stamp in one transaction, then the online upgrade
                    report = adopt(engine)
        except AdoptRefused as refused:
            if refused.differences:
                out(f"{target} differs from the live CAS schema ({BASELINE}):")
                for difference in refused.differences:
                    out(f"  {difference}")
            raise
    if report.differences:
        out(
            f"{target} matches the live CAS schema but for {len(report.differences)} "
            "harmless difference(s):"
        )
        for difference in report.differences:
            out(f"  {difference}")
    else:
        out(f"{target} matches the live CAS schema ({BASELINE}) exactly")
    if report.stamped:
        out(
            f"{'would stamp' if dry_run else 'stamped'} the baseline {BASELINE} "
            "(alembic_version was missing)"
        )
    else:
        out(f"alembic_version holds the baseline {BASELINE}")
    out(
        f"{'would upgrade' if dry_run else 'upgraded'} to head {report.revision_after}"
        + (", in the same transaction" if dry_run else ", online (one short step at a time)")
    )
    kept = ", ".join(f"{table} {count}" for table, count in report.rows.items())
    out(f"{'would keep' if dry_run else 'kept'} every row: {kept}")
    if report.remaining:
        out("`casdb db check` will report, because of the harmless differences above:")
        for line in migrate.describe_differences(report.remaining):
            out(f"  {line}")
    if dry_run:
        out("dry run: the adoption succeeded and was rolled back; nothing was changed")
    else:
        out(f"adopted: {target} is at head {report.revision_after}")
