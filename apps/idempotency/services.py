"""Idempotency-Key handling for POST requests.

The same key with the same request replays the first response; with a
different request it is refused (422). Keys live IDEMPOTENCY_KEY_SECONDS
(24 h). A concurrent request with the same key waits on the unique index until
the first one commits, then replays its response: no double effect.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.utils import timezone

from apps.http.problems import problem_response

from .models import IdempotencyRecord

REPLAY_HEADERS = ("Content-Type", "Location", "ETag")
# Responses worth replaying: success, and errors that the same request would
# meet again. Not: 401/403 (credentials may change), 409/412/428/429/5xx.
STORED_STATUSES = set(range(200, 300)) | {400, 404, 410, 413, 422}
MAX_KEY_LENGTH = 255


def fingerprint(request) -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(request.get_full_path().encode())
    digest.update(request.body)
    return digest.hexdigest()


def replay(record: IdempotencyRecord) -> HttpResponse:
    response = HttpResponse(record.body, status=record.status_code)
    for name, value in record.headers.items():
        response[name] = value
    response["Idempotent-Replayed"] = "true"
    return response


def run_idempotent(*, request, key: str, client: str, alias: str, handler: Callable[[], HttpResponse]) -> HttpResponse:
    """Run ``handler`` at most once per (client, key) within the key's lifetime."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return problem_response(400, code="invalid-idempotency-key",
                                detail=f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters.")
    request_print = fingerprint(request)
    expired_before = timezone.now() - dt.timedelta(seconds=settings.IDEMPOTENCY_KEY_SECONDS)
    with transaction.atomic(using=alias):
        IdempotencyRecord.objects.filter(client=client, key=key, created_at__lt=expired_before).delete()
        try:
            with transaction.atomic(using=alias):
                record = IdempotencyRecord.objects.create(client=client, key=key, fingerprint=request_print)
        except IntegrityError:
            # Committed by an earlier (or a concurrent, now finished) request.
            record = IdempotencyRecord.objects.get(client=client, key=key)
            if record.fingerprint != request_print:
                return problem_response(
                    422, code="idempotency-key-reused",
                    detail="This Idempotency-Key was used with a different request. Use a new key.",
                )
            if record.status_code is None:
                return problem_response(409, code="idempotency-key-in-progress",
                                        detail="A request with this Idempotency-Key is still being processed.")
            return replay(record)
        response = handler()
        if response.status_code not in STORED_STATUSES:
            transaction.set_rollback(True, using=alias)
            return response
        if hasattr(response, "render") and not getattr(response, "is_rendered", True):
            response.render()
        record.status_code = response.status_code
        record.body = response.content.decode()
        record.headers = {name: response[name] for name in REPLAY_HEADERS if name in response}
        record.save(update_fields=["status_code", "body", "headers"])
        return response


FORM_FINGERPRINT = "form"


def form_submission_claim(*, alias: str, client: str, key: str) -> bool:
    """True the first time a form's one-off ``key`` is sent by ``client``
    (within IDEMPOTENCY_KEY_SECONDS), False on a repeat: a reload, a double
    click. For forms whose answer may be shown only once (a new API key):
    no response is stored, so a repeat is answered by the caller, not replayed."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return False
    expired_before = timezone.now() - dt.timedelta(seconds=settings.IDEMPOTENCY_KEY_SECONDS)
    with transaction.atomic(using=alias):
        IdempotencyRecord.objects.using(alias).filter(client=client, key=key, created_at__lt=expired_before).delete()
        try:
            with transaction.atomic(using=alias):
                IdempotencyRecord.objects.using(alias).create(client=client, key=key, fingerprint=FORM_FINGERPRINT,
                                                              status_code=303)
        except IntegrityError:
            return False
    return True


def form_submission_release(*, alias: str, client: str, key: str) -> None:
    """Forget a claimed key whose action was refused, so the corrected form can be sent."""
    IdempotencyRecord.objects.using(alias).filter(client=client, key=key, fingerprint=FORM_FINGERPRINT).delete()


def idempotency_purge_expired(*, alias: str) -> int:
    expired_before = timezone.now() - dt.timedelta(seconds=settings.IDEMPOTENCY_KEY_SECONDS)
    deleted, _ = IdempotencyRecord.objects.using(alias).filter(created_at__lt=expired_before).delete()
    return deleted
