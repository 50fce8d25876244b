from apps.billing.services import subscription_change_plan
from apps.tenancy.commands import TenantCommand


class Command(TenantCommand):
    help = "Move a tenant to another plan (quotas, rate limit and flag targeting follow at once)."

    def add_command_arguments(self, parser):
        parser.add_argument("plan", help="plan code, e.g. free, pro, enterprise")

    def handle_tenant(self, tenant, options):
        previous = tenant.plan.code if tenant.plan_id else "-"
        tenant = subscription_change_plan(tenant=tenant, plan_code=options["plan"], source="command")
        self.stdout.write(self.style.SUCCESS(f"{tenant.slug}: plan {previous} -> {tenant.plan.code}"))
