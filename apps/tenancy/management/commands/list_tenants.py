from django.core.management.base import BaseCommand

from apps.tenancy.selectors import tenant_list, tenant_primary_hostname


class Command(BaseCommand):
    help = "List tenants with their plan, status, shard, schema and host."

    def handle(self, *args, **options):
        tenants = list(tenant_list().select_related("plan", "shard").prefetch_related("domains"))
        self.stdout.write(f"{'slug':<24} {'plan':<11} {'status':<10} {'shard':<12} {'schema':<28} host")
        for tenant in tenants:
            host = tenant_primary_hostname(tenant) or "-"
            plan = tenant.plan.code if tenant.plan else "-"
            shard = tenant.shard.name if tenant.shard else "-"
            status = "frozen" if tenant.writes_frozen else tenant.status
            self.stdout.write(f"{tenant.slug:<24} {plan:<11} {status:<10} {shard:<12} {tenant.schema_name:<28} {host}")
        self.stdout.write(f"{len(tenants)} tenant(s)")
