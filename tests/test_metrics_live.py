"""/metrics under a real gunicorn with several worker processes."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support import Gunicorn

pytestmark = [pytest.mark.live, pytest.mark.django_db]

COUNTER = "django_http_responses_before_middlewares_total"


def scrape_total(url: str) -> float:
    text = requests.get(url + "/metrics", timeout=5).text  # url: the internal listener
    match = re.search(rf"^{COUNTER} (\S+)$", text, re.MULTILINE)
    assert match, f"{COUNTER} missing from /metrics"
    return float(match.group(1))


def worker_pids_with_samples(directory: Path) -> set[str]:
    return {m.group(1) for p in directory.iterdir() if (m := re.match(r"counter_(\d+)\.db$", p.name))}


def test_metrics_add_up_across_gunicorn_workers(tmp_path):
    multiproc_dir = tmp_path / "prometheus"
    with Gunicorn(workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}) as server:
        before = scrape_total(server.ops_url)  # includes the readiness polls at start-up
        sent = 0
        with ThreadPoolExecutor(max_workers=8) as pool:
            # Concurrent fresh connections so that both workers accept some.
            while sent < 400:
                statuses = list(pool.map(lambda _: requests.get(server.url + "/healthz", timeout=5).status_code, range(40)))
                assert statuses == [200] * 40
                sent += 40
                if sent >= 80 and len(worker_pids_with_samples(multiproc_dir)) >= 2:
                    break
        assert len(worker_pids_with_samples(multiproc_dir)) >= 2, "only one worker served requests"
        # Whichever worker answers the scrape, it reports every worker's count:
        # the earlier scrape + the requests sent (the scrape itself is counted
        # after its body is rendered).
        totals = {scrape_total(server.ops_url) for _ in range(6)}
        assert min(totals) >= before + 1 + sent
