"""Views that exercise `common` in its tests."""

import logging

from django.urls import include, path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

logger = logging.getLogger("common.tests")


class WhoAmI(APIView):
    def get(self, request):
        logger.info("whoami called")
        return Response(
            {
                "id": request.user.id,
                "username": request.user.username,
                "request_id": request.request_id,
            }
        )

    post = get  # the signature covers the body of a write too


class EchoSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=5)
    count = serializers.IntegerField(min_value=0)


class Validate(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def post(self, request):
        serializer = EchoSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(serializer.validated_data)


urlpatterns = [
    path("whoami", WhoAmI.as_view()),
    path("validate", Validate.as_view()),
    path("", include("common.urls")),
]

handler404 = "common.errors.json_404"
