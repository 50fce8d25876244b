"""Task throughput and enqueue-to-start latency, next to bare kombu.

    bin/dev bench tasks [COUNT]    (default 2000; a real worker, prefork, concurrency 2)

Both runs use the same Redis broker (its own database) and one consumer
process with two execution slots: Celery with the platform's settings
(late ack, prefetch 1), and a bare kombu consumer acknowledging each message.
"""

import multiprocessing
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings
from kombu import Connection, Exchange, Queue

from apps.jobs.tasks import ping
from config.celery_app import app
from tests.benchmarks._setup import percentile
from tests.workers import CeleryWorker, celery_broker, purge_queues

BROKER = urlunsplit(urlsplit(settings.REDIS_URL)._replace(path="/13"))
LATENCY_KEY = "bench:ping:latency"


def report(label: str, latencies: list[float], elapsed: float) -> None:
    print(f"{label:<34} {len(latencies) / elapsed:>8.0f} msg/s   enqueue->start p50 {percentile(latencies, 50) * 1000:6.1f} ms"
          f"  p95 {percentile(latencies, 95) * 1000:6.1f} ms  p99 {percentile(latencies, 99) * 1000:6.1f} ms")


def kombu_consumer(count: int, out) -> None:
    latencies = []
    queue = Queue("bench", Exchange("bench"), routing_key="bench")
    with Connection(BROKER) as connection:
        def on_message(body, message):
            latencies.append(time.time() - body["sent_at"])
            message.ack()

        with connection.Consumer(queue, callbacks=[on_message], prefetch_count=1):
            while len(latencies) < count:
                connection.drain_events(timeout=30)
    out.send(latencies)


def kombu_baseline(count: int, gap: float = 0.0, label: str = "kombu publish/consume (baseline)") -> None:
    queue = Queue("bench", Exchange("bench"), routing_key="bench")
    receiver, sender = multiprocessing.Pipe(duplex=False)
    with Connection(BROKER) as connection:
        queue(connection.default_channel).declare()
        queue(connection.default_channel).purge()
    consumer = multiprocessing.Process(target=kombu_consumer, args=(count, sender))
    consumer.start()
    time.sleep(1)
    started = time.time()
    with Connection(BROKER) as connection, connection.Producer() as producer:
        for _ in range(count):
            producer.publish({"sent_at": time.time()}, exchange=queue.exchange, routing_key="bench",
                             declare=[queue], serializer="json")
            if gap:
                time.sleep(gap)
    latencies = receiver.recv()
    consumer.join()
    report(label, latencies, time.time() - started)


def celery_run(count: int, gap: float = 0.0, label: str = "celery trivial task (platform)") -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(LATENCY_KEY)
    worker = CeleryWorker(broker_url=BROKER, queues="default", name="bench", concurrency=2,
                          env={"DJANGO_SETTINGS_MODULE": "config.settings.local"})
    with celery_broker(BROKER) as celery_app:
        purge_queues(celery_app)
        worker.start()
        try:
            started = time.time()
            for _ in range(count):
                ping.apply_async(args=[time.time()], kwargs={"key": LATENCY_KEY})
                if gap:
                    time.sleep(gap)
            while client.llen(LATENCY_KEY) < count:
                time.sleep(0.05)
            elapsed = time.time() - started
        finally:
            worker.stop()
    latencies = [float(v) for v in client.lrange(LATENCY_KEY, 0, -1)]
    report(label, latencies, elapsed)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    assert app is not None
    print(f"burst: {count} messages published as fast as possible (throughput; latency includes the backlog)")
    kombu_baseline(count)
    celery_run(count)
    print("paced: 200 messages, 20 ms apart (latency without a backlog; msg/s is the pacing)")
    kombu_baseline(200, gap=0.02, label="kombu publish/consume (baseline)")
    celery_run(200, gap=0.02, label="celery trivial task (platform)")
