"""API key use is recorded in batches: one UPDATE for all keys, never older over newer."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from apps.accounts import services
from apps.accounts.models import ApiKey


def test_uses_are_written_together_and_a_later_record_wins(alpha, beta):
    first = services.api_key_create(tenant_id=alpha.pk, name="a", scopes=["read"], created_by=None).api_key
    second = services.api_key_create(tenant_id=beta.pk, name="b", scopes=["read"], created_by=None).api_key
    services.api_key_touch(api_key=first)  # a first use is written at once
    assert ApiKey.objects.get(pk=first.pk).last_used_at is not None

    long_ago = timezone.now() - dt.timedelta(hours=1)
    ApiKey.objects.filter(pk__in=[first.pk, second.pk]).update(last_used_at=long_ago)
    first.last_used_at = second.last_used_at = long_ago
    services.api_key_touch(api_key=first)
    services.api_key_touch(api_key=second)
    services.api_key_touch(api_key=second)  # within the minute: nothing more to record
    # Not written on the request's path.
    assert ApiKey.objects.get(pk=first.pk).last_used_at == long_ago
    # Another process recorded a later use of the second key meanwhile.
    later = timezone.now() + dt.timedelta(minutes=5)
    ApiKey.objects.filter(pk=second.pk).update(last_used_at=later)

    assert services.api_key_uses_flush() == 2
    assert ApiKey.objects.get(pk=first.pk).last_used_at == first.last_used_at
    assert ApiKey.objects.get(pk=second.pk).last_used_at == later
    assert services.api_key_uses_flush() == 0
