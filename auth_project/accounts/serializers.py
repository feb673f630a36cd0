"""Input and output shapes of the auth API."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.validators import UnicodeUsernameValidator
from rest_framework import serializers

from accounts.exceptions import ERROR_NOT_A_STRING

# Re-exported for the views; defined once for every service.
from common.serializers import ErrorSerializer, ValidationErrorSerializer  # noqa: F401

USERNAME_MAX_LENGTH = 150
PASSWORD_MAX_LENGTH = 1024


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of turning them into text."""

    default_error_messages = {"invalid": ERROR_NOT_A_STRING}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def username_field(**kwargs: Any) -> StrictCharField:
    return StrictCharField(
        max_length=USERNAME_MAX_LENGTH, validators=[UnicodeUsernameValidator()], **kwargs
    )


def password_field(**kwargs: Any) -> StrictCharField:
    return StrictCharField(
        max_length=PASSWORD_MAX_LENGTH,
        trim_whitespace=False,
        write_only=True,
        style={"input_type": "password"},
        **kwargs,
    )


class CredentialsSerializer(serializers.Serializer):
    username = username_field()
    password = password_field()


class LoginSerializer(serializers.Serializer):
    # No username validators: whatever was sent, a failed login answers the same 401.
    username = StrictCharField(max_length=USERNAME_MAX_LENGTH)
    password = password_field()


class UserSerializer(serializers.Serializer):
    id = serializers.CharField(
        source="pk", read_only=True, help_text="The user id (a string, as in the token's user_id)."
    )
    username = serializers.CharField(read_only=True)
    date_joined = serializers.DateTimeField(read_only=True)
    last_login = serializers.DateTimeField(read_only=True, allow_null=True)


class TokenPairSerializer(serializers.Serializer):
    token = serializers.CharField(
        source="access",
        read_only=True,
        help_text="Access token (RS256 JWT), for Authorization: Bearer.",
    )
    refresh = serializers.CharField(read_only=True, help_text="Refresh token (single use).")
    user = UserSerializer(read_only=True)


class RefreshInputSerializer(serializers.Serializer):
    refresh = StrictCharField(max_length=4096)


class RefreshOutputSerializer(serializers.Serializer):
    token = serializers.CharField(source="access", read_only=True, help_text="New access token.")
    refresh = serializers.CharField(
        read_only=True, help_text="New refresh token; the one sent is used up."
    )


class MeUpdateSerializer(serializers.Serializer):
    username = username_field(required=False)
    password = password_field(required=False, help_text="The new password.")
    current_password = password_field()


class MeDeleteSerializer(serializers.Serializer):
    current_password = password_field()


class JWKSerializer(serializers.Serializer):
    kty = serializers.CharField()
    use = serializers.CharField()
    alg = serializers.CharField()
    kid = serializers.CharField()
    n = serializers.CharField()
    e = serializers.CharField()


class JWKSSerializer(serializers.Serializer):
    keys = JWKSerializer(many=True)
