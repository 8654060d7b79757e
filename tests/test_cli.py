"""The ``casdb`` command, through its real entry point, against real PostgreSQL databases."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
import sqlalchemy
from sqlalchemy import URL, text

from casdb import migrate
from casdb.cli import cli, main
from casdb.config import CONNECTION_VARIABLES
from casdb.local import LocalServer
from tests.conftest import execute_sql

REPO = Path(__file__).resolve().parent.parent
HEAD = migrate.head_revision()
BASELINE = migrate.BASELINE_REVISION


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@pytest.fixture
def db_url(make_database: Callable[..., URL]) -> str:
    """URL of a new, empty database."""
    return _render(make_database())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _tables(url: str) -> list[str]:
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                        "ORDER BY tablename"
                    )
                ).scalars()
            )
    finally:
        engine.dispose()


def _assert_one_line_error(err: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("casdb: error:")]
    assert len(lines) == 1, err


# --- help and usage ------------------------------------------------------------------


def _all_commands() -> list[list[str]]:
    found: list[list[str]] = []

    def walk(group: click.Group, prefix: list[str]) -> None:
        for name, command in group.commands.items():
            found.append([*prefix, name])
            if isinstance(command, click.Group):
                walk(command, [*prefix, name])

    walk(cli, [])
    return found


def test_help_documents_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "exit codes:" in out
    for fragment in ("0  success", "1  failure", "2  usage or configuration error", "db", "local"):
        assert fragment in out
    commands = _all_commands()
    expected = {
        ("db",),
        ("local",),
        ("demo",),
        ("cells",),
        ("cells", "ingest"),
        ("cells", "list"),
        ("users",),
        ("keys",),
        ("models",),
        *(
            ("db", name)
            for name in ("upgrade", "downgrade", "current", "history", "sql", "check", "adopt")
        ),
        *(("local", name) for name in ("start", "stop", "status", "url")),
        *(
            ("users", name)
            for name in (
                "list",
                "show",
                "create",
                "set-active",
                "set-admin",
                "set-weekly-quota",
                "increase-lifetime-quota",
                "usage",
                "quota",
            )
        ),
        *(("keys", name) for name in ("create", "list", "deactivate")),
        *(("models", name) for name in ("list", "show", "create", "set-default", "add-index")),
    }
    assert {tuple(c) for c in commands} == expected
    for argv in commands:
        code, out, _ = run(capsys, *argv, "--help")
        assert code == 0, argv
        assert out.startswith(f"Usage: casdb {' '.join(argv)}"), argv


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["db"], ["db", "frobnicate"], ["db", "downgrade"], ["local"], ["--nope"]):
        code, _, err = run(capsys, *argv)
        assert code == 2, argv
        assert "Usage: casdb" in err
        _assert_one_line_error(err)


# --- migrations ----------------------------------------------------------------------


def test_migration_commands_on_a_fresh_database(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--url", db_url, "db", "current")
    assert (code, "has no revision" in out) == (0, True)
    code, out, _ = run(capsys, "--url", db_url, "db", "check")
    assert code == 1 and f"not at head {HEAD}" in out

    code, out, err = run(capsys, "--url", db_url, "db", "upgrade")
    assert code == 0
    assert f"no revision (empty) -> {HEAD}" in out
    assert f"Running upgrade {BASELINE} -> {HEAD}" in err  # progress on stderr
    code, out, _ = run(capsys, "--url", db_url, "db", "upgrade")
    assert code == 0 and "already at" in out

    code, out, _ = run(capsys, "--url", db_url, "db", "current")
    assert code == 0 and out.startswith(f"{HEAD} (head)")
    code, out, _ = run(capsys, "--url", db_url, "db", "check")
    assert code == 0 and out.startswith("ok:")
    code, out, _ = run(capsys, "--url", db_url, "db", "history", "--current")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"<base> -> {BASELINE} (baseline)")
    assert lines[-1].startswith(f"{BASELINE} -> {HEAD} (head)")
    assert lines[-1].endswith("<- current")

    code, out, _ = run(capsys, "--url", db_url, "db", "downgrade", "-1")
    assert code == 0 and f"{HEAD} -> {BASELINE}" in out
    code, out, _ = run(capsys, "--url", db_url, "db", "current")
    assert out.startswith(f"{BASELINE} (baseline)")
    code, out, _ = run(capsys, "--url", db_url, "db", "check")
    assert code == 1 and f"not at head {HEAD}" in out

    # Below the baseline every table goes: refused without --yes, and nothing changes.
    tables = _tables(db_url)
    code, _, err = run(capsys, "--url", db_url, "db", "downgrade", "base")
    assert code == 1 and "--yes" in err
    _assert_one_line_error(err)
    assert _tables(db_url) == tables
    code, out, _ = run(capsys, "--url", db_url, "db", "downgrade", "base", "--yes")
    assert code == 0 and "-> no revision (empty)" in out
    assert _tables(db_url) == []  # casdb.alembic_version is outside public

    code, out, _ = run(capsys, "db", "upgrade", BASELINE, "--url", db_url)  # --url after too
    assert code == 0 and f"-> {BASELINE}" in out


def test_check_lists_drift_and_exits_1(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--url", db_url, "db", "upgrade")[0] == 0
    execute_sql(
        db_url,
        "ALTER TABLE users_user ADD COLUMN nickname varchar(40)",
        "DROP INDEX ix_users_userkey_user_id",
        "ALTER TABLE users_user ALTER COLUMN username DROP NOT NULL",
    )
    code, out, err = run(capsys, "--url", db_url, "db", "check")
    assert code == 1
    assert out.startswith("drift:")
    assert (
        "column users_user.nickname (VARCHAR(40)) is in the database but not in casdb.tables"
    ) in out
    assert "index ix_users_userkey_user_id on users_userkey (user_id) is in casdb.tables" in out
    assert "column users_user.username is nullable in the database, NOT NULL in casdb.tables" in out
    assert "revision --autogenerate" in out
    assert "Traceback" not in err


def test_configuration_from_the_environment(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQLALCHEMY_DATABASE_URI", db_url)
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and HEAD in out
    monkeypatch.delenv("SQLALCHEMY_DATABASE_URI")

    url = sqlalchemy.make_url(db_url)
    monkeypatch.setenv("DB_HOST", str(url.host))
    monkeypatch.setenv("DB_PORT", str(url.port))
    monkeypatch.setenv("DB_USER", str(url.username))
    monkeypatch.setenv("DB_PASSWORD", url.password or "")
    monkeypatch.setenv("DB_NAME", str(url.database))
    code, out, _ = run(capsys, "db", "check")
    assert code == 0 and out.startswith("ok:")
    # --url overrides the environment, even a half-set one.
    monkeypatch.delenv("DB_NAME")
    code, out, _ = run(capsys, "--url", db_url, "db", "current")
    assert code == 0 and out.startswith(HEAD)


@pytest.mark.parametrize(
    ("variables", "missing"),
    [
        ({"DB_HOST": "db.example"}, ["DB_USER", "DB_PASSWORD", "DB_NAME"]),
        (
            {"DB_INSTANCE_UNIX_SOCKET": "/cloudsql/p:r:i", "DB_USER": "u"},
            ["DB_PASSWORD", "DB_NAME"],
        ),
    ],
)
def test_half_set_environment_exits_2_naming_what_is_missing(
    variables: dict[str, str],
    missing: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    for argv in (["db", "current"], ["db", "upgrade"], ["db", "adopt"]):
        code, out, err = run(capsys, *argv)
        assert code == 2
        assert out == ""
        _assert_one_line_error(err)
        assert len(err.strip().splitlines()) == 1
        for name in missing:
            assert name in err


def test_sql_is_offline_and_needs_no_server(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A half-set environment would fail any command that reads the configuration.
    monkeypatch.setenv("DB_HOST", "unreachable.invalid")
    code, out, _ = run(capsys, "db", "sql")
    assert code == 0
    assert "CREATE TABLE public.users_user" in out
    assert "CREATE TYPE public.useractivityevent AS ENUM" in out
    assert f"UPDATE casdb.alembic_version SET version_num='{HEAD}'" in out
    assert out.rstrip().endswith("COMMIT;")

    code, out, _ = run(capsys, "db", "sql", f"{BASELINE}:head")
    assert code == 0
    assert "CREATE TABLE public" not in out
    assert "ALTER SEQUENCE IF EXISTS user_id_seq RENAME TO users_user_id_seq" in out

    code, out, _ = run(capsys, "db", "sql", "--downgrade", f"head:{BASELINE}")
    assert code == 0 and "DROP INDEX" in out

    code, out, err = run(capsys, "db", "sql", "--downgrade", "base")
    assert code == 2 and out == "" and "FROM:TO" in err
    code, out, err = run(capsys, "db", "sql", "nope")
    assert code == 1 and out == ""
    _assert_one_line_error(err)


def test_unknown_revision_fails_in_one_line(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--url", db_url, "db", "upgrade", "abc123")
    assert code == 1 and "abc123" in err and "casdb db history" in err
    _assert_one_line_error(err)
    assert _tables(db_url) == []


def test_bad_or_unreachable_url(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--url", "postgresql://u:secret@127.0.0.1:1/x", "db", "current")
    assert code == 1 and "cannot connect" in err and "secret" not in err
    _assert_one_line_error(err)
    code, _, err = run(capsys, "--url", "mysql://u@host/x", "db", "current")
    assert code == 2 and "PostgreSQL URL" in err
    code, _, err = run(capsys, "--url", "not a url", "db", "current")
    assert code == 2 and "not a valid URL" in err
    _assert_one_line_error(err)


def _subprocess_env(
    extra: dict[str, str] | None = None, *, checkout: bool = True
) -> dict[str, str]:
    """The caller's environment without DB_*; with the checkout importable unless told not."""
    env = {k: v for k, v in os.environ.items() if k not in CONNECTION_VARIABLES}
    if checkout:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def test_python_m_casdb_cli_in_a_subprocess(db_url: str, tmp_path: Path) -> None:
    def cli(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "casdb.cli", *argv],
            capture_output=True,
            text=True,
            env=_subprocess_env(env),
            cwd=tmp_path,
            timeout=300,
            check=False,
        )

    result = cli("--url", db_url, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert HEAD in result.stdout
    result = cli("db", "check", SQLALCHEMY_DATABASE_URI=db_url)
    assert result.returncode == 0 and result.stdout.startswith("ok:")
    result = cli("db", "current", DB_HOST="db.example", DB_USER="u")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "DB_PASSWORD, DB_NAME are missing" in result.stderr
    result = cli("--help")
    assert result.returncode == 0 and "exit codes:" in result.stdout


def test_installed_casdb_script(db_url: str, tmp_path: Path) -> None:
    """The console script of a pip-installed casdb (a wheel: migrations from the package)."""
    script = Path(sys.executable).parent / "casdb"
    if not script.exists():
        pytest.skip("no casdb console script beside this Python (casdb not pip-installed)")

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *argv],
            capture_output=True,
            text=True,
            env=_subprocess_env(checkout=False),
            cwd=tmp_path,
            timeout=300,
            check=False,
        )

    result = cli("db", "sql")
    assert result.returncode == 0 and "CREATE TABLE public.users_user" in result.stdout
    result = cli("--url", db_url, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert HEAD in result.stdout
    result = cli("--url", db_url, "db", "check")
    assert result.returncode == 0, result.stdout
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("casdb 0.1.0")
    assert "(not installed)" not in result.stdout
    (tmp_path / "c.csv").write_text("cas_cell_index,cell_type\n1,T\n")
    result = cli(
        "--url",
        db_url,
        "cells",
        "ingest",
        str(tmp_path / "c.csv"),
        "--ingest-id",
        "i",
        "--dataset-id",
        "d",
    )
    assert result.returncode == 0 and "ingested 1 cells" in result.stdout, result.stderr
    result = cli("--url", db_url, "cells", "list", "--json")
    assert json.loads(result.stdout)[0]["cells"] == 1


# --- the local server ----------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[str]:
    tmp_path.chmod(0o711)
    path = tmp_path / "pg"
    yield str(path)
    LocalServer(path).stop()


def test_local_start_status_url_stop(data_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    local = ("--data-dir", data_dir, "local")
    code, out, _ = run(capsys, *local, "status")
    assert code == 1 and "not running" in out
    code, _, err = run(capsys, *local, "url")
    assert code == 1 and "casdb local start" in err
    _assert_one_line_error(err)

    code, out, _ = run(capsys, *local, "start")
    assert code == 0 and "started" in out and data_dir in out
    code, out, _ = run(capsys, *local, "start")  # safe twice
    assert code == 0 and "already running" in out
    code, out, _ = run(capsys, *local, "status")
    assert code == 0 and out.startswith("running at postgresql+pg8000://")

    code, url, _ = run(capsys, *local, "url")
    url = url.strip()
    assert code == 0 and url.startswith("postgresql+pg8000://") and url.endswith("/casdb")
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    code, out, _ = run(capsys, "local", "url", "--export", "--data-dir", data_dir)
    assert code == 0 and out.strip() == f"export SQLALCHEMY_DATABASE_URI={url}"

    # With nothing configured, db commands use the local server.
    code, out, err = run(capsys, "--data-dir", data_dir, "db", "upgrade")
    assert code == 0 and HEAD in out and "using the local PostgreSQL" in err

    code, out, _ = run(capsys, *local, "stop")
    assert code == 0 and "stopped" in out
    code, out, _ = run(capsys, *local, "stop")
    assert code == 0 and "was not running" in out
    code, out, _ = run(capsys, *local, "status")
    assert code == 1

    # Data survives a restart.
    assert run(capsys, *local, "start")[0] == 0
    code, out, _ = run(capsys, "--data-dir", data_dir, "db", "current")
    assert code == 0 and out.startswith(HEAD)


def test_traceback_option_shows_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_HOST", "db.example")
    code, _, err = run(capsys, "--traceback", "db", "current")
    assert code == 2
    assert "Traceback" in err and "ConfigurationError" in err
    assert err.rstrip().splitlines()[-1].startswith("casdb: error: DB_HOST is set")


# --- the demo ------------------------------------------------------------------------


def test_demo_on_an_empty_database_then_refuses_a_non_empty_one(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--url", db_url, "demo")
    assert code == 0, err
    for section in ("== users", "== ML models", "== cells", "rolled back"):
        assert section in out
    code, out, err = run(capsys, "--url", db_url, "demo", "--keep")
    assert code == 0, err
    assert "kept the sample data" in out
    code, out, err = run(capsys, "--url", db_url, "demo")
    assert code == 1
    _assert_one_line_error(err)
    assert "--yes" in err


def test_demo_refuses_a_database_with_another_schema(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    execute_sql(db_url, "CREATE TABLE something_else (id int)")
    code, _, err = run(capsys, "--url", db_url, "demo")
    assert code == 1
    _assert_one_line_error(err)
    assert _tables(db_url) == ["something_else"]


def test_cli_output_never_shows_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    password = "pw-Zq9@:/%#?&'-secret"
    for name, value in {
        "DB_HOST": "127.0.0.1",
        "DB_PORT": "1",
        "DB_USER": "cas",
        "DB_PASSWORD": password,
        "DB_NAME": "cas",
    }.items():
        monkeypatch.setenv(name, value)
    for argv in (["db", "current"], ["db", "upgrade"], ["demo"], ["--traceback", "db", "check"]):
        code, out, err = run(capsys, *argv)
        assert code == 1, argv
        assert password not in out + err, argv
    url = f"postgresql://cas:{password.replace('@', '%40').replace('/', '%2F')}@127.0.0.1:1/cas"
    code, out, err = run(capsys, "--url", url, "db", "current")
    assert code == 1 and "secret" not in out + err


def test_demo_with_nothing_configured_uses_the_local_server(tmp_path: Path) -> None:
    """The README's main command: no DB_* at all -> the local PostgreSQL, started on demand."""
    tmp_path.chmod(0o711)
    data_dir = tmp_path / "pg"
    env = _subprocess_env({"CASDB_LOCAL_DATA_DIR": str(data_dir)})
    try:
        result = subprocess.run(
            [sys.executable, "-m", "casdb.cli", "demo"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "using the local embedded PostgreSQL" in result.stderr
        assert str(data_dir) in result.stderr
        assert "== cells" in result.stdout and "rolled back" in result.stdout
    finally:
        LocalServer(data_dir).stop()


# --- issue 14: the defects of the hand-made CLI ----------------------------------------------


def _module_cli(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "casdb", *argv],
        capture_output=True,
        text=True,
        env=_subprocess_env(),
        timeout=300,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )


def test_python_m_casdb_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    result = _module_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("casdb 0.1.0"), result.stderr
    result = _module_cli("db", "history")
    assert result.returncode == 0 and f"-> {HEAD} (head)" in result.stdout
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("casdb ")


@pytest.mark.parametrize("argv", [["db", "history"], ["db", "sql"], ["--help"]])
def test_a_closed_pipe_exits_quietly(argv: list[str]) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before casdb writes a byte: `casdb ... | head -0`
    try:
        result = subprocess.run(
            [sys.executable, "-m", "casdb", *argv],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=_subprocess_env(),
            timeout=300,
            check=False,
        )
    finally:
        os.close(write)
    # Quietly, with click's exit code for a closed pipe (1, as for any unfinished output).
    assert result.stderr == "" and result.returncode == 1


def test_shell_pipe_into_head() -> None:
    result = subprocess.run(
        f"{shlex.quote(sys.executable)} -m casdb db sql | head -1; "
        'echo "status ${PIPESTATUS[0]}"',
        shell=True,
        capture_output=True,
        text=True,
        env=_subprocess_env(),
        timeout=300,
        check=False,
        executable="/bin/bash",
    )
    assert result.stderr == ""
    first, status = result.stdout.splitlines()
    assert first.strip() and status in ("status 0", "status 1")


def test_traceback_anywhere_on_the_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_HOST", "db.example")
    for argv in (
        ["db", "current", "--traceback"],
        ["db", "--traceback", "current"],
        ["--traceback", "db", "current"],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2, argv
        assert "Traceback" in err and "ConfigurationError" in err, argv
        assert err.rstrip().splitlines()[-1].startswith("casdb: error: DB_HOST is set")
    code, _, err = run(capsys, "db", "current")
    assert code == 2 and "Traceback" not in err


def test_unencoded_password_in_url(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    password = "p@ss:w/o?r#d%zz"
    code, _, err = run(
        capsys, "--url", f"postgresql://cas:{password}@127.0.0.1:1/cas", "db", "current"
    )
    assert code == 1
    _assert_one_line_error(err)
    assert "cannot connect to postgresql+pg8000://cas:***@127.0.0.1:1/cas" in err
    for fragment in ("p@ss", "ss:w", "o?r", "r#d", "%zz"):
        assert fragment not in err
    # The real server (trust authentication) is reached with user and database read right.
    url = sqlalchemy.make_url(db_url)
    raw = f"postgresql://{url.username}:{password}@{url.host}:{url.port}/{url.database}"
    code, out, err = run(capsys, "--url", raw, "db", "current")
    assert code == 0, err
    assert "has no revision" in out and password not in out + err
    code, _, err = run(capsys, "--url", "postgresql://u:p@host:99999/x", "db", "current")
    assert code == 2 and "the port must be 1 to 65535" in err


def test_downgrade_base_refuses_before_running_anything(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--url", db_url, "db", "upgrade", "-q")[0] == 0
    tables = _tables(db_url)
    for target in ("base", "-2", "-5"):
        code, out, err = run(capsys, "--url", db_url, "db", "downgrade", target)
        # -5 goes below base: no downgrade target at all, refused as such
        assert code == 1 and ("--yes" in err or "-5" in err) and out == ""
        _assert_one_line_error(err)
        assert "Running downgrade" not in err  # refused before any migration ran
        assert _tables(db_url) == tables
    code, out, err = run(capsys, "--url", db_url, "db", "downgrade", "-1")
    assert code == 0 and f"Running downgrade {HEAD} -> {BASELINE}" in err


def test_demo_yes_after_demo_keep(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--url", db_url, "demo", "--keep")
    assert code == 0, err
    for keep in ((), ("--keep",)):
        code, out, err = run(capsys, "--url", db_url, "demo", "--yes", *keep)
        assert code == 0, err
        assert "== cells" in out
    code, out, _ = run(capsys, "--url", db_url, "users", "list", "--json")
    emails = [user["email"] for user in json.loads(out)]
    assert len(emails) == 6 == len(set(emails)) and "ada@example.org" in emails


def test_json_output_of_data_commands(
    db_url: str, data_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--url", db_url, "db", "current", "--json")
    assert code == 0 and json.loads(out)["revisions"] == [] and "***" not in out
    assert run(capsys, "--url", db_url, "db", "upgrade", "-q")[0] == 0
    code, out, _ = run(capsys, "--url", db_url, "db", "current", "--json")
    assert json.loads(out) | {"database": None} == {
        "database": None,
        "revisions": [HEAD],
        "head": HEAD,
        "at_head": True,
    }
    code, out, _ = run(capsys, "--url", db_url, "db", "check", "--json")
    assert code == 0 and json.loads(out)["ok"] is True and json.loads(out)["problems"] == []
    execute_sql(db_url, "ALTER TABLE users_user ADD COLUMN nickname varchar(40)")
    code, out, _ = run(capsys, "--url", db_url, "db", "check", "--json")
    assert code == 1 and json.loads(out)["ok"] is False
    assert any("nickname" in p for p in json.loads(out)["problems"])
    code, out, _ = run(capsys, "db", "history", "--json")
    assert [r["revision"] for r in json.loads(out)] == [BASELINE, HEAD]
    code, out, _ = run(capsys, "--data-dir", data_dir, "local", "status", "--json")
    assert code == 1 and json.loads(out)["running"] is False
    for argv in (["users", "list"], ["models", "list"], ["cells", "list"]):
        code, out, err = run(capsys, "--url", db_url, *argv, "--json")
        assert code == 0 and json.loads(out) == [], (argv, err)


def _on_a_terminal(argv: list[str], tmp_path: Path) -> tuple[int, str]:
    """Run casdb with stderr on a pseudo-terminal; return the exit code and what it drew."""
    import pty

    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "casdb", *argv],
            stdout=subprocess.DEVNULL,
            stderr=slave,
            env=_subprocess_env({"COLUMNS": "160", "TERM": "xterm"}),
            cwd=tmp_path,
        )
        os.close(slave)
        drawn = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
        return process.wait(timeout=300), drawn.decode(errors="replace")
    finally:
        os.close(master)


def test_progress_bars_on_a_terminal_and_plain_lines_elsewhere(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, drawn = _on_a_terminal(["--url", db_url, "db", "upgrade"], tmp_path)
    assert code == 0, drawn
    assert "migrations" in drawn and "2/2" in drawn and "━" in drawn  # rich's bar
    path = tmp_path / "cells.csv"
    path.write_text("cas_cell_index,cell_type\n" + "".join(f"{n},T\n" for n in range(1, 20001)))
    code, drawn = _on_a_terminal(
        ["--url", db_url, "cells", "ingest", str(path), "--ingest-id", "tty", "--dataset-id", "d"],
        tmp_path,
    )
    assert code == 0, drawn
    assert "━" in drawn and "rows/s" in drawn and "20,000 rows" in drawn and "kB" in drawn
    assert "casdb: cells" not in drawn  # no plain lines on a terminal
    # Not a terminal: plain lines; --quiet: nothing.
    path.write_text("cas_cell_index,cell_type\n" + "".join(f"{n},T\n" for n in range(20001, 20101)))
    code, _, err = run(capsys, "--url", db_url, "cells", "ingest", str(path), "--ingest-id", "tty")
    assert code == 0 and err.startswith("casdb: cells 100.0%, 100 rows") and "ETA" in err
    path.write_text("cas_cell_index,cell_type\n20200,T\n")
    code, _, err = run(
        capsys, "--url", db_url, "cells", "ingest", str(path), "--ingest-id", "tty", "--quiet"
    )
    assert code == 0 and err == ""
