"""A tenant owner in a real browser (Debian's chromium through Playwright),
against a real gunicorn: invites a member, creates and revokes an API key,
filters the audit log. Each step checks what the page shows."""

from __future__ import annotations

import re

import pytest
import requests

from tests.browser import login

pytestmark = pytest.mark.live

OWNER_EMAIL = "browser-owner@alpha.test"
OWNER_PASSWORD = "browser-owner-pass"
INVITEE = "new.colleague@browser.test"


@pytest.fixture
def owner(tenants, django_db_blocker):
    """An owner of alpha, committed (gunicorn sees only committed rows), and
    everything the test makes in alpha's name removed afterwards."""
    from apps.accounts.models import ApiKey, Invitation, User
    from apps.accounts.services import membership_grant
    from apps.audit.models import AuditEntry
    from apps.jobs.models import OutboxMessage
    from apps.tenancy.activation import tenant_activated

    alpha = tenants["alpha"]

    def clean():
        user = User.objects.filter(email=OWNER_EMAIL).first()
        Invitation.objects.filter(tenant_id=alpha.pk, email=INVITEE).delete()
        OutboxMessage.objects.filter(kwargs__to=[INVITEE]).delete()
        if user is not None:
            ApiKey.objects.filter(tenant_id=alpha.pk, created_by=user).delete()
            with tenant_activated(alpha):
                AuditEntry.objects.filter(actor_id=user.pk).delete()
            user.delete()

    with django_db_blocker.unblock():
        clean()
        user = User.objects.create_user(email=OWNER_EMAIL, password=OWNER_PASSWORD)
        membership_grant(user=user, tenant_id=alpha.pk, role="owner")
    yield user
    with django_db_blocker.unblock():
        clean()


@pytest.fixture
def signed_in(page, live_platform, owner):  # noqa: F811
    base = live_platform.tenant_url("alpha")
    login(page, base, OWNER_EMAIL, OWNER_PASSWORD)
    assert "Alpha Inc administration" in page.inner_text("#header")
    return page, base


def flash(tab) -> str:
    return " ".join(tab.locator("ul.messagelist li").all_inner_texts())


def test_owner_invites_a_member(signed_in):
    tab, base = signed_in
    tab.click("text=Members and invitations")
    assert tab.url == f"{base}/admin/members/"
    assert OWNER_EMAIL in tab.inner_text("#members")
    tab.fill("#invite input[name=email]", INVITEE)
    tab.select_option("#invite select[name=role]", "admin")
    tab.click("#invite button[type=submit]")
    tab.wait_for_load_state()
    assert flash(tab) == f"Invitation sent to {INVITEE} as admin."
    row = tab.locator(f'#invitations tr[data-invitation="{INVITEE}"]')
    assert row.count() == 1 and "Admin" in row.inner_text() and OWNER_EMAIL in row.inner_text()

    # A wrong address is explained on the page, the form keeps what was typed.
    tab.fill("#invite input[name=email]", "not an address")
    tab.click("#invite button[type=submit]")
    tab.wait_for_load_state()
    assert "Enter a valid email address" in flash(tab)
    assert tab.input_value("#invite input[name=email]") == "not an address"


def test_owner_creates_an_api_key_sees_it_once_and_revokes_it(signed_in, live_platform):  # noqa: F811
    tab, base = signed_in
    tab.goto(f"{base}/admin/api-keys/")
    tab.fill("#create-api-key input[name=name]", "Browser deploys")
    tab.check("#create-api-key input[name=scopes][value=write]")
    tab.click("#create-api-key button[type=submit]")
    tab.wait_for_load_state()
    secret = tab.inner_text("#new-api-key-value").strip()
    assert "shown this once and never again" in tab.inner_text("#new-api-key")
    assert flash(tab) == "API key 'Browser deploys' created."
    # The API on the same server, by the tenant's host name (no resolver needed for *.localhost).
    api = f"http://127.0.0.1:{live_platform.port}/api/v1/me"
    host = {"Host": f"alpha.localhost:{live_platform.port}"}
    answer = requests.get(api, headers={**host, "Authorization": f"Bearer {secret}"}, timeout=10)
    assert answer.status_code == 200 and answer.json()["api_key"]

    prefix = answer.json()["api_key"]
    tab.goto(f"{base}/admin/api-keys/")  # the next look at the page: the key is gone
    assert tab.locator("#new-api-key").count() == 0 and secret not in tab.content()
    row = tab.locator(f'#api-keys tr[data-key="{prefix}"]')
    assert re.search(r"Browser deploys\s+" + re.escape(prefix) + r"…\s+read, write", row.inner_text())
    assert row.locator(".key-status").inner_text() == "active"

    row.locator("button", has_text="Revoke").click()
    tab.wait_for_load_state()
    assert flash(tab) == f"API key 'Browser deploys' ({prefix}…) was revoked; it no longer works."
    assert tab.locator(f'#api-keys tr[data-key="{prefix}"] .key-status').inner_text().startswith("revoked")
    assert requests.get(api, headers={**host, "Authorization": f"Bearer {secret}"}, timeout=10).status_code == 401


def test_owner_filters_the_audit_log(signed_in, tenants, owner, django_db_blocker):
    from apps.audit.services import audit_record_many
    from apps.observability.context import Actor, actor_var
    from apps.tenancy.activation import tenant_activated

    with django_db_blocker.unblock(), tenant_activated(tenants["alpha"]):
        token = actor_var.set(Actor(type="user", user_id=owner.pk))
        try:
            audit_record_many(action="create", object_type="browser_widget", items=[(n, {}) for n in range(3)])
            audit_record_many(action="delete", object_type="browser_widget", items=[(7, {"name": ["w7", None]})])
        finally:
            actor_var.reset(token)

    tab, base = signed_in
    tab.goto(f"{base}/admin/audit-log/")
    tab.fill("#audit-filter input[name=object_type]", "browser_widget")
    tab.click("#audit-filter button[type=submit]")
    tab.wait_for_load_state()
    entries = tab.locator("#audit-entries tr.audit-entry")
    assert entries.count() == 4

    tab.select_option("#audit-filter select[name=action]", "delete")
    tab.fill("#audit-filter input[name=actor]", OWNER_EMAIL)
    tab.click("#audit-filter button[type=submit]")
    tab.wait_for_load_state()
    assert entries.count() == 1
    only = entries.first
    assert only.locator(".audit-action").inner_text() == "delete"
    assert only.locator(".audit-object").inner_text() == "browser_widget 7"
    assert OWNER_EMAIL in only.inner_text() and only.locator(".audit-changes").inner_text() == "name: w7 → —"

    tab.fill("#audit-filter input[name=since]", "2026-03-02")  # a date input takes ISO days
    tab.fill("#audit-filter input[name=until]", "2026-03-01")
    tab.click("#audit-filter button[type=submit]")
    tab.wait_for_load_state()
    assert "The last day must not be before the first day." in flash(tab)
    assert entries.count() == 0
