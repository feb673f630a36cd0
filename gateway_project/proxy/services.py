"""Proxying one request to an upstream: headers in, breaker, timeouts, answer out."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from rest_framework.settings import api_settings

from common.context import Signed, sign
from proxy import metrics, upstreams
from proxy.breaker import FAILURE_STATUSES, BreakerOpenError, UpstreamServerError
from proxy.exceptions import (
    PayloadTooLarge,
    UpstreamAnswerTooLarge,
    UpstreamTimeout,
    UpstreamUnavailable,
    UpstreamUnreachable,
)

logger = logging.getLogger(__name__)

# RFC 9110 section 7.6.1 plus the de-facto ones; never forwarded in either direction.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Request headers the gateway sets itself (client values are dropped, never trusted), and the
# client's credentials: no service ever sees a bearer token or a cookie (common.context).
_REQUEST_DROP = HOP_BY_HOP | {
    "authorization",
    "cookie",
    "host",
    "content-length",
    "expect",
    "x-user",
    "x-user-signature",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
}
# Response headers the gateway's own server/middleware produce.
_RESPONSE_DROP = HOP_BY_HOP | {"content-length", "date", "server", "x-request-id"}
_READ_CHUNK = 64 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class UpstreamAnswer:
    """An upstream's answer, body still encoded exactly as sent."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _connection_tokens(value: str | None) -> set[str]:
    return {token.strip().lower() for token in (value or "").split(",") if token.strip()}


def request_body_read(*, request: HttpRequest, limit: int) -> bytes:
    """The request body, never reading more than ``limit`` + 1 bytes; 413 beyond ``limit``."""
    raw_length = request.META.get("CONTENT_LENGTH")
    if raw_length:
        try:
            length = int(raw_length)
        except ValueError:
            length = 0
        if length > limit:
            raise PayloadTooLarge()
        stream: Any = request
    elif "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        # Django ignores bodies without Content-Length; the server has de-chunked wsgi.input.
        stream = request.META["wsgi.input"]
    else:
        return b""
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(_READ_CHUNK, limit + 1 - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge()
    return b"".join(parts)


def client_address(*, request: HttpRequest) -> str:
    """The client's IP as the gateway resolves it: ``REMOTE_ADDR`` with ``GATEWAY_NUM_PROXIES``
    = 0; with n trusted proxies in front, the n-th X-Forwarded-For entry from the right (the one
    the outermost trusted proxy appended). Whatever the client wrote further left is ignored;
    an entry that is not an IP address falls back to ``REMOTE_ADDR``."""
    meta = request.META
    remote = str(meta.get("REMOTE_ADDR", ""))
    proxies = api_settings.NUM_PROXIES or 0
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if proxies <= 0 or not forwarded:
        return remote
    entries = [entry.strip() for entry in str(forwarded).split(",")]
    candidate = entries[-min(proxies, len(entries))]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def request_headers_build(*, request: HttpRequest) -> dict[str, str]:
    """End-to-end client headers (no credentials) plus the gateway's own: request id and
    X-Forwarded-*. The user context is signed per request by ``proxy_forward``."""
    meta = request.META
    drop = _REQUEST_DROP | _connection_tokens(meta.get("HTTP_CONNECTION"))
    headers: dict[str, str] = {}
    for key, value in meta.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").lower()
        elif key == "CONTENT_TYPE":
            name = "content-type"
        else:
            continue
        if name not in drop and value:
            headers[name] = value
    headers["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
    # One entry, the address the gateway resolved itself (never what the client claims): the
    # services take the last entry as the client (auth's per-IP login limits).
    headers["X-Forwarded-For"] = client_address(request=request)
    headers["X-Forwarded-Proto"] = request.scheme or "http"
    headers["X-Forwarded-Host"] = request.get_host()
    return headers


def _send(
    upstream: upstreams.Upstream, method: str, path: str, headers: Mapping[str, str], body: bytes
) -> UpstreamAnswer:
    # Straight to the upstream's urllib3 pool: requests' session and adapter layers (cookie
    # jar, environment merging, hooks, redirects, URL re-parsing, response wrapping) have no use
    # in a pass-through proxy and cost more CPU than the exchange itself (docs/performance.md).
    if body or method in _BODY_METHODS:
        headers = {**headers, "Content-Length": str(len(body))}
    try:
        response = upstream.pool.urlopen(
            method,
            upstream.path_prefix + path,
            body=body or None,
            headers=headers,
            redirect=False,
            assert_same_host=False,
            # Raw bytes: a gzip body stays gzip, matching the Content-Encoding passed through.
            decode_content=False,
            preload_content=False,  # read below, never more than GATEWAY_MAX_UPSTREAM_BYTES
        )
        data = _answer_read(response, limit=settings.GATEWAY_MAX_UPSTREAM_BYTES)
    # Mapped to requests' exceptions, which the breaker counts as failures (proxy/breaker.py).
    except urllib3.exceptions.NewConnectionError as exc:  # refused, unresolvable: before timeouts
        raise requests.ConnectionError(exc) from exc
    except urllib3.exceptions.ConnectTimeoutError as exc:
        raise requests.ConnectTimeout(exc) from exc
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.ReadTimeout(exc) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise requests.ConnectionError(exc) from exc
    answer = UpstreamAnswer(
        status=response.status, headers=list(response.headers.items()), body=data
    )
    if answer.status in FAILURE_STATUSES:
        raise UpstreamServerError(answer)
    return answer


def _answer_read(response: Any, *, limit: int) -> bytes:
    """The answer's body, refusing (``UpstreamAnswerTooLarge``) one over ``limit`` bytes without
    reading more than ``limit`` + 1 of it; the connection of a refused answer is closed."""
    # urllib3's reading of the headers: None when chunked (a Content-Length beside it is
    # ignored, as RFC 9112 says), close-delimited or unparsable; 0 for HEAD, 204 and 304.
    length = response.length_remaining
    if length is None:
        length = -1
    try:
        if 0 <= length <= limit:
            # http.client never reads past Content-Length: one read, as preloading would do.
            return bytes(response.read(decode_content=False))
        if length > limit:
            raise UpstreamAnswerTooLarge(size=length, limit=limit)
        parts: list[bytes] = []  # chunked or close-delimited: count as it comes
        size = 0
        while True:
            chunk = response.read(min(_READ_CHUNK, limit + 1 - size), decode_content=False)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                raise UpstreamAnswerTooLarge(size=None, limit=limit)
    except BaseException:
        # Too large, or the read failed: the rest stays unread, so the connection cannot be
        # reused (closed before it goes back to the pool).
        response.close()
        raise
    finally:
        response.release_conn()


def proxy_forward(
    *,
    upstream_name: str,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    user: dict[str, Any] | None = None,
) -> UpstreamAnswer:
    """Send one request through the upstream's breaker; the answer whatever its status.

    With a ``user``, the request carries that user's context signed with the upstream's own key
    for exactly this method, path (query included) and body (``common.context``).

    Raises ``UpstreamUnavailable`` (503, breaker open), ``UpstreamTimeout`` (504),
    ``UpstreamUnreachable`` (502) or ``UpstreamAnswerTooLarge`` (502, not a breaker failure).
    A 502/503/504 answer is returned too (and counted as a breaker failure).
    """
    upstream = upstreams.get(upstream_name)
    if user is not None:
        target = Signed(
            audience=upstream.name, method=method, path=upstream.path_prefix + path, body=body
        )
        headers = {**headers, **sign(user, key=upstream.context_key, target=target)}
    started = time.perf_counter()
    status = "error"
    error = ""
    try:
        answer = upstream.breaker.call(_send, upstream, method, path, headers, body)
        status = str(answer.status)
        return answer
    except UpstreamServerError as exc:
        answer = exc.response
        status = str(answer.status)
        return answer
    except BreakerOpenError as exc:
        status = "breaker_open"
        metrics.rejected_requests.labels(reason="breaker_open").inc()
        raise UpstreamUnavailable(wait=exc.retry_after) from exc
    except UpstreamAnswerTooLarge as exc:
        status = "too_large"
        error = str(exc)
        raise
    except requests.Timeout as exc:
        status = "timeout"
        error = str(exc)
        raise UpstreamTimeout() from exc
    except requests.ConnectionError as exc:
        status = "connection_error"
        error = str(exc)
        raise UpstreamUnreachable() from exc
    finally:
        duration = time.perf_counter() - started
        if status != "breaker_open":
            metrics.upstream_requests.labels(upstream=upstream_name, status=status).inc()
            metrics.upstream_duration.labels(upstream=upstream_name).observe(duration)
        log_path = path.split("?", 1)[0]
        # 5xx, unreachable and timed-out upstreams are worth a WARNING; the rest is traffic.
        failed = status.startswith("5") or status in (
            "connection_error",
            "timeout",
            "too_large",
            "error",
        )
        level = logging.WARNING if failed else logging.INFO
        logger.log(
            level,
            "%s %s -> %s %s %.1fms",
            method,
            log_path,
            upstream_name,
            status,
            duration * 1000,
            extra={
                "method": method,
                "path": log_path,
                "upstream": upstream_name,
                "status": status,
                "duration_ms": round(duration * 1000, 1),
                **({"error": error[:300]} if error else {}),
            },
        )


def response_build(*, answer: UpstreamAnswer) -> HttpResponse:
    """A Django response carrying the upstream answer unchanged (end-to-end headers only)."""
    response = HttpResponse(answer.body, status=answer.status)
    del response["Content-Type"]
    drop = _RESPONSE_DROP | _connection_tokens(
        next((v for k, v in answer.headers if k.lower() == "connection"), None)
    )
    merged: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for name, value in answer.headers:
        lowered = name.lower()
        if lowered in drop:
            continue
        if lowered == "set-cookie":
            response.cookies.load(value)
            continue
        merged.setdefault(lowered, []).append(value)
        names.setdefault(lowered, name)
    for lowered, values in merged.items():
        response[names[lowered]] = ", ".join(values)
    # proxy_forward logged this exchange already; Django would log every 4xx/5xx a second time.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response
