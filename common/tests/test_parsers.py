"""Deep, malformed and out-of-range JSON bodies are 400s, never 500s (issue 12, item 1)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.test import override_settings
from rest_framework import permissions
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from common import settings as common_settings
from common.errors import MALFORMED_BODY_DETAIL, raised_while_parsing
from common.parsers import (
    JSON_NUMBER_OUT_OF_RANGE,
    JSON_TOO_DEEP,
    DepthLimitedJSONParser,
    json_depth_exceeds,
)

DEEP = 5000  # the attack: {"username": [[[[...]]]]}, about 10 KB


def nested(depth: int) -> str:
    """An object holding ``depth - 1`` nested arrays: ``depth`` levels in all."""
    return '{"username": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


class EchoView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]
    parser_classes = [DepthLimitedJSONParser]

    def post(self, request: Any) -> Response:
        return Response({"data": request.data})


class BrokenParser(BaseParser):
    """A parser that lets the interpreter's own error escape, as DRF's JSONParser does."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")


class BrokenParserView(EchoView):
    parser_classes = [BrokenParser]


class BuggyView(EchoView):
    def post(self, request: Any) -> Response:
        raise RecursionError("a bug of ours, not the client's input")


def post(view: type[APIView], body: bytes | str, content_type: str = "application/json") -> Any:
    request = APIRequestFactory().post("/echo", data=body, content_type=content_type)
    response = view.as_view()(request)
    response.render()
    return response


def parse(text: str | bytes) -> Any:
    raw = text.encode() if isinstance(text, str) else text
    return DepthLimitedJSONParser().parse(io.BytesIO(raw), "application/json", {})


def test_the_attack_body_is_400_parse_error():
    body = nested(DEEP)
    assert len(body) < 12_000
    response = post(EchoView, body)
    assert response.status_code == 400
    assert json.loads(response.content) == {
        "detail": JSON_TOO_DEEP.format(limit=32),
        "code": "parse_error",
    }


def test_depth_up_to_the_limit_parses_one_more_does_not():
    assert parse(nested(32)) == json.loads(nested(32))
    with pytest.raises(ParseError):
        parse(nested(33))


@override_settings(JSON_MAX_DEPTH=3)
def test_the_limit_is_a_setting():
    assert parse('{"a": [{"b": 1}]}') == {"a": [{"b": 1}]}
    with pytest.raises(ParseError) as excinfo:
        parse('{"a": [[{"b": 1}]]}')
    assert "3 levels" in str(excinfo.value.detail)


def test_brackets_inside_strings_are_not_nesting():
    text = json.dumps({"name": "[" * 100 + '{\\"' * 50, "x": ["]" * 10]})
    assert not json_depth_exceeds(text, 3)
    assert parse(text)["name"].startswith("[[[")


def test_siblings_are_not_nesting():
    assert parse("[" + ",".join(["[]"] * 1000) + "]") == [[]] * 1000


@pytest.mark.parametrize(
    "body",
    [
        b'{"username": "\xff\xfe"}',  # invalid UTF-8
        b"{not json",
        b'{"a": 1',  # truncated
        b"[" * 20,  # unbalanced, below the limit
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'"unterminated',
        b"\x00\x00",
    ],
)
def test_malformed_bodies_are_400_parse_error(body):
    response = post(EchoView, body)
    assert response.status_code == 400
    assert json.loads(response.content)["code"] == "parse_error"


@pytest.mark.parametrize("number", ["1e999", "-1e999", "9" * 25, "9223372036854775808", "9" * 5000])
def test_numbers_out_of_range_are_400(number):
    response = post(EchoView, '{"count": ' + number + "}")
    assert response.status_code == 400
    assert json.loads(response.content) == {
        "detail": JSON_NUMBER_OUT_OF_RANGE,
        "code": "parse_error",
    }


def test_ordinary_numbers_still_parse():
    assert parse('{"a": 9223372036854775807, "b": -9223372036854775808, "c": 1.5e10}') == {
        "a": 2**63 - 1,
        "b": -(2**63),
        "c": 1.5e10,
    }


def test_any_error_escaping_a_parser_is_400_not_500():
    response = post(BrokenParserView, "{}")
    assert response.status_code == 400
    assert json.loads(response.content) == {"detail": MALFORMED_BODY_DETAIL, "code": "parse_error"}


def test_errors_outside_parsing_stay_server_errors():
    with pytest.raises(RecursionError) as excinfo:
        post(BuggyView, "{}")
    assert not raised_while_parsing(excinfo.value)


def test_every_service_parses_json_with_the_depth_limit(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("SECRET_KEY", "x")
    monkeypatch.setenv("INTERNAL_SECRET", "y")
    values = common_settings.defaults(
        service="svc", base_dir=common_settings.REPO_ROOT, project="svc_project", orm=False
    )
    parsers = values["REST_FRAMEWORK"]["DEFAULT_PARSER_CLASSES"]
    assert parsers[0] == "common.parsers.DepthLimitedJSONParser"
    assert "rest_framework.parsers.JSONParser" not in parsers
    assert values["JSON_MAX_DEPTH"] == 32
