"""A private PgBouncer (Debian's package) for tests and benchmarks.

Runs the project's configuration (platform/pgbouncer/pgbouncer.ini) with only
what a loopback run must change: the port, the backend server, trust
authentication and the pool size under test.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg

from tests.support import ROOT, free_port

CONFIG = ROOT / "platform" / "pgbouncer" / "pgbouncer.ini"
USER = "postgres"


def installed() -> bool:
    return shutil.which("pgbouncer") is not None


@contextmanager
def database_aliases(url: str, *names: str):
    """Extra database aliases for ``url`` (``?pooling=transaction`` or not),
    each a client of its own; yields their connections."""
    from django.conf import settings
    from django.db import connections

    from config.settings.base import database_config

    for name in names:
        settings.DATABASES[name] = database_config(url, connect_timeout=3)
    connections.configure_settings(settings.DATABASES)
    try:
        yield [connections[name] for name in names]
    finally:
        for name in names:
            connections[name].close()
            del connections[name]
            del settings.DATABASES[name]


class PgBouncer:
    """``with PgBouncer(host, port, pool_size=2) as bouncer: bouncer.url(db)``."""

    def __init__(self, host: str, port: int | str, *, pool_size: int, **settings: str | int) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.dir.chmod(0o755)  # read by the unprivileged user it runs as under root
        config = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"), strict=False)
        config.optionxform = str
        config.read(CONFIG)
        config.remove_section("databases")
        config["databases"] = {"*": f"host={host or '127.0.0.1'} port={port or 5432}"}
        config["pgbouncer"].update({
            "listen_addr": "127.0.0.1", "listen_port": str(self.port), "unix_socket_dir": "",
            "auth_type": "trust", "auth_file": str(self.dir / "userlist.txt"),
            "default_pool_size": str(pool_size), "min_pool_size": "0", "reserve_pool_size": "0",
            "max_db_connections": str(pool_size), "admin_users": USER, "stats_users": USER,
            "logfile": "", "pidfile": "",
            **{key: str(value) for key, value in settings.items()},
        })
        with open(self.dir / "pgbouncer.ini", "w") as handle:
            config.write(handle)
        (self.dir / "userlist.txt").write_text(f'"{USER}" ""\n')
        for path in self.dir.iterdir():
            path.chmod(0o644)
        self.log = open(self.dir / "pgbouncer.log", "w+b")
        self.process: subprocess.Popen | None = None

    def url(self, database: str, *, pooled: bool = True) -> str:
        return f"postgres://{USER}@127.0.0.1:{self.port}/{database}" + ("?pooling=transaction" if pooled else "")

    def log_text(self) -> str:
        return (self.dir / "pgbouncer.log").read_text(errors="replace")

    def admin(self, command: str) -> list[dict]:
        """A command on the admin console (SHOW POOLS, SHOW SERVERS, ...)."""
        with psycopg.connect(f"postgres://{USER}@127.0.0.1:{self.port}/pgbouncer", autocommit=True,
                             prepare_threshold=None, cursor_factory=psycopg.ClientCursor) as conn:
            cursor = conn.execute(command)
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def server_connections(self, database: str) -> int:
        return sum(1 for row in self.admin("SHOW SERVERS") if row["database"] == database)

    def __enter__(self) -> PgBouncer:
        # PgBouncer refuses to run as root; -u drops to an unprivileged user.
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(["pgbouncer", *user, str(self.dir / "pgbouncer.ini")],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log_text()[-2000:]}")
            try:
                self.admin("SHOW VERSION")
                return self
            except psycopg.OperationalError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"pgbouncer did not answer within 15 s: {self.log_text()[-2000:]}")

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
