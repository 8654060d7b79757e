"""Small operations: casdb vs raw pg8000 ``cursor.execute`` vs a pg8000 prepared statement.

    python -m benchmarks.bench_ops --loops 2000

The hot operations the CAS API runs on every request (issue 12): each is timed as casdb runs
it, as raw pg8000 runs the same SQL text on its cursor (``cursor.execute``: Parse/Describe,
then Bind/Execute, and pg8000's paramstyle scan of the text every call), and as one pg8000
prepared statement of that SQL run again and again (``Connection.prepare`` once, then
``run``: Bind/Execute only), the floor a per-connection statement cache could reach. The SQL
is what casdb's own builder compiles to; all three must return the same values.

* casdb          the casdb operation (argument checks, statement built and compiled through
                 SQLAlchemy's cache, executed, mapped to a record).
* raw-execute    pg8000 ``cursor.execute(sql, params)`` + ``fetchall()`` (bare rows).
* raw-prepared   pg8000 ``prepare(sql)`` once, then ``run(**params)`` (bare rows).

Each method runs ``--loops`` calls per round inside one transaction; rounds are interleaved,
the best of ``--repeat`` is kept, and the result is printed in microseconds per operation.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Select
from sqlalchemy.dialects.postgresql import pg8000 as pg8000_dialect

from benchmarks import _common
from casdb.queries import keys, users
from casdb.tables import users_user

Run = Callable[[Connection], Any]
suite: _common.Suite[Callable[[Connection, Operation], Run]] = _common.Suite()

_FORMAT = pg8000_dialect.dialect()  # casdb's dialect: %s placeholders, what cursor.execute takes
_NAMED = pg8000_dialect.dialect(paramstyle="named")  # :name placeholders, what prepare takes


class Operation:
    """One operation: how casdb calls it, and the statement casdb's builder makes for it."""

    def __init__(self, name: str, call: Run, statement: Select[Any]) -> None:
        self.name = name
        self.call = call
        compiled = statement.compile(dialect=_FORMAT)
        self.format_sql = compiled.string
        self.format_params = tuple(compiled.params[name] for name in compiled.positiontup or ())
        named = statement.compile(dialect=_NAMED)
        self.named_sql = named.string
        self.named_params = dict(named.params)


@suite.method("casdb")
def casdb_method(conn: Connection, operation: Operation) -> Run:
    return operation.call


@suite.method("raw-execute")
def raw_execute(conn: Connection, operation: Operation) -> Run:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    sql, params = operation.format_sql, operation.format_params

    def run(_conn: Connection) -> Any:
        cursor.execute(sql, params)
        return cursor.fetchall()

    return run


@suite.method("raw-prepared")
def raw_prepared(conn: Connection, operation: Operation) -> Run:
    prepared = conn.connection.driver_connection.prepare(operation.named_sql)  # type: ignore[union-attr]
    params = operation.named_params
    return lambda _conn: prepared.run(**params)


def operations(conn: Connection) -> list[Operation]:
    """A user and a key made for the benchmark, and the operations that read them."""
    email = f"bench-{uuid.uuid4()}@example.com"
    user = users.create_user(conn, email=email, username=f"bench-{uuid.uuid4()}")
    key = keys.create_user_key(conn, user_id=user.id, key_hash="$argon2id$bench")
    conn.commit()
    select_users = users.build_select_users()
    return [
        Operation(
            "get_user",
            lambda c: users.get_user(c, user_id=user.id),
            select_users.where(users_user.c.id == user.id),
        ),
        Operation(
            "get_user_by_email",
            lambda c: users.get_user_by_email(c, email=email),
            select_users.where(users_user.c.email == email),
        ),
        Operation(
            "get_key_for_authentication",
            lambda c: keys.get_key_for_authentication(c, key_locator=key.key_locator),
            keys.build_key_for_authentication(key.key_locator),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    suite.add_arguments(parser)
    parser.add_argument("--loops", type=int, default=2000, help="calls per method per round")
    args = parser.parse_args()
    methods = suite.chosen(args)
    print(f"loops: {args.loops:,}; best of {args.repeat}; cpus: {os.cpu_count()}", flush=True)
    with _common.database(args.url) as engine, engine.connect() as conn:
        ops = operations(conn)
        best: dict[tuple[str, str], float] = {}
        for operation in ops:
            runs = {name: make(conn, operation) for name, make in methods.items()}
            results = {name: run(conn) for name, run in runs.items()}
            conn.rollback()
            assert results.get("casdb") is not None, operation.name
            raw = [list(row) for row in results.get("raw-execute", [])]
            prepared = [list(row) for row in results.get("raw-prepared", [])]
            assert not raw or not prepared or raw == prepared, operation.name
            for _ in range(args.repeat):
                for name, run in runs.items():
                    started = time.perf_counter()
                    for _ in range(args.loops):
                        run(conn)
                    elapsed = (time.perf_counter() - started) / args.loops
                    conn.rollback()
                    key = (operation.name, name)
                    best[key] = min(best.get(key, elapsed), elapsed)
    print(f"\nmicroseconds per operation (best of {args.repeat} rounds of {args.loops:,}):")
    header = "".join(f"{name:>14s}" for name in methods)
    print(f"  {'operation':28s}{header}   casdb/raw-execute  prepared/raw-execute")
    for operation in ops:
        row = [best[(operation.name, name)] * 1e6 for name in methods]
        cells = "".join(f"{value:14.0f}" for value in row)
        us = {name: best[(operation.name, name)] for name in methods}
        ratios = ""
        if "casdb" in us and "raw-execute" in us:
            ratios += f"   {us['casdb'] / us['raw-execute']:17.2f}x"
        if "raw-prepared" in us and "raw-execute" in us:
            ratios += f"  {us['raw-prepared'] / us['raw-execute']:19.2f}x"
        print(f"  {operation.name:28s}{cells}{ratios}")


if __name__ == "__main__":
    main()
