"""The OpenAPI schema generates without warnings and the docs page answers."""

import io

import pytest
from django.core.management import call_command


def test_schema_generates_without_warnings():
    out = io.StringIO()
    call_command("spectacular", "--fail-on-warn", "--validate", stdout=out)
    schema = out.getvalue()
    for text in ("/api/analysis/genres", "UserSummary", "GenreCount", "scope", "limit"):
        assert text in schema


@pytest.mark.django_db
def test_docs_page_answers(client):
    assert client.get("/docs").status_code == 200
    assert client.get("/schema").status_code == 200
