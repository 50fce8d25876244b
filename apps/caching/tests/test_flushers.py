"""The per-process background flusher: periodic, started once per process
(again in a forked child), bounded interval, a failing flush never ends it."""

from __future__ import annotations

import os
import threading
import time

import pytest

from apps.caching.flushers import MIN_INTERVAL_SECONDS, Flusher
from tests.workers import wait_until


@pytest.fixture
def flushers():
    made = []

    def make(flush, interval=lambda: 0.02, name="test-flusher"):
        flusher = Flusher(name, flush, interval)
        made.append(flusher)
        return flusher

    yield make
    for flusher in made:
        flusher.stop()


def test_it_flushes_periodically_in_one_thread_and_stops(flushers):
    calls = []
    flusher = flushers(lambda: calls.append(threading.current_thread().name))
    for _ in range(5):
        flusher.ensure_started()
    wait_until(lambda: len(calls) >= 3, 3, 0.01, "three rounds")
    assert set(calls) == {"test-flusher"}
    assert [t.name for t in threading.enumerate()].count("test-flusher") == 1
    flusher.stop()
    assert not flusher.running
    seen = len(calls)
    time.sleep(0.1)
    assert len(calls) == seen


def test_a_failing_flush_neither_ends_the_thread_nor_reaches_the_caller(flushers):
    calls = []

    def flush():
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError("the store is down")

    flusher = flushers(flush)
    flusher.ensure_started()
    wait_until(lambda: len(calls) >= 4, 3, 0.01, "rounds after the failures")
    assert flusher.running


def test_the_interval_is_bounded_and_an_unreadable_one_does_not_end_the_thread(flushers):
    spinning, broken = [], []
    fast = flushers(lambda: spinning.append(1), interval=lambda: -5, name="test-fast")

    def unreadable():
        raise ValueError("no such setting")

    slow = flushers(lambda: broken.append(1), interval=unreadable, name="test-broken")
    fast.ensure_started()
    slow.ensure_started()
    time.sleep(0.3)
    fast.stop()
    # Clamped to MIN_INTERVAL_SECONDS, not a busy loop.
    assert 1 <= len(spinning) <= 0.3 / MIN_INTERVAL_SECONDS + 1
    assert slow.running


def test_a_forked_child_starts_its_own_thread(flushers):
    flusher = flushers(lambda: None)
    flusher.ensure_started()
    parent_thread = flusher._thread
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        ok = False
        try:
            ok = not flusher.running
            flusher.ensure_started()
            ok = ok and flusher.running and flusher._thread is not parent_thread
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        pytest.fail("the forked child hung")
    assert flusher.running and flusher._thread is parent_thread
