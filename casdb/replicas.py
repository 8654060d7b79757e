"""Read replicas: which operations may run on the reader, and waiting for it to catch up.

A read replica (a PostgreSQL hot standby, e.g. a Cloud SQL read replica) replays the
primary's write-ahead log a little behind it: usually a millisecond, hundreds of
milliseconds during a bulk ingest. A read routed to it right after the caller's own write may
miss that write. :func:`wait_for_replica` closes that gap: it waits until the reader has
replayed everything the writer has written so far.

The operations of :data:`READ_ONLY_OPERATIONS` run unchanged on the reader (each is tested
inside a READ ONLY transaction and on a streaming standby). Every other operation writes and
must go to the writer; on the reader it fails with SQLSTATE 25006, a DatabaseError.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Final

from sqlalchemy import Connection, text

from casdb._checks import translated_errors
from casdb.errors import DatabaseError, InvalidInput

__all__ = [
    "MUST_SEE_OWN_WRITES",
    "READ_ONLY_OPERATIONS",
    "ReplicaLagTimeout",
    "wait_for_replica",
]

#: The operations of casdb.queries.<area> that only read, by area: they may run on the reader.
READ_ONLY_OPERATIONS: Final[dict[str, tuple[str, ...]]] = {
    "users": (
        "get_user",
        "get_user_by_email",
        "list_users",
        "get_user_with_usage",
        "get_user_usage",
    ),
    "keys": ("get_key_for_authentication", "list_user_keys", "authenticate_token"),
    "activity": ("list_user_activity",),
    "quotas": ("cells_processed_this_week", "get_user_quota"),
    "ml_models": (
        "list_models",
        "get_model_by_name",
        "get_default_model",
        "get_index_by_name",
        "list_indexes_for_model",
    ),
    "cells": (
        "get_ingest",
        "list_ingests",
        "list_features_for_ingest",
        "count_cells",
        "get_cell_metadata_by_ids",
        "iter_cell_metadata_by_ids",
        "find_existing_indexes",
    ),
}

#: Reads whose answer decides what the caller does next and so must see the caller's own
#: (or a just-acknowledged) write: run them on the writer, or on the reader only after
#: :func:`wait_for_replica`. A stale answer here is wrong, not merely old.
MUST_SEE_OWN_WRITES: Final[dict[str, str]] = {
    "users.get_user": "right after create_user / set_user_active / set_admin",
    "users.get_user_by_email": "right after create_user (a sign-up that reads its user back)",
    "keys.get_key_for_authentication": "a key just issued or deactivated: a stale reader "
    "refuses a new key, or accepts a deactivated one",
    "keys.authenticate_token": "as get_key_for_authentication",
    "quotas.get_user_quota": "quota enforcement after log_user_activity: a stale reader lets "
    "a user exceed the quota",
    "quotas.cells_processed_this_week": "as get_user_quota",
    "ml_models.get_default_model": "right after set_default_model",
    "cells.get_ingest": "right after create_ingest / insert_cells of the same ingest",
    "cells.count_cells": "checking an ingest just written",
    "cells.find_existing_indexes": "an ingest checking its own ids: run it on the writer",
}

# Poll the reader from 0.5 ms, doubling up to 50 ms: a replica that is 1 ms behind costs
# about two polls, one that is seconds behind about 20 polls a second.
_FIRST_POLL_S = 0.0005
_MAX_POLL_S = 0.05

_WRITER_POSITION = text("SELECT CAST(pg_current_wal_lsn() AS text)")
_READER_STATE = text(
    "SELECT pg_is_in_recovery(), CAST(pg_last_wal_replay_lsn() AS text), "
    "COALESCE(pg_last_wal_replay_lsn() >= CAST(:target AS pg_lsn), false), "
    "current_setting('transaction_isolation')"
)


class ReplicaLagTimeout(DatabaseError):
    """The reader did not replay the writer's WAL position in time (a DatabaseError).

    ``retryable`` is True: the replica is behind, not broken; waiting longer, or reading
    from the writer, may succeed. ``target_lsn`` is the writer's position waited for,
    ``replayed_lsn`` where the reader was at the end.
    """

    def __init__(self, message: str, *, target_lsn: str, replayed_lsn: str | None) -> None:
        super().__init__(message, retryable=True)
        self.target_lsn = target_lsn
        self.replayed_lsn = replayed_lsn


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidInput(f"timeout must be a number of seconds, got {type(timeout).__name__}")
    if not math.isfinite(timeout) or timeout < 0:
        raise InvalidInput("timeout must be a finite number of seconds, at least 0")
    return float(timeout)


def wait_for_replica(
    writer_connection: Connection, reader_connection: Connection, *, timeout: float = 10.0
) -> float:
    """Wait until the reader has replayed all WAL the writer has written so far.

    Call it after committing a write on ``writer_connection`` and before reading it back on
    ``reader_connection``: the reader then sees the write (read-your-writes). It compares the
    writer's ``pg_current_wal_lsn()`` with the reader's ``pg_last_wal_replay_lsn()``. That is
    exact when the writer commits with ``synchronous_commit`` on (PostgreSQL's and Cloud SQL's
    default); with it off a commit may not be written yet when the position is read.

    A reader that is not in recovery is a primary (the writer itself, as ``create_engines``
    gives without a replica): it returns at once. A connection that was not inside a
    transaction is left outside one (its snapshot must not predate the replay). Returns the
    seconds waited (0.0 when no wait was needed).

    Raises InvalidInput for a bad ``timeout`` (before any SQL) and when ``reader_connection``
    is inside a REPEATABLE READ or SERIALIZABLE transaction (its snapshot would not see the
    replayed write); ReplicaLagTimeout (a DatabaseError, retryable) when the reader has not
    caught up within ``timeout`` seconds; DatabaseError when either server fails.
    """
    limit = _check_timeout(timeout)
    started = time.monotonic()
    with (
        translated_errors(connection=writer_connection),
        _leaving_no_transaction(writer_connection),
    ):
        target = writer_connection.execute(_WRITER_POSITION).scalar_one()
    poll = _FIRST_POLL_S
    with (
        translated_errors(connection=reader_connection),
        _leaving_no_transaction(reader_connection) as was_in_transaction,
    ):
        while True:
            in_recovery, replayed, caught_up, isolation = reader_connection.execute(
                _READER_STATE, {"target": target}
            ).one()
            if was_in_transaction and isolation != "read committed":
                raise InvalidInput(
                    f"the reader connection is inside a {isolation.upper()} transaction, whose "
                    "snapshot cannot see what the replica replays: call wait_for_replica "
                    "before beginning it"
                )
            if not in_recovery or caught_up:
                return time.monotonic() - started if in_recovery else 0.0
            waited = time.monotonic() - started
            if waited >= limit:
                raise ReplicaLagTimeout(
                    f"the reader has not replayed the writer's WAL position {target} within "
                    f"{limit:g} s (it has replayed up to {replayed})",
                    target_lsn=target,
                    replayed_lsn=replayed,
                )
            time.sleep(min(poll, max(limit - waited, 0.0)))
            poll = min(poll * 2, _MAX_POLL_S)


@contextlib.contextmanager
def _leaving_no_transaction(connection: Connection) -> Iterator[bool]:
    """Yield whether ``connection`` was in a transaction; if not, end the one autobegun."""
    was_in_transaction = connection.in_transaction()
    try:
        yield was_in_transaction
    finally:
        if (
            not was_in_transaction
            and not connection.closed
            and not connection.invalidated
            and connection.in_transaction()
        ):
            connection.rollback()
