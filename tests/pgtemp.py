"""A throwaway PostgreSQL server for fault tests: start, stop, start again.

Uses the server binaries shipped in the `pgserver` package, so it works on a
machine without a system PostgreSQL. As root, the server runs as the
unprivileged `pgserver` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from pgserver._commands import POSTGRES_BIN_PATH as BIN


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TemporaryPostgres:
    """A server of its own; with ``standby_of``, a streaming replica of that
    (running) server, made by pg_basebackup -R like bin/dev's shard b replica;
    with ``wal_level``, that WAL level (``"logical"`` for online move sources)."""

    def __init__(self, *, standby_of: TemporaryPostgres | None = None, wal_level: str | None = None) -> None:
        self.user = None
        self.root = Path(tempfile.mkdtemp(prefix="pgtemp-"))
        self.data = self.root / "data"
        self.port = _free_port()
        if os.geteuid() == 0:
            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            self.user = "pgserver"
            ensure_user_exists(self.user)
            ensure_prefix_permissions(BIN)
            ensure_folder_permissions(BIN, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
            ensure_folder_permissions(BIN.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            import pwd

            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        if standby_of is None:
            self._run(BIN / "initdb", "-D", self.data, "--auth=trust", "-U", "postgres", "--encoding=utf8")
        else:
            # The copy carries the primary's settings; the lines below override its port.
            self._run(BIN / "pg_basebackup", "-h", "127.0.0.1", "-p", standby_of.port, "-U", "postgres",
                      "-D", self.data, "-R", "-X", "stream", "--checkpoint=fast")
        with open(self.data / "postgresql.auto.conf", "a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                       "fsync = off\nfull_page_writes = off\n")
            if wal_level:  # "logical": a source for online tenant moves
                conf.write(f"wal_level = {wal_level}\n")

    def _run(self, *args) -> None:
        subprocess.run([str(a) for a in args], check=True, user=self.user, capture_output=True, timeout=120)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._run(BIN / "pg_ctl", "-D", self.data, "-l", self.data / "server.log", "-w", "start")
        # This process presumes a server that refused it a moment ago down for a
        # few seconds (apps.tenancy.replicas); this one is up again now.
        from apps.tenancy import replicas

        replicas.forget()

    def stop(self) -> None:
        self._run(BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def destroy(self) -> None:
        if self.answers():
            try:
                self.stop()
            except subprocess.CalledProcessError:
                pass
        deadline = time.monotonic() + 10
        while self.answers() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)
