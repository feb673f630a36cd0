"""Benchmark-only endpoints of the gateway, installed and routed only when
``GATEWAY_BENCH_ENDPOINTS`` is true (``bench/gateway.py`` sets it for its runs; never on by
default)."""
