"""A request that meets a tenant's schema mid-switch gets 503, not a 500."""

from __future__ import annotations

import pytest
from django.db import ProgrammingError, connections

from apps.tenancy.models import Move

pytestmark = pytest.mark.django_db


def test_a_request_during_a_moves_switch_is_told_to_retry(api, alpha):
    client = api(alpha, role="member")
    shard = alpha.shard
    Move.objects.create(tenant=alpha, source=shard, target=shard, schema_name=alpha.schema_name,
                        retired_schema=f"{alpha.schema_name}_retired", phase=Move.Phase.FLIP)
    with connections[shard.alias].cursor() as cursor:
        # What the mover's switch does to the source, inside this test's transaction.
        cursor.execute(f'ALTER TABLE "{alpha.schema_name}"."content_document" RENAME TO content_document_away')
    response = client.post("documents", {"title": "during the switch"})
    assert response.status_code == 503, response.content
    assert response.json()["type"].endswith("/tenant-moving") and int(response["Retry-After"]) > 0


def test_a_missing_table_without_a_move_is_still_an_error(api, alpha):
    client = api(alpha, role="member")
    with connections[alpha.shard.alias].cursor() as cursor:
        cursor.execute(f'ALTER TABLE "{alpha.schema_name}"."content_document" RENAME TO content_document_away')
    # Not turned into a 503: the missing table is reported as the error it is.
    with pytest.raises(ProgrammingError, match='relation "content_document" does not exist'):
        client.post("documents", {"title": "no move: a real error"})
