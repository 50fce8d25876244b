"""Unique jobs' claims: one holder per key and window in Redis, the holder's
own retries pass, and the control-plane fallback while Redis is down."""

from __future__ import annotations

import time
import uuid

import pytest

from apps.jobs import uniqueness
from apps.jobs.models import UniqueClaim
from apps.jobs.uniqueness import claim, holder, key_for, release
from tests.support import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def key():
    name = f"test:{uuid.uuid4()}"
    yield name
    release(name, "a")
    release(name, "b")


@pytest.fixture
def redis_down(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.REDIS_TIMEOUT_SECONDS = 0.2
    return settings.REDIS_URL


def test_one_holder_per_key_and_its_own_redeliveries_pass(key):
    assert claim(key, "a", 60) == "a"
    assert claim(key, "b", 60) == "a"
    assert claim(key, "a", 60) == "a"  # a retry or a redelivery of the run that holds it
    release(key, "b")  # not its claim: nothing happens
    assert holder(key) == "a"
    release(key, "a")  # died: the next may go
    assert holder(key) is None and claim(key, "b", 60) == "b"


def test_the_claim_lapses_with_its_window(key):
    assert claim(key, "a", 0.2) == "a"
    time.sleep(0.3)
    assert claim(key, "b", 60) == "b"


def test_with_redis_down_the_claim_is_a_row_in_the_control_plane(key, redis_down):
    assert claim(key, "a", 60) == "a"
    assert UniqueClaim.objects.get(key=key).task_id == "a"
    assert claim(key, "b", 60) == "a" and claim(key, "a", 60) == "a"
    UniqueClaim.objects.filter(key=key).update(expires_at=UniqueClaim.objects.get(key=key).expires_at.replace(
        year=2000))
    assert claim(key, "b", 60) == "b"


def test_a_run_claimed_while_redis_was_down_still_holds_when_redis_is_back(key, settings):
    live = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    assert claim(key, "a", 60) == "a"
    settings.REDIS_URL = live
    assert claim(key, "b", 60) == "a"
    assert claim(key, "a", 60) == "a"


def test_enqueueing_a_unique_task_works_with_redis_down_and_costs_no_query(key, redis_down, django_assert_num_queries):
    from apps.jobs.tasks import unique_probe
    from config.celery_app import app
    from tests.workers import purge_queues

    with django_assert_num_queries(0):
        result = unique_probe.apply_async(kwargs={"key": key})
    assert result.id
    purge_queues(app)


def test_the_key_is_the_task_the_tenant_and_the_arguments_or_its_own_part():
    from apps.jobs.tasks import ping, unique_probe
    from apps.search.tasks import rebuild_index

    assert key_for(rebuild_index, [], {"restart": True}, 5) == "search.rebuild_index:5:index"
    assert key_for(rebuild_index, [100], {}, 6) == "search.rebuild_index:6:index"
    assert key_for(unique_probe, [], {"key": "x"}, None) == "jobs.unique_probe:-:x"
    assert key_for(ping, [1], {"a": 1, "b": 2}, 3) == key_for(ping, [1], {"b": 2, "a": 1}, 3)
    assert key_for(ping, [1], {}, 3) != key_for(ping, [2], {}, 3) != key_for(ping, [2], {}, 4)
    assert uniqueness._redis_key("k").endswith(":unique:k")
