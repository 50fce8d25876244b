"""A missing tool skips a test on a developer's machine and fails it under CI."""

from __future__ import annotations

import pytest

from tests import tools

SKIPPED, FAILED = pytest.skip.Exception, pytest.fail.Exception


@pytest.fixture
def local(monkeypatch):
    monkeypatch.delenv("CI", raising=False)


@pytest.fixture
def ci(monkeypatch):
    monkeypatch.setenv("CI", "true")


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_ci_is_read_from_the_environment(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert tools.under_ci()
    monkeypatch.setenv("CI", "false")
    assert not tools.under_ci()
    monkeypatch.delenv("CI")
    assert not tools.under_ci()


def test_a_met_requirement_goes_on_locally_and_under_ci(monkeypatch):
    for ci_value in ("", "true"):
        monkeypatch.setenv("CI", ci_value)
        tools.require(True, "never shown")
        assert tools.require_tool("sh").endswith("/sh")


def test_a_missing_tool_skips_locally_with_the_reason(local):
    with pytest.raises(SKIPPED, match="no-such-tool-here is not installed"):
        tools.require_tool("no-such-tool-here")
    with pytest.raises(SKIPPED, match="^needs a second shard$"):
        tools.require(False, "needs a second shard")


def test_a_missing_tool_fails_under_ci_with_the_reason(ci):
    with pytest.raises(FAILED, match="HAProxy is not installed.*required under CI"):
        tools.require_tool("no-such-tool-here", "HAProxy is not installed")
    with pytest.raises(FAILED, match="needs a second shard"):
        tools.require(None, "needs a second shard")


def test_the_requires_mark_goes_through_the_same_rule(monkeypatch):
    from conftest import pytest_runtest_setup

    class Item:
        def __init__(self, *marks):
            self.marks = [m.mark for m in marks]

        def iter_markers(self, name):
            return [m for m in self.marks if m.name == name]

    met = Item(pytest.mark.requires(True, reason="never shown"))
    unmet = Item(pytest.mark.requires(True, reason="never shown"), pytest.mark.requires(False, reason="no promtool"))
    monkeypatch.delenv("CI", raising=False)
    pytest_runtest_setup(met)
    with pytest.raises(SKIPPED, match="no promtool"):
        pytest_runtest_setup(unmet)
    monkeypatch.setenv("CI", "true")
    pytest_runtest_setup(met)
    with pytest.raises(FAILED, match="no promtool"):
        pytest_runtest_setup(unmet)
