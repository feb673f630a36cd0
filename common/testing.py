"""Helpers for the test suites: the real servers a test run was given, and how to get them.

`python manage_all.py test` hands every suite isolated slices of real servers (the machine's
on 127.0.0.1, else servers of the run's own from the virtualenv's wheels):
``TEST_POSTGRES_URL``, ``TEST_REDIS_URL`` (with ``CACHE_KEY_PREFIX``), ``TEST_AMQP_URL`` (a
vhost of its own) and ``TEST_MONGODB_URI`` (the run's own SecantusDB server; each suite uses a
database of its own on it; ``MONGODB_URI_CONTRACT`` may name a real MongoDB for the contract
suite). Under ``CI=true`` (``TEST_REQUIRE_SERVERS=true``) a test that needs a missing server
fails instead of skipping.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

SERVER_VARS = {
    "postgres": "TEST_POSTGRES_URL",
    "redis": "TEST_REDIS_URL",
    "amqp": "TEST_AMQP_URL",
    "mongodb": "TEST_MONGODB_URI",
}


def servers_required() -> bool:
    return (
        os.environ.get("TEST_REQUIRE_SERVERS", "").lower() == "true"
        or os.environ.get("CI", "").lower() == "true"
    )


def server_url(kind: str) -> str:
    """The URL of a real server for this test run; fail (CI) or skip (laptop) without one."""
    var = SERVER_VARS[kind]
    url = os.environ.get(var)
    if url:
        return url
    message = f"{var} is not set: this test needs a real {kind} server"
    if servers_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
    raise AssertionError("unreachable")


def run_id() -> str:
    return os.environ.get("TEST_RUN_ID", "local")


def django_test_database_url() -> str:
    """The URL of the test database pytest-django created, for processes a test starts."""
    from urllib.parse import quote

    from django.db import connection

    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def assert_ops_endpoints_answer(client: Any, *, checks: set[str] | None = None) -> None:
    """A service's operational endpoints, as the platform probes them, through a Django test
    ``client``: /healthz ok, /readyz 200 (every one of ``checks`` present and ok, if given) and
    /metrics with django-prometheus' request series."""
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.content
    if checks is not None:
        answered = ready.json()["checks"]
        assert set(answered) == checks, answered
        assert all(check["ok"] for check in answered.values()), answered
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert b"django_http_responses_total_by_status_view_method_total" in metrics.content


def relays_drain_together(
    relays: list[Any], *, passes: int = 200, after: Callable[[], None] | None = None
) -> list[list[tuple[int, str]]]:
    """Run every outbox relay's passes (``run_once``) in its own thread, all starting at the same
    moment, until each reports anything but ``"more"``; the (published, state) of every pass.
    ``after`` runs in each thread at its end (e.g. closing its database connection)."""
    start = threading.Barrier(len(relays))
    results: list[list[tuple[int, str]]] = [[] for _ in relays]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            start.wait(timeout=30)
            for _ in range(passes):
                published, state = relays[index].run_once()
                results[index].append((published, state))
                if state != "more":
                    return
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            if after is not None:
                after()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(relays))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a relay pass hung"
    assert not errors, errors
    return results
