#!/usr/bin/env python3
"""Gateway benchmark: three cases, interleaved, at 1, 10 and 50 connections.

    .venv/bin/python bench/gateway.py                       # 15 s per run after a 5 s warm-up
    .venv/bin/python bench/gateway.py --seconds 5 --warmup 2 --connections 10   # quick look
    .venv/bin/python bench/gateway.py --workers 3 --threads 8 --cases c        # server settings

(a) the trivial upstream (bench/trivial_upstream.py) called directly;
(b) the floor: ``GET /bench/floor``, a trivial DRF view behind the gateway's JWT authentication
    (signature cache, claims, revocation read), served by the gateway's own server configuration
    (``GATEWAY_BENCH_ENDPOINTS=true``, set for this run only);
(c) the real route: ``GET /api/playlists?limit=10`` with a bearer token through JWT check,
    throttle counter, user-context signing, breaker and pooled session to the trivial upstream.
The gateway runs as ``manage_all.py up`` runs it (same gunicorn argv and common/gunicorn_conf.py)
with ``REDIS_URL`` set like production (revocation list, throttle counters, breaker state) and
``PROMETHEUS_MULTIPROC_DIR`` set like the launcher sets it. Tokens: one per user (1,000 users by
default), signed by a key of the run whose JWKS the trivial upstream serves.

Figures per run: requests/s, p50, p99, errors (socket errors + non-2xx), CPU seconds per 1,000
requests of the serving process tree (gateway master + workers for b and c; the upstream for a;
from /proc), RSS of that tree, and the 1-minute load average when the run started. ``wrk`` and
the upstream share the 2 cores with the gateway.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from benchlib import VENV_BIN, Stack, WrkResult, lua_script, profile_summary, rerun_command, wrk

CASES = {
    "a": ("upstream direct", "/api/playlists?limit=10"),
    "b": ("floor: DRF view", "/bench/floor"),
    "c": ("gateway proxied", "/api/playlists?limit=10"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=5.0, help="warm-up seconds per run")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--users", type=int, default=1000, help="distinct tokens")
    parser.add_argument("--workers", help="WEB_CONCURRENCY for the gateway (default: as up)")
    parser.add_argument("--threads", help="GUNICORN_THREADS (default: common/gunicorn_conf.py)")
    parser.add_argument("--keepalive", help="GUNICORN_KEEPALIVE seconds (0: off)")
    parser.add_argument("--worker-class", help="gunicorn --worker-class override, e.g. sync")
    parser.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379/0",
        help="REDIS_URL of the gateway (required: revocations, throttle counters, breaker "
        "state); the run's keys live under a prefix of its own, deleted at the end",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="py-spy record the gateway during the last (c) run into FILE "
        "(collapsed stacks) and print the busiest functions",
    )
    parser.add_argument(
        "--no-multiproc",
        action="store_true",
        help="without PROMETHEUS_MULTIPROC_DIR (to measure its cost)",
    )
    args = parser.parse_args()

    env: dict[str, str] = {}
    if args.workers:
        env["GATEWAY_WEB_CONCURRENCY"] = args.workers
    if args.threads:
        env["GUNICORN_THREADS"] = args.threads
    if args.keepalive is not None:
        env["GUNICORN_KEEPALIVE"] = args.keepalive
    extra = ["--worker-class", args.worker_class] if args.worker_class else []
    results: list[tuple[int, str, WrkResult]] = []
    with Stack(
        users=args.users,
        redis_url=args.redis,
        multiproc=not args.no_multiproc,
        env=env,
        extra_argv=extra,
    ) as stack:
        assert stack.gateway is not None and stack.upstream is not None
        script = lua_script(stack.tmp, "get", stack.tokens, path="/")
        print(f"gateway: {' '.join(stack.argv[1:])}", flush=True)
        for conns in args.connections:
            for case in args.cases:
                label, path = CASES[case]
                base = stack.upstream_url if case == "a" else stack.gateway_url
                measure = stack.upstream.pid if case == "a" else stack.gateway.pid
                script = lua_script(stack.tmp, f"case{case}", stack.tokens, path=path)
                if args.warmup > 0:
                    wrk(base, script, connections=conns, seconds=args.warmup)
                spy = None
                if args.profile and case == "c" and conns == args.connections[-1]:
                    spy = subprocess.Popen(
                        [
                            str(VENV_BIN / "py-spy"),
                            "record",
                            "--pid",
                            str(stack.gateway.pid),
                            "--subprocesses",
                            "--format",
                            "raw",
                            "--rate",
                            "200",
                            "--gil",
                            "--duration",
                            str(int(args.seconds)),
                            "--output",
                            args.profile,
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                result = wrk(base, script, connections=conns, seconds=args.seconds, measure=measure)
                if spy is not None:
                    spy.wait(60)
                results.append((conns, case, result))
                print(
                    f"  {conns:>3} conn  ({case}) {label:<16} {result.rps:>8.0f} req/s  "
                    f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms  "
                    f"err {result.errors}  load {result.load}",
                    flush=True,
                )

    print(
        "\nconns case                 req/s   p50 ms   p99 ms  errors  CPU s/1k req  RSS MB  load"
    )
    for conns, case, r in results:
        print(
            f"{conns:>5} ({case}) {CASES[case][0]:<16} {r.rps:>7.0f} {r.p50_ms:>8.2f} "
            f"{r.p99_ms:>8.2f} {r.errors:>7} {r.cpu_per_1000:>13.3f} {r.rss_mb:>7.0f}  {r.load}"
        )
    by = {(conns, case): r for conns, case, r in results}
    print()
    for conns in args.connections:
        b, c = by.get((conns, "b")), by.get((conns, "c"))
        if b and c and b.rps:
            print(
                f"{conns:>3} conn: (c)/(b) = {100 * c.rps / b.rps:.0f} %  (target >= 50 % at "
                "10 and 50)"
            )
    if (10, "c") in by:
        print(f"(c) at 10 conn: {by[10, 'c'].rps:.0f} req/s (target >= 1,700)")
    if (50, "c") in by:
        print(f"(c) p99 at 50 conn: {by[50, 'c'].p99_ms:.1f} ms (target < 60 ms)")
    if args.profile and Path(args.profile).exists():
        print("\nprofile of the gateway (py-spy, busy samples only):")
        print(profile_summary(Path(args.profile)))
    print(f"\nrerun: {rerun_command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
