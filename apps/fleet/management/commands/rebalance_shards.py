from django.core.management.base import BaseCommand, CommandError

from apps.fleet.moves import rebalance_run
from apps.tenancy.placement import rebalance_plan


class Command(BaseCommand):
    help = (
        "Even out the shards (by tenant count and weight): --dry-run prints the planned moves, --execute makes "
        "them one by one (at most --max-moves; run again to continue)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="print the plan only")
        parser.add_argument("--execute", action="store_true", help="make the planned moves, one at a time")
        parser.add_argument("--max-moves", type=int, default=10, help="moves in this run (default 10)")

    def handle(self, *args, **options):
        if options["dry_run"] == options["execute"]:
            raise CommandError("Say --dry-run to see the plan, or --execute to make its moves.")
        if options["max_moves"] < 1:
            raise CommandError("--max-moves must be at least 1.")
        if options["dry_run"]:
            moves = rebalance_plan()
            if not moves:
                self.stdout.write("Shards are balanced; no moves planned.")
                return
            for slug, source, target in moves:
                self.stdout.write(f"move_tenant {slug} {target}    # from {source}")
            self.stdout.write(f"{len(moves)} move(s) planned")
            return
        try:
            done = rebalance_run(max_moves=options["max_moves"], report=lambda line: self.stdout.write(line))
        except Exception as exc:
            raise CommandError(f"Rebalance stopped: {type(exc).__name__}: {exc}. Run it again to continue "
                               "(settle an unfinished move with `move_tenant SLUG --resume` or `--abort`).") from exc
        left = len(rebalance_plan())
        self.stdout.write(self.style.SUCCESS(
            f"{len(done)} move(s) made; {left} left in the plan" + ("" if not left else " (run again)")))
