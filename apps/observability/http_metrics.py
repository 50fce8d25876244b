"""django-prometheus' request middleware, without a ``labels()`` call per series per request.

The library looks up each labelled child (``metric.labels(...)``: label
validation, a lock, a dictionary) five times per request; here each child is
looked up once per process and label values, then held. The series, their
names and labels are the library's, unchanged (the alert rules and the
dashboards read them). The label values are bounded (status, view name,
method, charset), and the held set is capped anyway.
"""

from __future__ import annotations

from django_prometheus import middleware

MAX_HELD_CHILDREN = 10_000


class PrometheusBeforeMiddleware(middleware.PrometheusBeforeMiddleware):
    """The library's, unchanged (two unlabelled series): listed for symmetry."""


class PrometheusAfterMiddleware(middleware.PrometheusAfterMiddleware):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._children: dict[tuple, object] = {}

    def label_metric(self, metric, request, response=None, **labels):
        if not labels:
            return metric
        key = (id(metric), *labels.items())
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= MAX_HELD_CHILDREN:
                self._children.clear()
            child = self._children[key] = metric.labels(**labels)
        return child
