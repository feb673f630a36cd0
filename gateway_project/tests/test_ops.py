"""The operational endpoints answer."""

from common.testing import assert_ops_endpoints_answer


def test_healthz_readyz_metrics(client):
    assert_ops_endpoints_answer(client)
