"""pytest-alembic's built-in tests, pointed at casdb's alembic.ini with a plain pg8000 Engine.

Its pytest plugin does not load under pytest 9 (pyproject disables it), so the built-in tests
run here through its public runner, each on a fresh database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pytest_alembic
import sqlalchemy
from pytest_alembic.config import Config
from pytest_alembic.tests import default, experimental
from sqlalchemy import URL, Engine

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
# Imported as modules: pytest would collect the functions themselves as tests of this module.
BUILT_IN = [
    default.test_single_head_revision,
    default.test_upgrade,
    default.test_model_definitions_match_ddl,
    default.test_up_down_consistency,
    experimental.test_downgrade_leaves_no_trace,
]


@pytest.fixture
def plain_engine(make_database: Callable[..., URL]) -> Iterator[Engine]:
    """A plain pg8000 Engine (no casdb settings) on an empty database."""
    engine = sqlalchemy.create_engine(make_database())
    yield engine
    engine.dispose()


@pytest.mark.parametrize("built_in", BUILT_IN, ids=lambda fn: fn.__name__)
def test_pytest_alembic_built_in(built_in: Callable[..., None], plain_engine: Engine) -> None:
    config = Config(config_options={"file": str(ALEMBIC_INI)})
    with pytest_alembic.runner(config=config, engine=plain_engine) as alembic_runner:
        built_in(alembic_runner)
        # Each test walked the chain for real: the database ends at a casdb revision.
        assert alembic_runner.current in {"base", *alembic_runner.history.revisions}
