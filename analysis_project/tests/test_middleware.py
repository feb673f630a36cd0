"""Every service keeps common's middleware: the body-size limit answers 413 here too.

The analysis settings once replaced MIDDLEWARE (for the admin) and silently dropped the limit
the README promises for every service. The cross-service test imports each service's own
settings module in a subprocess (one Django per process) with this run's environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings

from common.errors import PAYLOAD_TOO_LARGE_DETAIL

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "auth", "playlist", "analysis")
SMALL_LIMIT = 1024

_PROBE = """
import json
import django
from django.conf import settings
from django.test import Client
from django.test.utils import setup_test_environment
from django.utils.module_loading import import_string

django.setup()
from common.request_id import BodySizeLimitMiddleware

setup_test_environment()  # the test client's host is allowed
limited = [
    path for path in settings.MIDDLEWARE
    if isinstance(import_string(path), type)
    and issubclass(import_string(path), BodySizeLimitMiddleware)
]
limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
response = Client().generic(
    "POST", "/api/body-size-probe", data=b"x" * (limit + 1), content_type="application/json"
)
print(json.dumps({
    "middleware": settings.MIDDLEWARE,
    "limited": limited,
    "status": response.status_code,
    "body": response.content.decode(errors="replace"),
}))
"""


def _effective(service: str, tmp_path: Path) -> dict:
    folder = REPO_ROOT / f"{service}_project"
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = f"{service}_project.settings"
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(REPO_ROOT)])
    # This run's servers (DATABASE_URL is this suite's: auth's settings only parse it; the
    # probe answers from the middleware, before any view or database). Auth's key file is
    # read when first needed: the path need not exist.
    env.setdefault("JWT_PRIVATE_KEY_FILE", str(tmp_path / "unused-private.pem"))
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{service} settings did not load:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_keeps_the_body_size_limit(service, tmp_path):
    found = _effective(service, tmp_path)
    assert len(found["limited"]) == 1, found["middleware"]
    # Before anything that reads the body or touches a session, after the request id.
    order = found["middleware"]
    assert order.index(found["limited"][0]) > order.index("common.request_id.RequestIDMiddleware")
    assert found["status"] == 413, found
    assert json.loads(found["body"]) == {
        "detail": PAYLOAD_TOO_LARGE_DETAIL,
        "code": "payload_too_large",
    }


def test_analysis_middleware_is_commons_plus_the_admins():
    from common.settings import defaults

    common_middleware = defaults(
        service="analysis", base_dir=REPO_ROOT / "analysis_project", project="analysis_project"
    )["MIDDLEWARE"]
    assert [m for m in settings.MIDDLEWARE if m in common_middleware] == common_middleware
    assert "common.request_id.BodySizeLimitMiddleware" in settings.MIDDLEWARE


@pytest.mark.django_db
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=SMALL_LIMIT)
@pytest.mark.parametrize("path", ["/api/analysis", "/api/analysis/genres", "/admin/login/"])
def test_oversized_body_is_413_before_any_view(path, api):
    from django.contrib.sessions.models import Session

    sessions = Session.objects.count()
    for client in (Client(), api("big-body-user")):
        response = client.generic(
            "POST", path, data=b"x" * (SMALL_LIMIT + 1), content_type="application/json"
        )
        assert response.status_code == 413
        assert response.json() == {"detail": PAYLOAD_TOO_LARGE_DETAIL, "code": "payload_too_large"}
        assert response["X-Request-ID"]
    assert Session.objects.count() == sessions  # the admin never saw the request


@pytest.mark.django_db
@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=SMALL_LIMIT)
def test_declared_length_decides_413_a_bad_one_is_400_and_the_limit_itself_passes():
    client = Client()
    big = client.generic(
        "POST", "/admin/login/", data=b"x", content_type="text/plain", CONTENT_LENGTH="10" * 10
    )
    assert big.status_code == 413
    bad = client.generic(
        "POST", "/admin/login/", data=b"x", content_type="text/plain", CONTENT_LENGTH="abc"
    )
    assert bad.status_code == 400
    assert set(bad.json()) == {"detail", "code"}
    # At the limit the request reaches the view (which allows GET only).
    exact = client.generic(
        "POST", "/api/analysis", data=b"x" * SMALL_LIMIT, content_type="application/json"
    )
    assert exact.status_code in (401, 403, 405)
