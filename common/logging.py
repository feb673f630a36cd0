"""Logging for every process: JSON lines (or one-line text) carrying request and event ids."""

from __future__ import annotations

import logging
import re
from typing import Any

from common.log_context import current

# Values that must never reach a log line, whatever logged them.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # any JWT
    re.compile(
        r'(?i)("?(?:password|current_password|refresh|token|access|secret|signature)"?'
        r'\s*[:=]\s*"?)[^",\s}]+'
    ),
    re.compile(r"(?i)(v1=)[0-9a-f]{16,}"),
]
REDACTED = "[redacted]"


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text


class ContextFilter(logging.Filter):
    """Adds service, request_id, user_id and event_id to every record; redacts secrets."""

    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        for key, value in current().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class TextFormatter(logging.Formatter):
    """One readable line: time level logger [request_id user] message key=value..."""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        ids = " ".join(
            f"{key}={getattr(record, key)}"
            for key in ("request_id", "user_id", "event_id")
            if getattr(record, key, None)
        )
        return f"{base} {ids}".rstrip()


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
            "()": "pythonjsonlogger.json.JsonFormatter",
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
