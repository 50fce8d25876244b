"""manage.py export_tenant SLUG [--out PATH] [--resume EXPORT_ID]"""

from __future__ import annotations

import shutil

from django.core.files.storage import default_storage
from django.core.management.base import CommandError

from apps.lifecycle import exporting, services
from apps.lifecycle.models import TenantExport
from apps.tenancy.commands import TenantCommand


class Command(TenantCommand):
    help = ("Export a whole tenant (every table of its schema, its control-plane rows and files) as one tar "
            "archive with a manifest. Runs here, not in a worker; a run that is interrupted goes on from its "
            "last finished table with --resume.")
    rerun_hint = "Run it again with --resume EXPORT_ID to go on from the last finished table."

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("--out", help="also copy the archive to this path")
        parser.add_argument("--resume", metavar="EXPORT_ID", help="go on with an interrupted export of this tenant")

    def handle_tenant(self, tenant, options):
        if options.get("resume"):
            export = TenantExport.objects.filter(pk=options["resume"], tenant=tenant).first()
            if export is None:
                raise CommandError(f"No export {options['resume']} of tenant '{tenant.slug}'.")
        else:
            export = services.export_request(tenant=tenant, requested_by_id=None, enqueue=False)
        self.stdout.write(f"export {export.pk} of {tenant.slug}")
        export = exporting.export_run(export.pk)
        if export is None:
            raise CommandError(f"The export of '{tenant.slug}' is gone: the tenant was erased meanwhile.")
        summary = f"{export.rows_done} rows, {export.parts_done} parts, {export.size_bytes / 1e6:.1f} MB"
        self.stdout.write(f"stored as {export.file_name} ({summary}); manifest sha256 {export.manifest_sha256}")
        if options.get("out"):
            with default_storage.open(export.file_name, "rb") as source, open(options["out"], "wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
            self.stdout.write(self.style.SUCCESS(f"written to {options['out']}"))
