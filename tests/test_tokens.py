"""API tokens: issue_user_token / authenticate_token, as the CAS API verifies them."""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Connection, event

from casdb.errors import AuthenticationError, InvalidInput, NotFound
from casdb.queries import keys, users

UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


def _user(conn: Connection, email: str = "tok@cas.org") -> users.User:
    return users.create_user(conn, email=email, username="Tok")


def test_token_format_and_stored_hash(conn: Connection, caplog: pytest.LogCaptureFixture) -> None:
    user = _user(conn)
    with caplog.at_level(logging.DEBUG):
        issued = keys.issue_user_token(conn, user_id=user.id)
    assert re.fullmatch(f"{UUID4}\\.{UUID4}", issued.token)
    locator, secret = issued.token.split(".")
    assert uuid.UUID(locator) == issued.key.key_locator
    stored = keys.get_key_for_authentication(conn, key_locator=locator).key_hash
    assert stored.startswith("$argon2id$") and secret not in stored
    assert PasswordHasher().verify(stored, secret)  # what the CAS API does
    assert issued.token not in repr(issued) and secret not in caplog.text
    expires = issued.key.expires - issued.key.created_date
    assert dt.timedelta(days=179, hours=23) < expires <= dt.timedelta(days=180, minutes=1)
    assert keys.authenticate_token(conn, token=issued.token) == users.get_user(
        conn, user_id=user.id
    )


def test_authenticate_checks_flags_and_expiry_before_the_hash(conn: Connection) -> None:
    user = _user(conn)
    issued = keys.issue_user_token(conn, user_id=user.id, expires=NOW + dt.timedelta(days=1))
    locator, secret = issued.token.split(".")
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(conn, "before_cursor_execute", count)
    try:
        assert keys.authenticate_token(conn, token=issued.token, now=NOW).id == user.id
    finally:
        event.remove(conn, "before_cursor_execute", count)
    assert len(statements) == 1  # one query: the key, its flags and its owner

    class Refusing(PasswordHasher):
        def verify(self, *args: object, **kwargs: object) -> bool:  # type: ignore[override]
            raise AssertionError("the hash was verified although a flag refuses the token")

    def reason(token: str, now: dt.datetime = NOW, hasher: PasswordHasher | None = None) -> str:
        with pytest.raises(AuthenticationError) as raised:
            keys.authenticate_token(conn, token=token, now=now, hasher=hasher)
        assert secret not in str(raised.value)
        return raised.value.reason

    assert reason(issued.token, now=NOW + dt.timedelta(days=2), hasher=Refusing()) == (
        "expired_key"
    )
    assert reason(f"{locator}.{uuid.uuid4()}") == "wrong_secret"
    assert reason(f"{uuid.uuid4()}.{secret}", hasher=Refusing()) == "unknown_key"
    for malformed in (
        "",
        "abc",
        locator,
        f"{locator}.{secret}.x",
        f"{locator.upper()}.{secret}",
        f"{locator}:{secret}",
    ):
        assert reason(malformed, hasher=Refusing()) == "malformed"
    users.set_user_active(conn, user_id=user.id, active=False)
    assert reason(issued.token, hasher=Refusing()) == "inactive_user"
    keys.deactivate_user_key(conn, key_locator=locator)
    assert reason(issued.token, hasher=Refusing()) == "inactive_key"


def test_issue_refuses_bad_input_and_unknown_users(conn: Connection) -> None:
    with pytest.raises(NotFound):
        keys.issue_user_token(conn, user_id=987654)
    with pytest.raises(InvalidInput):
        keys.issue_user_token(conn, user_id=_user(conn).id, expires=dt.datetime(2030, 1, 1))
    with pytest.raises(InvalidInput):
        keys.authenticate_token(conn, token="x", now=dt.datetime(2030, 1, 1))
