from django.core.management.base import BaseCommand

from apps.tenancy import planes
from apps.tenancy.selectors import shard_list_with_counts


class Command(BaseCommand):
    help = "List shards: state, weight, tenant count, whether a connection and a replica are configured."

    def handle(self, *args, **options):
        shards = list(shard_list_with_counts())
        configured = set(planes.shard_aliases())
        self.stdout.write(f"{'shard':<16} {'alias':<20} {'state':<10} {'weight':>6} {'tenants':>8}  connection")
        for shard in shards:
            if shard.alias not in configured:
                connection = "NOT CONFIGURED"
            else:
                connection = "primary + replica" if planes.replica_alias(shard.alias) else "primary"
            self.stdout.write(
                f"{shard.name:<16} {shard.alias:<20} {shard.state:<10} {shard.weight:>6} {shard.tenant_count:>8}  {connection}"
            )
        self.stdout.write(f"{len(shards)} shard(s), {sum(s.tenant_count for s in shards)} tenant(s)")
