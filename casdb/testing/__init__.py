"""casdb's test kit for the services that use casdb: a real PostgreSQL in every test.

* ``casdb.testing.plugin`` — the pytest plugin (fixtures ``casdb_database_url``,
  ``casdb_databases``, ``casdb_engine``, ``casdb_connection``, ``casdb_factory``,
  ``casdb_environment``), active once ``casdb[test]`` is installed.
* ``casdb.testing.strategies`` — Hypothesis strategies for every row casdb stores, valid by
  construction, and the hostile values casdb refuses (needs Hypothesis).
* Here, usable without pytest or Hypothesis: :func:`rolled_back`, :class:`RollbackConnection`,
  :class:`TemporaryDatabases`, :func:`server_for_tests`, :func:`statements_sent` and the
  factories :func:`make_user`, :func:`make_key`, :func:`make_model`, :func:`make_ingest`.
"""

from casdb.testing.connections import RollbackConnection, rolled_back, statements_sent
from casdb.testing.databases import (
    TEST_DATABASE_URL_VARIABLE,
    TemporaryDatabases,
    create_test_engine,
    migrate_to_head,
    server_for_tests,
    url_from_environment,
)
from casdb.testing.factories import (
    Factory,
    IngestWithCells,
    IssuedKey,
    hash_secret,
    make_ingest,
    make_key,
    make_model,
    make_user,
)

__all__ = [
    "TEST_DATABASE_URL_VARIABLE",
    "Factory",
    "IngestWithCells",
    "IssuedKey",
    "RollbackConnection",
    "TemporaryDatabases",
    "create_test_engine",
    "hash_secret",
    "make_ingest",
    "make_key",
    "make_model",
    "make_user",
    "migrate_to_head",
    "rolled_back",
    "server_for_tests",
    "statements_sent",
    "url_from_environment",
]
