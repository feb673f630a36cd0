"""Limit/offset pagination that answers 400 for a bad limit or offset instead of guessing."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from playlists.exceptions import LIMIT_INVALID, OFFSET_INVALID

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_OFFSET = 999_999_999  # nine digits at most


def _parse(raw: Any, *, minimum: int, maximum: int | None) -> int | None:
    if (
        not isinstance(raw, str)
        or not (raw.isascii() and raw.isdigit())
        or len(raw) > len(str(MAX_OFFSET))
    ):
        return None
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        return None
    return value


class PlaylistPagination(LimitOffsetPagination):
    """DRF's limit/offset answer shape: ``{"count", "next", "previous", "results"}``."""

    default_limit = DEFAULT_LIMIT
    max_limit = MAX_LIMIT

    def get_limit(self, request: Request) -> int:
        raw = request.query_params.get(self.limit_query_param)
        if raw is None:
            return self.default_limit
        value = _parse(raw, minimum=1, maximum=self.max_limit)
        if value is None:
            raise ValidationError({"limit": [LIMIT_INVALID.format(max_limit=self.max_limit)]})
        return value

    def get_offset(self, request: Request) -> int:
        raw = request.query_params.get(self.offset_query_param)
        if raw is None:
            return 0
        value = _parse(raw, minimum=0, maximum=None)
        if value is None:
            raise ValidationError({"offset": [OFFSET_INVALID]})
        return value

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        """The bounds ``get_limit``/``get_offset`` enforce, so clients know what answers 400."""
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit},
            self.offset_query_param: {"minimum": 0, "maximum": MAX_OFFSET},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters

    def validate(self, request: Request) -> tuple[int, int]:
        """Check limit and offset before anything is read (bad values answer 400)."""
        return self.get_limit(request), self.get_offset(request)
