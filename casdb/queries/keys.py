"""API keys: the hash is stored, never returned except by get_key_for_authentication."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any, Final

import attrs
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Insert, Row, Select, Update, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from casdb._checks import (
    check_int,
    check_text,
    from_db_time,
    optional_to_db_time,
    row_exists,
    translated_errors,
    values_where,
)
from casdb.errors import AlreadyExists, AuthenticationError, InvalidInput, NotFound
from casdb.queries.users import User
from casdb.tables import users_user, users_userkey

LOCATOR_CONSTRAINT: Final = "uq_users_userkey_key_locator"
FOREIGN_KEYS: Final = {"fk_users_userkey_user_id_users_user": "no user with this id"}
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
    """A key with its hash and the owner's active flag. ``repr`` never shows the hash."""

    key: UserKey
    key_hash: str = attrs.field(repr=False)
    user_active: bool


_KEY_COLUMNS = [users_userkey.c[field.name] for field in attrs.fields(UserKey)]


def _key_from_row(row: Row[Any]) -> UserKey:
    return UserKey(
        id=row.id,
        key_locator=row.key_locator,
        user_id=row.user_id,
        created_date=from_db_time(row.created_date),
        active=row.active,
        expires=from_db_time(row.expires),
    )


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
        .on_conflict_do_nothing(constraint=LOCATOR_CONSTRAINT)
        .returning(*_KEY_COLUMNS)
    )


def build_key_for_authentication(key_locator: uuid.UUID) -> Select[Any]:
    """SELECT a key, its hash and its owner's active flag in one query."""
    return (
        select(*_KEY_COLUMNS, users_userkey.c.key_hash, users_user.c.active.label("user_active"))
        .join(users_user, users_user.c.id == users_userkey.c.user_id)
        .where(users_userkey.c.key_locator == key_locator)
    )


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
        values["expires"] = optional_to_db_time("expires", expires)
    with translated_errors(foreign_keys=FOREIGN_KEYS):
        row = connection.execute(build_create_user_key(values)).one_or_none()
        if row is None and not connection.execute(
            select(row_exists(users_user, "id", user_id))
        ).scalar_one():
            raise NotFound(f"no user with id {user_id}")
    if row is None:
        raise AlreadyExists("a key with this locator already exists", field="key_locator")
    return _key_from_row(row)


def get_key_for_authentication(
    connection: Connection, *, key_locator: uuid.UUID | str
) -> KeyForAuthentication:
    """Return the key with ``key_locator``, its hash and whether its user is active.

    Raises NotFound for an unknown locator, InvalidInput for one that is not a UUID.
    """
    statement = build_key_for_authentication(_locator(key_locator))
    with translated_errors():
        row = connection.execute(statement).one_or_none()
    if row is None:
        raise NotFound("no key with this locator")
    return KeyForAuthentication(
        key=_key_from_row(row), key_hash=row.key_hash, user_active=row.user_active
    )


def deactivate_user_key(connection: Connection, *, key_locator: uuid.UUID | str) -> UserKey:
    """Mark a key inactive; return it. Raises NotFound for an unknown locator."""
    statement = build_deactivate_user_key(_locator(key_locator))
    with translated_errors():
        row = connection.execute(statement).one_or_none()
    if row is None:
        raise NotFound("no key with this locator")
    return _key_from_row(row)


def list_user_keys(connection: Connection, *, user_id: int) -> list[UserKey]:
    """Return the user's keys (without hashes), ordered by id; empty for an unknown user."""
    check_int("user_id", user_id)
    with translated_errors():
        rows = connection.execute(build_list_user_keys(user_id)).all()
    return [_key_from_row(row) for row in rows]


# --- API tokens: ``<key_locator>.<secret>``, the CAS API's opaque format -----------------

_TOKEN_PATTERN: Final = re.compile(
    r"([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})\."
    r"([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})"
)
_TOKEN_USER_FIELDS: Final = tuple(field.name for field in attrs.fields(User))


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
            *[users_user.c[name] for name in _TOKEN_USER_FIELDS],
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
    if expires is not None:
        optional_to_db_time("expires", expires)  # refuse a naive time before hashing
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
    optional_to_db_time("now", moment)
    match = _TOKEN_PATTERN.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        raise AuthenticationError(
            "the token is not <key_locator>.<secret> (two uuid4 strings)", reason="malformed"
        )
    locator, secret = uuid.UUID(match.group(1)), match.group(2)
    with translated_errors():
        row = connection.execute(build_authenticate_token(locator)).one_or_none()
    if row is None:
        raise AuthenticationError("no key with this locator", reason="unknown_key")
    if not row.key_active:
        raise AuthenticationError("the key has been deactivated", reason="inactive_key")
    if from_db_time(row.key_expires) <= moment:
        raise AuthenticationError("the key has expired", reason="expired_key")
    if not row.active:
        raise AuthenticationError("the key's user is deactivated", reason="inactive_user")
    try:
        (hasher or PasswordHasher()).verify(row.key_hash, secret)
    except (VerificationError, InvalidHashError):
        raise AuthenticationError(
            "the token's secret does not match", reason="wrong_secret"
        ) from None
    values = {name: row._mapping[name] for name in _TOKEN_USER_FIELDS}
    return User(**values | {"created_at": from_db_time(values["created_at"])})
