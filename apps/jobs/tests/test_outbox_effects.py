"""Once-only effects under concurrent redelivery: real threads and a real
process, each with its own database session, on one effect key."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import pytest
from django.db import connections

from apps.jobs.models import Effect
from apps.jobs.services import EffectInProgress, effect_once
from tests.support import ROOT, process_env
from tests.workers import wait_until


@pytest.fixture
def effect_key(django_db_setup, django_db_blocker):
    """A fresh key whose ledger row is committed (every session sees it); removed after."""
    key = f"test:{uuid.uuid4()}"
    with django_db_blocker.unblock():
        yield key
        Effect.objects.filter(key=key).delete()


def test_parallel_redeliveries_do_the_effect_once(effect_key):
    runners = 8
    start = threading.Barrier(runners)
    done, busy, skipped = [], [], []

    def redelivery() -> None:
        try:
            start.wait()
            with effect_once(effect_key, task_name="test") as needed:
                if needed:
                    done.append(threading.current_thread().name)
                    time.sleep(0.5)  # the outside call: the others arrive meanwhile
                else:
                    skipped.append(1)
        except EffectInProgress:
            busy.append(1)
        finally:
            connections.close_all()  # this thread's session

    threads = [threading.Thread(target=redelivery) for _ in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(done) == 1 and len(busy) + len(skipped) == runners - 1
    effect = Effect.objects.get(key=effect_key)
    assert effect.done and effect.claimed_until is None and effect.attempts == 1
    with effect_once(effect_key) as needed:  # a later redelivery
        assert needed is False


def test_a_failed_runner_releases_its_claim_for_the_retry(effect_key):
    with pytest.raises(ConnectionError):
        with effect_once(effect_key) as needed:
            assert needed
            raise ConnectionError("provider down")
    with effect_once(effect_key) as needed:  # the retry goes at once
        assert needed
    assert Effect.objects.get(key=effect_key).attempts == 2


@pytest.mark.live
def test_a_long_effect_keeps_its_claim_and_a_dead_runners_claim_lapses(effect_key, settings):
    """A runner process claims, holds the effect longer than the lease (its
    renewals keep others out), then is SIGKILLed: its claim lapses and a
    redelivery does the effect."""
    settings.EFFECT_CLAIM_SECONDS = 2
    code = ("import django, sys, time; django.setup()\n"
            "from apps.jobs.services import effect_once\n"
            "with effect_once(sys.argv[1]) as needed:\n"
            "    print('claimed', needed, flush=True)\n"
            "    time.sleep(60)\n")
    runner = subprocess.Popen([sys.executable, "-c", code, effect_key], cwd=ROOT, stdout=subprocess.PIPE,
                              env=process_env(EFFECT_CLAIM_SECONDS="2"), text=True)
    try:
        assert runner.stdout.readline().strip() == "claimed True"
        time.sleep(3)  # longer than the lease: only renewals keep the claim
        with pytest.raises(EffectInProgress):
            with effect_once(effect_key):
                pass
        runner.kill()
        runner.wait(10)

        def redelivered() -> bool:
            try:
                with effect_once(effect_key) as needed:
                    return needed
            except EffectInProgress:
                return False

        wait_until(redelivered, 10, interval=0.2, message="the dead runner's claim lapsed")
    finally:
        runner.kill()
        runner.wait(10)
    assert Effect.objects.get(key=effect_key).done
