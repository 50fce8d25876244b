from django.core.management.base import BaseCommand, CommandError

from apps.search.services import search_rebuild
from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant
from apps.tenancy.moves import TenantFrozen, tenant_writable


class Command(BaseCommand):
    help = "Rebuild the full-text index of one tenant or all, in batches; resumes after a crash."

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--tenant", help="tenant slug")
        target.add_argument("--all", action="store_true")
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--restart", action="store_true", help="ignore an unfinished rebuild's checkpoint")
        parser.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                            help="wait this long for a frozen tenant (a move switching it) to accept writes")

    def handle(self, *args, **options):
        if not 1 <= options["batch_size"] <= 10_000:
            raise CommandError("--batch-size must be between 1 and 10000.")
        if options["wait"] < 0:
            raise CommandError("--wait must be 0 or more seconds.")
        tenants = Tenant.objects.select_related("shard").exclude(shard=None).order_by("slug")
        if options["tenant"]:
            tenants = tenants.filter(slug=options["tenant"])
            if not tenants:
                raise CommandError(f"No tenant with slug '{options['tenant']}'.")
        failed = []
        for tenant in tenants:
            def progress(done, total, tenant=tenant):
                self.stdout.write(f"  {tenant.slug}: {done}/{total}")
                # Between batches (each committed with its checkpoint): stop
                # if a move froze the tenant meanwhile; a re-run resumes.
                tenant_writable(tenant)

            try:
                tenant = tenant_writable(tenant, wait_seconds=options["wait"],
                                         report=lambda line: self.stdout.write(f"  {line}"))
                with tenant_activated(tenant):
                    rebuild = search_rebuild(batch_size=options["batch_size"], restart=options["restart"],
                                             progress=progress)
            except TenantFrozen as exc:
                if options["tenant"]:
                    raise CommandError(f"{exc} Re-run to resume the rebuild.") from exc
                failed.append(tenant.slug)
                self.stderr.write(f"{tenant.slug}: {exc}")
                continue
            except Exception as exc:
                failed.append(tenant.slug)
                self.stderr.write(f"{tenant.slug}: FAILED: {exc}")
                continue
            self.stdout.write(self.style.SUCCESS(f"{tenant.slug}: {rebuild.done} documents indexed"))
        if failed:
            raise CommandError(f"{len(failed)} tenant(s) failed: {', '.join(failed)}. Re-run to resume.")
