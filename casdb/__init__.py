"""casdb: the explicit-SQL database layer of the Cell Annotation Service."""

from casdb.config import DatabaseConfig, config_for_url, config_from_env
from casdb.engine import create_engine, create_engines
from casdb.errors import (
    AlreadyExists,
    AuthenticationError,
    CasdbError,
    ConfigurationError,
    DatabaseError,
    InvalidInput,
    NotFound,
)
from casdb.replicas import ReplicaLagTimeout, wait_for_replica
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
    "ReplicaLagTimeout",
    "UserActivityEvent",
    "config_for_url",
    "config_from_env",
    "create_engine",
    "create_engines",
    "wait_for_replica",
]
