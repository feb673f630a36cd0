"""The JSON parser every service uses: a nesting-depth limit, and any malformed body is a 400.

DRF's ``JSONParser`` hands the body to ``json.load``, whose decoder recurses once per nesting
level: a 10 KB body nested 5,000 levels deep raises ``RecursionError`` (a 500, which the gateway
would count against the service's breaker). ``DepthLimitedJSONParser`` measures the depth first
with a flat scan that skips string literals (no recursion, C-speed regex), refuses anything deeper
than ``JSON_MAX_DEPTH`` (setting, else environment; 32 by default), and only then decodes.
Whatever else goes wrong while decoding (bad UTF-8, bad syntax, ``NaN``, numbers that overflow a
float or a signed 64-bit integer) is a ``ParseError``: 400 ``{"detail", "code": "parse_error"}``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from common.settings import env_int

DEFAULT_MAX_DEPTH = 32
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1

JSON_INVALID = "JSON parse error."
JSON_TOO_DEEP = "JSON nested too deeply (more than {limit} levels)."
JSON_BAD_ENCODING = "Request body is not valid {encoding}."
JSON_NUMBER_OUT_OF_RANGE = "JSON number out of range."

# A string literal (escapes included, unrolled so the regex engine never backtracks) or one
# bracket. Brackets inside strings are consumed with their string, so they are never counted.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def max_depth() -> int:
    """``JSON_MAX_DEPTH``: the setting if present, else the environment, else 32."""
    value = getattr(settings, "JSON_MAX_DEPTH", None)
    if value is None:
        return env_int("JSON_MAX_DEPTH", DEFAULT_MAX_DEPTH)
    return int(value)


def json_depth_exceeds(text: str, limit: int) -> bool:
    """True when ``text`` opens more than ``limit`` arrays/objects inside each other.

    Iterative, so any depth is measured safely. Malformed input (unbalanced brackets, an
    unterminated string) is measured as well as it can be; the decoder rejects it afterwards.
    """
    # Cheap exit for the common case: fewer brackets in total than the limit.
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token == "[" or token == "{":
            depth += 1
            if depth > limit:
                return True
        elif token == "]" or token == "}":
            depth -= 1
    return False


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e999: valid JSON, but inf cannot be stored nor rendered
        raise ParseError(JSON_NUMBER_OUT_OF_RANGE)
    return value


def _parse_int(literal: str) -> int:
    if len(literal) > 20:  # longer than any signed 64-bit integer: no need to convert it
        raise ParseError(JSON_NUMBER_OUT_OF_RANGE)
    value = int(literal)
    if not _INT_MIN <= value <= _INT_MAX:
        raise ParseError(JSON_NUMBER_OUT_OF_RANGE)
    return value


def _reject_constant(name: str) -> Any:
    raise ParseError(f"{JSON_INVALID} {name} is not valid JSON.")


class DepthLimitedJSONParser(JSONParser):
    """DRF's ``JSONParser`` with a depth limit; every decoding failure is a 400 ``ParseError``."""

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            raw = stream.read()
            text = raw.decode(encoding) if isinstance(raw, bytes) else str(raw)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(JSON_BAD_ENCODING.format(encoding=encoding)) from exc
        limit = max_depth()
        if json_depth_exceeds(text, limit):
            raise ParseError(JSON_TOO_DEEP.format(limit=limit))
        try:
            return json.loads(
                text,
                parse_float=_parse_float,
                parse_int=_parse_int,
                parse_constant=_reject_constant,
            )
        except ParseError:
            raise
        except (ValueError, RecursionError, OverflowError) as exc:
            # ValueError covers JSONDecodeError. RecursionError cannot happen below the depth
            # limit, but a 400 is still the right answer to the client if it ever did.
            raise ParseError(f"{JSON_INVALID} {exc}"[:300]) from exc
