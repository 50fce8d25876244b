"""manage.py offboard_tenant SLUG --reason ... [--now] | --undo"""

from __future__ import annotations

import getpass

from django.core.management.base import CommandError

from apps.lifecycle import erasure, services
from apps.tenancy.commands import TenantCommand


class Command(TenantCommand):
    help = ("Delete a tenant: suspended at once, erased after the grace period "
            "(TENANT_OFFBOARDING_GRACE_DAYS) by the beat task, or at once with --now. --undo takes it back "
            "within the grace period.")

    def add_command_arguments(self, parser) -> None:
        parser.add_argument("--reason", default="", help="why (kept in the erasure record)")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--now", action="store_true", help="erase now instead of after the grace period")
        action.add_argument("--undo", action="store_true", help="cancel the deletion; the tenant is back")

    def check_options(self, options: dict) -> None:
        if not options["undo"] and not options["reason"].strip():
            raise CommandError("--reason is required: say why this tenant is deleted.")

    def handle_tenant(self, tenant, options):
        who = f"command by {getpass.getuser()}"
        if options["undo"]:
            offboarding = services.offboard_undo(tenant=tenant, cancelled_by=who)
            self.stdout.write(self.style.SUCCESS(f"{tenant.slug}: deletion cancelled; status {tenant.status} "
                                                 f"-> {offboarding.previous_status}"))
            return
        offboarding = services.offboard_request(tenant=tenant, requested_as="command", requested_by=who,
                                                reason=options["reason"], now=options["now"])
        if not options["now"]:
            self.stdout.write(self.style.SUCCESS(
                f"{tenant.slug}: suspended; erased after {offboarding.erase_after:%Y-%m-%d %H:%M} UTC "
                f"(undo: offboard_tenant {tenant.slug} --undo)"))
            return
        erasure.erase_claimed(offboarding.pk)
        offboarding.refresh_from_db()
        if offboarding.status != offboarding.Status.ERASED:
            raise CommandError(f"{tenant.slug}: erasure failed: {offboarding.error}")
        self.stdout.write(self.style.SUCCESS(f"{tenant.slug}: erased (record {offboarding.pk})"))
