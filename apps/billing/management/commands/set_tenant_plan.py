from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.billing.services import subscription_change_plan
from apps.tenancy.cli import validation_error_to_command_error
from apps.tenancy.selectors import tenant_get


class Command(BaseCommand):
    help = "Move a tenant to another plan (quotas, rate limit and flag targeting follow at once)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("plan", help="plan code, e.g. free, pro, enterprise")

    def handle(self, *args, **options):
        tenant = tenant_get(slug=options["slug"])
        if tenant is None:
            raise CommandError(f"No tenant with slug '{options['slug']}'.")
        previous = tenant.plan.code if tenant.plan_id else "-"
        try:
            tenant = subscription_change_plan(tenant=tenant, plan_code=options["plan"], source="command")
        except ValidationError as exc:
            raise validation_error_to_command_error(exc) from exc
        self.stdout.write(self.style.SUCCESS(f"{tenant.slug}: plan {previous} -> {tenant.plan.code}"))
