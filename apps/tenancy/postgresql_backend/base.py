"""django-tenants' PostgreSQL backend, plus what failing over needs to know.

Every database error leaves a connection tagged with the alias it came from
(``exc.db_alias``), so the request layer knows whether a replica or a primary
failed instead of guessing from a message. Connection failures are recorded
in apps.tenancy.replicas as they happen, for every unit of work (requests,
tasks, commands): a replica whose connection failed is dropped from reads at
once, and a primary that refused a connection is presumed down for a few
seconds, during which connecting to it fails at once (PresumedDown) instead
of waiting out SHARD_CONNECT_TIMEOUT again on every request.

Why not fall back to the primary here, inside the replica's connect: a
failure under a query on an open connection cannot be moved to another
connection halfway (the caller holds the replica's cursor and may already
have read rows from it), so only the request can be re-run as a whole
(TenantMiddleware); one mechanism then covers both kinds of failure.
"""

from __future__ import annotations

import select

from django.db.utils import DatabaseError, DatabaseErrorWrapper
from django.utils.functional import cached_property
from django_tenants.postgresql_backend.base import DatabaseWrapper as TenantDatabaseWrapper

from apps.tenancy import replicas


class AliasTaggingErrorWrapper(DatabaseErrorWrapper):
    def __exit__(self, exc_type, exc_value, traceback):
        try:
            return super().__exit__(exc_type, exc_value, traceback)
        except DatabaseError as exc:
            exc.db_alias = self.wrapper.alias
            # Connect failures are recorded by get_new_connection (which knows
            # a real attempt from a PresumedDown); this is a lost session.
            if self.wrapper.connection is not None and replicas.is_connection_failure(exc):
                replicas.connection_lost(self.wrapper.alias, exc)
            raise


class DatabaseWrapper(TenantDatabaseWrapper):
    @cached_property
    def wrap_database_errors(self):
        return AliasTaggingErrorWrapper(self)

    def close_if_health_check_failed(self):
        """The health check at the start of each request, without a round trip.

        Django's check sends `SELECT 1` before the first query of every
        request (CONN_HEALTH_CHECKS), which was a fifth of a cached read's
        statements. Instead: the session is unusable when psycopg already
        knows it broke, or when the idle socket is readable: a server that
        shuts down or terminates a backend says so (an error message, then
        end of file) before closing, and an idle session is otherwise sent
        nothing (no LISTEN here). A server that vanished without a word (a
        cut network) fails the request's first query instead, which is
        tagged and recorded as before and re-run on the shard's other copy
        by TenantMiddleware; the connection is then closed at the end of the
        request (errors_occurred), so the next request reconnects.
        """
        if self.connection is None or not self.health_check_enabled or self.health_check_done:
            return
        if not self.is_usable_locally():
            self.close()
        self.health_check_done = True

    def is_usable_locally(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def get_new_connection(self, conn_params):
        remaining = replicas.down_for(self.alias)
        if remaining:
            raise replicas.PresumedDown(
                f"'{self.alias}' refused a connection moments ago; not trying again for {remaining:.1f} s"
            )
        try:
            return super().get_new_connection(conn_params)
        except self.Database.OperationalError as exc:
            if replicas.is_connection_failure(exc):
                replicas.connect_failed(self.alias, exc)
            raise
