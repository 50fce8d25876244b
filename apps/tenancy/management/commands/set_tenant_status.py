from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.tenancy.cli import validation_error_to_command_error
from apps.tenancy.models import Tenant
from apps.tenancy.selectors import tenant_get
from apps.tenancy.services import tenant_set_status


class Command(BaseCommand):
    help = "Suspend or reactivate a tenant."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("status", choices=Tenant.Status.values)

    def handle(self, *args, **options):
        tenant = tenant_get(slug=options["slug"])
        if tenant is None:
            raise CommandError(f"No tenant with slug '{options['slug']}'.")
        try:
            tenant_set_status(tenant=tenant, status=options["status"])
        except ValidationError as exc:
            raise validation_error_to_command_error(exc) from exc
        self.stdout.write(self.style.SUCCESS(f"Tenant {tenant.slug} is now {tenant.status}."))
