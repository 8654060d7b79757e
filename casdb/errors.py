"""The exceptions casdb raises; every one derives from :class:`CasdbError`."""

from __future__ import annotations


class CasdbError(Exception):
    """Base class of every error casdb raises on purpose."""


class ConfigurationError(CasdbError):
    """The environment or the arguments do not describe a usable database."""


class InvalidInput(CasdbError):
    """An argument is not acceptable; raised before any SQL runs where it can be checked."""


class NotFound(CasdbError):
    """The row an operation needs does not exist."""


class AlreadyExists(CasdbError):
    """A unique constraint refused the write; ``field`` names the column that collided."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class DatabaseError(CasdbError):
    """The database failed the operation (connection lost, timeout, server error)."""
