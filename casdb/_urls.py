"""One URL normaliser for every URL casdb is given: the environment, the CLI's ``--url``,
:func:`casdb.config.config_for_url`."""

from __future__ import annotations

from urllib.parse import unquote

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from casdb.errors import ConfigurationError

DRIVER = "postgresql+pg8000"

# URL query parameters: the ones pg8000 takes as plain strings pass through; the ones casdb
# sets itself are refused with the variable to use instead; anything else is unknown.
_PASSED_QUERY = ("application_name", "unix_sock")
_MANAGED_QUERY = {
    "timeout": "DB_CONNECT_TIMEOUT_S (connecting) and DB_SOCKET_TIMEOUT_S (each wait for "
    "the server)",
    "connect_timeout": "DB_CONNECT_TIMEOUT_S",
    "tcp_keepalive": "nothing: casdb always turns TCP keepalives on",
    "ssl_context": "DB_SSL and DB_SSL_ROOT_CERT",
    "ssl": "DB_SSL and DB_SSL_ROOT_CERT",
    "sslmode": "DB_SSL and DB_SSL_ROOT_CERT",
    "sslrootcert": "DB_SSL_ROOT_CERT",
    "startup_params": "DB_STATEMENT_TIMEOUT_MS and DB_LOCK_TIMEOUT_MS",
    "options": "DB_STATEMENT_TIMEOUT_MS and DB_LOCK_TIMEOUT_MS",
}


def _url_of_text(raw: str) -> URL:
    """Parse a URL as a browser would: the LAST ``@`` ends the credentials.

    make_url stops the password at the first ``@``, so an unencoded ``@`` in a password would
    send the rest of the password to DNS as part of the host name.
    """
    scheme, separator, rest = raw.partition("://")
    if not separator or not scheme:
        raise ValueError("no scheme")
    credentials, at, location = rest.rpartition("@")
    url = make_url(f"{scheme}://{location}")
    if at:
        user, colon, password = credentials.partition(":")
        url = url.set(username=unquote(user) or None, password=unquote(password) if colon else None)
    return url


def normalise_url(raw: str | URL, *, source: str) -> URL:
    """Return ``raw`` as a pg8000 SQLAlchemy URL that pg8000 can connect with.

    ``postgresql://`` and ``postgres://`` become ``postgresql+pg8000://``. Of the query
    parameters only ``application_name`` and ``unix_sock`` (strings for pg8000) are kept.
    ``source`` names where the URL came from (``SQLALCHEMY_DATABASE_URI``, ``--url``) in
    messages, which never quote the URL (it may hold a password).

    Raises ConfigurationError for an unparsable URL, another driver, a bad port, or a query
    parameter casdb does not pass on (naming the variable that sets it instead).
    """
    invalid = ConfigurationError(
        f"{source} is not a valid URL: expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    )
    try:
        url = make_url(raw) if isinstance(raw, URL) else _url_of_text(raw)
    except (ArgumentError, ValueError):
        raise invalid from None  # their messages quote the URL, password included
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername=DRIVER)
    if url.drivername != DRIVER:
        raise ConfigurationError(
            f"{source} must be a PostgreSQL URL (postgresql:// or {DRIVER}://: casdb runs on "
            f"pg8000), got {url.drivername!r}"
        )
    if url.port is not None and not 0 < url.port < 65536:
        raise ConfigurationError(f"{source}: the port must be 1 to 65535, got {url.port}")
    for name, value in url.query.items():
        if name in _MANAGED_QUERY:
            raise ConfigurationError(
                f"{source}: the query parameter {name!r} is not passed to pg8000 because casdb "
                f"sets it itself; use {_MANAGED_QUERY[name]} instead"
            )
        if name not in _PASSED_QUERY:
            raise ConfigurationError(
                f"{source}: unknown query parameter {name!r} (casdb passes only "
                f"{' and '.join(_PASSED_QUERY)} to pg8000)"
            )
        if not isinstance(value, str):
            raise ConfigurationError(f"{source}: the query parameter {name!r} is given twice")
    return url
