from django.core.management.base import BaseCommand, CommandError

from apps.tenancy.selectors import rebalance_plan


class Command(BaseCommand):
    help = "Show which tenant moves would even out the shards (by tenant count and weight)."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", required=True,
                            help="print the plan only (moves are made one by one with move_tenant)")

    def handle(self, *args, **options):
        if not options["dry_run"]:
            raise CommandError("Only --dry-run is supported; run move_tenant for each planned move.")
        moves = rebalance_plan()
        if not moves:
            self.stdout.write("Shards are balanced; no moves planned.")
            return
        for slug, source, target in moves:
            self.stdout.write(f"move_tenant {slug} {target}    # from {source}")
        self.stdout.write(f"{len(moves)} move(s) planned")
