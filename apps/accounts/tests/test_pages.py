"""Invitations and password resets in a browser, with links people can open."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from apps.accounts.models import Membership, User
from apps.accounts.services import invitation_create
from apps.jobs.models import OutboxMessage

pytestmark = pytest.mark.django_db


def last_email(template):
    message = OutboxMessage.objects.filter(kwargs__template=template).order_by("-created_at").first()
    return message.kwargs if message else None


def page(tenant, **headers):
    return Client(HTTP_HOST=f"{tenant.slug}.localhost", **headers)


def test_invitation_link_opens_a_page_that_makes_the_account(alpha, settings):
    settings.TENANT_BASE_URL = "http://{host}:8000"
    invitation_create(tenant_id=alpha.pk, email="new@people.test", role="member", invited_by=None)
    url = last_email("invitation")["context"]["url"]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "http://alpha.localhost:8000/invitations/accept"
    browser = page(alpha, enforce_csrf_checks=True)
    form = browser.get(f"{parts.path}?{parts.query}")
    assert form.status_code == 200 and b'name="csrfmiddlewaretoken"' in form.content
    csrf = form.cookies["csrftoken"].value
    token = parse_qs(parts.query)["token"][0]
    mismatch = browser.post(parts.path, {"token": token, "password": "long-enough-1", "password_again": "other-one-22",
                                         "csrfmiddlewaretoken": csrf})
    assert mismatch.status_code == 400 and not User.objects.filter(email="new@people.test").exists()
    done = browser.post(parts.path, {"token": token, "password": "long-enough-1", "password_again": "long-enough-1",
                                     "csrfmiddlewaretoken": csrf})
    assert done.status_code == 200 and b"You are now a member" in done.content
    user = User.objects.get(email="new@people.test")
    assert user.check_password("long-enough-1")
    assert Membership.objects.filter(user=user, tenant_id=alpha.pk, role="member").exists()
    again = browser.post(parts.path, {"token": token, "password": "long-enough-1", "password_again": "long-enough-1",
                                      "csrfmiddlewaretoken": csrf})
    assert again.status_code == 400 and b"already accepted" in again.content


def test_an_invitation_token_of_one_tenant_opens_nothing_on_another(alpha, gamma):
    created = invitation_create(tenant_id=alpha.pk, email="cross@people.test", role="member", invited_by=None)
    response = page(gamma).post("/invitations/accept", {"token": created.token, "password": "long-enough-1",
                                                        "password_again": "long-enough-1"})
    assert response.status_code == 400
    assert not Membership.objects.filter(user__email="cross@people.test").exists()


def test_password_reset_by_email_link(alpha, django_user_model, settings):
    settings.TENANT_BASE_URL = "https://{host}"
    user = django_user_model.objects.get(email="owner@alpha.test")
    sent = page(alpha).post("/password/reset", {"email": "Owner@Alpha.test"})
    assert sent.status_code == 200 and b"Check your email" in sent.content
    url = last_email("password_reset")["context"]["url"]
    parts = urlsplit(url)
    assert url.startswith("https://alpha.localhost/password/reset/confirm?")
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert page(alpha).get(f"{parts.path}?{parts.query}").status_code == 200
    done = page(alpha).post(parts.path, {**query, "password": "brand-new-pass", "password_again": "brand-new-pass"})
    assert done.status_code == 200 and b"Password changed" in done.content
    user.refresh_from_db()
    assert user.check_password("brand-new-pass")
    # The link worked once.
    reused = page(alpha).post(parts.path, {**query, "password": "third-pass-123", "password_again": "third-pass-123"})
    assert reused.status_code == 400
    user.set_password("alpha-pass")
    user.save()


@pytest.mark.parametrize("email", ["nobody@nowhere.test", "owner@beta.test", "not an email"])
def test_password_reset_says_the_same_and_sends_nothing_for_strangers(alpha, beta, email):
    before = OutboxMessage.objects.count()
    response = page(alpha).post("/password/reset", {"email": email})
    if email == "not an email":
        assert response.status_code == 400
    else:
        assert response.status_code == 200 and b"Check your email" in response.content
    assert OutboxMessage.objects.count() == before  # beta's owner is no member of alpha


def test_a_forged_reset_link_is_refused(alpha):
    response = page(alpha).post("/password/reset/confirm", {"uid": "MQ", "token": "forged", "password": "x" * 12,
                                                            "password_again": "x" * 12})
    assert response.status_code == 400 and b"no longer works" in response.content


def test_password_reset_emails_an_account_at_most_once_in_a_while(alpha):
    before = OutboxMessage.objects.filter(kwargs__template="password_reset").count()
    for _ in range(5):
        assert page(alpha).post("/password/reset", {"email": "owner@alpha.test"}).status_code == 200
    assert OutboxMessage.objects.filter(kwargs__template="password_reset").count() == before + 1
