"""Limit/offset pagination that answers 400 for a bad limit or offset instead of guessing,
and keeps every page under a byte budget (the page ends early; ``next`` continues)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.utils.urls import remove_query_param, replace_query_param

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

    def paginate_within_budget(
        self,
        items: Iterable[Any],
        *,
        count: int,
        request: Request,
        serialize: Callable[[Any], Any],
        max_bytes: int,
    ) -> list[Any]:
        """The page at limit/offset: ``items`` (lazily, from ``offset``) serialized one at a
        time while their JSON fits in ``max_bytes``; at least one, so paging always advances.

        ``items`` is consumed only as far as the page goes: a page never holds more than the
        budget (plus one playlist) in memory, whatever ``limit`` asks for.
        """
        self.request = request
        self.limit, self.offset = self.validate(request)
        self.count = count
        page: list[Any] = []
        size = 0
        for item in items:
            if len(page) >= self.limit:
                break
            data = serialize(item)
            item_bytes = json_size(data)
            if page and size + item_bytes > max_bytes:
                break
            page.append(data)
            size += item_bytes
        self.page_length = len(page)
        return page

    def _canonical_url(self) -> str:
        # Only the parameters that change the answer: links never echo other query strings,
        # so the answer (and its cache entry) is a function of limit and offset alone.
        return str(self.request.build_absolute_uri(self.request.path))

    def get_next_link(self) -> str | None:
        following = self.offset + getattr(self, "page_length", self.limit)
        if following >= self.count:
            return None
        url = replace_query_param(self._canonical_url(), self.limit_query_param, self.limit)
        return str(replace_query_param(url, self.offset_query_param, following))

    def get_previous_link(self) -> str | None:
        if self.offset <= 0:
            return None
        url = replace_query_param(self._canonical_url(), self.limit_query_param, self.limit)
        if self.offset - self.limit <= 0:
            return str(remove_query_param(url, self.offset_query_param))
        return str(replace_query_param(url, self.offset_query_param, self.offset - self.limit))


def json_size(data: Any) -> int:
    """Bytes of ``data`` as the API renders it (compact UTF-8 JSON)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8", "surrogatepass"))
