"""The scenario's traffic (Locust): a mix of reads, writes, searches, events
and exports, each request for a tenant picked at random.

Run by tests/benchmarks/bench_scenario.py (``bin/dev bench scenario``), which
sets SCENARIO_TARGETS (a JSON file: [{"host", "key", "documents"}, ...]) and
SCENARIO_USER_RATE (requests per second per simulated user: with
``constant_throughput`` the total arrival rate is users x rate, whatever the
response times, up to the point where responses take longer than 1 / rate).
"""

from __future__ import annotations

import json
import os
import random
import time

from locust import FastHttpUser, constant_throughput, task

TARGETS = json.loads(open(os.environ["SCENARIO_TARGETS"]).read())  # noqa: SIM115 - read once at import
USER_RATE = float(os.environ.get("SCENARIO_USER_RATE", "1"))
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


class TenantApiUser(FastHttpUser):
    wait_time = constant_throughput(USER_RATE)

    def _tenant(self) -> tuple[dict, dict]:
        target = random.choice(TARGETS)
        return target, {"Host": target["host"], "Authorization": f"Bearer {target['key']}"}

    @task(45)
    def read_document(self):
        target, headers = self._tenant()
        self.client.get(f"/api/v1/documents/{random.choice(target['documents'])}", headers=headers,
                        name="read: GET /documents/{id}")

    @task(15)
    def list_documents(self):
        _, headers = self._tenant()
        self.client.get("/api/v1/documents?page_size=20", headers=headers, name="read: GET /documents")

    @task(4)
    def usage(self):
        _, headers = self._tenant()
        self.client.get("/api/v1/usage", headers=headers, name="read: GET /usage")

    @task(10)
    def search(self):
        _, headers = self._tenant()
        self.client.get(f"/api/v1/search?q={random.choice(WORDS)}", headers=headers, name="search: GET /search")

    @task(12)
    def write_document(self):
        _, headers = self._tenant()
        words = " ".join(random.choices(WORDS, k=40))
        self.client.post("/api/v1/documents", json={"title": f"scenario {random.random():.6f}", "body": words},
                         headers=headers, name="write: POST /documents")

    @task(12)
    def events(self):
        _, headers = self._tenant()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        batch = [{"type": random.choice(("page.view", "click", "signup")), "timestamp": now,
                  "properties": {"path": f"/p/{random.randint(1, 999)}"}} for _ in range(50)]
        self.client.post("/api/v1/events", json={"events": batch}, headers=headers, name="events: POST /events (50)")

    @task(2)
    def export(self):
        _, headers = self._tenant()
        self.client.post("/api/v1/exports", json={"kind": "documents"}, headers=headers,
                         name="exports: POST /exports")
