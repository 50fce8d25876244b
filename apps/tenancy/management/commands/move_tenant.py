from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.tenancy.cli import validation_error_to_command_error
from apps.tenancy.models import Shard
from apps.tenancy.moves import tenant_move
from apps.tenancy.selectors import tenant_get


class Command(BaseCommand):
    help = "Move a tenant to another shard: freeze writes, copy, verify, switch, drop the old copy."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("target_shard")

    def handle(self, *args, **options):
        tenant = tenant_get(slug=options["slug"])
        if tenant is None or tenant.is_public:
            raise CommandError(f"No tenant with slug '{options['slug']}'.")
        target = Shard.objects.filter(name=options["target_shard"]).first()
        if target is None:
            raise CommandError(f"No shard named '{options['target_shard']}'. See `manage.py list_shards`.")
        try:
            report = tenant_move(tenant=tenant, target=target, report=lambda line: self.stdout.write(f"  {line}"))
        except ValidationError as exc:
            raise validation_error_to_command_error(exc) from exc
        except Exception as exc:
            raise CommandError(
                f"Move failed: {type(exc).__name__}: {exc}. The tenant stays on its source shard, writes open."
            ) from exc
        rows = sum(t.rows for t in report.tables)
        self.stdout.write(self.style.SUCCESS(
            f"Moved {report.tenant} from {report.source} to {report.target}: {len(report.tables)} tables, "
            f"{rows} rows, {report.bytes_copied / 1e6:.1f} MB copied; writes frozen {report.freeze_seconds:.2f}s, "
            f"total {report.total_seconds:.2f}s"
        ))
