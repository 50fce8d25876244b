"""The operator console's overview, through the Django test client.

Not in a test transaction: the overview reads each source in a thread of
its own, with its own database connection, which sees committed rows only.
"""

from __future__ import annotations

import re

import pytest

from apps.accounts.models import User
from apps.backoffice.tests.test_console import CONSOLE, letter, logged_in, text
from apps.jobs.models import DeadLetter, Job


@pytest.fixture
def committed_ops(tenants, django_db_blocker, settings):
    """The overview reads in threads with their own connections: its data must be committed."""
    settings.METRICS_CACHE_SECONDS = 0
    # Generous bounds: the machine running the suite may be busy; a source
    # that is down fails at once (connection refused), not by these timeouts.
    settings.METRICS_TIMEOUT_SECONDS = 5.0
    settings.CONSOLE_READ_TIMEOUT_SECONDS = 10.0
    with django_db_blocker.unblock():
        User.objects.filter(email="overview@console.test").delete()
        user = User.objects.create_superuser(email="overview@console.test", password="ops-pass")
        dead = letter(tenants["alpha"], task="notifications.send_email", error="SMTPError")
        try:
            yield logged_in("overview@console.test", "ops-pass")
        finally:
            DeadLetter.objects.filter(pk=dead.pk).delete()
            user.delete()


def test_overview_shows_shards_queues_dead_letters_outboxes_and_partitions(committed_ops, django_db_blocker):
    with django_db_blocker.unblock():
        page = committed_ops.get(CONSOLE)
    assert page.status_code == 200
    html, shown = page.content.decode(), text(page)
    for section in ("Shards", "Queues", "Dead letters", "Outbox backlog", "Moves in progress", "Partitions horizon"):
        assert section in shown
    assert 'data-shard="main"' in html and re.search(r'data-shard="main">.*?state-up', html, re.S)
    assert 'data-queue="emails"' in html and "unavailable" not in shown.split("Outbox backlog")[0].split("Queues")[1]
    dead_card = html.split('id="dead-letters"')[1].split('id="outboxes"')[0]
    assert re.search(r'data-task="notifications.send_email">.*?>1<', dead_card, re.S), dead_card
    assert 'data-outbox="control--"' in html
    assert f'href="{CONSOLE}shards/main/"' in html and f'href="{CONSOLE}dead-letters/?task=notifications.send_email"' in html


def test_overview_answers_with_redis_and_the_broker_down(committed_ops, django_db_blocker, settings):
    from tests.support import free_port
    from tests.workers import celery_broker

    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings.REDIS_URL = dead
    settings.CONSOLE_READ_TIMEOUT_SECONDS = 5.0  # what a broker that never answers costs the page
    with django_db_blocker.unblock(), celery_broker(dead):
        page = committed_ops.get(CONSOLE)
    assert page.status_code == 200
    shown = text(page)
    assert "Queues unavailable" in shown and "Workers unavailable" in shown and "Traffic unavailable" in shown
    assert re.search(r'data-shard="main">.*?state-up', page.content.decode(), re.S)  # the rest still shows


def test_the_overview_shows_what_runs_retries_and_died(committed_ops, tenants, django_db_blocker):
    """Committed: the overview reads in threads with their own connections."""
    from apps.backoffice.tests.test_console_jobs import make_job

    with django_db_blocker.unblock():
        retrying = make_job(tenants["alpha"], state="retrying", task="notifications.send_email",
                            error="RetryLater: email provider circuit is open")
        running = make_job(tenants["beta"])
        try:
            overview = committed_ops.get(CONSOLE).content.decode()
        finally:
            Job.objects.filter(pk__in=[retrying.pk, running.pk]).delete()
    assert re.search(r'data-jobs="retrying"><a [^>]*>1<', overview)
    assert re.search(r'data-jobs="running"><a [^>]*>1<', overview)
    assert f'data-job="{retrying.task_id}"' in overview and "circuit is open" in overview
