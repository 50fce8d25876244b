"""Helpers for tests that start real processes against the test database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import requests

ROOT = Path(__file__).resolve().parent.parent


def test_database_url(alias: str = "default") -> str:
    """A URL for the test database of ``alias`` (test_<name>)."""
    from django.db import connections

    s = connections[alias].settings_dict
    host = s.get("HOST") or ""
    host_part = quote(host, safe="") if host.startswith("/") else host
    port = f":{s['PORT']}" if s.get("PORT") else ""
    auth = s.get("USER") or ""
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"], safe="")
    return f"postgres://{auth}@{host_part}{port}/{s['NAME']}"


def process_env(**overrides: str) -> dict[str, str]:
    """The environment of a process that must use this run's test databases."""
    from django.conf import settings

    prefix, suffix = settings.SHARD_ALIAS_PREFIX, settings.REPLICA_ALIAS_SUFFIX
    shards = [a for a in settings.DATABASES if a.startswith(prefix) and not a.endswith(suffix)]
    replicas = [a for a in settings.DATABASES if a.startswith(prefix) and a.endswith(suffix)]
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=test_database_url(),
        SHARD_URLS=",".join(f"{a.removeprefix(prefix)}={test_database_url(a)}" for a in shards),
        SHARD_REPLICA_URLS=",".join(
            f"{a.removeprefix(prefix).removesuffix(suffix)}={test_database_url(a)}" for a in replicas
        ),
    )
    env.update(overrides)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        capture_output=True,
        text=True,
        env=process_env(**env),
        cwd=ROOT,
        timeout=timeout,
    )


class Gunicorn:
    """A real gunicorn master with N workers on a free loopback port."""

    def __init__(self, *, workers: int = 2, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The internal listener: /metrics and /readyz's detail answer there.
        self.ops_port = free_port()
        self.ops_url = f"http://127.0.0.1:{self.ops_port}"
        self.workers = workers
        self.env = process_env(
            GUNICORN_BIND=f"127.0.0.1:{self.port}", OPS_PORT=str(self.ops_port), OPS_BIND_HOST="127.0.0.1",
            WEB_CONCURRENCY=str(workers), **(env or {})
        )
        self.process: subprocess.Popen | None = None
        # A file, not a pipe: a pipe nobody drains fills up and blocks the
        # workers' log writes, and with them every request.
        self.log = tempfile.NamedTemporaryFile(prefix="gunicorn-", suffix=".log", delete=False)

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def __enter__(self) -> Gunicorn:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "config" / "gunicorn.conf.py")],
            env=self.env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_text()[-3000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("gunicorn did not become healthy within 30 s")

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


# --- shards and committed tenants ------------------------------------------



@contextmanager
def temporary_shard(name: str):
    """A real PostgreSQL server registered as shard ``name`` for one test.

    Yields (server, shard). Must run with the database unblocked and outside
    a test transaction (the registry rows are committed).
    """
    import psycopg
    from django.conf import settings
    from django.db import connections

    from apps.tenancy.models import Shard, Tenant
    from config.settings.base import database_config
    from tests.pgtemp import TemporaryPostgres

    server = TemporaryPostgres()
    server.start()
    alias = settings.SHARD_ALIAS_PREFIX + name
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "saas_{name}"')
    config = database_config(server.url(f"saas_{name}"), connect_timeout=settings.SHARD_CONNECT_TIMEOUT)
    settings.DATABASES[alias] = config
    connections.configure_settings(settings.DATABASES)  # fills the defaults Django expects
    shard = Shard.objects.create(name=name, alias=alias)
    try:
        yield server, shard
    finally:
        for tenant in Tenant.objects.filter(shard=shard):
            tenant.delete()
        Shard.objects.filter(pk=shard.pk).delete()
        connections[alias].close()
        del settings.DATABASES[alias]
        server.destroy()


@contextmanager
def committed_tenant(slug: str, *, shard: str = "main"):
    """A freshly provisioned, committed tenant; removed (schema and rows) after."""
    from apps.tenancy import schemas
    from apps.tenancy.models import Tenant
    from apps.tenancy.services import tenant_create

    tenant = tenant_create(slug=slug, name=slug.title(), admin_email=f"owner@{slug}.test",
                           admin_password=f"{slug}-pass", shard=shard).tenant
    try:
        yield tenant
    finally:
        current = Tenant.objects.select_related("shard").filter(pk=tenant.pk).first()
        if current is not None:
            try:
                schemas.drop_schema(current.shard.alias, current.schema_name)
            except Exception:
                pass  # the shard may be the stopped one of a fault test
            current.delete()


def command_output(*args: str) -> str:
    """Run a management command in-process; return what it printed."""
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


SEARCH_WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def seed_searchable_documents(count: int, *, words: int) -> int:
    """``count`` documents of ``words`` words each (SEARCH_WORDS in turn) in
    the active tenant, indexed for search: load for search and reads in live
    tests and benchmarks. Returns the first document's id."""
    from apps.content.models import Document
    from apps.search.services import search_rebuild

    Document.objects.bulk_create(
        [Document(title=f"doc {i}", body=" ".join(SEARCH_WORDS[(i + j) % len(SEARCH_WORDS)] for j in range(words)))
         for i in range(count)], batch_size=1000)
    search_rebuild(restart=True)
    return Document.objects.order_by("pk").values_list("pk", flat=True).first()
