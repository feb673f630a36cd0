"""Poison tasks a test worker loads (``CELERY_WORKER_INCLUDE=tests.poison_tasks``): event tasks
(the real EventTask with its accounting) that fail the way no exception handler sees.

Each run first leaves a file in ``attempts_dir``, so a test counts the deliveries exactly.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from analysis.tasks import EventTask
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

KILL_TASK = "analysis.tests.kill_worker_process"
SLEEP_TASK = "analysis.tests.sleep_past_the_hard_limit"


def _attempt(attempts_dir: str) -> None:
    with open(os.path.join(attempts_dir, uuid.uuid4().hex), "w") as marker:
        marker.write(str(os.getpid()))


@shared_task(bind=True, base=EventTask, name=KILL_TASK, autoretry_for=())
def kill_worker_process(self: EventTask, envelope: Any, attempts_dir: str) -> None:
    """Dies at once, every time: the pool process exits without a word."""
    _attempt(attempts_dir)
    os._exit(1)


@shared_task(
    bind=True,
    base=EventTask,
    name=SLEEP_TASK,
    autoretry_for=(),
    soft_time_limit=0.5,
    time_limit=1,
)
def sleep_past_the_hard_limit(self: EventTask, envelope: Any, attempts_dir: str) -> None:
    """Never finishes, deaf to the soft time limit (as a call stuck in C code would be): the
    hard time limit (1 s) kills its pool process every time."""
    _attempt(attempts_dir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            time.sleep(deadline - time.monotonic())
        except SoftTimeLimitExceeded:
            continue
