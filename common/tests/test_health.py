"""/healthz says the process answers; /readyz runs the configured dependency checks."""

import pytest
from django.test import Client, override_settings


def test_healthz():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "common-tests"}


@pytest.mark.django_db
def test_readyz_ok_runs_each_check():
    body = Client().get("/readyz").json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache"}


def failing_check():
    raise ConnectionError("connection refused")


@override_settings(
    HEALTH_CHECKS=["common.health.check_cache", "common.tests.test_health.failing_check"]
)
def test_readyz_503_names_the_failing_dependency():
    response = Client().get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["cache"]["ok"] is True
    assert checks["failing_check"]["ok"] is False
    assert "connection refused" in checks["failing_check"]["error"]


def test_file_cache_is_shared_between_processes(tmp_path, monkeypatch):
    """CACHE_BACKEND=file (what `up` uses without Redis): another process sees a write."""
    import subprocess
    import sys

    from common.settings import cache as cache_config

    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CACHE_BACKEND", "file")
    monkeypatch.delenv("REDIS_URL", raising=False)
    config = cache_config(service="svc")
    assert config["BACKEND"].endswith("FileBasedCache")
    code = (
        "import django, sys; from django.conf import settings;"
        "settings.configure(CACHES={'default': eval(sys.argv[1])}); django.setup();"
        "from django.core.cache import cache; cache.set('revoked:jti', 1, 60)"
    )
    subprocess.run([sys.executable, "-c", code, repr(config)], check=True)
    from django.core.cache.backends.filebased import FileBasedCache

    reader = FileBasedCache(config["LOCATION"], {"KEY_PREFIX": config["KEY_PREFIX"]})
    assert reader.get("revoked:jti") == 1
