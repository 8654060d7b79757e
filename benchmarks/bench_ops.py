"""Small operations: casdb vs raw pg8000 vs psycopg 3, directly and through a latency proxy.

    python -m benchmarks.bench_ops                     # 2,000 calls direct, 300 at 0.5 ms
    python -m benchmarks.bench_ops --latency-ms 1 --methods casdb,raw-execute

The hot operations the CAS API runs on every request (issue 12): each is timed as casdb runs
it, and as the same SQL text (what casdb's own builder compiles to, with the values SQLAlchemy
binds) run by the drivers a user would otherwise call:

* casdb             the casdb operation (argument checks, statement prepared once per
                    connection, executed, mapped to a record).
* raw-execute       pg8000 ``cursor.execute(sql, params)`` + ``fetchall()``: Parse/Describe,
                    then Bind/Execute, and pg8000's paramstyle scan of the text on every call.
* raw-prepared      pg8000 ``Connection.prepare(sql)`` once, then ``run(**params)``: the floor
                    a pg8000 statement cache can reach.
* psycopg           psycopg 3 ``conn.execute(sql, params).fetchall()``: one round trip, and
                    prepared automatically from the 6th call (``prepare_threshold=5``).
* psycopg-prepared  the same with ``prepare=True`` (prepared on the first call).

psycopg is optional (``pip install casdb[bench]``); without it its methods are skipped with a
note. Every method runs twice: **direct** (127.0.0.1) and **through a TCP proxy** that adds
``--latency-ms`` each way (benchmarks/_proxy.py, in a child process), as Cloud SQL is reached
over a network. The proxy also counts **round trips** (request/response turns) per call:
counted over ``--rt-calls`` calls inside a transaction, after warm-up calls that begin it and
prepare what each method prepares (psycopg prepares on a statement's 5th call).

Each method runs ``--loops`` (``--latency-loops`` through the proxy) calls per round inside one
transaction, rolled back after the round (``log_user_activity`` inserts); rounds are
interleaved, the best of ``--repeat`` is kept; all methods must return the same rows.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, Engine, event
from sqlalchemy.dialects.postgresql import pg8000 as pg8000_dialect
from sqlalchemy.sql import Executable

from benchmarks import _common, _proxy
from casdb.queries import activity, keys, ml_models, quotas, users
from casdb.tables import UserActivityEvent, users_user

Run = Callable[[], Any]
suite: _common.Suite[Callable[[Target, Operation], Run]] = _common.Suite()

_NAMED = pg8000_dialect.dialect(paramstyle="named")  # :name placeholders, what prepare takes
TARGET_RATIO = 0.5  # issue 12: casdb at most 0.5x raw cursor.execute, for each operation
MODES = ("direct", "latency")
WARM_UP_CALLS = 6


class Skip(Exception):
    """A method that cannot run here (psycopg not installed): skipped with a note."""


class Operation:
    """One operation: how casdb calls it, and the SQL and parameters casdb's builder makes."""

    def __init__(
        self,
        name: str,
        call: Callable[[Connection], Any],
        statement: Executable,
        *,
        reads: bool,
        values: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.call = call
        self.statement = statement
        self.values = values or {}  # for a statement with named bindparams, bound on execute
        self.reads = reads  # rows comparable between methods (an INSERT's ids and times differ)
        self.sql = ""
        self.params: tuple[Any, ...] = ()
        self.named_sql = ""
        self.named_params: dict[str, Any] = {}

    def capture(self, conn: Connection) -> None:
        """Run the statement once through SQLAlchemy; keep the SQL and values it sent."""
        sent: list[tuple[str, Any, Any]] = []

        def listener(*args: Any) -> None:
            _conn, _cursor, statement, parameters, context, _many = args
            sent.append((statement, parameters, context))

        event.listen(conn, "before_cursor_execute", listener)
        try:
            conn.execute(self.statement, self.values).fetchall()
        finally:
            event.remove(conn, "before_cursor_execute", listener)
        conn.rollback()
        self.sql, params, context = sent[-1]
        self.params = tuple(params)
        names = context.compiled.positiontup or ()
        named = self.statement.compile(dialect=_NAMED).string  # type: ignore[attr-defined]
        # SQLAlchemy's pg8000 dialect doubles "%" in every paramstyle; pg8000's prepare (named
        # style) sends the text as it is, where "integer %% integer" is no operator.
        self.named_sql = named.replace("%%", "%")
        self.named_params = dict(zip(names, self.params, strict=True))


class Target:
    """Where the methods run: a SQLAlchemy connection and, when asked, a psycopg one."""

    def __init__(self, conn: Connection, host: str, port: int) -> None:
        self.conn = conn
        self.host, self.port = host, port
        self._psycopg: Any = None
        self.closers: list[Callable[[], Any]] = []

    @property
    def driver(self) -> Any:
        return self.conn.connection.driver_connection

    def psycopg(self) -> Any:
        """A psycopg 3 connection to the same database (opened once)."""
        if self._psycopg is None:
            try:
                import psycopg
            except ImportError:
                raise Skip("psycopg is not installed (pip install 'casdb[bench]')") from None
            url = self.conn.engine.url
            self._psycopg = psycopg.connect(
                host=self.host,
                port=self.port,
                user=url.username,
                password=url.password,
                dbname=url.database,
            )
            self.closers.append(self._psycopg.close)
        return self._psycopg

    def rollback(self) -> None:
        self.conn.rollback()
        if self._psycopg is not None:
            self._psycopg.rollback()


@suite.method("casdb")
def casdb_method(target: Target, operation: Operation) -> Run:
    conn, call = target.conn, operation.call
    return lambda: call(conn)


@suite.method("raw-execute")
def raw_execute(target: Target, operation: Operation) -> Run:
    cursor = target.driver.cursor()
    sql, params = operation.sql, operation.params

    def run() -> Any:
        cursor.execute(sql, params)
        return cursor.fetchall()

    return run


@suite.method("raw-prepared")
def raw_prepared(target: Target, operation: Operation) -> Run:
    prepared = target.driver.prepare(operation.named_sql)
    target.closers.append(prepared.close)
    params = operation.named_params
    return lambda: prepared.run(**params)


@suite.method("psycopg")
def psycopg_auto(target: Target, operation: Operation) -> Run:
    execute, sql, params = target.psycopg().execute, operation.sql, operation.params
    return lambda: execute(sql, params).fetchall()


@suite.method("psycopg-prepared")
def psycopg_prepared(target: Target, operation: Operation) -> Run:
    execute, sql, params = target.psycopg().execute, operation.sql, operation.params
    return lambda: execute(sql, params, prepare=True).fetchall()


def operations(conn: Connection) -> list[Operation]:
    """A user, a key and a default model made for the benchmark, and the operations on them."""
    tag = uuid.uuid4().hex[:12]
    email = f"bench-{tag}@example.com"
    user = users.create_user(conn, email=email, username=f"bench-{tag}")
    key = keys.create_user_key(conn, user_id=user.id, key_hash="$argon2id$bench")
    # log_user_activity's rounds (rolled back) leave thousands of dead rows, which the quota's
    # bitmap scans of the user's activity would wade through: they go to a user of their own.
    logger = users.create_user(conn, email=f"log-{email}", username=f"log-{tag}")
    model = ml_models.create_model(
        conn,
        model_name=f"bench-model-{tag}",
        model_file_path="gs://bench/model",
        embedding_dimension=512,
        is_default_model=True,
    )
    ml_models.create_matching_engine_index(
        conn,
        index_name=f"bench-index-{tag}",
        embedding_dimension=512,
        endpoint_id="bench-endpoint",
        num_neighbors=100,
        model_id=model.id,
    )
    activity.log_user_activity(
        conn,
        user_id=user.id,
        model_name=model.model_name,
        method="annotate",
        cell_count=1000,
        event="SUCCEEDED",
        request_id=tag,
    )
    conn.commit()
    now = dt.datetime.now(dt.UTC)
    event_values = {
        "user_id": logger.id,
        "model_name": model.model_name,
        "method": "annotate",
        "cell_count": 10,
        "event": UserActivityEvent.STARTED,
        "request_id": tag,
    }
    select_users = users.build_select_users()
    found = [
        Operation(
            "get_user",
            lambda c: users.get_user(c, user_id=user.id),
            select_users.where(users_user.c.id == user.id),
            reads=True,
        ),
        Operation(
            "get_user_by_email",
            lambda c: users.get_user_by_email(c, email=email),
            select_users.where(users_user.c.email == email),
            reads=True,
        ),
        Operation(
            "get_key_for_authentication",
            lambda c: keys.get_key_for_authentication(c, key_locator=key.key_locator),
            keys.build_key_for_authentication(key.key_locator),
            reads=True,
        ),
        Operation(
            "log_user_activity",
            lambda c: activity.log_user_activity(c, **event_values),  # type: ignore[arg-type]
            activity.build_log_user_activity(tuple(event_values)),
            reads=False,
            values=event_values,
        ),
        Operation(
            "get_user_quota",
            lambda c: quotas.get_user_quota(c, user_id=user.id, now=now),
            quotas.build_user_quota(user.id, now),
            reads=True,
        ),
        Operation(
            "get_default_model",
            lambda c: ml_models.get_default_model(c),
            ml_models.build_select_models(default_only=True),
            reads=True,
        ),
        Operation(
            "get_model_by_name",
            lambda c: ml_models.get_model_by_name(c, model_name=model.model_name),
            ml_models.build_select_models(model_name=model.model_name),
            reads=True,
        ),
    ]
    for operation in found:
        operation.capture(conn)
    return found


@dataclass
class Results:
    """Best seconds per call by (mode, operation, method); round trips by (operation, method)."""

    methods: list[str]
    operations: list[str]
    loops: dict[str, int]
    repeat: int
    latency_ms: float
    seconds: dict[tuple[str, str, str], float] = field(default_factory=dict)
    round_trips: dict[tuple[str, str], float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def ratio(self, mode: str, operation: str, method: str, baseline: str) -> float | None:
        """``method``'s time / ``baseline``'s, or None when either did not run."""
        mine = self.seconds.get((mode, operation, method))
        theirs = self.seconds.get((mode, operation, baseline))
        return None if mine is None or theirs is None else mine / theirs


def measure(
    engine: Engine,
    *,
    methods: list[str] | None = None,
    loops: int = 2000,
    latency_loops: int = 300,
    repeat: int = 3,
    latency_ms: float = 0.5,
    rt_calls: int = 20,
) -> Results:
    """Time every method on every operation, direct and through the proxy; count round trips."""
    chosen = {name: suite.methods[name] for name in methods or suite.methods}
    url = engine.url
    if url.host is None or url.port is None:
        raise SystemExit("bench_ops needs a TCP database URL (host and port) for its proxy")
    with engine.connect() as conn:
        ops = operations(conn)
    results = Results(
        list(chosen),
        [op.name for op in ops],
        {"direct": loops, "latency": latency_loops},
        repeat,
        latency_ms,
    )
    proxy_ctx = _proxy.running(url.host, url.port, latency_ms=latency_ms)
    with proxy_ctx as proxy, _engine_through(engine, proxy.port) as slow_engine:
        for mode, mode_engine, host, port in (
            ("direct", engine, url.host, url.port),
            ("latency", slow_engine, "127.0.0.1", proxy.port),
        ):
            print(
                f"{mode}: {results.loops[mode]:,} calls per round"
                + (f", {latency_ms} ms each way" if mode == "latency" else ""),
                flush=True,
            )
            with mode_engine.connect() as conn, _target(conn, host, port) as target:
                for operation in ops:
                    runs = _make_runs(target, operation, chosen, results.skipped)
                    _check_same_rows(target, operation, runs)
                    if mode == "latency":
                        for name, run in runs.items():
                            results.round_trips[(operation.name, name)] = _count_round_trips(
                                proxy, run, rt_calls
                            )
                            target.rollback()
                    best = _common.interleaved(
                        runs, repeat=repeat, loops=results.loops[mode], after=target.rollback
                    )
                    for name, seconds in best.items():
                        results.seconds[(mode, operation.name, name)] = seconds
                    print(f"  {operation.name} done", flush=True)
    results.methods = [name for name in results.methods if name not in results.skipped]
    return results


@contextlib.contextmanager
def _engine_through(engine: Engine, port: int) -> Iterator[Engine]:
    slow = sqlalchemy.create_engine(engine.url.set(host="127.0.0.1", port=port))
    try:
        yield slow
    finally:
        slow.dispose()


@contextlib.contextmanager
def _target(conn: Connection, host: str, port: int) -> Iterator[Target]:
    target = Target(conn, host, port)
    try:
        yield target
    finally:
        conn.rollback()
        for close in reversed(target.closers):
            close()


def _make_runs(
    target: Target,
    operation: Operation,
    chosen: dict[str, Callable[[Target, Operation], Run]],
    skipped: dict[str, str],
) -> dict[str, Run]:
    runs = {}
    for name, make in chosen.items():
        if name in skipped:
            continue
        try:
            runs[name] = make(target, operation)
        except Skip as why:
            skipped[name] = str(why)
            print(f"  skipped {name}: {why}", flush=True)
    return runs


def _check_same_rows(target: Target, operation: Operation, runs: dict[str, Run]) -> None:
    """Call each method once (warm-up); the drivers' rows must be equal and casdb's a record."""
    rows = {name: run() for name, run in runs.items()}
    target.rollback()
    if "casdb" in rows:
        assert rows["casdb"] is not None, operation.name
    bare = {name: [list(row) for row in found] for name, found in rows.items() if name != "casdb"}
    first_name, first = next(iter(bare.items()), ("", []))
    for name, found in bare.items():
        if operation.reads:
            assert found == first, f"{operation.name}: {name} disagrees with {first_name}"
        else:
            assert len(found) == len(first) == 1, f"{operation.name}: {name} returned {found}"


def _count_round_trips(proxy: _proxy.Proxy, run: Run, calls: int) -> float:
    # The warm-up begins the transaction and prepares what the method prepares (psycopg on
    # its 5th call of a statement, the others on the first).
    for _ in range(WARM_UP_CALLS):
        run()
    before = proxy.turns
    for _ in range(calls):
        run()
    return (proxy.turns - before) / calls


def print_tables(results: Results) -> None:
    """µs per call, round trips per call and the ratios, direct and through the proxy."""
    for name, why in results.skipped.items():
        print(f"note: {name} skipped: {why}")
    methods = results.methods
    header = "".join(f"{name:>17s}" for name in methods)
    for mode in MODES:
        how = (
            "direct (127.0.0.1)"
            if mode == "direct"
            else f"through the proxy, {results.latency_ms} ms each way"
        )
        print(
            f"\nmicroseconds per operation, {how} "
            f"(best of {results.repeat} rounds of {results.loops[mode]:,}):"
        )
        print(f"  {'operation':28s}{header}")
        for operation in results.operations:
            cells = "".join(
                f"{results.seconds[(mode, operation, name)] * 1e6:17.0f}" for name in methods
            )
            print(f"  {operation:28s}{cells}")
        print(f"\nratios, {how} (time / time; target: casdb / raw-execute <= {TARGET_RATIO}x):")
        baselines = [name for name in methods if name != "casdb"]
        print(f"  {'operation':28s}" + "".join(f"{'casdb / ' + name:>26s}" for name in baselines))
        for operation in results.operations:
            cells = ""
            for name in baselines:
                ratio = results.ratio(mode, operation, "casdb", name)
                cells += f"{'-' if ratio is None else f'{ratio:.2f}x':>26s}"
            print(f"  {operation:28s}{cells}")
    warm = WARM_UP_CALLS
    print(f"\nround trips per operation (counted by the proxy after {warm} warm-up calls):")
    print(f"  {'operation':28s}{header}")
    for operation in results.operations:
        cells = "".join(f"{results.round_trips[(operation, name)]:17.2f}" for name in methods)
        print(f"  {operation:28s}{cells}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """bench_ops' own options (run_all takes them too)."""
    parser.add_argument("--loops", type=int, default=2000, help="calls per method per round")
    parser.add_argument(
        "--latency-loops", type=int, default=300, help="calls per round through the proxy"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.5, help="delay the proxy adds each way"
    )
    parser.add_argument(
        "--rt-calls", type=int, default=20, help="calls over which round trips are counted"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    suite.add_arguments(parser)
    add_arguments(parser)
    args = parser.parse_args()
    methods = list(suite.chosen(args))
    print(f"best of {args.repeat}; cpus: {os.cpu_count()}", flush=True)
    with _common.database(args.url, keep_cells=True) as engine:
        results = measure(
            engine,
            methods=methods,
            loops=args.loops,
            latency_loops=args.latency_loops,
            repeat=args.repeat,
            latency_ms=args.latency_ms,
            rt_calls=args.rt_calls,
        )
    print_tables(results)


if __name__ == "__main__":
    main()
