"""Writes through a real gunicorn while the broker is down, then the sweep.

Three real faults: a private redis-server killed (connection refused), the
same server paused with SIGSTOP (it accepts connections and never answers,
as a frozen or partitioned broker does) and an amqp:// broker URL where
nothing listens (RabbitMQ stopped; the machine's own RabbitMQ is never
stopped). Writes must stay fast (the relay publishes off the request thread,
with short timeouts), rows stay unsent, and once the broker is back the
sweep sends every one of them.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from pathlib import Path

import pytest
import requests

from apps.outbox.models import TenantOutboxMessage
from apps.outbox.services import tenant_outbox_sweep
from apps.tenancy.activation import tenant_activated
from tests.support import Gunicorn, committed_tenant, free_port
from tests.tools import require
from tests.workers import RedisBroker, celery_broker, port_answers, purge_queues

pytestmark = pytest.mark.live

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
WRITES = 12


class PausedRedis(RedisBroker):
    """A redis-server stopped with SIGSTOP: the kernel still accepts connections."""

    def _signal(self, sig) -> None:
        os.kill(int((Path(self.dir) / "redis.pid").read_text().strip()), sig)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)


@pytest.fixture(params=["redis-refused", "redis-paused", "amqp-refused"])
def broken_broker(request):
    """{"url": a broker URL that fails now, "restore": () -> a URL that answers}."""
    if request.param == "amqp-refused":
        require(port_answers(5672), "no RabbitMQ on 127.0.0.1:5672")
        user_vhost = AMQP_URL.split("@", 1)
        yield {"url": f"{user_vhost[0]}@127.0.0.1:{free_port()}/{AMQP_URL.rsplit('/', 1)[1]}",
               "restore": lambda: AMQP_URL}
        return
    server = PausedRedis().start()
    try:
        if request.param == "redis-refused":
            server.stop()
            yield {"url": server.url, "restore": lambda: server.start().url, "server": server}
        else:
            server.pause()
            yield {"url": server.url, "restore": lambda: server.resume() or server.url, "server": server}
    finally:
        server.stop()  # SIGKILL, paused or not


def queued(app, queue: str) -> int:
    with app.connection_for_write() as connection:
        return connection.default_channel.queue_declare(queue, passive=True).message_count


def test_writes_stay_fast_with_the_broker_down_and_the_sweep_sends_them_all_after(
        tenants, django_db_blocker, broken_broker, settings):
    from apps.accounts.models import User
    from apps.accounts.tokens import issue_user_token

    settings.OUTBOX_SWEEP_AFTER_SECONDS = 0
    with django_db_blocker.unblock(), committed_tenant("pubfault") as tenant:
        owner = User.objects.get(email="owner@pubfault.test")
        headers = {"Host": "pubfault.localhost",
                   "Authorization": f"Bearer {issue_user_token(user_id=owner.pk, tenant_id=tenant.pk)}"}
        latencies = []
        with Gunicorn(workers=1, env={"CELERY_BROKER_URL": broken_broker["url"]}) as server:
            for number in range(WRITES):
                started = time.monotonic()
                response = requests.post(f"{server.url}/api/v1/documents", json={"title": f"outage {number}"},
                                         headers=headers, timeout=30)
                latencies.append(time.monotonic() - started)
                assert response.status_code == 201, response.text
            time.sleep(1.5)  # the relay thread's attempt (a 1 s timeout at most) is over
        with tenant_activated(tenant):
            rows = list(TenantOutboxMessage.objects.all())
        assert len(rows) == WRITES and not [row for row in rows if row.sent_at]
        assert any(row.attempts for row in rows)  # the relay did try, and recorded why it failed
        # The bug: each write waited out the broker's timeouts (6 s refused, 10 s paused).
        assert statistics.median(latencies) < 1.0 and max(latencies) < 3.0, latencies

        with celery_broker(broken_broker["restore"]()) as app:
            purge_queues(app)
            with tenant_activated(tenant):
                assert tenant_outbox_sweep() == WRITES  # what beat's outbox.sweep does
                assert not TenantOutboxMessage.objects.filter(sent_at=None).exists()
            assert queued(app, "search") == WRITES  # nothing lost on the way
            purge_queues(app)
