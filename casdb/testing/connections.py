"""Connections whose work is rolled back at the end of a test, even when the code commits."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, Engine, RootTransaction
from sqlalchemy import exc as sa_exc

# A name no code under test uses: the savepoint its commit() and rollback() act on.
_SAVEPOINT = "casdb_testing_savepoint"


class RollbackConnection(Connection):
    """A Connection inside a transaction that the test rolls back, whatever the code does.

    The code under test may treat it as a fresh connection: ``commit()`` releases a savepoint
    (the work stays visible on this connection, never on others, and is rolled back at the end
    of the test), ``rollback()`` returns to the state of the last ``commit()``, and
    ``begin()`` (also ``with conn.begin():``) opens a savepoint. ``begin_nested()`` works as
    usual. What cannot be emulated: other connections never see the work, ``close()`` ends the
    test's transaction early, and AUTOCOMMIT isolation defeats the rollback.
    """

    __test__ = False  # not a test class, whatever pytest makes of the name of its importer
    _casdb_wanted: bool = False  # inside rolled_back(): commit/rollback act on the savepoint
    _casdb_ready: bool = False  # the savepoint exists in the current server transaction

    def begin(self) -> RootTransaction:
        """Open a savepoint when the test's transaction runs (else begin one, as usual)."""
        if self._casdb_wanted and self.in_transaction():
            # A NestedTransaction behaves like the RootTransaction the caller asked for.
            return self.begin_nested()  # type: ignore[return-value]
        return super().begin()

    def commit(self) -> None:
        """Keep the work so far (until the end of the test): release the savepoint."""
        if self._casdb_bypassed(super().commit):
            return
        try:
            self._casdb_end_nested(commit=True)
            self.exec_driver_sql(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        except sa_exc.DBAPIError:
            # COMMIT of a failed transaction rolls it back; so does this.
            self.rollback()
            return
        self._casdb_ready = False
        self.exec_driver_sql(f"SAVEPOINT {_SAVEPOINT}")
        self._casdb_ready = True

    def rollback(self) -> None:
        """Undo the work since the last commit() (or the start of the test)."""
        if self._casdb_bypassed(super().rollback):
            return
        self._casdb_end_nested(commit=False)
        self.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")

    def _casdb_bypassed(self, plain: Callable[[], None]) -> bool:
        """Whether commit() or rollback() is done without the savepoint: outside rolled_back()
        it is the ``plain`` one; on a broken connection it starts again."""
        if not self._casdb_wanted:
            plain()
            return True
        if self.invalidated or not self._casdb_ready:
            self._casdb_restart()
            return True
        return False

    def _casdb_end_nested(self, *, commit: bool) -> None:
        # A real commit or rollback ends the savepoints the code left open: so do we.
        while (nested := self.get_nested_transaction()) is not None:
            if commit and nested.is_active:
                nested.commit()
            else:
                nested.close()

    def _casdb_start(self) -> None:
        self._casdb_wanted = True
        if not self.in_transaction():
            super().begin()
        self.exec_driver_sql(f"SAVEPOINT {_SAVEPOINT}")
        self._casdb_ready = True

    def _casdb_restart(self) -> None:
        # The connection broke (SQLAlchemy invalidated it): the server rolled everything back.
        # Start again on a new connection; if that fails too, the next call tries again.
        self._casdb_ready = False
        super().rollback()
        self._casdb_start()

    def _casdb_finish(self) -> None:
        self._casdb_wanted = self._casdb_ready = False
        try:
            super().rollback()
        finally:
            self.close()


@contextlib.contextmanager
def rolled_back(engine: Engine) -> Iterator[RollbackConnection]:
    """Yield a :class:`RollbackConnection` of ``engine``; everything it did is rolled back at
    the end of the block, including what the code under test committed.

    Use it inside a Hypothesis test, once per example (function-scoped fixtures run once per
    test, not per example).
    """
    connection = RollbackConnection(engine)
    try:
        connection._casdb_start()
    except BaseException:
        connection.close()
        raise
    try:
        yield connection
    finally:
        connection._casdb_finish()


# What pg8000 sends on its own around the statements it is given (SQLAlchemy never sees them).
_DRIVER_TRANSACTION_CONTROL = frozenset({"begin transaction", "commit", "rollback"})

# pg8000's three ways of sending a statement, and where each takes the SQL text.
_DRIVER_SENDS = (("execute_simple", 0), ("execute_unnamed", 0), ("execute_named", 4))


@contextlib.contextmanager
def statements_sent(connection: Connection) -> Iterator[list[str]]:
    """Collect every SQL statement ``connection`` sends while the block runs.

    Counted where pg8000 sends them, so that the statements casdb runs on the driver directly
    (prepared statements, COPY, bulk lookups) are seen as well as SQLAlchemy's; pg8000's own
    BEGIN/COMMIT/ROLLBACK are left out. A connection replaced inside the block (invalidated
    and reconnected) is not followed.
    """
    sent: list[str] = []
    driver = connection.connection.driver_connection

    def spy(send: Callable[..., Any], position: int) -> Callable[..., Any]:
        def sending(*args: Any, **kwargs: Any) -> Any:
            statement = args[position] if len(args) > position else kwargs["statement"]
            if statement not in _DRIVER_TRANSACTION_CONTROL:
                sent.append(statement)
            return send(*args, **kwargs)

        return sending

    for name, position in _DRIVER_SENDS:
        setattr(driver, name, spy(getattr(driver, name), position))
    try:
        yield sent
    finally:
        for name, _position in _DRIVER_SENDS:
            with contextlib.suppress(AttributeError):
                delattr(driver, name)  # the class's method again
