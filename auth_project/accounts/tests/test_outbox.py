"""UserDeleted through the transactional outbox, against the real RabbitMQ vhost of this run."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from django.core.management import call_command
from kombu import Connection

from accounts import outbox
from accounts.models import OutboxEvent
from accounts.outbox import OrmOutboxStore, build_relay, process_relay
from accounts.tests.conftest import ME
from accounts.tests.factories import PASSWORD
from common import events
from common.outbox import Relay
from common.testing import django_test_database_url, server_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SERVICE_CELERY_APP = outbox.celery_app  # before any test replaces it

QUEUES = (events.ANALYSIS_QUEUE, events.PLAYLIST_QUEUE)
TASKS = {
    events.ANALYSIS_QUEUE_NAME: events.ANALYSIS_TASK,
    events.PLAYLIST_QUEUE_NAME: events.PLAYLIST_TASK,
}


def celery_app(broker_url: str) -> Celery:
    """The service's publisher (accounts.outbox.celery_app), on the given broker."""
    return SERVICE_CELERY_APP(broker_url=broker_url)


class StallingProxy:
    """A forwarder on 127.0.0.1 to the broker that a test can stall: connections stay open and
    new ones are accepted, but nothing is forwarded either way (a half-open broker connection)
    until ``resume()``."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        host, port = broker_url.split("@", 1)[1].split("/", 1)[0].split(":")
        self.target = (host, int(port))
        self.flowing = threading.Event()
        self.flowing.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        scheme_auth, rest = self.broker_url.split("@", 1)
        return f"{scheme_auth}@127.0.0.1:{self.listener.getsockname()[1]}/{rest.split('/', 1)[1]}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                return
            upstream.settimeout(None)
            self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        """Forward until either side ends; while stalled, hold what was read."""
        with contextlib.suppress(OSError):
            chunk = src.recv(65536)
            while chunk and self.flowing.wait() and dst.sendall(chunk) is None:
                chunk = src.recv(65536)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)  # the other direction ends on its own

    def stall(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.flowing.set()
        for sock in self.sockets:
            sock.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}//"


@pytest.fixture
def amqp_url():
    url = server_url("amqp")
    _purge(url)
    yield url
    _purge(url)


def _purge(url: str) -> None:
    with Connection(url, connect_timeout=5) as conn:
        for queue in QUEUES:
            bound = queue(conn.default_channel)
            bound.declare()
            bound.purge()


def queue_depth(url: str, queue: Any) -> int:
    with Connection(url, connect_timeout=5) as conn:
        _, count, _ = queue(conn.default_channel).queue_declare(passive=True)
        return count


def read_messages(url: str, queue: Any) -> list[tuple[str, dict[str, Any]]]:
    """(task name, envelope) of every message on ``queue``, consumed."""
    found = []
    with Connection(url, connect_timeout=5) as conn:
        bound = queue(conn.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            args, _kwargs, _embed = message.decode()
            found.append((message.headers["task"], args[0]))
    return found


def wait_until(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class CheckingStore(OrmOutboxStore):
    """Records, when a row is removed, whether the broker already held the message."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.removed: list[tuple[str, list[int]]] = []

    def mark_published_many(self, *, event_ids: Sequence[str]) -> None:
        depths = [queue_depth(self.url, q) for q in QUEUES]
        self.removed.extend((event_id, depths) for event_id in event_ids)
        super().mark_published_many(event_ids=event_ids)


def test_mark_published_many_is_one_delete_of_those_rows_only():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    written = [events.make_envelope(events.USER_DELETED, user_id=str(i), data={}) for i in range(3)]
    for envelope in written:
        OutboxEvent.objects.create(event_id=envelope["event_id"], envelope=envelope)
    store = OrmOutboxStore(recycle_connections=False)
    forget = [written[0]["event_id"], written[2]["event_id"], str(uuid.uuid4())]
    with CaptureQueriesContext(connection) as queries:
        store.mark_published_many(event_ids=forget)
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    assert [s for s in statements if s not in ("BEGIN", "COMMIT")] == ["DELETE"]
    assert [str(row.event_id) for row in OutboxEvent.objects.all()] == [written[1]["event_id"]]
    store.mark_published_many(event_ids=forget)  # again: nothing left to forget, no error
    assert OutboxEvent.objects.count() == 1


def delete_me(as_user, user, **extra):
    return as_user(user).delete(ME, {"current_password": PASSWORD}, format="json", **extra)


def assert_published(url: str, event_id: str, user) -> None:
    for queue in QUEUES:
        messages = read_messages(url, queue)
        assert len(messages) == 1, queue.name
        task, envelope = messages[0]
        assert task == TASKS[queue.name]
        events.validate_envelope(envelope)
        assert envelope["event_id"] == event_id
        assert envelope["type"] == events.USER_DELETED
        assert envelope["user_id"] == str(user.pk)
        assert envelope["data"] == {"username": user.username}


def test_relay_publishes_to_both_queues_then_removes_the_row(as_user, user, amqp_url):
    store = CheckingStore(amqp_url)
    process_relay.install(build_relay(app=celery_app(amqp_url), store=store))
    response = delete_me(as_user, user, HTTP_X_REQUEST_ID="req-outbox-1")
    assert response.status_code == 204
    assert wait_until(lambda: not OutboxEvent.objects.exists())
    [(event_id, depths)] = store.removed
    assert depths == [1, 1]  # both messages were on the broker before the row went
    for queue in QUEUES:
        [(_, envelope)] = read_messages(amqp_url, queue)
        assert envelope["request_id"] == "req-outbox-1"
        assert envelope["event_id"] == event_id
        assert envelope["user_id"] == str(user.pk)
        assert envelope["data"] == {"username": user.username}


def test_broker_down_delete_is_204_and_the_row_waits_for_the_broker(
    as_user, user, amqp_url, monkeypatch
):
    failed = threading.Event()
    process_relay.install(
        build_relay(app=celery_app(closed_port_url()), on_failed=lambda envelope, exc: failed.set())
    )
    response = delete_me(as_user, user)
    assert response.status_code == 204
    assert failed.wait(20), "the relay thread should have tried and failed"
    [row] = OutboxEvent.objects.all()
    event_id = str(row.event_id)
    process_relay.install(None)  # that process's thread is gone; the row is not
    assert OutboxEvent.objects.count() == 1

    # The broker is back: the relay process (`outbox_relay`) publishes what is left.
    monkeypatch.setattr(outbox, "celery_app", functools.partial(celery_app, amqp_url))
    call_command("outbox_relay", "--once")
    assert not OutboxEvent.objects.exists()
    assert_published(amqp_url, event_id, user)


class GatedRelay(Relay):
    """Blocks inside publish until the test opens the gate."""

    gate = threading.Event()
    entered = threading.Event()
    opened_by_test: bool | None = None

    def publish(self, envelope: dict[str, Any]) -> bool:
        self.entered.set()
        type(self).opened_by_test = self.gate.wait(30)
        return super().publish(envelope)


def test_the_request_never_waits_for_the_broker(as_user, user, amqp_url):
    GatedRelay.gate, GatedRelay.entered, GatedRelay.opened_by_test = (
        threading.Event(),
        threading.Event(),
        None,
    )
    process_relay.install(build_relay(app=celery_app(amqp_url), relay_class=GatedRelay))
    response = delete_me(as_user, user)
    # The answer is here while the publish is still held at the gate.
    assert response.status_code == 204
    assert GatedRelay.entered.wait(20)
    assert OutboxEvent.objects.count() == 1
    GatedRelay.gate.set()
    assert wait_until(lambda: not OutboxEvent.objects.exists())
    assert GatedRelay.opened_by_test is True


def test_a_rolled_back_deletion_publishes_nothing(as_user, user, amqp_url, monkeypatch):
    process_relay.install(build_relay(app=celery_app(amqp_url)))

    def broken(*args, **kwargs):
        raise RuntimeError("after the outbox write")

    monkeypatch.setattr("accounts.services.user_refresh_tokens_revoke", broken)
    with pytest.raises(RuntimeError):
        delete_me(as_user, user)
    assert OutboxEvent.objects.count() == 0
    assert [queue_depth(amqp_url, q) for q in QUEUES] == [0, 0]


def test_relay_keeps_events_younger_than_the_grace_period(user, amqp_url):
    envelope = events.make_envelope(
        events.USER_DELETED, user_id=str(user.pk), data={"username": user.username}
    )
    OutboxEvent.objects.create(event_id=envelope["event_id"], envelope=envelope)
    relay = build_relay(app=celery_app(amqp_url), grace_seconds=3600)
    assert relay.run_once() == (0, "drained")
    assert OutboxEvent.objects.count() == 1
    assert build_relay(app=celery_app(amqp_url), grace_seconds=0).run_once() == (1, "drained")
    assert OutboxEvent.objects.count() == 0
    assert_published(amqp_url, envelope["event_id"], user)


def test_outbox_relay_process_stops_cleanly_on_sigterm(tmp_path, amqp_url):
    """`up` runs `manage.py outbox_relay`; SIGTERM ends it at once with exit status 0."""
    project = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env.pop("TEST_DATABASE_NAME", None)
    env.update(
        DATABASE_URL=django_test_database_url(),  # the test database, migrated by pytest-django
        STATE_DIR=str(tmp_path),
        CELERY_BROKER_URL=amqp_url,
        JWT_PRIVATE_KEY_FILE=str(tmp_path / "jwt" / "private.pem"),
        OUTBOX_RELAY_INTERVAL_SECONDS="30",
    )
    proc = subprocess.Popen(
        [sys.executable, str(project / "manage.py"), "outbox_relay"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in proc.stdout:  # wait for the loop to be running
            lines.append(line)
            if "outbox relay started" in line:
                break
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(lines) + output
    assert "outbox relay stopped" in output


def test_a_stalled_broker_connection_fails_the_publish_within_its_bound(user, amqp_url, settings):
    """A half-open broker connection (the broker accepts, then answers nothing): the publish
    gives up after OUTBOX_PUBLISH_TIMEOUT, the row stays, and it is published once the
    connection flows again (issue 13)."""
    settings.OUTBOX_PUBLISH_TIMEOUT = 1.0
    proxy = StallingProxy(amqp_url)
    relay = build_relay(app=celery_app(proxy.url), grace_seconds=0)

    def row(name: str) -> dict[str, Any]:
        envelope = events.make_envelope(
            events.USER_DELETED, user_id=str(user.pk), data={"username": name}
        )
        OutboxEvent.objects.create(event_id=envelope["event_id"], envelope=envelope)
        return envelope

    try:
        first = row("before")
        assert relay.run_once() == (1, "drained")  # through the proxy: a connection is open
        assert [e["event_id"] for _, e in read_messages(amqp_url, QUEUES[0])] == [first["event_id"]]
        read_messages(amqp_url, QUEUES[1])

        proxy.stall()
        stalled = row("during")
        results: list[tuple[int, str]] = []
        thread = threading.Thread(target=lambda: results.append(relay.run_once()))
        thread.start()
        thread.join(timeout=60)  # unbounded, it would hang here for good
        assert not thread.is_alive(), "the publish hung on the stalled connection"
        assert results == [(0, "failed")]
        assert [str(r.event_id) for r in OutboxEvent.objects.all()] == [stalled["event_id"]]

        proxy.resume()
        assert wait_until(lambda: relay.run_once() == (1, "drained"), timeout=30)
        assert not OutboxEvent.objects.exists()
        for queue in QUEUES:
            # The stalled attempt may arrive too once the bytes flow: duplicates are absorbed.
            ids = {envelope["event_id"] for _, envelope in read_messages(amqp_url, queue)}
            assert ids == {stalled["event_id"]}, queue.name
    finally:
        proxy.close()
