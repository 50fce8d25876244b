from django.core.management.base import BaseCommand, CommandError

from apps.tenancy import planes
from apps.tenancy.selectors import tenant_location


class Command(BaseCommand):
    help = "Show where a tenant's data lives: shard, database alias, schema, write state."

    def add_arguments(self, parser):
        parser.add_argument("slug")

    def handle(self, *args, **options):
        location = tenant_location(slug=options["slug"])
        if location is None:
            raise CommandError(f"No tenant with slug '{options['slug']}'.")
        for key, value in location.items():
            self.stdout.write(f"{key:<14} {value}")
        if location["alias"]:
            self.stdout.write(f"{'replica':<14} {planes.replica_alias(location['alias']) or '-'}")
