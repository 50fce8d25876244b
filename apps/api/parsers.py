"""Request body parsers with bounds.

Python's ``json`` module recurses once per nesting level, so a body of a few
thousand ``[`` characters raises RecursionError deep inside the parser (a 500
on every JSON endpoint, anonymous ones included). No request of this API
nests deeper than a handful of levels, so a low explicit limit turns such
bodies into a 400 before any view sees them.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

DEFAULT_MAX_DEPTH = 32


def json_depth_exceeds(value, limit: int) -> bool:
    """True when ``value`` nests containers deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, refusing bodies nested deeper than API_MAX_JSON_DEPTH."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = getattr(settings, "API_MAX_JSON_DEPTH", DEFAULT_MAX_DEPTH)
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON nested too deeply: at most {limit} levels.") from None
        if json_depth_exceeds(data, limit):
            raise ParseError(f"JSON nested too deeply: at most {limit} levels.")
        return data

