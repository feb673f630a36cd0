"""Every error is JSON {"detail", "code"} (plus field errors for validation)."""

from rest_framework.test import APIClient

from common.errors import NOT_FOUND_DETAIL, VALIDATION_DETAIL


def test_validation_error_names_the_fields():
    response = APIClient().post("/validate", {"name": "far too long", "count": -1}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == VALIDATION_DETAIL
    assert body["code"] == "invalid"
    assert set(body["errors"]) == {"name", "count"}


def test_missing_fields_are_named():
    body = APIClient().post("/validate", {}, format="json").json()
    assert body["errors"]["name"] == ["This field is required."]


def test_malformed_json_is_400_with_code():
    response = APIClient().post("/validate", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_unauthenticated_is_401_json():
    response = APIClient().get("/whoami")
    assert response.status_code == 401
    assert response.json() == {
        "detail": "Authentication credentials were not provided.",
        "code": "not_authenticated",
    }


def test_method_not_allowed_is_json():
    response = APIClient().delete("/validate")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_unknown_url_is_json_404():
    response = APIClient().get("/no/such/page")
    assert response.status_code == 404
    assert response.json() == {"detail": NOT_FOUND_DETAIL, "code": "not_found"}
