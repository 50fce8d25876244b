"""Typed reads of the environment: the only place settings touch ``os.environ``.

A bad value stops the process with one line that names the variable and the
form it expects (``SHARD_CONNECT_TIMEOUT: expected a whole number of seconds
(e.g. 2), got 'abc'``), instead of a traceback from deep inside a parser or,
worse, a silent default (``REPLICA_READS=maybe`` read as false).

Conventions:
- a blank value counts as unset (that is what ``NAME=`` in an env file means);
- values are quoted in messages only for kinds that cannot hold a secret
  (numbers, booleans, choices); URLs may carry passwords and are never echoed.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
BOOL_FORM = "true or false (also 1/0, yes/no, on/off)"

POSTGRES_SCHEMES = ("postgres", "postgresql")
REDIS_SCHEMES = ("redis", "rediss", "unix")
BROKER_SCHEMES = (*REDIS_SCHEMES, "amqp", "amqps", "pyamqp", "sentinel")

# A shard's name becomes part of a database alias (shard_<name>) and a
# registry slug (Shard.name, 40 characters at most).
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return None
    return value


def _invalid(name: str, expected: str, got: str | None = None) -> ImproperlyConfigured:
    shown = f", got {got.strip()!r}" if got is not None else ""
    return ImproperlyConfigured(f"{name}: expected {expected}{shown}")


def env_str(name: str, default: str | None = None) -> str | None:
    """The value as given (not stripped: a password may end in a space)."""
    value = _raw(name)
    return default if value is None else value


# The short name the settings modules use for plain strings.
env = env_str


def env_choice(name: str, default: str, choices: Iterable[str]) -> str:
    allowed = list(choices)
    value = _raw(name)
    if value is None:
        return default
    if value.strip() not in allowed:
        raise _invalid(name, "one of " + ", ".join(allowed), value)
    return value.strip()


def _number(name: str, default, parse, kind: str, minimum, unit: str):
    form = f"{kind}{' of ' + unit if unit else ''}"
    if minimum is not None:
        form += f" >= {minimum:g}"
    value = _raw(name)
    if value is None:
        return default
    try:
        number = parse(value.strip())
    except ValueError:
        raise _invalid(name, f"{form} (e.g. {default:g})", value) from None
    if (isinstance(number, float) and not math.isfinite(number)) or (minimum is not None and number < minimum):
        raise _invalid(name, form, value)
    return number


def env_int(name: str, default: int, *, minimum: int | None = None, unit: str = "") -> int:
    """A whole number; ``unit`` (e.g. "seconds") only words the message."""
    return _number(name, default, int, "a whole number", minimum, unit)


def env_float(name: str, default: float, *, minimum: float | None = None, unit: str = "") -> float:
    """A number, finite (``nan`` and ``inf`` are refused)."""
    return _number(name, default, float, "a number", minimum, unit)


def env_bool(name: str, default: bool = False) -> bool:
    """Only the words in TRUE_WORDS / FALSE_WORDS: a typo is an error, not "false"."""
    value = _raw(name)
    if value is None:
        return default
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise _invalid(name, BOOL_FORM, value)


def env_list(name: str, default: str | Iterable[str] = "") -> list[str]:
    """Comma-separated items; blanks between commas are dropped."""
    value = _raw(name)
    if value is None:
        items = default.split(",") if isinstance(default, str) else list(default)
    else:
        items = value.split(",")
    return [item.strip() for item in items if item.strip()]


def _check_url(url: str, schemes: tuple[str, ...]) -> str | None:
    """Why ``url`` is not a usable URL with one of ``schemes``, or None."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError:
        return "it does not parse as a URL"
    if parts.scheme not in schemes:
        return f"its scheme is {parts.scheme!r}" if parts.scheme else "it has no scheme://"
    if not (parts.netloc or parts.path.strip("/")):
        return "it names no host or path"
    return None


def _url_form(schemes: tuple[str, ...]) -> str:
    return f"a URL with scheme {'/'.join(schemes)}"


def url_checked(name: str, url: str, schemes: tuple[str, ...]) -> str:
    """``url`` if usable, else an ImproperlyConfigured naming ``name`` (for defaults built from other settings)."""
    problem = _check_url(url.strip(), schemes)
    if problem:
        raise _invalid(name, f"{_url_form(schemes)} (e.g. {schemes[0]}://host:port/...); {problem}")
    return url.strip()


def env_url(name: str, default: str, *, schemes: tuple[str, ...]) -> str:
    value = _raw(name)
    return default if value is None else url_checked(name, value, schemes)


def env_named_urls(name: str, *, schemes: tuple[str, ...]) -> dict[str, str]:
    """``name=url,name=url`` -> {name: url}, e.g. SHARD_URLS=main=postgres://a/db,eu2=postgres://b/db.

    Names are lowercase letters, digits, ``-`` and ``_``; each appears once.
    """
    value = _raw(name)
    if value is None:
        return {}
    form = f"name=url pairs separated by commas (e.g. main={schemes[0]}://host/db,b={schemes[0]}://host2/db)"
    named: dict[str, str] = {}
    items = [item.strip() for item in value.split(",") if item.strip()]
    for position, item in enumerate(items, start=1):
        key, sep, url = item.partition("=")
        key = key.strip()
        # The item is not quoted: it may be a URL with a password in it.
        if not sep:
            raise _invalid(name, f"{form}; item {position} has no '='")
        if not NAME_PATTERN.fullmatch(key):
            raise _invalid(name, f"{form}; item {position}: a name is lowercase letters, digits, - and _ "
                                 "(at most 40), starting with a letter or digit")
        if key in named:
            raise _invalid(name, f"{form}; the name {key!r} appears twice")
        problem = _check_url(url.strip(), schemes)
        if problem:
            raise _invalid(name, f"{form}; the URL of {key!r} is not {_url_form(schemes)}: {problem}")
        named[key] = url.strip()
    return named


def missing(names: Iterable[str]) -> list[str]:
    """The variables among ``names`` that are unset or blank."""
    return [name for name in names if _raw(name) is None]


def require(names: Iterable[str], *, why: str) -> None:
    """Refuse to start unless every variable in ``names`` is set, naming all that are not."""
    absent = missing(names)
    if absent:
        raise ImproperlyConfigured(f"{why}; not set: {', '.join(absent)}")
