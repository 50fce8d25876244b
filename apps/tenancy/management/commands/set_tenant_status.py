from apps.tenancy.commands import TenantCommand
from apps.tenancy.models import Tenant
from apps.tenancy.services import tenant_set_status


class Command(TenantCommand):
    help = "Suspend or reactivate a tenant."

    def add_command_arguments(self, parser):
        parser.add_argument("status", choices=Tenant.Status.values)

    def handle_tenant(self, tenant, options):
        tenant_set_status(tenant=tenant, status=options["status"])
        self.stdout.write(self.style.SUCCESS(f"Tenant {tenant.slug} is now {tenant.status}."))
