"""The platform's own Prometheus metrics (next to django-prometheus's).

prometheus_client's multiprocess mode (see config/gunicorn.conf.py) merges
these over gunicorn workers; the breaker gauge keeps the latest value.
"""

from prometheus_client import Counter, Gauge

cache_requests = Counter("saas_cache_requests_total", "Cached reads by outcome", ["namespace", "result"])
rate_limited = Counter("saas_rate_limited_total", "Requests refused by a rate limit", ["tier", "scope"])
shed_requests = Counter("saas_shed_requests_total", "Requests shed under load", ["priority"])
breaker_state = Gauge("saas_circuit_breaker_state", "Circuit state: 0 closed, 1 half-open, 2 open", ["name"],
                      multiprocess_mode="mostrecent")
# Summed over a pod's live gunicorn workers: what the web autoscaler scales on
# (platform/kubernetes/web.yaml, through the Prometheus adapter).
requests_in_flight = Gauge("saas_requests_in_flight", "Requests being served by this pod",
                           multiprocess_mode="livesum")
flag_evaluations = Counter("saas_flag_evaluations_total", "Feature flag evaluations", ["flag", "result"])
