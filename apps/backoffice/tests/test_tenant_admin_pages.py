"""The tenant admin's organisation pages: members and invitations, API keys,
the audit log, exports and usage, each with its actions, its role rules, and
no way into another tenant's data."""

from __future__ import annotations

import datetime as dt
import itertools
import re

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone

from apps.accounts.models import ApiKey, Invitation, Membership, User
from apps.accounts.services import api_key_create, invitation_create, membership_grant
from apps.audit.models import AuditEntry
from apps.audit.services import audit_record_many
from apps.jobs.models import OutboxMessage
from apps.reports.models import ExportRequest
from apps.tenancy.activation import tenant_activated

pytestmark = pytest.mark.django_db

PAGES = ["members/", "api-keys/", "audit-log/", "exports/", "usage/"]
_people = itertools.count()


def person(tenant, role: str) -> User:
    user = User.objects.create_user(email=f"{role}{next(_people)}@{tenant.slug}.people", password="password-123")
    membership_grant(user=user, tenant_id=tenant.pk, role=role)
    return user


def browser_for(tenant, user: User | None = None, *, host_of=None) -> Client:
    """A client on ``host_of``'s host (default ``tenant``), signed in as ``user``."""
    client = Client(HTTP_HOST=f"{(host_of or tenant).slug}.localhost", enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    return client


def post(client: Client, path: str, data: dict | None = None, *, follow: bool = True):
    """Post like the page's form does: with the CSRF token from a page of the site."""
    token = client.cookies.get("csrftoken")
    if token is None:
        client.get("/admin/members/")
        token = client.cookies["csrftoken"]
    return client.post(f"/admin/{path}", {**(data or {}), "csrfmiddlewaretoken": token.value}, follow=follow)


def text(response) -> str:
    """The page's visible text, tags removed, spaces collapsed."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#x27;", "'").replace("&amp;", "&")


def key_form(client: Client, **data) -> dict:
    """The API key form's fields as the page renders them (with its one-off
    submission key), then ``data``."""
    page = client.get("/admin/api-keys/").content.decode()
    submission = re.search(r'name="submission" value="([^"]+)"', page).group(1)
    return {"submission": submission, **data}


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def audit_of(tenant, **filters):
    with tenant_activated(tenant):
        return list(AuditEntry.objects.filter(**filters).order_by("-occurred_at"))


@pytest.fixture
def owner(alpha):
    return person(alpha, "owner")


@pytest.fixture
def alpha_owner(alpha, owner):
    return browser_for(alpha, owner)


# --- access ------------------------------------------------------------------


def test_the_login_form_opens_the_pages_to_an_owner_and_the_index_links_them(alpha):
    client = browser_for(alpha)
    client.get("/admin/login/")
    response = client.post("/admin/login/?next=/admin/", {
        "username": "owner@alpha.test", "password": "alpha-pass",
        "csrfmiddlewaretoken": client.cookies["csrftoken"].value}, follow=True)
    assert response.status_code == 200 and "Alpha Inc administration" in text(response)
    for label, href in [("Members and invitations", "/admin/members/"), ("API keys", "/admin/api-keys/"),
                        ("Audit log", "/admin/audit-log/"), ("Exports", "/admin/exports/"), ("Usage", "/admin/usage/")]:
        assert f'href="{href}">{label}</a>' in response.content.decode()


@pytest.mark.parametrize("path", PAGES)
def test_each_page_renders_under_the_strict_policy_without_inline_script(alpha_owner, path):
    response = alpha_owner.get(f"/admin/{path}")
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert not re.search(r"<script\b(?![^>]*\bsrc=)", response.content.decode()), "no inline script"
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_are_sent_to_the_login_page_and_change_nothing(alpha, role):
    target = person(alpha, "member")
    client = browser_for(alpha, person(alpha, role))
    for path in PAGES:
        response = client.get(f"/admin/{path}")
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.get("/admin/login/")
    response = post(client, f"members/{Membership.objects.get(user=target).pk}/role/", {"role": "admin"},
                    follow=False)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    response = post(client, "invitations/", {"email": "sneaky@people.test", "role": "admin"}, follow=False)
    assert response.status_code == 302
    assert Membership.objects.get(user=target).role == "member"
    assert not Invitation.objects.filter(email="sneaky@people.test").exists()


def test_a_form_posted_without_its_csrf_token_is_refused(alpha, alpha_owner):
    response = alpha_owner.post("/admin/invitations/", {"email": "csrf@people.test", "role": "member"})
    assert response.status_code == 403
    assert not Invitation.objects.filter(email="csrf@people.test").exists()


# --- members and invitations --------------------------------------------------


def test_members_page_lists_members_with_their_roles(alpha, alpha_owner):
    person(alpha, "viewer")
    page = text(alpha_owner.get("/admin/members/"))
    assert "owner@alpha.test Owner" in page
    viewer = Membership.objects.filter(tenant_id=alpha.pk, role="viewer").select_related("user").first()
    assert f"{viewer.user.email} Viewer" in page


def test_invite_by_email_queues_the_email_records_the_audit_and_lists_it(alpha, owner, alpha_owner):
    response = post(alpha_owner, "invitations/", {"email": "New.Person@People.test", "role": "admin"})
    assert response.status_code == 200
    assert messages_of(response) == ["Invitation sent to new.person@people.test as admin."]
    page = text(response)
    assert "Pending invitations (1)" in page and f"new.person@people.test Admin {owner.email}" in page
    invitation = Invitation.objects.get(tenant_id=alpha.pk, email="new.person@people.test")
    email = OutboxMessage.objects.filter(kwargs__template="invitation", kwargs__to=["new.person@people.test"]).get()
    assert email.kwargs["context"]["role"] == "admin"
    [entry] = audit_of(alpha, object_type="invitation", object_id=str(invitation.pk))
    assert (entry.action, entry.actor_type, entry.actor_id) == ("create", "user", owner.pk)


@pytest.mark.parametrize(("data", "message"), [
    ({"email": "not-an-address", "role": "member"}, "Email: Enter a valid email address."),
    ({"email": "x@people.test", "role": "owner"}, "Role: Select a valid choice. owner is not one of the available"),
    ({"email": "", "role": "member"}, "Email: This field is required."),
    ({"email": "owner@alpha.test", "role": "member"}, "owner@alpha.test is already a member of this tenant."),
])
def test_a_bad_invitation_is_refused_with_a_message_on_the_page(alpha, alpha_owner, data, message):
    response = post(alpha_owner, "invitations/", data)
    assert response.status_code == 400
    # The admin shows messages with a capital first letter.
    assert message in " ".join(messages_of(response)) and message.split(": ")[-1][:30].lower() in text(response).lower()
    assert not Invitation.objects.filter(tenant_id=alpha.pk).exists()


def test_a_pending_invitation_is_revoked_and_its_token_stops_working(alpha, alpha_owner):
    created = invitation_create(tenant_id=alpha.pk, email="later@people.test", role="member", invited_by=None)
    response = post(alpha_owner, f"invitations/{created.invitation.pk}/revoke/")
    assert messages_of(response) == ["The invitation to later@people.test was withdrawn."]
    assert "No pending invitations." in text(response)
    assert not Invitation.objects.filter(pk=created.invitation.pk).exists()
    assert [e.action for e in audit_of(alpha, object_type="invitation")] == ["delete", "create"]
    again = post(alpha_owner, f"invitations/{created.invitation.pk}/revoke/")
    assert messages_of(again) == ["No open invitation by that id in this tenant."]


def test_an_owner_changes_a_role_and_removes_a_member(alpha, alpha_owner):
    member = person(alpha, "member")
    membership = Membership.objects.get(user=member, tenant_id=alpha.pk)
    response = post(alpha_owner, f"members/{membership.pk}/role/", {"role": "admin"})
    assert messages_of(response) == [f"{member.email} is now an admin."]
    assert f"{member.email} Admin" in text(response)
    [entry] = audit_of(alpha, object_type="membership", object_id=str(membership.pk))
    assert entry.changes == {"role": ["member", "admin"]}
    response = post(alpha_owner, f"members/{membership.pk}/remove/")
    assert messages_of(response) == [f"{member.email} was removed from this organisation."]
    assert member.email not in text(response)
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert [(e.action, e.changes) for e in audit_of(alpha, object_type="membership", object_id=str(membership.pk))] \
        == [("delete", {"user_id": [member.pk, None], "role": ["admin", None]}), ("update", {"role": ["member", "admin"]})]


def test_owner_rules_are_the_services_and_their_refusals_are_shown(alpha, owner, alpha_owner):
    admin_user = person(alpha, "admin")
    as_admin = browser_for(alpha, admin_user)
    member = Membership.objects.get(user=person(alpha, "member"))
    owner_row = Membership.objects.get(user=owner, tenant_id=alpha.pk)
    refusal = "Only an owner can grant, take away or remove the owner role."
    assert messages_of(post(as_admin, f"members/{member.pk}/role/", {"role": "owner"})) == [refusal]
    assert messages_of(post(as_admin, f"members/{owner_row.pk}/remove/")) == [refusal]
    assert messages_of(post(as_admin, f"members/{owner_row.pk}/role/", {"role": "viewer"})) == [refusal]
    # An admin may still manage non-owners.
    assert messages_of(post(as_admin, f"members/{member.pk}/role/", {"role": "viewer"}))[0].endswith("is now a viewer.")
    # The last owner cannot step down, even by their own hand.
    first_owner = Membership.objects.get(user__email="owner@alpha.test", tenant_id=alpha.pk)
    post(alpha_owner, f"members/{first_owner.pk}/remove/")
    response = post(alpha_owner, f"members/{owner_row.pk}/role/", {"role": "admin"})
    assert messages_of(response) == ["A tenant keeps at least one owner."]
    assert Membership.objects.get(pk=owner_row.pk).role == "owner"
    bad = post(alpha_owner, f"members/{member.pk}/role/", {"role": "emperor"})
    assert messages_of(bad) == ["Role: Select a valid choice. emperor is not one of the available choices."]


# --- API keys ----------------------------------------------------------------


def test_an_api_key_is_shown_once_works_and_stops_working_when_revoked(alpha, owner, alpha_owner):
    form = key_form(alpha_owner, name="CI deploys", scopes=["read", "write"])
    response = post(alpha_owner, "api-keys/create/", form)
    assert response.status_code == 200
    secret = re.search(r'<code id="new-api-key-value">([^<]+)</code>', response.content.decode()).group(1)
    assert "shown this once and never again" in text(response)
    api_key = ApiKey.objects.get(tenant_id=alpha.pk, name="CI deploys")
    assert secret.startswith(api_key.prefix) or api_key.prefix in secret
    assert api_key.scopes == ["read", "write"] and api_key.created_by == owner
    [entry] = audit_of(alpha, object_type="api_key", object_id=str(api_key.pk))
    assert entry.action == "create" and entry.actor_id == owner.pk

    listing = alpha_owner.get("/admin/api-keys/")
    assert secret not in listing.content.decode()
    row = f"CI deploys {api_key.prefix}… read, write"
    assert row in text(listing) and "never active" in text(listing)

    api = Client(HTTP_HOST="alpha.localhost", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api.get("/api/v1/me").status_code == 200
    response = post(alpha_owner, f"api-keys/{api_key.pk}/revoke/")
    assert messages_of(response) == [f"API key 'CI deploys' ({api_key.prefix}…) was revoked; it no longer works."]
    assert "revoked" in text(response).split(api_key.prefix)[1][:80]
    assert api.get("/api/v1/me").status_code == 401
    again = post(alpha_owner, f"api-keys/{api_key.pk}/revoke/")
    assert messages_of(again) == ["'CI deploys' was already revoked."]


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "no scopes"}, "Scopes: This field is required."),
    ({"name": "", "scopes": ["read"]}, "Name: This field is required."),
    ({"name": "x", "scopes": ["root"]}, "Scopes: Select a valid choice. root is not one of the available choices."),
    ({"name": "n" * 101, "scopes": ["read"]}, "Name: Ensure this value has at most 100 characters (it has 101)."),
])
def test_a_bad_api_key_request_is_refused_with_a_message(alpha, alpha_owner, data, message):
    response = post(alpha_owner, "api-keys/create/", key_form(alpha_owner, **data))
    assert response.status_code == 400 and messages_of(response) == [message]
    assert "new-api-key-value" not in response.content.decode()
    assert not ApiKey.objects.filter(tenant_id=alpha.pk).exists()


def test_the_plan_quota_on_api_keys_is_enforced_with_a_message(alpha, owner, alpha_owner):
    from apps.billing.selectors import plan_of

    limit = plan_of(alpha).max_api_keys
    for n in range(limit):
        api_key_create(tenant_id=alpha.pk, name=f"k{n}", scopes=["read"], created_by=owner)
    form = key_form(alpha_owner, name="one too many", scopes=["read"])
    response = post(alpha_owner, "api-keys/create/", form)
    assert response.status_code == 400
    assert f"allows {limit:,} api keys; this would make {limit + 1:,}" in messages_of(response)[0]
    assert not ApiKey.objects.filter(name="one too many").exists()
    # Refused, so the same form may be sent again once there is room.
    ApiKey.objects.filter(tenant_id=alpha.pk, name="k0").delete()
    assert post(alpha_owner, "api-keys/create/", form).status_code == 200
    assert ApiKey.objects.filter(name="one too many").count() == 1


def test_reloading_the_page_that_showed_a_new_key_creates_no_second_key(alpha, owner, alpha_owner):
    form = key_form(alpha_owner, name="Reloaded", scopes=["read"])
    first = post(alpha_owner, "api-keys/create/", form)
    assert first.status_code == 200 and "new-api-key-value" in first.content.decode()
    again = post(alpha_owner, "api-keys/create/", form, follow=False)  # the browser's reload sends it again
    assert again.status_code == 302 and again["Location"] == "/admin/api-keys/"
    listing = alpha_owner.get(again["Location"])
    assert "That form was sent already" in " ".join(messages_of(listing))
    assert "new-api-key-value" not in listing.content.decode()
    assert ApiKey.objects.filter(tenant_id=alpha.pk, name="Reloaded").count() == 1
    # A fresh form is a new request.
    assert post(alpha_owner, "api-keys/create/", key_form(alpha_owner, name="Reloaded", scopes=["read"])) \
        .status_code == 200
    assert ApiKey.objects.filter(tenant_id=alpha.pk, name="Reloaded").count() == 2


# --- audit log -----------------------------------------------------------------


def _seed_audit(tenant, owner, other):
    """Entries by two people on three days."""
    from apps.observability.context import Actor, actor_var

    now = timezone.now()
    token = actor_var.set(Actor(type="user", user_id=owner.pk))
    try:
        with tenant_activated(tenant):
            audit_record_many(action="create", object_type="document", items=[(n, {"title": [None, f"d{n}"]})
                                                                                  for n in range(3)])
            actor_var.set(Actor(type="user", user_id=other.pk))
            audit_record_many(action="update", object_type="api_key", items=[(9, {"name": ["a", "b"]})])
            AuditEntry.objects.filter(object_type="document", object_id="0").update(
                occurred_at=now - dt.timedelta(days=3))
    finally:
        actor_var.reset(token)
    return now


def test_the_audit_log_filters_by_actor_action_object_type_and_days(alpha, owner, alpha_owner):
    other = person(alpha, "admin")
    now = _seed_audit(alpha, owner, other)
    everything = text(alpha_owner.get("/admin/audit-log/"))
    assert everything.count(" create document ") == 3 and " update api_key 9 " in everything

    by_other = text(alpha_owner.get("/admin/audit-log/", {"actor": other.email}))
    assert " update api_key 9 " in by_other and "create document" not in by_other
    assert " update api_key 9 name: a → b " in by_other
    by_action = text(alpha_owner.get("/admin/audit-log/", {"action": "create"}))
    assert by_action.count(" create document ") == 3 and "api_key 9" not in by_action
    by_type = text(alpha_owner.get("/admin/audit-log/", {"object_type": "api_key"}))
    assert "api_key 9" in by_type and "document" not in by_type.split("Entries")[1]
    today = timezone.localdate(now).isoformat()
    recent = text(alpha_owner.get("/admin/audit-log/", {"since": today, "until": today, "object_type": "document"}))
    assert recent.count(" create document ") == 2 and "document 0 " not in recent
    nobody = alpha_owner.get("/admin/audit-log/", {"actor": "nobody@nowhere.test"})
    assert nobody.status_code == 200 and "No entries match these filters." in text(nobody)


@pytest.mark.parametrize(("params", "message"), [
    ({"since": "2026-02-30"}, "From (day): Enter a valid date."),
    ({"since": "2026-03-02", "until": "2026-03-01"}, "To (day, inclusive): The last day must not be before the first"),
    ({"until": "9999-12-31"}, "To (day, inclusive): Choose a day from 1970-01-01 to 9998-12-31."),
    ({"since": "0001-01-01"}, "From (day): Choose a day from 1970-01-01 to 9998-12-31."),
    ({"action": "explode"}, "Action: Select a valid choice. explode is not one of the available choices."),
    ({"actor": "not an email"}, "Actor (email): Enter a valid email address."),
    ({"before": "yesterday~x"}, "That page link is not valid; open the newest entries again."),
])
def test_bad_audit_filters_are_explained_on_the_page(alpha_owner, params, message):
    response = alpha_owner.get("/admin/audit-log/", params)
    assert response.status_code == 400
    assert message in messages_of(response)[0]


def test_the_audit_log_pages_through_older_entries(alpha, owner, alpha_owner):
    with tenant_activated(alpha):
        audit_record_many(action="create", object_type="document", items=[(n, {}) for n in range(60)])
        AuditEntry.objects.filter(object_type="document").update(occurred_at=timezone.now())  # all at one moment
    first = alpha_owner.get("/admin/audit-log/", {"object_type": "document"})
    assert text(first).count(" create document ") == 50
    older = re.search(r'href="(\?[^"]+)" rel="next"', first.content.decode()).group(1).replace("&amp;", "&")
    second = alpha_owner.get("/admin/audit-log/" + older)
    ids = re.findall(r" create document (\d+) ", text(first)) + re.findall(r" create document (\d+) ", text(second))
    assert sorted(map(int, ids)) == list(range(60)) and 'rel="next"' not in second.content.decode()
    assert "Newest entries" in text(second)


# --- exports ---------------------------------------------------------------------


def test_an_export_is_requested_listed_with_progress_and_downloaded_when_ready(alpha, owner, alpha_owner):
    response = post(alpha_owner, "exports/create/", {"kind": "documents", "format": "csv"})
    assert messages_of(response)[0].startswith("Export of documents as CSV requested")
    with tenant_activated(alpha):
        export = ExportRequest.objects.get()
    assert export.requested_by_id == owner.pk
    page = response.content.decode()
    assert f"documents CSV {owner.email} pending" in text(response)
    assert '<meta http-equiv="refresh"' in page and "Download" not in text(response).split("Request an export")[0]
    [entry] = audit_of(alpha, object_type="export")
    assert entry.object_id == str(export.pk)

    with tenant_activated(alpha):
        ExportRequest.objects.filter(pk=export.pk).update(status="running", attempts=1, rows_done=40, rows_total=100,
                                                         heartbeat_at=timezone.now())
    running = alpha_owner.get("/admin/exports/")
    assert "running 40% 40 / 100" in text(running) and '<progress value="40" max="100">' in running.content.decode()

    name = default_storage.save(f"exports/test-{export.pk}.csv", ContentFile(b"id,title\n1,hello\n"))
    with tenant_activated(alpha):
        ExportRequest.objects.filter(pk=export.pk).update(status="done", rows_done=100, file_name=name,
                                                         finished_at=timezone.now())
    try:
        done = alpha_owner.get("/admin/exports/")
        assert '<meta http-equiv="refresh"' not in done.content.decode()
        link = re.search(r'class="export-download" href="([^"]+)"', done.content.decode()).group(1)
        download = Client(HTTP_HOST="alpha.localhost").get(link.replace("&amp;", "&"))  # no session needed
        assert download.status_code == 200 and b"".join(download.streaming_content) == b"id,title\n1,hello\n"
    finally:
        default_storage.delete(name)


def test_a_bad_export_request_is_refused_with_a_message(alpha, alpha_owner):
    response = post(alpha_owner, "exports/create/", {"kind": "secrets", "format": "csv"})
    assert response.status_code == 400
    assert messages_of(response) == ["What: Select a valid choice. secrets is not one of the available choices."]
    with tenant_activated(alpha):
        assert not ExportRequest.objects.exists()


# --- usage -----------------------------------------------------------------------


def test_usage_shows_counts_against_the_plans_quotas(alpha, owner, alpha_owner):
    from apps.billing.selectors import plan_of

    plan = plan_of(alpha)
    api_key_create(tenant_id=alpha.pk, name="k", scopes=["read"], created_by=owner)
    seats = Membership.objects.filter(tenant_id=alpha.pk).count()
    page = text(alpha_owner.get("/admin/usage/"))
    assert f"{plan.name} plan" in page
    assert f"Members (seats) {seats} {plan.max_seats} " in page
    assert f"Active API keys 1 {plan.max_api_keys} " in page
    assert f"Documents 0 {plan.max_documents} " in page
    assert f"Events this month 0 {plan.max_events_per_month} " in page


# --- isolation -------------------------------------------------------------------


def test_a_member_of_one_tenant_sees_and_changes_nothing_of_another(alpha, beta, alpha_owner):
    beta_owner = person(beta, "owner")
    beta_member = Membership.objects.get(user=person(beta, "member"))
    beta_key = api_key_create(tenant_id=beta.pk, name="beta secret key", scopes=["read"], created_by=beta_owner)
    beta_invite = invitation_create(tenant_id=beta.pk, email="beta-invitee@people.test", role="member",
                                    invited_by=None)
    with tenant_activated(beta):
        beta_export = ExportRequest.objects.create(kind="documents", format="csv", requested_by_id=beta_owner.pk)
        audit_record_many(action="update", object_type="beta-only-thing", items=[(1, {})])

    pages = " ".join(text(alpha_owner.get(f"/admin/{path}")) for path in PAGES)
    for secret in [beta_owner.email, beta_member.user.email, "beta secret key", beta_key.api_key.prefix,
                   "beta-invitee@people.test", "beta-only-thing", str(beta_export.pk)]:
        assert secret not in pages
    assert "beta-only-thing" not in text(alpha_owner.get("/admin/audit-log/", {"object_type": "beta-only-thing"}))

    refusals = [
        (f"members/{beta_member.pk}/role/", {"role": "viewer"}, "That member is not in this organisation."),
        (f"members/{beta_member.pk}/remove/", {}, "That member is not in this organisation."),
        (f"api-keys/{beta_key.api_key.pk}/revoke/", {}, "That API key is not in this organisation."),
        (f"invitations/{beta_invite.invitation.pk}/revoke/", {}, "No open invitation by that id in this tenant."),
    ]
    for path, data, message in refusals:
        assert messages_of(post(alpha_owner, path, data)) == [message]
    assert Membership.objects.get(pk=beta_member.pk).role == "member"
    assert ApiKey.objects.get(pk=beta_key.api_key.pk).revoked_at is None
    assert Invitation.objects.filter(pk=beta_invite.invitation.pk).exists()


def test_a_session_from_one_tenant_opens_nothing_on_another_tenants_host(alpha, beta, owner):
    on_beta = browser_for(alpha, owner, host_of=beta)  # alpha's owner, alpha's session, beta's host
    for path in PAGES:
        response = on_beta.get(f"/admin/{path}")
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    on_beta.get("/admin/login/")
    beta_owner = Membership.objects.get(user__email="owner@beta.test", tenant_id=beta.pk)
    response = post(on_beta, f"members/{beta_owner.pk}/remove/", follow=False)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    response = post(on_beta, "api-keys/create/", {"name": "planted", "scopes": ["admin"]}, follow=False)
    assert response.status_code == 302
    assert Membership.objects.filter(pk=beta_owner.pk).exists()
    assert not ApiKey.objects.filter(name="planted").exists()


def test_an_operator_under_a_support_grant_acts_as_an_admin_and_is_audited_as_support(alpha, beta):
    from apps.accounts.support import support_grant_create

    operator = User.objects.create_superuser(email="ops@platform.people", password="ops-pass-123")
    support_grant_create(tenant_id=alpha.pk, operator=operator, reason="ticket 12: roles", hours=1)
    client = browser_for(alpha, operator)
    member = Membership.objects.get(user=person(alpha, "member"))
    owner_row = Membership.objects.get(user__email="owner@alpha.test", tenant_id=alpha.pk)
    assert messages_of(post(client, f"members/{owner_row.pk}/remove/")) == [
        "Only an owner can grant, take away or remove the owner role."]
    assert messages_of(post(client, f"members/{member.pk}/role/", {"role": "viewer"}))[0].endswith("is now a viewer.")
    [entry] = audit_of(alpha, object_type="membership", object_id=str(member.pk))
    assert (entry.actor_type, entry.actor_id) == ("support", operator.pk)
    assert browser_for(beta, operator).get("/admin/members/").status_code == 302  # no grant there


def test_export_requests_from_the_page_spend_the_apis_export_budget(alpha, alpha_owner, settings):
    settings.RATE_LIMIT_SCOPES = {**settings.RATE_LIMIT_SCOPES, "exports": 0}  # one a minute
    assert messages_of(post(alpha_owner, "exports/create/", {"kind": "events", "format": "xlsx"}))[0].startswith(
        "Export of events as XLSX requested")
    refused = post(alpha_owner, "exports/create/", {"kind": "events", "format": "csv"})
    assert refused.status_code == 429
    assert re.fullmatch(r"Too many export requests for now; try again in \d+ seconds\.", messages_of(refused)[0])
    with tenant_activated(alpha):
        assert ExportRequest.objects.count() == 1
