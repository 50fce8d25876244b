"""OpenTelemetry traces: one trace from a request, through the outbox, to the
task it caused and that task's queries.

Off unless the OTEL_* variables configure it (TRACING_ENABLED, the rule is in
config/settings/observability.py). Off means: nothing instrumented, no OpenTelemetry
module imported, and each hook on a hot path (the log filter, the problem
renderer, the outbox write) costs one test of ``ENABLED``.

On, each process installs it once, after it forked: a BatchSpanProcessor's
export thread does not survive ``fork``. gunicorn workers in ``post_fork``
(config/gunicorn.conf.py), Celery pool processes on ``worker_process_init``
and beat on ``beat_init`` (config/celery_app.py). Management commands are not
traced; a task they enqueue starts a trace of its own in the worker.

Instrumented: Django (one server span per request, with the request id and
the tenant as attributes), Celery (a producer span per publish, a consumer
span per task run, the trace context in the message headers), psycopg (a span
per query) and redis-py (a span per command, the cache and rate limits).

The outbox publishes later and from another thread (apps/jobs/outbox.py), so
Celery's own propagation would start a new trace there: the row stores the
trace context of the transaction that wrote it (``traceparent`` in its
headers), and the relay publishes inside that context again.
"""

from __future__ import annotations

import contextlib
import os

from django.core.exceptions import DisallowedHost

from .context import trace_ids_var

# Read on hot paths: a plain module global, set only by install()/uninstall().
ENABLED = False
NO_IDS = ("-", "-")
TRACING_MIDDLEWARE = "apps.observability.tracing.TracingMiddleware"
# The span attributes that tie a span to the platform's own ids.
REQUEST_ID_ATTRIBUTE = "request.id"
TENANT_ID_ATTRIBUTE = "tenant.id"
TENANT_SLUG_ATTRIBUTE = "tenant.slug"

_state: dict = {"pid": None, "provider": None, "tracer": None}
_NOTHING = contextlib.nullcontext()


# --- process set-up ------------------------------------------------------------


def init_process(role: str) -> bool:
    """Install tracing in this process if the settings enable it (once per
    process); ``role`` (web, worker, beat) names the default service."""
    from django.conf import settings

    if not settings.TRACING_ENABLED or _state["pid"] == os.getpid():
        return False
    from django.utils.module_loading import import_string
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    processors = [BatchSpanProcessor(_exporter(name)) for name in settings.TRACING_EXPORTERS]
    processors += [SimpleSpanProcessor(import_string(path)()) for path in settings.TRACING_SYNC_EXPORTERS]
    install(processors, service_name=settings.TRACING_SERVICE_NAME or f"saas-platform-{role}", set_global=True)
    return True


def _exporter(name: str):
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    # otlp, otlp_proto_http: endpoint, headers, timeout and compression come
    # from the OTEL_EXPORTER_OTLP_* variables, read by the exporter itself.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def install(span_processors, *, service_name: str, set_global: bool = False):
    """Instrument Django, Celery, psycopg and Redis, sending spans to
    ``span_processors``; returns the tracer provider. ``set_global`` also
    makes it OpenTelemetry's global provider (which can be set only once per
    process, hence off for tests, which install and uninstall)."""
    global ENABLED
    from django.conf import settings
    from opentelemetry import trace
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}), sampler=_sampler(settings))
    for processor in span_processors:
        provider.add_span_processor(processor)
    if set_global:
        trace.set_tracer_provider(provider)

    # Right after the probes' middleware: /healthz, /readyz and /metrics
    # stay untraced (they are answered before it), every other request is.
    probes = "apps.ops.endpoints.OperationalEndpointsMiddleware"
    position = settings.MIDDLEWARE.index(probes) + 1 if probes in settings.MIDDLEWARE else 0
    DjangoInstrumentor().instrument(tracer_provider=provider, middleware_position=position,
                                    request_hook=_request_started, response_hook=_request_finished)
    middleware = list(settings.MIDDLEWARE)
    middleware[middleware.index(DjangoInstrumentor._opentelemetry_middleware)] = TRACING_MIDDLEWARE
    settings.MIDDLEWARE = middleware
    CeleryInstrumentor().instrument(tracer_provider=provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    _connect_task_signals()

    _state.update(pid=os.getpid(), provider=provider, tracer=provider.get_tracer(__name__))
    ENABLED = True
    return provider


def uninstall() -> None:
    """Undo install() (tests): instrumentation removed, spans flushed."""
    global ENABLED
    from celery import signals
    from django.conf import settings
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    ENABLED = False
    settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if name != TRACING_MIDDLEWARE]
    for instrumentor in (DjangoInstrumentor, CeleryInstrumentor, PsycopgInstrumentor, RedisInstrumentor):
        instrumentor().uninstrument()
    signals.task_prerun.disconnect(dispatch_uid=__name__)
    signals.task_postrun.disconnect(dispatch_uid=__name__)
    provider, _state["provider"], _state["tracer"], _state["pid"] = _state["provider"], None, None, None
    if provider is not None:
        provider.shutdown()


def _sampler(settings):
    """OTEL_TRACES_SAMPLER, and: a query or a Redis command outside any
    request or task (a relay's claim, a broker poll, a scrape) starts no
    trace of its own; such one-span traces would bury the ones that matter."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import sampling

    ratio = sampling.TraceIdRatioBased(settings.TRACING_SAMPLER_RATIO)
    root = {"always_on": sampling.ALWAYS_ON, "always_off": sampling.ALWAYS_OFF}.get(
        settings.TRACING_SAMPLER.removeprefix("parentbased_"), ratio)
    chosen = sampling.ParentBased(root) if settings.TRACING_SAMPLER.startswith("parentbased_") else root

    class NoOrphanClientSpans(sampling.Sampler):
        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                          trace_state=None):
            if kind == trace.SpanKind.CLIENT and not trace.get_current_span(parent_context).get_span_context().is_valid:
                return sampling.SamplingResult(sampling.Decision.DROP)
            return chosen.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"NoOrphanClientSpans{{{chosen.get_description()}}}"

    return NoOrphanClientSpans()


class TracingMiddleware:
    """OpenTelemetry's Django middleware, for hosts this platform serves.

    That middleware builds each request's absolute URL, which validates the
    host against ALLOWED_HOSTS: for any other host it would raise
    DisallowedHost before the tenant middleware answers with its problem
    (400 invalid-host). Such requests go on untraced.
    """

    def __init__(self, get_response):
        from django.utils.module_loading import import_string
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        self.get_response = get_response
        self.traced = import_string(DjangoInstrumentor._opentelemetry_middleware)(get_response)

    def __call__(self, request):
        try:
            request.get_host()
        except DisallowedHost:
            return self.get_response(request)
        return self.traced(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        return self.traced.process_view(request, view_func, view_args, view_kwargs)  # the route, as the span's name

    def process_exception(self, request, exception):
        return self.traced.process_exception(request, exception)  # recorded on the span


# Where the instrumentation puts the request's URL, query string included.
URL_ATTRIBUTES = ("http.target", "http.url", "url.query", "url.full")


def _redact_url_attributes(span) -> None:
    """A followed invitation, reset or download link carries its token in the
    query string: the span keeps the URL without it."""
    from .redaction import redact_text

    attributes = getattr(span, "attributes", None) or {}
    for name in URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str) and redact_text(value) != value:
            span.set_attribute(name, redact_text(value))


def _request_started(span, request) -> None:
    # Kept for the log lines Django writes after the span ended (the 4xx/5xx
    # warnings of django.request); cleared when the next request starts.
    trace_ids_var.set(_ids(span.get_span_context()))
    if span.is_recording():
        _redact_url_attributes(span)


def _request_finished(span, request, response) -> None:
    if not span.is_recording():
        return
    _redact_url_attributes(span)
    if getattr(request, "request_id", None):
        span.set_attribute(REQUEST_ID_ATTRIBUTE, request.request_id)
    tenant = getattr(request, "tenant", None)
    if tenant is not None and not tenant.is_public:
        span.set_attribute(TENANT_ID_ATTRIBUTE, tenant.pk)
        span.set_attribute(TENANT_SLUG_ATTRIBUTE, tenant.slug)


def _connect_task_signals() -> None:
    # Connected after Celery's instrumentation, so its task span is current.
    from celery import signals

    signals.task_prerun.connect(_task_started, weak=False, dispatch_uid=__name__)
    signals.task_postrun.connect(_task_finished, weak=False, dispatch_uid=__name__)


def _task_started(task=None, **kwargs) -> None:
    from opentelemetry import trace

    span = trace.get_current_span()
    trace_ids_var.set(_ids(span.get_span_context()))
    if task is None or not span.is_recording():
        return
    for attribute, header in ((REQUEST_ID_ATTRIBUTE, "request_id"), (TENANT_ID_ATTRIBUTE, "tenant_id"),
                              (TENANT_SLUG_ATTRIBUTE, "tenant_slug")):
        value = getattr(task.request, header, None)
        if value is None:
            value = (getattr(task.request, "headers", None) or {}).get(header)
        if value is not None:
            span.set_attribute(attribute, value)


def _task_finished(**kwargs) -> None:
    trace_ids_var.set(None)


# --- hooks on the platform's paths -------------------------------------------


def _ids(span_context) -> tuple[str, str] | None:
    if span_context.is_valid and span_context.trace_flags.sampled:
        return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")
    return None


def current_ids() -> tuple[str, str]:
    """(trace id, span id) of the span in progress, or of the request or
    task this thread last ran; ("-", "-") when there is none or it is not
    sampled (no trace to look up). Call only when ENABLED."""
    from opentelemetry import trace

    return _ids(trace.get_current_span().get_span_context()) or trace_ids_var.get() or NO_IDS


def current_trace_id() -> str | None:
    """The trace id to show a client (problem details), or None."""
    if not ENABLED:
        return None
    trace_id = current_ids()[0]
    return None if trace_id == "-" else trace_id


def inject(headers: dict) -> None:
    """Add the current trace context (``traceparent``) to ``headers``, e.g. an
    outbox row's, so that the task it becomes continues this trace."""
    from opentelemetry import propagate

    propagate.inject(headers)


def outbox_relay_span(message):
    """A span around publishing one outbox row, in the trace that wrote the row.

    The row was written by a request (or task) that has long finished, on
    another thread: its stored ``traceparent`` is the parent, so Celery's
    publish span and the task span join that trace. A relay run by a sweep
    task links to the sweep's span. A row without a stored context (written
    outside any trace) is relayed in the current one.
    """
    if not ENABLED:
        return _NOTHING
    return _outbox_relay_span(message)


@contextlib.contextmanager
def _outbox_relay_span(message):
    from django.utils import timezone
    from opentelemetry import propagate, trace

    headers = message.headers or {}
    parent, links = None, None
    if "traceparent" in headers:
        parent = propagate.extract(headers)
        current = trace.get_current_span().get_span_context()
        links = [trace.Link(current)] if current.is_valid else None
    attributes = {"outbox.message_id": str(message.pk), "outbox.task": message.task_name,
                  "outbox.attempts": message.attempts}
    if message.created_at is not None:
        attributes["outbox.wait_ms"] = round((timezone.now() - message.created_at).total_seconds() * 1000, 1)
    with _state["tracer"].start_as_current_span(f"outbox.relay {message.task_name}", context=parent, links=links,
                                                attributes=attributes):
        yield
