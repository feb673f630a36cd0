"""Limit/offset pagination that answers 400 for a bad limit or offset instead of guessing."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from playlists.exceptions import LIMIT_INVALID, OFFSET_INVALID

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def _parse(raw: Any, *, minimum: int, maximum: int | None) -> int | None:
    if not isinstance(raw, str) or not raw.isdigit() or len(raw) > 9:
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

    def validate(self, request: Request) -> tuple[int, int]:
        """Check limit and offset before anything is read (bad values answer 400)."""
        return self.get_limit(request), self.get_offset(request)
