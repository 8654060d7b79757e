"""API keys: the hash is stored, never returned except by get_key_for_authentication."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any, Final

import attrs
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    BindParameter,
    Connection,
    Insert,
    Row,
    Select,
    Update,
    bindparam,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from casdb._checks import check_int, check_optional_time, check_text, row_exists, values_where
from casdb.errors import AlreadyExists, AuthenticationError, InvalidInput, NotFound
from casdb.queries._rows import (
    Prepared,
    fetch_all,
    fetch_one,
    fetch_optional,
    fetch_scalar,
    record_columns,
    to_record,
)
from casdb.queries.users import User
from casdb.tables import users_user, users_userkey

__all__ = [
    "IssuedToken",
    "KeyForAuthentication",
    "MAX_KEY_HASH_LENGTH",
    "UserKey",
    "authenticate_token",
    "build_authenticate_token",
    "build_create_user_key",
    "build_deactivate_user_key",
    "build_key_for_authentication",
    "build_list_user_keys",
    "create_user_key",
    "deactivate_user_key",
    "get_key_for_authentication",
    "issue_user_token",
    "list_user_keys",
]

MAX_KEY_HASH_LENGTH: Final = 4096


@attrs.frozen
class UserKey:
    """A user's API key, without its hash; times are aware UTC."""

    id: int
    key_locator: uuid.UUID
    user_id: int
    created_date: dt.datetime
    active: bool
    expires: dt.datetime


@attrs.frozen
class KeyForAuthentication:
    """A key with its hash and the owner's active flag. ``repr`` never shows the hash (and
    the hash itself is a casdb.tables.Secret, a str whose repr hides it)."""

    key: UserKey
    key_hash: str = attrs.field(repr=False)
    user_active: bool


_KEY_COLUMNS = record_columns(users_userkey, UserKey)


def key_for_authentication_from_row(row: Row[Any]) -> KeyForAuthentication:
    """A row of build_key_for_authentication as a record."""
    key = to_record(UserKey, row)
    return KeyForAuthentication(key=key, key_hash=row.key_hash, user_active=row.user_active)


def _locator(value: object) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidInput("key_locator must be a UUID")


def build_create_user_key(values: dict[str, Any]) -> Insert:
    """INSERT a key (expires left out: the server's now + 180 days), returning it sans hash.

    An unknown user or a locator in use inserts nothing and returns no row, so the caller's
    transaction stays usable.
    """
    user_exists = row_exists(users_user, "id", values["user_id"])
    return (
        pg_insert(users_userkey)
        .from_select(list(values), values_where(users_userkey, values, user_exists))
        .on_conflict_do_nothing()
        .returning(*_KEY_COLUMNS)
    )


def build_key_for_authentication(key_locator: uuid.UUID | BindParameter[Any]) -> Select[Any]:
    """SELECT a key, its hash and its owner's active flag in one query."""
    return (
        select(*_KEY_COLUMNS, users_userkey.c.key_hash, users_user.c.active.label("user_active"))
        .join(users_user, users_user.c.id == users_userkey.c.user_id)
        .where(users_userkey.c.key_locator == key_locator)
    )


def _prepared_key_for_authentication() -> Select[Any]:
    return build_key_for_authentication(bindparam("key_locator"))


def build_deactivate_user_key(key_locator: uuid.UUID) -> Update:
    """UPDATE a key to inactive, returning it sans hash."""
    return (
        update(users_userkey)
        .where(users_userkey.c.key_locator == key_locator)
        .values(active=False)
        .returning(*_KEY_COLUMNS)
    )


def build_list_user_keys(user_id: int) -> Select[Any]:
    """SELECT one user's keys sans hash, ordered by id."""
    return (
        select(*_KEY_COLUMNS).where(users_userkey.c.user_id == user_id).order_by(users_userkey.c.id)
    )


def create_user_key(
    connection: Connection,
    *,
    user_id: int,
    key_hash: str,
    expires: dt.datetime | None = None,
    key_locator: uuid.UUID | str | None = None,
) -> UserKey:
    """Store a new API key for a user; ``expires`` defaults to now + 180 days, the locator to
    a random UUID. Returns the UserKey (without the hash).

    Raises InvalidInput for a bad argument, NotFound for an unknown user,
    AlreadyExists(field="key_locator") for a locator in use.
    """
    values: dict[str, Any] = {
        "user_id": check_int("user_id", user_id),
        "key_hash": check_text("key_hash", key_hash, max_length=MAX_KEY_HASH_LENGTH),
        "key_locator": uuid.uuid4() if key_locator is None else _locator(key_locator),
    }
    if expires is not None:
        values["expires"] = check_optional_time("expires", expires)
    key = fetch_optional(connection, build_create_user_key(values), UserKey)
    if key is not None:
        return key
    if not fetch_scalar(connection, select(row_exists(users_user, "id", values["user_id"]))):
        raise NotFound(f"no user with id {values['user_id']}")
    raise AlreadyExists("a key with this locator already exists", field="key_locator")


def get_key_for_authentication(
    connection: Connection, *, key_locator: uuid.UUID | str
) -> KeyForAuthentication:
    """Return the key with ``key_locator``, its hash and whether its user is active.

    Raises NotFound for an unknown locator, InvalidInput for one that is not a UUID.
    """
    statement = Prepared(_prepared_key_for_authentication, {"key_locator": _locator(key_locator)})
    return fetch_one(
        connection, statement, key_for_authentication_from_row, missing="no key with this locator"
    )


def deactivate_user_key(connection: Connection, *, key_locator: uuid.UUID | str) -> UserKey:
    """Mark a key inactive; return it. Raises NotFound for an unknown locator."""
    statement = build_deactivate_user_key(_locator(key_locator))
    return fetch_one(connection, statement, UserKey, missing="no key with this locator")


def list_user_keys(connection: Connection, *, user_id: int) -> list[UserKey]:
    """Return the user's keys (without hashes), ordered by id; empty for an unknown user."""
    user_id = check_int("user_id", user_id)
    return fetch_all(connection, build_list_user_keys(user_id), UserKey)


# --- API tokens: ``<key_locator>.<secret>``, the CAS API's opaque format -----------------

_TOKEN_PATTERN: Final = re.compile(
    r"([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})\."
    r"([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})"
)


@attrs.frozen
class IssuedToken:
    """A new key and its token ``<key_locator>.<secret>``: shown once, never stored.

    ``repr`` never shows the token.
    """

    key: UserKey
    token: str = attrs.field(repr=False)


def build_authenticate_token(key_locator: uuid.UUID) -> Select[Any]:
    """SELECT the key's owner (every users_user column), the key's flags and hash, in one query."""
    return (
        select(
            *record_columns(users_user, User),
            users_userkey.c.active.label("key_active"),
            users_userkey.c.expires.label("key_expires"),
            users_userkey.c.key_hash,
        )
        .join(users_user, users_user.c.id == users_userkey.c.user_id)
        .where(users_userkey.c.key_locator == key_locator)
    )


def issue_user_token(
    connection: Connection,
    *,
    user_id: int,
    expires: dt.datetime | None = None,
    hasher: PasswordHasher | None = None,
) -> IssuedToken:
    """Issue an API token for a user: a new key whose secret only the caller ever sees.

    The token is ``<key_locator>.<secret>``, two lowercase hyphenated uuid4 strings; only the
    Argon2id hash of the secret is stored (argon2-cffi's PasswordHasher defaults unless
    ``hasher`` is given, so ``PasswordHasher().verify(key_hash, secret)`` accepts it).
    ``expires`` (aware) defaults to now + 180 days. Returns the IssuedToken.

    Raises InvalidInput for a bad argument, NotFound for an unknown user, DatabaseError.
    """
    check_int("user_id", user_id)
    check_optional_time("expires", expires)  # refuse a naive time before hashing
    locator, secret = uuid.uuid4(), str(uuid.uuid4())
    key_hash = (hasher or PasswordHasher()).hash(secret)
    key = create_user_key(
        connection, user_id=user_id, key_hash=key_hash, expires=expires, key_locator=locator
    )
    return IssuedToken(key=key, token=f"{key.key_locator}.{secret}")


def authenticate_token(
    connection: Connection,
    *,
    token: str,
    now: dt.datetime | None = None,
    hasher: PasswordHasher | None = None,
) -> User:
    """Return the active user that ``token`` (``<key_locator>.<secret>``) belongs to.

    One query reads the key and its owner; the key's active flag, its expiry (against
    ``now``, default the current time) and the user's active flag are checked before the
    costly Argon2 verification. Raises AuthenticationError (``reason`` says why; the message
    never holds the secret), InvalidInput for a naive ``now``, DatabaseError.
    """
    moment = dt.datetime.now(dt.UTC) if now is None else now
    check_optional_time("now", moment)
    match = _TOKEN_PATTERN.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        raise AuthenticationError(
            "the token is not <key_locator>.<secret> (two uuid4 strings)", reason="malformed"
        )
    locator, secret = uuid.UUID(match.group(1)), match.group(2)
    row = fetch_optional(connection, build_authenticate_token(locator), lambda row: row)
    if row is None:
        raise AuthenticationError("no key with this locator", reason="unknown_key")
    if not row.key_active:
        raise AuthenticationError("the key has been deactivated", reason="inactive_key")
    if row.key_expires <= moment:
        raise AuthenticationError("the key has expired", reason="expired_key")
    if not row.active:
        raise AuthenticationError("the key's user is deactivated", reason="inactive_user")
    try:
        (hasher or PasswordHasher()).verify(row.key_hash, secret)
    except (VerificationError, InvalidHashError):
        raise AuthenticationError(
            "the token's secret does not match", reason="wrong_secret"
        ) from None
    return to_record(User, row)
