"""A private PostgreSQL cluster (initdb into a temporary directory, ``postgres`` on a free port of
127.0.0.1, its unix socket in that directory), for tests that stop the database under a running
bridge, and ``psql`` against any server (the shared one on 5432 included).

PostgreSQL refuses to run as root. Run as root (as CI is), the cluster belongs to the ``postgres``
OS user the Debian package creates: its directory is chowned to it and ``initdb``, ``postgres``
run as that user (``subprocess``' ``user=``). Anyone else runs it as themselves.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

from harness.processes import (
    LOCALHOST,
    ServiceBinaryNotFound,
    ServiceStartError,
    _ManagedProcess,
    _recv_exactly,
)

__all__ = ["PostgresProcess", "find_postgres_bin", "pg_ping", "psql"]

_ENV_VAR = "POSTGRES_BIN_DIR"


def find_postgres_bin() -> Path | None:
    """The directory holding initdb and postgres: $POSTGRES_BIN_DIR, else the newest
    /usr/lib/postgresql/*/bin (Debian keeps them off PATH), else PATH."""
    override = os.environ.get(_ENV_VAR)
    if override:
        return Path(override) if (Path(override) / "initdb").exists() else None
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def pg_ping(host: str, port: int, timeout: float = 1.0, user: str = "postgres") -> bool:
    """True if a startup message gets AuthenticationOk (trust auth): the server accepts
    connections, as opposed to answering "the database system is starting up"."""
    params = f"user\0{user}\0database\0postgres\0\0".encode()
    startup = struct.pack("!ii", 8 + len(params), 196608) + params  # protocol 3.0
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(startup)
            reply = _recv_exactly(sock, 9, deadline=time.monotonic() + timeout)
            sock.sendall(b"X\0\0\0\4")  # Terminate
    except OSError:
        return False
    return reply == b"R\0\0\0\x08\0\0\0\0"


def psql(sql: str, *, port: int = 5432, host: str = LOCALHOST, dbname: str = "postgres") -> str:
    """Run ``sql`` as user postgres; return the unaligned, tuples-only output."""
    binary = shutil.which("psql") or str((find_postgres_bin() or Path("/usr/bin")) / "psql")
    done = subprocess.run(
        [binary, "-h", host, "-p", str(port), "-U", "postgres", "-d", dbname, "-v",
         "ON_ERROR_STOP=1", "-Atqc", sql],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"psql on {host}:{port}/{dbname} failed: {done.stderr.strip()}")
    return done.stdout.strip()


class PostgresProcess(_ManagedProcess):
    """A throwaway cluster: trust authentication for user ``postgres``, TCP on 127.0.0.1 only.

    ``stop()`` is PostgreSQL's fast shutdown (SIGINT, as ``pg_ctl stop -m fast``): open
    connections are cut, in-flight transactions rolled back. ``start()`` again on the same port
    is a database coming back after an outage, with everything committed before it.
    """

    name = "postgres"
    binary_name = "postgres"
    package = "postgresql"
    env_var = _ENV_VAR
    stop_signal = signal.SIGINT

    def __init__(self, port: int | None = None, settings: dict[str, str] | None = None) -> None:
        bindir = find_postgres_bin()
        if bindir is None:
            raise ServiceBinaryNotFound("initdb", self.package, _ENV_VAR)
        # Always a directory of our own in /tmp: a test's tmp_path sits under root-only
        # directories the postgres user could not enter.
        super().__init__(port, None, str(bindir / "postgres"))
        self.bindir = bindir
        self.settings = {"listen_addresses": LOCALHOST, **(settings or {})}
        if os.geteuid() == 0:
            self.run_as = "postgres"
            owner = pwd.getpwnam(self.run_as)
            os.chown(self.workdir, owner.pw_uid, owner.pw_gid)
        self.datadir = self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.console_path  # postgres logs to stderr, which goes there

    @property
    def url(self) -> str:
        """As Django projects take it from ``DATABASE_URL``."""
        return f"postgres://postgres@{self.host}:{self.port}/postgres"

    def _prepare(self) -> None:
        super()._prepare()
        if (self.datadir / "PG_VERSION").exists():
            return
        done = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
             "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, timeout=120, user=self.run_as,
        )  # fmt: skip
        if done.returncode != 0:
            raise ServiceStartError(f"initdb failed:\n{done.stdout}\n{done.stderr}")

    def _command(self) -> list[str]:
        command = [self.binary, "-D", str(self.datadir), "-p", str(self.port),
                   "-k", str(self.workdir)]  # fmt: skip
        for key, value in self.settings.items():
            command += ["-c", f"{key}={value}"]
        return command

    def ping(self, timeout: float = 1.0) -> bool:
        return pg_ping(self.host, self.port, timeout)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        return psql(sql, port=self.port, host=self.host, dbname=dbname)
