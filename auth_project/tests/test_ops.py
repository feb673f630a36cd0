"""The operational endpoints answer."""

import pytest

from common.testing import assert_ops_endpoints_answer


@pytest.mark.django_db
def test_healthz_readyz_metrics(client):
    assert_ops_endpoints_answer(client)


@pytest.mark.django_db
def test_runs_on_postgresql():
    from django.db import connection

    assert connection.vendor == "postgresql"
