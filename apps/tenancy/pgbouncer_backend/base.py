"""The shard backend for an alias reached through PgBouncer in transaction pooling mode.

django-tenants sets the tenant's schema with one session-level
``SET search_path`` per tenant switch. Behind PgBouncer in transaction mode a
client owns a server connection for one transaction only (in autocommit: one
statement), so that SET would stay on a server connection that another
client's next statement gets, and this client's next statement may run on a
server connection that never saw it: one tenant's statement on another
tenant's schema. Here nothing is set at session level; the schema is set
inside every transaction:

* Every statement is sent as ``SET LOCAL search_path = ...; <statement>`` in
  one simple-protocol query string (Django's psycopg backend binds parameters
  on the client, so a query string may hold several statements). PostgreSQL
  runs such a string as one transaction even in autocommit, so the SET and
  the statement reach the same server connection and the SET ends with the
  transaction. Inside an atomic block each statement repeats the SET: a
  rolled back savepoint reverts a SET LOCAL, and one parse of a short SET is
  cheaper than tracking that (see "Connection budget and PgBouncer" in the
  README for the measured cost).
* ``executemany`` and ``copy`` cannot carry a second statement (extended
  protocol); they run after a separate ``SET LOCAL`` in a transaction of
  their own when none is open.
* Server-side cursors (``QuerySet.iterator()``; exports): ``WITH HOLD``
  cursors outlive their transaction, which transaction pooling cannot
  follow. Inside a transaction the cursor is declared in it after a
  ``SET LOCAL``; outside one it gets a transaction of its own on a second
  client connection, closed with the cursor, so memory stays bounded and the
  caller's autocommit writes (an export's progress) still commit at once.
* Prepared statements stay off (``prepare_threshold=None``, Django's default;
  PgBouncer below 1.21 cannot route them); ``server_side_binding`` (which
  sends one statement per query) is refused.

Statements that cannot run inside a transaction block (``CREATE INDEX
CONCURRENTLY``, ``VACUUM``) fail on such an alias; maintenance that needs
them uses the direct URL.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql.base import Cursor, ServerSideCursor
from django_tenants.utils import quote_schema_name
from psycopg import ClientCursor, sql

from apps.tenancy.postgresql_backend.base import DatabaseWrapper as ShardDatabaseWrapper


class TransactionScopedCursor(Cursor):
    """A cursor whose every statement runs under its tenant's schema, set
    inside the statement's own transaction. ``database`` (the Django
    connection, whose active tenant may change while a cursor is open) is
    bound per connection by ``DatabaseWrapper``."""

    database: DatabaseWrapper

    def execute(self, query, params=None, *, prepare=None, binary=None):
        # With parameters, psycopg reads % in the query as a placeholder.
        prefix = self.database.set_local_sql(escaped=params is not None)
        if isinstance(query, str):
            query = prefix + query
        elif isinstance(query, bytes):
            query = prefix.encode() + query
        else:
            query = sql.Composed([sql.SQL(prefix), query])
        super().execute(query, params, prepare=prepare, binary=binary)
        # The first result is the SET's; callers read their statement's.
        self.nextset()
        return self

    @contextmanager
    def _schema_set_in_transaction(self):
        conn = self.connection
        if conn.autocommit:
            with conn.transaction():
                ClientCursor.execute(self, self.database.set_local_sql())
                yield
        else:
            ClientCursor.execute(self, self.database.set_local_sql())
            yield

    def executemany(self, query, params_seq, *, returning=False):
        with self._schema_set_in_transaction():
            return super().executemany(query, params_seq, returning=returning)

    @contextmanager
    def copy(self, statement, params=None, *, writer=None):
        with self._schema_set_in_transaction(), super().copy(statement, params, writer=writer) as copy:
            yield copy


class IsolatedServerSideCursor(ServerSideCursor):
    """A server-side cursor on a client connection of its own, in a read-only
    use of that connection's one transaction; closing it ends both."""

    def close(self):
        side = self.connection
        try:
            super().close()
            # Ended cleanly, PgBouncer hands the server connection to the
            # next client instead of dropping it.
            side.rollback()
        finally:
            side.close()


class DatabaseWrapper(ShardDatabaseWrapper):
    def __init__(self, settings_dict, *args, **kwargs):
        options = settings_dict.get("OPTIONS") or {}
        if options.get("server_side_binding"):
            raise ImproperlyConfigured(
                "A transaction-pooled alias needs client-side binding: server_side_binding sends one statement "
                "per query, so the tenant's schema could not be set in the same transaction."
            )
        if options.get("prepare_threshold") is not None:
            raise ImproperlyConfigured(
                "A transaction-pooled alias cannot use server-side prepared statements (prepare_threshold): "
                "the next transaction may run on a server connection that never prepared them."
            )
        self._set_local = self._set_local_escaped = ""
        self._side_connections: weakref.WeakSet = weakref.WeakSet()
        # A cursor class per connection, bound to this wrapper (weakly: the
        # psycopg connection outlives neither).
        self.cursor_factory = type(
            "TransactionScopedCursor", (TransactionScopedCursor,), {"database": weakref.proxy(self)}
        )
        super().__init__(settings_dict, *args, **kwargs)

    def set_tenant(self, tenant, include_public=True):
        super().set_tenant(tenant, include_public)
        paths = ", ".join(quote_schema_name(name) for name in self._get_cursor_search_paths())
        self._set_local = f"SET LOCAL search_path = {paths}; "
        self._set_local_escaped = self._set_local.replace("%", "%%")

    def set_local_sql(self, *, escaped: bool = False) -> str:
        """``SET LOCAL search_path`` for the active schema, ending in ``; ``."""
        return self._set_local_escaped if escaped else self._set_local

    def _handle_search_path(self, cursor=None):
        # Nothing at session level: every statement sets its own (above).
        return

    def get_connection_params(self):
        params = super().get_connection_params()
        params["cursor_factory"] = self.cursor_factory
        return params

    def create_cursor(self, name=None):
        if not name:
            return super().create_cursor()
        if not self.connection.autocommit:
            # The DECLARE that follows runs in this transaction, after this.
            ClientCursor(self.connection).execute(self._set_local)
            return super().create_cursor(name)
        return self._isolated_server_side_cursor(name)

    def _isolated_server_side_cursor(self, name):
        side = self.Database.connect(**self.get_connection_params())  # not autocommit: one transaction
        try:
            ClientCursor(side).execute(self._set_local)
            self._configure_timezone(side)  # undone with the transaction
            cursor = IsolatedServerSideCursor(side, name=name, scrollable=False, withhold=False)
        except BaseException:
            side.close()
            raise
        self._side_connections.add(side)
        return cursor

    def _close(self):
        # Server-side cursors left open by their callers end with the connection.
        while self._side_connections:
            side = self._side_connections.pop()
            if not side.closed:
                side.close()
        return super()._close()
