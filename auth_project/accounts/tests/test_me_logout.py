"""POST /api/auth/logout and GET/PATCH/DELETE /api/auth/me (signed user context)."""

from __future__ import annotations

import json
import logging
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError

from accounts.exceptions import (
    ERROR_INVALID_REFRESH,
    ERROR_NOTHING_TO_UPDATE,
    ERROR_REFRESH_NOT_YOURS,
    ERROR_USER_GONE,
    ERROR_USERNAME_TAKEN,
    ERROR_WRONG_PASSWORD,
)
from accounts.models import OutboxEvent
from accounts.tests.conftest import LOGIN, LOGOUT, ME, REFRESH, context_headers, login
from accounts.tests.factories import PASSWORD, UserFactory
from common import context
from common.events import USER_DELETED, validate_envelope
from common.testclient import context_headers as signed_context

pytestmark = pytest.mark.django_db
User = get_user_model()
NEW_PASSWORD = "Quiet-Harbor-77"


# --------------------------------------------------------------------------- context


def test_me_without_context_is_401(api):
    response = api.get(ME)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_X_USER": '{"id":"1","username":"x"}'},
        {"HTTP_X_USER": '{"id":"1","username":"x"}', "HTTP_X_USER_SIGNATURE": "t=1,n=1,v2=00"},
        {"HTTP_X_USER": '{"id":"1","username":"x"}', "HTTP_X_USER_SIGNATURE": "garbage"},
    ],
)
def test_me_with_missing_or_forged_signature_is_401(api, user, headers):
    api.credentials(**headers)
    assert api.get(ME).status_code == 401


def test_me_with_context_signed_by_another_key_is_401(api, user):
    user_value = {"id": str(user.pk), "username": user.username}
    api.credentials(**signed_context(user_value, method="GET", path=ME, key="not-ours"))
    assert api.get(ME).status_code == 401
    other_service = context.derive_key(settings.INTERNAL_SECRET, "playlist")
    api.credentials(**signed_context(user_value, method="GET", path=ME, key=other_service))
    assert api.get(ME).status_code == 401


def test_me_with_a_context_signed_for_another_request_is_401(api, user):
    api.credentials(**context_headers(user, method="DELETE"))
    assert api.get(ME).status_code == 401
    api.credentials(**context_headers(user, path=LOGOUT))
    assert api.get(ME).status_code == 401


def test_me_with_tampered_or_expired_context_is_401(api, user):
    other = UserFactory()
    headers = context_headers(user)
    headers["HTTP_X_USER"] = headers["HTTP_X_USER"].replace(str(user.pk), str(other.pk))
    api.credentials(**headers)
    assert api.get(ME).status_code == 401
    user_value = {"id": str(user.pk), "username": user.username}
    api.credentials(**signed_context(user_value, method="GET", path=ME, now=time.time() - 3600))
    assert api.get(ME).status_code == 401


# --------------------------------------------------------------------------- GET me


def test_get_me_answers_the_profile(as_user, user):
    response = as_user(user).get(ME)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(user.pk)
    assert body["username"] == user.username
    assert set(body) == {"id", "username", "date_joined", "last_login"}


def test_me_of_a_deleted_user_is_401(as_user, user):
    client = as_user(user)
    User.objects.filter(pk=user.pk).delete()
    response = client.get(ME)
    assert response.status_code == 401
    assert response.json() == {"detail": ERROR_USER_GONE, "code": "user_not_found"}


def test_me_with_a_non_numeric_context_id_is_401(api):
    api.credentials(**signed_context({"id": "abc", "username": "abc"}, method="GET", path=ME))
    assert api.get(ME).status_code == 401


# --------------------------------------------------------------------------- logout


def test_logout_revokes_the_refresh_token(api, as_user, user):
    tokens = login(api, user.username)
    response = as_user(user).post(LOGOUT, {"refresh": tokens["refresh"]}, format="json")
    assert response.status_code == 204
    assert response.content == b""
    api.credentials()
    refused = api.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")
    assert refused.status_code == 401


def test_logout_twice_is_still_204(api, as_user, user):
    tokens = login(api, user.username)
    client = as_user(user)
    assert client.post(LOGOUT, {"refresh": tokens["refresh"]}, format="json").status_code == 204
    assert client.post(LOGOUT, {"refresh": tokens["refresh"]}, format="json").status_code == 204


def test_logout_with_someone_elses_refresh_is_403_and_revokes_nothing(api, as_user, user):
    other = UserFactory()
    theirs = login(api, other.username)["refresh"]
    response = as_user(user).post(LOGOUT, {"refresh": theirs}, format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == ERROR_REFRESH_NOT_YOURS
    api.credentials()
    assert api.post(REFRESH, {"refresh": theirs}, format="json").status_code == 200


def test_logout_with_an_access_token_or_garbage_is_400(api, as_user, user):
    tokens = login(api, user.username)
    client = as_user(user)
    for bad in (tokens["token"], "garbage", tokens["refresh"][:-3] + "abc"):
        response = client.post(LOGOUT, {"refresh": bad}, format="json")
        assert response.status_code == 400
        assert response.json()["errors"] == {"refresh": [ERROR_INVALID_REFRESH]}


@pytest.mark.parametrize("body", [{}, {"refresh": 1}, {"refresh": None}])
def test_logout_bad_input_is_400(as_user, user, body):
    assert as_user(user).post(LOGOUT, body, format="json").status_code == 400


def test_logout_without_context_is_401(api, user):
    tokens = login(api, user.username)
    assert api.post(LOGOUT, {"refresh": tokens["refresh"]}, format="json").status_code == 401


def test_logout_is_logged_with_user_id(api, as_user, user, caplog):
    caplog.set_level(logging.INFO)
    tokens = login(api, user.username)
    as_user(user).post(LOGOUT, {"refresh": tokens["refresh"]}, format="json")
    record = next(r for r in caplog.records if r.getMessage() == "user logged out")
    assert record.user_id == str(user.pk)
    assert tokens["refresh"] not in caplog.text


# --------------------------------------------------------------------------- PATCH me


def test_patch_username(as_user, user):
    response = as_user(user).patch(
        ME, {"username": "renamed", "current_password": PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["username"] == "renamed"
    user.refresh_from_db()
    assert user.username == "renamed"


def test_patch_taken_username_is_400(as_user, user):
    UserFactory(username="occupied")
    response = as_user(user).patch(
        ME, {"username": "Occupied", "current_password": PASSWORD}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"username": [ERROR_USERNAME_TAKEN]}


def test_patch_with_wrong_current_password_changes_nothing(as_user, user):
    name = user.username
    response = as_user(user).patch(
        ME,
        {"username": "x-new", "password": NEW_PASSWORD, "current_password": "wrong-one-1"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"current_password": [ERROR_WRONG_PASSWORD]}
    user.refresh_from_db()
    assert user.username == name
    assert user.check_password(PASSWORD)


def test_patch_password_revokes_every_refresh_token(api, as_user, user):
    sessions = [login(api, user.username)["refresh"] for _ in range(2)]
    response = as_user(user).patch(
        ME, {"password": NEW_PASSWORD, "current_password": PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    api.credentials()
    for token in sessions:
        assert api.post(REFRESH, {"refresh": token}, format="json").status_code == 401
    old = api.post(LOGIN, {"username": user.username, "password": PASSWORD}, format="json")
    assert old.status_code == 401
    fresh = login(api, user.username, NEW_PASSWORD)
    assert api.post(REFRESH, {"refresh": fresh["refresh"]}, format="json").status_code == 200


def test_patch_weak_password_is_400(as_user, user):
    response = as_user(user).patch(
        ME, {"password": "123", "current_password": PASSWORD}, format="json"
    )
    assert response.status_code == 400
    assert "password" in response.json()["errors"]
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"username": "x"}, "current_password"),
        ({"current_password": PASSWORD}, "non_field_errors"),
        ({"username": 5, "current_password": PASSWORD}, "username"),
        ({"username": "no spaces allowed", "current_password": PASSWORD}, "username"),
        ({"password": ["x"], "current_password": PASSWORD}, "password"),
    ],
)
def test_patch_bad_input_is_400(as_user, user, body, field):
    response = as_user(user).patch(ME, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_patch_malformed_json_is_400(as_user, user):
    response = as_user(user).patch(ME, "{nope", content_type="application/json")
    assert response.status_code == 400


# --------------------------------------------------------------------------- DELETE me


def test_delete_me_deletes_the_user_and_writes_one_outbox_row(
    api, as_user, user, django_capture_on_commit_callbacks
):
    refresh_token = login(api, user.username)["refresh"]
    client = as_user(user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.delete(
            ME, {"current_password": PASSWORD}, format="json", HTTP_X_REQUEST_ID="req-delete-1"
        )
    assert response.status_code == 204
    assert not User.objects.filter(pk=user.pk).exists()
    rows = list(OutboxEvent.objects.all())
    assert len(rows) == 1
    envelope = validate_envelope(rows[0].envelope)
    assert envelope["type"] == USER_DELETED
    assert envelope["user_id"] == str(user.pk)
    assert envelope["data"] == {"username": user.username}
    assert envelope["request_id"] == "req-delete-1"
    assert str(rows[0].event_id) == envelope["event_id"]
    assert len(callbacks) == 1  # the hand-over to the relay, after commit only
    api.credentials()
    assert api.post(REFRESH, {"refresh": refresh_token}, format="json").status_code == 401


def test_delete_me_with_wrong_password_deletes_nothing(as_user, user):
    response = as_user(user).delete(ME, {"current_password": "wrong-one-1"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"current_password": [ERROR_WRONG_PASSWORD]}
    assert User.objects.filter(pk=user.pk).exists()
    assert OutboxEvent.objects.count() == 0


@pytest.mark.parametrize("body", [{}, {"current_password": 1}, {"current_password": None}])
def test_delete_me_bad_input_is_400(as_user, user, body):
    assert as_user(user).delete(ME, body, format="json").status_code == 400
    assert User.objects.filter(pk=user.pk).exists()
    assert OutboxEvent.objects.count() == 0


def test_delete_me_without_context_is_401(api, user):
    assert api.delete(ME, {"current_password": PASSWORD}, format="json").status_code == 401
    assert OutboxEvent.objects.count() == 0


def test_user_deletion_and_outbox_row_are_one_transaction(as_user, user, monkeypatch):
    """If the outbox write fails, the user is not deleted either."""

    def broken_create(*args, **kwargs):
        raise DatabaseError("outbox insert failed")

    monkeypatch.setattr(OutboxEvent.objects, "create", broken_create)
    client = as_user(user)
    with pytest.raises(DatabaseError):
        client.delete(ME, {"current_password": PASSWORD}, format="json")
    assert User.objects.filter(pk=user.pk).exists()
    assert OutboxEvent.objects.count() == 0


def test_delete_me_twice_is_401_the_second_time(as_user, user):
    client = as_user(user)
    assert client.delete(ME, {"current_password": PASSWORD}, format="json").status_code == 204
    assert client.delete(ME, {"current_password": PASSWORD}, format="json").status_code == 401
    assert OutboxEvent.objects.count() == 1


def test_delete_is_logged_with_user_id(as_user, user, caplog):
    caplog.set_level(logging.INFO)
    as_user(user).delete(
        ME, json.dumps({"current_password": PASSWORD}), content_type="application/json"
    )
    record = next(r for r in caplog.records if r.getMessage() == "user deleted")
    assert record.user_id == str(user.pk)
    assert PASSWORD not in caplog.text


def test_patch_without_changes_says_what_is_missing(as_user, user):
    response = as_user(user).patch(ME, {"current_password": PASSWORD}, format="json")
    assert response.json()["errors"] == {"non_field_errors": [ERROR_NOTHING_TO_UPDATE]}


# --------------------------------------------------------------------------- logout everywhere
LOGOUT_ALL = "/api/auth/logout-all"


def test_logout_all_revokes_every_refresh_token_of_the_caller_only(api, as_user, user):
    mine = [login(api, user.username)["refresh"] for _ in range(3)]
    other = UserFactory()
    theirs = login(api, other.username)["refresh"]
    response = as_user(user).post(LOGOUT_ALL)
    assert response.status_code == 204
    assert response.content == b""
    for token in mine:
        assert api.post(REFRESH, {"refresh": token}, format="json").status_code == 401
    assert api.post(REFRESH, {"refresh": theirs}, format="json").status_code == 200
    fresh = login(api, user.username)  # signing in again works
    assert api.post(REFRESH, {"refresh": fresh["refresh"]}, format="json").status_code == 200


def test_logout_all_needs_a_user_context(api, user):
    login(api, user.username)
    assert api.post(LOGOUT_ALL).status_code == 401


def test_logout_all_twice_is_still_204(as_user, user):
    client = as_user(user)
    assert client.post(LOGOUT_ALL).status_code == 204
    assert client.post(LOGOUT_ALL).status_code == 204


def test_logout_all_of_a_deleted_user_is_401(as_user, user):
    client = as_user(user)
    User.objects.filter(pk=user.pk).delete()
    assert client.post(LOGOUT_ALL).status_code == 401


def test_tokens_carry_their_issue_time_in_ms(api, user):
    import jwt

    before = int(time.time() * 1000)
    pair = login(api, user.username)
    after = int(time.time() * 1000)
    for token in (pair["token"], pair["refresh"]):
        claims = jwt.decode(token, options={"verify_signature": False})
        assert before <= claims["iat_ms"] <= after
        assert claims["iat"] == claims["iat_ms"] // 1000
