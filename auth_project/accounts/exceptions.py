"""Declarative HTTP errors of the auth service; the messages are the constants tests check."""

from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import APIException

from common.errors import PAYLOAD_TOO_LARGE_DETAIL, PayloadTooLarge  # noqa: F401

ERROR_INVALID_CREDENTIALS = "Invalid username or password."
ERROR_INVALID_REFRESH = "Refresh token is invalid, expired or revoked."
ERROR_USER_GONE = "This user no longer exists."
ERROR_REFRESH_NOT_YOURS = "This refresh token belongs to another user."
ERROR_PAYLOAD_TOO_LARGE = PAYLOAD_TOO_LARGE_DETAIL
ERROR_USERNAME_TAKEN = "A user with that username already exists."
ERROR_WRONG_PASSWORD = "Current password is incorrect."
ERROR_NOTHING_TO_UPDATE = "Give a new username and/or a new password."
ERROR_NOT_A_STRING = "Not a valid string."


class InvalidCredentials(APIException):
    """Login failed: the same answer for an unknown user and a wrong password."""

    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = ERROR_INVALID_CREDENTIALS
    default_code = "invalid_credentials"


class InvalidRefreshToken(APIException):
    """A refresh token that is forged, expired, revoked, of the wrong type, issuer or audience."""

    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = ERROR_INVALID_REFRESH
    default_code = "token_not_valid"


class UserGone(APIException):
    """The gateway vouched for a user that has been deleted since the token was issued."""

    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = ERROR_USER_GONE
    default_code = "user_not_found"


class RefreshNotYours(APIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_detail = ERROR_REFRESH_NOT_YOURS
    default_code = "token_not_yours"
