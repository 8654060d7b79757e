"""casdb: the explicit-SQL database layer of the Cell Annotation Service."""

from casdb.config import DatabaseConfig, config_for_url, config_from_env
from casdb.engine import create_engine
from casdb.errors import (
    AlreadyExists,
    AuthenticationError,
    CasdbError,
    ConfigurationError,
    DatabaseError,
    InvalidInput,
    NotFound,
)
from casdb.tables import UserActivityEvent

__all__ = [
    "AlreadyExists",
    "AuthenticationError",
    "CasdbError",
    "ConfigurationError",
    "DatabaseConfig",
    "DatabaseError",
    "InvalidInput",
    "NotFound",
    "UserActivityEvent",
    "config_for_url",
    "config_from_env",
    "create_engine",
]
