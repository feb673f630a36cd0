"""What fuzzing the gateway's schema (e2e/test_schemathesis.py) found in this service."""

from __future__ import annotations

import pytest
from analysis.serializers import BLANK_PARAMETER

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["scope", "limit"])
def test_blank_genres_parameter_is_400_not_the_default(api, name):
    response = api("u1").get(f"/api/analysis/genres?{name}=")
    assert response.status_code == 400
    assert response.json()["errors"] == {name: [BLANK_PARAMETER]}


@pytest.mark.parametrize("query", ["limit=false", "limit=0", "limit=101", "scope=all"])
def test_bad_genres_parameters_are_400_naming_the_field(api, query):
    response = api("u1").get(f"/api/analysis/genres?{query}")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {query.split("=")[0]}


def test_schema_documents_the_error_answers(client):
    schema = client.get("/schema?format=json").json()
    genres = schema["paths"]["/api/analysis/genres"]["get"]["responses"]
    assert {"200", "400", "401"} <= set(genres)
    assert "401" in schema["paths"]["/api/analysis"]["get"]["responses"]
