"""squawk (a PostgreSQL migration linter) finds no locking hazard in casdb's revisions.

It lints the offline script of the revisions after the baseline (`casdb db sql
cdfe110d1068:head`, what adopting a live database runs). Excluded, with the reason:

* renaming-object (19): the spec's readable names; a rename only changes the catalog, in a
  moment, and the original services use no constraint, index or sequence name;
* ban-drop-constraint (5): the legacy foreign keys, dropped once their ON DELETE CASCADE
  replacements are validated;
* ban-drop-not-null (1): the spec makes the legacy cells_featureinfo.id nullable;
* prefer-robust-stmts: squawk asks that statements outside a transaction be re-runnable; the
  online path makes each step re-runnable by checking the catalog first (casdb._online),
  which squawk cannot see in the script;
* prefer-text-field (1): casdb.alembic_version's VARCHAR(32) is alembic's own version table.

The baseline itself reproduces the live schema as it is (serial ints, varchar columns) and is
not linted.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

from alembic import command

from casdb import migrate

EXCLUDED = [
    "renaming-object",
    "ban-drop-constraint",
    "ban-drop-not-null",
    "prefer-robust-stmts",
    "prefer-text-field",
]


def _squawk() -> str:
    found = shutil.which("squawk") or str(Path(sys.executable).with_name("squawk"))
    assert Path(found).exists(), "squawk-cli is part of the test extra: pip install '.[test]'"
    return found


def test_squawk_finds_no_locking_hazard_in_the_casdb_revisions(tmp_path: Path) -> None:
    buffer = io.StringIO()
    config = migrate.alembic_config()
    config.output_buffer = buffer
    command.upgrade(config, f"{migrate.BASELINE_REVISION}:head", sql=True)
    script = tmp_path / "casdb_revisions.sql"
    script.write_text(buffer.getvalue())
    result = subprocess.run(  # noqa: S603 - the linter on our own file
        [
            _squawk(),
            "--pg-version",
            "14",
            "--reporter",
            "json",
            "--exclude",
            ",".join(EXCLUDED),
            str(script),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert [(f.get("rule_name"), f.get("line")) for f in findings] == [], result.stdout[:2000]
    assert result.returncode == 0, result.stderr
