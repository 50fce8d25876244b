"""Pages a browser renders carry a Content-Security-Policy without inline scripts."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


def test_api_docs_load_their_script_from_a_file_under_a_strict_policy(client, alpha):
    page = client.get("/api/v1/docs", HTTP_HOST="alpha.localhost")
    assert page.status_code == 200
    policy = page["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in policy
    html = page.content.decode()
    assert not re.search(r"<script>(?!\s*</script>)", html), "no inline script"
    script_url = re.search(r'<script src="([^"]*script=[^"]*)"', html).group(1)
    script = client.get(script_url.replace("&amp;", "&"), HTTP_HOST="alpha.localhost")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")


@pytest.mark.parametrize("host", ["alpha.localhost", "localhost"])
def test_admin_pages_carry_the_policy(client, alpha, host):
    login = client.get("/admin/login/", HTTP_HOST=host)
    assert login.status_code == 200
    assert "default-src 'self'" in login["Content-Security-Policy"]


def test_api_responses_need_no_policy(api, alpha):
    response = api(alpha).get("me")
    assert response.status_code == 200 and "Content-Security-Policy" not in response
