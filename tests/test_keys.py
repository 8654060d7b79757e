"""keys: create, authenticate, deactivate, list; the hash never shows in a repr."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import pytest
import sqlalchemy
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, func, select

from casdb import AlreadyExists, InvalidInput, NotFound
from casdb.queries import keys, users
from casdb.tables import users_userkey
from tests.conftest import rolled_back
from tests.strategies import aware_times, characters, statements_sent

hashes = st.text(characters, min_size=8, max_size=200).map(lambda s: "$argon2id$" + s)


@given(
    key_hash=hashes,
    expires=st.none() | aware_times,
    locator=st.none() | st.uuids(),
    user_active=st.booleans(),
)
def test_round_trip(
    engine: Engine,
    key_hash: str,
    expires: dt.datetime | None,
    locator: uuid.UUID | None,
    user_active: bool,
) -> None:
    with rolled_back(engine) as conn:
        user = users.create_user(conn, email="k@cas.org", username="K", active=user_active)
        key = keys.create_user_key(
            conn, user_id=user.id, key_hash=key_hash, expires=expires, key_locator=locator
        )
        if locator is not None:
            assert key.key_locator == locator
        if expires is not None:
            assert key.expires == expires
        else:
            assert key.expires - key.created_date == dt.timedelta(days=180)
        assert key.active is True and key.user_id == user.id
        auth = keys.get_key_for_authentication(conn, key_locator=key.key_locator)
        assert auth == keys.KeyForAuthentication(
            key=key, key_hash=key_hash, user_active=user_active
        )
        assert keys.list_user_keys(conn, user_id=user.id) == [key]
        # Secrets never show in a repr or str.
        for text in (
            repr(auth),
            str(auth),
            repr(key),
            repr(keys.list_user_keys(conn, user_id=user.id)),
        ):
            assert key_hash not in text
        off = keys.deactivate_user_key(conn, key_locator=str(key.key_locator))
        assert off.active is False
        again = keys.get_key_for_authentication(conn, key_locator=key.key_locator)
        assert again.key.active is False


def test_keys_listed_by_id_and_per_user(conn: Connection) -> None:
    a = users.create_user(conn, email="a@cas.org", username="A")
    b = users.create_user(conn, email="b@cas.org", username="B")
    made = [
        keys.create_user_key(conn, user_id=u.id, key_hash=f"h{n}")
        for n, u in enumerate([a, b, a, a])
    ]
    assert keys.list_user_keys(conn, user_id=a.id) == [made[0], made[2], made[3]]
    assert keys.list_user_keys(conn, user_id=b.id) == [made[1]]
    assert keys.list_user_keys(conn, user_id=999999) == []


def test_duplicate_locator(conn: Connection) -> None:
    user = users.create_user(conn, email="d@cas.org", username="D")
    locator = uuid.uuid4()
    keys.create_user_key(conn, user_id=user.id, key_hash="h1", key_locator=locator)
    with pytest.raises(AlreadyExists) as raised:
        keys.create_user_key(conn, user_id=user.id, key_hash="h2", key_locator=locator)
    assert raised.value.field == "key_locator"
    assert keys.get_key_for_authentication(conn, key_locator=locator).key_hash == "h1"
    assert conn.execute(select(func.count()).select_from(users_userkey)).scalar_one() == 1


def test_unknown_locator_and_user(conn: Connection) -> None:
    with pytest.raises(NotFound):
        keys.get_key_for_authentication(conn, key_locator=uuid.uuid4())
    with pytest.raises(NotFound):
        keys.deactivate_user_key(conn, key_locator=uuid.uuid4())
    with pytest.raises(NotFound):
        keys.create_user_key(conn, user_id=424242, key_hash="h")
    # The caller's transaction is still usable, and nothing was written.
    assert keys.list_user_keys(conn, user_id=424242) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"user_id": 1, "key_hash": ""},
        {"user_id": 1, "key_hash": "a\x00b"},
        {"user_id": 1, "key_hash": "x" * 5000},
        {"user_id": 1, "key_hash": "h", "key_locator": "not-a-uuid"},
        {"user_id": 1, "key_hash": "h", "expires": dt.datetime(2030, 1, 1)},
        {"user_id": "1", "key_hash": "h"},
    ],
)
def test_bad_input_before_sql(conn: Connection, kwargs: dict[str, object]) -> None:
    with statements_sent(conn) as sent, pytest.raises(InvalidInput) as raised:
        keys.create_user_key(conn, **kwargs)  # type: ignore[arg-type]
    assert sent == []
    assert "x" * 100 not in str(raised.value) and "a\x00b" not in str(raised.value)


def test_the_hash_never_appears_in_sqlalchemy_debug_logs(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """echo="debug" logs every bound parameter and every result row; a plain engine (no
    hide_parameters) shows them all. The hash is a Secret (its repr hides it) both ways."""
    secret = f"$argon2id$v=19$m=65536,t=3,p=4$secret-{uuid.uuid4()}"
    echoing = sqlalchemy.create_engine(engine.url, echo="debug")
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    try:
        with echoing.connect() as conn:
            conn.begin()
            user = users.create_user(conn, email=f"{uuid.uuid4()}@cas.org", username="s")
            key = keys.create_user_key(conn, user_id=user.id, key_hash=secret)
            auth = keys.get_key_for_authentication(conn, key_locator=key.key_locator)
            assert auth.key_hash == secret  # the value itself is intact
            texts += [
                repr(auth),
                repr(auth.key_hash),
                repr(keys.list_user_keys(conn, user_id=user.id)),
            ]
            with pytest.raises(AlreadyExists) as taken:
                keys.create_user_key(
                    conn, user_id=user.id, key_hash=secret, key_locator=key.key_locator
                )
            texts.append(str(taken.value))
            # plain Core on the table: its rows are logged too
            conn.execute(select(users_userkey)).all()
            conn.rollback()
    finally:
        echoing.dispose()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "INSERT INTO users_userkey" in logged and "Row (" in logged  # it did log both
    for captured in [*texts, logged, caplog.text]:
        assert secret not in captured
        assert secret[10:] not in captured
