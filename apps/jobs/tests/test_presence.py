"""Worker presence in Redis: written with a lapse of three intervals, read in
one script that drops what lapsed, removed on a clean stop; a dead Redis
never raises into the worker."""

from __future__ import annotations

import time
import uuid

import pytest

from apps.jobs import heartbeat
from apps.jobs.heartbeat import live_workers, presence_remove, presence_write
from tests.support import free_port


def entry(name: str) -> dict:
    return {"hostname": name, "queues": ["default"], "concurrency": 2, "active": 1, "at": time.time()}


def test_an_entry_lives_three_intervals_and_goes_on_its_own(monkeypatch):
    name = f"presence-{uuid.uuid4()}@host"
    assert presence_write(entry(name), interval=10)
    assert name in {w["hostname"] for w in live_workers()}
    now = time.time()
    monkeypatch.setattr(heartbeat.time, "time", lambda: now + 29)
    assert name in {w["hostname"] for w in live_workers()}
    monkeypatch.setattr(heartbeat.time, "time", lambda: now + 31)
    assert name not in {w["hostname"] for w in live_workers()}
    index, entries = heartbeat._presence_keys()
    assert heartbeat._presence_client().hget(entries, name) is None  # cleaned, not only hidden


def test_a_stopping_worker_removes_its_entry():
    name = f"presence-{uuid.uuid4()}@host"
    presence_write(entry(name), interval=10)
    presence_remove(name)
    assert name not in {w["hostname"] for w in live_workers()}


def test_redis_down_is_logged_by_the_writer_and_raised_to_the_reader(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    assert presence_write(entry("nobody@host"), interval=10) is False
    with pytest.raises(Exception):  # noqa: B017 (the console shows it as unavailable)
        live_workers()
