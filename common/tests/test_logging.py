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


# However a secret reaches a log call, no JSON or text line carries it.
PASSWORD = "hunter2-pw-value"
REFRESH = "rfr-secret-value"
SESSION = "sess-secret-value"
SIGNING_KEY = "django-insecure-key-value"
SECRETS = (JWT, PASSWORD, REFRESH, SESSION, SIGNING_KEY)


def _assert_clean(output):
    for secret in SECRETS:
        assert secret not in output, f"{secret} leaked: {output}"


def _lines(stream, fmt):
    text = stream.getvalue()
    if fmt == "json":
        return [json.loads(line) for line in text.strip().splitlines()]
    return text


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_extra_fields_are_redacted(capture, fmt):
    stream = capture(fmt)
    logging.getLogger("x").info(
        "login attempt",
        extra={
            "password": PASSWORD,
            "refresh": REFRESH,
            "HTTP_AUTHORIZATION": f"Bearer {JWT}",
            "SECRET_KEY": SIGNING_KEY,
            "headers": {"Cookie": f"sessionid={SESSION}", "Accept": "application/json"},
            "payload": {"user": {"name": "ada", "current_password": PASSWORD}},
            "items": [{"token": JWT}, f"refresh={REFRESH}"],
            "note": f"client sent Authorization: Bearer {JWT}",
            "username": "ada",
            "token_ttl": 900,  # numbers and flags cannot hold a secret: kept
            "password_changed": True,
        },
    )
    _assert_clean(stream.getvalue())
    if fmt == "json":
        (line,) = _lines(stream, fmt)
        assert line["password"] == REDACTED
        assert line["headers"] == {"Cookie": REDACTED, "Accept": "application/json"}
        assert line["payload"] == {"user": {"name": "ada", "current_password": REDACTED}}
        assert line["username"] == "ada"  # what is not a secret stays readable
        assert (line["token_ttl"], line["password_changed"]) == (900, True)


class TokenError(Exception):
    pass


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize(
    "message",
    [
        f"bad token {JWT}",
        f"refused: Authorization: Bearer {JWT}",
        f"payload {{'password': '{PASSWORD}', 'refresh': '{REFRESH}'}}",
        f"could not connect to postgres://app:{PASSWORD}@db.internal:5432/app",
        f"token={REFRESH}&next=/",
    ],
    ids=["jwt", "bearer", "repr-dict", "dsn", "query"],
)
def test_tracebacks_are_redacted(capture, fmt, message):
    stream = capture(fmt)
    try:
        try:
            raise ValueError(f"inner cookie: sessionid={SESSION}")
        except ValueError as inner:
            raise TokenError(message) from inner
    except TokenError:
        logging.getLogger("x").exception("request failed")
    output = stream.getvalue()
    _assert_clean(output)
    assert "TokenError" in output and "Traceback" in output  # the traceback itself stays
    if fmt == "json":
        (line,) = _lines(stream, fmt)
        assert "TokenError" in line["exc_info"]


def test_traceback_cached_by_another_handler_is_redacted_too(capture):
    """A plain formatter elsewhere caches the unredacted traceback on the record (exc_text)."""
    stream = capture("text")
    other = logging.StreamHandler(io.StringIO())
    other.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("x.cached")
    logger.addHandler(other)
    try:
        try:
            raise TokenError(f"bad token {JWT}")
        except TokenError:
            logger.exception("failed")
    finally:
        logger.removeHandler(other)
    _assert_clean(stream.getvalue())
    assert "TokenError" in stream.getvalue()


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_python_repr_dicts_in_arguments_are_redacted(capture, fmt):
    stream = capture(fmt)
    logger = logging.getLogger("x")
    logger.info("%s", {"username": "ada", "password": PASSWORD})
    logger.info("body %r", {"refresh": REFRESH, "note": "it's fine"})
    logger.info("meta %s", {"HTTP_COOKIE": f"csrftoken=x; sessionid={SESSION}", "n": 1})
    logger.info("settings %s", {"SECRET_KEY": SIGNING_KEY, "DEBUG": False})
    logger.info("tokens %s", [("access", JWT)])
    logger.info("form %s", f"password={PASSWORD}&username=ada")
    output = stream.getvalue()
    _assert_clean(output)
    assert "ada" in output
    if fmt == "json":
        messages = [line["message"] for line in _lines(stream, fmt)]
        assert messages[0] == f"{{'username': 'ada', 'password': '{REDACTED}'}}"


def test_dict_message_is_redacted(capture):
    """python-json-logger merges a dict message into the line: its keys are checked too."""
    stream = capture("json")
    logging.getLogger("x").info({"event": "login", "password": PASSWORD, "user": "ada"})
    (line,) = _lines(stream, "json")
    assert line["password"] == REDACTED
    assert line["user"] == "ada"
    _assert_clean(stream.getvalue())


def test_unknown_objects_are_redacted_in_the_final_line(capture):
    """An extra that is neither text nor a container is written by its str(): checked too."""

    class Request:
        def __str__(self):
            return f"<WSGIRequest: GET '/api/x?token={REFRESH}'>"

    stream = capture("json")
    logging.getLogger("django.request").warning("Not Found", extra={"request": Request()})
    (line,) = _lines(stream, "json")
    assert line["request"] == f"<WSGIRequest: GET '/api/x?token={REDACTED}'>"
    _assert_clean(stream.getvalue())


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"password": PASSWORD, "n": 1}),
        json.dumps({"message": json.dumps({"password": f"{PASSWORD} x", "access": JWT})}),
        f"Cookie: csrftoken=a; sessionid={SESSION}",
        f"Authorization: Basic {SESSION}",
        str({"HTTP_AUTHORIZATION": f"Bearer {JWT}", "HTTP_COOKIE": f"sessionid={SESSION}"}),
    ],
)
def test_redact_keeps_json_valid_and_is_idempotent(text):
    cleaned = redact(text)
    _assert_clean(cleaned)
    assert redact(cleaned) == cleaned
    if text.startswith('{"'):
        json.loads(cleaned)


def test_redact_leaves_ordinary_lines_alone():
    for text in (
        "counts updated",
        "breaker opened for auth after 5 failures",
        "Access-Control-Allow-Origin: *",
        "refreshed 5 rows; access_count=3",
        '{"event_type": "TrackPlayed", "user_id": "42"}',
    ):
        assert redact(text) == text
