"""Fixtures: the services' saved schemas, and real HTTP upstreams serving them at /schema."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, override_settings
from proxy import upstreams
from proxy.tests.fake_upstream import Answer, FakeUpstream, Recorded

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SERVICES = ("auth", "playlist", "analysis")


def saved_schema(name: str) -> dict[str, Any]:
    """``<service>/manage.py spectacular --format openapi-json`` output, saved (see README)."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture
def schemas() -> dict[str, dict[str, Any]]:
    return {name: saved_schema(name) for name in SERVICES}


class SchemaUpstream:
    """One running fake service answering ``GET /schema?format=json`` with a schema."""

    def __init__(self, name: str, schema: dict[str, Any]) -> None:
        self.name = name
        self.schema: dict[str, Any] | None = schema
        self.status = 200
        self.body: bytes | None = None  # overrides the JSON schema when set
        self.server = FakeUpstream()
        self.server.script = self._answer

    def _answer(self, record: Recorded) -> Answer | None:
        if not record.path.startswith("/schema"):
            return None
        body = self.body if self.body is not None else json.dumps(self.schema).encode()
        return Answer(self.status, [("Content-Type", "application/json")], body)

    def fetches(self) -> list[Recorded]:
        return self.server.calls("/schema")


@pytest.fixture
def services(schemas: dict[str, dict[str, Any]]) -> Iterator[dict[str, SchemaUpstream]]:
    """The three upstreams as real HTTP servers; settings.UPSTREAMS points at them."""
    running = {name: SchemaUpstream(name, copy.deepcopy(schemas[name])) for name in SERVICES}
    for upstream in running.values():
        upstream.server.start()
    config = {
        name: {"url": upstream.server.url, "connect_timeout": 0.5, "read_timeout": 2.0}
        for name, upstream in running.items()
    }
    with override_settings(UPSTREAMS=config):
        try:
            yield running
        finally:
            upstreams.reset()
            for upstream in running.values():
                upstream.server.stop()


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.fixture
def get_schema(client: Client) -> Callable[[], dict[str, Any]]:
    def get() -> dict[str, Any]:
        response = client.get("/api/schema", {"format": "json"})
        assert response.status_code == 200, response.content
        return dict(response.json())

    return get
