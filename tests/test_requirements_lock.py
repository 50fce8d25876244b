"""The lock files pin every package with hashes and agree with requirements/*.txt.

`bin/dev` and the Dockerfile install only from requirements/lock/ with
`--require-hashes`; a pin changed in requirements/*.txt without `bin/dev lock`
would silently not be installed, so this fails until the lock is regenerated.
"""

from __future__ import annotations

import re

import pytest

from tests.support import ROOT

REQUIREMENTS = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def top_level_pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins.update(top_level_pins(path.parent / line[3:].strip()))
        elif match := PIN.match(line):
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def locked(path) -> dict[str, tuple[str, int]]:
    text = path.read_text()
    entries = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        if match := PIN.match(block):
            entries[canonical(match.group(1))] = (match.group(2), block.count("--hash=sha256:"))
    return entries


@pytest.mark.parametrize("name", ["base", "production", "dev"])
def test_every_locked_package_has_hashes_and_every_pin_is_locked(name):
    lock = locked(REQUIREMENTS / "lock" / f"{name}.txt")
    assert lock, "empty lock"
    assert all(hashes >= 1 for _, hashes in lock.values()), [n for n, (_, h) in lock.items() if h == 0]
    pins = top_level_pins(REQUIREMENTS / f"{name}.txt")
    assert pins, f"no pin read from requirements/{name}.txt"
    for package, version in pins.items():
        assert package in lock, f"{package} is pinned in requirements/{name}.txt but not locked: run bin/dev lock"
        assert lock[package][0] == version, f"{package}: {version} pinned, {lock[package][0]} locked: run bin/dev lock"


def test_installers_use_the_lock_with_hashes():
    assert "--require-hashes" in (ROOT / "docker" / "Dockerfile").read_text()
    dev = (ROOT / "bin" / "dev").read_text()
    assert '"--require-hashes"' in dev and '"lock" / "dev.txt"' in dev
