"""The root of the ``casdb`` command: exit codes, the error policy, shared state.

Every command is a click command in one of the group modules (db, local, cells, users, keys,
models, demo). This module owns what they share: the exit codes (defined once, listed in
``casdb --help``), how an error becomes one ``casdb: error: ...`` line, ``--traceback``
(accepted anywhere on the line), quiet exit on a closed pipe, and the stderr handler that
shows the library's log messages.
"""

from __future__ import annotations

import configparser
import enum
import io
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs
import click
from alembic.util import CommandError

from casdb._checks import translated_errors
from casdb.errors import CasdbError, ConfigurationError


class ExitCode(enum.IntEnum):
    """The exit codes of every casdb command."""

    OK = 0
    FAILURE = 1
    USAGE = 2


EXIT_CODE_HELP: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.FAILURE: "failure: a database or migration error, drift (db check), a bad row\n"
    "     (cells ingest), adoption refused, not found, not running (local status/url)",
    ExitCode.USAGE: "usage or configuration error: bad arguments, a half-set or malformed\n"
    "     DB_* environment, a missing optional package",
}
INTERRUPTED = 130


class UsageError(CasdbError):
    """The command line asks for something impossible (exit code 2)."""


@attrs.define
class State:
    """Options every database command shares; set at the root or after the command."""

    url: str | None = None
    data_dir: Path | None = None


def exit_codes_epilog() -> str:
    # \b keeps click from re-wrapping the block.
    lines = ["\b", "exit codes:"]
    lines += [f"  {int(code)}  {text}" for code, text in EXIT_CODE_HELP.items()]
    lines += [
        "",
        "\b",
        "configuration (database commands): --url, else SQLALCHEMY_DATABASE_URI, else",
        "DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME (TCP) or DB_INSTANCE_UNIX_SOCKET/",
        "DB_USER/DB_PASSWORD/DB_NAME (Cloud SQL proxy), else the local PostgreSQL",
        "(casdb local start), said on stderr. --traceback anywhere shows a failure's trace.",
    ]
    return "\n".join(lines)


class _StderrHandler(logging.Handler):
    """Writes records to the current sys.stderr (click's test runner swaps it per call)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)


def error_line(message: str) -> None:
    """Print the one line of an expected failure."""
    click.echo(f"casdb: error: {message}", err=True)


def _split_traceback(args: Sequence[str]) -> tuple[list[str], bool]:
    """Remove --traceback from anywhere before a ``--``; return the rest and whether it was."""
    argv = list(args)
    end = argv.index("--") if "--" in argv else len(argv)
    shown = "--traceback" in argv[:end]
    return [a for i, a in enumerate(argv) if i >= end or a != "--traceback"], shown


def _quiet_closed_pipe() -> None:
    # Python flushes stdout at exit; point it at devnull so that the flush cannot fail.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def version() -> str:
    """The installed distribution's version, else the checkout's setup.cfg version."""
    try:
        return metadata.version("casdb")
    except metadata.PackageNotFoundError:
        config = configparser.ConfigParser()
        config.read(Path(__file__).resolve().parents[2] / "setup.cfg")
        return config.get("metadata", "version", fallback="unknown") + " (not installed)"


class CasdbGroup(click.Group):
    """The root group: runs a command and turns its outcome into an exit code."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> int:
        argv, show_traceback = _split_traceback(sys.argv[1:] if args is None else args)
        handler = _StderrHandler(logging.INFO)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = logging.getLogger("casdb")
        old_level = logger.level
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        try:
            code = self._run(argv, prog_name or "casdb", show_traceback, **extra)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, argv: list[str], prog_name: str, show_traceback: bool, **extra: Any) -> int:
        def fail(code: ExitCode, message: str) -> int:
            if show_traceback:
                traceback.print_exc()
            error_line(message)
            return int(code)

        try:
            with translated_errors():
                result = super().main(argv, prog_name, standalone_mode=False, **extra)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
            return int(result) if isinstance(result, int) else int(ExitCode.OK)
        except click.UsageError as error:
            if show_traceback:
                traceback.print_exc()
            if error.ctx is not None:
                click.echo(error.ctx.get_usage(), err=True)
            hint = f" (see `{error.ctx.command_path} --help`)" if error.ctx is not None else ""
            error_line(f"{error.format_message()}{hint}")
            return int(ExitCode.USAGE)
        except click.ClickException as error:  # e.g. click.FileError
            return fail(ExitCode.USAGE, error.format_message())
        except (click.Abort, KeyboardInterrupt):
            error_line("interrupted")
            return INTERRUPTED
        except BrokenPipeError:  # quietly, with click's exit code for a closed pipe
            _quiet_closed_pipe()
            return int(ExitCode.FAILURE)
        except SystemExit as exit_:  # click's own handling of a closed pipe
            return exit_.code if isinstance(exit_.code, int) else int(ExitCode.FAILURE)
        except (ConfigurationError, UsageError) as error:
            return fail(ExitCode.USAGE, str(error))
        except CasdbError as error:
            return fail(ExitCode.FAILURE, str(error))
        except CommandError as error:
            return fail(ExitCode.FAILURE, f"{error} (see `casdb db history` for the revisions)")


@click.group(
    name="casdb",
    cls=CasdbGroup,
    epilog=exit_codes_epilog(),
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--url",
    metavar="URL",
    default=None,
    help="database URL, e.g. postgresql://user:password@host:5432/cas "
    "(overrides SQLALCHEMY_DATABASE_URI and DB_*; also accepted after a command)",
)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, hidden=True)
@click.option(
    "--traceback", is_flag=True, help="show the full traceback of a failure (anywhere on the line)"
)
@click.version_option(version(), "--version", prog_name="casdb", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, url: str | None, data_dir: Path | None, traceback: bool) -> None:
    """casdb: the database layer of the Cell Annotation Service.

    Migrations and adoption of live databases, operator commands for users, API keys and
    models, bulk ingest of cell metadata, and a local PostgreSQL for development.
    """
    ctx.obj = State(url=url, data_dir=data_dir)
