"""The global genre leaderboard shows no genre until enough distinct users played it.

Genres are free text from the client. Rule chosen: a minimum number of distinct users
(``ANALYSIS_GENRE_MIN_USERS``, default 3) rather than a fixed list of genres, so genres nobody
listed (niche, new, other languages) still reach the leaderboard once a few people play them,
while one user's text (a name, an insult, an advert) never does, however often they play it.
"""

from __future__ import annotations

import importlib
import os
import threading

import pytest
from analysis.cache import GLOBAL_GENRES_KEY
from analysis.models import GenrePlays, UserGenrePlays
from analysis.selectors import genre_min_users
from analysis.services import event_parse, event_process, events_process
from django.apps import apps
from django.core.cache import cache
from django.db import connections
from django.test import override_settings

from common.events import TRACK_PLAYED, USER_DELETED
from tests.factories import envelope

pytestmark = pytest.mark.django_db

FREE_TEXT = "call 555-0199 for cheap tickets"


@pytest.fixture
def process(django_capture_on_commit_callbacks):
    """Count events as the worker does, running the after-commit cache invalidation."""

    def _process(*events):
        for event in events:
            with django_capture_on_commit_callbacks(execute=True):
                event_process(envelope=event)

    return _process


def global_genres(api, user="reader"):
    response = api(user).get("/api/analysis/genres?scope=global&limit=100")
    assert response.status_code == 200
    return response.json()


def users_of(genre):
    return GenrePlays.objects.get(genre=genre).users


@pytest.fixture(autouse=True)
def _three_users():
    """These tests are about the default threshold, whatever the environment sets."""
    with override_settings(ANALYSIS_GENRE_MIN_USERS=3):
        yield


@pytest.mark.skipif("ANALYSIS_GENRE_MIN_USERS" in os.environ, reason="set in the environment")
def test_the_default_threshold_is_three_distinct_users():
    assert importlib.import_module("analysis_project.settings").ANALYSIS_GENRE_MIN_USERS == 3
    assert genre_min_users() == 3


def test_one_users_free_text_never_shows_globally(api, process):
    process(*[envelope(TRACK_PLAYED, "spammer", genre=FREE_TEXT) for _ in range(50)])
    assert global_genres(api) == []
    # Counted all the same, and the user sees it in their own list.
    assert GenrePlays.objects.get(genre=FREE_TEXT).plays == 50
    assert users_of(FREE_TEXT) == 1
    assert api("spammer").get("/api/analysis/genres?scope=me").json() == [
        {"genre": FREE_TEXT, "plays": 50}
    ]


def test_a_genre_shows_once_three_distinct_users_played_it(api, process):
    process(*[envelope(TRACK_PLAYED, "u1", genre="Shoegaze") for _ in range(4)])
    process(envelope(TRACK_PLAYED, "u2", genre="shoegaze"))
    assert global_genres(api) == []  # two users: not yet (and now cached)
    assert cache.get(GLOBAL_GENRES_KEY) is not None
    process(envelope(TRACK_PLAYED, "u3", genre=" SHOEGAZE "))  # normalised: the same genre
    assert users_of("shoegaze") == 3
    assert global_genres(api) == [{"genre": "shoegaze", "plays": 6}]


def test_threshold_is_configurable(api, process):
    process(envelope(TRACK_PLAYED, "u1", genre="jazz"), envelope(TRACK_PLAYED, "u2", genre="jazz"))
    assert global_genres(api) == []
    cache.delete_pattern("*")  # a restart with the new setting starts from fresh lists
    with override_settings(ANALYSIS_GENRE_MIN_USERS=2):
        assert global_genres(api) == [{"genre": "jazz", "plays": 2}]
    with override_settings(ANALYSIS_GENRE_MIN_USERS=0):  # never below one user
        assert genre_min_users() == 1


def test_repeat_plays_and_redeliveries_add_no_user(process):
    event = envelope(TRACK_PLAYED, "u1", genre="rock")
    process(event, dict(event), envelope(TRACK_PLAYED, "u1", genre="rock"))
    assert users_of("rock") == 1
    assert GenrePlays.objects.get(genre="rock").plays == 2


def test_one_batch_counts_each_user_once(django_capture_on_commit_callbacks):
    batch = [
        envelope(TRACK_PLAYED, "u1", genre="pop"),
        envelope(TRACK_PLAYED, "u1", genre="pop"),
        envelope(TRACK_PLAYED, "u2", genre="pop"),
        envelope(TRACK_PLAYED, "u2", genre="folk"),
        envelope(TRACK_PLAYED, "u3", genre="pop"),
    ]
    parsed = [event_parse(envelope=event) for event in batch]
    with django_capture_on_commit_callbacks(execute=True):
        events_process(events=[*parsed, parsed[0]])  # a second copy in the batch too
    assert users_of("pop") == 3
    assert users_of("folk") == 1
    assert GenrePlays.objects.get(genre="pop").plays == 4
    with django_capture_on_commit_callbacks(execute=True):
        assert set(events_process(events=parsed)) == {"duplicate"}
    assert users_of("pop") == 3


def test_a_deleted_user_no_longer_counts(api, process):
    process(*[envelope(TRACK_PLAYED, user, genre="dub") for user in ("u1", "u2", "u3")])
    assert global_genres(api) == [{"genre": "dub", "plays": 3}]  # cached
    process(envelope(USER_DELETED, "u3"))
    assert users_of("dub") == 2
    assert GenrePlays.objects.get(genre="dub").plays == 3  # history is kept
    assert global_genres(api) == []  # the deletion invalidated the cached list
    process(envelope(TRACK_PLAYED, "u4", genre="dub"))
    assert global_genres(api) == [{"genre": "dub", "plays": 4}]


def test_users_always_equals_the_user_genre_rows(process):
    process(
        *[envelope(TRACK_PLAYED, f"u{n % 5}", genre=f"g{n % 3}") for n in range(30)],
        envelope(USER_DELETED, "u1"),
        envelope(TRACK_PLAYED, "u1", genre="g0"),  # a late play after the deletion
        envelope(USER_DELETED, "u2"),
    )
    rows = {}
    for row in UserGenrePlays.objects.all():
        rows[row.genre] = rows.get(row.genre, 0) + 1
    assert dict(GenrePlays.objects.values_list("genre", "users")) == {
        genre: rows.get(genre, 0) for genre in ("g0", "g1", "g2")
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("distinct", [True, False], ids=["eight-users", "one-user"])
def test_concurrent_first_plays_count_users_exactly(distinct):
    """Threads with their own connections race on the insert of the same new rows."""
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def play(index: int) -> None:
        try:
            barrier.wait(10)
            user = f"racer-{index}" if distinct else "racer"
            event_process(envelope=envelope(TRACK_PLAYED, user, genre="Krautrock"))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=play, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert GenrePlays.objects.get(genre="krautrock").plays == 8
    assert users_of("krautrock") == (8 if distinct else 1)


def test_migration_counts_the_users_of_existing_genres():
    migration = importlib.import_module("analysis.migrations.0002_genreplays_users")
    UserGenrePlays.objects.bulk_create(
        [UserGenrePlays(user_id=f"old-{n}", genre="ska", plays=2) for n in range(4)]
        + [UserGenrePlays(user_id="old-0", genre="ambient", plays=9)]
    )
    GenrePlays.objects.bulk_create(
        [
            GenrePlays(genre="ska", plays=8),
            GenrePlays(genre="ambient", plays=9),
            GenrePlays(genre="gone", plays=3),  # its users were all deleted
        ]
    )
    migration.count_users(apps, None)
    assert dict(GenrePlays.objects.values_list("genre", "users")) == {
        "ska": 4,
        "ambient": 1,
        "gone": 0,
    }
