from apps.tenancy import planes
from apps.tenancy.commands import TenantCommand
from apps.tenancy.selectors import tenant_location


class Command(TenantCommand):
    help = "Show where a tenant's data lives: shard, database alias, schema, write state."

    def handle_tenant(self, tenant, options):
        location = tenant_location(slug=tenant.slug)
        for key, value in location.items():
            self.stdout.write(f"{key:<14} {value}")
        if location["alias"]:
            self.stdout.write(f"{'replica':<14} {planes.replica_alias(location['alias']) or '-'}")
