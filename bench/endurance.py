#!/usr/bin/env python3
"""Gateway endurance: 100,000 proxied requests in a row against one gateway.

    .venv/bin/python bench/endurance.py                        # 100,000 requests, 10 connections
    .venv/bin/python bench/endurance.py --requests 20000       # quick look

Same set-up as bench/gateway.py case (c): the gateway as ``manage_all.py up`` runs it, with
Redis, proxying ``GET /api/playlists`` with 1,000 users' tokens to the trivial upstream. The load
runs as back-to-back ``wrk`` slices of ``--slice`` seconds (same gateway processes throughout)
until the total reaches ``--requests``; after each slice the gateway tree's RSS is read from
/proc. Prints throughput of the first and last 15 s, RSS before the load, after the first
slice, in the middle and at the end, and the whole timeline.
"""

from __future__ import annotations

import argparse
import sys

from benchlib import Stack, cpu_rss, load, lua_script, rerun_command, wrk


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--slice", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--window", type=float, default=15.0, help="first/last window seconds")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="bound on the load")
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()

    # total, seconds, rps, rss MB, load, CPU s per 1,000 requests
    timeline: list[tuple[int, float, float, float, str, float]] = []
    with Stack(users=args.users) as stack:
        assert stack.gateway is not None
        script = lua_script(stack.tmp, "get", stack.tokens, path="/api/playlists?limit=10")
        print(f"gateway: {' '.join(stack.argv[1:])}", flush=True)
        rss_idle = cpu_rss(stack.gateway.pid)[1] / 2**20
        cpu_start = cpu_rss(stack.gateway.pid)[0]
        total, elapsed, errors = 0, 0.0, 0
        while total < args.requests and elapsed < args.max_seconds:
            result = wrk(
                stack.gateway_url,
                script,
                connections=args.connections,
                seconds=args.slice,
                measure=stack.gateway.pid,
            )
            total += result.requests
            errors += result.errors
            elapsed += result.seconds
            rss = cpu_rss(stack.gateway.pid)[1] / 2**20
            timeline.append((total, elapsed, result.rps, rss, result.load, result.cpu_per_1000))
            print(
                f"  {total:>7} requests  {elapsed:6.1f} s  {result.rps:6.0f} req/s  "
                f"RSS {rss:5.0f} MB  CPU {result.cpu_per_1000:.3f} s/1k  err {result.errors}  "
                f"load {result.load}",
                flush=True,
            )
        cpu = cpu_rss(stack.gateway.pid)[0] - cpu_start

    per_window = max(1, round(args.window / args.slice))
    first = timeline[:per_window]
    last = timeline[-per_window:]

    def rate(rows: list[tuple[int, float, float, float, str, float]]) -> float:
        return sum(r[2] for r in rows) / len(rows)

    def cost(rows: list[tuple[int, float, float, float, str, float]]) -> float:
        return sum(r[5] for r in rows) / len(rows)

    first_rps, last_rps = rate(first), rate(last)
    middle = timeline[len(timeline) // 2]
    print(
        f"\n{total} proxied requests in {elapsed:.0f} s at {args.connections} connections, "
        f"{errors} errors, {cpu * 1000 / max(1, total):.3f} CPU s per 1,000 requests, "
        f"load at the end {load()}"
    )
    print(
        f"throughput first {args.window:.0f} s: {first_rps:.0f} req/s, last {args.window:.0f} "
        f"s: {last_rps:.0f} req/s ({100 * (last_rps - first_rps) / first_rps:+.1f} %; "
        "target within 10 %)"
    )
    print(
        f"CPU s per 1,000 requests (independent of what else the machine runs): first "
        f"{args.window:.0f} s {cost(first):.3f}, last {args.window:.0f} s {cost(last):.3f} "
        f"({100 * (cost(last) - cost(first)) / cost(first):+.1f} %)"
    )
    growth = 100 * (timeline[-1][3] - timeline[0][3]) / timeline[0][3]
    print(
        f"RSS of the gateway tree: idle {rss_idle:.0f} MB, after the first slice "
        f"{timeline[0][3]:.0f} MB, middle ({middle[0]} requests) {middle[3]:.0f} MB, end "
        f"{timeline[-1][3]:.0f} MB ({growth:+.1f} % from the first slice; target < 10 %)"
    )
    print(f"\nrerun: {rerun_command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
