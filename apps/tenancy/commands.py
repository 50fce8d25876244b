"""The base of every management command that acts on tenants.

One place for what each such command used to spell out itself: the tenant
named by its slug (or every tenant with ``--all``) or a clear CommandError,
``--wait`` for a tenant whose writes a move has frozen, a ValidationError as
one readable line per field, and failures collected into the exit code so
that one bad tenant neither stops the others nor passes unnoticed.

django-tenants ships ``tenant_command`` / ``all_tenants_command`` for running
a command per schema; they know one database and no write freeze, so this
base stays ours (the shard routing and the freeze are).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from .cli import validation_error_to_command_error
from .models import Tenant
from .writable import TenantFrozen, tenant_writable


def tenant_or_error(slug: str) -> Tenant:
    """The tenant with this slug, or a CommandError that names the slug."""
    tenant = Tenant.objects.select_related("shard").filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"No tenant with slug '{slug}'.")
    return tenant


class TenantCommand(BaseCommand):
    """Subclasses implement ``handle_tenant(tenant, options)``.

    ``targets``: "slug" (one positional slug), or "choice" (``--tenant SLUG``
    or ``--all``). ``writes``: the command writes into the tenant, so a frozen
    tenant is refused (or waited for, with ``--wait``) before it runs.
    """

    targets = "slug"
    writes = False
    all_label = "every tenant, one after another"
    rerun_hint = ""  # appended to the failure message, e.g. "Re-run to resume."

    def add_arguments(self, parser):
        if self.targets == "choice":
            target = parser.add_mutually_exclusive_group(required=True)
            target.add_argument("--tenant", help="tenant slug")
            target.add_argument("--all", action="store_true", help=self.all_label)
        else:
            parser.add_argument("slug")
        if self.writes:
            parser.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                                help="wait this long for a frozen tenant (a move switching it) to accept "
                                     "writes (default: refuse at once)")
        self.add_command_arguments(parser)

    def add_command_arguments(self, parser) -> None:
        """The command's own arguments."""

    def check_options(self, options: dict) -> None:
        """Refuse bad option values with a CommandError before any tenant is touched."""

    def handle_tenant(self, tenant: Tenant, options: dict):
        raise NotImplementedError

    def selected_tenants(self, options: dict) -> Iterable[Tenant]:
        slug = options.get("slug") or options.get("tenant")
        if slug:
            return [tenant_or_error(slug)]
        return Tenant.objects.select_related("shard").exclude(schema_name="public").exclude(shard=None).order_by(
            "slug")

    def handle(self, *args, **options):
        if options.get("wait", 0) < 0:
            raise CommandError("--wait must be 0 or more seconds.")
        self.check_options(options)
        tenants = self.selected_tenants(options)
        single = not options.get("all")
        failures: list[str] = []
        for tenant in tenants:
            try:
                tenant = self._writable(tenant, options)
                self.handle_tenant(tenant, options)
            except ValidationError as exc:
                failures.append(self._failed(tenant, validation_error_to_command_error(exc), single))
            except (CommandError, TenantFrozen) as exc:
                # A tenant frozen before or during the work: a re-run resumes it.
                failures.append(self._failed(tenant, exc, single))
            except Exception as exc:
                if single and not self.writes:
                    raise
                failures.append(self._failed(tenant, f"FAILED: {exc}", single))
        if failures:
            hint = f" {self.rerun_hint}" if self.rerun_hint else ""
            if single and len(failures) == 1:
                raise CommandError(f"{failures[0]}{hint}")
            raise CommandError(f"{len(failures)} tenant(s) failed: {', '.join(failures)}.{hint}")

    def _writable(self, tenant: Tenant, options: dict) -> Tenant:
        if not self.writes:
            return tenant
        try:
            return tenant_writable(tenant, wait_seconds=options.get("wait", 0),
                                   report=lambda line: self.stdout.write(f"  {line}"))
        except TenantFrozen as exc:
            raise CommandError(str(exc)) from exc

    def _failed(self, tenant: Tenant, error, single: bool) -> str:
        """Report one tenant's failure; what the exit message says of it."""
        if single:
            return str(error)
        self.stderr.write(f"{tenant.slug}: {error}")
        return tenant.slug
