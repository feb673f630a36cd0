"""Per-request (or per-task) values that every log record carries."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
user_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_id", default=None)
event_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("event_id", default=None)

_VARS = {"request_id": request_id_var, "user_id": user_id_var, "event_id": event_id_var}


def current() -> dict[str, str | None]:
    """The log context as a dict (values may be None)."""
    return {name: var.get() for name, var in _VARS.items()}


@contextmanager
def bound(**values: str | None) -> Iterator[None]:
    """Set some of request_id / user_id / event_id for the duration of a block."""
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
