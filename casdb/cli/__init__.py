"""The ``casdb`` command (click): one module per command group.

``db`` migrations, ``local`` the local PostgreSQL, ``cells`` ingest, ``users``/``keys``/
``models`` operator commands, ``demo``. The root group, exit codes and error policy are in
:mod:`casdb.cli._app`; the shared options, connections and output in :mod:`casdb.cli._shared`.
A new command is a click command in its group's module; a new group is registered below.
"""

from __future__ import annotations

from collections.abc import Sequence

from casdb.cli._app import ExitCode, cli
from casdb.cli.cells import cells_group
from casdb.cli.db import db
from casdb.cli.demo import demo
from casdb.cli.keys import keys_group
from casdb.cli.local import local
from casdb.cli.models import models_group
from casdb.cli.users import users_group

for _command in (db, local, demo, cells_group, users_group, keys_group, models_group):
    cli.add_command(_command)

__all__ = ["ExitCode", "cli", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``casdb`` command with ``argv`` (default: sys.argv[1:]); return the exit code."""
    return cli.main(argv, standalone_mode=False)
