"""The backend of transaction-pooled aliases, on a direct connection.

What PgBouncer changes is tested through a real one in tests/test_pgbouncer.py;
here: the URL marker, the options it refuses, and that rewriting every
statement keeps what Django reads from a cursor (rows, row counts, %).
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from psycopg import sql

from config.settings.base import database_config
from tests.pgbouncer import database_aliases
from tests.support import test_database_url as database_url_of

URL = "postgres://app@pgbouncer:6432/saas"


def test_the_url_marker_chooses_the_backend_and_is_not_passed_to_the_driver():
    pooled = database_config(URL + "?pooling=transaction", connect_timeout=2)
    assert pooled["ENGINE"] == "apps.tenancy.pgbouncer_backend"
    assert "pooling" not in pooled["OPTIONS"]
    assert database_config(URL, connect_timeout=2)["ENGINE"] == "apps.tenancy.postgresql_backend"
    with pytest.raises(ImproperlyConfigured, match="pooling=transaction"):
        database_config(URL + "?pooling=session", connect_timeout=2)


@pytest.mark.parametrize("option", [{"server_side_binding": True}, {"prepare_threshold": 5}])
def test_options_that_need_a_session_are_refused(option):
    from apps.tenancy.pgbouncer_backend.base import DatabaseWrapper

    config = database_config(URL + "?pooling=transaction", connect_timeout=2)
    config["OPTIONS"].update(option)
    with pytest.raises(ImproperlyConfigured, match="transaction-pooled"):
        DatabaseWrapper(config, "pooled")


def test_every_statement_runs_on_the_active_schema_and_returns_its_own_result(tenants, django_db_blocker):
    from apps.content.models import Document

    alpha, gamma = tenants["alpha"], tenants["gamma"]  # both on shard main
    url = database_url_of("shard_main") + "?pooling=transaction"
    with (
        django_db_blocker.unblock(),
        database_aliases(url, "pooled_direct") as (connection,),
        transaction.atomic(using="pooled_direct"),
    ):
        connection.set_tenant(alpha)
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('search_path'), %s, '100%%'", ["50%"])
            assert cursor.fetchone() == (f"{alpha.schema_name}, public", "50%", "100%")
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname LIKE '%'")
            assert cursor.fetchone()[0] >= 1
            cursor.execute(sql.SQL("SELECT current_setting({})").format(sql.Literal("search_path")))
            assert cursor.fetchone() == (f"{alpha.schema_name}, public",)
        documents = Document.objects.using("pooled_direct")
        documents.bulk_create([Document(title="alpha a"), Document(title="alpha b")])
        assert documents.filter(title__startswith="alpha").update(body="x") == 2
        connection.set_tenant(gamma)
        assert documents.filter(title__startswith="alpha").update(body="y") == 0
        assert documents.count() == 0
        transaction.set_rollback(True, using="pooled_direct")
