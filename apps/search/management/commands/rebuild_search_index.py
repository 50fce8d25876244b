from django.core.management.base import CommandError

from apps.search.services import search_rebuild
from apps.tenancy.activation import tenant_activated
from apps.tenancy.commands import TenantCommand
from apps.tenancy.writable import tenant_writable


class Command(TenantCommand):
    help = "Rebuild the full-text index of one tenant or all, in batches; resumes after a crash (re-run it)."
    targets = "choice"
    writes = True
    rerun_hint = "Re-run to resume the rebuild."

    def add_command_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--restart", action="store_true", help="ignore an unfinished rebuild's checkpoint")

    def check_options(self, options):
        if not 1 <= options["batch_size"] <= 10_000:
            raise CommandError("--batch-size must be between 1 and 10000.")

    def handle_tenant(self, tenant, options):
        def progress(done, total):
            self.stdout.write(f"  {tenant.slug}: {done}/{total}")
            # Between batches (each committed with its checkpoint): stop if a
            # move froze the tenant meanwhile; a re-run resumes.
            tenant_writable(tenant)

        with tenant_activated(tenant):
            rebuild = search_rebuild(batch_size=options["batch_size"], restart=options["restart"], progress=progress)
        self.stdout.write(self.style.SUCCESS(f"{tenant.slug}: {rebuild.done} documents indexed"))
