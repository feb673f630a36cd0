"""Benchmark-only endpoint: the floor a proxied request is measured against (bench/gateway.py).

``GET /bench/floor`` is a trivial DRF view behind the same JWT authentication as the proxy
(signature, claims, revocation list) but without an upstream: what Django, DRF and the token
check cost on their own.
"""

from __future__ import annotations

from typing import Any

from proxy.authentication import GatewayJWTAuthentication
from rest_framework import permissions
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class FloorView(APIView):
    """A fixed small JSON answer for an authenticated caller."""

    authentication_classes = [GatewayJWTAuthentication]
    permission_classes = [permissions.IsAuthenticated]
    renderer_classes = [JSONRenderer]
    throttle_classes: list[Any] = []

    def get(self, request: Request) -> Response:
        return Response({"ok": True, "items": []})
