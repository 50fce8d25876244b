"""Invitations and password resets in a browser, with links people can open:
each link is taken from the email as it was rendered and sent (the outbox's
task run in this process against a real SMTP server on loopback)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from apps.accounts.models import Membership, PasswordReset, User
from apps.accounts.services import invitation_create
from apps.jobs.models import OutboxMessage
from tests.mailbox import sent

pytestmark = pytest.mark.django_db


def page(tenant, **headers):
    return Client(HTTP_HOST=f"{tenant.slug}.localhost", **headers)


@pytest.fixture
def mail(smtp_sink, outbox_inline, django_capture_on_commit_callbacks):
    """mail(action) runs ``action`` and returns the emails it sent."""

    def run(action):
        before = len(smtp_sink.messages)
        with django_capture_on_commit_callbacks(execute=True, using="default"):
            action()
        return sent(smtp_sink.messages[before:])

    return run


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_invitation_link_opens_a_page_that_makes_the_account(alpha, settings, mail):
    settings.TENANT_BASE_URL = "http://{host}:8000"
    [email] = mail(lambda: invitation_create(tenant_id=alpha.pk, email="new@people.test", role="admin",
                                             invited_by=None))
    assert email.subject == "You are invited to Alpha Inc" and email.to == ["new@people.test"]
    url = email.link("/invitations/accept")
    assert url in email.html_links
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "http://alpha.localhost:8000/invitations/accept"
    browser = page(alpha, enforce_csrf_checks=True)
    form = browser.get(path_of(url))
    assert form.status_code == 200 and b'name="csrfmiddlewaretoken"' in form.content
    assert b"new@people.test is invited to join Alpha Inc as an admin." in form.content
    csrf = form.cookies["csrftoken"].value
    token = parse_qs(parts.query)["token"][0]
    mismatch = browser.post(parts.path, {"token": token, "password": "long-enough-1", "password_again": "other-one-22",
                                         "csrfmiddlewaretoken": csrf})
    assert mismatch.status_code == 400 and not User.objects.filter(email="new@people.test").exists()
    done = browser.post(parts.path, {"token": token, "password": "long-enough-1", "password_again": "long-enough-1",
                                     "csrfmiddlewaretoken": csrf})
    assert done.status_code == 302  # post/redirect/get
    welcome = browser.get(done["Location"])
    assert welcome.status_code == 200 and b"You are now an admin of Alpha Inc." in welcome.content
    assert browser.get(done["Location"]).content == welcome.content  # a reload changes nothing
    user = User.objects.get(email="new@people.test")
    assert user.check_password("long-enough-1")
    assert Membership.objects.filter(user=user, tenant_id=alpha.pk, role="admin").exists()
    # The link, used: a page that says so, without a form.
    again = browser.get(path_of(url))
    assert again.status_code == 410 and b"This invitation was already accepted." in again.content
    assert b"<form" not in again.content and b"Hidden field" not in again.content
    resent = browser.post(parts.path, {"token": token, "password": "long-enough-1", "password_again": "long-enough-1",
                                       "csrfmiddlewaretoken": csrf})
    assert resent.status_code == 410 and b"<form" not in resent.content


@pytest.mark.parametrize(("role", "phrase"), [("member", b"a member"), ("viewer", b"a viewer")])
def test_the_welcome_page_says_the_role_with_its_article(alpha, mail, role, phrase):
    [email] = mail(lambda: invitation_create(tenant_id=alpha.pk, email=f"{role}@people.test", role=role,
                                             invited_by=None))
    url = email.link("/invitations/accept")
    token = parse_qs(urlsplit(url).query)["token"][0]
    browser = page(alpha)
    done = browser.post("/invitations/accept", {"token": token, "password": "long-enough-1",
                                                "password_again": "long-enough-1"})
    assert b"You are now " + phrase + b" of Alpha Inc." in browser.get(done["Location"]).content


def test_an_unknown_invitation_link_shows_a_page_without_a_form(alpha):
    response = page(alpha).get("/invitations/accept?token=made-up")
    assert response.status_code == 404 and b"This invitation link is not valid" in response.content
    assert b"<form" not in response.content


def test_an_invitation_token_of_one_tenant_opens_nothing_on_another(alpha, gamma):
    created = invitation_create(tenant_id=alpha.pk, email="cross@people.test", role="member", invited_by=None)
    response = page(gamma).post("/invitations/accept", {"token": created.token, "password": "long-enough-1",
                                                        "password_again": "long-enough-1"})
    assert response.status_code == 404
    assert not Membership.objects.filter(user__email="cross@people.test").exists()


def test_password_reset_by_email_link(alpha, django_user_model, settings, mail):
    settings.TENANT_BASE_URL = "https://{host}"
    user = django_user_model.objects.get(email="owner@alpha.test")
    browser = page(alpha)
    [email] = mail(lambda: browser.post("/password/reset", {"email": "Owner@Alpha.test"}))
    asked = browser.get("/password/reset?sent")
    assert asked.status_code == 200 and b"Check your email" in asked.content
    assert email.subject == "Reset your password at Alpha Inc" and email.to == ["owner@alpha.test"]
    url = email.link("/password/reset/confirm")
    assert url.startswith("https://alpha.localhost/password/reset/confirm?") and url in email.html_links
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    # The outbox row names the reset request; the token is in the email only.
    row = OutboxMessage.objects.get(kwargs__template="password_reset", kwargs__to=["owner@alpha.test"])
    assert row.kwargs["refs"] == {"password_reset_id": int(query["reset"])} and query["token"] not in str(row.kwargs)
    assert browser.get(path_of(url)).status_code == 200
    done = browser.post("/password/reset/confirm", {**query, "password": "brand-new-pass",
                                                    "password_again": "brand-new-pass"})
    assert done.status_code == 302
    assert b"Password changed" in browser.get(done["Location"]).content
    user.refresh_from_db()
    assert user.check_password("brand-new-pass")
    assert PasswordReset.objects.get(pk=query["reset"]).used_at is not None
    # The link worked once: now a page that says so, without a form.
    reused = page(alpha).post("/password/reset/confirm", {**query, "password": "third-pass-123",
                                                          "password_again": "third-pass-123"})
    assert reused.status_code == 410 and b"no longer works" in reused.content and b"<form" not in reused.content
    assert page(alpha).get(path_of(url)).status_code == 410
    user.set_password("alpha-pass")
    user.save()


def test_a_reset_link_of_one_tenant_opens_nothing_on_another(alpha, gamma, mail):
    [email] = mail(lambda: page(alpha).post("/password/reset", {"email": "owner@alpha.test"}))
    assert page(gamma).get(path_of(email.link("/password/reset/confirm"))).status_code == 410


@pytest.mark.parametrize("email", ["nobody@nowhere.test", "owner@beta.test", "not an email"])
def test_password_reset_says_the_same_and_sends_nothing_for_strangers(alpha, beta, email):
    before = OutboxMessage.objects.count()
    browser = page(alpha)
    response = browser.post("/password/reset", {"email": email})
    if email == "not an email":
        assert response.status_code == 400
    else:
        assert response.status_code == 302
        assert b"Check your email" in browser.get(response["Location"]).content
    assert OutboxMessage.objects.count() == before  # beta's owner is no member of alpha


def test_a_forged_reset_link_is_refused(alpha):
    response = page(alpha).post("/password/reset/confirm", {"reset": "1", "token": "forged", "password": "x" * 12,
                                                            "password_again": "x" * 12})
    assert response.status_code == 410 and b"no longer works" in response.content


def test_password_reset_emails_an_account_at_most_once_in_a_while(alpha):
    before = OutboxMessage.objects.filter(kwargs__template="password_reset").count()
    for _ in range(5):
        assert page(alpha).post("/password/reset", {"email": "owner@alpha.test"}).status_code == 302
    assert OutboxMessage.objects.filter(kwargs__template="password_reset").count() == before + 1
