"""gunicorn settings shared by every service (`gunicorn -c common/gunicorn_conf.py ...`).

Threaded workers (gthread) with keep-alive; counts from the environment. When
PROMETHEUS_MULTIPROC_DIR is set, metrics are summed over all worker processes
(prometheus_client multiprocess mode): the folder is emptied at start and a dead
worker's live gauges are dropped.
"""

import os
import sys
from pathlib import Path

# Imported at start-up: the master reaps its last workers while the interpreter shuts down,
# when an import inside the hook would fail.
from gunicorn.workers import gthread
from prometheus_client import multiprocess

bind = f"{os.environ.get('BIND_HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 5
accesslog = None  # each service logs its own requests (JSON, with request ids)
errorlog = "-"
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108

# How long a worker thread waits for the first bytes of a new connection before handing it to
# the worker's poller (which waits without a thread, up to `keepalive` seconds). gunicorn's 5 s
# let connections that send nothing hold every thread: 1,000 idle connections stalled a
# gateway of 8 threads for minutes (e2e/faults, docs/reliability.md). A client that sends its
# request at once is still served straight away; a later one is served when its bytes arrive.
# Only this wait is shortened: gunicorn bounds its drain of an unread body by the same 5 s.
FIRST_BYTES_WAIT = 0.01
_wait_for_data = gthread.TConn.wait_for_data


def _wait_for_first_bytes(conn: gthread.TConn, timeout: float) -> bool:
    return _wait_for_data(conn, min(timeout, FIRST_BYTES_WAIT))


gthread.TConn.wait_for_data = _wait_for_first_bytes


def on_starting(server):
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()


def post_fork(server, worker):
    # How often a thread holding the GIL is asked to let another run (Python's default 5 ms).
    # A thread back from an I/O wait (Redis, the upstream) waits up to this long for the GIL
    # while another thread computes; shorter slices cut that wait (see docs/performance.md).
    interval = float(os.environ.get("GUNICORN_SWITCH_INTERVAL") or 0)
    if interval > 0:
        sys.setswitchinterval(interval)
    # Workers report CPU and memory of the whole tree (master and every worker).
    os.environ["METRICS_PROCESS_ROOT"] = str(server.pid)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
