"""Shared parts of the gateway benchmarks: tokens, the trivial upstream, the gateway as
``manage_all.py up`` runs it (gunicorn argv and config), ``wrk`` runs and /proc figures.

Everything listens on 127.0.0.1, every run is bounded, and :class:`Stack` stops its processes
and removes its Redis keys (a prefix of its own) on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.env import service_env  # noqa: E402
from devtools.platform import gunicorn_argv  # noqa: E402

VENV_BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
# BENCH_NICE=-10 runs the measured processes (and wrk) ahead of whatever else the shared
# machine runs (root only); 0 (default) leaves priorities alone. Recorded with the figures.
NICE = int(os.environ.get("BENCH_NICE", "0") or 0)


def _renice() -> None:
    if NICE:
        os.setpriority(os.PRIO_PROCESS, 0, NICE)


def renice_group(pid: int) -> None:
    """Give a started process group (e.g. gunicorn master and its workers) BENCH_NICE."""
    if NICE:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PGRP, pid, NICE)


# wrk script: requests pre-built per token (round robin), figures printed as JSON at the end.
LUA = r"""
local reqs = {}
local i = 0
local method = "%(method)s"
local path = "%(path)s"
local body = %(body)s
init = function(args)
  for _, t in ipairs(tokens) do
    local headers = {["Authorization"] = "Bearer " .. t, ["Accept"] = "application/json"}
    if body then headers["Content-Type"] = "application/json" end
    table.insert(reqs, wrk.format(method, path, headers, body))
  end
  i = math.random(#reqs)
end
request = function()
  i = i %% #reqs + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nWRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, "timeout": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load() -> str:
    """The 1-minute load average, as `uptime` shows it."""
    return Path("/proc/loadavg").read_text().split()[0]


def tree(root: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            pids.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in task.read_text().split()]
    return pids


def cpu_rss(root: int) -> tuple[float, int]:
    """(CPU seconds, resident bytes) of ``root`` and its descendants."""
    cpu, rss = 0.0, 0
    for pid in tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        rss += int(fields[21]) * PAGE_SIZE
    return cpu, rss


def wait_answering(url: str, timeout: float = 60.0, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, headers=headers or {})  # noqa: S310
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer 200 within {timeout:.0f} s")


def make_keys(users: int) -> tuple[bytes, list[str]]:
    """A fresh RSA key: (JWKS document, one RS256 access token per user) as auth issues them."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "bench", "use": "sig", "alg": "RS256"})
    now = int(time.time())
    tokens = [
        jwt.encode(
            {
                "user_id": str(i),
                "username": f"user{i}",
                "token_type": "access",
                "jti": uuid.uuid4().hex,
                "iat": now,
                "exp": now + 7200,
                "iss": os.environ.get("JWT_ISSUER", "musicstream-auth"),
                "aud": os.environ.get("JWT_AUDIENCE", "musicstream"),
            },
            key,
            algorithm="RS256",
            headers={"kid": "bench"},
        )
        for i in range(users)
    ]
    return json.dumps({"keys": [jwk]}).encode(), tokens


def lua_script(
    folder: Path,
    name: str,
    tokens: list[str],
    *,
    method: str = "GET",
    path: str = "/",
    body: str | None = None,
) -> Path:
    script = folder / f"{name}.lua"
    listed = ",".join(f'"{t}"' for t in tokens)
    text = f"tokens = {{{listed}}}\n" + LUA % {
        "method": method,
        "path": path,
        "body": json.dumps(body) if body is not None else "nil",
    }
    script.write_text(text)
    return script


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    cpu_s: float = 0.0
    rss_mb: float = 0.0
    load: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu_s * 1000 / self.requests if self.requests else 0.0


def wrk(
    url: str,
    script: Path,
    *,
    connections: int,
    seconds: float,
    measure: int | None = None,
    timeout: float = 5.0,
) -> WrkResult:
    """One bounded ``wrk`` run; CPU and RSS of the ``measure`` process tree over the run."""
    binary = shutil.which("wrk")
    if not binary:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    threads = min(2, connections)
    before = cpu_rss(measure) if measure else (0.0, 0)
    started_load = load()
    out = subprocess.run(
        [
            binary,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={timeout:g}s",
            "-s",
            str(script),
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        preexec_fn=_renice,
    ).stdout
    after = cpu_rss(measure) if measure else (0.0, 0)
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    data = json.loads(line[8:])
    # wrk counts non-2xx/3xx answers under "status"; socket errors under the others.
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=errors,
        cpu_s=after[0] - before[0],
        rss_mb=after[1] / 2**20,
        load=started_load,
    )


class Stack:
    """The trivial upstream plus the gateway under gunicorn exactly as ``manage_all up`` starts
    it (``devtools.platform.gunicorn_argv`` + ``common/gunicorn_conf.py``), every upstream
    pointing at the trivial one, which also serves the JWKS of the benchmark's own key."""

    def __init__(
        self,
        *,
        users: int = 1000,
        redis_url: str = DEFAULT_REDIS,
        multiproc: bool = True,
        env: dict[str, str] | None = None,
        extra_argv: list[str] | None = None,
    ) -> None:
        self.users = users
        self.redis_url = redis_url
        self.multiproc = multiproc
        self.env_overrides = env or {}
        self.extra_argv = extra_argv or []
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
        self.prefix = f"bench-{uuid.uuid4().hex[:8]}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.upstream_port = free_port()
        self.gateway_port = free_port()
        self.gateway: subprocess.Popen[bytes] | None = None
        self.upstream: subprocess.Popen[bytes] | None = None
        self.argv: list[str] = []

    @property
    def upstream_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        sink = log.open("ab") if log else None
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            preexec_fn=_renice,
        )
        if sink:
            sink.close()
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        jwks, self.tokens = make_keys(self.users)
        (self.tmp / "jwks.json").write_bytes(jwks)
        self.upstream = self._spawn(
            [
                sys.executable,
                str(ROOT / "bench" / "trivial_upstream.py"),
                "--port",
                str(self.upstream_port),
                "--jwks",
                str(self.tmp / "jwks.json"),
            ]
        )
        overrides = {
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + uuid.uuid4().hex,
            "INTERNAL_SECRET": "bench-" + uuid.uuid4().hex,
            "LOG_LEVEL": "INFO",  # as in production: one JSON line per proxied request
            "LOG_FORMAT": "json",
            "STATE_DIR": str(self.tmp / "state"),
            "CACHE_KEY_PREFIX": self.prefix,
            "AUTH_SERVICE_URL": self.upstream_url,
            "PLAYLIST_SERVICE_URL": self.upstream_url,
            "ANALYSIS_SERVICE_URL": self.upstream_url,
            "GATEWAY_BENCH_ENDPOINTS": "true",
            # Throttling still runs (one counter per request); the limit is out of reach.
            "GATEWAY_USER_RATE": "1000000/min",
            "GATEWAY_ANON_RATE": "1000000/min",
            **self.env_overrides,
        }
        env = service_env("gateway", overrides)
        env["REDIS_URL"] = self.redis_url  # required: revocations, throttles, breaker state
        if self.multiproc:
            folder = self.tmp / "prometheus"
            folder.mkdir(parents=True, exist_ok=True)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
        else:
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.argv = [*gunicorn_argv("gateway", self.gateway_port, env), *self.extra_argv]
        self.env = env
        # Its log goes to a file (as the launcher's pipe would take it), not to the terminal.
        self.log = self.tmp / "gateway.log"
        self.gateway = self._spawn(self.argv, env=env, cwd=ROOT / "gateway_project", log=self.log)
        wait_answering(self.upstream_url + "/")
        wait_answering(self.gateway_url + "/healthz")
        auth = {"Authorization": f"Bearer {self.tokens[0]}"}
        wait_answering(self.gateway_url + "/api/playlists", headers=auth)

    def stop(self) -> None:
        for proc in reversed(self.procs):  # the gateway first, then its upstream
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.procs.clear()
        with contextlib.suppress(Exception):
            import redis

            client = redis.Redis.from_url(self.redis_url)
            for key in client.scan_iter(f"{self.prefix}*", count=1000):
                client.delete(key)
        shutil.rmtree(self.tmp, ignore_errors=True)


def rerun_command() -> str:
    prefix = f"BENCH_NICE={NICE} " if NICE else ""
    return (
        prefix + ".venv/bin/python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    )


def profile_summary(raw: Path, top: int = 25) -> str:
    """Inclusive and self shares of the busiest functions in a ``py-spy record --format raw``
    file (collapsed stacks: ``frame;frame;... count``), idle threads left out."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    idle = (
        "wait (threading.py",
        "select (selectors.py",
        "_worker (concurrent",
        "sleep (",
        "run_for_one",
        "run_for_multiple",
        "accept (",
        "poll (selectors",
        "wait_for_tstate",
    )
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if any(marker in frames[-1] for marker in idle):
            continue
        count = int(count_text)
        total += count
        names = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1]
            for f in frames
        ]
        for name in set(names):
            inclusive[name] = inclusive.get(name, 0) + count
        own[names[-1]] = own.get(names[-1], 0) + count
    lines = [f"busy samples: {total}", "inclusive %  self %  function (file)"]
    for name, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * count / total:10.1f} {100 * own.get(name, 0) / total:7.1f}  {name}")
    return "\n".join(lines)
