"""The exceptions casdb raises; every one derives from :class:`CasdbError`."""

from __future__ import annotations


class CasdbError(Exception):
    """Base class of every error casdb raises on purpose."""


class ConfigurationError(CasdbError):
    """The environment or the arguments do not describe a usable database."""


class InvalidInput(CasdbError):
    """An argument is not acceptable; raised before any SQL runs where it can be checked.

    For a bad row of a bulk operation, ``row`` is its index in the input and ``field`` the
    column at fault (when known); ``detail`` is the message without the row prefix.
    """

    def __init__(self, detail: str, *, row: int | None = None, field: str | None = None) -> None:
        super().__init__(detail if row is None else f"row {row}: {detail}")
        self.detail = detail
        self.row = row
        self.field = field


class NotFound(CasdbError):
    """The row an operation needs does not exist."""


class AlreadyExists(CasdbError):
    """A unique constraint refused the write; ``field`` names the column that collided."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class DatabaseError(CasdbError):
    """The database or the network failed the operation (server error, timeout, lost link).

    ``sqlstate`` is the server's SQLSTATE when it sent one; ``retryable`` says whether running
    the whole transaction again may succeed (a serialization failure, a deadlock, a conflict
    with recovery on a standby, a lost connection). The message carries the server's text,
    never the statement's bound parameters.
    """

    def __init__(
        self, message: str, *, sqlstate: str | None = None, retryable: bool = False
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.retryable = retryable


class AuthenticationError(CasdbError):
    """An API token was refused. ``reason`` says why, for logs; never shows the secret.

    Reasons: ``malformed``, ``unknown_key``, ``inactive_key``, ``expired_key``,
    ``inactive_user``, ``wrong_secret``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
