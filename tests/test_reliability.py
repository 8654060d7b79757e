"""Reliability: timeouts end in casdb errors, engines survive restarts, secrets stay hidden,
and concurrent workers keep the users/activity/quota data consistent."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable

import pytest
import sqlalchemy
from sqlalchemy import URL, Engine, select, text

import casdb
from casdb import AlreadyExists, DatabaseError
from casdb.engine import config_for_url
from casdb.local import temporary_server
from casdb.queries import activity, keys, quotas, users
from casdb.tables import users_user
from tests.test_quotas import reference_this_week


@pytest.fixture
def committed_user(engine: Engine) -> casdb.queries.users.User:  # type: ignore[name-defined]
    with engine.begin() as conn:
        user = users.create_user(conn, email=f"{uuid.uuid4()}@cas.org", username="rel")
    return user


@pytest.mark.parametrize("setting", ["lock_timeout_ms", "statement_timeout_ms"])
def test_a_long_lock_wait_ends_in_a_casdb_error(
    engine: Engine, committed_user: users.User, setting: str
) -> None:
    limited = casdb.create_engine(config_for_url(engine.url, **{setting: 300}))
    try:
        with engine.connect() as holder, limited.connect() as waiter:
            holder.begin()
            holder.execute(
                select(users_user.c.id)
                .where(users_user.c.id == committed_user.id)
                .with_for_update()
            )
            started = dt.datetime.now()
            with pytest.raises(DatabaseError) as raised:
                users.set_admin(waiter, user_id=committed_user.id, is_admin=True)
            assert dt.datetime.now() - started < dt.timedelta(seconds=10)
            assert "timeout" in str(raised.value) or "canceling" in str(raised.value)
            holder.rollback()
    finally:
        limited.dispose()


def test_engine_recovers_after_a_server_restart() -> None:
    with temporary_server() as server:
        engine = casdb.create_engine(config_for_url(server.url(), pool_size=2))
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar_one() == 1
            server.stop()
            with pytest.raises(sqlalchemy.exc.DBAPIError), engine.connect():
                pass
            assert server.start() == engine.url  # same port: the URL stays valid
            # Pooled connections died with the old server; pre-ping replaces them.
            for _ in range(3):
                with engine.connect() as conn:
                    assert conn.execute(text("SELECT 2")).scalar_one() == 2
        finally:
            engine.dispose()


def test_secrets_never_appear_in_logs_errors_or_reprs(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    secret_hash = f"$argon2id$secret-{uuid.uuid4()}"
    password = f"pw-{uuid.uuid4()}"
    echoing = casdb.create_engine(config_for_url(engine.url), echo=True)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    texts: list[str] = []
    try:
        with echoing.connect() as conn:
            conn.begin()
            user = users.create_user(conn, email=f"{uuid.uuid4()}@cas.org", username="s")
            key = keys.create_user_key(conn, user_id=user.id, key_hash=secret_hash)
            auth = keys.get_key_for_authentication(conn, key_locator=key.key_locator)
            texts += [repr(key), repr(auth), str(auth)]
            with pytest.raises(AlreadyExists) as raised:
                keys.create_user_key(
                    conn, user_id=user.id, key_hash=secret_hash, key_locator=key.key_locator
                )
            texts.append(str(raised.value))
            conn.rollback()
    finally:
        echoing.dispose()
    config = casdb.config_from_env(
        {
            "DB_HOST": "127.0.0.1",
            "DB_PORT": "1",
            "DB_USER": "u",
            "DB_PASSWORD": password,
            "DB_NAME": "d",
        }
    )
    assert config is not None
    texts += [repr(config), str(config)]
    broken = casdb.create_engine(config)
    with pytest.raises(sqlalchemy.exc.DBAPIError) as failed:
        broken.connect()
    texts.append(str(failed.value))
    broken.dispose()
    texts.append(caplog.text)
    assert "INSERT INTO users_userkey" in caplog.text  # the log did capture the statements
    for captured in texts:
        assert secret_hash not in captured
        assert password not in captured


def _threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    return errors


def test_concurrent_activity_and_quota_reads(engine: Engine, committed_user: users.User) -> None:
    signup = committed_user.created_at
    now = signup + dt.timedelta(days=2)
    logged: list[tuple[str | None, int, casdb.UserActivityEvent, dt.datetime]] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(25):
            event = list(casdb.UserActivityEvent)[(n + i) % 3]
            finished = signup + dt.timedelta(hours=1 + i)
            with engine.begin() as conn:
                activity.log_user_activity(
                    conn,
                    user_id=committed_user.id,
                    model_name="m",
                    method="annotate",
                    cell_count=n * 100 + i,
                    event=event,
                    request_id=f"r{n}-{i % 5}",
                    finished_time=finished,
                )
            with lock:
                logged.append((f"r{n}-{i % 5}", n * 100 + i, event, finished))
            with engine.connect() as conn:
                quota = quotas.get_user_quota(conn, user_id=committed_user.id, now=now)
                assert 0 <= quota.remaining_weekly_quota <= quota.weekly_quota

    assert _threads(8, work) == []
    with engine.connect() as conn:
        assert len(activity.list_user_activity(conn, user_id=committed_user.id)) == 200
        assert quotas.cells_processed_this_week(conn, user_id=committed_user.id, now=now) == (
            reference_this_week(logged, signup, now)
        )


def test_concurrent_users_with_colliding_emails(engine: Engine) -> None:
    emails = [f"{uuid.uuid4()}@cas.org" for _ in range(10)]
    created: list[int] = []
    collisions: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for email in emails:
            try:
                with engine.begin() as conn:
                    user = users.create_user(conn, email=email, username=f"w{n}")
                with lock:
                    created.append(user.id)
            except AlreadyExists as error:
                with lock:
                    collisions.append(error.field)

    assert _threads(8, work) == []
    assert len(created) == len(emails)
    assert collisions == ["email"] * (8 * len(emails) - len(emails))
    with engine.connect() as conn:
        stored = (
            conn.execute(select(users_user.c.email).where(users_user.c.email.in_(emails)))
            .scalars()
            .all()
        )
    assert sorted(stored) == sorted(emails)


def test_connection_url_of_the_test_server_is_pg8000(server_url: URL) -> None:
    assert server_url.drivername == "postgresql+pg8000"
