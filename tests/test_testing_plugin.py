"""The pytest plugin as a user runs it: a throwaway project holding the README's example test
files, its own pytest, in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

from sqlalchemy import URL

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "casdb.testing.plugin"


def readme_examples() -> dict[str, str]:
    """The test files of the README's "Testing your service with casdb", by file name."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Testing your service with casdb", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(# (test_\w+\.py)\n.*?)```", section, re.DOTALL)
    assert len(blocks) == 2
    return {name: code for code, name in blocks}


EXAMPLES = readme_examples()
PASSED = "4 passed"  # the README's examples hold four tests


def _entry_point_installed() -> bool:
    return any(ep.value == PLUGIN for ep in metadata.entry_points(group="pytest11"))


def _fake_installation(directory: Path) -> Path:
    """A dist-info declaring casdb's pytest11 entry point, as `pip install casdb` writes it."""
    info = directory / "casdb_fake-0.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: casdb-fake\nVersion: 0.0.0\n")
    setup_cfg = (ROOT / "setup.cfg").read_text()
    line = f"{PLUGIN} = {PLUGIN}"
    assert line in setup_cfg  # the entry point this fakes is the one setup.cfg declares
    (info / "entry_points.txt").write_text(f"[pytest11]\n{line}\n")
    return directory


def run_user_project(
    project: Path, *args: str, database_url: str | None, extra_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    for name, code in EXAMPLES.items():
        (project / name).write_text(code)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "CASDB_", "DB_", "SQLALCHEMY_"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([str(extra_path)] if extra_path else []))
    if database_url is not None:
        env["CASDB_TEST_DATABASE_URL"] = database_url
    return subprocess.run(
        # Its own --basetemp: a pytest starting under /tmp/pytest-of-<user> takes o+x off that
        # directory, which servers running as another user (as root: casdb-postgres) need.
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            f"--basetemp={project / '.basetemp'}",
            *args,
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _plugin_args() -> list[str]:
    # Installed, the entry point loads the plugin; from a bare checkout, ask for it.
    return [] if _entry_point_installed() else ["-p", PLUGIN]


def test_a_user_project_gets_its_own_embedded_server(tmp_path: Path) -> None:
    result = run_user_project(tmp_path, *_plugin_args(), database_url=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert PASSED in result.stdout


def test_a_user_project_on_an_existing_server(tmp_path: Path, server_url: URL) -> None:
    url = server_url.render_as_string(hide_password=False)
    result = run_user_project(tmp_path, *_plugin_args(), database_url=url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert PASSED in result.stdout


def test_the_entry_point_loads_the_plugin_once_beside_pytest_plugins(
    tmp_path: Path, server_url: URL
) -> None:
    # As casdb's own suite in CI: the entry point is installed and conftest.py names it too.
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text(f"pytest_plugins = [{PLUGIN!r}]\n")
    site = _fake_installation(tmp_path / "site")
    url = server_url.render_as_string(hide_password=False)
    for args in ([], ["-p", PLUGIN]):
        result = run_user_project(project, *args, database_url=url, extra_path=site)
        assert result.returncode == 0, result.stdout + result.stderr
        assert PASSED in result.stdout


def test_the_fixtures_are_documented_in_pytest_fixtures(tmp_path: Path) -> None:
    result = run_user_project(tmp_path, *_plugin_args(), "--fixtures", "-vv", database_url=None)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, words in [
        ("casdb_database_url [session scope]", "CASDB_TEST_DATABASE_URL"),
        ("casdb_databases [session scope]", "migrated()"),
        ("casdb_engine [module scope]", "migrated to casdb's head"),
        ("casdb_connection", "rolled back afterwards"),
        ("casdb_factory", ".ingest()"),
        ("casdb_environment", "SQLALCHEMY_DATABASE_URI"),
    ]:
        assert name in result.stdout and words in result.stdout, name


def test_the_plugin_and_the_kit_import_without_hypothesis() -> None:
    script = textwrap.dedent("""
        import sys
        sys.modules["hypothesis"] = None  # import hypothesis now raises ImportError
        import casdb.testing, casdb.testing.plugin
        try:
            import casdb.testing.strategies
        except ImportError:
            print("strategies need hypothesis")
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "strategies need hypothesis"


def test_a_bad_test_database_url_fails_the_tests_clearly(tmp_path: Path) -> None:
    result = run_user_project(tmp_path, *_plugin_args(), database_url="mysql://u:s3cret@h/x")
    assert result.returncode == 1
    assert "CASDB_TEST_DATABASE_URL must name a PostgreSQL server" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr


def test_the_plugin_can_be_disabled(tmp_path: Path) -> None:
    site = _fake_installation(tmp_path / "site")
    project = tmp_path / "project"
    project.mkdir()
    result = run_user_project(project, "-p", "no:" + PLUGIN, database_url=None, extra_path=site)
    assert result.returncode == 1
    assert "fixture 'casdb_connection' not found" in result.stdout
