"""A rolling deploy: the original CAS services' `alembic upgrade head` (their own 26-revision
history, tests/fixtures/original_history) keeps succeeding, as a no-op, on a database that
casdb created or adopted and upgraded: casdb records its revision in casdb.alembic_version and
public.alembic_version keeps the original head."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Engine, text

from casdb import catalog, migrate
from casdb.adopt import adopt
from tests.conftest import load_original_schema

ORIGINAL_HISTORY = Path(__file__).parent / "fixtures" / "original_history"
ORIGINAL_HEAD = "cdfe110d1068"


def _original_upgrade_head(url: URL) -> None:
    """What the original admin container runs at start."""
    config = Config()
    config.set_main_option("script_location", str(ORIGINAL_HISTORY))
    config.set_main_option(
        "sqlalchemy.url", url.render_as_string(hide_password=False).replace("%", "%%")
    )
    command.upgrade(config, "head")


def _engine(url: URL) -> Engine:
    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)


def _legacy_version(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM public.alembic_version")).scalars())


def _assert_casdb_at_head(engine: Engine) -> None:
    with engine.connect() as conn:
        assert migrate.current_revisions(conn) == (migrate.head_revision(),)
        assert migrate.schema_differences(conn) == []


def test_the_fixture_is_a_26_revision_chain_ending_at_the_original_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(ORIGINAL_HISTORY))
    script = ScriptDirectory.from_config(config)
    assert script.get_heads() == [ORIGINAL_HEAD]
    assert len(list(script.walk_revisions())) == 26


def test_original_services_start_on_a_fresh_casdb_database(
    make_database: Callable[..., URL],
) -> None:
    url = make_database()
    engine = _engine(url)
    migrate.upgrade(engine, "head")
    assert _legacy_version(engine) == [ORIGINAL_HEAD]
    _original_upgrade_head(url)  # "Can't locate revision identified by '5c1a7e2d9b40'" before
    assert _legacy_version(engine) == [ORIGINAL_HEAD]
    _assert_casdb_at_head(engine)
    engine.dispose()


@pytest.mark.parametrize("how", ["adopt", "upgrade"])
def test_original_services_start_on_an_adopted_live_database(
    make_database: Callable[..., URL], how: str
) -> None:
    url = make_database()
    load_original_schema(url)
    _original_upgrade_head(url)  # a live database: nothing to do for the original history
    engine = _engine(url)
    if how == "adopt":
        with engine.begin() as conn:
            adopt(conn)
    else:
        migrate.upgrade(engine, "head")
    _original_upgrade_head(url)
    assert _legacy_version(engine) == [ORIGINAL_HEAD]
    _assert_casdb_at_head(engine)
    # Rolling back casdb's upgrade keeps the original services starting, and casdb knows
    # where it is.
    migrate.downgrade(engine, migrate.BASELINE_REVISION)
    _original_upgrade_head(url)
    with engine.connect() as conn:
        assert migrate.current_revisions(conn) == (migrate.BASELINE_REVISION,)
        assert catalog.differences(catalog.baseline_snapshot(), catalog.snapshot(conn)) == []
    engine.dispose()


def test_adopting_a_live_database_without_alembic_version_records_the_original_head(
    make_database: Callable[..., URL],
) -> None:
    url = make_database()
    load_original_schema(url)
    engine = _engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE public.alembic_version"))
    with engine.begin() as conn:
        assert adopt(conn).stamped
    assert _legacy_version(engine) == [ORIGINAL_HEAD]
    _original_upgrade_head(url)
    _assert_casdb_at_head(engine)
    engine.dispose()


def test_a_live_database_behind_the_original_head_is_refused_clearly(
    make_database: Callable[..., URL],
) -> None:
    url = make_database()
    load_original_schema(url)
    engine = _engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE public.alembic_version SET version_num = '70e04e879f42'"))
    with pytest.raises(Exception, match="before its head cdfe110d1068"):
        migrate.upgrade(engine, "head")
    with engine.connect() as conn:
        assert catalog.differences(catalog.baseline_snapshot(), catalog.snapshot(conn)) == []
    engine.dispose()
