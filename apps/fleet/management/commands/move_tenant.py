import time

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from apps.fleet import moves
from apps.fleet.records import MoveInProgress, open_move
from apps.tenancy.commands import TenantCommand
from apps.tenancy.models import Move, Shard


class Command(TenantCommand):
    help = (
        "Move a tenant to another shard: freeze writes (a lease), copy, verify, switch, drop the old copy. "
        "--resume finishes (or redoes) a move whose mover stopped; --abort rolls one back."
    )

    def add_command_arguments(self, parser):
        parser.add_argument("target_shard", nargs="?")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--resume", action="store_true", help="continue the tenant's unfinished move")
        mode.add_argument("--abort", action="store_true", help="roll back the tenant's unfinished move")

    def handle_tenant(self, tenant, options):
        if tenant.is_public:
            raise CommandError(f"No tenant with slug '{options['slug']}'.")
        started = time.monotonic()

        def say(line: str) -> None:
            self.stdout.write(f"  {time.monotonic() - started:6.1f}s  {line}")

        try:
            if options["resume"] or options["abort"]:
                move = open_move(tenant)
                if move is None:
                    raise CommandError(f"Tenant '{tenant.slug}' has no unfinished move.")
                action = moves.move_resume if options["resume"] else moves.move_abort
                report = action(move=move, report=say)
            else:
                if not options["target_shard"]:
                    raise CommandError("Name the target shard (or use --resume / --abort).")
                target = Shard.objects.filter(name=options["target_shard"]).first()
                if target is None:
                    raise CommandError(f"No shard named '{options['target_shard']}'. See `manage.py list_shards`.")
                report = moves.tenant_move(tenant=tenant, target=target, report=say)
        except (ValidationError, CommandError):
            raise
        except MoveInProgress as exc:
            raise CommandError(str(exc)) from exc
        except Exception as exc:
            raise CommandError(f"Move failed: {type(exc).__name__}: {exc}. {self.where_now(tenant)}") from exc
        if report.outcome == Move.Phase.ROLLED_BACK:
            self.stdout.write(self.style.WARNING(
                f"Rolled back move {report.move_id}: {report.tenant} stays on {report.source}, writes open."))
            return
        if not report.tables and options["resume"]:
            self.stdout.write(self.style.SUCCESS(
                f"Finished move {report.move_id}: {report.tenant} lives on {report.target}; the old copy and the "
                "move's replication objects are dropped."))
            return
        path = Move.objects.filter(pk=report.move_id).values_list("path", flat=True).first() or "?"
        self.stdout.write(self.style.SUCCESS(
            f"Moved {report.tenant} from {report.source} to {report.target} (move {report.move_id}, {path} path): "
            f"{len(report.tables)} tables, {report.rows_copied} rows, {report.bytes_copied / 1e6:.1f} MB copied; "
            f"writes frozen {report.freeze_seconds:.2f}s, total {report.total_seconds:.2f}s"
        ))

    @staticmethod
    def where_now(tenant) -> str:
        """What the failure left, read back from the registry rather than assumed."""
        tenant.refresh_from_db()
        move = Move.objects.filter(tenant=tenant).select_related("source", "target").first()
        if move is None or move.phase == Move.Phase.ROLLED_BACK:
            return "The tenant stays on its source shard, writes open."
        if move.finished:
            return f"The tenant lives on {tenant.shard.name}."
        if tenant.shard_id == move.target_id:
            return (f"The tenant now lives on {move.target.name}, writes open; the old copy "
                    f"{move.retired_schema} on {move.source.name} is left: run `move_tenant {tenant.slug} --resume`.")
        return (f"Move {move.pk} is unfinished in phase {move.phase}; run `move_tenant {tenant.slug} --resume` "
                "or `--abort` (the recovery task settles it otherwise). No acknowledged write is lost.")
