"""Read-only Django admin for the analytics, plus an overview page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, Max, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from analysis.models import (
    DeletedUser,
    GenrePlays,
    ProcessedEvent,
    UserGenrePlays,
    UserStats,
)

OVERVIEW_TOP = 10


class ReadOnlyAdmin(admin.ModelAdmin):
    """Counters change only through events: viewing is allowed, editing is not."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UserStats)
class UserStatsAdmin(ReadOnlyAdmin):
    list_display = (
        "user_id",
        "playlists_created",
        "playlists_deleted",
        "playlists_active",
        "plays",
        "last_event_at",
        "updated_at",
    )
    search_fields = ("user_id",)
    list_filter = ("last_event_at", "updated_at")
    ordering = ("-plays", "user_id")
    date_hierarchy = "last_event_at"


@admin.register(UserGenrePlays)
class UserGenrePlaysAdmin(ReadOnlyAdmin):
    list_display = ("user_id", "genre", "plays")
    search_fields = ("user_id", "genre")
    list_filter = ("genre",)
    ordering = ("-plays", "user_id", "genre")


@admin.register(GenrePlays)
class GenrePlaysAdmin(ReadOnlyAdmin):
    list_display = ("genre", "plays", "users")
    search_fields = ("genre",)
    ordering = ("-plays", "genre")


@admin.register(ProcessedEvent)
class ProcessedEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "type", "user_id", "occurred_at", "processed_at")
    search_fields = ("user_id", "=event_id")
    list_filter = ("type", "processed_at")
    ordering = ("-processed_at",)


@admin.register(DeletedUser)
class DeletedUserAdmin(ReadOnlyAdmin):
    """Users whose later events are recorded but never counted."""

    list_display = ("user_id", "deleted_at")
    search_fields = ("=user_id",)
    ordering = ("-deleted_at",)


def overview_view(request: HttpRequest) -> HttpResponse:
    """Totals, top genres overall and the users with most playlists."""
    totals = UserStats.objects.aggregate(
        users=Count("id"),
        playlists_created=Coalesce(Sum("playlists_created"), 0),
        playlists_deleted=Coalesce(Sum("playlists_deleted"), 0),
        plays=Coalesce(Sum("plays"), 0),
        last_event_at=Max("last_event_at"),
    )
    context = {
        **admin.site.each_context(request),
        "title": "Analytics overview",
        "totals": totals,
        "events_processed": ProcessedEvent.objects.count(),
        "top_genres": GenrePlays.objects.filter(plays__gt=0).order_by("-plays", "genre")[
            :OVERVIEW_TOP
        ],
        "top_users": UserStats.objects.order_by(
            "-playlists_active", "-playlists_created", "user_id"
        )[:OVERVIEW_TOP],
    }
    return TemplateResponse(request, "admin/analysis/overview.html", context)
