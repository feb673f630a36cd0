"""Logging for every process: JSON lines (or one-line text) carrying request and event ids."""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

import pythonjsonlogger.json

from common.log_context import current

# Names whose value is a secret wherever they appear: a log call's ``extra`` key, a key of a
# dict it logs (nested too), a header, a query or form parameter, a ``key=value`` in any text.
_SECRET_NAME = (
    r"[\w-]*(?:password|passwd|secret|token|authorization|cookie|csrf|signature"
    r"|api[_-]?key|private[_-]?key|credential)[\w-]*"
    r"|refresh|access|session(?:id|_id|_key)?|jwt|pwd"
)
_SECRET_NAME_RE = re.compile(rf"(?i)(?:{_SECRET_NAME})")
# A value after ``name: ``/``name=``: quoted (JSON, Python repr, JSON escaped inside a JSON
# string) or bare; an auth scheme (``Basic x``) belongs to it. ``(?!\[redacted\])``: redacting
# twice changes nothing.
_QUOTED = r'\\"(?:[^"\\]|\\[^"])*?\\"|"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''


def _key(names: str) -> str:
    return (
        r"""(?<![\w-])\\?["']?(?:""" + names + r""")\\?["']?\s*[:=]\s*+"""
        r"""(?!\\?["']?\[redacted\])"""
    )


_SECRET_PATTERNS = [
    # Cookies: the whole header value, every cookie in it.
    re.compile("(?i)(" + _key(r"[\w-]*cookie") + ")(" + _QUOTED + r"""|[^\r\n"'\\]+)"""),
    re.compile(
        "(?i)(" + _key(_SECRET_NAME) + ")(" + _QUOTED + "|"
        r"""(?:(?:bearer|basic|digest|token|jwt)\s+)?[^\s"',;&}\])\\]+)"""
    ),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # any JWT
    re.compile(r"(?i)(v1=)[0-9a-f]{16,}"),
    # The password of a URL (a DSN in a connection error): scheme://user:[redacted]@host
    re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^:/\s@]*:)[^@\s/]+(?=@)"),
]
REDACTED = "[redacted]"


def _replace(match: re.Match[str]) -> str:
    if match.re.groups < 2:
        return (match.group(1) if match.re.groups else "") + REDACTED
    value = match.group(2)
    for quote in ('\\"', '"', "'"):  # keep the quotes: JSON and reprs stay well-formed
        if len(value) >= 2 * len(quote) and value.startswith(quote) and value.endswith(quote):
            return f"{match.group(1)}{quote}{REDACTED}{quote}"
    return match.group(1) + REDACTED


# Every pattern above needs one of these words: most lines have none and skip the patterns
# (one case-sensitive search of the lower-cased text is ~10 times cheaper than the patterns).
_HINTS = (
    "passw", "pwd", "secret", "token", "authoriz", "cookie", "csrf", "signature", "apikey",
    "api_key", "api-key", "private", "credential", "refresh", "access", "session", "jwt",
    "bearer", "eyj", "v1=", "://",
)  # fmt: skip
_HINT_RE = re.compile("|".join(re.escape(hint) for hint in _HINTS))


def redact(text: str) -> str:
    """``text`` with every secret the patterns know replaced by ``[redacted]``."""
    if _HINT_RE.search(text.lower()) is None:
        return text
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(_replace, text)
    return text


@functools.lru_cache(maxsize=4096)  # field names repeat: every line has the same few
def is_secret_name(name: str) -> bool:
    """True when a value stored under ``name`` (a field, key or header) is a secret."""
    return _SECRET_NAME_RE.fullmatch(name) is not None


def _secret(value: Any) -> Any:
    """The value of a secret-named field: redacted, unless it cannot hold a secret (a count,
    a flag, a duration: ``token_ttl=900``, ``password_changed=True``)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return REDACTED


def scrub(value: Any, *, depth: int = 0) -> Any:
    """``value`` with its secrets redacted: a copy when something changed, else itself.

    Strings are redacted by pattern; dicts lose the values of secret-named keys; lists,
    tuples and sets are walked. Other objects are left for the formatter's last pass over
    the whole line (their ``str()`` may be costly or their type matter to other handlers).
    """
    if isinstance(value, str):
        text = redact(value)
        return value if text == value else text
    if depth > 20:  # a pathological structure: give up on it rather than recurse forever
        return REDACTED
    if isinstance(value, dict):
        cleaned = {
            key: _secret(item)
            if isinstance(key, str) and is_secret_name(key)
            else scrub(item, depth=depth + 1)
            for key, item in value.items()
        }
        changed = any(cleaned[key] is not item for key, item in value.items())
        return cleaned if changed else value
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [scrub(item, depth=depth + 1) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return value


# What every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "service",
    "request_id",
    "user_id",
    "event_id",
}


class ContextFilter(logging.Filter):
    """Adds service, request_id, user_id and event_id to every record; redacts secrets.

    Secrets go from the message (with its ``%`` arguments: a logged dict's repr too) and from
    every ``extra`` field; tracebacks and stack text are redacted by the formatters below,
    which also check every field (JSON) or the whole line (text) once more.
    """

    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        for key, value in current().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        if isinstance(record.msg, dict) and not record.args:
            record.msg = scrub(record.msg)  # the JSON formatter merges a dict message
        else:
            message = record.getMessage()
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        for key in record.__dict__.keys() - _RECORD_ATTRS:
            value = record.__dict__[key]
            cleaned_value = _secret(value) if is_secret_name(key) else scrub(value)
            if cleaned_value is not value:
                record.__dict__[key] = cleaned_value
        return True


class _RedactingFormatter(logging.Formatter):
    """Tracebacks and stacks redacted as they are formatted."""

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info))


class TextFormatter(_RedactingFormatter):
    """One readable line: time level logger [request_id user] message key=value..."""

    def format(self, record: logging.LogRecord) -> str:
        # A last pass over the line: another handler's formatter may have cached the
        # unredacted traceback in exc_text, which logging.Formatter then reuses.
        base = redact(super().format(record))
        ids = " ".join(
            f"{key}={getattr(record, key)}"
            for key in ("request_id", "user_id", "event_id")
            if getattr(record, key, None)
        )
        return f"{base} {ids}".rstrip()


_FORMATTED = frozenset({"exc_info", "stack_info"})
_JSON_NATIVE = (str, bool, int, float, dict, list, tuple, type(None))


class JsonFormatter(_RedactingFormatter, pythonjsonlogger.json.JsonFormatter):
    """python-json-logger's JSON lines; every field is checked again just before it is
    serialised (field by field, so the line stays valid JSON)."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # The message and the extra fields were scrubbed by ContextFilter; what is left is a
        # secret-named field, a traceback cached unredacted by another handler's formatter,
        # and objects written by their str() (such as Django's request).
        for key, value in log_data.items():
            if is_secret_name(key):
                log_data[key] = _secret(value)
            elif key in _FORMATTED and isinstance(value, str):
                log_data[key] = redact(value)
            elif not isinstance(value, _JSON_NATIVE):
                text = str(value)
                redacted = redact(text)
                if redacted != text:
                    log_data[key] = redacted
        return log_data


def logging_config(*, service: str, level: str = "INFO", fmt: str = "json") -> dict[str, Any]:
    """A ``LOGGING`` dict for Django settings and Celery processes."""
    formatter: dict[str, Any]
    if fmt == "text":
        formatter = {
            "()": TextFormatter,
            "format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        }
    else:
        formatter = {
            "()": JsonFormatter,
            "format": "%(asctime)s %(levelname)s %(service)s %(name)s %(message)s "
            "%(request_id)s %(user_id)s %(event_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "timestamp": False,
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter, "service": service}},
        "formatters": {"default": formatter},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.server": {"level": "WARNING"},
            "django.db.backends": {"level": "INFO"},
            "celery": {"level": level},
            "kombu": {"level": "WARNING"},
            "amqp": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
            "pymongo": {"level": "WARNING"},
        },
    }
