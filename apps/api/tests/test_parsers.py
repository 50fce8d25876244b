"""Bodies that would crash or exhaust the JSON parser get 400 problem details."""

from __future__ import annotations

import pytest

from apps.api.parsers import json_depth_exceeds

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["documents", "events", "auth/token", "invitations/accept"])
def test_deeply_nested_bodies_are_400_not_500(api, alpha, path):
    client = api(alpha, role="member")
    body = "[" * 5000 + "]" * 5000
    response = client.post(path, body)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert "nested too deeply" in response.json()["detail"]


def test_nesting_past_the_limit_is_refused_even_when_python_could_parse_it(api, alpha):
    client = api(alpha, role="member")
    nested = {"title": "x", "body": "", "tags": []}
    deep = nested
    for _ in range(40):
        deep["extra"] = {}
        deep = deep["extra"]
    response = client.post("documents", nested)
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]


def test_ordinary_bodies_still_parse(api, alpha):
    client = api(alpha, role="member")
    response = client.post("documents", {"title": "Fine", "tags": ["a", "b"]})
    assert response.status_code == 201, response.content


def test_depth_measure():
    assert not json_depth_exceeds({"a": [1, {"b": 2}]}, 3)
    assert json_depth_exceeds({"a": [1, {"b": [3]}]}, 3)
    assert not json_depth_exceeds("scalar", 0)
