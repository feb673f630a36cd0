"""Logs are JSON lines with the context fields, and never carry a secret."""

import io
import json
import logging
import logging.config

import pytest

from common.log_context import bound
from common.logging import REDACTED, logging_config, redact

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJ1c2VyX2lkIjoiMSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {JWT}",
        f"token {JWT} leaked",
        '{"username": "ada", "password": "hunter2-secret"}',
        "current_password=hunter2-secret&x=1",
        '{"refresh": "abc.def.ghi-secret"}',
        "X-User-Signature: t=1,v1=0123456789abcdef0123456789abcdef",
    ],
)
def test_redact_removes_secrets(text):
    cleaned = redact(text)
    assert REDACTED in cleaned
    for secret in (JWT, "hunter2-secret", "abc.def.ghi-secret", "0123456789abcdef0123456789abcdef"):
        assert secret not in cleaned


@pytest.fixture
def capture():
    """Configure logging as a service would, into a string; restore the root logger after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)

    def configure(fmt):
        config = logging_config(service="svc", level="INFO", fmt=fmt)
        stream = io.StringIO()
        config["handlers"]["console"]["stream"] = stream
        logging.config.dictConfig(config)
        return stream

    yield configure
    root.handlers[:], root.level = saved


def test_json_lines_carry_context_and_no_secret(capture):
    stream = capture("json")
    with bound(request_id="req-1", user_id="u-9", event_id="ev-3"):
        logging.getLogger("x.y").info("login for %s with Bearer %s", "ada", JWT)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["level"] == "INFO"
    assert line["service"] == "svc"
    assert line["logger"] == "x.y"
    assert line["request_id"] == "req-1"
    assert line["user_id"] == "u-9"
    assert line["event_id"] == "ev-3"
    assert "time" in line
    assert JWT not in stream.getvalue()


def test_text_format_is_one_readable_line(capture):
    stream = capture("text")
    with bound(request_id="req-2"):
        logging.getLogger("x").warning("breaker opened")
    line = stream.getvalue().strip()
    assert "\n" not in line
    assert "WARNING" in line and "breaker opened" in line and "request_id=req-2" in line
